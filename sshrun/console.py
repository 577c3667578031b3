"""The head's stdout and stderr, written so that the event loop never waits on them.

A paused pager, Ctrl-S on a terminal or a slow ``tee`` must not stop the
head's heartbeats: an agent that hears nothing from its head stops its job.
So nothing on the event loop writes to the console. Each stream has a
``ConsoleSink``: ``write`` appends to a backlog and returns at once, and a
thread of its own writes the backlog out with ordinary blocking writes (the
inherited file descriptors stay as they are: ``O_NONBLOCK`` is shared with the
user's shell and terminal, and must not be set on them).

The backlog is bounded through back-pressure, as a pipe is. ``ConsoleOutput``
watches both sinks: when either holds more than ``HIGH_WATER`` bytes it is
*held*, and the supervisor stops reading the agents' channels (asyncssh then
stops opening the SSH window, the agents' writes block, and the agents stop
reading their ranks, whose writes block in turn); below ``LOW_WATER`` it
resumes. What the head holds on top of ``HIGH_WATER`` is bounded too: the
chunk that crossed it (64 KiB read from one node, with its prefixes), one
64 KiB chunk read and not yet parsed per node, and per node about one channel
window (2 MiB) in asyncssh's channel and one in its stream's read buffer
(sshrun.bounded_process: plain asyncssh lets the channel's share grow with
the output). bench/memory.py measures the whole head with 64 ranks flooding a
stalled reader (docs/benchmarks.md).

On a terminal, a ``LiveLine`` (the start-up's status) sits on stderr's last
line: every other write to a terminal stream first clears it, in that same
stream so that the clear reaches the terminal in order with the text, and
the line is drawn again once both terminal streams have nothing queued.

A stream whose reader went away (``sshrun ... | head``: EPIPE) is *closed*:
what is written to it from then on is dropped, and ``ConsoleOutput`` calls
``on_stdout_closed`` once, in the event loop, so that the job stops as it
does on Ctrl-C. A closed stderr only drops sshrun's messages.
"""

from __future__ import annotations

import asyncio
import codecs
import collections
import contextlib
import io
import os
import select
import threading
import time
from collections.abc import Callable
from typing import BinaryIO, TextIO, cast

HIGH_WATER = 4 * 1024 * 1024
LOW_WATER = 1024 * 1024
# One write to the terminal at most this large: a few syscalls per MiB.
WRITE_CHUNK = 256 * 1024


