"""Tearing a job down on its node: find its processes, signal them, watch for a dead agent.

Never by process name. The agent is a child subreaper, so that daemonized
descendants come back to it, and every process of the job carries
``SSHRUN_TAG`` (job, node and attempt) in its environment. While the agent
lives, a sweep signals exactly its own descendants (``proctree.descendants``:
the job's tree, at a cost that does not grow with the node's other
processes); where the kernel cannot list children, or the agent is no
subreaper, it signals the tagged processes too (``proctree.scan``, all of
/proc). SIGTERM (+SIGCONT for stopped ones), the grace period, then SIGKILL,
then a check that none is left. The sentinel covers an agent that dies
without sweeping: with the agent gone its tree is gone too, and it sweeps by
tag.

Runs on the node: standard library only, Python 3.8.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

from sshrun.node.proctree import (
    Proc,
    any_descendant,
    close_all,
    descendants,
    scan,
    tree_walk_supported,
)
from sshrun.node.protocol import Swept
from sshrun.node.signals import signal


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


def signal_all(procs: list[Proc], sig: int) -> None:
    for proc in procs:
        proc.signal(sig)
        if sig == signal.SIGTERM:
            # A stopped process would hold SIGTERM pending forever.
            proc.signal(signal.SIGCONT)


def terminate(find: Callable[[], list[Proc]], grace: float,
              wait: Callable[[float], None],
              any_left: Callable[[], bool] | None = None) -> Swept:
    """SIGTERM what ``find`` returns, the grace period, then SIGKILL until none is left.

    ``wait(seconds)`` lets time pass (the agent serves its head meanwhile).
    ``any_left()``, where given, tells more cheaply than ``find`` whether
    anything is left: it is what the grace period polls, and ``find`` runs
    again only for an answer to act on (nothing left, or what to SIGKILL).
    Bounded: the grace period plus 50 rounds of SIGKILL. Returns how many
    processes needed which signal, and how many are still left.
    """
    procs = find()
    terminated = len(procs)
    killed = 0
    signal_all(procs, signal.SIGTERM)
    deadline = time.monotonic() + grace
    stale = False  # procs says only that something is left, not what
    while procs and time.monotonic() < deadline:
        close_all(procs)
        wait(0.05)
        if any_left is not None and any_left():
            stale = True
            continue
        stale = False
        procs = find()
    if stale:
        procs = find()
    for _ in range(50):
        if not procs:
            break
        killed += len(procs)
        signal_all(procs, signal.SIGKILL)
        close_all(procs)
        wait(0.02)
        procs = find()
    close_all(procs)
    return Swept(terminated=terminated, killed=killed, left=len(procs))


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
                try:
                    os.close(int(name))
                except OSError:
                    pass
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        if not os.read(read_end, 1):
            me = os.getpid()
            # The agent is gone and its tree with it: only the tag finds the rest.
            terminate(lambda: scan(tag, me), grace, time.sleep)
    finally:
        os._exit(0)


class Teardown:
    """One job's processes on this node: its tag, its sentinel, its sweep."""

    def __init__(self) -> None:
        self.tag = ""
        self.sentinel: tuple[int, int] | None = None  # pid, pipe write end
        # Whether our own tree holds every process of the job (we are a subreaper
        # and the kernel lists children); else every sweep scans all of /proc.
        self.tree = False

    def arm(self, tag: str, grace: float) -> None:
        """The job is about to start under ``tag``: fork its sentinel."""
        self.tag = tag
        self.tree = tree_walk_supported()
        try:
            self.sentinel = start_sentinel(tag, grace)
        except OSError:
            self.sentinel = None  # the heartbeat and parent-death signals remain

    def processes(self) -> list[Proc]:
        """The job's live processes, each with its pidfd where there are pidfds: the
        caller closes them (``close_all``)."""
        if not self.tag:
            return []
        spare = self.sentinel[0] if self.sentinel is not None else 0
        if self.tree:
            return descendants(os.getpid(), spare)
        return scan(self.tag, os.getpid(), spare)

    def signal(self, sig: int) -> None:
        procs = self.processes()
        signal_all(procs, sig)
        close_all(procs)

    def sweep(self, grace: float, wait: Callable[[float], None]) -> Swept:
        """Stop every process of this job; how many needed which signal."""
        if not self.tag:
            return Swept()
        return terminate(self.processes, grace, wait, self._any_left if self.tree else None)

    def _any_left(self) -> bool:
        spare = self.sentinel[0] if self.sentinel is not None else 0
        return any_descendant(os.getpid(), spare)

    def release_sentinel(self) -> None:
        """The job is swept: tell the sentinel it has nothing to do."""
        if self.sentinel is not None:
            try:
                os.write(self.sentinel[1], b"d")
                os.close(self.sentinel[1])
            except OSError:
                pass
            self.sentinel = None
