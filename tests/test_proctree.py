"""The sweep's view of a job (sshrun/node/proctree.py): the agent's own tree while it lives.

Each test runs a real stand-in for the agent: a Python process that makes
itself a child subreaper, as the agent does, and builds a job's process tree
(a child, a grandchild, a daemon that double-forked with setsid, a process
forked from a thread, a zombie). It reports what ``descendants`` finds, which
/proc entries it read doing so, and what a sweep (``teardown.terminate``)
left. Run under this interpreter (pidfds) and under Python 3.8 (no pidfds:
plain pids).
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import shutil
import signal
import subprocess
import sys
from typing import Any

import pytest
from head import REPO

# The stand-in agent. argv: the scenario. Prints one JSON object.
AGENT = r"""
import builtins, json, os, subprocess, sys, threading, time
from sshrun.node import proctree, teardown

scenario = sys.argv[1]
assert teardown.set_child_subreaper()
me = os.getpid()
expected = set()

def report_pid(w, pid):
    os.write(w, b"%d\n" % pid)

def read_pid(r):
    data = b""
    while not data.endswith(b"\n"):
        chunk = os.read(r, 1)
        assert chunk, "a helper died before saying its pid"
        data += chunk
    return int(data)

def state(pid):
    with open("/proc/%d/stat" % pid, "rb") as f:
        return f.read().rsplit(b")", 1)[1].split()[0]

def wait_until(predicate, what):
    deadline = time.monotonic() + 20
    while not predicate():
        assert time.monotonic() < deadline, "timed out: " + what
        time.sleep(0.01)

def reap(seconds):
    # As the agent's _wait: time passes, exit statuses are collected.
    time.sleep(seconds)
    try:
        while os.waitpid(-1, os.WNOHANG)[0]:
            pass
    except ChildProcessError:
        pass

def alive(pid):
    try:
        return state(pid) not in (b"Z", b"X")
    except OSError:
        return False

# A daemon that ignores SIGTERM; it says its pid once it does (argv: the fd to say it on).
ignore_term = ("import os, signal, sys, time\n"
               "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
               "os.write(int(sys.argv[1]), b'%d\\n' % os.getpid())\n"
               "time.sleep(60)\n")

if scenario == "tree":
    r, w = os.pipe()
    try:
        expected.add(subprocess.Popen(["sleep", "60"]).pid)       # a child
        pid = os.fork()                                            # a child with a grandchild
        if pid == 0:
            grandchild = subprocess.Popen(["sleep", "60"])
            report_pid(w, grandchild.pid)
            grandchild.wait()
            os._exit(0)
        expected.update((pid, read_pid(r)))
        middle = os.fork()                                         # a daemon: double fork, setsid
        if middle == 0:
            os.setsid()
            if os.fork() == 0:
                os.set_inheritable(w, True)
                os.execv(sys.executable, [sys.executable, "-c", ignore_term, str(w)])
            os._exit(0)
        daemon = read_pid(r)
        os.waitpid(middle, 0)
        wait_until(lambda: proctree._stat(daemon)[1] == me, "the daemon re-parented to us")
        expected.add(daemon)
        pid = os.fork()                                            # a child forked from a thread
        if pid == 0:
            def spawn():
                child = subprocess.Popen(["sleep", "60"])
                report_pid(w, child.pid)
                child.wait()
            threading.Thread(target=spawn).start()
            time.sleep(60)
            os._exit(0)
        expected.update((pid, read_pid(r)))
        zombie = os.fork()                                         # a zombie: dead, not reaped
        if zombie == 0:
            os._exit(0)
        wait_until(lambda: state(zombie) == b"Z", "the zombie")

        read = []
        real_open, real_listdir = builtins.open, os.listdir
        def watched_open(path, *args, **kwargs):
            read.append(str(path))
            return real_open(path, *args, **kwargs)
        def watched_listdir(path="."):
            read.append(str(path))
            return real_listdir(path)
        builtins.open, os.listdir = watched_open, watched_listdir
        try:
            found = proctree.descendants(me)
        finally:
            builtins.open, os.listdir = real_open, real_listdir
        fds = [p.fd for p in found]
        proctree.close_all(found)
        result = {"expected": sorted(expected), "found": sorted(p.pid for p in found),
                  "fds": fds, "zombie": zombie, "me": me, "read": read,
                  "any_before": proctree.any_descendant(me)}
    finally:
        swept = teardown.terminate(lambda: proctree.descendants(me), 1.0, reap,
                                   lambda: proctree.any_descendant(me))
    result["swept"] = [swept.terminated, swept.killed, swept.left]
    result["alive"] = [pid for pid in expected if alive(pid)]
    result["any_after"] = proctree.any_descendant(me)
    print(json.dumps(result))

