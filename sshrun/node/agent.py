"""The sshrun node agent: one per node and job, standard library only, Python 3.8.

The head does not install anything on a node. It runs a constant bootstrap
(``sshrun.agent.BOOTSTRAP``) through ``ssh node PYTHON -S -c BOOTSTRAP``; the
bootstrap reads the agent's bundle (this package's modules and the scripts
it writes for torchrun, see ``sshrun.agent``) from stdin and runs ``main``.
Everything else (argv, environment, working directory, ranks, secrets) then
travels as messages on stdin (``sshrun.node.protocol``), so no shell on the
node ever sees it and no ``ps`` shows it.

Life of an agent::

    sync   ──> head          a marker with the head's token, on stdout and stderr
    hello  ──> head          version, pid, hostname, python, torch and CUDA versions,
                             rendezvous client modules present, a free port
    spec   <── head          what to run (torchrun or a plain command)
    start                    child in a new session, tagged SSHRUN_TAG=<tag>
    rdzv_probe ──> head      a torchrun job still before its rendezvous after a few
                             seconds: can this node reach the endpoint (``rdzv_probe``)
    output ──> head          framed chunks, tagged by global rank and stream
    hb     ──> head          every ``hb_period`` seconds while nothing else is queued
    exited ──> head          exit code, per-rank failures, what the sweep killed, and
                             why it stopped (``stopped``: the head's reason, or its own)

Its parts: ``protocol`` (the messages), ``probe`` (what the interpreter has,
for hello), ``buffer`` (the queue to the head, back-pressure and the final
drain), ``ranks`` (the ranks' streams and exit statuses), ``rdzv_probe``
(whether a stalled start-up can reach the rendezvous), ``teardown`` (the
job's processes, the sweep, the sentinel), and this module, which runs the
job and the loop that serves them all.

Teardown triggers: ``stop``/``kill`` from the head, stdin EOF (the head or
its connection died), or no heartbeat for ``hb_timeout`` seconds. Output goes
out before ``exited``, all of it, however slowly the head reads: the agent
waits for as long as the head's heartbeats keep arriving on stdin.
"""

from __future__ import annotations

import os
import select
import selectors
import sys
import time

from sshrun.node.buffer import OutputBuffer
from sshrun.node.probe import has_modules, load_site, torch_versions
from sshrun.node.protocol import (
    COMMANDS,
    FRAMES_ON_STDERR,
    PROTOCOL_VERSION,
    SYNC_PREFIX,
    Error,
    Exited,
    Heartbeat,
    Hello,
    Kill,
    Passthrough,
    Ping,
    Pong,
    Preflight,
    ProtocolError,
    RankFailure,
    RendezvousProbe,
    Spec,
    Started,
    Stop,
    Stopping,
    decode,
    dumps,
    loads,
    rank_failures,
)
from sshrun.node.ranks import READ_CHUNK, RankStreams
from sshrun.node.rdzv_probe import PROBE_AFTER, Probe
from sshrun.node.signals import signal
from sshrun.node.spawn import Child, spawn
from sshrun.node.teardown import Teardown, exit_status, set_child_subreaper
from sshrun.node.tmpdir import make_tmpdir, remove_tree

# typing is ~3 ms to import on a node; its names are the type checker's only.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any

TICK = 0.1
# The scripts the agent writes for a torchrun job, by file name (the head
# ships their sources in the bundle; see sshrun.agent.SCRIPTS).
RANK_SHIM = "sshrun_rank.py"
TORCHRUN_WRAPPER = "sshrun_torchrun.py"


def _free_port() -> int:
    # The C module socket.socket is made on: importing socket costs a node
    # ~2 ms (its enums) that an exec job never needs.
    import _socket

    sock = _socket.socket(_socket.AF_INET, _socket.SOCK_STREAM)
    try:
        sock.bind(("", 0))
        return int(sock.getsockname()[1])
    finally:
        sock.close()


def _separate(a: int, b: int) -> bool:
    """Two descriptors that are not one file (a stderr merged into stdout is)."""
    try:
        x, y = os.fstat(a), os.fstat(b)
    except OSError:
        return False
    return (x.st_dev, x.st_ino) != (y.st_dev, y.st_ino)


def _python_version() -> str:
    """The interpreter's version as ``platform.python_version()`` gives it ("3.11.2")."""
    version = sys.version.split()[0]
    return version + ".0" if version.count(".") == 1 else version


