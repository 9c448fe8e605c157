"""Cache keys: sha256 over canonical JSON of kind, definition and parents; never mtimes."""

from __future__ import annotations

import hashlib

from uvbuild.plan.cachekey import CACHE_FORMAT, step_key


def test_key_is_sha256_of_canonical_json() -> None:
    # Spelled out by hand: sorted keys, no spaces, ASCII only, the format number first-class.
    canonical = (
        '{"definition":{"packages":["curl"],"timestamp":315532800},'
        '"format":3,"kind":"prepare-builder","parents":["p1","p2"]}'
    )

    key = step_key("prepare-builder", {"timestamp": 315532800, "packages": ["curl"]}, ["p1", "p2"])

    assert CACHE_FORMAT == 3
    assert key == hashlib.sha256(canonical.encode()).hexdigest()


def test_key_golden_value() -> None:
    assert step_key("base", {"id": "sha256:abc"}) == (
        "3187c5e193cf063957c83ab5130562a2957d9b7e22f30afe6ca0ba9b4051498a")


def test_key_ignores_mapping_order() -> None:
    assert step_key("k", {"a": 1, "b": {"x": 1, "y": 2}}) == step_key(
        "k", {"b": {"y": 2, "x": 1}, "a": 1})


def test_key_follows_kind_definition_and_parents() -> None:
    base = step_key("k", {"a": 1}, ["p"])

    assert step_key("other", {"a": 1}, ["p"]) != base
    assert step_key("k", {"a": 2}, ["p"]) != base
    assert step_key("k", {"a": 1}, ["q"]) != base
    assert step_key("k", {"a": 1}) != base


def test_parent_order_matters() -> None:
    assert step_key("k", {}, ["p", "q"]) != step_key("k", {}, ["q", "p"])


def test_list_order_matters() -> None:
    # Lists carry meaning in recipes (builder.run, entrypoint): order is content.
    assert step_key("k", {"run": ["a", "b"]}) != step_key("k", {"run": ["b", "a"]})


def test_non_ascii_is_escaped_not_mangled() -> None:
    assert step_key("k", {"env": "café"}) != step_key("k", {"env": "cafe"})
    canonical = '{"definition":{"env":"caf\\u00e9"},"format":3,"kind":"k","parents":[]}'
    assert step_key("k", {"env": "café"}) == hashlib.sha256(canonical.encode()).hexdigest()

