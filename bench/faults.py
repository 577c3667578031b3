"""Fault-handling benchmark: sshrun beside "pdsh + torchrun" glue, on real sshd nodes.

Starts 3 real OpenSSH sshd nodes on 127.0.0.60-62 (tests/sshd_cluster.py; addresses
apart from the test suite's 127.0.0.2-4 and 20-45, so that both can run at once) and
runs a real DDP job on them, 2 processes per node over gloo, with two launchers:

sshrun           sshrun -H hostfile --nproc-per-node 2 worker.py
pdsh + torchrun  pdsh -S -R ssh -w 127.0.0.60,127.0.0.61,127.0.0.62 \
                   'cd DIR && VAR=... exec torchrun --nnodes 3 --nproc-per-node 2 \
                    --node-rank %n --master-addr 127.0.0.60 --master-port P worker.py'
                 (%n is pdsh's node index; static rendezvous with torchrun's TCP store
                 on node 0; -S makes pdsh return the largest remote exit status; ssh
                 options as in bench/fanout.py)

Every rank of worker.py (written into a temporary directory) loops DDP steps: a
forward, a backward whose gradient all_reduce is a collective across all 6 ranks, an
optimizer step, 20 ms of sleep. Ranks print only a start line, a line after their first
step and, for the crash, a line just before it; rank 0 prints a progress line every
second only in the "rank 0 prints" variant. Each line carries its wall-clock time.

Faults (each after every rank is in the training loop, except the crash, which rank 3
does itself at step 20):

crash      rank 3 (node 1, local rank 1) exits 1. Clock: the time it printed just
           before exiting.
frozen     SIGSTOP of node 2's sshd and everything under it (sshrun's agent, torchrun,
           the ranks): SshdCluster.stop_node(2, sessions=True). Clock: the SIGSTOP.
           sshrun runs with its default --heartbeat-timeout (15) and with 5. When the
           launcher has exited, or at the cap, node 2 gets SIGCONT; the time until the
           job's last process is gone is then counted from the SIGCONT.
head-kill  SIGKILL of the launcher process alone (sshrun's head, or pdsh; its ssh
           children live in sessions of their own, so this is `kill -9 PID`). pdsh is
           also run with rank 0 printing every second, to show what ends such leftovers
           when anything does: a write to the dead output pipe (EPIPE).
ctrl-c     SIGINT to the launcher's process group, as a terminal's Ctrl-C. pdsh lists
           its threads on the first one and exits on a second within a second (its
           manual), so for pdsh a second SIGINT follows 0.5 s later if it still runs.
           Its ssh children are in sessions of their own: a terminal's Ctrl-C does not
           reach them either.
restart    sshrun --max-restarts 1 --restart-backoff 0.1; rank 3 exits 1 at step 20 of
           attempt 0 (SSHRUN_ATTEMPT), attempt 1 runs 20 steps and exits 0. Measured
           from the crash to every rank's first line of the new attempt and to every
           rank's first collective of it, and the whole job. pdsh has no restart of its
           own; torchrun's in-place restart (--max-restarts 1, c10d rendezvous on node
           0; the crashing rank leaves a marker file so that the restarted workers know
           they are the second attempt) runs beside it under pdsh.

"Job processes" are every process that carries the run's canary variable
(SSHRUN_TEST_CANARY, as in tests/jobprocs.py; sshrun forwards it with -x, the pdsh
command sets it before torchrun) and every non-sshd process under a node's sshd
(sshrun's agents); they are polled every 0.1 s from the fault. Processes left behind:
job processes still alive --left-wait seconds after the launcher exited (after the
kill for head-kill, after the SIGCONT for frozen), plus processes here that belong to
the run (pdsh's orphaned ssh clients). Every wait is bounded: a launcher still running
--cap seconds after the fault is reported as hung ("> cap (hung)"). Whatever is left of
a run is then killed by this script, which checks that nothing survives.

The result is two Markdown tables and a summary on stdout (median and min-max of
--repeat runs); progress goes to stderr. Only loopback addresses are contacted. Needs
root (sshd), torch on this interpreter, and pdsh (`apt-get install pdsh`) unless
--no-pdsh.

    python bench/faults.py --repeat 3
    python bench/faults.py --quick          # a smoke run: one run each, shorter bounds
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from jobprocs import canary_pids, new_canary  # noqa: E402
from sshd_cluster import SshdCluster, descendants, pick_port  # noqa: E402

NODES = 3
NPROC = 2
FIRST_OCTET = 60  # 127.0.0.60-62: apart from the tests' 127.0.0.2-4 and 20-45
CRASH_RANK = 3  # node 1, local rank 1
FROZEN_NODE = 2
STEADY_S = 1.0  # every rank in the training loop this long before a fault
POLL_S = 0.1
WORKER_RUN_S = 240  # workers exit on their own after this, whatever happens

SSHRUN = "sshrun"
PDSH = "pdsh + torchrun"

WORKER = '''\
"""DDP training loop for bench/faults.py: prints FAULTS <what> rank=R t=<wall> lines."""
import os
import sys
import time


def say(what, **kw):
    # One write per line: the ranks of a node share torchrun's stdout under pdsh, and
    # print() writes the newline separately when Python is unbuffered.
    extra = "".join(f" {k}={v}" for k, v in kw.items())
    line = f"FAULTS {what} rank={os.environ['RANK']} t={time.time():.6f}{extra}\\n"
    sys.stdout.write(line)
    sys.stdout.flush()


rank = int(os.environ["RANK"])
mode = os.environ.get("FAULT_MODE", "run")  # run | crash | flaky
marker = os.environ.get("FAULT_MARKER", "")
if "SSHRUN_ATTEMPT" in os.environ:
    gen = int(os.environ["SSHRUN_ATTEMPT"])
else:
    gen = 1 if marker and os.path.exists(marker) else 0
say("start", gen=gen, pid=os.getpid())

import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402
from torch.nn.parallel import DistributedDataParallel  # noqa: E402

dist.init_process_group("gloo")
torch.manual_seed(0)
model = DistributedDataParallel(torch.nn.Linear(64, 64))
opt = torch.optim.SGD(model.parameters(), lr=0.01)
x = torch.randn(16, 64)
crash_step = int(os.environ.get("FAULT_CRASH_STEP", "20"))
fails = mode in ("crash", "flaky") and gen == 0 and rank == int(os.environ["FAULT_RANK"])
log_every = float(os.environ.get("FAULT_LOG_EVERY", "0"))
deadline = time.monotonic() + float(os.environ.get("FAULT_RUN_SECONDS", "240"))
last_log = time.monotonic()
step = 0
while time.monotonic() < deadline:
    opt.zero_grad()
    model(x).pow(2).mean().backward()  # DDP: the gradient all_reduce, every rank
    opt.step()
    step += 1
    if step == 1:
        say("joined", gen=gen)
    if fails and step == crash_step:
        if marker:
            open(marker, "w").close()
        say("crash", gen=gen)
        os._exit(1)
    if mode == "flaky" and gen > 0 and step == crash_step:
        dist.barrier()
        say("done", gen=gen)
        os._exit(0)  # torch 2.13's gloo can abort at interpreter exit
    if log_every and rank == 0 and time.monotonic() - last_log >= log_every:
        last_log = time.monotonic()
        say("step", step=step)
    time.sleep(0.02)
say("timeout")
os._exit(3)
'''


class BenchError(RuntimeError):
    """A run did not go as the scenario needs (not a measured outcome)."""


# -- processes -------------------------------------------------------------------------


def _stat_fields(pid: int) -> list[str] | None:
    """Fields of /proc/PID/stat after the command name (state first), or None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()