class Agent:
    def __init__(self, scripts: Mapping[str, str]) -> None:
        self.scripts = scripts
        self.sel = selectors.DefaultSelector()
        self.out = OutputBuffer(self.sel, self._pause_readers)
        self.ranks = RankStreams(self.sel, self.out)
        self.teardown = Teardown()
        self.in_buf = b""
        self.stdin_open = True
        self.last_heard = time.monotonic()
        self.spec: Spec | None = None
        self.child: Child | None = None
        self.child_code: int | None = None
        self.tmpdir = make_tmpdir("sshrun-")
        self.stopping: str | None = None  # why teardown began
        self.kill_deadline: float | None = None
        self.hb_timeout = 30.0
        self.hb_period = 0.0  # ours to the head; 0 until the spec says
        self.next_hb = 0.0
        self.grace = 10.0
        # torchrun jobs off the store's host: (host, port, when torchrun started)
        # until the first probe, then the probe, until a rank starts.
        self.probe_at: tuple[str, int, float] | None = None
        self.probe: Probe | None = None

    def _pause_readers(self, paused: bool) -> None:
        self.ranks.set_paused(paused)

    def reap(self) -> None:
        """Collect exit statuses: our child's, and adopted orphans' (we are their subreaper).

        (waitpid(-1) collects both: the child is a pid, never a Popen that would wait for it.)
        """
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if self.child is not None and pid == self.child.pid:
                if os.WIFSIGNALED(status):
                    self.child_code = -os.WTERMSIG(status)
                else:
                    self.child_code = os.WEXITSTATUS(status)
                self.child.returncode = self.child_code

    def _head_silent(self, since: float) -> bool:
        """The head is gone, or has said nothing for hb_timeout (counted from ``since`` at the
        earliest): nobody will take more output."""
        if self.out.closed or not self.stdin_open:
            return True
        return time.monotonic() - max(self.last_heard, since) > self.hb_timeout

    def serve_readers(self, budget: float) -> None:
        """Read ranks' streams until each has ended, for ``budget`` seconds of time in
        which output could flow: while the head holds our output back (paused)
        the clock stops, since a slow reader is no reason to drop output. The
        budget still bounds a daemon that keeps a pipe open; a silent head
        ends the wait."""
        start = last = time.monotonic()
        while self.ranks.busy and budget > 0 and not self._head_silent(start):
            self._pump(0.05)
            now = time.monotonic()
            if not self.out.paused:
                budget -= now - last
            last = now

    # -- the head's messages -----------------------------------------------------

    def _on_stdin(self) -> None:
        try:
            data = os.read(0, READ_CHUNK)
        except OSError:
            data = b""
        if not data:
            self.stdin_open = False
            self.sel.unregister(0)
            self.begin_stop("the head closed the connection")
            return
        self.last_heard = time.monotonic()
        self.in_buf += data
        self._on_lines()

    def _on_lines(self) -> None:
        while b"\n" in self.in_buf:
            line, self.in_buf = self.in_buf.split(b"\n", 1)
            if line.strip():
                self._on_message(line)

    def read_preflight(self, timeout: float) -> Preflight:
        """The head's first line, sent with the agent's source: what to check before hello."""
        deadline = time.monotonic() + timeout
        while b"\n" not in self.in_buf:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([0], [], [], left)[0]:
                return Preflight()
            data = os.read(0, READ_CHUNK)
            if not data:
                return Preflight()
            self.in_buf += data
        line, self.in_buf = self.in_buf.split(b"\n", 1)
        try:
            message = decode(loads(line), COMMANDS)
        except (ValueError, ProtocolError):
            message = None
        return message if isinstance(message, Preflight) else Preflight()

    def _on_message(self, line: bytes) -> None:
        try:
            message = decode(loads(line), COMMANDS)
        except (ValueError, ProtocolError) as exc:
            self.fail(f"protocol error from the head: {exc}")
            return
        if isinstance(message, Spec) and self.spec is None:
            self.spec = message
            self.start(message)
        elif isinstance(message, Stop):
            self.begin_stop(message.reason)
        elif isinstance(message, Kill):
            self.begin_stop(message.reason, grace=0.0)
        elif isinstance(message, Ping):
            self.out.event(Pong(seq=message.seq, time=time.time()))

    # -- the job -------------------------------------------------------------------

    def sync(self, token: str | None) -> None:
        """The marker that ends the login shell's output, on both streams."""
        if token is None:
            return
        marker = SYNC_PREFIX + token.encode("ascii", "replace") + b"\n"
        try:
            view = memoryview(marker)
            while view:
                view = view[os.write(2, view):]
        except OSError:
            pass
        self.out.send(marker)

    def hello(self, preflight: Preflight) -> None:
        if preflight.site:
            load_site()
        has_torch, torch_version, cuda_version = torch_versions()
        workdir = preflight.workdir
        self.out.event(Hello(
            # What socket.gethostname() and platform.python_version() say,
            # without importing either (~3 ms on a node).
            version=PROTOCOL_VERSION, pid=os.getpid(), hostname=os.uname().nodename,
            python=sys.executable, python_version=_python_version(),
            torch=has_torch, free_port=_free_port(), cwd=os.getcwd(),
            # Checked before any node starts anything, so that a typo fails fast.
            workdir_ok=os.path.isdir(os.path.expanduser(workdir)) if workdir else True,
            torch_version=torch_version, cuda_version=cuda_version,
            modules=has_modules(preflight.modules),
        ))

    def _write_script(self, name: str) -> str:
        path = os.path.join(self.tmpdir, name)
        with open(path, "w") as f:
            f.write(self.scripts[name])
        return path

    def start(self, spec: Spec) -> None:
        self.grace = spec.grace
        self.hb_timeout = spec.hb_timeout
        self.hb_period = spec.hb_period
        self.teardown.arm(spec.tag, self.grace)
        env = dict(os.environ)
        env.update(spec.env)
        env["SSHRUN_TAG"] = spec.tag
        env.setdefault("PYTHONUNBUFFERED", "1")
        cwd = spec.cwd or None
        if cwd is not None:
            cwd = os.path.expanduser(cwd)  # a node path: ~ is this node's home
        if cwd is not None and not os.path.isdir(cwd):
            self.fail(f"working directory {cwd} does not exist on this node")
            return
        if spec.mode == "torchrun":
            shim = self._write_script(RANK_SHIM)
            wrapper = self._write_script(TORCHRUN_WRAPPER)
            sock_path = os.path.join(self.tmpdir, "ranks.sock")
            self.ranks.listen(sock_path)
            # torchrun sets 1 anyway, and warns at length when it has to.
            env.setdefault("OMP_NUM_THREADS", "1")
            env["SSHRUN_SOCK"] = sock_path
            env["SSHRUN_FAILURES"] = os.path.join(self.tmpdir, "failures.json")
            # The shim sets these in each rank over torchrun's own values.
            env["SSHRUN_RANK_ENV"] = dumps(spec.rank_env)
            argv = [sys.executable, wrapper, *spec.torchrun_args, shim, *spec.target]
        else:
            argv = list(spec.argv)
        stdout = None
        if spec.mode == "exec" and spec.passthrough and _separate(1, 2):
            # The command writes into the channel itself; our frames go on stderr.
            self.out.event(Passthrough())
            if not self.out.move_to(2, FRAMES_ON_STDERR):
                self.fail("the head is gone")
                return
            stdout = 1
        try:
            self.child, out, err = spawn(argv, cwd, env, stdout=stdout)
        except OSError as exc:
            self.fail(f"cannot start {argv[0]}: {exc.strerror or exc}")
            return
        for fd, stream in ((out, 1), (err, 2)):
            if fd is not None:
                self.ranks.add_pipe(os.fdopen(fd, "rb", buffering=0), stream)
        self.out.event(Started(pid=self.child.pid, argv0=argv[0]))
        if spec.mode == "torchrun" and spec.probe_host and spec.probe_port:
            self.probe_at = (spec.probe_host, spec.probe_port, time.monotonic())

    def fail(self, message: str) -> None:
        self.out.event(Error(message=message))
        self.child_code = 127
        self.stopping = self.stopping or "error"

    def begin_stop(self, reason: str, grace: float | None = None) -> None:
        now = time.monotonic()
        delay = self.grace if grace is None else grace
        if self.stopping is None:
            self.stopping = reason
            self.out.event(Stopping(reason=reason))
            self.teardown.signal(signal.SIGTERM)
            self.kill_deadline = now + delay
        elif self.kill_deadline is None or now + delay < self.kill_deadline:
            self.kill_deadline = now + delay

    def _wait(self, seconds: float) -> None:
        """Let time pass while serving the head and collecting exit statuses."""
        self._pump(seconds)
        self.reap()

    def _pump(self, timeout: float) -> None:
        now = time.monotonic()
        if self.hb_period and now >= self.next_hb:
            # Queued output reaches the head anyway and proves we live; a
            # heartbeat only has to cover silence (a quiet job, a long sweep).
            self.next_hb = now + self.hb_period
            if not self.out:
                self.out.event(Heartbeat())
        for key, _ in self.sel.select(timeout):
            fd = key.fd
            if fd == 0:
                self._on_stdin()
            elif fd == self.out.fd:
                self.out.flush_some()
            else:
                self.ranks.on_ready(fd)

    def _settle(self, final: bool = False) -> None:
        launcher_killed = (self.child_code is not None and self.child_code < 0
                           and not self.stopping)
        self.ranks.settle(launcher_killed, self.child_code is not None, final)

    def run(self) -> int:
        os.set_blocking(1, False)
        self.sel.register(0, selectors.EVENT_READ)
        preflight = self.read_preflight(self.hb_timeout)
        self.sync(preflight.sync)
        self.hello(preflight)
        self._on_lines()
        while True:
            self._pump(TICK)
            self.reap()
            self._settle()
            now = time.monotonic()
            if self.probe_at is not None or self.probe is not None:
                self._probe(now)
            if self.stdin_open and now - self.last_heard > self.hb_timeout:
                self.begin_stop(f"no heartbeat from the head for {self.hb_timeout:.0f}s")
            if self.kill_deadline is not None and now >= self.kill_deadline:
                self.kill_deadline = None
                self.teardown.signal(signal.SIGKILL)
            if self.child_code is not None or (self.stopping and self.child is None):
                break
        return self.finish()

    def _probe(self, now: float) -> None:
        """Whether this node reaches the rendezvous, looked at only while no rank has
        started, from once torchrun has waited ``PROBE_AFTER`` seconds
        (sshrun.node.rdzv_probe)."""
        if self.ranks.started or self.stopping or self.child_code is not None:
            self.probe_at = None
            if self.probe is not None:
                self.probe.close()
                self.probe = None
            return
        if self.probe is None:
            assert self.probe_at is not None
            host, port, began = self.probe_at
            if now - began < PROBE_AFTER:
                return
            self.probe_at = None
            self.probe = Probe(host, port, began)
        outcome = self.probe.poll(now)
        if outcome is not None:
            self.out.event(RendezvousProbe(state=outcome[0], error=outcome[1]))
        if self.probe.done:
            self.probe = None

    def _torch_failures(self) -> dict[int, RankFailure]:
        """What the torchrun wrapper wrote about failed ranks, if anything."""
        try:
            with open(os.path.join(self.tmpdir, "failures.json")) as f:
                raw: Any = loads(f.read())
            return rank_failures(raw)
        except (OSError, ValueError):  # ProtocolError is a ValueError
            return {}

    def finish(self) -> int:
        if self.probe is not None:
            self.probe.close()
            self.probe = None
        # Output still in flight from ranks that already exited.
        self.serve_readers(2.0)
        remaining = 0.0
        if self.kill_deadline is not None:
            remaining = max(0.0, self.kill_deadline - time.monotonic())
        swept = self.teardown.sweep(remaining if self.stopping else min(self.grace, 5.0),
                                    self._wait)
        self.teardown.release_sentinel()
        self.serve_readers(1.0)
        failures = self._torch_failures()
        self._settle(final=True)
        code = self.child_code if self.child_code is not None else 0
        self.out.event(Exited(code=exit_status(code), failures=failures, stopped=self.stopping,
                              swept=swept))
        self.out.drain(self._pump, self._head_silent, TICK)
        remove_tree(self.tmpdir)
        return 0


def main(scripts: Mapping[str, str]) -> int:
    """Run the agent; ``scripts``: the files a torchrun job needs, by name."""
    # A dead head must not kill us with SIGPIPE before we clean up.
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    set_child_subreaper()
    agent = Agent(scripts)
    try:
        code = agent.run()
    except BaseException:
        # Whatever broke, the job's processes must not outlive the agent.
        agent.teardown.sweep(0.0, time.sleep)
        raise
    # The job is swept and everything went out through os.write: skip the
    # interpreter's finalization, which costs every node ~8 ms of CPU per job.
    try:
        sys.stderr.flush()
    except (OSError, ValueError):
        pass
    os._exit(code)
