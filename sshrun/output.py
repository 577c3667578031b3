"""Turn the bytes that ranks write into prefixed lines on the head.

Each (node, rank, stream) has its own ``LineFramer``: an incremental UTF-8
decoder (invalid bytes become U+FFFD, a character split across chunks is
kept whole), lines split on ``\\n`` only, a carriage-return progress bar
collapsed to the state it showed last, and escape sequences other than
colours (SGR) removed so that a rank cannot move the cursor, retitle the
terminal or clear the screen. A last line without a newline is flushed when
the stream ends.

Lines up to ``MAX_LINE`` characters (1 MiB) are never cut. A longer one is
passed on in pieces of ``MAX_LINE`` characters as it arrives, so that a rank
printing a 64 MB line costs the head linear time and bounded memory; every
piece after the first is a ``Continuation`` and the Printer marks it with
``+`` where a line has ``|``::

    node1 r0 | <the first 1,048,576 characters>
    node1 r0 + <the next ones>

The text itself is untouched: joining a line's pieces gives it back. A
progress bar that redraws with ``\\r`` and never ends its line is held as its
last non-empty state only, however long it runs.

``Printer`` prefixes whole lines in chunks (``"node1 r3 | "``), one colour per
node on a terminal and plain text when piped, stderr lines to stderr, and
keeps each rank's last stderr lines for the final report. It writes to
anything with ``write`` and ``flush``; the head gives it the console sinks of
``sshrun.console``, which never block the event loop.

With ``timestamps`` (``--timestamps``) each line starts with the node-side
time its last chunk was read, in the head's time zone, to the microsecond,
before the prefix as journalctl and ``ts`` put it::

    12:03:04.123456 node1 r3 | loss 0.25

With a ``folder`` (sshrun.fold, ``--fold``) a line that other ranks printed
just before is counted instead of shown, and when the window of its first copy
has passed one line names the rest::

    node1 r0 | UserWarning: TypedStorage is deprecated
    node[1-2] r[1-3] | (same line, 3 more ranks)

With ``gather`` (``sshrun exec --gather``) nothing is printed: each node's
lines are kept in :attr:`Printer.gathered` for sshrun.gather.

Only the ranks' lines fold, never torchrun's or exec's. A summary must come
even when no more output arrives: the Printer owns one timer on the running
event loop (``call_later``) for the next window's end, and :meth:`flush_all`
(the attempt's end, before its report) cancels it and prints every fold
still open. Without a running loop (unit tests) the caller asks
:meth:`Printer.fold_due`.

This module is longer than most (about 460 lines): the framer and the
Printer share ``Continuation`` and the per-source state; the folding and
gathering here are the Printer's glue only (the logic is sshrun.fold's and
sshrun.gather's).
"""

from __future__ import annotations

import asyncio
import codecs
import collections
import datetime
import itertools
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Protocol

from sshrun.fold import Folded, LineFolder
from sshrun.redact import Redactor
from sshrun.sanitize import sanitize, sanitize_lines


def clean_line(line: str) -> str:
    """One raw line (no ``\\n``) as it should be shown (colours kept: see sshrun.sanitize)."""
    if "\r" in line:
        # A progress bar redraws with CR: show its last non-empty state.
        parts = [p for p in line.split("\r") if p]
        line = parts[-1] if parts else ""
    return sanitize(line, colour=True)


# Above this many characters a line is passed on in pieces of this size: a
# rank that prints a huge line, or a progress bar that never ends its line,
# must cost the head linear time and bounded memory.
MAX_LINE = 1 << 20


class Continuation(str):
    """A piece of a line longer than ``MAX_LINE``, after its first: it continues
    the piece before it (the Printer marks it ``+`` instead of ``|``)."""

    __slots__ = ()


