"""Hostlist ranges: ``node[01-16]`` and ``cpu[1,3,5-7]-r[1-2]`` to host names.

The bracket syntax that Slurm, pdsh and hostfiles share. A bracket group
holds comma-separated numbers and ``LOW-HIGH`` ranges; several groups form a
cartesian product, the leftmost varying slowest. Ranges keep the zero padding
of their lower bound (``[08-10]`` gives 08, 09, 10). Text outside the brackets
is copied as is: the callers (the hostfile grammar, ``--include``, Slurm's node
list) check it.

A pattern's size is computed before anything is built (:func:`hostlist_size`),
and more than ``MAX_HOSTS`` names is refused, so that a short line cannot
build millions of strings.
"""

from __future__ import annotations

import itertools
import string
from collections.abc import Iterator

from sshrun.frozen_dataclass import frozen_dataclass

__all__ = ["MAX_HOSTS", "HostlistError", "expand_hostlist", "hostlist_size", "outside_ranges"]

# A range such as node[0-9999999] would otherwise build millions of strings
# from one short line; the same bound applies to a whole file or list.
MAX_HOSTS = 100_000

_RANGE_CHARS = frozenset(string.digits + ",-")
# Bounds of a range longer than this are typos; the cap also keeps int() far
# from Python's limit on converting very long digit strings.
_MAX_RANGE_DIGITS = 18
_MAX_COUNT = 10**36


class HostlistError(ValueError):
    """A malformed hostlist range; ``offset`` is the 0-based index of the fault."""

    def __init__(self, offset: int, message: str) -> None:
        self.offset = offset
        self.message = message
        super().__init__(message)


@frozen_dataclass
class _Range:
    low: int
    high: int
    width: int

    def __len__(self) -> int:
        return self.high - self.low + 1

    def values(self) -> list[str]:
        return [f"{n:0{self.width}d}" for n in range(self.low, self.high + 1)]


def expand_hostlist(pattern: str) -> list[str]:
    """Expand hostlist ranges: ``node[01-03]`` -> node01, node02, node03.

    A bracket group holds comma-separated numbers and ``LOW-HIGH`` ranges;
    several groups form a cartesian product, the leftmost varying slowest.
    Text outside the brackets is copied as is (the caller validates it).
    Raises :class:`HostlistError` (a ``ValueError``) for an unbalanced,
    nested, empty, non-numeric or reversed range, or one expanding to more
    than ``MAX_HOSTS`` names.
    """
    parts = _parse_pattern(pattern)
    count = _count(parts)
    if count > MAX_HOSTS:
        size_text = str(count) if count <= _MAX_COUNT else "more than 10**36"
        raise HostlistError(
            0, f"{pattern!r} expands to {size_text} hosts, more than the limit of {MAX_HOSTS}"
        )
    choices = [
        [part] if isinstance(part, str) else [v for r in part for v in r.values()] for part in parts
    ]
    return ["".join(combo) for combo in itertools.product(*choices)]


def outside_ranges(text: str) -> Iterator[tuple[int, str]]:
    """Each character outside ``[...]`` groups, with its index; the brackets
    themselves are left out. An unbalanced ``]`` is skipped (the range parser
    names it), so that a ``:`` or ``,`` after it still counts as outside."""
    depth = 0
    for j, ch in enumerate(text):
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth = max(0, depth - 1)
        elif depth == 0:
            yield j, ch


def hostlist_size(pattern: str) -> int:
    """How many names ``expand_hostlist(pattern)`` gives, computed without building them."""
    return _count(_parse_pattern(pattern))


def _count(parts: list[str | list[_Range]]) -> int:
    """The product of the groups' sizes, saturating above ``_MAX_COUNT``.

    Many wide groups would otherwise make a number too long to print.
    """
    count = 1
    for part in parts:
        if not isinstance(part, str):
            count *= sum(len(r) for r in part)
            if count > _MAX_COUNT:
                return _MAX_COUNT + 1
    return count


def _parse_pattern(pattern: str) -> list[str | list[_Range]]:
    """Literal text and range groups, in order; raises HostlistError."""
    parts: list[str | list[_Range]] = []
    literal_start = 0
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "]":
            raise HostlistError(i, f"unbalanced ']' in {pattern!r}: expected '[' before it")
        if ch != "[":
            i += 1
            continue
        close = pattern.find("]", i + 1)
        if close < 0:
            raise HostlistError(
                i, f"unbalanced '[' in {pattern!r}: expected ']' to close the range"
            )
        parts.append(pattern[literal_start:i])
        parts.append(_parse_group(pattern, i, close))
        i = literal_start = close + 1
    parts.append(pattern[literal_start:])
    return parts


def _parse_group(pattern: str, start: int, close: int) -> list[_Range]:
    """Parse the range group ``pattern[start:close + 1]``, brackets included."""
    for j in range(start + 1, close):
        ch = pattern[j]
        if ch == "[":
            raise HostlistError(j, f"nested '[' in {pattern!r}: ranges cannot be nested")
        if ch not in _RANGE_CHARS:
            raise HostlistError(
                j,
                f"invalid character {ch!r} in range {pattern[start : close + 1]!r} of "
                f"{pattern!r}: "
                "expected digits, ',' or '-' as in [01-16] or [1,3,5-7]",
            )
    if close == start + 1:
        raise HostlistError(
            start, f"empty range '[]' in {pattern!r}: expected [LOW-HIGH] or [N,M,...]"
        )
    ranges: list[_Range] = []
    offset = start + 1
    for item in pattern[start + 1 : close].split(","):
        ranges.append(_parse_item(pattern, item, offset))
        offset += len(item) + 1
    return ranges


def _parse_item(pattern: str, item: str, offset: int) -> _Range:
    low_s, dash, high_s = item.partition("-")
    if not item:
        raise HostlistError(
            offset, f"empty item in range {pattern!r}: expected N or LOW-HIGH between commas"
        )
    if not low_s or (dash and not high_s) or "-" in high_s:
        raise HostlistError(
            offset, f"bad range item {item!r} in {pattern!r}: expected N or LOW-HIGH"
        )
    if len(low_s) > _MAX_RANGE_DIGITS or len(high_s) > _MAX_RANGE_DIGITS:
        raise HostlistError(
            offset,
            f"range item {item!r} in {pattern!r} is too long: "
            f"expected numbers of at most {_MAX_RANGE_DIGITS} digits",
        )
    low = int(low_s)
    high = int(high_s) if dash else low
    if high < low:
        raise HostlistError(
            offset, f"reversed range {item!r} in {pattern!r}: expected LOW-HIGH with LOW <= HIGH"
        )
    return _Range(low, high, len(low_s))