elif scenario == "runner":
    # A process that forks and exits, over and over: a new pid every few ms, each
    # orphan re-parented to us while the sweep runs.
    runner = ("import os, time\n"
              "while True:\n"
              "    if os.fork():\n"
              "        os._exit(0)\n"
              "    time.sleep(0.002)\n")
    subprocess.Popen([sys.executable, "-c", runner])
    wait_until(lambda: len(proctree.children(me)) > 1, "the runner forking")
    # Some process of the runner lives at every instant: a walk must never come back
    # empty, however its processes die and re-parent while it reads.
    empty = 0
    for i in range(3000):
        found = proctree.descendants(me)
        empty += (not found) + (not proctree.any_descendant(me))
        proctree.close_all(found)
        if i % 50 == 0:
            reap(0)
    swept = teardown.terminate(lambda: proctree.descendants(me), 1.0, reap,
                               lambda: proctree.any_descendant(me))
    reap(0.2)
    left = proctree.descendants(me)
    print(json.dumps({"swept": [swept.terminated, swept.killed, swept.left],
                      "left": [p.pid for p in left], "empty": empty}))

elif scenario == "stranger":
    # A tagged process that is not ours to walk to: only a scan by tag sees it.
    tag = sys.argv[2]
    stranger = int(sys.argv[3])
    child = subprocess.Popen(["sleep", "60"])
    walked = [p.pid for p in proctree.descendants(me)]
    scanned = [p.pid for p in proctree.scan(tag, me)]
    child.kill()
    child.wait()
    print(json.dumps({"walked": walked, "scanned": scanned, "child": child.pid,
                      "stranger": stranger}))
"""


def _interpreters() -> list[str]:
    """This interpreter (pidfds), and Python 3.8 (none), as test_static_checks finds it."""
    found = sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.8*/bin/python3")))
    old = found[0] if found else shutil.which("python3.8")
    assert old, "no Python 3.8 on this machine to run the sweep's walk with"
    return [sys.executable, old]


@pytest.fixture(params=_interpreters(), ids=("this-python", "python3.8"))
def python(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def _run_agent(python: str, *args: str) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    # Its own session: whatever the stand-in leaves is killed with its group below.
    proc = subprocess.Popen([python, "-c", AGENT, *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env, text=True,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=90)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
    assert proc.returncode == 0, err
    result: dict[str, Any] = json.loads(out)
    return result


@pytest.fixture(scope="module", params=_interpreters(), ids=("this-python", "python3.8"))
def tree(request: pytest.FixtureRequest) -> tuple[str, dict[str, Any]]:
    """One stand-in agent's tree, walked, then swept; and the interpreter it ran under."""
    return str(request.param), _run_agent(str(request.param), "tree")


def test_the_walk_finds_the_whole_tree_and_nothing_else(tree: tuple[str, dict[str, Any]]) -> None:
    """A child, a grandchild, a setsid daemon (re-parented to the subreaper), a child of a
    thread: all found; the zombie is not."""
    _, result = tree
    assert result["found"] == result["expected"]
    assert result["zombie"] not in result["found"]


def test_the_walk_reads_only_the_jobs_own_processes(tree: tuple[str, dict[str, Any]]) -> None:
    """No listing of /proc and no entry of any other process: the cost does not grow with
    what else the machine runs."""
    _, result = tree
    assert "/proc" not in result["read"] and "/proc/" not in result["read"]
    mine = {*result["expected"], result["me"], result["zombie"]}
    for path in result["read"]:
        parts = path.split("/")
        assert parts[1] == "proc" and int(parts[2]) in mine, path


def test_found_processes_hold_a_pidfd_where_the_system_has_them(
        tree: tuple[str, dict[str, Any]]) -> None:
    python, result = tree
    has_pidfd = subprocess.run(
        [python, "-c", "import os, signal; print(hasattr(os, 'pidfd_open') "
                       "and hasattr(signal, 'pidfd_send_signal'))"],
        capture_output=True, text=True, timeout=30).stdout.strip() == "True"
    if has_pidfd:
        assert all(fd >= 0 for fd in result["fds"])
    else:
        assert all(fd == -1 for fd in result["fds"])


def test_a_sweep_of_the_tree_leaves_nothing(tree: tuple[str, dict[str, Any]]) -> None:
    """SIGTERM to all, then SIGKILL for the daemon that ignores it; nothing left alive."""
    _, result = tree
    terminated, killed, left = result["swept"]
    assert terminated == len(result["expected"])
    assert killed == 1  # the daemon, which ignores SIGTERM
    assert left == 0
    assert result["alive"] == []
    assert result["any_before"] is True
    assert result["any_after"] is False


def test_a_process_that_keeps_forking_away_is_caught(python: str) -> None:
    """A new pid every few ms, each orphan coming back to the subreaper mid-walk: no walk
    (nor the grace period's cheaper check) misses it, and the sweep ends it."""
    result = _run_agent(python, "runner")
    assert result["empty"] == 0
    assert result["swept"][2] == 0
    assert result["left"] == []


def test_only_a_scan_by_tag_finds_a_process_outside_the_tree(python: str) -> None:
    """What the sentinel relies on once the agent is dead: the tag, not the tree."""
    tag = "test-proctree." + os.urandom(4).hex()
    stranger = subprocess.Popen(["sleep", "60"], env={**os.environ, "SSHRUN_TAG": tag})
    try:
        result = _run_agent(python, "stranger", tag, str(stranger.pid))
    finally:
        stranger.kill()
        stranger.wait(10)
    assert result["walked"] == [result["child"]]
    assert stranger.pid in result["scanned"]
    assert result["child"] in result["scanned"]