def _identity(pid: int) -> tuple[int, int] | None:
    """(pid, start time) of a live, not zombie, process."""
    fields = _stat_fields(pid)
    if fields is None or fields[0] in ("Z", "X"):
        return None
    return pid, int(fields[19])


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def _node_rank(pid: int) -> int | None:
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return None
    for item in environ.split(b"\0"):
        if item.startswith(b"SSHRUN_NODE_RANK="):
            with contextlib.suppress(ValueError):
                return int(item.split(b"=", 1)[1])
    return None


def _signal(ident: tuple[int, int], sig: int) -> None:
    if _identity(ident[0]) == ident:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(ident[0], sig)


# -- a launcher and its output -----------------------------------------------------------


@dataclass(frozen=True)
class Event:
    """A ``FAULTS what rank=R t=T [gen=G ...]`` line from a worker."""

    what: str
    rank: int
    t: float
    gen: int


def parse_events(line: str) -> list[Event]:
    """The events in a line (more than one where two ranks' writes were merged)."""
    events = []
    for chunk in line.split("FAULTS ")[1:]:
        what, *pairs = chunk.split() or [""]
        fields = dict(p.split("=", 1) for p in pairs if "=" in p)
        with contextlib.suppress(KeyError, ValueError):
            events.append(Event(what, int(fields["rank"]), float(fields["t"]),
                                int(fields.get("gen", "0"))))
    return events


