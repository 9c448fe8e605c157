"""The CI templates of docs/ci, run here: their shell steps, as the rootless test user,
against the loopback registry (issue 14).

One test runs both templates' build jobs, read from the YAML files as they ship:

- **GitHub Actions** (docs/ci/github-actions.yml), job `build`, as a `push` to main: every
  `run:` step in order, in bash as the runner runs it (`bash --noprofile --norc -eo
  pipefail`), with the workflow's, job's and step's `env:`, the `${{ }}` expressions the
  template uses filled in, and `$GITHUB_ENV`/`$GITHUB_PATH` carried from step to step as
  the runner does. The `uses:` steps are GitHub's own actions (actions/checkout,
  actions/upload-artifact) and are not run: the test checks the project out itself and
  reads `build.json` where the upload would take it from. The `prune-cache` job is only
  an action (actions/delete-package-versions): not run.
- **GitLab CI** (docs/ci/gitlab-ci.yml), job `build-image` on the default branch:
  `before_script` and `script` (with `extends:`) as one bash script (`set -eo pipefail`),
  the `variables:` expanded as GitLab expands them. The job runs as an unprivileged user,
  as on a shell executor, so the template's root-only set-up (the docker executor's
  `apt-get` and `useradd`) is skipped by the template itself. The `prune-cache` job
  (a schedule) is not run: `uvbuild cache prune --registry` has its own test
  (test_registry_cache.py).

The CI-provided variables (GITHUB_*, RUNNER_TEMP, CI_*, the registry, the credentials)
point at the loopback registry; its plain HTTP is declared in a registries.conf drop-in
in the user's config, as a user of an internal registry would declare it (removed after). Both
templates install uvbuild as they ship: `git clone` of `$UVBUILD_GIT` at `$UVBUILD_REF`
(here a file:// repository holding a snapshot of this checkout, uncommitted work
included), then `scripts/host-setup`.

The GitHub job is the first runner: an empty store (the recipe's base copied in, as a
runner pulls its base), `--cache-to`, `--push`. The GitLab job is the second runner:
another empty store, `--cache-from` the same cache repository; it must pull, run no
builder step and give the same image ID.
"""

from __future__ import annotations

import json
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Mapping
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
TEMPLATES = REPO / "docs" / "ci"
BASE_REPO = "localhost/uvbuild-base/"
BUILDER_STEPS = ("prepare-builder", "sync-dependencies", "install-project")
TINY_PYPROJECT = """\
[project]
name = "shop"
version = "0.1.0"
requires-python = ">=3.11"
dependencies = []

[tool.uv]
package = false
"""
BOOKWORM = {"bootstrap": "debian", "suite": "bookworm", "packages": ["python3"]}
RECIPE = {"version": 1, "project": ".", "image": "localhost/ci-templates-shop:latest",
          "builder": {"from": BOOKWORM, "python": "/usr/bin/python3"},
          "runtime": {"from": BOOKWORM, "test": ["test -f /app/main.py"]}}
NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))
_VARIABLE = re.compile(r"\$(?:\{(\w+)\}|(\w+))")
_EXPRESSION = re.compile(r"\$\{\{\s*([^}]+?)\s*\}\}")


# -- what the CI platforms do around the shell steps -------------------------------------


def github_steps(job: str) -> tuple[dict[str, str], list[dict[str, object]]]:
    """The workflow's and the job's `env:` merged, and the job's steps."""
    workflow = yaml.safe_load((TEMPLATES / "github-actions.yml").read_text())
    spec = workflow["jobs"][job]
    return {**workflow.get("env", {}), **spec.get("env", {})}, list(spec["steps"])


def fill_expressions(text: str, values: Mapping[str, str]) -> str:
    """`${{ name }}` → its value; an expression this test does not know fails it (a
    template that grows one must teach the test what it means)."""
    def value(match: re.Match[str]) -> str:
        assert match[1] in values, f"the template uses ${{{{ {match[1]} }}}}: add it here"
        return values[match[1]]
    return _EXPRESSION.sub(value, text)