class ConsoleSink:
    """One output stream, written by its own thread from a backlog."""

    def __init__(self, file: BinaryIO, notify: Callable[[], None] = lambda: None,
                 low_water: int = LOW_WATER) -> None:
        self.name = getattr(file, "name", "?")
        self._file = file
        try:
            self._fd: int | None = file.fileno()
            file.flush()  # anything written before, in order
        except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
            self._fd = None  # no descriptor (a test's capture): its own write()
        self._notify = notify  # called by the writer thread: must be thread-safe
        self._low = low_water
        self._chunks: collections.deque[bytes] = collections.deque()
        self._size = 0
        self._writing = 0  # taken off the backlog, not yet written
        self._cond = threading.Condition()
        self._ending = False
        self.notify_when_empty = False  # at the end: say so each time the backlog empties
        self.closed = False  # the reader went away (EPIPE, or any write error)
        self.error: OSError | None = None
        # A live line's hook (LiveLine): what goes before a write to this terminal.
        self.overlay: Callable[[], bytes] | None = None
        self._thread = threading.Thread(target=self._run, name=f"sshrun-{self.name}",
                                        daemon=True)
        self._thread.start()

    @property
    def isatty(self) -> bool:
        return self._fd is not None and os.isatty(self._fd)

    @property
    def backlog(self) -> int:
        """Bytes written but not yet out."""
        return self._size + self._writing

    def write(self, data: bytes, /) -> int:
        """Queue ``data``; never blocks, whatever the reader does."""
        if not data or self.closed:
            return len(data)
        before = self.overlay() if self.overlay is not None else b""
        self.queue(before + bytes(data))
        return len(data)

    def queue(self, data: bytes) -> None:
        """Queue ``data`` as it is, past any live line's hook."""
        if self.closed:
            return
        with self._cond:
            self._chunks.append(data)
            self._size += len(data)
            self._cond.notify()

    def flush(self) -> None:
        """Nothing to do: the writer thread writes as fast as the reader takes it."""

    def drain(self, timeout: float | None = None) -> bool:
        """Until everything queued is out (or dropped); True when it is."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while self.backlog and not self.closed:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._cond.wait(left)
        return True

    def close(self, timeout: float | None = None) -> None:
        """Write out the backlog (a stalled reader is waited for, as a pipe is), then stop."""
        self.drain(timeout)
        with self._cond:
            self._ending = True
            self._cond.notify_all()
        self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._chunks and not self._ending:
                    self._cond.wait()
                if not self._chunks:
                    return
                parts = []
                taken = 0
                while self._chunks and taken < WRITE_CHUNK:
                    part = self._chunks.popleft()
                    parts.append(part)
                    taken += len(part)
                self._size -= taken
                self._writing = taken
            try:
                self._write_all(b"".join(parts))
            except OSError as exc:
                self._close(exc)
                return
            with self._cond:
                before = self._size + self._writing
                self._writing = 0
                self._cond.notify_all()
                crossed = (before >= self._low > self._size
                           or (self.notify_when_empty and not self._size))
            if crossed:
                self._notify()

    def _write_all(self, data: bytes) -> None:
        if self._fd is None:
            self._file.write(data)
            self._file.flush()
            return
        view = memoryview(data)
        while view:
            try:
                n = os.write(self._fd, view)
            except BlockingIOError:
                # Someone else set O_NONBLOCK on a descriptor we share: wait
                # until it takes more, as a blocking write would.
                select.select([], [self._fd], [], 1.0)
                continue
            except InterruptedError:
                continue
            view = view[n:]

    def _close(self, exc: OSError) -> None:
        with self._cond:
            self.closed = True
            self.error = exc
            self._chunks.clear()
            self._size = self._writing = 0
            self._cond.notify_all()
        self._notify()


class ConsoleOutput:
    """The head's two sinks, and whether output is held back (read in the event loop)."""

    def __init__(self, stdout: BinaryIO, stderr: BinaryIO,
                 loop: asyncio.AbstractEventLoop | None = None,
                 high_water: int = HIGH_WATER, low_water: int = LOW_WATER) -> None:
        self._loop = loop or asyncio.get_running_loop()
        self._high = high_water
        self._low = low_water
        self._resumed = asyncio.Event()
        self._resumed.set()
        self._emptied = asyncio.Event()
        self._held_since: float | None = None
        self._held_total = 0.0
        self._closed_reported = False
        self.on_stdout_closed: Callable[[], None] | None = None
        self.stdout = ConsoleSink(stdout, self._from_thread, low_water)
        self.stderr = ConsoleSink(stderr, self._from_thread, low_water)

    def _from_thread(self) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits
            self._loop.call_soon_threadsafe(self.update)

    def _backlog(self) -> int:
        return max(self.stdout.backlog, self.stderr.backlog)

    def is_held(self) -> bool:
        """True while the console's backlog is too large to read more from the nodes."""
        if self._held_since is None and self._backlog() > self._high:
            self._held_since = time.monotonic()
            self._resumed.clear()
        return self._held_since is not None

    async def wait(self) -> None:
        """Until the console takes output again."""
        await self._resumed.wait()

    def held_seconds(self) -> float:
        """How long, in all, output has been held back so far."""
        now = time.monotonic()
        return self._held_total + (now - self._held_since if self._held_since else 0.0)

    def update(self) -> None:
        """A sink's backlog went down, or a stream closed (scheduled by its thread)."""
        if not self.stdout.backlog and not self.stderr.backlog:
            self._emptied.set()
        if self._held_since is not None and self._backlog() < self._low:
            self._held_total += time.monotonic() - self._held_since
            self._held_since = None
            self._resumed.set()
        if self.stdout.closed and not self._closed_reported:
            self._closed_reported = True
            if self.on_stdout_closed is not None:
                self.on_stdout_closed()

    def text(self) -> TextIO:
        """stderr as a text file, for the report's lines (sshrun.styled): sshrun's own
        messages queue like the ranks'."""
        return cast(TextIO, _TextSink(self.stderr, self._stderr_isatty))

    @property
    def stdout_isatty(self) -> bool:
        """Whether the ranks' stdout is a terminal (folding's default, as colour's)."""
        return self.stdout.isatty

    @property
    def _stderr_isatty(self) -> bool:
        return self.stderr.isatty

    @property
    def stderr_isatty(self) -> bool:
        """Whether sshrun's own lines go to a terminal (the live line's condition)."""
        return self.stderr.isatty

    async def finish(self, give_up: Callable[[], bool]) -> bool:
        """Everything out at the end of the run, waiting for a slow reader as a pipe
        makes a writer wait, while the event loop (and Ctrl-C) keeps running.

        Returns False when ``give_up`` said so first; what is left is dropped.
        """
        sinks = (self.stdout, self.stderr)
        for sink in sinks:
            sink.notify_when_empty = True
        while True:
            self._emptied.clear()
            if all(sink.drain(0) for sink in sinks):
                break
            if give_up():
                return False
            # Woken as a backlog empties (update()); the bound is for give_up.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(0.1):
                    await self._emptied.wait()
        for sink in sinks:
            sink.close(0)
        return True


