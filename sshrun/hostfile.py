"""Hostfiles and ``--hosts`` lists: parse, expand.

A hostfile names one host per line, in the dialects that DeepSpeed, Open MPI,
MPICH and Horovod users already have::

    # comment (``#`` starts a comment anywhere on a line)
    node01                      # one host, slots from --nproc-per-node
    node02 slots=8              # DeepSpeed / Open MPI
    node03:8                    # MPICH / Horovod: ``:N`` is the slot count
    alice@node04 slots=4        # user name
    [node05]:2222 slots=4       # bracketed form: ``:N`` after ``]`` is a port
    [::1]:2222                  # IPv6 addresses are always bracketed
    node06 port=2222 user=bob   # port and user as keys
    gpu[01-16] slots=8          # hostlist range: gpu01 ... gpu16
    cpu[1,3,5-7]-r[1-2]         # lists, and groups forming a cartesian product
    node07 slots=4 max_slots=8  # max_slots is accepted and ignored (Open MPI)

This module reads whole files and lists; the pieces live apart:

- :mod:`sshrun.hostline`: the grammar of one line (``parse_host_entry``);
- :mod:`sshrun.hostnames`: host and user names (``expand_host_name``,
  ``check_single_host``, ``check_user``, ``dns_name_problem``);
- :mod:`sshrun.hostlist`: hostlist ranges (``expand_hostlist``, ``hostlist_size``);
- :mod:`sshrun.hostspec`: the values (``HostSpec``, ``HostEntry``,
  ``HostEntryError``, ``host_identity``) and the limits.

Their public names are re-exported here, so that ``sshrun.hostfile`` stays the
one import for hosts.

Rules of a whole file or list, on top of each line's grammar:

- Blank lines are skipped; lines end as in Python's universal newlines, and a
  leading byte-order mark is ignored.
- A file or list may name at most 100000 hosts, ranges expanded.
- A host (same name, case-insensitively, and same port) may appear once.

``--hosts`` takes the same entries separated by commas (commas inside
``[...]`` belong to a range): ``gpu[01-08]:8,alice@[10.0.0.9]:2222``.

Every error is a :class:`~sshrun.errors.LocationError` naming source, line and
1-based column (tabs count as one column) and saying what was expected.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from sshrun.configfile import read_config_text
from sshrun.errors import ConfigError, LocationError, shown
from sshrun.hostline import parse_host_entry
from sshrun.hostlist import (
    MAX_HOSTS,
    HostlistError,
    expand_hostlist,
    hostlist_size,
    outside_ranges,
)
from sshrun.hostnames import (
    MAX_LABEL,
    MAX_NAME,
    check_single_host,
    check_user,
    dns_name_problem,
    expand_host_name,
)
from sshrun.hostspec import (
    MAX_COLON_SLOTS,
    MAX_PORT,
    MAX_SLOTS,
    HostEntry,
    HostEntryError,
    HostSpec,
    host_identity,
)

__all__ = [
    "MAX_COLON_SLOTS",
    "MAX_HOSTS",
    "MAX_LABEL",
    "MAX_NAME",
    "MAX_PORT",
    "MAX_SLOTS",
    "HostEntry",
    "HostEntryError",
    "HostSpec",
    "HostlistError",
    "check_single_host",
    "check_user",
    "dns_name_problem",
    "expand_host_name",
    "expand_hostlist",
    "host_identity",
    "hostlist_size",
    "load_hostfile",
    "parse_host_entry",
    "parse_host_list",
    "parse_hostfile",
]


class _Collector:
    """Accumulates HostSpecs, refusing duplicates and runaway totals."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.hosts: list[HostSpec] = []
        self.seen: dict[tuple[str, int | None], str] = {}

    def add(self, entry: HostEntry, line: int, where: str, first_ref: str) -> None:
        column = entry.host_at + 1
        if len(self.hosts) + len(entry.hosts) > MAX_HOSTS:
            raise LocationError(self.source, line, column, f"more than {MAX_HOSTS} hosts in total")
        for host in entry.hosts:
            spec = HostSpec(host, entry.user, entry.port, entry.slots, where)
            key = host_identity(host, entry.port)
            first = self.seen.get(key)
            if first is not None:
                raise LocationError(
                    self.source, line, column, f"duplicate host {spec.label} (first at {first})"
                )
            self.seen[key] = first_ref
            self.hosts.append(spec)


def _split_lines(text: str) -> list[str]:
    # The same line breaks as Python's universal newlines, so line numbers
    # match what an editor shows for Unix, Windows and old Mac files.
    return text.replace("\r\n", "\n").replace("\r", "\n").split("\n")


def parse_hostfile(text: str, source: str) -> list[HostSpec]:
    """Parse hostfile text; ``source`` names it in errors and in ``where``."""
    # Windows editors write a byte-order mark that is not whitespace.
    text = text.removeprefix("\ufeff")
    collector = _Collector(source)
    for number, line in enumerate(_split_lines(text), start=1):
        body = line.split("#", 1)[0]
        try:
            entry = parse_host_entry(body)
        except HostEntryError as err:
            raise LocationError(source, number, err.index + 1, err.message) from None
        if entry is not None:
            where = f"{source}:{number}"
            collector.add(entry, number, where, where)
    return collector.hosts


def _split_entries(value: str) -> Iterable[tuple[int, str]]:
    """Split at commas outside ``[...]``, yielding (offset, entry)."""
    start = 0
    for j, ch in outside_ranges(value):
        if ch == ",":
            yield start, value[start:j]
            start = j + 1
    yield start, value[start:]


def parse_host_list(value: str, source: str = "--hosts") -> list[HostSpec]:
    """Parse a comma-separated host list such as ``node[1-4]:8,alice@[10.0.0.9]:2222``.

    Each entry reads like a hostfile line (``#`` is not a comment here);
    errors are on line 1 at the column within ``value``.
    """
    if not value.strip():
        raise LocationError(source, 1, 1, "expected a comma-separated list of hosts, got nothing")
    collector = _Collector(source)
    for start, piece in _split_entries(value):
        try:
            entry = parse_host_entry(piece, start)
        except HostEntryError as err:
            raise LocationError(source, 1, err.index + 1, err.message) from None
        if entry is None:
            raise LocationError(
                source, 1, start + 1, f"expected a host between commas, got {value!r}"
            )
        collector.add(entry, 1, source, f"{source}:1:{entry.host_at + 1}")
    return collector.hosts


def load_hostfile(path: str | os.PathLike[str]) -> list[HostSpec]:
    """Read and parse a hostfile; a missing, unreadable or empty one is an error.

    A missing hostfile must never fall back to a local run (DESIGN.md).
    """
    name = os.fspath(path)
    text = read_config_text(name, "hostfile")
    hosts = parse_hostfile(text, name)
    if not hosts:
        raise ConfigError(f"{shown(name)}: no hosts")
    return hosts