def read_env_file(path: Path) -> dict[str, str]:
    """A `$GITHUB_ENV` file: `NAME=value` lines and `NAME<<DELIMITER` blocks."""
    found: dict[str, str] = {}
    lines = path.read_text().splitlines() if path.exists() else []
    while lines:
        line = lines.pop(0)
        if "<<" in line and ("=" not in line or line.index("<<") < line.index("=")):
            name, _, delimiter = line.partition("<<")
            block = []
            while lines and lines[0] != delimiter:
                block.append(lines.pop(0))
            lines.pop(0)
            found[name] = "\n".join(block)
        elif "=" in line:
            name, _, value = line.partition("=")
            found[name] = value
    return found


def run_github_job(user, job: str, context: Mapping[str, str], settings: Mapping[str, str],
                   expressions: Mapping[str, str], env: Mapping[str, str],
                   folder: Path) -> list[tuple[str, str]]:
    """Run the job's `run:` steps as `user`: each step run's name and output. `context` is
    what the runner provides, `settings` the values a user gives the workflow's `env:`."""
    top_env, steps = github_steps(job)
    assert set(settings) <= set(top_env), "settings are the workflow's own variables"
    top_env = {**top_env, **settings}
    added_env: dict[str, str] = {}
    added_path: list[str] = []
    ran = []
    for n, step in enumerate(steps):
        if "uses" in step:
            continue  # a GitHub action, not shell (see the module's docstring)
        assert "if" not in step, "a step condition: teach the test to judge it"
        env_file, path_file = folder / f"env-{n}", folder / f"path-{n}"
        for made in (env_file, path_file):
            made.write_text("")
        script = folder / f"step-{n}.sh"
        script.write_text(fill_expressions(str(step["run"]), expressions))
        for made in (env_file, path_file, script):
            shutil.chown(made, user.uid, user.gid)
        step_env = {name: fill_expressions(str(value), expressions)
                    for name, value in {**top_env, **step.get("env", {})}.items()}
        path = ":".join([*reversed(added_path), env.get("PATH", user.env()["PATH"])])
        done = user.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", script],
                 env={**env, **context, **step_env, **added_env, "PATH": path,
                      "GITHUB_ENV": str(env_file), "GITHUB_PATH": str(path_file)},
                 cwd=context["GITHUB_WORKSPACE"], timeout=900)
        print(f"--- step {step.get('name', n)}: stderr\n{done.stderr.strip()}")
        added_env.update(read_env_file(env_file))
        added_path += [line for line in path_file.read_text().splitlines() if line]
        ran.append((str(step.get("name", step["run"])), done.stdout + done.stderr))
    return ran


def gitlab_script(job: str) -> tuple[dict[str, str], str]:
    """The job's variables (global, then the job's) and its shell: before_script and
    script, `extends:` followed."""
    pipeline = yaml.safe_load((TEMPLATES / "gitlab-ci.yml").read_text())
    spec = dict(pipeline[job])
    parent = spec.pop("extends", None)
    if parent:
        spec = {**pipeline[parent], **spec}
    variables = {**pipeline.get("variables", {}), **spec.get("variables", {})}
    lines = [*spec.get("before_script", ()), *spec["script"]]
    return {k: str(v) for k, v in variables.items()}, "\n".join(["set -eo pipefail", *lines])


def expand_variables(variables: Mapping[str, str], predefined: Mapping[str, str]
                     ) -> dict[str, str]:
    """GitLab's expansion of `variables:`: `$NAME`/`${NAME}` of the predefined ones and of
    the variables themselves (an unknown name is left as it is, as GitLab leaves it)."""
    known = dict(predefined)
    done: dict[str, str] = {}
    for _ in range(len(variables) + 1):
        for name, value in variables.items():
            done[name] = _VARIABLE.sub(
                lambda m: known.get(m[1] or m[2], m[0]), value)
        known.update(done)
    return done


# -- the registry, the stores, the project ----------------------------------------------


