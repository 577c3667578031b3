"""sshrun/node/spawn.py: the job's process started as subprocess.Popen started it.

Real processes; each check reads what the child itself saw (its PATH lookup,
directory, session, stdin, signal dispositions and descriptors) from its
own output or /proc.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from sshrun.node.spawn import find_program, spawn


def run(argv: list[str], cwd: str | None, env: dict[str, str]) -> tuple[int, bytes, bytes]:
    child, out, err = spawn(argv, cwd, env)
    with os.fdopen(out, "rb") as o, os.fdopen(err, "rb") as e:
        stdout, stderr = o.read(), e.read()
    _, status = os.waitpid(child.pid, 0)
    return os.waitstatus_to_exitcode(status), stdout, stderr


@pytest.fixture
def sigpipe_ignored() -> Iterator[None]:
    """As in the agent, which ignores SIGPIPE."""
    old = signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    yield
    signal.signal(signal.SIGPIPE, old)


def test_the_child_sees_what_popen_gave_it(tmp_path: Path, sigpipe_ignored: None) -> None:
    tools = tmp_path / "tools"
    tools.mkdir()
    probe = tools / "probe"
    probe.write_text("#!/bin/sh\n"
                     "pwd\n"
                     "cat\n"  # stdin: /dev/null, so nothing and at once
                     "echo to-stderr >&2\n"
                     "echo $$ $(ps -o sid= -p $$)\n"
                     "grep SigIgn /proc/self/status\n"
                     "ls /proc/self/fd\n")
    probe.chmod(0o755)
    work = tmp_path / "work"
    work.mkdir()
    leaked = os.open(os.devnull, os.O_RDONLY)
    os.set_inheritable(leaked, True)  # closed in the child, as close_fds did
    here = os.getcwd()
    try:
        env = {"PATH": f"{tools}:/usr/bin:/bin"}
        code, out, err = run(["probe"], str(work), env)
    finally:
        os.close(leaked)
    assert os.getcwd() == here
    assert code == 0 and err == b"to-stderr\n"
    cwd, sid, sig_ign, *fds = out.decode().splitlines()
    assert cwd == str(work)
    # A session of its own, led by the child (the shell is the spawned pid).
    pid, session = sid.split()
    assert pid == session and int(session) != os.getsid(0), sid
    mask = int(sig_ign.split()[1], 16)
    assert not mask & (1 << (signal.SIGPIPE - 1)), sig_ign
    # 0, 1, 2 and ls's own listing descriptor; nothing of ours.
    assert str(leaked) not in fds[:-1] and sorted(map(int, fds))[:3] == [0, 1, 2], fds
    assert len(fds) == 4, fds


def test_a_program_missing_from_the_given_path_is_an_error_here(tmp_path: Path) -> None:
    before = sorted(os.listdir("/proc/self/fd"))
    with pytest.raises(FileNotFoundError):
        spawn(["true"], None, {"PATH": str(tmp_path)})
    with pytest.raises(FileNotFoundError):
        spawn([str(tmp_path / "nothing")], None, {})
    assert sorted(os.listdir("/proc/self/fd")) == before
    assert find_program("true", {"PATH": f"{tmp_path}:/bin"}) == "/bin/true"
    assert find_program("./x", {"PATH": "/bin"}) == "./x"


def test_exit_status_and_signals_reach_the_waiter(tmp_path: Path) -> None:
    assert run(["sh", "-c", "exit 3"], None, {"PATH": "/usr/bin:/bin"})[0] == 3
    assert run(["sh", "-c", "kill -TERM $$"], None, {"PATH": "/usr/bin:/bin"})[0] == -15
