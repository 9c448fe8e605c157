"""Read a recipe file (RECIPE.md, version 1) into the frozen dataclasses of `recipe.model`.

The YAML is composed, not constructed, so every node keeps its line and each mistake is
reported as `file:line: key.path: what is wrong`. Unknown keys are errors naming the
closest known key, never warnings. Paths are resolved here, not checked; secret values
are never read.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import re
import signal
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, TypeGuard, TypeVar

import yaml
from yaml.constructor import SafeConstructor
from yaml.events import AliasEvent
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from uvbuild.errors import RecipeError
from uvbuild.recipe.imageref import EXAMPLE, base_problem, reference_problem
from uvbuild.recipe.model import (
    BOOTSTRAP_VARIANTS,
    Base,
    BootstrapBase,
    BootstrapVariant,
    Builder,
    CopyEntry,
    ImageBase,
    Recipe,
    Runtime,
    SyncOptions,
)

SUPPORTED_VERSION = 1
BOOTSTRAP_DISTRIBUTIONS = ("debian",)

TOP_KEYS = ("version", "project", "image", "builder", "runtime")
# The values uv's bytecode compile takes for PYC_INVALIDATION_MODE (py_compile's modes).
PYC_MODES = ("TIMESTAMP", "CHECKED_HASH", "UNCHECKED_HASH")
BUILDER_KEYS = ("from", "packages", "env", "secrets", "python", "sync", "run")
RUNTIME_KEYS = ("from", "packages", "copy", "user", "workdir", "env", "entrypoint", "cmd",
                "expose", "labels", "stop-signal", "test")
SYNC_KEYS = ("groups", "extras", "all-extras", "compile-bytecode")
BOOTSTRAP_KEYS = ("bootstrap", "suite", "packages", "snapshot", "variant")
COPY_KEYS = ("from", "to")

_TAG = "tag:yaml.org,2002:"
_STR, _INT, _FLOAT, _BOOL, _NULL = (_TAG + k for k in ("str", "int", "float", "bool", "null"))
_KINDS = {_INT: "integer", _FLOAT: "number", _BOOL: "boolean", _TAG + "timestamp": "date"}

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_SNAPSHOT = re.compile(r"\d{8}T\d{6}Z")
_ABSOLUTE = re.compile(r"/.*")
_PORT = re.compile(r"\d{1,5}(/tcp|/udp|/sctp)?")
_USER = re.compile(r"[a-z_][a-z0-9_.-]*\$?|\d+")
_COMMAND_NAME = re.compile(r"[A-Za-z0-9_.+-]+")
_SIGNAL = re.compile(r"[A-Za-z0-9+-]+")
_SIGNALS = {name for name in signal.Signals.__members__ if name.startswith("SIG")}
_SIGNALS |= {f"SIGRTMIN+{n}" for n in range(31)} | {f"SIGRTMAX-{n}" for n in range(31)}
# Bounds on hostile input. Aliases let a small file stand for a huge recipe (each alias
# repeats its anchor's whole subtree wherever the recipe is used), so the recipe is
# measured as if every alias were written out.
MAX_EXPANDED_CHARS = 1 << 20  # characters of keys and values, aliases expanded
MAX_EXPANDED_NODES = 100_000  # keys, values, lists and mappings, aliases expanded
# Lists and mappings nested deeper than any recipe needs: composing recurses per level,
# and `[[[[...` a few thousand deep would end in Python's RecursionError.
MAX_DEPTH = 64
# What `buildah config` gets on its command line (labels, runtime.env, entrypoint, cmd...)
# must stay well under Linux's limits: 128 KiB per argument (MAX_ARG_STRLEN) and about
# 2 MiB for all arguments and the environment together (ARG_MAX).
MAX_ARGUMENT_BYTES = 32 << 10  # one value as the argument it becomes, e.g. KEY=value
MAX_CONFIG_BYTES = 256 << 10  # every runtime value that goes to `buildah config`
_FROM_HINT = "e.g. `from: docker.io/library/python:3.13-slim` or `from: {bootstrap: debian}`"

T = TypeVar("T")
D = TypeVar("D")  # a default, e.g. () or None
Read = Callable[[Node, str], T]  # reads one node at a key path
Pairs = dict[str, tuple[Node, Node]]  # key -> (key node, value node)
Values = tuple[tuple[str, str], ...]  # sorted (name, value) pairs


def load_recipe(path: Path) -> Recipe:
    """Read and check the recipe file at `path`.

    Raises RecipeError, naming the file and line, for a missing or unreadable file,
    invalid YAML, or anything RECIPE.md does not allow.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise RecipeError(f"{path}: recipe file not found",
                          hint="name a recipe file, or write one with `uvbuild init`"
                          ) from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise RecipeError(f"{path}: cannot read the recipe: {exc}") from exc
    return load_recipe_text(text, path)