class Launch:
    """A launcher in its own session, stdout and stderr merged and read by a thread."""

    def __init__(self, argv: list[str], env: dict[str, str], cwd: Path) -> None:
        self.started = time.time()
        self.proc = subprocess.Popen(argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        self.lines: list[str] = []
        self.events: list[Event] = []
        self.exited_at: float | None = None
        self.eof = False
        self._cond = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            events = parse_events(line)
            with self._cond:
                self.lines.append(line)
                self.events.extend(events)
                self._cond.notify_all()
        with self._cond:
            self.eof = True
            self._cond.notify_all()

    def wait_events(self, match: Callable[[Event], bool], count: int,
                    timeout: float) -> list[Event]:
        """The first ``count`` events that ``match``, waiting at most ``timeout``."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                found = [e for e in self.events if match(e)]
                left = deadline - time.monotonic()
                if len(found) >= count or left <= 0 or self.eof:
                    break
                self._cond.wait(min(left, 0.2))
        if len(found) < count:
            raise BenchError(f"{count} x {match.__doc__ or 'event'} not seen in {timeout:.0f}s;"
                             f" exit {self.proc.poll()}\n{self.tail()}")
        return found[:count]

    def wait_exit(self, timeout: float) -> int | None:
        """The exit status, or None if still running after ``timeout`` (hung)."""
        try:
            code = self.proc.wait(max(0.0, timeout))
        except subprocess.TimeoutExpired:
            return None
        if self.exited_at is None:
            self.exited_at = time.time()
        return code

    def said(self, text: str) -> bool:
        with self._cond:
            return any(text in line for line in self.lines)

    def tail(self, n: int = 25) -> str:
        with self._cond:
            return "\n".join(self.lines[-n:])


def local_procs(launch: Launch, canary: str) -> set[tuple[int, int]]:
    """Processes here that belong to the run, the launcher aside: its session's, and those
    whose command line names the canary (pdsh starts each ssh client in a session of its
    own, with the remote command, which sets the canary, in its argv)."""
    found: set[tuple[int, int]] = set()
    needle = canary.encode()
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == launch.proc.pid:
            continue
        fields = _stat_fields(int(name))
        if fields is None or fields[0] in ("Z", "X"):
            continue
        try:
            cmdline = Path(f"/proc/{name}/cmdline").read_bytes()
        except OSError:
            continue
        if int(fields[3]) == launch.proc.pid or needle in cmdline:
            found.add((int(name), int(fields[19])))
    return found


# -- one run's result --------------------------------------------------------------------


@dataclass
class Run:
    """What one run of a scenario measured; None for a time means: not within its bound."""

    exit_code: int | None  # None: still running at the cap (hung); -9: killed by us
    exit_after: float | None
    gone_after: float | None
    left: int  # job processes on the nodes at the end of the wait
    local_left: int = 0  # processes of the launcher's session here (pdsh's ssh clients)
    extra: dict[str, float | None] = field(default_factory=dict)
    note: str = ""


class Watcher:
    """Polls the job's processes in a thread from its start until ``stop``: when did the
    last one go (for good), and how many are there at the end?"""

    def __init__(self, probe: Callable[[], set[tuple[int, int]]]) -> None:
        self.probe = probe
        self.gone_at: float | None = None
        self.count = -1
        self._stop = threading.Event()
        self._polled = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            count = len(self.probe())
            now = time.time()
            self.count = count
            if count:
                self.gone_at = None
            elif self.gone_at is None:
                self.gone_at = now
            self._polled.set()
            if self._stop.wait(POLL_S):
                return

    def wait_gone(self, until: float) -> None:
        """Until no job process is left (as of a poll that began after this call), or
        ``until``; then stop polling."""
        self._polled.clear()
        while time.time() < until:
            if self._polled.wait(min(POLL_S, max(0.0, until - time.time()))) \
                    and self.gone_at is not None:
                break
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)


# -- the benchmark -----------------------------------------------------------------------


class Bench:
    def __init__(self, cluster: SshdCluster, work: Path, cap: float, left_wait: float) -> None:
        self.cluster = cluster
        self.work = work
        self.cap = cap
        self.left_wait = left_wait
        self.worker = work / "worker.py"
        self.worker.write_text(WORKER)
        self.head_env = dict(os.environ)
        self.head_env.pop("SSH_AUTH_SOCK", None)
        self.pdsh_env = dict(self.head_env, PDSH_RCMD_TYPE="ssh", PDSH_SSH_ARGS_APPEND=(
            f"-p {cluster.port} -i {cluster.client_key} "
            f"-o UserKnownHostsFile={cluster.known_hosts} "
            "-o StrictHostKeyChecking=yes -o BatchMode=yes"))

    # -- starting a job

    def job_env(self, mode: str, **extra: str) -> dict[str, str]:
        return {"FAULT_MODE": mode, "FAULT_RANK": str(CRASH_RANK),
                "FAULT_RUN_SECONDS": str(WORKER_RUN_S), "GLOO_SOCKET_IFNAME": "lo", **extra}

    def start_sshrun(self, canary: str, env: dict[str, str], *options: str) -> Launch:
        argv = [sys.executable, "-m", "sshrun", "-H", str(self.cluster.hostfile),
                "--ssh-config", str(self.cluster.ssh_config), "--nproc-per-node", str(NPROC),
                "--workdir", str(self.work), "--color", "never",
                "-x", f"SSHRUN_TEST_CANARY={canary}", *options]
        for name, value in env.items():
            argv += ["-x", f"{name}={value}"]
        return Launch([*argv, str(self.worker)], self.head_env, self.work)

    def start_pdsh(self, canary: str, env: dict[str, str], *torchrun: str) -> Launch:
        """pdsh runs torchrun on every node; %n is pdsh's node index (the node rank)."""
        if not torchrun:
            port = pick_port([self.cluster.address(0)])
            torchrun = ("--master-addr", self.cluster.address(0), "--master-port", str(port))
        assigns = " ".join(f"{k}={shlex.quote(v)}" for k, v in {
            "SSHRUN_TEST_CANARY": canary, "SSHRUN_NODE_RANK": "%n", **env}.items())
        remote = (f"cd {shlex.quote(str(self.work))} && {assigns} exec torchrun "
                  f"--nnodes {NODES} --nproc-per-node {NPROC} --node-rank %n "
                  f"{' '.join(torchrun)} worker.py")
        argv = ["pdsh", "-S", "-R", "ssh", "-w", ",".join(self.cluster.addresses), remote]
        return Launch(argv, self.pdsh_env, self.work)

    def start(self, tool: str, canary: str, env: dict[str, str], *options: str) -> Launch:
        if tool == SSHRUN:
            return self.start_sshrun(canary, env, *options)
        return self.start_pdsh(canary, env, *options)

    def steady(self, launch: Launch) -> None:
        """Until every rank has done a collective step, then STEADY_S more."""

        def joined(e: Event) -> bool:
            """rank in the training loop"""
            return e.what == "joined"

        launch.wait_events(joined, NODES * NPROC, self.cap + 60)
        time.sleep(STEADY_S)

    # -- the job's processes

    def job_procs(self, canary: str, node: int | None = None) -> set[tuple[int, int]]:
        found: set[tuple[int, int]] = set()
        for pid in canary_pids(canary):
            ident = _identity(pid)
            if ident is not None and (node is None or _node_rank(pid) == node):
                found.add(ident)
        for k, listener in enumerate(self.cluster.pids):
            if node is None or k == node:
                found.update(d for d in descendants(listener)
                             if not _comm(d[0]).startswith("sshd"))
        return found

    def watch(self, canary: str, node: int | None = None) -> Watcher:
        return Watcher(lambda: self.job_procs(canary, node))

    def cleanup(self, launch: Launch, canary: str) -> None:
        """Kill whatever of this run is left (launcher's session here, job on the nodes),
        and check that nothing is."""
        if launch.proc.poll() is None:
            launch.proc.kill()
        launch.proc.wait(10)
        deadline = time.monotonic() + 15
        while True:
            here = local_procs(launch, canary)
            there = self.job_procs(canary)
            if not here and not there:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"could not clean up: here {here}, on the nodes {there}")
            for ident in here | there:
                _signal(ident, signal.SIGCONT)
                _signal(ident, signal.SIGKILL)
            time.sleep(POLL_S)

    @contextlib.contextmanager
    def job(self, tool: str, env: dict[str, str],
            *options: str) -> Iterator[tuple[Launch, str]]:
        canary = new_canary()
        launch = self.start(tool, canary, env, *options)
        try:
            yield launch, canary
        finally:
            self.cleanup(launch, canary)

    # -- the scenarios

    def crash(self, tool: str) -> Run:
        with self.job(tool, self.job_env("crash")) as (launch, canary):

            def crashed(e: Event) -> bool:
                """crash line"""
                return e.what == "crash"

            t0 = launch.wait_events(crashed, 1, self.cap + 60)[0].t
            watcher = self.watch(canary)
            code = launch.wait_exit(t0 + self.cap - time.time())
            end = launch.exited_at if code is not None else time.time()
            assert end is not None
            watcher.wait_gone(end + self.left_wait)
            return Run(code, None if code is None else end - t0, _since(watcher.gone_at, t0),
                       watcher.count, len(local_procs(launch, canary)))

    def frozen(self, tool: str, heartbeat: float | None) -> Run:
        options = () if heartbeat is None else ("--heartbeat-timeout", f"{heartbeat:g}")
        with self.job(tool, self.job_env("run"), *options) as (launch, canary):
            self.steady(launch)
            t0 = time.time()
            self.cluster.stop_node(FROZEN_NODE, sessions=True)
            try:
                code = launch.wait_exit(self.cap)
            finally:
                self.cluster.cont_node(FROZEN_NODE, sessions=True)
            resumed = time.time()
            if code is None:
                # Still running: the job goes on where it stopped; count it and kill it.
                time.sleep(2)
                note = ("still running 2 s after SIGCONT" if launch.proc.poll() is None
                        else "exited after SIGCONT")
                return Run(None, None, None, len(self.job_procs(canary)), note=note)
            assert launch.exited_at is not None
            watcher = self.watch(canary)
            watcher.wait_gone(resumed + self.left_wait)
            note = "" if tool != SSHRUN or launch.said("lost") else "no 'lost' in the report"
            return Run(code, launch.exited_at - t0, _since(watcher.gone_at, resumed),
                       watcher.count, len(local_procs(launch, canary)), note=note)

    def restart(self, tool: str) -> Run:
        if tool == SSHRUN:
            env = self.job_env("flaky")
            options: tuple[str, ...] = ("--max-restarts", "1", "--restart-backoff", "0.1")
        else:
            marker = self.work / f"marker-{time.monotonic_ns()}"
            env = self.job_env("flaky", FAULT_MARKER=str(marker))
            port = pick_port([self.cluster.address(0)])
            options = ("--rdzv-backend", "c10d",
                       "--rdzv-endpoint", f"{self.cluster.address(0)}:{port}",
                       "--rdzv-id", marker.name, "--max-restarts", "1",
                       "--rdzv-conf", "is_host=$([ %n = 0 ] && echo 1 || echo 0)")
        with self.job(tool, env, *options) as (launch, canary):

            def crashed(e: Event) -> bool:
                """crash line"""
                return e.what == "crash"

            t0 = launch.wait_events(crashed, 1, self.cap + 60)[0].t
            code = launch.wait_exit(t0 + self.cap - time.time())
            if code is None:
                return Run(None, None, None, len(self.job_procs(canary)),
                           extra={"first_line": None, "collective": None, "total": None},
                           note=f"{self.restart_progress(launch)}; still running at the cap")
            end = launch.exited_at
            assert end is not None
            watcher = self.watch(canary)
            watcher.wait_gone(end + self.left_wait)
            starts = {e.rank: e.t for e in launch.events if e.what == "start" and e.gen == 1}
            joins = {e.rank: e.t for e in launch.events if e.what == "joined" and e.gen == 1}
            complete = len(starts) == len(joins) == NODES * NPROC
            note = "" if complete else self.restart_progress(launch)

            def last(times: dict[int, float]) -> float | None:
                return max(times.values()) - t0 if len(times) == NODES * NPROC else None

            return Run(code, end - t0, _since(watcher.gone_at, t0),
                       watcher.count, len(local_procs(launch, canary)),
                       extra={"first_line": last(starts), "collective": last(joins),
                              "total": end - launch.started},
                       note=note)

    @staticmethod
    def restart_progress(launch: Launch) -> str:
        """How far the second attempt got: its ranks' first lines and first collectives."""
        starts = sum(e.what == "start" and e.gen == 1 for e in launch.events)
        joins = sum(e.what == "joined" and e.gen == 1 for e in launch.events)
        text = f"second attempt: {starts} rank starts, {joins} first collectives"
        if launch.said("Connection refused"):
            text += "; gloo: connection refused"
        return text

    def head_kill(self, tool: str, log_every: float = 0) -> Run:
        env = self.job_env("run", FAULT_LOG_EVERY=f"{log_every:g}")
        with self.job(tool, env) as (launch, canary):
            self.steady(launch)
            t0 = time.time()
            launch.proc.kill()
            watcher = self.watch(canary)
            launch.proc.wait(10)
            watcher.wait_gone(t0 + self.left_wait)
            return Run(-9, 0.0, _since(watcher.gone_at, t0), watcher.count,
                       len(local_procs(launch, canary)))

    def ctrl_c(self, tool: str) -> Run:
        with self.job(tool, self.job_env("run")) as (launch, canary):
            self.steady(launch)
            t0 = time.time()
            os.killpg(launch.proc.pid, signal.SIGINT)
            watcher = self.watch(canary)
            note = ""
            # pdsh lists its threads on the first Ctrl-C and stops on a second one within
            # a second (its manual); a user presses twice.
            if tool == PDSH and launch.wait_exit(0.5) is None:
                note = "Ctrl-C pressed twice, 0.5 s apart (pdsh needs two)"
                os.killpg(launch.proc.pid, signal.SIGINT)
            code = launch.wait_exit(t0 + self.cap - time.time())
            end = launch.exited_at if code is not None else time.time()
            assert end is not None
            watcher.wait_gone(end + self.left_wait)
            return Run(code, None if code is None else end - t0, _since(watcher.gone_at, t0),
                       watcher.count, len(local_procs(launch, canary)), note=note)


