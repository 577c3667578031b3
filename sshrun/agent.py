"""The sshrun node agent: one per node and job, standard library only.

The head does not install anything on a node. It runs a constant bootstrap
(``BOOTSTRAP``) through ``ssh node PYTHON -c BOOTSTRAP``; the bootstrap reads
this file's source from stdin and runs it. Everything else (argv, environment,
working directory, ranks, secrets) then travels as JSON lines on stdin, so no
shell on the node ever sees it and no ``ps`` shows it.

Life of an agent::

    sync   ──> head          a marker with the head's token, on stdout and stderr
    hello  ──> head          pid, hostname, python, torch present, a free port
    spec   <── head          what to run (torchrun or a plain command)
    start                    child in a new session, tagged SSHRUN_TAG=<tag>
    output ──> head          framed chunks, tagged by global rank and stream
    hb     ──> head          every ``hb_period`` seconds while nothing else is queued
    exited ──> head          exit code, per-rank failures, what the sweep killed, and
                             why it stopped (``stopped``: the head's reason, or its own)

Output goes out before ``exited``, all of it, however slowly the head reads:
the agent waits for as long as the head's heartbeats keep arriving on stdin.

Wire format, agent to head (stdout): frames of ``HEADER`` (kind, stream,
source, length) and a payload. ``kind`` is ``b"O"`` for output (``stream`` 1
or 2, ``source`` the global rank, or -1 for torchrun / the command itself) or
``b"E"`` for a JSON event. Head to agent (stdin): one JSON object per line:
``spec``, ``hb`` (heartbeat), ``stop`` (graceful) or ``kill`` (at once).

Ranks report through a Unix socket in the agent's private directory: torchrun
runs ``RANK_SHIM`` as each worker's entrypoint; the shim connects its stdout,
stderr and a control stream to the agent (so every line carries its rank, and
no worker inherits the SSH channel), then runs the user's script in process.

Teardown never goes by process name. Every process of the job carries
``SSHRUN_TAG`` (job, node and attempt) in its environment, and the agent is a
child subreaper so that daemonized descendants come back to it; the sweep
signals exactly the tagged processes and the agent's own descendants:
SIGTERM (+SIGCONT for stopped ones), the grace period, then SIGKILL, then a
check that none is left. Triggers: ``stop``/``kill`` from the head, stdin EOF
(the head or its connection died), or no heartbeat for ``hb_timeout`` seconds.

Keep this file compatible with Python 3.8: nodes may run an older Python.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import selectors
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

PROTOCOL_VERSION = 1

# kind (1 byte), stream (1 byte), source (int32), payload length (uint32)
HEADER = struct.Struct("!cBiI")
KIND_OUTPUT = b"O"
KIND_EVENT = b"E"
SOURCE_LAUNCHER = -1  # torchrun itself, or the command of ``sshrun exec``
# Written with the head's token to stdout and stderr before anything else:
# what a login shell printed before the agent ran comes before it, and the
# head skips (and shows) that instead of reading it as frames.
SYNC_PREFIX = b"\nsshrun-agent-sync "

# Runs under ``PYTHON -c``: reads an 8-hex-digit length, then exactly that
# many bytes of agent source from fd 0 (unbuffered, so that nothing meant for
# the agent is swallowed by a read-ahead buffer), and runs it.
BOOTSTRAP = """\
import os, sys
def _read(n):
    data = b""
    while len(data) < n:
        chunk = os.read(0, n - len(data))
        if not chunk:
            sys.exit(3)
        data += chunk
    return data