def load_recipe_text(text: str, path: Path) -> Recipe:
    """Check recipe `text` as if read from `path`.

    Messages name `path`, and relative paths in the recipe resolve against its folder.
    """
    try:
        root = _compose(text, str(path))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        what = exc.problem or exc.context or "unreadable"
        if exc.problem and exc.context and exc.context_mark:
            what += f" ({exc.context} at line {exc.context_mark.line + 1})"
        raise RecipeError(f"{where}: invalid YAML: {what}") from exc
    except yaml.YAMLError as exc:
        raise RecipeError(f"{path}: invalid YAML: {exc}") from exc
    if root is None:
        raise RecipeError(f"{path}:1: the recipe is empty", hint="start it with `version: 1`")
    return _Reader(str(path)).recipe(root, path.absolute())


def _compose(text: str, file: str) -> Node | None:
    """yaml.compose with the recipe's expanded size bounded (see _BoundedLoader)."""
    loader = _BoundedLoader(text, file)
    try:
        return loader.get_single_node()
    finally:
        loader.dispose()


def _default(model: type[Any], name: str) -> Any:
    """The default of `model`'s field `name`: recipe/model.py is the one home of the
    recipe's defaults, the loader only reads them."""
    (found,) = (f for f in dataclasses.fields(model) if f.name == name)
    assert found.default is not dataclasses.MISSING, f"{model.__name__}.{name} has no default"
    return found.default

class _BoundedLoader(yaml.SafeLoader):
    """A composer that counts the recipe as if every alias were written out in full.

    Composing shares one node per anchor, so aliases cost nothing here; but whatever
    reads the recipe afterwards (the reader, the plan, cache keys) walks each alias
    again. Each scalar adds its length and each alias the size its anchor had when
    composed, so counting is linear in the file even for nested aliases, and the
    first scalar or alias that crosses a bound is refused with its line.
    """

    def __init__(self, text: str, file: str) -> None:
        super().__init__(text)
        self.file = file
        self.chars = 0
        self.nodes = 0
        self.sizes: dict[int, tuple[int, int]] = {}  # id(anchored node) -> (chars, nodes)
        self.depth = 0

    def compose_node(self, parent: Node | None, index: int) -> Node | None:
        self.depth += 1
        try:
            if self.depth > MAX_DEPTH:
                line = self.peek_event().start_mark.line + 1  # type: ignore[no-untyped-call]
                raise RecipeError(f"{self.file}:{line}: lists and mappings are nested more "
                                  f"than {MAX_DEPTH} deep here",
                                  hint="a recipe is a few levels deep: check the brackets")
            return self._compose_counted(parent, index)
        finally:
            self.depth -= 1

    def _compose_counted(self, parent: Node | None, index: int) -> Node | None:
        if self.check_event(AliasEvent):
            event: Any = self.peek_event()  # type: ignore[no-untyped-call]  # untyped in types-PyYAML
            node = super().compose_node(parent, index)
            size = self.sizes.get(id(node))
            if size is None:  # its anchor is still open: the alias is inside it
                raise RecipeError(f"{self.file}:{event.start_mark.line + 1}: alias "
                                  f"*{event.anchor} refers to a node that contains it",
                                  hint="recipes cannot be recursive; write the value out")
            self.count(*size, event.start_mark, f"alias *{event.anchor}")
            return node
        chars, nodes = self.chars, self.nodes
        anchor = self.peek_event().anchor  # type: ignore[no-untyped-call]  # untyped in types-PyYAML
        node = super().compose_node(parent, index)
        if node is None:  # the composer makes a node for every node event; never None here
            return node
        if isinstance(node, ScalarNode):
            self.count(len(node.value), 1, node.start_mark, "value")
        else:
            self.count(0, 1, node.start_mark, "value")
        if anchor is not None:
            self.sizes[id(node)] = (self.chars - chars, self.nodes - nodes)
        return node

    def count(self, chars: int, nodes: int, mark: yaml.Mark, what: str) -> None:
        self.chars += chars
        self.nodes += nodes
        if self.chars > MAX_EXPANDED_CHARS:
            limit = f"{MAX_EXPANDED_CHARS:,} characters of keys and values"
        elif self.nodes > MAX_EXPANDED_NODES:
            limit = f"{MAX_EXPANDED_NODES:,} keys, values, lists and mappings"
        else:
            return
        raise RecipeError(
            f"{self.file}:{mark.line + 1}: the recipe is too large with its aliases "
            f"expanded: this {what} takes it past the limit of {limit}",
            hint="a recipe holds settings, not data: put large content in project files",
        )


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _is(node: Node, tag: str) -> TypeGuard[ScalarNode]:
    return isinstance(node, ScalarNode) and node.tag == tag