def _since(when: float | None, origin: float) -> float | None:
    return None if when is None else max(0.0, when - origin)


# -- the report --------------------------------------------------------------------------


def seconds(values: list[float | None], cap: float, hung: str) -> str:
    """median (min-max) of the runs that finished; the others as '> cap'."""
    done = sorted(v for v in values if v is not None)
    missing = len(values) - len(done)
    if not done:
        return f"> {cap:g} ({hung})"
    text = f"{statistics.median(done):.2f}"
    if len(done) > 1:
        text += f" ({done[0]:.2f}-{done[-1]:.2f})"
    if missing:
        text += f"; {missing} of {len(values)} > {cap:g} ({hung})"
    return text


def counts(values: list[int]) -> str:
    low, high = min(values), max(values)
    return f"{low}" if low == high else f"{statistics.median(values):g} ({low}-{high})"


def codes(runs: list[Run]) -> str:
    seen: list[str] = []
    for run in runs:
        text = ("none (hung)" if run.exit_code is None
                else "killed" if run.exit_code == -9 else str(run.exit_code))
        if text not in seen:
            seen.append(text)
    return ", ".join(seen)


def left_cell(runs: list[Run]) -> str:
    """Left behind by the runs whose launcher exited; the hung ones' jobs still run."""
    exited = [r for r in runs if r.exit_code is not None]
    hung = len(runs) - len(exited)
    if not exited:
        return f"{counts([r.left for r in runs])} (the job still runs)"
    text = counts([r.left for r in exited])
    local = [r.local_left for r in exited]
    if any(local):
        text += f" + {counts(local)} ssh client(s) here"
    if hung:
        text += f"; {hung} of {len(runs)} hung (the job still runs)"
    return text


