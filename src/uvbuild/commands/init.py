"""`uvbuild init [DIR]`: write DIR/uvbuild.yaml, a recipe that builds the uv project as it is.

The recipe is made from what the project says: packaged or not, its console scripts
(else a guess from its dependencies: uvicorn/fastapi, gunicorn/flask, django), the
Python it asks for (a Debian suite whose python3 meets it), and the packages a source
build of a known dependency needs. Its `runtime.test` imports the project. Pure text
made from data: `recipe_text` is what the unit tests read.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from uvbuild.errors import ProjectError
from uvbuild.plan.inputs import default_image_name
from uvbuild.project.model import (
    Project,
    load_toml,
    read_project,
    uv_lock_packages,
    virtual_workspace_members,
)
from uvbuild.project.pythons import SUITE_PYTHON, python_request, satisfies
from uvbuild.project.tables import table

RECIPE_NAME = "uvbuild.yaml"
SUITES = ("bookworm", "trixie")  # tried in this order: the first whose Python fits wins

# Dependencies that build from source against a C library: (builder, runtime) packages.
NATIVE = {
    "psycopg2": (("libpq-dev",), ("libpq5",)),
    "mysqlclient": (("default-libmysqlclient-dev", "pkg-config"), ("libmariadb3",)),
}
BUILD_TOOLS = ("build-essential", "python3-dev")


@dataclass(frozen=True, kw_only=True, slots=True)
class Guess:
    """What the recipe's runtime runs, and why uvbuild thinks so (a comment)."""

    entrypoint: tuple[str, ...] | None
    why: str
    port: int | None = None
    env: tuple[tuple[str, str], ...] = ()


def init(folder: Path, *, force: bool = False) -> Path:
    """Write `folder`/uvbuild.yaml for the uv project there; return its path."""
    target = folder / RECIPE_NAME
    if target.exists() and not force:
        raise ProjectError(f"{target} already exists",
                           hint="pass --force to overwrite it, or edit it")
    members = virtual_workspace_members(folder)
    if members:  # a virtual root builds nothing itself: the one member with a command
        services = [m for m, doc in members if table(doc.get("project", {}), "scripts", folder)]
        if len(services) != 1:
            names = ", ".join(m.path for m, _ in members)
            raise ProjectError(
                f"{folder} is a virtual workspace root (no [project] table) and "
                f"{len(services) or 'none'} of its members ({names}) have [project.scripts]",
                hint=f"run `uvbuild init {folder / (services or [members[0][0]])[0].path}`"
                     " (the member to build)")
        project = read_project(folder / services[0].path)
        target.write_text(recipe_text(project, location=services[0].path))
        return target
    project = read_project(folder)
    target.write_text(recipe_text(project))
    return target


def recipe_text(project: Project, *, location: str = ".") -> str:
    """The recipe for `project`, as YAML with comments; `location` is the project's
    folder relative to the recipe's."""
    suite, python_note = _suite(project)
    native = _native_packages(project)
    builder_packages = BUILD_TOOLS + native[0] if native[0] else ()
    guess = entrypoint_guess(project)
    module = import_name(project)
    lines = [
        f"# Written by `uvbuild init` for {project.name}: a starting point; "
        "every key is in uvbuild's docs/recipe.md.",
        "version: 1",
        f"project: {json.dumps(location) if location != '.' else '.'}",
        # (What the build names it without `image:`: a version is made a valid tag.)
        f"image: {default_image_name(project)}",
        "",
        "builder:",
        *_base(suite, builder_packages, python_note, slim=False),
        "  python: /usr/bin/python3",
        "",
        "runtime:",
        *_base(suite, native[1], None, slim=True),
    ]
    if guess.env:
        lines.append("  env: {" + ", ".join(f"{k}: {json.dumps(v)}" for k, v in guess.env) + "}")
    lines.append(f"  # {guess.why}")
    if guess.entrypoint:
        lines.append(f"  entrypoint: {_flow(guess.entrypoint)}")
    if guess.port:
        lines.append(f"  expose: [{guess.port}]")
    # -I (isolated) leaves the working folder out of sys.path: an unpackaged project's
    # modules are found there (workdir /app), a package's in the venv.
    flags = "-Ic" if project.is_package else "-c"
    command = f"python {flags} " + json.dumps(f"import {module}" if module else "import sys")
    lines += ["  test:", f"    - {json.dumps(command)}"]
    return "\n".join(lines) + "\n"


