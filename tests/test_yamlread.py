"""Tests of sshrun.yamlread: located YAML, with a schema of the test's own."""

from __future__ import annotations

import pytest
from yaml.nodes import Node

from sshrun.errors import LocationError
from sshrun.yamlread import YamlReader, compose


def read(text: str) -> tuple[YamlReader, Node]:
    root = compose(text, "t.yaml")
    assert root is not None
    return YamlReader(text, "t.yaml", "/base"), root


def error(text: str, check: object) -> str:
    reader, root = read(text)
    with pytest.raises(LocationError) as info:
        check(reader, root)  # type: ignore[operator]
    return str(info.value)


def test_invalid_yaml_names_the_file_line_and_column() -> None:
    with pytest.raises(LocationError) as info:
        compose("a: 1\nb: [\n", "t.yaml")
    assert str(info.value).startswith("t.yaml:3:1: invalid YAML: ")
    assert compose("", "t.yaml") is None


def test_merge_keys_apply_and_own_keys_win() -> None:
    reader, root = read("base: &b {colour: red, size: 2}\nitem: {<<: *b, size: 3}\n")
    item = reader.mapping(root, "top", ("base", "item"))["item"]
    keys = reader.mapping(item, "item", ("colour", "size"))
    assert reader.string(keys["colour"], "colour") == "red"
    assert reader.integer(keys["size"], "size", 1, 9) == 3


def test_unknown_and_duplicate_keys_point_at_the_key() -> None:
    assert error("colour: red\nsise: 2\n",
                 lambda r, n: r.mapping(n, "thing", ("colour", "size"))) == (
        "t.yaml:2:1: unknown key 'sise' in thing; did you mean 'size'?")
    assert error("size: 1\nsize: 2\n", lambda r, n: r.pairs(n, "thing")) == (
        "t.yaml:2:1: duplicate key 'size' in thing (first at t.yaml:1:1)")


def test_values_are_checked_with_their_position() -> None:
    assert error("n: 10\n", lambda r, n: r.integer(r.mapping(n, "t", ("n",))["n"], "n", 1, 9)) == (
        "t.yaml:1:4: expected n between 1 and 9, got '10'")
    assert error("s: yes\n", lambda r, n: r.string(r.mapping(n, "t", ("s",))["s"], "s")) == (
        "t.yaml:1:4: expected a string for s, got yes (a boolean; quote it to mean the string)")
    # A character inside a quoted value is pointed at, past the quote.
    assert error("w: 'ab cd'\n", lambda r, n: r.word(r.mapping(n, "t", ("w",))["w"], "w")) == (
        "t.yaml:1:7: unexpected character ' ' in w 'ab cd'")
    assert error("c: !!python/none x\n", lambda r, n: r.is_null(r.pairs(n, "t")["c"][1])) == (
        "t.yaml:1:4: unsupported YAML tag 'tag:yaml.org,2002:python/none': "
        "expected plain YAML values")


def test_paths_resolve_against_the_base_directory() -> None:
    reader, root = read("p: keys/id\nq: ~/id\n")
    keys = reader.mapping(root, "t", ("p", "q"))
    assert reader.path(keys["p"], "p", resolve=True) == "/base/keys/id"
    assert reader.path(keys["q"], "q", resolve=True) == "~/id"
    assert reader.path(keys["p"], "p", resolve=False) == "keys/id"