_scope = {"__name__": "sshrun_agent"}
exec(compile(_read(int(_read(8), 16)), "<sshrun-agent>", "exec"), _scope)
sys.exit(_scope["main"]())
"""

READ_CHUNK = 65536
# Output is buffered for the head up to this much; beyond it the agent stops
# reading ranks' output (they block on write) but keeps serving control.
OUT_HIGH_WATER = 8 * 1024 * 1024
OUT_LOW_WATER = 1024 * 1024
TICK = 0.1
# How long a rank that died without a status waits to be reported, in case
# its torchrun was killed (then torchrun's death is the failure, not the rank's).
COLLATERAL_WAIT = 1.0

# Ties a process to its parent: when the parent dies (an agent or torchrun
# SIGKILLed), the kernel sends this process ``sig``. Linux only; elsewhere the
# sweep and the heartbeat remain.
PARENT_DEATH = r'''
def _die_with_parent(sig):
    import ctypes, os
    parent = os.getppid()
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(sig), 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # the parent died before prctl took effect
        os.kill(os.getpid(), int(sig))
'''

# torchrun's entrypoint for every worker. It runs inside the worker process
# (which has torch), connects stdout, stderr and a control stream to the
# agent, and runs the user's target in process so that the worker is the
# user's program (debuggers, py-spy and torch see what they expect).
RANK_SHIM = r'''
import json, os, runpy, signal, socket, sys, traceback

def _connect(stream, rank, local_rank):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(_path)
    head = {"stream": stream, "rank": rank, "local_rank": local_rank, "pid": os.getpid()}
    sock.sendall(json.dumps(head).encode() + b"\n")
    return sock

def _report(**fields):
    try:
        _ctl.sendall(json.dumps(fields).encode() + b"\n")
    except OSError:
        pass

def _exit_code(exc):
    code = exc.code
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF if code >= 0 else 1
    print(code, file=sys.stderr)
    return 1

def _run_target():
    mode, target, *args = sys.argv[1:]
    sys.argv = [target, *args]
    code = 0
    try:
        if mode == "script":
            sys.path[0] = os.path.dirname(os.path.abspath(target))
            runpy.run_path(target, run_name="__main__")
        elif mode == "module":
            sys.path[0] = os.getcwd()
            runpy.run_module(target, run_name="__main__", alter_sys=True)
        else:
            os.execvp(target, [target, *args])
    except SystemExit as exc:
        code = _exit_code(exc)
    except BaseException:
        etype, value, tb = sys.exc_info()
        # Start the traceback at the user's code, not at this shim and runpy.
        while tb is not None and tb.tb_frame.f_code.co_filename in _OURS:
            tb = tb.tb_next
        text = "".join(traceback.format_exception(etype, value, tb))
        _report(traceback=text)
        sys.stderr.write(text)
        code = 1
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except Exception:
        pass
    return code

_OURS = {__file__, runpy.__file__, "<frozen runpy>"}
_path = os.environ.pop("SSHRUN_SOCK")
_rank = int(os.environ.get("RANK", "-1"))
_local_rank = int(os.environ.get("LOCAL_RANK", "-1"))
_out = _connect(1, _rank, _local_rank)
_err = _connect(2, _rank, _local_rank)
_ctl = _connect(0, _rank, _local_rank)
sys.stdout.flush()
sys.stderr.flush()
os.dup2(_out.fileno(), 1)
os.dup2(_err.fileno(), 2)
_out.close()
_err.close()
# The rank runs in a child so that this process outlives it and reports its
# exact status, signal deaths included. Both are in the worker's process
# group, so torchrun's killpg reaches the rank; this parent only waits.
_die_with_parent(signal.SIGKILL)  # torchrun died: so does this rank
_child = os.fork()
if _child == 0:
    _die_with_parent(signal.SIGKILL)
    sys.exit(_run_target())
for _sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT):
    signal.signal(_sig, signal.SIG_IGN)
_report(pid=_child)
while True:
    try:
        _, _status = os.waitpid(_child, 0)
        break
    except InterruptedError:
        continue
if os.WIFSIGNALED(_status):
    _signum = os.WTERMSIG(_status)
    _report(exit=128 + _signum, signal=_signum)
    # Die the same way, so that torchrun records the same failure.
    try:
        signal.signal(_signum, signal.SIG_DFL)
    except (OSError, ValueError):
        pass
    os.kill(os.getpid(), _signum)
_code = os.WEXITSTATUS(_status) if os.WIFEXITED(_status) else 1
_report(exit=_code)
os._exit(_code)
'''

# Runs torchrun in process so that its per-rank failures (exit code, signal,
# error file) reach the agent as data instead of as a log to parse.
TORCHRUN_WRAPPER = r'''
import json, os, signal, sys
# The agent died: stop the workers the graceful way (torchrun handles SIGTERM).
_die_with_parent(signal.SIGTERM)
_failures_path = os.environ.pop("SSHRUN_FAILURES")
from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
from torch.distributed.run import main
from torch.distributed.elastic.multiprocessing.api import SignalException
import logging
class _Quiet(logging.Filter):
    # Noise that hides what matters. "Received 15 death signal": the head
    # already says it stops every node. "Error waiting on exit barrier" with a
    # traceback, after a job that succeeded: node 0's torchrun, which hosts
    # the store, passed the barrier and left before this one read the result
    # (torch 2.13); the head knows from every node whether its ranks finished.
    def filter(self, record):
        message = record.getMessage()
        return not ("death signal" in message or "Error waiting on exit barrier" in message)
logging.getLogger("torch.distributed.elastic.agent.server.api").addFilter(_Quiet())
try:
    main(sys.argv[1:])
except SignalException as exc:
    # Stopped by the agent: the agent reports that, not a traceback.
    sys.exit(128 + int(exc.sigval))
except ChildFailedError as exc:
    failures = {}
    for rank, failure in exc.failures.items():
        failures[str(rank)] = {
            "local_rank": failure.local_rank, "pid": failure.pid,
            "exitcode": failure.exitcode, "timestamp": failure.timestamp,
        }
    with open(_failures_path, "w") as f:
        json.dump(failures, f)
    sys.exit(1)
'''


def encode_frame(kind: bytes, stream: int, source: int, payload: bytes) -> bytes:
    return HEADER.pack(kind, stream, source, len(payload)) + payload


def encode_event(event: dict[str, Any]) -> bytes:
    return encode_frame(KIND_EVENT, 0, 0, json.dumps(event).encode())


def exit_status(returncode: int) -> int:
    """Shell-style status: 128+N for death by signal N."""
    return 128 - returncode if returncode < 0 else returncode


def _set_child_subreaper() -> bool:
    """Make orphaned descendants (daemons) re-parent to this agent (Linux)."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_child_subreaper = 36
        return bool(libc.prctl(pr_set_child_subreaper, 1, 0, 0, 0) == 0)
    except (OSError, AttributeError):
        return False


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("", 0))
        return int(sock.getsockname()[1])


