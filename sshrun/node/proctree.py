"""Finding a job's processes on its node: the agent's own tree, or every process by tag.

Two ways, one answer:

* ``descendants``: while the agent lives. The agent is a child subreaper, so
  every process the job forks stays below it, daemons included (a process
  that double-forks and calls setsid is re-parented to the agent, not to
  init). The walk reads ``/proc/PID/task/TID/children`` from the agent down:
  its cost is the job's own processes and threads, whatever else the node
  runs.
* ``scan``: every process on the machine, for the tag ``SSHRUN_TAG`` in its
  environment. For the sentinel, once the agent is dead and its tree has
  gone to init, and where the tree cannot be trusted (no subreaper, no
  ``children`` files).

A found process is a ``Proc``: its pid and, where the system has them
(Python 3.9 and Linux 5.3 on), a pidfd opened when it was found and checked
against what was found, so that a signal reaches that process or nobody,
never a newcomer that got its pid.

Runs on the node: standard library only, Python 3.8.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from sshrun.node.signals import signal

PR_GET_CHILD_SUBREAPER = 37
_DEAD = (b"Z", b"X")  # zombie, dead: nothing left to signal


class Proc:
    """A process found for the sweep; ``fd``: its pidfd, or -1 where there is none."""

    __slots__ = ("fd", "pid")

    def __init__(self, pid: int, fd: int = -1) -> None:
        self.pid = pid
        self.fd = fd

    def signal(self, sig: int) -> None:
        """Send ``sig``; a process that is gone (or not ours to signal) is left alone."""
        try:
            if self.fd >= 0:
                signal.pidfd_send_signal(self.fd, sig)  # type: ignore[attr-defined,unused-ignore]
            else:
                os.kill(self.pid, sig)
        except OSError:
            pass

    def close(self) -> None:
        if self.fd >= 0:
            try:
                os.close(self.fd)
            except OSError:
                pass
            self.fd = -1


def close_all(procs: Iterable[Proc]) -> None:
    for proc in procs:
        proc.close()


def _stat(pid: int) -> tuple[bytes, int, int] | None:
    """State, parent pid and start time of ``pid``; None once it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
        # The command name may contain spaces and parentheses: fields follow the last ')'.
        fields = stat[stat.rindex(b")") + 2 :].split()
        return fields[0], int(fields[1]), int(fields[19])
    except (OSError, ValueError, IndexError):
        return None


def _alive(pid: int, state: bytes) -> bool:
    """Not dead: a zombie leader whose other threads still run is alive (and may have children)."""
    if state not in _DEAD:
        return True
    try:
        return len(os.listdir(f"/proc/{pid}/task")) > 1
    except OSError:
        return False


def _pidfd(pid: int) -> int:
    """A pidfd for ``pid``, or -1: none on this system, or the process is gone."""
    opener = getattr(os, "pidfd_open", None)
    if opener is None or not hasattr(signal, "pidfd_send_signal"):
        return -1
    try:
        return int(opener(pid))
    except OSError:
        return -1


def children(pid: int) -> list[int]:
    """The children of every thread of ``pid`` (a thread, not its process, is a parent)."""
    found: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return found
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/children", "rb") as f:
                found.extend(int(c) for c in f.read().split())
        except (OSError, ValueError):
            continue
    return found


def tree_walk_supported() -> bool:
    """The kernel lists children (CONFIG_PROC_CHILDREN) and this process is a subreaper."""
    me = os.getpid()
    if not os.path.exists(f"/proc/{me}/task/{me}/children"):
        return False
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        flag = ctypes.c_int(0)
        ok = libc.prctl(PR_GET_CHILD_SUBREAPER, ctypes.byref(flag), 0, 0, 0) == 0
        return bool(ok and flag.value)
    except (OSError, AttributeError):
        return False


