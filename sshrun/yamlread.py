"""Located YAML: read a YAML document so that every error names ``file:line:column``.

This module knows YAML but no schema.  :func:`compose` reads the text with
PyYAML's safe composer (``yaml.compose`` with ``SafeLoader``: what
``yaml.safe_load`` accepts, no Python objects) into a node tree, and turns
PyYAML's errors into :class:`~sshrun.errors.LocationError`.  A
:class:`YamlReader` then takes values out of that tree: mappings (``<<``
merge keys applied, duplicates and unknown keys refused with a
did-you-mean suggestion), scalars, strings, integers, seconds, choices,
paths and string lists, each failing with one line that points at the
offending key or value, down to the character where it can.

The value checks themselves are :mod:`sshrun.values`', shared with the
command line; the reader words them with the file position.  The schema that
uses it (sshrun's cluster config) is :mod:`sshrun.cluster_yaml`.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Sequence
from typing import NoReturn

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from sshrun import values
from sshrun.environment import refused_name
from sshrun.errors import LocationError
from sshrun.values import clip

__all__ = [
    "BOOL",
    "NULL",
    "YamlReader",
    "clip",
    "compose",
    "describe",
    "resolve_path",
    "suggest",
]

_TAG = "tag:yaml.org,2002:"
NULL = _TAG + "null"
BOOL = _TAG + "bool"
_MERGE = _TAG + "merge"
_SCALAR_TAGS = frozenset(_TAG + t for t in ("str", "int", "float", "bool", "null", "timestamp"))
_LINE_BREAK = re.compile("\r\n|[\r\n\x85\u2028\u2029]")


def describe(node: Node) -> str:
    """How an error message shows a value it did not expect."""
    if isinstance(node, MappingNode):
        return "a mapping"
    if isinstance(node, SequenceNode):
        return "a list"
    if node.tag == NULL:
        return "nothing (null)"
    if node.tag == BOOL and isinstance(node, ScalarNode) and node.style is None:
        return f"{node.value} (a boolean; quote it to mean the string)"
    return clip(str(node.value))


def suggest(name: str, valid: Sequence[str]) -> str:
    """A did-you-mean for an unknown ``name``, or the list of valid ones."""
    match = difflib.get_close_matches(name, valid, n=1, cutoff=0.6)
    if match:
        return f"did you mean {match[0]!r}?"
    return f"expected one of {', '.join(valid)}"


def resolve_path(path: str, base_dir: str | None) -> str:
    """``path`` joined to ``base_dir``; ``~`` paths are left for ssh to expand."""
    if base_dir is None or path.startswith("~") or os.path.isabs(path):
        return path
    return os.path.normpath(os.path.join(base_dir, path))


def _reader_position(text: str, position: int) -> tuple[int, int]:
    before = _LINE_BREAK.split(text[:position])
    return len(before), len(before[-1]) + 1


def compose(text: str, source: str) -> Node | None:
    """The node tree of ``text`` (None when empty), or LocationError naming ``source``."""
    try:
        return yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        problem = err.problem or err.context or "invalid YAML"
        if err.context and err.problem:
            if err.context.startswith("while "):
                problem = f"{err.problem} ({err.context})"
            else:
                problem = f"{err.context}, {err.problem}"
        line, column = (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)
        raise LocationError(source, line, column, f"invalid YAML: {problem}") from None
    except yaml.reader.ReaderError as err:
        line, column = _reader_position(text, err.position)
        raise LocationError(
            source, line, column, f"invalid YAML: unacceptable character #x{err.character:04x}"
        ) from None
    except yaml.YAMLError as err:
        raise LocationError(source, 1, 1, f"invalid YAML: {err}") from None
    except RecursionError:
        raise LocationError(source, 1, 1, "invalid YAML: nested too deeply") from None


class YamlReader:
    """Takes checked values out of a composed node tree, or raises LocationError.

    ``text`` is the source the tree was composed from (for character
    positions inside a value); ``base_dir`` is what relative paths are joined
    to (kept relative when None).
    """

    def __init__(self, text: str, source: str, base_dir: str | None) -> None:
        self.text = text
        self.source = source
        self.base_dir = base_dir
        self.flat: dict[int, dict[str, tuple[Node, Node]]] = {}
        self.flattening: set[int] = set()

    # -- errors and positions --------------------------------------------

    def fail(self, node: Node, message: str, index: int | None = None) -> NoReturn:
        line, column = self.position(node, index)
        raise LocationError(self.source, line, column, message)

    def position(self, node: Node, index: int | None = None) -> tuple[int, int]:
        """1-based line and column of ``node``, or of character ``index`` of its value."""
        start = node.start_mark
        line, column = start.line + 1, start.column + 1
        if index is None or not isinstance(node, ScalarNode):
            return line, column
        end = node.end_mark
        raw = self.text[start.index : end.index]
        if start.line != end.line or _LINE_BREAK.search(raw):
            return line, column
        if node.style is None and raw == node.value:
            return line, column + index
        if node.style in ("'", '"') and raw[1:-1] == node.value:
            return line, column + 1 + index
        return line, column

    def ref(self, node: Node) -> str:
        line, column = self.position(node)
        return f"{self.source}:{line}:{column}"

    # -- generic node checks ------------------------------------------------

    def check_tag(self, node: Node) -> None:
        if isinstance(node, ScalarNode):
            ok = node.tag in _SCALAR_TAGS
        elif isinstance(node, SequenceNode):
            ok = node.tag == _TAG + "seq"
        else:
            ok = node.tag == _TAG + "map"
        if not ok:
            self.fail(node, f"unsupported YAML tag {node.tag!r}: expected plain YAML values")

    def is_null(self, node: Node) -> bool:
        self.check_tag(node)
        return isinstance(node, ScalarNode) and node.tag == NULL

    def mapping(self, node: Node, section: str, valid: Sequence[str]) -> dict[str, Node]:
        """The keys of a mapping node (merges applied); unknown keys are errors."""
        pairs = self.pairs(node, section)
        result: dict[str, Node] = {}
        for name, (key, value) in pairs.items():
            if name not in valid:
                self.fail(key, f"unknown key {name!r} in {section}; {suggest(name, valid)}")
            result[name] = value
        return result

    def section(self, node: Node | None, section: str, valid: Sequence[str]) -> dict[str, Node]:
        """Like :meth:`mapping`; an absent or null section has no keys."""
        if node is None or self.is_null(node):
            return {}
        return self.mapping(node, section, valid)

    def pairs(self, node: Node, section: str) -> dict[str, tuple[Node, Node]]:
        """name -> (key node, value node) of a mapping, ``<<`` merges applied."""
        self.check_tag(node)
        if not isinstance(node, MappingNode):
            self.fail(node, f"expected a mapping for {section}, got {describe(node)}")
        cached = self.flat.get(id(node))
        if cached is not None:
            return cached
        if id(node) in self.flattening:
            self.fail(node, f"recursive '<<' merge in {section}")
        self.flattening.add(id(node))
        merged: dict[str, tuple[Node, Node]] = {}
        own: dict[str, tuple[Node, Node]] = {}
        for key, value in node.value:
            if isinstance(key, ScalarNode) and key.tag == _MERGE:
                for source in self.merge_sources(value, section):
                    for name, pair in self.pairs(source, section).items():
                        merged.setdefault(name, pair)
                continue
            name = self.key_name(key, section)
            first = own.get(name)
            if first is not None:
                self.fail(
                    key,
                    f"duplicate key {name!r} in {section} (first at {self.ref(first[0])})",
                )
            own[name] = (key, value)
        self.flattening.discard(id(node))
        result = dict(merged)
        result.update(own)
        self.flat[id(node)] = result
        return result

    def merge_sources(self, node: Node, section: str) -> list[Node]:
        self.check_tag(node)
        if isinstance(node, MappingNode):
            return [node]
        if isinstance(node, SequenceNode):
            for item in node.value:
                self.check_tag(item)
                if not isinstance(item, MappingNode):
                    self.fail(item, f"expected a mapping to merge with '<<', got {describe(item)}")
            return list(node.value)
        self.fail(
            node,
            f"expected a mapping or a list of mappings to merge with '<<' in {section}, "
            f"got {describe(node)}",
        )

    def key_name(self, key: Node, section: str) -> str:
        self.check_tag(key)
        if not isinstance(key, ScalarNode):
            self.fail(key, f"expected a key name in {section}, got {describe(key)}")
        return str(key.value)

    # -- scalar values ----------------------------------------------------

    def scalar(self, node: Node, what: str, expected: str) -> str:
        """The source text of a non-null scalar."""
        self.check_tag(node)
        if not isinstance(node, ScalarNode) or node.tag == NULL:
            self.fail(node, f"expected {expected} for {what}, got {describe(node)}")
        value = str(node.value)
        if "\x00" in value:
            self.fail(node, f"expected {expected} for {what}, got a value with a NUL character")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            self.fail(node, f"expected {expected} for {what}, got a value that is not UTF-8")
        return value

    def string(self, node: Node, what: str, *, empty_ok: bool = False) -> str:
        """A string; numbers are taken as written, an unquoted boolean is refused."""
        value = self.scalar(node, what, "a string")
        if node.tag == BOOL and isinstance(node, ScalarNode) and node.style is None:
            self.fail(node, f"expected a string for {what}, got {describe(node)}")
        if not value and not empty_ok:
            self.fail(node, f"expected a non-empty string for {what}, got ''")
        return value

    # The checks themselves are sshrun.values', shared with the command line;
    # these methods word them with the file position.

    def word(self, node: Node, what: str) -> str:
        """A string without whitespace or control characters."""
        value = self.string(node, what)
        try:
            return values.word(value)
        except values.BadValue as exc:
            if exc.index is not None:
                ch = value[exc.index]
                self.fail(node, f"unexpected character {ch!r} in {what} {clip(value)}",
                          exc.index)
            self.fail(node, f"expected {exc.reason} for {what}")

    def integer(self, node: Node, what: str, low: int, high: int) -> int:
        value = self.scalar(node, what, "an integer")
        try:
            return values.whole_number(value, low, high)
        except values.BadValue as exc:
            if exc.kind in ("low", "high"):
                self.fail(node, f"expected {what} between {low} and {high}, got {clip(value)}")
            self.fail(node, f"expected an integer for {what}, got {describe(node)}")

    def seconds(self, node: Node, what: str) -> float:
        value = self.scalar(node, what, "a number of seconds")
        try:
            return values.seconds(value)
        except values.BadValue as exc:
            if exc.kind == "low":
                self.fail(node, f"expected a positive number of seconds for {what}, got {value}")
            if exc.kind == "high":
                self.fail(node, f"expected {exc.reason} for {what}, got {clip(value)}")
            self.fail(node, f"expected a number of seconds for {what}, got {describe(node)}")

    def choice(self, node: Node, what: str, valid: Sequence[str]) -> str:
        value = self.string(node, what)
        if value not in valid:
            self.fail(node, f"unknown {what} {clip(value)}; {suggest(value, valid)}")
        return value

    def path(self, node: Node, what: str, *, resolve: bool) -> str:
        """A path; ``resolve``: a relative one is joined to ``base_dir``."""
        value = self.string(node, what)
        try:
            values.node_path(value)
        except values.BadValue as exc:
            if value.startswith("-"):
                self.fail(node, f"{what} may not start with '-', got {clip(value)}")
            assert exc.index is not None
            self.fail(
                node,
                f"unexpected control character {value[exc.index]!r} in {what} {clip(value)}",
                exc.index,
            )
        return resolve_path(value, self.base_dir) if resolve else value

    def string_list(self, node: Node, what: str) -> list[tuple[Node, str]]:
        """A list of strings (a single string is a list of one); duplicates are refused."""
        self.check_tag(node)
        if isinstance(node, MappingNode):
            self.fail(node, f"expected a list of strings for {what}, got a mapping")
        items = node.value if isinstance(node, SequenceNode) else [node]
        result: list[tuple[Node, str]] = []
        firsts: dict[str, Node] = {}
        for item in items:
            value = self.string(item, what)
            first = firsts.get(value)
            if first is not None:
                self.fail(
                    item,
                    # The name part only: an entry with a value may hold a secret.
                    f"{refused_name(value, 60)} listed twice in {what} "
                    f"(first at {self.ref(first)})",
                )
            firsts[value] = item
            result.append((item, value))
        return result