@dataclass
class Case:
    """One row: a scenario run with one launcher."""

    kind: str
    label: str
    tool: str
    how: Callable[[Bench], Run]
    gone_label: str = ""
    runs: list[Run] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def notes(self) -> str:
        notes = list(dict.fromkeys(part for r in self.runs for part in r.note.split("; ")
                                   if part))
        if self.errors:
            notes.append(f"{len(self.errors)} run(s) failed: {self.errors[0]}")
        return "; ".join(notes)


def plan_cases(chosen: list[str], with_pdsh: bool) -> list[Case]:
    tools = [SSHRUN, PDSH] if with_pdsh else [SSHRUN]
    cases: list[Case] = []
    if "crash" in chosen:
        cases += [Case("crash", "rank 3 exits 1", tool, partial(Bench.crash, tool=tool))
                  for tool in tools]
    if "frozen" in chosen:
        label = "node 2 frozen (SIGSTOP)"
        cases.append(Case("frozen", label, "sshrun, --heartbeat-timeout 15 (default)",
                          partial(Bench.frozen, tool=SSHRUN, heartbeat=None), "after SIGCONT"))
        cases.append(Case("frozen", label, "sshrun, --heartbeat-timeout 5",
                          partial(Bench.frozen, tool=SSHRUN, heartbeat=5), "after SIGCONT"))
        if with_pdsh:
            cases.append(Case("frozen", label, PDSH,
                              partial(Bench.frozen, tool=PDSH, heartbeat=None)))
    if "head-kill" in chosen:
        label = "launcher SIGKILLed"
        cases += [Case("head-kill", label, tool, partial(Bench.head_kill, tool=tool))
                  for tool in tools]
        if with_pdsh:
            cases.append(Case("head-kill", label, f"{PDSH}, rank 0 prints every 1 s",
                              partial(Bench.head_kill, tool=PDSH, log_every=1.0)))
    if "ctrl-c" in chosen:
        cases += [Case("ctrl-c", "Ctrl-C", tool, partial(Bench.ctrl_c, tool=tool))
                  for tool in tools]
    if "restart" in chosen:
        cases.append(Case("restart", "", "sshrun --max-restarts 1 --restart-backoff 0.1",
                          partial(Bench.restart, tool=SSHRUN)))
        if with_pdsh:
            cases.append(Case("restart", "", "pdsh + torchrun --max-restarts 1 (c10d "
                              "rendezvous, restarts in place)",
                              partial(Bench.restart, tool=PDSH)))
    return cases


