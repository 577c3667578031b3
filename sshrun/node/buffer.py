"""The agent's output to the head: one queue, written to stdout as fast as the head reads.

Everything the agent sends (frames of output, events) goes through here, in
order. Above ``HIGH_WATER`` bytes queued the queue asks its readers to stop
reading ranks' output (they block on write, as on a full pipe) while control
goes on; below ``LOW_WATER`` they read again. Nothing is dropped while the
head lives: ``drain`` waits for as long as the head's heartbeats keep coming.

Runs on the node: standard library only, Python 3.8.
"""

from __future__ import annotations

import os
import selectors
import time
from collections import deque
from collections.abc import Callable

from sshrun.node.protocol import Message, encode_event, output_header

HIGH_WATER = 8 * 1024 * 1024
LOW_WATER = 1024 * 1024
WRITE_BATCH = 64  # chunks per writev, far below IOV_MAX (1024)
STDOUT = 1


def registered(sel: selectors.BaseSelector, fd: int) -> bool:
    try:
        sel.get_key(fd)
        return True
    except KeyError:
        return False


class OutputBuffer:
    """The queue for the head. ``on_pause(True)``: stop reading ranks; ``(False)``: resume.

    The queue is the chunks themselves, written with ``writev``: appending
    them to one growing buffer copied every byte once more and, as that buffer
    was reallocated, faulted in fresh pages; that was most of an agent's CPU
    while it streamed (perf: memmove and page faults).
    """

    def __init__(self, sel: selectors.BaseSelector, on_pause: Callable[[bool], None]) -> None:
        self.sel = sel
        self.chunks: deque[bytes | memoryview] = deque()
        self.size = 0
        self.closed = False  # the head is gone: nobody reads output any more
        self.paused = False
        self._on_pause = on_pause
        self.fd = STDOUT  # where the frames go: stdout, or stderr after move_to

    def __len__(self) -> int:
        return self.size

    def send(self, data: bytes) -> None:
        """An event (or a marker): out at once when nothing is queued, so that it leaves
        before the next turn of the loop (an exec command's passed-through stdout does
        not wait for it)."""
        if self.closed:
            return
        if not self.chunks:
            n = self._write_now((data,))
            if n is None or n == len(data):
                return
            data = data[n:]
        self.chunks.append(data)
        self.size += len(data)
        self._want_write()

    def event(self, message: Message) -> None:
        self.send(encode_event(message))

    def output(self, stream: int, source: int, data: bytes | memoryview) -> None:
        """Bytes a rank (or torchrun) wrote, just read; may pause the readers.

        ``data`` may be a view of the reader's buffer, valid only during the
        call: with nothing queued it goes to stdout at once, from that buffer,
        and only what stdout does not take is copied into the queue. That is
        the common case while output flows, and it spares every chunk an
        allocation (fresh pages to fault in) and a turn of the event loop.
        """
        if self.closed:
            return
        header = output_header(stream, source, len(data), time.time())
        if not self.chunks:
            n = self._write_now((header, data))
            if n is None:
                return
            if n >= len(header):
                if n - len(header) < len(data):
                    self._queue(bytes(data[n - len(header):]))
                return
            self._queue(header[n:])
        else:
            self._queue(header)
        self._queue(bytes(data))

    def _write_now(self, parts: tuple[bytes | memoryview, ...]) -> int | None:
        """What the descriptor takes of ``parts`` without waiting; None: the head is gone."""
        try:
            return os.writev(self.fd, parts)
        except BlockingIOError:
            return 0
        except OSError:
            self.closed = True
            return None

    def _queue(self, data: bytes) -> None:
        self.chunks.append(data)
        self.size += len(data)
        self._want_write()
        if self.size > HIGH_WATER and not self.paused:
            self._set_paused(True)

    def _want_write(self) -> None:
        if not registered(self.sel, self.fd):
            self.sel.register(self.fd, selectors.EVENT_WRITE)

    def flush_some(self) -> None:
        """stdout can take more: write what it takes."""
        chunks = self.chunks
        batch = [chunks[i] for i in range(min(len(chunks), WRITE_BATCH))]
        try:
            n = os.writev(self.fd, batch)
        except BlockingIOError:
            return
        except OSError:
            self.closed = True
            chunks.clear()
            self.size = 0
            n = 0
        self.size -= n
        while n:
            first = chunks[0]
            if len(first) <= n:
                n -= len(first)
                chunks.popleft()
            else:
                chunks[0] = memoryview(first)[n:]
                n = 0
        if not chunks and registered(self.sel, self.fd):
            self.sel.unregister(self.fd)
        if self.paused and self.size < LOW_WATER:
            self._set_paused(False)

    def move_to(self, fd: int, marker: bytes) -> bool:
        """Everything queued out on the current descriptor (blocking), then ``marker`` on
        ``fd``, and the frames from here on there. False: the head is gone."""
        if registered(self.sel, self.fd):
            self.sel.unregister(self.fd)
        os.set_blocking(self.fd, True)
        try:
            for chunk in self.chunks:
                view = memoryview(chunk)
                while view:
                    view = view[os.write(self.fd, view):]
            view = memoryview(marker)
            while view:
                view = view[os.write(fd, view):]
        except OSError:
            self.closed = True
            return False
        finally:
            self.chunks.clear()
            self.size = 0
        os.set_blocking(fd, False)
        self.fd = fd
        if self.paused:
            self._set_paused(False)
        return True

    def _set_paused(self, paused: bool) -> None:
        self.paused = paused
        self._on_pause(paused)

    def drain(self, pump: Callable[[float], None], head_silent: Callable[[float], bool],
              tick: float) -> None:
        """Last output to the head, for as long as the head lives, however slowly it reads.

        ``pump(seconds)`` serves the agent meanwhile; ``head_silent(since)``
        is true once the head is gone or silent for the heartbeat timeout
        (counted from ``since`` at the earliest), so that a frozen head
        cannot keep the agent alive.
        """
        start = time.monotonic()
        while self.chunks and not head_silent(start):
            pump(tick)
