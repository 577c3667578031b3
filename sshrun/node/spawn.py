"""Start the job's process (torchrun, or the exec command) with ``os.posix_spawn``.

What ``subprocess.Popen(argv, cwd=, env=, stdin=DEVNULL, stdout=PIPE,
stderr=PIPE, start_new_session=True)`` did, without importing subprocess:
with what it brings (threading, locale, contextlib and its own module),
that was ~8 ms of every node's ~30 ms agent start, paid by every
``sshrun exec`` on every node. posix_spawn is what subprocess itself uses
where it can, and glibc runs it as vfork + exec.

The same contract as Popen's: the program is looked for along the PATH of
the environment it is given (``os.get_exec_path(env)``), not the agent's;
a program that cannot be started is an ``OSError`` here, in the agent, and
never a child that exits 127; the child runs in a session of its own, with
stdin on /dev/null, stdout and stderr on pipes whose read ends are returned,
SIGPIPE and SIGXFSZ at their defaults (the agent ignores SIGPIPE), and no
other descriptor of the agent's (Python opens descriptors close-on-exec;
any inheritable one above 2 is closed in the child, as ``close_fds`` did).

posix_spawn cannot change directory, so the agent goes to ``cwd`` for the
call and back (it is single-threaded, and holds its own directory open to
return to even if it was renamed meanwhile).

Runs on the node: standard library only, Python 3.8.
"""

from __future__ import annotations

import errno
import os

from sshrun.node.signals import signal

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence


class Child:
    """The started process: its pid, and its exit status once the agent reaps it."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None


def find_program(name: str, env: Mapping[str, str]) -> str:
    """``name`` as Popen would run it: a path as it is, else the first executable file of
    that name along ``env``'s PATH."""
    if os.sep in name:
        return name
    for folder in os.get_exec_path(dict(env)):
        path = os.path.join(folder, name)
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), name)


def _inheritable(low: int) -> list[int]:
    """The agent's descriptors from ``low`` up that a child would inherit."""
    found: list[int] = []
    try:
        names = os.listdir("/proc/self/fd")
    except OSError:
        return found
    for name in names:
        fd = int(name)
        try:
            if fd >= low and os.get_inheritable(fd):
                found.append(fd)
        except OSError:
            pass  # the listing's own descriptor, closed by now
    return found


def spawn(argv: Sequence[str], cwd: str | None, env: Mapping[str, str],
          stdout: int | None = None) -> tuple[Child, int | None, int]:
    """Start ``argv``; the child, and the read ends of its stdout and stderr.

    ``stdout``: a descriptor of ours to be the child's stdout instead of a pipe
    (then no read end is returned for it)."""
    path = find_program(argv[0], env)
    out_r, out_w = os.pipe() if stdout is None else (None, stdout)
    err_r, err_w = os.pipe()
    devnull = os.open(os.devnull, os.O_RDONLY)
    here = os.open(".", os.O_RDONLY) if cwd is not None else None
    try:
        if cwd is not None:
            os.chdir(cwd)
        actions: list[tuple[int, ...]] = [
            (os.POSIX_SPAWN_DUP2, devnull, 0), (os.POSIX_SPAWN_DUP2, err_w, 2)]
        if out_w != 1:
            actions.insert(1, (os.POSIX_SPAWN_DUP2, out_w, 1))
        actions += [(os.POSIX_SPAWN_CLOSE, fd) for fd in _inheritable(3)]
        pid = os.posix_spawn(path, list(argv), dict(env), file_actions=actions, setsid=True,
                             setsigdef=(signal.SIGPIPE, signal.SIGXFSZ))
    except BaseException:
        if out_r is not None:
            os.close(out_r)
        os.close(err_r)
        raise
    finally:
        if here is not None:
            os.fchdir(here)
            os.close(here)
        for fd in (devnull, err_w) if stdout is not None else (devnull, out_w, err_w):
            os.close(fd)
    return Child(pid), out_r, err_r