def print_tables(cases: list[Case], repeat: int, cap: float, left_wait: float) -> None:
    print(f"Median (min-max) of {repeat} run(s), in seconds from the fault; a launcher is "
          f"given {cap:g} s after the fault, its job's processes {left_wait:g} s after it "
          "exits.")
    print()
    print("| fault | launcher | exit status | launcher exits after (s) "
          "| every job process gone after (s) | processes left behind | notes |")
    print("|---|---|---|---|---|---|---|")
    for case in cases:
        runs = case.runs
        if case.kind == "restart":
            continue
        if not runs:
            print(f"| {case.label} | {case.tool} | | | | | {case.notes()} |")
            continue
        exit_cell = ("n/a (killed)" if all(r.exit_code == -9 for r in runs)
                     else seconds([r.exit_after for r in runs], cap, "hung"))
        if all(r.exit_code is None for r in runs):
            gone = "n/a (the job still runs)"
        else:
            gone = seconds([r.gone_after for r in runs], left_wait, "never")
            if case.gone_label and not gone.startswith(">"):
                gone += f" {case.gone_label}"
        print(f"| {case.label} | {case.tool} | {codes(runs)} | {exit_cell} | {gone} "
              f"| {left_cell(runs)} | {case.notes()} |")
    restarts = [case for case in cases if case.kind == "restart"]
    if not restarts:
        return
    print()
    print("| restart (rank 3 fails once) | exit status | crash to every rank's first line "
          "of the new attempt (s) | crash to every rank's first collective (s) "
          "| whole job (s) | processes left behind | notes |")
    print("|---|---|---|---|---|---|---|")
    for case in restarts:
        runs = case.runs
        if not runs:
            print(f"| {case.tool} | | | | | | {case.notes()} |")
            continue
        cells = [restart_cell(runs, key, cap) for key in ("first_line", "collective", "total")]
        print(f"| {case.tool} | {codes(runs)} | {' | '.join(cells)} "
              f"| {left_cell(runs)} | {case.notes()} |")