class LineFramer:
    """Bytes in, complete cleaned lines out, in linear time and bounded memory.

    A line is the text between two ``\\n``. Within it, ``\\r`` separates the
    states of a progress bar, and only the last non-empty one is shown. The
    framer holds at most the current state (``max_line`` characters) and the
    last finished one; a state longer than ``max_line`` is passed on in pieces
    of ``max_line`` characters as it grows, each but the first a
    ``Continuation``, so that joining the pieces gives the text back.
    """

    def __init__(self, max_line: int = MAX_LINE) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._max = max_line
        self._seg: list[str] = []  # the current state (text since the last \r)
        self._seg_len = 0
        self._last = ""  # the last non-empty state before a \r
        self._cut = False  # the current state was passed on in part
        self._shown = False  # something of this line was passed on
        self._open = False  # anything arrived since the last \n
        # How many pieces of over-long lines were passed on, ever: a caller
        # that sees it unchanged by a feed knows no line in it was cut.
        self.pieces = 0

    def feed(self, data: bytes) -> list[str]:
        text = self._decoder.decode(data)
        if not text:
            return []
        out: list[str] = []
        end = text.rfind("\n")
        if end < 0:
            self._add(text, out)
            return out
        start = 0
        if self._open:
            start = text.find("\n") + 1
            self._add(text[:start - 1], out)
            self._end_line(out)
        if start <= end:
            # Whole lines between the line already open and the one left open.
            body = text[start:end]
            limit = self._max
            if len(body) <= limit and "\r" not in body:
                # The common case, a chunk of ordinary lines: cleaned in one
                # pass and split once, no per-line work (sshrun.sanitize).
                out.extend(sanitize_lines(body, colour=True).split("\n"))
            else:
                for line in body.split("\n"):
                    if len(line) <= limit and "\r" not in line:
                        out.append(clean_line(line))
                    else:
                        self._add(line, out)
                        self._end_line(out)
        rest = text[end + 1:]
        if rest:
            self._add(rest, out)
        return out

    def flush(self) -> list[str]:
        """End of stream: the last line even without a newline."""
        out: list[str] = []
        text = self._decoder.decode(b"", final=True)
        if text:
            self._add(text, out)
        if self._open:
            self._end_line(out)
        return out

    @property
    def pending(self) -> bool:
        return self._open

    @property
    def buffered(self) -> int:
        """Characters held for the current line: at most about twice ``max_line``."""
        return self._seg_len + len(self._last)

    def _add(self, text: str, out: list[str]) -> None:
        """Text without ``\\n``, into the current line."""
        self._open = True
        if "\r" not in text:
            self._grow(text, out)
            return
        states = text.split("\r")
        self._grow(states[0], out)
        for state in itertools.islice(states, 1, None):
            self._end_state(out)
            self._grow(state, out)

    def _grow(self, text: str, out: list[str]) -> None:
        if not text:
            return
        self._seg.append(text)
        self._seg_len += len(text)
        if self._seg_len > self._max:
            # Pass on every whole piece but the last, which may still grow.
            joined = "".join(self._seg)
            size = self._max
            whole = (len(joined) - 1) // size
            for k in range(whole):
                self._piece(joined[k * size:(k + 1) * size], out)
            rest = joined[whole * size:]
            self._seg = [rest]
            self._seg_len = len(rest)
            self._cut = True
            self._last = ""  # this state replaces the bar's earlier ones

    def _piece(self, text: str, out: list[str]) -> None:
        line = clean_line(text)
        out.append(Continuation(line) if self._cut else line)
        self.pieces += 1
        self._cut = True
        self._shown = True

    def _take(self) -> str:
        text = "".join(self._seg)
        self._seg = []
        self._seg_len = 0
        return text

    def _end_state(self, out: list[str]) -> None:
        """A ``\\r``: the current state is finished."""
        if self._cut:
            # A state too long to hold was shown as it came: end it, and
            # start afresh (what follows replaced it on a terminal).
            self._piece(self._take(), out)
            self._cut = False
        elif self._seg_len:
            self._last = self._take()

    def _end_line(self, out: list[str]) -> None:
        """A ``\\n`` (or the end of the stream): the line is finished."""
        if self._cut:
            self._piece(self._take(), out)
        elif self._seg_len:
            out.append(clean_line(self._take()))
        elif self._last:
            out.append(clean_line(self._last))
        elif not self._shown:
            out.append("")
        self._last = ""
        self._cut = self._shown = self._open = False


class Writable(Protocol):
    """Where the Printer writes: a binary file, or a console sink."""

    def write(self, data: bytes, /) -> object: ...

    def flush(self) -> None: ...


# Bright, distinguishable on dark and light backgrounds; cycled per node.
_COLOURS = (36, 33, 32, 35, 34, 91, 96, 93, 92, 95, 94, 31)


@dataclass
class Source:
    """One stream of one rank (or of the launcher) on one node."""

    node: int
    host: str
    rank: int  # global rank; -1 for torchrun or the exec'd command
    stream: int  # 1 stdout, 2 stderr
    framer: LineFramer = field(default_factory=LineFramer)
    shown: bool = True  # on the console (else only kept for the report's last lines)
    when: float = 0.0  # the node-side time its last chunk was read (seconds since the epoch)