def registry_get(url: str) -> dict[str, object]:
    request = urllib.request.Request(url, headers={"Accept": ", ".join((
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json"))})
    with NO_PROXY.open(request, timeout=30) as response:
        return dict(json.load(response))


def user_store(user, folder: Path) -> dict[str, str]:
    """An empty image store of `user`'s, as on a fresh runner: the environment that
    selects it. Rootless buildah 1.28 takes the graph root from a storage.conf's
    `rootless_storage_path` (not its `graphroot`) and the run root from $XDG_RUNTIME_DIR,
    so both are new folders; checked, so that nothing here ever touches the user's own
    store. Native overlay (this kernel has it), as on ubuntu-latest: vfs would copy the
    whole root file system for every working container."""
    (folder / "runtime").mkdir(parents=True, mode=0o700)
    conf = folder / "storage.conf"
    conf.write_text(f'[storage]\ndriver = "overlay"\nrootless_storage_path = "{folder / "graph"}"\n')
    _chown_all(folder, user)
    env = {"CONTAINERS_STORAGE_CONF": str(conf), "XDG_RUNTIME_DIR": str(folder / "runtime")}
    store = json.loads(user.run(["buildah", "info"], env=env).stdout)["store"]
    for where in ("GraphRoot", "RunRoot"):
        assert Path(store[where]).is_relative_to(folder), (where, store[where])
    return env


def base_archive(user, recipe: Path, folder: Path) -> tuple[Path, str] | None:
    """The recipe's bootstrapped base as an OCI archive and its name, from the rootless
    user's own
    store (the rootless tests made it) or root's; None if neither has it (the first
    runner bootstraps it then, which takes a minute)."""
    uvbuild = Path(sys.executable).parent / "uvbuild"
    plan = subprocess.run([uvbuild, "plan", "--no-engine", recipe], capture_output=True,
                          text=True, check=True).stdout
    keys = {line.split()[1] for line in plan.splitlines()
            if line.split()[:1] in (["builder-base"], ["runtime-base"])}
    assert len(keys) == 1, f"the recipe's two stages have one base: {plan}"
    (key,) = keys

    def match(listing: str) -> str | None:
        names = [n for entry in json.loads(listing or "null") or ()
                 for n in entry.get("names") or () if n.startswith(BASE_REPO)]
        found = [n for n in names if n.rpartition(":")[0].rpartition("-")[2].startswith(key)]
        return found[0] if found else None

    archive = folder / "base.tar"
    name = match(user.run(["buildah", "images", "--json"]).stdout)
    if name:
        user.run(["skopeo", "copy", "--quiet", f"containers-storage:{name}",
                  f"oci-archive:{archive}"], cwd=folder, timeout=600)
        return archive, name
    listing = subprocess.run(["buildah", "images", "--json"], capture_output=True, text=True,
                             check=True).stdout
    name = match(listing)
    if name is None:
        print("no bootstrapped base to copy in: the first runner bootstraps it")
        return None
    subprocess.run(["skopeo", "copy", "--quiet", f"containers-storage:{name}",
                    f"oci-archive:{archive}"], check=True, capture_output=True)
    shutil.chown(archive, user.uid, user.gid)
    return archive, name


def insecure_registry(user, registry: str, run_id: str) -> list[Path]:
    """Declare the loopback registry's plain HTTP for `user`, as a user of an internal
    registry declares it: a registries.conf drop-in in the user's config (Debian's skopeo
    1.9 reads no CONTAINERS_REGISTRIES_CONF). What was made, the file first: the test
    removes it all afterwards."""
    folder = user.home / ".config" / "containers" / "registries.conf.d"
    made = [path for path in (folder, folder.parent) if not path.exists()]
    folder.mkdir(parents=True, exist_ok=True)
    dropin = folder / f"uvbuild-ci-templates-{run_id}.conf"
    dropin.write_text(f'[[registry]]\nlocation = "{registry}"\ninsecure = true\n')
    for path in (*made, dropin):
        shutil.chown(path, user.uid, user.gid)
    return [dropin, *made]


def source_repository(folder: Path) -> Path:
    """A git repository holding this checkout's files (tracked, and untracked but not
    ignored: work in progress is tested too) on one branch: what the templates clone."""
    listed = subprocess.run(["git", "-C", REPO, "ls-files", "-z", "--cached", "--others",
                             "--exclude-standard"], capture_output=True, check=True).stdout
    for rel in sorted({p for p in listed.decode().split("\0") if p}):
        source = REPO / rel
        if source.is_file() and not source.is_symlink():
            (folder / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, folder / rel)
    git = ["git", "-C", folder, "-c", "user.name=itest", "-c", "user.email=itest@localhost"]
    for argv in ([*git, "init", "-q", "-b", "ci-templates"], [*git, "add", "-A"],
                 [*git, "commit", "-q", "-m", "snapshot for the CI templates test"]):
        subprocess.run(argv, check=True, capture_output=True)
    return folder


def fresh_checkout(source: Path, workspace: Path, user) -> None:
    """The project as a CI job gets it: a fresh copy at the same path every time."""
    shutil.rmtree(workspace, ignore_errors=True)
    shutil.copytree(source, workspace)
    subprocess.run(["chown", "-R", f"{user.uid}:{user.gid}", workspace], check=True)


def _chown_all(top: Path, user) -> None:
    subprocess.run(["chown", "-R", f"{user.uid}:{user.gid}", top], check=True)


# -- the test --------------------------------------------------------------------------


def test_the_ci_templates_build_push_and_share_the_cache_as_a_rootless_user(
        rootless_user, registry: str) -> None:
    started = time.monotonic()
    user = rootless_user
    tmp = Path(tempfile.mkdtemp(prefix="ci-templates-", dir="/tmp"))
    tmp.chmod(0o755)
    run_id = secrets.token_hex(4)
    token = f"tok-{secrets.token_hex(8)}"  # the job's registry token: must show nowhere
    stores: list[dict[str, str]] = []  # the environments of the runners' stores
    dropins: list[Path] = []
    gitlab_tool: Path | None = None
    try:
        # uvbuild's source, the project, the registry's plain HTTP, the base.
        source = source_repository(tmp / "uvbuild-src")
        project = tmp / "shop-src"
        project.mkdir()
        (project / "pyproject.toml").write_text(TINY_PYPROJECT)
        (project / "main.py").write_text('print("shop ok")\n')
        (project / "uvbuild.yaml").write_text(yaml.safe_dump(RECIPE, sort_keys=False))
        subprocess.run([Path(sys.executable).parent / "uv", "lock", "--offline", "--directory",
                        project], check=True, capture_output=True, timeout=120)
        dropins = insecure_registry(user, registry, run_id)
        _chown_all(tmp, user)
        print(f"source and project: {time.monotonic() - started:.1f}s")
        base = base_archive(user, project / "uvbuild.yaml", tmp)
        print(f"the base ({base[1] if base else 'none: bootstrapped'}) in an archive: "
              f"{time.monotonic() - started:.1f}s")
        # The first runner gets the bootstrapped base as a runner that made it before
        # has it; the second gets nothing: the base comes from the registry cache too.
        stores.append(user_store(user, tmp / "store-github"))
        if base is not None:
            user.run(["skopeo", "copy", "--quiet", f"oci-archive:{base[0]}",
                      f"containers-storage:{base[1]}"], env=stores[0], timeout=600)
        stores.append(user_store(user, tmp / "store-gitlab"))
        setup_seconds = time.monotonic() - started
        print(f"set-up: {setup_seconds:.1f}s")
        workspace = tmp / "work" / "shop"
        workspace.parent.mkdir()
        _chown_all(workspace.parent, user)
        common = {"CI": "true"}
        repo_path = f"itest/shop-{run_id}"  # the image's repository in the registry
        sha = secrets.token_hex(20)

        # GitHub Actions, the first runner: a push to main; --cache-to, --push.
        fresh_checkout(project, workspace, user)
        runner_temp = tmp / "runner-temp"
        runner_temp.mkdir()
        _chown_all(runner_temp, user)
        github = {
            "GITHUB_ACTIONS": "true", "GITHUB_EVENT_NAME": "push", "GITHUB_REF": "refs/heads/main",
            "GITHUB_REPOSITORY": f"ITest/Shop-{run_id}",  # upper case: the template lowers it
            "GITHUB_SHA": sha, "GITHUB_ACTOR": "itest", "GITHUB_WORKSPACE": str(workspace),
            "RUNNER_TEMP": str(runner_temp), "RUNNER_OS": "Linux",
        }
        # The workflow's own variables, as a user sets them: where uvbuild and the
        # registry are.
        settings = {"UVBUILD_GIT": f"file://{source}", "UVBUILD_REF": "ci-templates",
                    "REGISTRY": registry}
        expressions = {"github.actor": "itest", "secrets.GITHUB_TOKEN": token}
        phase = time.monotonic()
        ran = run_github_job(user, "build", github, settings, expressions,
                             {**common, **stores[0]}, tmp)
        github_seconds = time.monotonic() - phase
        print(f"GitHub job: {github_seconds:.1f}s")
        assert ran[-1][0] == "Build, share the cache, push", [name for name, _ in ran]
        first = json.loads((workspace / "build.json").read_text())
        print(f"github run steps: {first['steps']}")
        pushed = registry_get(f"http://{registry}/v2/{repo_path}/manifests/{sha[:12]}")
        assert pushed.get("layers"), "the image is not in the registry"
        tags = registry_get(f"http://{registry}/v2/{repo_path}/uvbuild-cache/tags/list")
        entries = [t for t in tags.get("tags") or () if re.fullmatch(r"[a-z-]+-[0-9a-f]{32}", t)]
        assert {t.rpartition("-")[0] for t in entries} >= {"add-project", "sync-dependencies"}, \
            tags
        outputs = [output for _, output in ran] + [(workspace / "build.json").read_text()]

        # GitLab CI, the second runner: another empty store, the default branch, the same
        # cache repository: everything pulled, no builder step run, the same image.
        fresh_checkout(project, workspace, user)
        variables, script = gitlab_script("build-image")
        gitlab = {
            "GITLAB_CI": "true", "CI_JOB_ID": run_id, "CI_PROJECT_DIR": str(workspace),
            "CI_REGISTRY": registry, "CI_REGISTRY_IMAGE": f"{registry}/{repo_path}",
            "CI_REGISTRY_USER": "gitlab-ci-token", "CI_REGISTRY_PASSWORD": token,
            "CI_COMMIT_SHA": sha, "CI_COMMIT_SHORT_SHA": sha[:8], "CI_COMMIT_BRANCH": "main",
            "CI_DEFAULT_BRANCH": "main", "CI_PIPELINE_SOURCE": "push",
        }
        variables = {**variables, "UVBUILD_GIT": f"file://{source}",
                     "UVBUILD_REF": "ci-templates"}
        job_env = {**gitlab, **expand_variables(variables, gitlab)}
        gitlab_tool = Path(job_env["UVBUILD_DIR"])  # the template's: /tmp/uvbuild-<job ID>
        assert not gitlab_tool.exists()
        script_file = tmp / "gitlab-job.sh"
        script_file.write_text(script)
        shutil.chown(script_file, user.uid, user.gid)
        phase = time.monotonic()
        job = user.run(["bash", "--noprofile", "--norc", script_file],
                       env={**common, **job_env, **stores[1]},
                       cwd=workspace, timeout=900)
        gitlab_seconds = time.monotonic() - phase
        print(f"--- GitLab job: stderr\n{job.stderr.strip()}")
        second = json.loads((workspace / "build.json").read_text())
        statuses = {str(s["step"]): str(s.get("status")) for s in second["steps"]}
        print(f"gitlab run steps: {second['steps']}")
        assert "pulled" in statuses.values(), statuses
        assert [s for s in BUILDER_STEPS if statuses.get(s) == "built"] == [], statuses
        assert second["id"] == first["id"]
        assert registry_get(f"http://{registry}/v2/{repo_path}/manifests/{sha[:8]}")["layers"]
        outputs += [job.stdout, job.stderr, (workspace / "build.json").read_text()]
        assert [text for text in outputs if token in text] == []
        print(f"CI templates test: set-up {setup_seconds:.1f}s, GitHub job "
              f"{github_seconds:.1f}s, GitLab job {gitlab_seconds:.1f}s, total "
              f"{time.monotonic() - started:.1f}s")
    finally:
        # The stores are folders under `tmp` (user_store checked it), their mounts gone
        # with the user namespaces of the commands that made them: removed with it.
        shutil.rmtree(tmp, ignore_errors=True)
        if gitlab_tool is not None:
            shutil.rmtree(gitlab_tool, ignore_errors=True)
        for made in dropins:  # the drop-in file, then the folders made for it
            if not made.is_dir():
                made.unlink(missing_ok=True)
            elif not any(made.iterdir()):
                made.rmdir()

