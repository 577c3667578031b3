"""Which rank lines reach the console, and which lines the log directory copies apart.

torchrun's logging options, as sshrun means them (``sshrun.torchrun_options``
has the table). torchrun decides on each node which of a worker's streams go
to its files and which to its console; sshrun has every line on the head, so
it decides there, and every line of every rank still reaches ``--log-dir``
whatever the console shows. Judged by torchrun's ``DefaultLogsSpecs``
(torch 2.13):

* ``--redirects`` (``-r``): the streams that go only to the logs, not to the
  console. ``1`` stdout, ``2`` stderr, ``3`` both, ``0`` none; for every
  local rank, or per local rank as ``LOCAL_RANK:STREAMS,...`` (ranks not
  named: none).
* ``--tee`` (``-t``): the streams that go to the console and to the logs, in
  the same form. A tee'd stream is shown even where ``--redirects`` names
  it, as in torchrun (a tee is a redirect plus a tail to the console).
* ``--local-ranks-filter``: only these local ranks, on every node, reach the
  console at all (their tee'd streams too).
* ``--duplicate-stdout-filters``/``--duplicate-stderr-filters``: each node's
  lines of that stream that contain any of the filter strings are also
  written to ``attempt-<n>/<host>/filtered_stdout.log`` (or
  ``filtered_stderr.log``) in the log directory, as torchrun writes
  ``filtered_stdout.log`` for each node's attempt.
* ``--ranks`` (sshrun's own): only these global ranks (``0``, ``0-7,12``)
  reach the console; it narrows whatever the options above let through.
* torchrun's own lines (its launcher output) are always shown.

Local ranks are told apart on the head by the global rank of a line: rank
modulo the processes per node when every node runs the same number (torchrun
gives each node a block of consecutive ranks, ``node base + local rank``,
and equal blocks start at multiples of that number), else the node's first
rank in the plan (the static rendezvous's fixed order).
:func:`local_ranks_known` says whether a job allows either.

Pure: no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING

from sshrun import values
from sshrun.frozen_dataclass import frozen_dataclass
from sshrun.hostfile import MAX_SLOTS

if TYPE_CHECKING:
    from sshrun.plan import JobConfig, JobPlan

STD_NONE, STD_OUT, STD_ERR, STD_ALL = 0, 1, 2, 3
MAX_LOCAL_RANK = MAX_SLOTS - 1
MAX_RANK = (1 << 24) - 1  # --ranks: far above any world size, low enough to stay cheap
MAX_RANK_RANGES = 4096  # --ranks: pieces in one spec
_RANKS_WORDS = "global ranks and ranges, comma separated (0, 0-7,12)"
_STREAMS = re.compile(r"[0-3]")
_STREAMS_WORDS = "0-3 (1 stdout, 2 stderr, 3 both) or LOCAL_RANK:0-3[,...]"

Shows = Callable[[int, int, int], bool]  # (node, global rank, stream) -> on the console


@frozen_dataclass
class Streams:
    """torchrun's ``Std`` value: which streams, for every local rank or per local rank."""

    every: int = STD_NONE  # for every local rank (when not per_rank)
    per_rank: tuple[tuple[int, int], ...] | None = None  # (local rank, streams); others none

    def of(self, local_rank: int | None) -> int:
        if self.per_rank is None:
            return self.every
        return dict(self.per_rank).get(local_rank, STD_NONE) if local_rank is not None \
            else STD_NONE

    def __str__(self) -> str:
        """As torchrun's command line writes it."""
        if self.per_rank is None:
            return str(self.every)
        return ",".join(f"{rank}:{streams}" for rank, streams in self.per_rank)


def parse_streams(text: str) -> Streams:
    """``--redirects``/``--tee``: ``0``-``3``, or ``LOCAL_RANK:0-3,...`` (a later rank wins)."""
    if _STREAMS.fullmatch(text):
        return Streams(int(text))
    per_rank: dict[int, int] = {}
    offset = 0
    for piece in text.split(","):
        rank_text, colon, streams = piece.partition(":")
        if not colon or not _STREAMS.fullmatch(streams):
            raise values.BadValue(_STREAMS_WORDS, index=offset)
        try:
            rank = values.whole_number(rank_text, 0, MAX_LOCAL_RANK)
        except values.BadValue:
            raise values.BadValue(_STREAMS_WORDS, index=offset) from None
        per_rank[rank] = int(streams)
        offset += len(piece) + 1
    return Streams(per_rank=tuple(sorted(per_rank.items())))


def parse_local_ranks(text: str) -> frozenset[int]:
    """``--local-ranks-filter``: local ranks, comma separated (spaces around them allowed)."""
    ranks = set()
    for piece in text.split(","):
        try:
            ranks.add(values.whole_number(piece.strip(), 0, MAX_LOCAL_RANK))
        except values.BadValue:
            raise values.BadValue(
                f"local ranks 0-{MAX_LOCAL_RANK}, comma separated (0,1,2)") from None
    return frozenset(ranks)