def find_job_processes(tag: str, root: int, spare: int = 0) -> list[int]:
    """Live processes tagged ``SSHRUN_TAG=tag``, plus live descendants of ``root``.

    Zombies are dead and left out; ``root`` itself and ``spare`` (the
    sentinel) are never included.
    """
    needle = b"\0SSHRUN_TAG=" + tag.encode() + b"\0"
    uid = os.getuid()
    parents: dict[int, int] = {}
    tagged: set[int] = set()
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        pid = int(name)
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                stat = f.read()
            # The command name may contain spaces and parentheses.
            fields = stat[stat.rindex(b")") + 2 :].split()
            if fields[0] == b"Z":
                continue
            parents[pid] = int(fields[1])
            if os.stat(f"/proc/{pid}").st_uid != uid:
                continue
            with open(f"/proc/{pid}/environ", "rb") as f:
                environ = b"\0" + f.read()
            if needle in environ:
                tagged.add(pid)
        except (OSError, ValueError, IndexError):
            continue
    children: dict[int, list[int]] = {}
    for pid, ppid in parents.items():
        children.setdefault(ppid, []).append(pid)
    stack = [pid for pid in children.get(root, []) if pid != spare]
    while stack:
        pid = stack.pop()
        if pid not in tagged:
            tagged.add(pid)
            stack.extend(children.get(pid, []))
    tagged.discard(root)
    return sorted(tagged)


def start_sentinel(tag: str, grace: float) -> tuple[int, int]:
    """Fork a watcher that sweeps the job if the agent dies without doing so.

    Parent-death signals take torchrun and the ranks down with a SIGKILLed
    agent, but not a daemon that a rank double-forked. The sentinel waits on
    a pipe: a byte means the agent swept the job itself; end-of-file without
    one means the agent died (SIGKILL, the OOM killer), and the sentinel
    sweeps by tag. It runs in its own session with no stdio, so it neither
    holds the SSH channel open nor dies with the agent's process group.
    Returns the sentinel's pid and the pipe's write end.
    """
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid:
        os.close(read_end)
        return pid, write_end
    try:
        os.setsid()
        devnull = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(devnull, fd)
        for name in os.listdir("/proc/self/fd"):
            if int(name) > 2 and int(name) != read_end:
                with contextlib.suppress(OSError):
                    os.close(int(name))
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        if not os.read(read_end, 1):
            me = os.getpid()
            terminate(lambda: find_job_processes(tag, me), grace, time.sleep)
    finally:
        os._exit(0)