class LiveLine:
    """One status line at the foot of the terminal (stderr), which other output passes.

    ``show`` draws or redraws it, ``remove`` takes it away. Any other write to a
    terminal stream while it is shown starts with ``CLEAR`` (carriage return,
    erase the line) in that stream, and the line is drawn again ``REDRAW``
    seconds later, once neither terminal stream has anything queued, so that
    it is always below the last line written. Only in the event loop.
    """

    CLEAR = b"\r\x1b[K"
    REDRAW = 0.05

    def __init__(self, out: ConsoleOutput, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self._out = out
        self._loop = loop or asyncio.get_running_loop()
        self._text: bytes | None = None
        self._shown = False
        self._timer: asyncio.TimerHandle | None = None
        self._sinks = [sink for sink in (out.stdout, out.stderr) if sink.isatty]
        for sink in self._sinks:
            sink.overlay = self._passing

    def show(self, text: str) -> None:
        try:
            width = os.get_terminal_size(self._out.stderr._fd or 0).columns
        except OSError:
            width = 0
        if width > 1:
            # A line that wraps could not be cleared with one carriage return.
            text = text[:width - 1]
        # (0: a terminal that does not know its size, as a fresh pty.)
        self._text = text.encode("utf-8", "replace")
        if self._shown:
            self._out.stderr.queue(self.CLEAR + self._text)
        else:
            self._schedule(0.0)

    def remove(self) -> None:
        self._text = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._shown:
            self._shown = False
            self._out.stderr.queue(self.CLEAR)

    def close(self) -> None:
        self.remove()
        for sink in self._sinks:
            sink.overlay = None

    def _passing(self) -> bytes:
        if not self._shown:
            return b""
        self._shown = False
        self._schedule(self.REDRAW)
        return self.CLEAR

    def _schedule(self, delay: float) -> None:
        if self._timer is None and self._text is not None:
            self._timer = self._loop.call_later(delay, self._draw)

    def _draw(self) -> None:
        self._timer = None
        if self._text is None or self._shown or self._out.stderr.closed:
            return
        if any(sink.backlog for sink in self._sinks):
            self._schedule(self.REDRAW)
            return
        self._shown = True
        self._out.stderr.queue(self.CLEAR + self._text)


class _TextSink(io.TextIOBase):
    """A text view of a sink: UTF-8, errors replaced, never blocking."""

    def __init__(self, sink: ConsoleSink, tty: bool) -> None:
        super().__init__()
        self._sink = sink
        self._tty = tty
        self._encoder = codecs.getincrementalencoder("utf-8")("replace")

    def write(self, text: str) -> int:
        self._sink.write(self._encoder.encode(text))
        return len(text)

    def isatty(self) -> bool:
        return self._tty

    def writable(self) -> bool:
        return True

