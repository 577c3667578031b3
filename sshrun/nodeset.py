"""Folding names back into hostlists: ``node01,node02,node03`` -> ``node[01-03]``.

The reverse of ``sshrun.hostfile.expand_hostlist``, as clush's nodeset and
Slurm's ``scontrol show hostlist`` do it, for what sshrun prints about many
nodes at once (folded console lines, gathered output). Pure.

A name folds on its last run of digits. Zero-padded numbers keep their
width (``node[01-16]``), and unpadded numbers of the same width join them
(``node09`` and ``node10`` -> ``node[09-10]``), so that expanding the result
gives exactly the names given: tests/test_nodeset.py checks that round trip.
A name with brackets in it (an address with a port, ``[host]:2222``) or
without digits stays as it is.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable

_LAST_NUMBER = re.compile(r"^(.*?)(\d+)(\D*)$")


def fold_numbers(numbers: Iterable[int], width: int = 1) -> str:
    """``0,2,4,5,6,7`` -> ``0,2,4-7``: sorted, duplicates dropped, each at least
    ``width`` digits wide (zero-padded)."""
    ordered = sorted(set(numbers))
    parts: list[str] = []
    i = 0
    while i < len(ordered):
        j = i
        while j + 1 < len(ordered) and ordered[j + 1] == ordered[j] + 1:
            j += 1
        low, high = f"{ordered[i]:0{width}d}", f"{ordered[j]:0{width}d}"
        parts.append(low if i == j else f"{low}-{high}")
        i = j + 1
    return ",".join(parts)


def bracketed(numbers: Iterable[int], width: int = 1) -> str:
    """``[0-3]``, or the bare number when there is one: ``5``."""
    text = fold_numbers(numbers, width)
    return text if text.isdigit() else f"[{text}]"


def fold_hosts(names: Iterable[str]) -> str:
    """The hostlist that expands to exactly ``names`` (duplicates dropped), sorted
    by prefix and number: ``gpu1,node[01-03,07]``."""
    literal: set[str] = set()
    # (prefix, suffix) -> [(digits, number)]
    numbered: dict[tuple[str, str], list[tuple[str, int]]] = defaultdict(list)
    for name in names:
        match = _LAST_NUMBER.match(name)
        if match is None or "[" in name or "]" in name or "," in name:
            literal.add(name)
            continue
        prefix, digits, suffix = match.groups()
        numbered[(prefix, suffix)].append((digits, int(digits)))
    folded = [(name, "") for name in literal]
    for (prefix, suffix), numbers in numbered.items():
        for width, members in _by_width(numbers).items():
            folded.append((prefix, f"{prefix}{bracketed(members, width)}{suffix}"))
    # Literal names sort as themselves; groups by their prefix, then text.
    return ",".join(text or key for key, text in sorted(folded))


def _by_width(numbers: list[tuple[str, int]]) -> dict[int, set[int]]:
    """Each number's group: its width when zero-padded (``007``: 3), or when
    some padded number has its width; else 1 (unpadded, any width)."""
    padded = {len(d) for d, _ in numbers if len(d) > 1 and d.startswith("0")}
    groups: dict[int, set[int]] = defaultdict(set)
    for digits, number in numbers:
        groups[len(digits) if len(digits) in padded else 1].add(number)
    return groups


def fold_ranks(ranks: Iterable[int]) -> str:
    """Global ranks as sshrun prefixes them: ``r3``, ``r[0,2,4-7]``."""
    return "r" + bracketed(ranks)
