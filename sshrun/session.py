"""The head's side of one node agent: start it, speak its protocol.

``AgentSession.start`` runs the constant bootstrap over SSH and sends the
agent on stdin (``sshrun.agent.payload()``: compiled by this interpreter,
and its source), then waits for its
``hello`` and checks its protocol version. Messages both ways are the typed
ones of ``sshrun.node.protocol``; one that breaks the protocol is an
``AgentError`` naming the node. ``pump`` reads frames until the channel
closes, handing output and events to callbacks. Nothing user-controlled is
ever part of the remote command line: only the interpreter path
(``--python``), quoted.

What the node's login shell prints before the agent runs (a motd, rc files)
is held back by :class:`sshrun.preamble.Preamble` on both streams, shown once
as a notice, and never read as frames; every text from the node that goes
into an error is sanitized (:mod:`sshrun.sanitize`).

An exec job's agent hands the channel's stdout to the command
(``protocol.Passthrough``): after that frame, stdout is the command's output
as it wrote it, and the agent's frames come on stderr after
``protocol.FRAMES_ON_STDERR``. Both are read at once; the node's output is
the same to the callbacks either way. Once the agent has said ``exited``,
a stdout that stays quiet for ``EXITED_QUIET`` seconds (while the head is
not holding it back) is closed: a process that escaped the sweep and holds
the command's stdout cannot keep the job open.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shlex
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import asyncssh

from sshrun import agent, preamble
from sshrun.bounded_process import open_process
from sshrun.errors import AgentError, NodeSetupError
from sshrun.node import protocol
from sshrun.node.protocol import (
    FRAMES_ON_STDERR,
    PROTOCOL_VERSION,
    SOURCE_LAUNCHER,
    Exited,
    Hello,
    Message,
    Passthrough,
    Preflight,
    ProtocolError,
)
from sshrun.preamble import Preamble
from sshrun.rendezvous import CLIENT_MODULES
from sshrun.sanitize import sanitize

if TYPE_CHECKING:
    from sshrun.console import ConsoleOutput

# What the bootstrap reads from stdin: the agent's modules and scripts (a
# payload, or a plain bundle); None: the shipped agent, ``agent.payload()``.
AGENT_BUNDLE: bytes | None = None

# rank, stream, data, the node's time it was read (Unix seconds)
OutputCallback = Callable[[int, int, bytes, float], None]
EventCallback = Callable[[Message], None]
NoticeCallback = Callable[[str, list[str]], None]  # one line, and lines under it
# The agent's own stderr kept for an error message: its last this many bytes.
STDERR_KEEP = 8192
# After ``exited``, how long a passed-through stdout may stay quiet before it is closed.
EXITED_QUIET = 2.0


def remote_command(python: str) -> str:
    """The one shell command sshrun runs on a node: the interpreter and the bootstrap."""
    # Let the node's shell expand a leading ~/, and nothing else.
    exe = "~/" + shlex.quote(python[2:]) if python.startswith("~/") else shlex.quote(python)
    # -S: no site module; the agent is standard library only, and the .pth
    # files site runs cost ~30 ms of CPU per node (sshrun/node/probe.py).
    return f"exec {exe} -S -c {shlex.quote(agent.BOOTSTRAP)}"


class AgentSession:
    def __init__(self, conn: asyncssh.SSHClientConnection, label: str, python: str,
                 notice: NoticeCallback | None = None) -> None:
        self.conn = conn
        self.label = label
        self.python = python
        self.process: asyncssh.SSHClientProcess[bytes] | None = None
        self.hello: Hello | None = None
        self._buf = bytearray()
        self._stderr = bytearray()  # the agent's own, after its marker; the last STDERR_KEEP
        self._notice = notice
        self._token = preamble.new_token()
        self._out_pre = Preamble(self._token)
        self._err_pre = Preamble(self._token)
        self._stderr_done: asyncio.Future[None] | None = None
        self._events: list[Message] = []
        # Passthrough: stdout is the command's raw output, frames are on stderr.
        self._raw = False
        self._frames: bytearray | None = None  # stderr's frames, once their marker came
        self._sink: tuple[OutputCallback, EventCallback] | None = None
        self._console: ConsoleOutput | None = None
        self._exited = asyncio.Event()
        self._stdout_at = 0.0  # when stdout last gave data (passthrough)
        self.last_heard = time.monotonic()  # any byte from the agent counts
        # The head holds this channel back (its console is behind): the
        # node's silence meanwhile is ours, not the node's.
        self.held = False

    async def start(self, timeout: float, workdir: str | None = None,
                    site: bool = True) -> Hello:
        """Run the agent on the node; return its hello (with the working directory checked).

        ``site``: torch and the rendezvous clients as the job's interpreter finds
        them (``Preflight.site``); an exec job, which nothing in hello refuses,
        spares each node the ``site`` module's start-up.

        An agent that speaks another protocol version is an ``AgentError``
        (exit 255) naming the node and both versions.
        """
        try:
            self.process = await open_process(self.conn, remote_command(self.python))
        except (asyncssh.Error, OSError) as exc:
            raise AgentError(self.label, f"cannot open a session: {exc}") from None
        # Read all along, so that a login shell's flood on stderr cannot stall
        # the channel (its window is shared with stdout).
        self._stderr_done = asyncio.ensure_future(self._read_stderr())
        preflight = protocol.encode_command(Preflight(workdir=workdir, sync=self._token,
                                                      modules=CLIENT_MODULES, site=site))
        # The channel may already be closed (no such interpreter): the read
        # below then sees EOF and says why.
        shipped = agent.payload() if AGENT_BUNDLE is None else AGENT_BUNDLE
        with contextlib.suppress(asyncssh.Error, OSError):
            self.process.stdin.write(b"%08x" % len(shipped) + shipped + preflight)
        try:
            async with asyncio.timeout(timeout):
                while not self._events:
                    data = await self.process.stdout.read(65536)
                    if not data:
                        self._out_pre.end()
                        self._show(self._out_pre, "stdout")
                        await self._raise_dead()
                    if not self._out_pre.found:
                        data = self._out_pre.feed(data)
                        if self._out_pre.found:
                            self._show(self._out_pre, "stdout")
                    self._buf += data
                    self._parse(self._buf, None, None)
        except TimeoutError:
            raise AgentError(
                self.label, f"agent did not start within {timeout:.0f}s ({self.python})"
            ) from None
        hello = self._events.pop(0)
        if not isinstance(hello, Hello):
            raise AgentError(self.label, "unexpected first message from agent: "
                                         f"{sanitize(repr(hello.to_dict()))[:200]}")
        self.hello = hello
        return hello

    async def _raise_dead(self) -> None:
        assert self.process is not None
        with contextlib.suppress(TimeoutError, asyncssh.Error, OSError):
            async with asyncio.timeout(5):
                await self._stderr_read()
                await self.process.wait_closed()
        status = self.process.exit_status
        text = self.stderr_text()
        last = text.splitlines()[-1] if text else ""
        if status in (126, 127):
            raise NodeSetupError(self.label, sanitize(
                f"cannot run interpreter {self.python!r} (--python): {last}"
            ))
        raise AgentError(self.label, "agent exited before saying hello "
                                     f"(status {status}): {last or 'no output'}")

    async def _read_stderr(self) -> None:
        """The session's stderr: the login shell's part shown once, the agent's kept;
        after ``FRAMES_ON_STDERR``, the agent's frames."""
        assert self.process is not None
        pre = self._err_pre
        with contextlib.suppress(asyncssh.Error, OSError):
            while True:
                data = await self.process.stderr.read(65536)
                if not data:
                    break
                if not pre.found:
                    data = pre.feed(data)
                    if pre.found:
                        self._show(pre, "stderr")
                if self._frames is None:
                    self._stderr += data
                    at = self._stderr.find(FRAMES_ON_STDERR)
                    if at < 0:
                        self._keep_stderr(b"")
                        continue
                    self._frames = self._stderr[at + len(FRAMES_ON_STDERR):]
                    del self._stderr[at:]
                else:
                    self._frames += data
                self.last_heard = time.monotonic()
                await self._parse_frames()
        pre.end()

    async def _parse_frames(self) -> None:
        """Stderr's frames to the callbacks, once ``pump`` has given them; a stderr that
        breaks the protocol (the agent died, and Python printed why) is text again."""
        if self._sink is None or self._frames is None:
            return
        await self._wait_while_held()
        try:
            self._parse(self._frames, *self._sink)
        except AgentError:
            self._keep_stderr(self._frames)
            self._frames = None

    def _keep_stderr(self, data: bytes | bytearray) -> None:
        """The agent's own stderr, for an error message: its last STDERR_KEEP bytes."""
        self._stderr += data
        del self._stderr[:-STDERR_KEEP]

    async def _stderr_read(self) -> None:
        if self._stderr_done is not None:
            # wait(), not await: a reader that close() cancelled is no error here.
            await asyncio.wait({self._stderr_done})

    def stderr_text(self) -> str:
        """What the agent wrote on stderr (or the shell, if the agent never ran), sanitized."""
        raw = bytes(self._stderr) if self._err_pre.found else bytes(self._err_pre.tail)
        return sanitize(raw.decode("utf-8", "replace"), multiline=True).strip()

    def _show(self, pre: Preamble, stream: str) -> None:
        lines = pre.notice()
        if lines and self._notice is not None:
            self._notice(f"{self.label}: its login shell printed this on {stream} before "
                         "sshrun's agent started:", [f"  {line}" for line in lines])

    def send(self, message: Message) -> None:
        """Queue one control message; a closed channel is the caller's signal, not an error."""
        if self.process is None:
            return
        with contextlib.suppress(asyncssh.Error, OSError, BrokenPipeError):
            self.process.stdin.write(protocol.encode_command(message))

    async def pump(self, on_output: OutputCallback, on_event: EventCallback,
                   console: ConsoleOutput | None = None) -> str | None:
        """Read frames until the channel closes; return the agent's stderr, if any.

        While ``console`` is held (its backlog is full) a chunk read is kept
        unparsed and nothing more is read: asyncssh stops opening the SSH
        window, and the agent's writes block. Back-pressure, as a pipe gives.
        """
        assert self.process is not None
        for event in self._events:
            on_event(event)
        self._events.clear()
        self._sink, self._console = (on_output, on_event), console
        await self._parse_frames()
        stdout = self.process.stdout
        quiet = asyncio.ensure_future(self._close_when_quiet())
        try:
            while True:
                data = await stdout.read(65536)
                if not data:
                    break
                self.last_heard = self._stdout_at = time.monotonic()
                await self._wait_while_held()
                if self._raw:
                    on_output(SOURCE_LAUNCHER, 1, data, time.time())
                    continue
                self._buf += data
                self._parse(self._buf, on_output, on_event)
        except (asyncssh.Error, OSError):
            pass
        finally:
            quiet.cancel()
            await asyncio.wait({quiet})
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(2):
                await self._stderr_read()
        if self._frames:
            # Not a whole frame: what a dying agent printed (Python's traceback).
            self._keep_stderr(self._frames)
        return self.stderr_text() or None

    async def _wait_while_held(self) -> None:
        """While the console's backlog is full, read nothing more: back-pressure."""
        console = self._console
        if console is None or not console.is_held():
            return
        self.held = True
        try:
            await console.wait()
        finally:
            self.held = False
            self.last_heard = self._stdout_at = time.monotonic()

    async def _close_when_quiet(self) -> None:
        """Passthrough: once the agent said ``exited``, close a stdout that has gone quiet.
        Until then (and for good without passthrough) it only waits."""
        assert self.process is not None
        await self._exited.wait()
        if not self._raw:
            return
        while True:
            await asyncio.sleep(EXITED_QUIET / 4)
            if not self.held and time.monotonic() - self._stdout_at > EXITED_QUIET:
                self.process.close()
                return

    def _parse(self, buf: bytearray, on_output: OutputCallback | None,
               on_event: EventCallback | None) -> None:
        size = protocol.HEADER.size
        pos = 0
        while len(buf) - pos >= size:
            kind, stream, source, length = protocol.HEADER.unpack_from(buf, pos)
            end = pos + size + length
            if len(buf) < end:
                break
            payload = bytes(buf[pos + size : end])
            pos = end
            if kind == protocol.KIND_OUTPUT:
                if on_output is not None:
                    try:
                        when, data = protocol.decode_output(payload)
                    except ProtocolError as exc:
                        raise AgentError(self.label, f"agent protocol error: {exc}") from None
                    on_output(source, stream, data, when)
            elif kind == protocol.KIND_EVENT:
                event = self._event(payload)
                if event is None:
                    continue  # a kind of event this head does not know: a newer agent's
                if isinstance(event, Exited):
                    self._stdout_at = time.monotonic()
                    self._exited.set()
                if isinstance(event, Passthrough) and buf is self._buf:
                    # What follows on stdout is the command's own output.
                    self._raw = True
                    rest = bytes(buf[pos:])
                    buf.clear()
                    if rest and on_output is not None:
                        on_output(SOURCE_LAUNCHER, 1, rest, time.time())
                    return
                if on_event is not None and not self._events:
                    on_event(event)
                else:
                    self._events.append(event)
            else:
                raise AgentError(self.label, f"agent protocol error: frame kind {kind!r}")
        del buf[:pos]

    def _event(self, payload: bytes) -> Message | None:
        try:
            data = json.loads(payload)
        except ValueError:
            raise AgentError(self.label, "agent protocol error: an event that is "
                                         "not JSON") from None
        if isinstance(data, dict) and data.get("type") == Hello.TYPE:
            # Before its fields: another version may have other ones.
            version = data.get("version")
            if version != PROTOCOL_VERSION:
                raise AgentError(self.label, sanitize(
                    f"the agent speaks protocol version {version!r}, this head speaks "
                    f"version {PROTOCOL_VERSION}: the agent that ran is not the one the head "
                    "sent (check --python and the node's login shell)"))
        try:
            return protocol.decode(data, protocol.EVENTS)
        except ProtocolError as exc:
            raise AgentError(self.label, sanitize(f"agent protocol error: {exc}")) from None

    def close(self) -> None:
        if self.process is not None:
            with contextlib.suppress(asyncssh.Error, OSError):
                self.process.stdin.write_eof()
        if self._stderr_done is not None and not self._stderr_done.done():
            self._stderr_done.cancel()
