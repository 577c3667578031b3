"""torchrun's entrypoint for every worker: the rank's streams to the agent, then the user's code.

It runs inside the worker process (which has torch), connects stdout, stderr
and a control stream to the agent's Unix socket (``SSHRUN_SOCK``; see
``sshrun.node.ranks``), and runs the user's target in process so that the
worker is the user's program (debuggers, py-spy and torch see what they
expect). The rank itself runs in a forked child, so that this process
outlives it and reports its exact status, signal deaths included. Before
that it sets ``SSHRUN_RANK_ENV``'s variables over torchrun's
(``TORCHELASTIC_RESTART_COUNT`` and the like: see ``sshrun.plan.rank_env``).

A script, not a module: the agent writes it as ``sshrun_rank.py`` with
``parent_death.py`` in front (``die_with_parent`` comes from there on the
node) and torchrun runs it as ``sshrun_rank.py MODE TARGET ARGS...``, MODE
being ``script``, ``module`` or ``exec``. Nothing runs when it is imported
on the head (checks read it as text). Standard library only, Python 3.8.
"""

import contextlib
import json
import os
import runpy
import signal
import socket
import sys
import traceback
from typing import TYPE_CHECKING, Any, NoReturn

if TYPE_CHECKING:  # on the node, parent_death.py's source precedes this file's
    from sshrun.node.parent_death import die_with_parent

# The shim's own frames (and runpy's), left out of a user's traceback.
_OURS = {__file__, runpy.__file__, "<frozen runpy>"}


def _connect(path: str, stream: int, rank: int, local_rank: int) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(path)
    head = {"stream": stream, "rank": rank, "local_rank": local_rank, "pid": os.getpid()}
    sock.sendall(json.dumps(head).encode() + b"\n")
    return sock


def _report(ctl: socket.socket, **fields: Any) -> None:
    with contextlib.suppress(OSError):
        ctl.sendall(json.dumps(fields).encode() + b"\n")


def _exit_code(exc: SystemExit) -> int:
    code = exc.code
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF if code >= 0 else 1
    print(code, file=sys.stderr)
    return 1


def _run_target(ctl: socket.socket) -> int:
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
        _report(ctl, traceback=text)
        sys.stderr.write(text)
        code = 1
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except Exception:
        pass
    return code


def _rank_env() -> None:
    """sshrun's values over torchrun's (``sshrun.plan.rank_env``): under sshrun, torchrun
    never restarts, so its restart count, budget and run id are not what the
    script should see; the rank and everything it starts see sshrun's."""
    try:
        overrides = json.loads(os.environ.pop("SSHRUN_RANK_ENV", "{}"))
    except ValueError:
        return
    if isinstance(overrides, dict):
        os.environ.update({str(k): str(v) for k, v in overrides.items()})


def main() -> NoReturn:
    path = os.environ.pop("SSHRUN_SOCK")
    _rank_env()
    rank = int(os.environ.get("RANK", "-1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "-1"))
    out = _connect(path, 1, rank, local_rank)
    err = _connect(path, 2, rank, local_rank)
    ctl = _connect(path, 0, rank, local_rank)
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(out.fileno(), 1)
    os.dup2(err.fileno(), 2)
    out.close()
    err.close()
    # Both this process and the rank are in the worker's process group, so
    # torchrun's killpg reaches the rank; this parent only waits.
    die_with_parent(signal.SIGKILL)  # torchrun died: so does this rank
    child = os.fork()
    if child == 0:
        die_with_parent(signal.SIGKILL)
        sys.exit(_run_target(ctl))
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT):
        signal.signal(sig, signal.SIG_IGN)
    _report(ctl, pid=child)
    while True:
        try:
            _, status = os.waitpid(child, 0)
            break
        except InterruptedError:
            continue
    if os.WIFSIGNALED(status):
        signum = os.WTERMSIG(status)
        _report(ctl, exit=128 + signum, signal=signum)
        # Die the same way, so that torchrun records the same failure.
        with contextlib.suppress(OSError, ValueError):
            signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)
    code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else 1
    _report(ctl, exit=code)
    os._exit(code)


if __name__ == "__main__":
    main()