def _describe(node: Node) -> str:
    """Name what was found, for "expected X, found Y"."""
    if not isinstance(node, ScalarNode):
        return "a mapping" if isinstance(node, MappingNode) else "a list"
    if node.tag == _STR:
        text = node.value if len(node.value) < 40 else node.value[:36] + "..."
        return f"the string {text!r}"
    if node.tag == _NULL:
        return "nothing (null)"
    if node.tag == _TAG + "merge":
        return "a YAML merge key (<<), which recipes do not support"
    return f"the {_KINDS[node.tag]} {node.value}" if node.tag in _KINDS else f"a {node.tag} value"


class _Reader:
    """Turns composed YAML nodes into recipe values; every error names file:line and key path."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.config_bytes = 0  # what runtime values add to `buildah config`'s arguments

    def error(self, node: Node, path: str, what: str, hint: str | None = None) -> RecipeError:
        where = f"{self.file}:{node.start_mark.line + 1}"
        return RecipeError(f"{where}: {path}: {what}" if path else f"{where}: {what}", hint=hint)

    def wrong_type(
        self, node: Node, path: str, expected: str, hint: str | None = None
    ) -> RecipeError:
        if _is(node, _NULL):
            hint = "give a value, or leave the key out"
        return self.error(node, path, f"expected {expected}, found {_describe(node)}", hint)

    def pairs(self, node: Node, path: str, expected: str) -> Pairs:
        """The (key node, value node) of each key of a mapping."""
        if not isinstance(node, MappingNode):
            raise self.wrong_type(node, path, expected)
        found: Pairs = {}
        for key_node, value_node in node.value:
            if not _is(key_node, _STR) or not key_node.value:
                raise self.wrong_type(key_node, path, "a string key")
            if key_node.value in found:
                first = found[key_node.value][0].start_mark.line + 1
                raise self.error(key_node, _join(path, key_node.value),
                                 f"duplicate key (first at line {first})")
            found[key_node.value] = (key_node, value_node)
        return found

    def check_known(self, pairs: Pairs, path: str, known: Sequence[str]) -> None:
        for key, (key_node, _) in pairs.items():
            if key not in known:
                close = difflib.get_close_matches(key, known, n=1)
                what = f"unknown key; did you mean {close[0]!r}?" if close else "unknown key"
                hint = f"known keys {'in ' + path if path else 'at the top'}: {', '.join(known)}"
                raise self.error(key_node, _join(path, key), what, hint)

    def mapping(self, node: Node, path: str, known: Sequence[str]) -> dict[str, Node]:
        pairs = self.pairs(node, path, "a mapping")
        self.check_known(pairs, path, known)
        return {key: value for key, (_, value) in pairs.items()}

    def get(self, fields: dict[str, Node], path: str, key: str, read: Read[T], default: D) -> T | D:
        node = fields.get(key)
        return default if node is None else read(node, _join(path, key))

    def need(self, fields: dict[str, Node], parent: Node, path: str, key: str, read: Read[T],
             hint: str | None = None) -> T:
        if key not in fields:
            raise self.error(parent, _join(path, key), "required key is missing", hint)
        return read(fields[key], _join(path, key))

    def any_string(self, node: Node, path: str, expected: str = "a string") -> str:
        if not _is(node, _STR):
            hint = f'quote it: "{node.value}"' if isinstance(node, ScalarNode) else None
            raise self.wrong_type(node, path, expected, hint)
        return str(node.value)

    def string(self, node: Node, path: str, expected: str = "a non-empty string") -> str:
        value = self.any_string(node, path, expected)
        if not value.strip():
            raise self.error(node, path, f"expected {expected}, found an empty string")
        return value

    def matching(self, node: Node, path: str, pattern: re.Pattern[str], expected: str,
                 hint: str | None = None) -> str:
        """A string, or an integer as written, that `pattern` matches in full."""
        value = node.value if _is(node, _INT) else self.string(node, path, expected)
        if not pattern.fullmatch(value):
            raise self.error(node, path, f"expected {expected}, found {value!r}", hint)
        return value

    def argument(self, node: Node, path: str, argument: str, *, config: bool = False) -> None:
        """Refuse a value whose command-line argument (e.g. KEY=value) is too long for
        buildah; `config`: count it towards the total of `buildah config`'s arguments."""
        size = len(argument.encode("utf-8", "surrogateescape"))
        hint = "a recipe holds settings, not data: put long content in a project file"
        if size > MAX_ARGUMENT_BYTES:
            raise self.error(node, path, f"too long: {size:,} bytes as a command-line argument "
                             f"of buildah, the limit is {MAX_ARGUMENT_BYTES:,} bytes per value",
                             hint)
        if config:
            self.config_bytes += size
            if self.config_bytes > MAX_CONFIG_BYTES:
                raise self.error(node, path, "too long: the runtime's env, labels, entrypoint, "
                                 "cmd and other image settings come to more than "
                                 f"{MAX_CONFIG_BYTES:,} bytes in all with this one", hint)

    def on_argv(self, read: Read[T], arguments: Callable[[T], Iterable[str]],
                config: bool = False) -> Read[T]:
        """`read`, then each argument the value becomes checked by `argument`."""
        def read_checked(node: Node, path: str) -> T:
            value = read(node, path)
            for argument in arguments(value):
                self.argument(node, path, argument, config=config)
            return value

        return read_checked

    def boolean(self, node: Node, path: str) -> bool:
        if not _is(node, _BOOL):
            hint = "write true or false, without quotes" if _is(node, _STR) else None
            raise self.wrong_type(node, path, "true or false", hint)
        return bool(SafeConstructor.bool_values[node.value.lower()])

    def version(self, node: Node, path: str) -> int:
        if not _is(node, _INT):
            raise self.wrong_type(node, path, f"the integer {SUPPORTED_VERSION}")
        version = int(SafeConstructor().construct_yaml_int(node))
        if version != SUPPORTED_VERSION:
            raise self.error(node, path, f"unsupported recipe version {version}; "
                             f"this uvbuild reads version {SUPPORTED_VERSION}")
        return version

    def image(self, node: Node, path: str) -> str:
        ref = self.string(node, path, "a non-empty image reference")
        self.argument(node, path, ref)
        problem = reference_problem(ref)
        if problem:
            raise self.error(node, path, f"{problem}: {ref!r}", hint=EXAMPLE)
        return ref

    def abs_path(self, node: Node, path: str) -> str:
        value = self.matching(node, path, _ABSOLUTE, "an absolute path (starting with /)")
        self.argument(node, path, value)
        return value

    def env_name(self, node: Node, path: str) -> str:
        return self.matching(node, path, _ENV_NAME, "an environment variable name",
                             hint="use letters, digits and _, not starting with a digit")

    def label_key(self, node: Node, path: str) -> str:
        # `buildah config --label KEY=VALUE` splits at the first `=`: a key holding one
        # would be silently rewritten; blanks and control characters make no usable key.
        key = self.string(node, path, "a label name")
        if "=" in key or any(char.isspace() or not char.isprintable() for char in key):
            raise self.error(node, path, f"a label name cannot contain '=', spaces or control "
                             f"characters: {key!r}",
                             hint="use a reverse-DNS name, e.g. org.example.team")
        return key

    def python(self, node: Node, path: str) -> str:
        expected = "an absolute path or a command name"
        value = self.string(node, path, f"a non-empty string: {expected}")
        if not value.startswith("/") and not _COMMAND_NAME.fullmatch(value):
            raise self.error(node, path, f"expected {expected}, found {value!r}",
                             hint="e.g. /usr/bin/python3 or python3.13")
        return value

    def user(self, node: Node, path: str) -> str:
        expected = "a user name or a numeric uid"
        return self.matching(node, path, _USER, expected, hint="e.g. app, 1000 or root")

    def port(self, node: Node, path: str) -> str:
        expected = "a port 1-65535, optionally with /tcp, /udp or /sctp"
        value = self.matching(node, path, _PORT, expected, hint="e.g. 8080 or 53/udp")
        number, slash, protocol = value.partition("/")
        if not 1 <= int(number) <= 65535:
            raise self.error(node, path, f"expected {expected}, found {value!r}")
        return f"{int(number)}{slash}{protocol}"

    def signal(self, node: Node, path: str) -> str:
        value = self.matching(node, path, _SIGNAL, "a signal name or number").upper()
        name = value if value.startswith("SIG") else "SIG" + value
        if not ((value.isdigit() and 1 <= int(value) <= 64) or name in _SIGNALS):
            raise self.error(node, path, f"unknown signal {value!r}", hint="e.g. SIGTERM or 15")
        return value

    def items(self, node: Node, path: str, expected: str) -> list[tuple[Node, str]]:
        if not isinstance(node, SequenceNode):
            hint = f"write a list: [{node.value}]" if _is(node, _STR) and node.value else None
            raise self.wrong_type(node, path, expected, hint)
        return [(item, f"{path}[{index}]") for index, item in enumerate(node.value)]

    def list_of(self, read: Read[T], expected: str) -> Read[tuple[T, ...]]:
        def read_all(node: Node, path: str) -> tuple[T, ...]:
            return tuple(read(item, at) for item, at in self.items(node, path, expected))

        return read_all

    def strings(self, node: Node, path: str) -> tuple[str, ...]:
        return self.list_of(self.string, "a list of strings")(node, path)

    def command(self, node: Node, path: str) -> tuple[str, ...]:
        """A list of arguments, or a string run as `/bin/sh -c STRING`."""
        if _is(node, _STR):
            return ("/bin/sh", "-c", self.string(node, path, "a non-empty shell command"))
        expected = "a list of strings or a shell command string"
        return tuple(self.any_string(item, at) for item, at in self.items(node, path, expected))

    def entrypoint(self, node: Node, path: str) -> tuple[str, ...]:
        argv = self.command(node, path)
        if not argv:
            raise self.error(node, path, "expected a command, found an empty list",
                             hint="leave entrypoint out to keep the base image's")
        return argv

    def values(self, node: Node, path: str, check_name: Read[str] | None = None,
               *, config: bool = False) -> Values:
        """A mapping of names to scalars, sorted; numbers and booleans are kept as written.

        `config`: each pair goes to `buildah config` as one NAME=value argument.
        """
        pairs = []
        found = self.pairs(node, path, "a mapping of names to values")
        for key, (key_node, value_node) in found.items():
            if check_name is not None:
                check_name(key_node, _join(path, key))
            if not any(_is(value_node, tag) for tag in (_STR, _INT, _FLOAT, _BOOL)):
                raise self.wrong_type(value_node, _join(path, key), "a string, number or boolean")
            if config:
                self.argument(value_node, _join(path, key), f"{key}={value_node.value}",
                              config=True)
            pairs.append((key, value_node.value))
        return tuple(sorted(pairs))

    def env(self, node: Node, path: str) -> Values:
        return self.values(node, path, self.env_name)

    def builder_env(self, node: Node, path: str) -> Values:
        """builder.env; PYC_INVALIDATION_MODE there, which the dependencies' bytecode
        compile reads as uv's does, must name one of py_compile's modes."""
        env = self.env(node, path)
        given = self.pairs(node, path, "a mapping of names to values").get(
            "PYC_INVALIDATION_MODE")
        if given is not None and given[1].value not in PYC_MODES:
            raise self.error(given[1], _join(path, "PYC_INVALIDATION_MODE"),
                             f"{given[1].value!r} is not a mode of .pyc files; it may be "
                             f"{', '.join(PYC_MODES)}",
                             hint="CHECKED_HASH, the default, keeps builds reproducible; "
                             "TIMESTAMP .pyc files are stale in an image, whose files all "
                             "carry the build's time")
        return env

    def config_env(self, node: Node, path: str) -> Values:
        return self.values(node, path, self.env_name, config=True)

    def config_labels(self, node: Node, path: str) -> Values:
        return self.values(node, path, self.label_key, config=True)

    def packages(self, node: Node, path: str) -> tuple[str, ...]:
        """Package names: each one is an argument of the package manager."""
        return self.list_of(self.on_argv(self.string, lambda name: (name,)),
                            "a list of strings")(node, path)

    def base(self, node: Node, path: str) -> Base:
        if not isinstance(node, MappingNode):
            expected = "an image reference or {bootstrap: debian}"
            ref = self.string(node, path, expected)
            problem = base_problem(ref)
            if problem:
                raise self.error(node, path, f"{problem}: {ref!r}", hint=_FROM_HINT)
            return ImageBase(ref=ref)
        fields = self.mapping(node, path, BOOTSTRAP_KEYS)
        distribution = self.need(fields, node, path, "bootstrap", self.string)
        if distribution not in BOOTSTRAP_DISTRIBUTIONS:
            raise self.error(fields["bootstrap"], _join(path, "bootstrap"),
                             f"unsupported distribution {distribution!r}; "
                             f"supported: {', '.join(BOOTSTRAP_DISTRIBUTIONS)}")
        return BootstrapBase(
            distribution=distribution,
            suite=self.get(fields, path, "suite", self.string, _default(BootstrapBase, "suite")),
            # mmdebstrap gets them as one argument: --include=a,b,c
            packages=self.get(fields, path, "packages", self.on_argv(
                self.packages, lambda names: (",".join(names),)), ()),
            snapshot=self.get(fields, path, "snapshot", self.snapshot, None),
            variant=self.get(fields, path, "variant", self.variant,
                             _default(BootstrapBase, "variant")),
        )

    def variant(self, node: Node, path: str) -> BootstrapVariant:
        choices = " or ".join(BOOTSTRAP_VARIANTS)
        value = self.string(node, path, f"a variant: {choices}")
        for known in BOOTSTRAP_VARIANTS:
            if value == known:
                return known
        close = difflib.get_close_matches(value, BOOTSTRAP_VARIANTS, n=1)
        guess = f"; did you mean {close[0]!r}?" if close else ""
        raise self.error(node, path, f"unknown variant {value!r}{guess}",
                         hint=f"choose {choices}: slim has no apt, no perl, no docs or locales")

    def snapshot(self, node: Node, path: str) -> str:
        return self.matching(node, path, _SNAPSHOT, "a snapshot time YYYYMMDDTHHMMSSZ",
                             hint="e.g. 20250520T000000Z")

    def sync(self, node: Node, path: str) -> SyncOptions:
        fields = self.mapping(node, path, SYNC_KEYS)
        options = SyncOptions(
            groups=self.get(fields, path, "groups", self.strings, ()),
            extras=self.get(fields, path, "extras", self.strings, ()),
            all_extras=self.get(fields, path, "all-extras", self.boolean,
                                _default(SyncOptions, "all_extras")),
            compile_bytecode=self.get(fields, path, "compile-bytecode", self.boolean,
                                      _default(SyncOptions, "compile_bytecode")),
        )
        if options.all_extras and options.extras:
            raise self.error(fields["extras"], _join(path, "extras"),
                             "cannot be combined with all-extras: true (uv refuses both)")
        return options

    def copy_entry(self, node: Node, path: str) -> CopyEntry:
        fields = self.mapping(node, path, COPY_KEYS)
        return CopyEntry(
            source=self.need(fields, node, path, "from", self.abs_path),
            dest=self.need(fields, node, path, "to", self.abs_path),
        )

    def builder(self, node: Node, path: str) -> Builder:
        fields = self.mapping(node, path, BUILDER_KEYS)
        secrets = self.list_of(self.env_name, "a list of host variable names")
        base = self.need(fields, node, path, "from", self.base, hint=_FROM_HINT)
        packages = self.get(fields, path, "packages", self.packages, ())
        if packages and isinstance(base, BootstrapBase) and base.variant == "slim":
            # A slim root has no apt to install them afterwards. Only runtime.packages
            # join the bootstrap silently: the builder's stay a visible choice.
            raise self.error(fields["packages"], _join(path, "packages"),
                             "a slim builder base has no package manager to install these",
                             hint="use `variant: standard` for the builder (the runtime can "
                             "stay slim), or list them in builder.from.packages")
        return Builder(
            base=base,
            packages=packages,
            env=self.get(fields, path, "env", self.builder_env, ()),
            secrets=self.get(fields, path, "secrets", secrets, ()),
            python=self.get(fields, path, "python", self.on_argv(self.python, _one), None),
            sync=self.get(fields, path, "sync", self.sync, SyncOptions()),
            run=self.get(fields, path, "run", self.strings, ()),
        )

    def runtime(self, node: Node, path: str) -> Runtime:
        fields = self.mapping(node, path, RUNTIME_KEYS)
        copies = self.list_of(self.copy_entry, "a list of {from: ..., to: ...} mappings")
        # Image settings, in the order `buildah config` gets them: each one is an argument.
        config = self.on_argv
        workdir = self.get(fields, path, "workdir", config(self.abs_path, _one, True),
                           _default(Runtime, "workdir"))
        user = self.get(fields, path, "user", config(self.user, _one, True),
                        _default(Runtime, "user"))
        env = self.get(fields, path, "env", self.config_env, ())
        entrypoint = self.get(fields, path, "entrypoint", config(self.entrypoint, _json, True),
                              None)
        cmd = self.get(fields, path, "cmd", config(self.command, _json, True), None)
        ports = self.list_of(config(self.port, _one, True), "a list of ports")
        expose = self.get(fields, path, "expose", ports, ())
        labels = self.get(fields, path, "labels", self.config_labels, ())
        stop_signal = self.get(fields, path, "stop-signal", self.signal, None)
        return Runtime(
            base=self.need(fields, node, path, "from", self.base, hint=_FROM_HINT),
            packages=self.get(fields, path, "packages", self.packages, ()),
            copy=self.get(fields, path, "copy", copies, ()),
            user=user,
            workdir=workdir,
            env=env,
            entrypoint=entrypoint,
            cmd=cmd,
            expose=expose,
            labels=labels,
            stop_signal=stop_signal,
            test=self.get(fields, path, "test", self.strings, ()),
        )

    def recipe(self, root: Node, recipe_path: Path) -> Recipe:
        pairs = self.pairs(root, "", "a mapping of keys (version, builder, runtime...) at the top")
        fields = {key: value for key, (_, value) in pairs.items()}
        # Version first: a newer recipe's keys are unknown only to this version of uvbuild.
        version = self.need(fields, root, "", "version", self.version, hint="add `version: 1`")
        self.check_known(pairs, "", TOP_KEYS)
        project = self.get(fields, "", "project", self.string, ".")
        return Recipe(
            path=recipe_path,
            version=version,
            project=(recipe_path.parent / project).resolve(),
            image=self.get(fields, "", "image", self.image, None),
            builder=self.need(fields, root, "", "builder", self.builder),
            runtime=self.need(fields, root, "", "runtime", self.runtime),
        )


def _one(value: str) -> tuple[str]:
    return (value,)


def _json(argv: tuple[str, ...]) -> tuple[str]:
    """A command as `buildah config --entrypoint/--cmd` gets it: one JSON list."""
    return (json.dumps(list(argv)),)