def import_name(project: Project) -> str | None:
    """The module a `runtime.test` imports: the package's, or an unpackaged app's."""
    if project.is_package:
        candidates = [project.normalized_name.replace("-", "_")]
        for folder in (project.root / "src", project.root):
            candidates += sorted(p.parent.name for p in folder.glob("*/__init__.py"))
        for name in candidates:
            if any((folder / name / "__init__.py").is_file()
                   for folder in (project.root / "src", project.root)):
                return name
        return candidates[0]
    for name in ("app", "main", "manage"):
        if (project.root / f"{name}.py").is_file():
            return name
    return None


# A module that starts a server itself (its `main()` runs uvicorn, waitress...).
SERVES = re.compile(r"\b(?:uvicorn|hypercorn|granian)\.run\(|\bwaitress\.serve\(|"
                    r"\b(?:app|application)\.run\(|\bserve_forever\(")
# The port such a module listens on by default: `os.environ.get("PORT", "9876")`.
PORT_DEFAULT = re.compile(r"""(?:environ\.get|getenv)\(\s*["']PORT["']\s*,\s*["']?(\d{2,5})\b""")


def entrypoint_guess(project: Project) -> Guess:
    """[project.scripts] when there is one, else a server the dependencies suggest.

    A script named like the project wins, then a script whose module starts a server,
    then the package's __main__.py (`python -m`), then the first script. When the
    module run says which port it serves by default (`PORT` read from the environment
    with a default), that port is exposed."""
    own = next((s for s in project.scripts if s.replace("_", "-") == project.normalized_name),
               None)
    targets = _script_modules(project)
    serving = next((s for s in project.scripts
                    if SERVES.search(_module_text(project, targets.get(s)))), None)
    module = import_name(project) if project.is_package else None
    main = module and any((folder / module / "__main__.py").is_file()
                          for folder in (project.root / "src", project.root))
    if own or serving or project.scripts and not main:
        script = own or serving or project.scripts[0]
        why = f"[project.scripts] {script}" + ("" if own or not serving else
                                               " (its module starts a server)")
        return Guess(entrypoint=(script,), why=why,
                     port=_port_default(_module_text(project, targets.get(script))))
    if main:  # a helper script named otherwise is less likely the service than -m
        return Guess(entrypoint=("python", "-m", str(module)),
                     why=f"{module}/__main__.py (python -m {module})",
                     port=_port_default(_module_text(project, f"{module}.__main__")))
    names = _dependency_names(project)
    if "django" in names:
        wsgi = _find(project, r"^application\s*=", "wsgi.py")
        if "gunicorn" in names and wsgi:
            return Guess(entrypoint=("gunicorn", "--bind", "0.0.0.0:8000", f"{wsgi}:application"),
                         why="Django served by gunicorn (a guess from the dependencies)",
                         port=8000)
        return Guess(entrypoint=("python", "manage.py", "runserver", "0.0.0.0:8000"),
                     why="Django's development server (a guess; add gunicorn for production)",
                     port=8000)
    if "fastapi" in names or "uvicorn" in names:
        app = _find(project, r"^(\w+)\s*=\s*FastAPI\(") or "main:app"
        return Guess(entrypoint=("uvicorn", "--host", "0.0.0.0", "--port", "8000", app),
                     why="an ASGI app served by uvicorn (a guess from the dependencies)",
                     port=8000)
    if "flask" in names or "gunicorn" in names:
        app = _find(project, r"^(\w+)\s*=\s*Flask\(") or "app:app"
        # gunicorn binds 0.0.0.0:$PORT when it has no --bind; no control socket: the
        # app user has no home folder.
        return Guess(entrypoint=("gunicorn", "--no-control-socket", "--access-logfile", "-",
                                 app), port=8080, env=(("PORT", "8080"),),
                     why="a WSGI app served by gunicorn (a guess from the dependencies)")
    return Guess(entrypoint=None, why="no [project.scripts] and no known server: set "
                 "entrypoint to what the image should run")


def _script_modules(project: Project) -> dict[str, str]:
    """Each [project.scripts] name and the module its `module:function` target names."""
    scripts = load_toml(project.root / "pyproject.toml").get("project", {}).get("scripts", {})
    if not isinstance(scripts, dict):
        return {}
    return {str(name): str(target).partition(":")[0].strip()
            for name, target in scripts.items() if isinstance(target, str)}


