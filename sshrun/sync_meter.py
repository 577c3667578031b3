"""``--sync`` across the nodes: how far it has got, and a bandwidth limit shared fairly.

``SyncMeter`` adds up every node's sync (what it has to send once it has
compared manifests, what it has sent, whether it is done) into the counts
the progress bar draws and the ``sync_progress`` event carries.

``Bandwidth`` is ``--sync-bwlimit``: one rate for the head's uplink,
handed out chunk by chunk in the order the nodes ask (a virtual clock, as a
GCRA meter keeps). Every node that is sending asks for its next chunk as
soon as its last one went, so the nodes that are sending take turns, one
chunk each: equal shares, and a node that takes less (its link is slower)
leaves the rest to the others. Without a limit each node's connection
shares the uplink as TCP does.

Pure: nothing here reads a clock or sleeps (``now`` is passed in).
"""

from __future__ import annotations

from dataclasses import dataclass

from sshrun.frozen_dataclass import frozen_dataclass

# Slots of about this many seconds: short enough that turns interleave finely.
SLOT = 0.05
MIN_CHUNK = 16 << 10


@frozen_dataclass
class SyncCounts:
    """Every node's sync, added up. ``*_total`` counts the nodes that have compared
    their tree with the head's (``comparing`` have not yet): what they must be sent."""

    nodes: int
    synced: int
    failed: int
    comparing: int
    files: int
    files_total: int
    bytes: int
    bytes_total: int

    @property
    def over(self) -> bool:
        return self.synced + self.failed >= self.nodes


@dataclass
class _Node:
    files_total: int | None = None
    bytes_total: int | None = None
    files: int = 0
    bytes: int = 0
    state: str = "syncing"  # "synced", "failed"


class SyncMeter:
    """Fed by each node's sync (``start`` ... ``finish`` or ``fail``); ``counts`` for all."""

    def __init__(self) -> None:
        self._nodes: dict[str, _Node] = {}
        self.changes = 0  # bumped by every change: a reader redraws only when it moved

    def start(self, node: str) -> None:
        self._nodes[node] = _Node()
        self.changes += 1

    def plan(self, node: str, files: int, size: int) -> None:
        """The node compared: ``files`` files of ``size`` bytes to send it."""
        n = self._nodes[node]
        n.files_total, n.bytes_total = files, size
        self.changes += 1

    def sent(self, node: str, size: int, file_done: bool = False) -> None:
        n = self._nodes[node]
        n.bytes += size
        n.files += file_done
        self.changes += 1

    def finish(self, node: str) -> None:
        n = self._nodes[node]
        if n.files_total is None:  # in place already: nothing to send
            n.files_total = n.bytes_total = 0
        n.state = "synced"
        self.changes += 1

    def fail(self, node: str) -> None:
        if node in self._nodes:
            self._nodes[node].state = "failed"
            self.changes += 1

    def counts(self) -> SyncCounts:
        nodes = self._nodes.values()
        planned = [n for n in nodes if n.files_total is not None and n.state != "failed"]
        return SyncCounts(
            nodes=len(self._nodes),
            synced=sum(n.state == "synced" for n in nodes),
            failed=sum(n.state == "failed" for n in nodes),
            comparing=sum(n.files_total is None and n.state == "syncing" for n in nodes),
            files=sum(n.files for n in planned),
            files_total=sum(n.files_total or 0 for n in planned),
            bytes=sum(n.bytes for n in planned),
            bytes_total=sum(n.bytes_total or 0 for n in planned),
        )


class Bandwidth:
    """``rate`` bytes a second, in turns: ``reserve`` says how long to wait before
    sending ``size`` bytes, and books them, so the next asker waits behind."""

    def __init__(self, rate: float) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = rate
        self._free_at = float("-inf")  # when the uplink's booked time runs out

    @property
    def chunk(self) -> int:
        """Bytes a turn: about ``SLOT`` seconds' worth, so that turns interleave."""
        return max(MIN_CHUNK, min(1 << 18, int(self.rate * SLOT)))

    def reserve(self, size: int, now: float) -> float:
        start = max(now, self._free_at)
        self._free_at = start + size / self.rate
        return start - now


def progress_bar(counts: SyncCounts, width: int = 20) -> str:
    """``sync [#######.............] 35% 14.0/40.0 MiB, files 1,200/5,000, nodes synced 3/8``."""
    done, total = ((counts.bytes, counts.bytes_total) if counts.bytes_total
                   else (counts.files, counts.files_total))
    share = 1.0 if counts.over else (done / total if total else 0.0)
    filled = min(width, int(share * width))
    text = (f"sync [{'#' * filled}{'.' * (width - filled)}] {int(share * 100):3d}% "
            f"{_mib(counts.bytes)}/{_mib(counts.bytes_total)} MiB, "
            f"files {counts.files:,}/{counts.files_total:,}, "
            f"nodes synced {counts.synced}/{counts.nodes}")
    if counts.comparing:
        text += f", {counts.comparing} comparing"
    if counts.failed:
        text += f", {counts.failed} failed"
    return text


def _mib(size: int) -> str:
    return f"{size / (1 << 20):.1f}"