def terminate(find: Callable[[], list[int]], grace: float,
              wait: Callable[[float], None]) -> dict[str, int]:
    """SIGTERM what ``find`` returns, the grace period, then SIGKILL until none is left.

    ``wait(seconds)`` lets time pass (the agent serves its head meanwhile).
    Bounded: the grace period plus 50 rounds of SIGKILL. Returns how many
    processes needed which signal, and how many are still left.
    """
    counts = {"terminated": 0, "killed": 0, "left": 0}
    pids = find()
    counts["terminated"] = len(pids)
    _signal_all(pids, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while pids and time.monotonic() < deadline:
        wait(0.05)
        pids = find()
    for _ in range(50):
        if not pids:
            break
        counts["killed"] += len(pids)
        _signal_all(pids, signal.SIGKILL)
        wait(0.02)
        pids = find()
    counts["left"] = len(pids)
    return counts


def _signal_all(pids: list[int], sig: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
            if sig == signal.SIGTERM:
                # A stopped process would hold SIGTERM pending forever.
                os.kill(pid, signal.SIGCONT)
        except OSError:
            pass


class Agent:
    def __init__(self) -> None:
        self.sel = selectors.DefaultSelector()
        self.out = bytearray()
        self.out_closed = False
        self.in_buf = b""
        self.stdin_open = True
        self.last_heard = time.monotonic()
        self.spec: dict[str, Any] | None = None
        self.child: subprocess.Popen[bytes] | None = None
        self.child_code: int | None = None
        self.tmpdir = tempfile.mkdtemp(prefix="sshrun-")
        self.listener: socket.socket | None = None
        self.readers: dict[int, tuple[Any, int, int]] = {}  # fd -> (file, stream, rank)
        self.paused = False
        self.conns: dict[int, dict[str, Any]] = {}  # fd -> shim connection state
        self.reported: set[int] = set()  # ranks whose exit status arrived
        # rank -> (deadline, event): died without a status, not yet reported
        self.unreported: dict[int, tuple[float, dict[str, Any]]] = {}
        self.stopping: str | None = None  # why teardown began
        self.kill_deadline: float | None = None
        self.sentinel: tuple[int, int] | None = None  # pid, pipe write end
        self.hb_timeout = 30.0
        self.hb_period = 0.0  # ours to the head; 0 until the spec says
        self.next_hb = 0.0
        self.grace = 10.0
        self.tag = ""

    def reap(self) -> None:
        """Collect exit statuses: our child's, and adopted orphans' (we are their subreaper).

        Popen.poll() cannot be used: waitpid(-1) here would steal its status.
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

    # -- output to the head ------------------------------------------------

    def send(self, data: bytes) -> None:
        if self.out_closed:
            return
        self.out += data
        self._want_write()

    def event(self, kind: str, **fields: Any) -> None:
        fields["type"] = kind
        self.send(encode_event(fields))

    def _want_write(self) -> None:
        if not self._registered(1):
            self.sel.register(1, selectors.EVENT_WRITE)

    def _registered(self, fd: int) -> bool:
        try:
            self.sel.get_key(fd)
            return True
        except KeyError:
            return False

    def _flush_some(self) -> None:
        try:
            n = os.write(1, self.out[:1 << 20])
        except BlockingIOError:
            return
        except OSError:
            # The head is gone: nobody reads output any more.
            self.out_closed = True
            self.out.clear()
            n = 0
        del self.out[:n]
        if not self.out and self._registered(1):
            self.sel.unregister(1)
        if self.paused and len(self.out) < OUT_LOW_WATER:
            self._set_paused(False)

    def _set_paused(self, paused: bool) -> None:
        self.paused = paused
        for fd in list(self.readers):
            if paused and self._registered(fd):
                self.sel.unregister(fd)
            elif not paused and not self._registered(fd):
                self.sel.register(fd, selectors.EVENT_READ)

    def _head_silent(self, since: float) -> bool:
        """The head is gone, or has said nothing for hb_timeout (counted from ``since`` at the
        earliest): nobody will take more output."""
        if self.out_closed or not self.stdin_open:
            return True
        return time.monotonic() - max(self.last_heard, since) > self.hb_timeout

    def drain_output(self) -> None:
        """Last output to the head, for as long as the head lives, however slowly it reads.

        Its heartbeats keep arriving on stdin while it is alive; a head that
        is gone or silent for hb_timeout (frozen, cut off) ends the wait, so
        that it cannot keep the agent alive.
        """
        start = time.monotonic()
        while self.out and not self._head_silent(start):
            self._pump(TICK)

    def serve_readers(self, budget: float) -> None:
        """Read ranks' streams until each has ended, for ``budget`` seconds of time in
        which output could flow: while the head holds our output back (paused)
        the clock stops, since a slow reader is no reason to drop output. The
        budget still bounds a daemon that keeps a pipe open; a silent head
        ends the wait."""
        start = last = time.monotonic()
        while (self.readers or self.conns) and budget > 0 and not self._head_silent(start):
            self._pump(0.05)
            now = time.monotonic()
            if not self.paused:
                budget -= now - last
            last = now

    # -- inputs --------------------------------------------------------------

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
                self._on_message(json.loads(line))

    def read_preflight(self, timeout: float) -> dict[str, Any]:
        """The head's first line, sent with the agent's source: what to check before hello."""
        deadline = time.monotonic() + timeout
        while b"\n" not in self.in_buf:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([0], [], [], left)[0]:
                return {}
            data = os.read(0, READ_CHUNK)
            if not data:
                return {}
            self.in_buf += data
        line, self.in_buf = self.in_buf.split(b"\n", 1)
        message = json.loads(line)
        return message if isinstance(message, dict) else {}

    def _on_message(self, msg: dict[str, Any]) -> None:
        kind = msg.get("type")
        if kind == "spec" and self.spec is None:
            self.spec = msg
            self.start()
        elif kind == "stop":
            self.begin_stop(str(msg.get("reason", "stopped by the head")))
        elif kind == "kill":
            self.begin_stop(str(msg.get("reason", "killed by the head")), grace=0.0)

    def _on_output(self, fd: int) -> None:
        _f, stream, rank = self.readers[fd]
        try:
            data = os.read(fd, READ_CHUNK)
        except OSError:
            data = b""
        if data:
            self.send(encode_frame(KIND_OUTPUT, stream, rank, data))
            if len(self.out) > OUT_HIGH_WATER and not self.paused:
                self._set_paused(True)
            return
        self._close_reader(fd)

    def _close_reader(self, fd: int) -> None:
        f, _, _ = self.readers.pop(fd)
        if self._registered(fd):
            self.sel.unregister(fd)
        f.close()

    def _on_accept(self) -> None:
        assert self.listener is not None
        try:
            conn, _ = self.listener.accept()
        except OSError:
            return
        conn.setblocking(False)
        self.conns[conn.fileno()] = {"sock": conn, "buf": b"", "head": None}
        self.sel.register(conn.fileno(), selectors.EVENT_READ)

    def _on_conn(self, fd: int) -> None:
        """A shim connection before its header line, or a control stream."""
        state = self.conns[fd]
        try:
            data = state["sock"].recv(READ_CHUNK)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if data:
            state["buf"] += data
        head = state["head"]
        if head is None:
            if b"\n" not in state["buf"]:
                if data:
                    return
            else:
                line, state["buf"] = state["buf"].split(b"\n", 1)
                head = state["head"] = json.loads(line)
                if head["stream"] in (1, 2):
                    # From here on an output stream: hand it to the readers.
                    del self.conns[fd]
                    sock = state["sock"]
                    self.readers[fd] = (sock, int(head["stream"]), int(head["rank"]))
                    if state["buf"]:
                        self.send(encode_frame(KIND_OUTPUT, head["stream"], head["rank"],
                                               state["buf"]))
                    if self.paused:
                        self.sel.unregister(fd)
                    return
                self.event("rank_started", rank=head["rank"], local_rank=head["local_rank"],
                           pid=head["pid"])
        while head is not None and b"\n" in state["buf"]:
            line, state["buf"] = state["buf"].split(b"\n", 1)
            report = json.loads(line)
            if "traceback" in report:
                state["traceback"] = report["traceback"]
            if "exit" in report:
                self.reported.add(int(head["rank"]))
                self.event("rank_exit", rank=head["rank"], local_rank=head["local_rank"],
                           code=report["exit"], signal=report.get("signal"),
                           traceback=state.get("traceback"))
        if not data:
            self.sel.unregister(fd)
            state["sock"].close()
            del self.conns[fd]
            if head is not None and int(head["rank"]) not in self.reported:
                # The shim died without reporting: killed itself, or taken
                # down with its torchrun; settle_unreported tells which.
                self.reported.add(int(head["rank"]))
                self.unreported[int(head["rank"])] = (
                    time.monotonic() + COLLATERAL_WAIT,
                    {"rank": head["rank"], "local_rank": head["local_rank"], "code": None,
                     "traceback": state.get("traceback")},
                )

    def settle_unreported(self, final: bool = False) -> None:
        """Report ranks that died without a status, unless their torchrun was killed.

        A SIGKILLed torchrun takes its ranks with it (parent-death signal);
        blaming one of them would hide the real failure, which the exit
        status of torchrun then reports.
        """
        launcher_killed = (self.child_code is not None and self.child_code < 0
                           and not self.stopping)
        now = time.monotonic()
        for rank, (deadline, fields) in list(self.unreported.items()):
            if launcher_killed:
                del self.unreported[rank]
            elif final or self.child_code is not None or now >= deadline:
                del self.unreported[rank]
                self.event("rank_exit", **fields)

    # -- the job ---------------------------------------------------------------

    def sync(self, token: Any) -> None:
        """The marker that ends the login shell's output, on both streams."""
        if not isinstance(token, str):
            return
        marker = SYNC_PREFIX + token.encode("ascii", "replace") + b"\n"
        try:
            view = memoryview(marker)
            while view:
                view = view[os.write(2, view):]
        except OSError:
            pass
        self.send(marker)

    def hello(self, preflight: dict[str, Any]) -> None:
        import platform
        try:
            import importlib.util
            has_torch = importlib.util.find_spec("torch") is not None
        except (ImportError, ValueError):
            has_torch = False
        self.event(
            "hello", version=PROTOCOL_VERSION, pid=os.getpid(), hostname=socket.gethostname(),
            python=sys.executable, python_version=platform.python_version(),
            torch=has_torch, free_port=_free_port(), cwd=os.getcwd(),
            # Checked before any node starts anything, so that a typo fails fast.
            workdir_ok=(os.path.isdir(os.path.expanduser(preflight["workdir"]))
                        if preflight.get("workdir") else True),
        )

    def start(self) -> None:
        spec = self.spec
        assert spec is not None
        self.tag = str(spec["tag"])
        self.grace = float(spec.get("grace", self.grace))
        self.hb_timeout = float(spec.get("hb_timeout", self.hb_timeout))
        self.hb_period = float(spec.get("hb_period", 0.0))
        try:
            self.sentinel = start_sentinel(self.tag, self.grace)
        except OSError:
            self.sentinel = None  # the heartbeat and parent-death signals remain
        env = dict(os.environ)
        env.update({str(k): str(v) for k, v in spec.get("env", {}).items()})
        env["SSHRUN_TAG"] = self.tag
        env.setdefault("PYTHONUNBUFFERED", "1")
        cwd = spec.get("cwd") or None
        if cwd is not None:
            cwd = os.path.expanduser(cwd)  # a node path: ~ is this node's home
        if cwd is not None and not os.path.isdir(cwd):
            self.fail(f"working directory {cwd} does not exist on this node")
            return
        if spec["mode"] == "torchrun":
            shim = os.path.join(self.tmpdir, "sshrun_rank.py")
            wrapper = os.path.join(self.tmpdir, "sshrun_torchrun.py")
            with open(shim, "w") as f:
                f.write(PARENT_DEATH + RANK_SHIM)
            with open(wrapper, "w") as f:
                f.write(PARENT_DEATH + TORCHRUN_WRAPPER)
            sock_path = os.path.join(self.tmpdir, "ranks.sock")
            self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.listener.bind(sock_path)
            self.listener.listen(256)
            self.listener.setblocking(False)
            self.sel.register(self.listener.fileno(), selectors.EVENT_READ)
            # torchrun sets 1 anyway, and warns at length when it has to.
            env.setdefault("OMP_NUM_THREADS", "1")
            env["SSHRUN_SOCK"] = sock_path
            env["SSHRUN_FAILURES"] = os.path.join(self.tmpdir, "failures.json")
            argv = [sys.executable, wrapper, *spec["torchrun_args"], shim, *spec["target"]]
        else:
            argv = list(spec["argv"])
        try:
            self.child = subprocess.Popen(
                argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                stderr=subprocess.PIPE, start_new_session=True, close_fds=True,
            )
        except OSError as exc:
            self.fail(f"cannot start {argv[0]}: {exc.strerror or exc}")
            return
        for pipe, stream in ((self.child.stdout, 1), (self.child.stderr, 2)):
            assert pipe is not None
            os.set_blocking(pipe.fileno(), False)
            self.readers[pipe.fileno()] = (pipe, stream, SOURCE_LAUNCHER)
            if not self.paused:
                self.sel.register(pipe.fileno(), selectors.EVENT_READ)
        self.event("started", pid=self.child.pid, argv0=argv[0])

    def fail(self, message: str) -> None:
        self.event("error", message=message)
        self.child_code = 127
        self.stopping = self.stopping or "error"

    def begin_stop(self, reason: str, grace: float | None = None) -> None:
        now = time.monotonic()
        delay = self.grace if grace is None else grace
        if self.stopping is None:
            self.stopping = reason
            self.event("stopping", reason=reason)
            _signal_all(self._job_processes() if self.tag else [],
                        signal.SIGTERM)
            self.kill_deadline = now + delay
        elif self.kill_deadline is None or now + delay < self.kill_deadline:
            self.kill_deadline = now + delay

    def _job_processes(self) -> list[int]:
        spare = self.sentinel[0] if self.sentinel is not None else 0
        return find_job_processes(self.tag, os.getpid(), spare)

    def release_sentinel(self) -> None:
        """The job is swept: tell the sentinel it has nothing to do."""
        if self.sentinel is not None:
            try:
                os.write(self.sentinel[1], b"d")
                os.close(self.sentinel[1])
            except OSError:
                pass
            self.sentinel = None

    def sweep(self, grace: float) -> dict[str, int]:
        """Stop every process of this job; return how many needed which signal."""
        if not self.tag:
            return {"terminated": 0, "killed": 0, "left": 0}
        return terminate(self._job_processes, grace, self._wait)

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
                self.event("hb")
        for key, _ in self.sel.select(timeout):
            fd = key.fd
            if fd == 0:
                self._on_stdin()
            elif fd == 1:
                self._flush_some()
            elif self.listener is not None and fd == self.listener.fileno():
                self._on_accept()
            elif fd in self.readers:
                self._on_output(fd)
            elif fd in self.conns:
                self._on_conn(fd)

    def run(self) -> int:
        os.set_blocking(1, False)
        self.sel.register(0, selectors.EVENT_READ)
        preflight = self.read_preflight(self.hb_timeout)
        self.sync(preflight.get("sync"))
        self.hello(preflight)
        self._on_lines()
        while True:
            self._pump(TICK)
            self.reap()
            self.settle_unreported()
            now = time.monotonic()
            if self.stdin_open and now - self.last_heard > self.hb_timeout:
                self.begin_stop(f"no heartbeat from the head for {self.hb_timeout:.0f}s")
            if self.kill_deadline is not None and now >= self.kill_deadline:
                self.kill_deadline = None
                _signal_all(self._job_processes(), signal.SIGKILL)
            if self.child_code is not None or (self.stopping and self.child is None):
                break
        return self.finish()

    def finish(self) -> int:
        # Output still in flight from ranks that already exited.
        self.serve_readers(2.0)
        remaining = 0.0
        if self.kill_deadline is not None:
            remaining = max(0.0, self.kill_deadline - time.monotonic())
        swept = self.sweep(remaining if self.stopping else min(self.grace, 5.0))
        self.release_sentinel()
        self.serve_readers(1.0)
        failures: dict[str, Any] = {}
        failures_path = os.path.join(self.tmpdir, "failures.json")
        if os.path.exists(failures_path):
            try:
                with open(failures_path) as f:
                    failures = json.load(f)
            except (OSError, ValueError):
                failures = {}
        self.settle_unreported(final=True)
        code = self.child_code if self.child_code is not None else 0
        self.event("exited", code=exit_status(code), failures=failures, stopped=self.stopping,
                   swept=swept)
        self.drain_output()
        shutil.rmtree(self.tmpdir, ignore_errors=True)
        return 0


def main() -> int:
    # A dead head must not kill us with SIGPIPE before we clean up.
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    _set_child_subreaper()
    agent = Agent()
    try:
        return agent.run()
    except BaseException:
        # Whatever broke, the job's processes must not outlive the agent.
        agent.sweep(0.0)
        raise


if __name__ == "__main__":
    sys.exit(main())
