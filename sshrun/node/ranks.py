"""The ranks' streams: the shims' Unix-socket connections, the readers, and exit statuses.

torchrun runs the rank shim (``rank_shim.py``) as each worker's entrypoint;
the shim connects three streams to the agent's socket, each opened by one
JSON line (``stream``, ``rank``, ``local_rank``, ``pid``): stdout (1) and
stderr (2), which become readers whose bytes go to the head tagged by rank,
and a control stream (0) on which the shim reports the rank's traceback and
exit status. torchrun's (or the exec command's) own stdout and stderr are
readers too, with ``SOURCE_LAUNCHER`` as their source.

A shim that dies without reporting (killed itself, or taken down with its
torchrun) is reported after ``COLLATERAL_WAIT`` unless its torchrun turns
out to have been killed: then torchrun's death is the failure.

Runs on the node: standard library only, Python 3.8.
"""

from __future__ import annotations

import os
import selectors
import time

from sshrun.node.buffer import OutputBuffer, registered
from sshrun.node.protocol import SOURCE_LAUNCHER, RankExit, RankStarted, loads

# socket (~2 ms: its enums) is imported for a torchrun job only, and typing
# (~3 ms) never: their names here are the type checker's.
TYPE_CHECKING = False
if TYPE_CHECKING:
    import socket
    from typing import IO, Any

READ_CHUNK = 65536
# How long a rank that died without a status waits to be reported, in case
# its torchrun was killed (then torchrun's death is the failure, not the rank's).
COLLATERAL_WAIT = 1.0


class _Shim:
    """A shim connection: before its header line, and after it as a control stream."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = b""
        self.head: dict[str, Any] | None = None
        self.traceback: str | None = None

    @property
    def rank(self) -> int:
        assert self.head is not None
        return int(self.head["rank"])

    @property
    def local_rank(self) -> int:
        assert self.head is not None
        return int(self.head["local_rank"])


class RankStreams:
    def __init__(self, sel: selectors.BaseSelector, out: OutputBuffer) -> None:
        self.sel = sel
        self.out = out
        self.started = 0  # ranks whose shim said it runs (the rendezvous is behind them)
        self.listener: socket.socket | None = None
        self.readers: dict[int, tuple[IO[bytes] | socket.socket, int, int]] = {}
        self.conns: dict[int, _Shim] = {}  # fd -> shim connection
        self.reported: set[int] = set()  # ranks whose exit status arrived
        # rank -> (deadline, event): died without a status, not yet reported
        self.unreported: dict[int, tuple[float, RankExit]] = {}
        # Every stream is read into this one buffer (sshrun.node.buffer.output).
        self._buf = memoryview(bytearray(READ_CHUNK))

    @property
    def busy(self) -> bool:
        """Some stream has not ended yet."""
        return bool(self.readers or self.conns)

    def listen(self, path: str) -> None:
        import socket

        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(path)
        self.listener.listen(256)
        self.listener.setblocking(False)
        self.sel.register(self.listener.fileno(), selectors.EVENT_READ)

    def add_pipe(self, pipe: IO[bytes], stream: int) -> None:
        """torchrun's (or the command's) own stdout or stderr."""
        os.set_blocking(pipe.fileno(), False)
        self.readers[pipe.fileno()] = (pipe, stream, SOURCE_LAUNCHER)
        if not self.out.paused:
            self.sel.register(pipe.fileno(), selectors.EVENT_READ)

    def set_paused(self, paused: bool) -> None:
        """The head's queue is full (True) or has room again (False)."""
        for fd in list(self.readers):
            if paused and registered(self.sel, fd):
                self.sel.unregister(fd)
            elif not paused and not registered(self.sel, fd):
                self.sel.register(fd, selectors.EVENT_READ)

    def on_ready(self, fd: int) -> bool:
        """Serve ``fd`` if it is one of ours; False if it is not."""
        if self.listener is not None and fd == self.listener.fileno():
            self._on_accept()
        elif fd in self.readers:
            self._on_output(fd)
        elif fd in self.conns:
            self._on_conn(fd)
        else:
            return False
        return True

    def _on_output(self, fd: int) -> None:
        f, stream, rank = self.readers[fd]
        try:
            n = os.readv(fd, (self._buf,))
        except BlockingIOError:
            return
        except OSError:
            n = 0
        if n:
            self.out.output(stream, rank, self._buf[:n])
            return
        self.readers.pop(fd)
        if registered(self.sel, fd):
            self.sel.unregister(fd)
        f.close()

    def _on_accept(self) -> None:
        assert self.listener is not None
        try:
            conn, _ = self.listener.accept()
        except OSError:
            return
        conn.setblocking(False)
        self.conns[conn.fileno()] = _Shim(conn)
        self.sel.register(conn.fileno(), selectors.EVENT_READ)

    def _on_conn(self, fd: int) -> None:
        """A shim connection before its header line, or a control stream."""
        shim = self.conns[fd]
        try:
            data = shim.sock.recv(READ_CHUNK)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        shim.buf += data
        if shim.head is None:
            if b"\n" not in shim.buf:
                if data:
                    return
            else:
                line, shim.buf = shim.buf.split(b"\n", 1)
                head = shim.head = loads(line)
                if head["stream"] in (1, 2):
                    self._to_reader(fd, shim, int(head["stream"]))
                    return
                self.started += 1
                self.out.event(RankStarted(rank=shim.rank, local_rank=shim.local_rank,
                                           pid=int(head["pid"])))
        while shim.head is not None and b"\n" in shim.buf:
            line, shim.buf = shim.buf.split(b"\n", 1)
            report = loads(line)
            if "traceback" in report:
                shim.traceback = str(report["traceback"])
            if "exit" in report:
                self.reported.add(shim.rank)
                self.out.event(RankExit(
                    rank=shim.rank, local_rank=shim.local_rank, code=int(report["exit"]),
                    signal=report.get("signal"), traceback=shim.traceback,
                ))
        if not data:
            self.sel.unregister(fd)
            shim.sock.close()
            del self.conns[fd]
            if shim.head is not None and shim.rank not in self.reported:
                # The shim died without reporting: killed itself, or taken
                # down with its torchrun; settle tells which.
                self.reported.add(shim.rank)
                self.unreported[shim.rank] = (
                    time.monotonic() + COLLATERAL_WAIT,
                    RankExit(rank=shim.rank, local_rank=shim.local_rank, code=None,
                             traceback=shim.traceback),
                )

    def _to_reader(self, fd: int, shim: _Shim, stream: int) -> None:
        """From here on an output stream: hand it to the readers."""
        del self.conns[fd]
        self.readers[fd] = (shim.sock, stream, shim.rank)
        if shim.buf:
            self.out.output(stream, shim.rank, shim.buf)
        if self.out.paused:
            self.sel.unregister(fd)

    def settle(self, launcher_killed: bool, launcher_done: bool, final: bool = False) -> None:
        """Report ranks that died without a status, unless their torchrun was killed.

        A SIGKILLed torchrun takes its ranks with it (parent-death signal);
        blaming one of them would hide the real failure, which the exit
        status of torchrun then reports.
        """
        now = time.monotonic()
        for rank, (deadline, event) in list(self.unreported.items()):
            if launcher_killed:
                del self.unreported[rank]
            elif final or launcher_done or now >= deadline:
                del self.unreported[rank]
                self.out.event(event)
