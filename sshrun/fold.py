"""Folding identical lines from many ranks into one (the console at 1,000 ranks).

When 1,024 ranks print the same warning, the console shows the first copy at
once, and when a short window has passed one line for the rest, naming the
ranks with a hostlist and rank ranges::

    node1 r0 | UserWarning: TypedStorage is deprecated
    node[2-64] r[8-511] | (same line, 504 more ranks)

No line is ever held back: a line is either shown at once or counted into a
copy already shown. A rank's own repeat of a line (a loss printed twice) is
not folded: folding is across ranks. The log directory keeps every line;
this is the console's view only. Pure: the caller passes the time, and asks
:meth:`LineFolder.due` when :meth:`LineFolder.next_due` says.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

from sshrun.frozen_dataclass import frozen_dataclass
from sshrun.nodeset import fold_hosts, fold_ranks

DEFAULT_WINDOW = 1.0  # seconds a first copy waits for others to fold in
MAX_OPEN = 4096  # distinct lines watched at once; the oldest close early beyond it


@frozen_dataclass
class Folded:
    """The copies of ``text`` that were not shown: which ranks printed them."""

    text: str
    stream: str
    hosts: tuple[str, ...]
    ranks: tuple[int, ...]

    def summary(self) -> str:
        """What the console shows for them (after their hostlist and ranks)."""
        count = len(self.ranks)
        return f"(same line, {count} more rank{'s' if count != 1 else ''})"

    def label(self) -> str:
        return f"{fold_hosts(self.hosts)} {fold_ranks(self.ranks)}"


@dataclass
class _Window:
    start: float
    shown_by: int
    ranks: list[int] = field(default_factory=list)
    hosts: list[str] = field(default_factory=list)
    seen: set[int] = field(default_factory=set)


class LineFolder:
    """Decides, line by line, what the console shows (see the module's docstring)."""

    def __init__(self, window: float = DEFAULT_WINDOW, max_open: int = MAX_OPEN) -> None:
        self.window = window
        self.max_open = max_open
        self._open: OrderedDict[tuple[str, str], _Window] = OrderedDict()
        self._ready: list[Folded] = []

    def offer(self, host: str, rank: int, text: str, now: float, stream: str = "out") -> bool:
        """True: show this line now. False: it is folded into a copy already shown."""
        if not text.strip():
            return True
        key = (stream, text)
        window = self._open.get(key)
        if window is not None and now >= window.start + self.window:
            self._close(key)
            window = None
        if window is None:
            self._open[key] = _Window(now, rank, seen={rank})
            while len(self._open) > self.max_open:
                self._close(next(iter(self._open)))
            return True
        if rank in window.seen:
            return True
        window.seen.add(rank)
        window.ranks.append(rank)
        window.hosts.append(host)
        return False

    def next_due(self) -> float | None:
        """When :meth:`due` should next be asked (None: nothing is open): the
        oldest window's end, which may close with nothing to say."""
        if self._ready:
            return float("-inf")
        oldest = next(iter(self._open.values()), None)
        return None if oldest is None else oldest.start + self.window

    def due(self, now: float) -> list[Folded]:
        """The folds whose window has passed, oldest first."""
        while self._open:
            key, window = next(iter(self._open.items()))
            if now < window.start + self.window:
                break
            self._close(key)
        ready, self._ready = self._ready, []
        return ready

    def close(self) -> list[Folded]:
        """Every fold still open (the job is over)."""
        while self._open:
            self._close(next(iter(self._open)))
        ready, self._ready = self._ready, []
        return ready

    def _close(self, key: tuple[str, str]) -> None:
        window = self._open.pop(key)
        if window.ranks:
            self._ready.append(Folded(key[1], key[0], tuple(window.hosts), tuple(window.ranks)))
