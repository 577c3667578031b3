"""Tearing a job down on its node: find its processes, signal them, watch for a dead agent.

Never by process name. Every process of the job carries ``SSHRUN_TAG`` (job,
node and attempt) in its environment, and the agent is a child subreaper so
that daemonized descendants come back to it; a sweep signals exactly the
tagged processes and the agent's own descendants: SIGTERM (+SIGCONT for
stopped ones), the grace period, then SIGKILL, then a check that none is
left. The sentinel covers an agent that dies without sweeping.

Runs on the node: standard library only, Python 3.8.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Callable

from sshrun.node.protocol import Swept


def exit_status(returncode: int) -> int:
    """Shell-style status: 128+N for death by signal N."""
    return 128 - returncode if returncode < 0 else returncode


def set_child_subreaper() -> bool:
    """Make orphaned descendants (daemons) re-parent to this agent (Linux)."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_child_subreaper = 36
        return bool(libc.prctl(pr_set_child_subreaper, 1, 0, 0, 0) == 0)
    except (OSError, AttributeError):
        return False


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


def signal_all(pids: list[int], sig: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
            if sig == signal.SIGTERM:
                # A stopped process would hold SIGTERM pending forever.
                os.kill(pid, signal.SIGCONT)
        except OSError:
            pass


def terminate(find: Callable[[], list[int]], grace: float,
              wait: Callable[[float], None]) -> Swept:
    """SIGTERM what ``find`` returns, the grace period, then SIGKILL until none is left.

    ``wait(seconds)`` lets time pass (the agent serves its head meanwhile).
    Bounded: the grace period plus 50 rounds of SIGKILL. Returns how many
    processes needed which signal, and how many are still left.
    """
    pids = find()
    terminated = len(pids)
    killed = 0
    signal_all(pids, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while pids and time.monotonic() < deadline:
        wait(0.05)
        pids = find()
    for _ in range(50):
        if not pids:
            break
        killed += len(pids)
        signal_all(pids, signal.SIGKILL)
        wait(0.02)
        pids = find()
    return Swept(terminated=terminated, killed=killed, left=len(pids))


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


class Teardown:
    """One job's processes on this node: its tag, its sentinel, its sweep."""

    def __init__(self) -> None:
        self.tag = ""
        self.sentinel: tuple[int, int] | None = None  # pid, pipe write end

    def arm(self, tag: str, grace: float) -> None:
        """The job is about to start under ``tag``: fork its sentinel."""
        self.tag = tag
        try:
            self.sentinel = start_sentinel(tag, grace)
        except OSError:
            self.sentinel = None  # the heartbeat and parent-death signals remain

    def processes(self) -> list[int]:
        if not self.tag:
            return []
        spare = self.sentinel[0] if self.sentinel is not None else 0
        return find_job_processes(self.tag, os.getpid(), spare)

    def signal(self, sig: int) -> None:
        signal_all(self.processes(), sig)

    def sweep(self, grace: float, wait: Callable[[float], None]) -> Swept:
        """Stop every process of this job; how many needed which signal."""
        if not self.tag:
            return Swept()
        return terminate(self.processes, grace, wait)

    def release_sentinel(self) -> None:
        """The job is swept: tell the sentinel it has nothing to do."""
        if self.sentinel is not None:
            try:
                os.write(self.sentinel[1], b"d")
                os.close(self.sentinel[1])
            except OSError:
                pass
            self.sentinel = None