def _module_text(project: Project, module: str | None) -> str:
    """The source of the project's module `module` (dotted), or "" when it has none."""
    if not module:
        return ""
    relative = Path(*module.split("."))
    for folder in (project.root / "src", project.root):
        for path in (folder / relative.with_suffix(".py"), folder / relative / "__init__.py"):
            try:
                return path.read_text(errors="replace")
            except OSError:
                continue
    return ""


def _port_default(source: str) -> int | None:
    """The port a module listens on unless PORT says otherwise, when it reads PORT."""
    match = PORT_DEFAULT.search(source)
    port = int(match[1]) if match else None
    return port if port and 0 < port < 65536 else None


def _dependency_names(project: Project) -> set[str]:
    """Every package of uv.lock (what the project may import at run time)."""
    return {p.name.lower().replace("_", "-") for p in uv_lock_packages(project)}


def _find(project: Project, pattern: str, file_name: str | None = None) -> str | None:
    """`module:object` (or, with `file_name`, the module of that file) of the first
    project file matching `pattern`, as an import path."""
    regex = re.compile(pattern, re.M)
    for folder in (project.root / "src", project.root):
        if not folder.is_dir():
            continue
        for path in sorted(folder.rglob(file_name or "*.py")):
            if ".venv" in path.parts or "tests" in path.parts:
                continue
            try:
                match = regex.search(path.read_text(errors="replace"))
            except OSError:
                continue
            if match:
                module = ".".join(path.relative_to(folder).with_suffix("").parts)
                module = module.removesuffix(".__init__")
                return module if file_name else f"{module}:{match[1]}"
    return None


def _suite(project: Project) -> tuple[str, str | None]:
    """The first Debian suite whose Python meets the project's request, and a note when
    none does."""
    request = python_request(project)
    if request is None:
        return SUITES[0], None
    for suite in SUITES:
        if satisfies(request, SUITE_PYTHON[suite]) is not False:
            return suite, None
    have = ", ".join(f"{s} {SUITE_PYTHON[s]}" for s in SUITES)
    return SUITES[0], (f"NOTE: no Debian suite's Python meets {request.text} "
                       f"({request.source}; {have}): use a base image that has it")


def _native_packages(project: Project) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Builder and runtime packages for dependencies built from source (see NATIVE)."""
    names = _dependency_names(project)
    no_binary = _no_binary(project)
    builder: list[str] = []
    runtime: list[str] = []
    for name, (dev, lib) in NATIVE.items():
        if name in names and (name in no_binary or not _has_wheels(project, name)):
            builder += dev
            runtime += lib
    return tuple(builder), tuple(runtime)


def _no_binary(project: Project) -> set[str]:
    uv = load_toml(project.lock_root / "pyproject.toml").get("tool", {}).get("uv", {})
    names = uv.get("no-binary-package", [])
    return {str(n).lower() for n in names} if isinstance(names, list) else set()


def _has_wheels(project: Project, name: str) -> bool:
    lock = load_toml(project.lock_root / "uv.lock")
    return any(p.get("name") == name and p.get("wheels") for p in lock.get("package", []))


def _base(suite: str, packages: tuple[str, ...], note: str | None, *, slim: bool) -> list[str]:
    """A bootstrapped Debian base with python3, as the samples in recipes/ have it: a
    standard builder, a slim runtime (no apt, perl, docs). Other packages go to the
    stage's `packages:`, so every recipe of a suite shares the same two bases (one
    bootstrap each, cached)."""
    lines = [f"  # {note}"] if note else []
    lines += ["  from:", "    bootstrap: debian", f"    suite: {suite}", "    packages: [python3]"]
    if slim:
        lines.append("    variant: slim          # no apt, perl, docs or locales")
    return lines + ([f"  packages: {_flow(packages)}"] if packages else [])


def _flow(items: tuple[str, ...] | list[str]) -> str:
    return "[" + ", ".join(_flow_item(item) for item in items) + "]"


def _flow_item(text: str) -> str:
    """A YAML scalar for a flow sequence: quoted when plain YAML would misread it (as
    a number, a boolean, null, a date...: the recipe wants strings)."""
    import yaml

    plain = (re.fullmatch(r"[A-Za-z0-9_./=-]+", text) and not text.startswith("-")
             or re.fullmatch(r"--?[A-Za-z][A-Za-z-]*", text))
    if plain and yaml.safe_load(f"[{text}]") == [text]:
        return text
    return json.dumps(text)