def console_stamp(when: float) -> str:
    """``--timestamps``: a node's time as the console shows it (``12:03:04.123456``)."""
    return datetime.datetime.fromtimestamp(when).strftime("%H:%M:%S.%f")


class Printer:
    """Writes prefixed lines; remembers each rank's last stderr lines."""

    def __init__(
        self,
        stdout: Writable | None = None,
        stderr: Writable | None = None,
        colour: bool | None = None,
        host_width: int = 0,
        rank_width: int = 0,
        keep_lines: int = 20,
        launcher_label: str = "torchrun",
        secrets: Iterable[str] = (),
        max_line: int = MAX_LINE,
        shows: Callable[[int, int, int], bool] | None = None,
        timestamps: bool = False,
        folder: LineFolder | None = None,
        clock: Callable[[], float] = time.monotonic,
        gather: bool = False,
    ) -> None:
        self.stdout: Writable = stdout if stdout is not None else sys.stdout.buffer
        self.stderr: Writable = stderr if stderr is not None else sys.stderr.buffer
        if colour is None:
            colour = sys.stdout.isatty()
        self.colour = colour
        self.host_width = host_width
        self.rank_width = rank_width
        self.launcher_label = launcher_label
        self.keep_lines = keep_lines
        self.max_line = max_line
        self.tails: dict[tuple[int, int], collections.deque[str]] = {}
        self._sources: dict[tuple[int, int, int], Source] = {}
        self._prefixes: dict[tuple[int, int, str], str] = {}
        # Secret values never reach the console, even when a rank prints one.
        # Short values are left alone: redacting "1" would mangle everything.
        self.redactor = Redactor(secrets)
        self._secrets = self.redactor if self.redactor else None
        # (node, rank, stream) -> whether its lines reach the console
        # (sshrun.output_filters: --local-ranks-filter, --redirects, --tee).
        self.shows = shows
        self.timestamps = timestamps
        self.folder = folder
        self.clock = clock
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        # (stream, text) -> the node time of the last copy folded in (its stamp)
        self._folded_when: dict[tuple[str, str], float] = {}
        # exec --gather: node index -> its lines, kept instead of printed (sshrun.gather)
        self.gathered: dict[int, list[str]] | None = {} if gather else None

    def redact(self, text: str) -> str:
        return self.redactor.redact(text)

    def prefix(self, node: int, host: str, rank: int, mark: str = "|") -> str:
        """``mark`` is ``|`` before a line, ``+`` before the continuation of a long one."""
        key = (node, rank, mark)
        cached = self._prefixes.get(key)
        if cached is not None:
            return cached
        label = f"r{rank}" if rank >= 0 else self.launcher_label
        if label:
            text = f"{host:<{self.host_width}} {label:<{self.rank_width}} {mark}"
        else:
            text = f"{host:<{self.host_width}} {mark}"
        if self.colour:
            text = f"\x1b[{_COLOURS[node % len(_COLOURS)]}m{text}\x1b[0m"
        self._prefixes[key] = text + " "
        return self._prefixes[key]

    def feed(self, node: int, host: str, rank: int, stream: int, data: bytes,
             when: float | None = None) -> None:
        """``when``: the node-side time ``data`` was read (for ``timestamps``)."""
        key = (node, rank, stream)
        source = self._sources.get(key)
        if source is None:
            shown = self.shows is None or self.shows(node, rank, stream)
            source = self._sources[key] = Source(node, host, rank, stream,
                                                 LineFramer(self.max_line), shown)
        if not source.shown and stream != 2:
            return  # neither shown nor kept: stderr only is kept for the report
        if when is not None:
            source.when = when
        framer = source.framer
        pieces = framer.pieces
        lines = framer.feed(data)
        if lines:
            self._emit(source, lines, whole=framer.pieces == pieces)

    def flush_node(self, node: int) -> None:
        """A node's streams ended: print every last partial line."""
        for key, source in list(self._sources.items()):
            if key[0] == node:
                lines = source.framer.flush()
                if lines:
                    self._emit(source, lines)

    def flush_all(self) -> None:
        """The attempt is over: every partial line, then every fold still open."""
        for node in {key[0] for key in self._sources}:
            self.flush_node(node)
        self.close_folds()

    def close_folds(self) -> None:
        """Every open fold printed now, and the timer cancelled (idempotent)."""
        self._disarm()
        if self.folder is not None:
            self._print_folds(self.folder.close())

    def fold_due(self) -> None:
        """The folds whose window has passed, printed; the timer set for the next."""
        if self.folder is None:
            return
        self._timer = self._timer_at = None
        self._print_folds(self.folder.due(self.clock()))
        self._arm()

    def _arm(self) -> None:
        """One timer, for the oldest open window's end (none without a running loop)."""
        assert self.folder is not None
        due = self.folder.next_due()
        if due is None or (self._timer_at is not None and self._timer_at <= due):
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        self._disarm()
        self._timer_at = due
        self._timer = loop.call_later(max(0.0, due - self.clock()), self.fold_due)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self._timer_at = None

    def _print_folds(self, folds: list[Folded]) -> None:
        for fold in folds:
            when = self._folded_when.pop((fold.stream, fold.text), 0.0)
            hosts, ranks = fold.label().split(" ", 1)
            text = f"{hosts:<{self.host_width}} {ranks:<{self.rank_width}} |"
            if self.colour:
                text = f"\x1b[2m{text}\x1b[0m"
            if self.timestamps:
                text = f"{console_stamp(when)} {text}"
            out = self.stderr if fold.stream == "err" else self.stdout
            out.write(f"{text} {fold.summary()}\n".encode("utf-8", "replace"))
            out.flush()

    def _emit(self, source: Source, lines: list[str], whole: bool = False) -> None:
        """``whole``: no line is a piece of a longer one (no ``Continuation``)."""
        if not source.shown:
            self._keep(source, self._redact_lines(lines)
                       if self._secrets is not None else lines)
            return
        if self._secrets is not None:
            # A secret cut across two pieces of a line over MAX_LINE is not seen.
            lines = self._redact_lines(lines)
        kept = lines
        if self.gathered is not None:
            self.gathered.setdefault(source.node, []).extend(lines)
            self._keep(source, lines)
            return
        prefix = self.prefix(source.node, source.host, source.rank)
        stamp = console_stamp(source.when) + " " if self.timestamps else ""
        # A rank's unterminated colour must not bleed into the next prefix.
        suffix = "\x1b[0m\n" if self.colour else "\n"
        if whole and (self.folder is None or source.rank < 0):
            # Every line gets the same mark: one join for the whole chunk.
            mark = stamp + prefix
            text = mark + (suffix + mark).join(lines) + suffix
        else:
            more = self.prefix(source.node, source.host, source.rank, "+")
            marks = [stamp + (more if isinstance(line, Continuation) else prefix)
                     for line in lines]
            if self.folder is not None and source.rank >= 0:
                lines, marks = self._fold(source, lines, marks)
            text = "".join(mark + line + suffix
                           for mark, line in zip(marks, lines, strict=True))
        if text:
            out = self.stderr if source.stream == 2 else self.stdout
            out.write(text.encode("utf-8", "replace"))
            out.flush()
        self._keep(source, kept)

    def _redact_lines(self, lines: list[str]) -> list[str]:
        """Each line redacted; a chunk with no secret anywhere is looked at once."""
        if len(lines) > 1 and not self.redactor.found("\n".join(lines)):
            # A secret is matched whole or line by line (sshrun.redact), so
            # none found in the lines joined is none in any line.
            return lines
        return [self.redact(line) for line in lines]

    def _fold(self, source: Source, lines: list[str],
              marks: list[str]) -> tuple[list[str], list[str]]:
        """The lines (and their marks) still to show: those not folded into a copy
        another rank showed."""
        assert self.folder is not None
        now = self.clock()
        stream = "err" if source.stream == 2 else "out"
        shown: list[str] = []
        shown_marks: list[str] = []
        for line, mark in zip(lines, marks, strict=True):
            # A piece of a line over MAX_LINE is shown as it comes (its first
            # piece may have been shown already).
            if isinstance(line, Continuation) or len(line) >= self.max_line \
                    or self.folder.offer(source.host, source.rank, line, now, stream):
                shown.append(line)
                shown_marks.append(mark)
            else:
                self._folded_when[(stream, line)] = source.when
        self._arm()
        return shown, shown_marks

    def _keep(self, source: Source, lines: list[str]) -> None:
        """A rank's last stderr lines, for the report (shown on the console or not)."""
        if source.stream == 2:
            tail = self.tails.get((source.node, source.rank))
            if tail is None:
                tail = self.tails[(source.node, source.rank)] = collections.deque(
                    maxlen=self.keep_lines
                )
            tail.extend(lines[-self.keep_lines:] if self.keep_lines else ())

    def tail(self, node: int, rank: int) -> list[str]:
        return list(self.tails.get((node, rank), ()))