def _adopt(pid: int, parents: set[int]) -> Proc | None:
    """``pid`` as a live process whose parent is one of ``parents``, with its pidfd.

    The pidfd is opened first and the parent checked after, so that it is
    this process that the pidfd holds, not one that got the pid since.
    """
    fd = _pidfd(pid)
    stat = _stat(pid)
    if stat is None or not _alive(pid, stat[0]) or stat[1] not in parents:
        # Gone, dead, or no longer a child of ours: re-parented (a walk of the
        # agent's children finds it again) or a stranger that got the pid.
        if fd >= 0:
            os.close(fd)
        return None
    return Proc(pid, fd)


def descendants(root: int, spare: int = 0) -> list[Proc]:
    """The live descendants of ``root`` (a subreaper that alone reaps its children), but
    ``spare`` and what descends from it.

    Exact even while processes die and re-parent during the walk: an orphan
    re-parents to ``root`` at the tail of its children, so the walk reads
    ``root``'s children again until nothing new appears. When nothing is
    found, no live descendant existed at that last read: one would have a
    live ancestor among ``root``'s children, and each of those was either
    found or a zombie, which stays one until ``root`` reaps it.
    """
    found: dict[int, Proc] = {}
    seen: set[int] = {spare}
    tree: set[int] = {root}
    while True:
        fresh = [pid for pid in children(root) if pid not in seen]
        if not fresh:
            return list(found.values())
        seen.update(fresh)
        stack = fresh
        while stack:
            pid = stack.pop()
            if pid in found or pid == spare:
                continue
            proc = _adopt(pid, tree)
            if proc is None:
                continue
            found[pid] = proc
            tree.add(pid)
            stack.extend(children(pid))


def any_descendant(root: int, spare: int = 0) -> bool:
    """Whether ``root`` has a live descendant but ``spare``: whether one of its own
    children lives, which is exact for the reason ``descendants`` gives. What a
    grace period polls: one read of ``root``'s children, not a walk of the tree."""
    seen: set[int] = {spare}
    while True:
        fresh = [pid for pid in children(root) if pid not in seen]
        if not fresh:
            return False
        seen.update(fresh)
        for pid in fresh:
            stat = _stat(pid)
            if stat is not None and _alive(pid, stat[0]):
                return True


def scan(tag: str, root: int, spare: int = 0) -> list[Proc]:
    """Every live process on the machine tagged ``SSHRUN_TAG=tag`` (this user's), plus
    the live descendants of ``root``; never ``root`` itself nor ``spare``.

    Reads all of /proc: for when the agent's tree is gone or cannot be trusted.
    """
    needle = b"\0SSHRUN_TAG=" + tag.encode() + b"\0"
    uid = os.getuid()
    parents: dict[int, int] = {}
    started: dict[int, int] = {}
    tagged: set[int] = set()
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        pid = int(name)
        stat = _stat(pid)
        if stat is None or not _alive(pid, stat[0]):
            continue
        parents[pid] = stat[1]
        started[pid] = stat[2]
        try:
            if os.stat(f"/proc/{pid}").st_uid != uid:
                continue
            with open(f"/proc/{pid}/environ", "rb") as f:
                environ = b"\0" + f.read()
        except OSError:
            continue
        if needle in environ:
            tagged.add(pid)
    kids: dict[int, list[int]] = {}
    for pid, ppid in parents.items():
        kids.setdefault(ppid, []).append(pid)
    stack = [pid for pid in kids.get(root, []) if pid != spare]
    while stack:
        pid = stack.pop()
        if pid not in tagged:
            tagged.add(pid)
            stack.extend(kids.get(pid, []))
    tagged.discard(root)
    tagged.discard(spare)
    procs = []
    for pid in sorted(tagged):
        fd = _pidfd(pid)
        stat = _stat(pid)
        # The same process as scanned (its start time), alive: else gone, or a newcomer.
        if stat is None or not _alive(pid, stat[0]) or stat[2] != started[pid]:
            if fd >= 0:
                os.close(fd)
            continue
        procs.append(Proc(pid, fd))
    return procs