def restart_cell(runs: list[Run], key: str, cap: float) -> str:
    """Like seconds(), but a run that exited without reaching the point says 'never'."""
    done = sorted(v for r in runs if (v := r.extra.get(key)) is not None)
    never = sum(r.extra.get(key) is None and r.exit_code is not None for r in runs)
    hung = sum(r.exit_code is None for r in runs)
    parts = []
    if done:
        text = f"{statistics.median(done):.2f}"
        if len(done) > 1:
            text += f" ({done[0]:.2f}-{done[-1]:.2f})"
        parts.append(text)
    if never:
        parts.append(f"never in {never} of {len(runs)} (the job failed)")
    if hung:
        parts.append(f"> {cap:g} in {hung} of {len(runs)} (hung)")
    return "; ".join(parts)


def _median(values: list[float | None]) -> float | None:
    done = [v for v in values if v is not None]
    return statistics.median(done) if done else None


def print_summary(cases: list[Case], cap: float, left_wait: float) -> None:
    """What the numbers say, computed from them."""
    print()
    print("What the numbers say:")
    print()
    for tool in (SSHRUN, PDSH):
        mine = [c for c in cases if c.tool.startswith(tool) and c.runs]
        if not mine:
            continue
        hung = [c for c in mine if any(r.exit_code is None for r in c.runs)]
        leaky = [c for c in mine if any(r.left or r.local_left for r in c.runs
                                        if r.exit_code is not None)]
        runs = sum(len(c.runs) for c in mine)
        left = sum(r.left + r.local_left for c in mine for r in c.runs
                   if r.exit_code is not None)
        text = f"* {tool}: {runs} runs; "
        text += (f"hung (still running {cap:g} s after the fault) in: "
                 + "; ".join(f"{c.label or c.kind}, {c.tool}" for c in hung)
                 if hung else "never hung")
        text += (f"; processes left behind {left_wait:g} s after the launcher was gone: "
                 f"{left} in total")
        if leaky:
            text += " (" + "; ".join(f"{c.label or c.kind}, {c.tool}" for c in leaky) + ")"
        print(text + ".")
    for case in cases:
        if case.kind == "frozen" and case.tool.startswith(SSHRUN) and case.runs:
            median = _median([r.exit_after for r in case.runs])
            if median is not None:
                print(f"* Frozen node, {case.tool}: lost and the job stopped after "
                      f"{median:.1f} s.")
        if case.kind == "restart" and case.runs:
            median = _median([r.extra.get("collective") for r in case.runs])
            if median is not None:
                print(f"* Restart, {case.tool}: every rank back in a collective "
                      f"{median:.1f} s after the crash.")
            else:
                print(f"* Restart, {case.tool}: the second attempt never had every rank in "
                      f"a collective ({case.notes()}).")


