"""The command line. The only place that turns errors into messages and exit codes."""

from __future__ import annotations

import os
import signal
import sys
import traceback
from pathlib import Path
from types import FrameType
from typing import Any

import click

from uvbuild import __version__, redact
from uvbuild.engine import cmd
from uvbuild.errors import Interrupted, UvbuildError
from uvbuild.output.progress import Reporter

DEFAULT_RECIPE = Path("uvbuild.yaml")


class DefaultBuild(click.Group):
    """`uvbuild recipe.yaml` means `uvbuild build recipe.yaml`, and so does
    `uvbuild --no-cache -q recipe.yaml`: build's options may come first too. A bare
    `uvbuild` (or `uvbuild -q`) builds ./uvbuild.yaml."""

    OWN = ("--debug",)  # the group's options that take no value
    ASKS = ("-h", "--help", "--version")  # answered by the group itself

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        index = 0
        while index < len(args) and args[index] in self.OWN:
            index += 1
        rest = args[index:]
        if not rest or rest[0] not in self.commands and rest[0] not in self.ASKS:
            args = args[:index] + ["build"] + rest
        return super().parse_args(ctx, args)


@click.group(cls=DefaultBuild, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="uvbuild")
@click.option("--debug", is_flag=True, help="Echo every command and show tracebacks.")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """Build container images for uv projects with buildah: no daemon, no Dockerfile.

    `uvbuild RECIPE.yaml` builds (the same as `uvbuild build RECIPE.yaml`).
    """
    ctx.obj = {"debug": debug}
    cmd.set_debug(debug)


