"""`uvbuild inspect`: what an image in local storage is, read back from the image itself.

Its config (user, entrypoint, workdir, env with secret-looking values masked, ports,
labels), its layers base first with their sizes, and a summary of the SBOM uvbuild put at
`SBOM_PATH`. `image_facts` gathers them as JSON-ready data; `render` writes them as text.
"""

from __future__ import annotations

import json
import os
from typing import Any, Protocol

from uvbuild.engine.buildah import ImageInfo
from uvbuild.errors import EngineError
from uvbuild.output.progress import human_size
from uvbuild.output.sbom import SBOM_PATH, read_sbom, summarize

CACHE_NAMES = ("localhost/uvbuild-cache/", "localhost/uvbuild-base/")
# An env variable whose name contains one of these has its value shown as MASK.
SECRET_WORDS = ("SECRET", "TOKEN", "PASSWORD", "KEY")
MASK = "****"
_LABEL = 12  # width of the field names in the text form


class ImageSource(Protocol):
    """The part of `Buildah` that inspecting needs (a fake in tests)."""

    def image(self, ref: str) -> ImageInfo | None: ...

    def read_file(self, image: str, path: str, *, name: str) -> bytes | None: ...


def image_facts(engine: ImageSource, ref: str, *, container: str | None = None,
                ) -> dict[str, Any]:
    """Everything `uvbuild inspect` shows of `ref`, as JSON-ready data. `container` names
    the working container the SBOM is read through (a run's, see liveness.Claim)."""
    info = engine.image(ref)
    if info is None:
        raise EngineError(f"no image {ref!r} in local storage",
                          hint="build it first or check `buildah images`")
    sbom = engine.read_file(info.id, SBOM_PATH,
                            name=container or f"uvbuild-{os.getpid()}-inspect")
    return {
        "image": ref,  # the name asked about, whatever other names the image has
        "id": info.id,
        # uvbuild's own cache names last: the image is known by the names people gave it.
        "names": sorted(info.names, key=lambda name: name.startswith(CACHE_NAMES)),
        "created": info.created,
        "user": info.user,
        "entrypoint": list(info.entrypoint),
        "cmd": list(info.cmd),
        "workdir": info.workdir,
        "env": [masked_env(entry) for entry in info.env],
        "ports": list(info.ports),
        "labels": dict(sorted(info.labels.items())),
        "layers": [{"digest": digest, "size": size} for digest, size in info.layers],
        "size": info.size,
        "sbom": None if sbom is None else _sbom_facts(sbom),
    }


def render(facts: dict[str, Any]) -> str:
    """The text form of `image_facts`: one field per line, lists continued underneath."""
    layers = [f"{n:>2}  {_short(layer['digest']):<19}  {human_size(layer['size']):>9}"
              for n, layer in enumerate(facts["layers"], 1)]
    layers.append(f"{'total':<23}  {human_size(facts['size']):>9}")
    sbom = facts["sbom"]
    rows = [
        ("Image", [facts.get("image") or facts["id"]]),
        ("ID", [facts["id"]]),
        ("Names", facts["names"] or ["(none)"]),
        ("Created", [facts["created"] or "(unknown)"]),
        ("User", [facts["user"] or "(none: root)"]),
        ("Entrypoint", [_exec_form(facts["entrypoint"])]),
        ("Cmd", [_exec_form(facts["cmd"])]),
        ("Workdir", [facts["workdir"] or "(none)"]),
        ("Env", facts["env"] or ["(none)"]),
        ("Ports", facts["ports"] or ["(none)"]),
        ("Labels", [f"{k}={v}" for k, v in facts["labels"].items()] or ["(none)"]),
        ("Layers", layers),
        ("SBOM", [f"no SBOM at {SBOM_PATH}"] if sbom is None
         else [sbom["path"], *sbom["summary"].splitlines()]),
    ]
    lines = []
    for label, values in rows:
        for index, value in enumerate(values):
            lines.append(f"{label if index == 0 else '':<{_LABEL}}{value}".rstrip())
    return "\n".join(lines)


def masked_env(entry: str) -> str:
    """`NAME=value`, with the value replaced by MASK when the name looks like a secret."""
    name, sep, _ = entry.partition("=")
    if sep and any(word in name.upper() for word in SECRET_WORDS):
        return f"{name}={MASK}"
    return entry


def _sbom_facts(sbom: bytes) -> dict[str, Any]:
    summary = read_sbom(sbom)
    return {
        "path": SBOM_PATH,
        "spec_version": summary.spec_version if summary else None,
        "packages": [{"name": name, "version": version}
                     for name, version in (summary.packages if summary else ())],
        "summary": summarize(sbom),
    }


def _exec_form(argv: list[str]) -> str:
    return json.dumps(argv) if argv else "(none)"


def _short(digest: str) -> str:
    algorithm, _, value = digest.rpartition(":")
    return f"{algorithm}:{value[:12]}" if algorithm else value[:12]