SCENARIOS = ("crash", "frozen", "head-kill", "ctrl-c", "restart")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--quick", action="store_true",
                        help="one run each, shorter bounds (a smoke run)")
    parser.add_argument("--cap", type=float, default=None,
                        help="seconds a launcher may run after a fault (default 60; quick 40)")
    parser.add_argument("--left-wait", type=float, default=None,
                        help="seconds to wait for the job's processes to go (default 30; "
                             "quick 10)")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS),
                        help=f"comma-separated subset of {','.join(SCENARIOS)}")
    parser.add_argument("--no-pdsh", action="store_true", help="sshrun only")
    args = parser.parse_args()
    repeat = 1 if args.quick else args.repeat
    cap = args.cap if args.cap is not None else (40.0 if args.quick else 60.0)
    left_wait = args.left_wait if args.left_wait is not None else (
        10.0 if args.quick else 30.0)
    chosen = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    unknown = sorted(set(chosen) - set(SCENARIOS))
    if unknown:
        parser.error(f"unknown scenario(s) {unknown}; choose from {SCENARIOS}")
    if not args.no_pdsh and (shutil.which("pdsh") is None or shutil.which("torchrun") is None):
        raise SystemExit("pdsh and torchrun are needed (apt-get install pdsh), or --no-pdsh")
    cases = plan_cases(chosen, with_pdsh=not args.no_pdsh)

    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="sshrun-faults-") as tmp, \
            SshdCluster(NODES, Path(tmp) / "sshd", first_octet=FIRST_OCTET) as cluster:
        work = Path(tmp) / "work"
        work.mkdir()
        bench = Bench(cluster, work, cap, left_wait)
        for r in range(repeat):
            for case in cases:
                print(f"[{time.monotonic() - started:5.0f}s] run {r + 1}/{repeat}: "
                      f"{case.label or case.kind}, {case.tool}", file=sys.stderr, flush=True)
                try:
                    run = case.how(bench)
                except BenchError as exc:
                    first = str(exc).splitlines()[0]
                    print(f"    failed: {exc}", file=sys.stderr, flush=True)
                    case.errors.append(first)
                    continue
                print(f"    {run}", file=sys.stderr, flush=True)
                case.runs.append(run)
    print_tables(cases, repeat, cap, left_wait)
    print_summary(cases, cap, left_wait)
    print(f"\n(total {time.monotonic() - started:.0f} s)", file=sys.stderr)


if __name__ == "__main__":
    main()