def _checked_tag(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """-t is checked before any work: a bad name would otherwise fail at tag time."""
    from uvbuild.recipe.imageref import EXAMPLE, reference_problem

    problem = None if value is None else reference_problem(value)
    if problem:
        raise click.BadParameter(f"{problem}: {value!r} ({EXAMPLE})")
    return value


def _checked_cache_repo(ctx: click.Context, param: click.Parameter,
                        value: str | None) -> str | None:
    if value is None:
        return None  # (click calls this without the option too: nothing to import)
    from uvbuild.build.regcache import repository_problem

    problem = repository_problem(value)
    if problem:
        raise click.BadParameter(f"{value!r}: {problem}")
    return value


def _file_problem(path: str) -> str | None:
    """Why a file cannot be written at `path` once the build is over, or None: checked
    before any work, so a typo does not cost a whole build (and leave a tagged image
    with no archive)."""
    import os

    if not path:
        return "no path"
    if os.path.isdir(path):
        return f"{path} is a folder"
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        return f"its folder {parent} does not exist"
    if not os.access(parent, os.W_OK | os.X_OK):
        return f"its folder {parent} is not writable"
    return None


def _checked_outputs(ctx: click.Context, param: click.Parameter,
                     value: tuple[str, ...]) -> tuple[str, ...]:
    if not value:
        return value
    from uvbuild.engine.buildah import ARCHIVE_TRANSPORTS

    for archive in value:
        transport, _, target = archive.partition(":")
        if transport not in ARCHIVE_TRANSPORTS:
            raise click.BadParameter(f"{archive!r}: expected oci-archive:PATH or "
                                     "docker-archive:PATH")
        problem = _file_problem(target.partition(":")[0])  # (PATH[:REFERENCE])
        if problem:
            raise click.BadParameter(f"{archive!r}: {problem}")
    return value


def _checked_sbom(ctx: click.Context, param: click.Parameter,
                  value: Path | None) -> Path | None:
    problem = None if value is None else _file_problem(str(value))
    if problem:
        raise click.BadParameter(f"{str(value)!r}: {problem}")
    return value


def _checked_cache_repos(ctx: click.Context, param: click.Parameter,
                         value: tuple[str, ...]) -> tuple[str, ...]:
    for repo in value:
        _checked_cache_repo(ctx, param, repo)
    return value


def _store_generation(run_root: Path) -> str:
    from uvbuild.build.liveness import store_generation  # (in buildah's prefetch thread)

    return store_generation(run_root)


@cli.command()
@click.argument("recipe", type=click.Path(path_type=Path), required=False,
                default=DEFAULT_RECIPE)
@click.option("-t", "--tag", callback=_checked_tag,
              help="Image name to tag; wins over the recipe's `image`.")
@click.option("--no-cache", is_flag=True, help="Run every step even if its result is cached.")
@click.option("--push", is_flag=True, help="Push the tagged image to its registry.")
@click.option("--tls-verify/--no-tls-verify", default=None,
              help="Verify registries' TLS (base pulls and push); --no-tls-verify for a "
              "plain-HTTP or self-signed registry.")
@click.option("--creds", envvar="UVBUILD_CREDS",
              help="USER[:PASSWORD] for the registry, base pulls and push (or $UVBUILD_CREDS: "
              "off the command line).")
@click.option("--authfile", help="Registry auth file (default: the containers auth file).")
@click.option("--cache-from", "cache_from", multiple=True, metavar="REGISTRY/REPO",
              callback=_checked_cache_repos,
              help="Look steps up in this registry cache before running them (repeatable: "
              "asked in order).")
@click.option("--cache-to", "cache_to", metavar="REGISTRY/REPO", callback=_checked_cache_repo,
              help="Export the build's step results to this registry cache once it succeeded.")
@click.option("--output", "outputs", multiple=True, metavar="oci-archive:PATH",
              callback=_checked_outputs,
              help="Also write the image as oci-archive:PATH or docker-archive:PATH.")
@click.option("--sbom", "sbom_file", type=click.Path(path_type=Path), callback=_checked_sbom,
              help="Also write the image's CycloneDX SBOM to this file.")
@click.option("-q", "--quiet", is_flag=True, help="Print only the image ID.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document (for CI).")
@click.option("-v", "--verbose", is_flag=True, help="Show the output of builder commands.")
def build(recipe: Path, tag: str | None, no_cache: bool, push: bool, tls_verify: bool | None,
          creds: str | None, authfile: str | None, cache_from: tuple[str, ...],
          cache_to: str | None, outputs: tuple[str, ...], sbom_file: Path | None, quiet: bool,
          as_json: bool, verbose: bool) -> None:
    """Build RECIPE (default: ./uvbuild.yaml) into a tested, tagged image."""
    # Imported here, not at the top, as every command's modules are: a command pays only
    # for its own. And buildah is asked for the store's run root before the build's
    # modules load: its `buildah info` runs meanwhile (Buildah.prefetch).
    from uvbuild.engine.buildah import Buildah

    engine = Buildah()
    # The store's images are listed then too (Build.run takes that listing unless a
    # `cache prune` ran since: the store's generation says).
    engine.prefetch(generation=_store_generation)
    from uvbuild.pipeline import Outputs
    from uvbuild.pipeline import build as run_build

    if creds:
        redact.add(creds)
        redact.add(creds.partition(":")[2])
    reporter = Reporter("json" if as_json else "quiet" if quiet else "human")
    result = run_build(recipe, tag=tag, reporter=reporter, no_cache=no_cache, verbose=verbose,
                       cache_from=cache_from, cache_to=cache_to, engine=engine,
                       outputs=Outputs(push=push, archives=outputs, tls_verify=tls_verify,
                                       creds=creds, authfile=authfile, sbom=sbom_file))
    reporter.done(image=result.image, image_id=result.image_id, size=result.size,
                  seconds=result.seconds, pushed=result.pushed)


@cli.command()
@click.argument("recipe", type=click.Path(path_type=Path), required=False,
                default=DEFAULT_RECIPE)
@click.option("-t", "--tag", callback=_checked_tag, help="Image name to plan for.")
@click.option("--no-engine", is_flag=True, help="Do not ask buildah anything (cache unknown).")
def plan(recipe: Path, tag: str | None, no_engine: bool) -> None:
    """Print the planned steps, their cache keys and whether each is cached, will run,
    or is not needed (what a cached step needs)."""
    from uvbuild.engine.buildah import Buildah
    from uvbuild.pipeline import cached_names, plan_recipe
    from uvbuild.plan.planner import ResolveBase

    engine = None if no_engine else Buildah()
    _, the_plan = plan_recipe(recipe, tag=tag, engine=engine, pull=False)
    cached = cached_names(engine) if engine else {}
    click.echo(f"image: {the_plan.image}")
    click.echo(f"timestamp: {the_plan.timestamp}")
    found: dict[str, bool] = {}
    for step in the_plan.steps:
        if engine is None:
            continue
        if isinstance(step, ResolveBase):
            # Bases are not under CACHE_REPO (bootstrapped ones are in BASE_REPO): a base
            # is ready when local storage has it.
            found[step.name] = engine.image(step.cache_ref) is not None
        else:
            found[step.name] = step.cached(cached) is not None
    # As the build walks it, from the final step: what a found step needs is not needed
    # (install-project keeps no image: with its layer cached, it does not run).
    to_run: set[str] = set()
    walk = [the_plan.final.name] if engine is not None else []
    while walk:
        name = walk.pop()
        if name in to_run or found[name]:
            continue
        to_run.add(name)
        walk.extend(the_plan.step(name).needs)
    for step in the_plan.steps:
        state = ("unknown" if engine is None else "cached" if found[step.name]
                 else "to run" if step.name in to_run else "not needed")
        click.echo(f"  {step.name:<18} {step.key[:12]}  {state:<11} {step.describe()}")


@cli.group()
def cache() -> None:
    """Inspect and prune uvbuild's step cache (images in local storage)."""


@cache.command("ls")
def cache_ls() -> None:
    """List cached step images and layer cache entries."""
    from uvbuild.commands.cache import list_entries
    from uvbuild.engine.buildah import Buildah
    from uvbuild.pipeline import layer_cache

    engine = Buildah()
    for entry in list_entries(engine, layers=layer_cache(engine.run_root())):
        click.echo(f"{entry.step:<18} {entry.key}  {entry.image_id[:12]}  {entry.size}")


@cache.command("prune")
@click.option("--all", "everything", is_flag=True,
              help="Also remove bootstrapped bases and cached final images.")
@click.option("--registry", "registry_repo", metavar="REGISTRY/REPO",
              callback=_checked_cache_repo,
              help="Prune this registry cache (--cache-to's repository) instead of the "
              "local store.")
@click.option("--keep", type=click.IntRange(min=0), metavar="N",
              help="With --registry: keep the N newest entries of each step.")
@click.option("--dry-run", is_flag=True, help="With --registry: list what would be deleted.")
@click.option("--tls-verify/--no-tls-verify", default=None,
              help="With --registry: verify its TLS (--no-tls-verify for plain HTTP).")
@click.option("--creds", envvar="UVBUILD_CREDS",
              help="With --registry: USER[:PASSWORD] (or $UVBUILD_CREDS).")
@click.option("--authfile", help="With --registry: a registry auth file.")
def cache_prune(everything: bool, registry_repo: str | None, keep: int | None, dry_run: bool,
                tls_verify: bool | None, creds: str | None, authfile: str | None) -> None:
    """Remove what killed builds left, and cached step images (not under a running build);
    with --registry, the older entries of a registry cache."""
    import shutil

    from uvbuild.commands.cache import prune
    from uvbuild.engine.buildah import Buildah
    from uvbuild.pipeline import bytecode_folder, layer_cache, memo_folder

    if registry_repo is not None:
        _prune_registry(registry_repo, keep, dry_run, everything, tls_verify, creds, authfile)
        return
    if keep is not None or dry_run:
        raise click.UsageError("--keep and --dry-run go with --registry REGISTRY/REPO")
    engine = Buildah()
    pruned = prune(everything=everything, engine=engine, layers=layer_cache(engine.run_root()))
    # (What a build worked out from file contents, and the dependencies' .pyc files:
    # remade by the next build that needs them.)
    shutil.rmtree(memo_folder(), ignore_errors=True)
    shutil.rmtree(bytecode_folder(), ignore_errors=True)
    swept = pruned.swept
    click.echo(f"removed {swept.containers} leftover working container(s), "
               f"{swept.folders} leftover folder(s), {swept.processes} orphaned process(es), "
               f"{swept.images} unnamed image(s), {pruned.images} cache image(s), "
               f"{pruned.layers} layer cache entr{'y' if pruned.layers == 1 else 'ies'}")
    if pruned.running:
        click.echo(f"kept the cache images: {pruned.running} build(s) running in this store "
                   "may need them; prune again when they have ended", err=True)


def _prune_registry(repo: str, keep: int | None, dry_run: bool, everything: bool,
                    tls_verify: bool | None, creds: str | None, authfile: str | None) -> None:
    from uvbuild.commands.cache import prune_registry
    from uvbuild.engine.buildah import RegistryAccess

    if keep is None:
        raise click.UsageError("--registry needs --keep N (the entries to keep per step)")
    if everything:
        raise click.UsageError("--all is for the local store, not with --registry")
    if creds:
        redact.add(creds)
        redact.add(creds.partition(":")[2])
    access = RegistryAccess(tls_verify=tls_verify, creds=creds, authfile=authfile)
    pruned = prune_registry(repo, keep=keep, dry_run=dry_run, access=access)
    verb = "would delete" if dry_run else "deleted"
    for entry in pruned.deleted:
        click.echo(f"{verb} {repo}:{entry.tag}  exported {entry.exported or 'unknown'}")
    click.echo(f"{verb} {len(pruned.deleted)} entr{'y' if len(pruned.deleted) == 1 else 'ies'}"
               f", kept {pruned.kept}" + (f"; left {len(pruned.foreign)} tag(s) that are not "
                                          "uvbuild cache entries" if pruned.foreign else ""))


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print the checks as one JSON document.")
def doctor(as_json: bool) -> None:
    """Check buildah, podman, rootless setup, mmdebstrap, uv and network settings."""
    from uvbuild.commands.doctor import HostProbe, problems, report, run_checks
    from uvbuild.errors import EngineError

    checks = run_checks(HostProbe())
    click.echo(report(checks, as_json=as_json))
    if problems(checks):
        raise EngineError(f"doctor found {problems(checks)} problem(s)")


@cli.command("init")
@click.argument("folder", type=click.Path(path_type=Path), required=False, default=Path("."))
@click.option("--force", is_flag=True, help="Overwrite an existing uvbuild.yaml.")
def init_command(folder: Path, force: bool) -> None:
    """Write FOLDER/uvbuild.yaml (default: ./uvbuild.yaml) for the uv project there."""
    from uvbuild.commands.init import init

    path = init(folder, force=force)
    click.echo(f"wrote {path}; build it with: uvbuild {path}")


@cli.command("inspect")
@click.argument("image")
@click.option("--json", "as_json", is_flag=True, help="Print the same facts as one JSON document.")
def inspect_command(image: str, as_json: bool) -> None:
    """Show IMAGE's config, layers and sizes, and the SBOM it carries."""
    import json

    from uvbuild.build.liveness import Claim, Places
    from uvbuild.commands.inspect import image_facts, render
    from uvbuild.engine.buildah import Buildah

    engine = Buildah()
    # A run of its own: its container is known as live by its lock (see liveness.py).
    claim = Claim(Places.of(engine.run_root()), shared_store=False)
    try:
        facts = image_facts(engine, image, container=claim.container_name("inspect"))
    finally:
        claim.close()
    click.echo(json.dumps(facts, indent=2) if as_json else render(facts))


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise Interrupted("terminated (SIGTERM)")


def main(argv: list[str] | None = None) -> Any:
    """Entry point: run the CLI; map errors to one message and a distinct exit code.

    Everything printed meanwhile, by uvbuild or by the commands it streams, passes
    through redact.py, which masks every known secret value.
    """
    from uvbuild.engine.netenv import PROXY_VARIABLES

    for name in PROXY_VARIABLES:
        for variant in (name, name.lower()):
            redact.add_url(os.environ.get(variant, ""))
    out, err = sys.stdout, sys.stderr
    writers = redact.RedactingWriter(out), redact.RedactingWriter(err)
    sys.stdout, sys.stderr = writers
    try:
        return _main(argv)
    except SystemExit:
        for writer in writers:
            writer.finish()
        sys.stdout, sys.stderr = out, err
        raise
    except BaseException:
        # Not one of ours: Python prints its traceback after this, through the writers.
        for writer in writers:
            writer.finish()
        raise


def _main(argv: list[str] | None) -> Any:
    signal.signal(signal.SIGTERM, _on_sigterm)
    args = sys.argv[1:] if argv is None else argv
    debug = "--debug" in args
    try:
        cli.main(args=args, prog_name="uvbuild", standalone_mode=False)
    except click.exceptions.Exit as exc:
        return sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        return sys.exit(exc.exit_code)
    except (click.exceptions.Abort, KeyboardInterrupt):
        click.echo("uvbuild: interrupted; working containers were removed", err=True)
        _json_failure(args, "interrupted", "interrupted; working containers were removed",
                      None, 130)
        return sys.exit(130)
    except UvbuildError as exc:
        if debug:
            traceback.print_exc()
        click.echo(f"uvbuild: {exc.kind}: {exc}", err=True)
        _json_failure(args, exc.kind, exc.message, exc.hint, exc.exit_code)
        return sys.exit(exc.exit_code)
    return sys.exit(0)


def _json_failure(args: list[str], kind: str, message: str, hint: str | None,
                  code: int) -> None:
    """With --json, a failed build prints one JSON document too (stdout), as a
    successful one does: CI reads the same place either way."""
    if "--json" not in args:
        return
    import json

    click.echo(json.dumps({"error": {"kind": kind, "message": message, "hint": hint,
                                     "exit_code": code}}))