def parse_ranks(text: str) -> tuple[tuple[int, int], ...]:
    """``--ranks``: global ranks and inclusive ranges (``0``, ``0-7,12``), as sorted,
    merged ranges (kept as ranges: ``0-1000000`` costs nothing)."""
    pieces = text.split(",")
    if len(pieces) > MAX_RANK_RANGES:
        raise values.BadValue(f"at most {MAX_RANK_RANGES} {_RANKS_WORDS}")
    spans: list[tuple[int, int]] = []
    for piece in pieces:
        low_text, dash, high_text = piece.strip().partition("-")
        try:
            low = values.whole_number(low_text, 0, MAX_RANK)
            high = values.whole_number(high_text, 0, MAX_RANK) if dash else low
        except values.BadValue:
            raise values.BadValue(_RANKS_WORDS) from None
        if high < low:
            raise values.BadValue(f"{_RANKS_WORDS}, each range LOW-HIGH with LOW <= HIGH")
        spans.append((low, high))
    merged: list[tuple[int, int]] = []
    for low, high in sorted(spans):
        if merged and low <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(merged[-1][1], high))
        else:
            merged.append((low, high))
    return tuple(merged)


def format_ranks(spans: tuple[tuple[int, int], ...]) -> str:
    return ",".join(str(low) if low == high else f"{low}-{high}" for low, high in spans)


def in_spans(rank: int, spans: tuple[tuple[int, int], ...]) -> bool:
    return any(low <= rank <= high for low, high in spans)


def format_local_ranks(ranks: frozenset[int]) -> str:
    return ",".join(str(r) for r in sorted(ranks))


_PLACEHOLDER = "\x00"  # never in a value: sshrun.values refuses NUL everywhere


def parse_filters(text: str) -> tuple[str, ...]:
    """torchrun's comma-separated list: ``,,`` is a comma inside a filter; none empty."""
    if _PLACEHOLDER in text:
        raise values.BadValue("filters without NUL characters")
    items = tuple(item.replace(_PLACEHOLDER, ",")
                  for item in text.replace(",,", _PLACEHOLDER).split(","))
    if not all(items):
        # torchrun would keep an empty filter, which every line matches.
        raise values.BadValue("filters separated by ',' (',,' for a comma), none of them empty")
    return items


def format_filters(items: tuple[str, ...]) -> str:
    return ",".join(item.replace(",", ",,") for item in items)


@frozen_dataclass
class ConsoleFilter:
    """Which (local rank, stream) reach the console; the default shows everything."""

    local_ranks: frozenset[int] | None = None  # --local-ranks-filter
    redirects: Streams = Streams()
    tee: Streams = Streams()
    ranks: tuple[tuple[int, int], ...] | None = None  # --ranks: global rank ranges

    @property
    def active(self) -> bool:
        return (self.local_ranks is not None or self.redirects != Streams()
                or self.ranks is not None)

    @property
    def needs_local_ranks(self) -> bool:
        return self.local_ranks is not None or (
            self.redirects != Streams() and (self.redirects.per_rank is not None
                                             or self.tee.per_rank is not None))

    def shows(self, local_rank: int | None, stream: int) -> bool:
        if self.local_ranks is not None and local_rank not in self.local_ranks:
            return False
        bit = STD_ERR if stream == 2 else STD_OUT
        return not self.redirects.of(local_rank) & bit or bool(self.tee.of(local_rank) & bit)

    def for_plan(self, plan: JobPlan) -> Shows | None:
        """The console's test for ``plan``'s lines, or None when every line is shown."""
        if not self.active:
            return None
        local = local_rank_of(plan)
        spans = self.ranks

        def shows(node: int, rank: int, stream: int) -> bool:
            if rank < 0:
                return True  # torchrun's own lines, or exec's command
            if spans is not None and not in_spans(rank, spans):
                return False
            return self.shows(local(node, rank), stream)

        return shows


def local_rank_of(plan: JobPlan) -> Callable[[int, int], int | None]:
    """(node, global rank) -> local rank, where the head can know it (None: it cannot)."""
    sizes = {node.nproc for node in plan.nodes}
    if len(sizes) == 1:
        size = next(iter(sizes))
        if size.isdigit():
            every = int(size)
            return lambda node, rank: rank % every
    firsts = {node.index: node.first_rank for node in plan.nodes}

    def local(node: int, rank: int) -> int | None:
        first = firsts.get(node)
        return rank - first if first is not None else None

    return local


def local_ranks_known(config: JobConfig) -> bool:
    """Whether :func:`local_rank_of` knows every line's local rank in ``config``'s job."""
    sizes = {config.nproc_per_node or str(host.slots or 1) for host in config.hosts}
    if not all(size.isdigit() for size in sizes):
        return False
    # Unequal sizes: the plan's first ranks, fixed by the static rendezvous, and
    # only while the nodes are not renumbered by an elastic pool.
    return len(sizes) <= 1 or (config.rdzv_backend == "static" and config.membership is None)


@frozen_dataclass
class DuplicateFilters:
    """--duplicate-stdout-filters and --duplicate-stderr-filters: lines copied apart."""

    stdout: tuple[str, ...] = ()
    stderr: tuple[str, ...] = ()

    def of(self, stream: int) -> tuple[str, ...]:
        return self.stderr if stream == 2 else self.stdout

    def __bool__(self) -> bool:
        return bool(self.stdout or self.stderr)
