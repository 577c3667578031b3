"""Against real sshd nodes: what docs/operating.md describes.

The torch version guard at launch (sshrun/preflight.py), the final report's
line on what every node did (sshrun/report.py), the start-up report and its
live line on a terminal (sshrun/startup.py, sshrun/startup_console.py): a
node whose interpreter waits for the test before it starts (a wrapper script
as that host's python) stalls the start-up at a known place.


The node whose torch is another version runs a second interpreter: a wrapper
script around this one whose ``PYTHONPATH`` puts a folder with a fake ``torch``
package first. The agent's probe (sshrun/node/probe.py) finds torch with
``importlib.util.find_spec`` and reads its ``version.py`` as text, never
importing it, so that package says 2.12.0 and nothing else is needed of it.
``sshrun exec`` runs with the flag: its command needs no torch, the fake one
included.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from conftest import MakeSshdCluster
from head import WORKERS, Head, run_sshrun
from jobprocs import assert_no_leftovers, new_canary
from sshd_cluster import SshdCluster, cluster_args

pytestmark = pytest.mark.sshd

FAKE_VERSION = "2.12.0"


def python_with_torch(folder: Path, version: str) -> Path:
    """A wrapper that runs this interpreter, with a torch that says it is ``version``."""
    package = folder / "site" / "torch"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("raise ImportError('a fake torch, for its version')\n")
    (package / "version.py").write_text(
        f"__version__ = '{version}'\ncuda: Optional[str] = None\n")
    wrapper = folder / "python-other-torch"
    wrapper.write_text(f'#!/bin/sh\nPYTHONPATH={folder / "site"} exec {sys.executable} "$@"\n')
    wrapper.chmod(0o755)
    # What the node's probe will read through the wrapper.
    done = subprocess.run([str(wrapper), "-c", "from sshrun.node import probe; "
                           "print(probe.torch_versions())"],
                          capture_output=True, text=True, timeout=60, check=True,
                          cwd=Path(__file__).resolve().parent.parent)
    assert done.stdout.strip() == f"(True, '{version}', None)", done.stdout + done.stderr
    return wrapper


def cluster_yaml(cluster: SshdCluster, folder: Path, odd: set[int], python: Path) -> Path:
    lines = ["hosts:"]
    for k in range(cluster.n):
        lines.append(f"  - {{host: node{k}, python: {python}}}" if k in odd
                     else f"  - node{k}")
    lines.append(f"ssh: {{config: {cluster.ssh_config}}}")
    path = folder / "cluster.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def read_events(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_a_node_with_another_torch_stops_the_launch_and_the_flag_lets_it_run(
        sshd_cluster: SshdCluster, tmp_path: Path) -> None:
    ours = importlib.metadata.version("torch")
    wrapper = python_with_torch(tmp_path / "py", FAKE_VERSION)
    config = cluster_yaml(sshd_cluster, tmp_path, {1}, wrapper)
    events = tmp_path / "refused.jsonl"
    marker = tmp_path / "ran"
    command = ["--", "sh", "-c", f"touch {marker}-$SSHRUN_NODE_RANK; echo ran"]
    code, head = run_sshrun(["exec", "-c", str(config), "--events", str(events), *command],
                            cwd=tmp_path)
    assert code == 2, head.transcript()
    assert head.stderr == (
        f"sshrun: error: node1: torch {FAKE_VERSION}, but node 0 (node0) has torch {ours} "
        "(every node needs the same torch; --allow-version-mismatch launches anyway)")
    assert head.stdout == ""
    log = read_events(events)
    assert {e["host"]: e["torch_version"] for e in log if e["event"] == "agent_up"} == {
        "node0": ours, "node1": FAKE_VERSION, "node2": ours}
    # Refused after every hello and before any spec: nothing ran anywhere.
    assert not [e for e in log if e["event"] == "ranks_started"]
    assert not list(tmp_path.glob("ran-*"))
    assert log[-1]["event"] == "job_finished" and log[-1]["exit_code"] == 2

    code, head = run_sshrun(["exec", "-c", str(config), "--allow-version-mismatch", *command],
                            cwd=tmp_path)
    assert code == 0, head.transcript()
    assert head.err[0] == (f"sshrun: warning: node1: torch {FAKE_VERSION}, but node 0 (node0) "
                           f"has torch {ours} (--allow-version-mismatch)")
    assert sorted(head.out) == ["node0 | ran", "node1 | ran", "node2 | ran"]
    assert sorted(p.name for p in tmp_path.glob("ran-*")) == ["ran-0", "ran-1", "ran-2"]


def test_many_odd_nodes_are_one_folded_line(sshd_cluster: SshdCluster, tmp_path: Path) -> None:
    ours = importlib.metadata.version("torch")
    wrapper = python_with_torch(tmp_path / "py", FAKE_VERSION)
    config = cluster_yaml(sshd_cluster, tmp_path, {1, 2}, wrapper)
    code, head = run_sshrun(["-c", str(config), "--nproc-per-node", "1", "no_such_script.py"],
                            cwd=tmp_path)
    assert code == 2, head.transcript()
    assert head.stderr == (
        f"sshrun: error: node[1-2]: torch {FAKE_VERSION}, but node 0 (node0) has torch {ours} "
        "(every node needs the same torch; --allow-version-mismatch launches anyway)")


def test_the_report_says_which_nodes_finished_failed_and_were_stopped(
        sshd_cluster: SshdCluster, tmp_path: Path) -> None:
    """node0 ends at once; node1 fails once node0 has ended; node2 waits to be stopped."""
    done = tmp_path / "node0-done"
    script = (f"case $SSHRUN_NODE_RANK in "
              f"0) echo $$ > {done}.new && mv {done}.new {done}; echo finishing;; "
              # Polls with a deadline (60 s each): node0's mark, then node0's
              # command gone (reaped by its agent, which reports it next).
              f"1) for i in $(seq 600); do [ -e {done} ] && break; sleep 0.1; done; "
              f"pid=$(cat {done}); "
              f"for i in $(seq 600); do kill -0 $pid 2>/dev/null || break; sleep 0.1; done; "
              f"echo failing; exit 3;; "
              f"*) echo waiting; exec sleep 120;; esac")
    code, head = run_sshrun(["exec", *cluster_args(sshd_cluster), "--", "sh", "-c", script],
                            cwd=tmp_path)
    assert code == 3, head.transcript()
    assert sorted(head.out) == ["node0 | finishing", "node1 | failing", "node2 | waiting"]
    assert head.err == [
        "sshrun: first failure: node1 (node 1): exited with code 3",
        "sshrun: nodes: 1 finished (node0), 1 failed (node1), 1 stopped (node2)",
        "sshrun: exit status 3",
    ], head.transcript()


# -- start-up that names who is missing ---------------------------------------------------


def stalling_python(folder: Path, release: Path) -> Path:
    """This interpreter, started only once ``release`` exists (a poll with a 120 s
    deadline): that node's agent cannot say hello until the test lets it."""
    folder.mkdir(parents=True, exist_ok=True)
    wrapper = folder / "python-stalls"
    wrapper.write_text("#!/bin/sh\n"
                       f"i=0; while [ ! -e {release} ] && [ $i -lt 1200 ]; do "
                       "sleep 0.1; i=$((i+1)); done\n"
                       f'exec {sys.executable} "$@"\n')
    wrapper.chmod(0o755)
    return wrapper


def test_a_start_up_that_stalls_names_the_node_and_its_ranks(
        sshd_cluster: SshdCluster, tmp_path: Path) -> None:
    release = tmp_path / "release"
    config = cluster_yaml(sshd_cluster, tmp_path, {1}, stalling_python(tmp_path / "py", release))
    canary = new_canary()
    head = Head(["-c", str(config), "--nproc-per-node", "2", "--startup-report", "1",
                 "-x", f"SSHRUN_TEST_CANARY={canary}", str(WORKERS / "echo_args.py")],
                cwd=tmp_path)
    try:
        # Once the others' agents are up, only node1's is missing: named with its ranks.
        stuck = ("sshrun: start-up still going after {}: 6 of 6 ranks not started: "
                 "node1 r[2-3] (starting its agent), node[0,2] r[0-1,4-5] (agent up)")
        head.wait_line("node[0,2] r[0-1,4-5] (agent up)", timeout=120)
        release.touch()
        code = head.wait(240)
    finally:
        release.touch()
        if head.proc.poll() is None:
            head.proc.kill()
            head.wait(30)
    assert code == 0, head.transcript()
    reports = [line for line in head.err if "start-up" in line or "every rank" in line]
    # The first report comes at the threshold: every node is named, wherever it is.
    assert re.fullmatch(r"sshrun: start-up still going after 1s: 6 of 6 ranks not started: "
                        r".*node1 r\[2-3\] \((connecting|starting its agent)\).*", reports[0]), \
        head.transcript()
    assert any(line == stuck.format("1s") or re.fullmatch(
        re.escape(stuck).replace(r"\{\}", r"\d+\.\ds"), line) for line in reports), reports
    # Then node1's agent, then the rendezvous; then every rank has started, said once.
    assert re.fullmatch(r"sshrun: every rank started after \d+\.\ds", reports[-1]), reports
    assert sum("every rank started" in line for line in reports) == 1
    assert head.err[-1].startswith("sshrun: job finished on 3 nodes in "), head.transcript()
    # Piped: no live line anywhere.
    assert not any("starting: connected" in line or "\x1b[K" in line for line in head.err)
    assert_no_leftovers(canary)


def terminal_rows(data: str) -> list[str]:
    """What a terminal shows for ``data``: carriage return, erase-line and newline
    applied (colour codes dropped), each row as it is left."""
    rows: list[str] = []
    row: list[str] = []
    col = 0
    for token in re.findall(r"\x1b\[[0-9;]*[A-Za-z]|\r|\n|[^\x1b\r\n]+", data):
        if token == "\n":
            rows.append("".join(row))
            row, col = [], 0
        elif token == "\r":
            col = 0
        elif token == "\x1b[K":
            del row[col:]
        elif token.startswith("\x1b["):
            continue
        else:
            row[col:col + len(token)] = list(token)
            col += len(token)
    rows.append("".join(row))
    return rows


def test_the_live_line_on_a_terminal_counts_up_and_is_gone_once_every_rank_runs(
        sshd_cluster: SshdCluster, tmp_path: Path) -> None:
    release = tmp_path / "release"
    config = cluster_yaml(sshd_cluster, tmp_path, {1}, stalling_python(tmp_path / "py", release))
    canary = new_canary()
    main, tty = os.openpty()
    env = dict(os.environ)
    env.pop("SSH_AUTH_SOCK", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "sshrun", "-c", str(config), "--nproc-per-node", "2",
         "-x", f"SSHRUN_TEST_CANARY={canary}", "-x", "ALL=1", str(WORKERS / "echo_args.py")],
        cwd=tmp_path, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=tty,
        start_new_session=True)
    os.close(tty)
    chunks: list[bytes] = []
    seen = threading.Event()

    def read_terminal() -> None:
        while True:
            try:
                data = os.read(main, 65536)
            except OSError:  # EIO: the terminal's last writer has closed it
                return
            if not data:
                return
            chunks.append(data)
            if b"agents up 2/3" in b"".join(chunks):
                seen.set()

    reader = threading.Thread(target=read_terminal, daemon=True)
    reader.start()
    try:
        # Held at node1's agent: the line is there, and says so.
        assert seen.wait(120), b"".join(chunks)
        release.touch()
        out, _ = proc.communicate(timeout=240)
    finally:
        release.touch()
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
    reader.join(10)
    os.close(main)
    screen = b"".join(chunks).decode()
    assert proc.returncode == 0, screen
    drawn = re.findall(r"\r\x1b\[K(sshrun: starting: [^\r\n\x1b]*)", screen)
    assert drawn[0] == "sshrun: starting: connected 0/3, agents up 0/3, ranks started 0/6", drawn
    assert "sshrun: starting: connected 3/3, agents up 2/3, ranks started 0/6" in drawn, drawn
    counts = [int(m) for m in re.findall(r"ranks started (\d)/6", " ".join(drawn))]
    assert counts == sorted(counts), drawn  # it only counts up
    # Gone once every rank runs: no row of the screen keeps it, and it was never
    # drawn into a row another line used (each row is whole).
    rows = terminal_rows(screen)
    assert not [row for row in rows if "starting:" in row], rows
    assert rows[-2].startswith("sshrun: job finished on 3 nodes in "), rows
    assert rows[-1] == ""
    lines = out.decode().splitlines()
    assert sorted(line for line in lines if " | ARGV" in line) == [
        f"node{r // 2} r{r} | ARGV []" for r in range(6)], lines
    assert_no_leftovers(canary)


def test_a_node_that_never_answers_is_named_as_connecting(
        make_sshd_cluster: MakeSshdCluster, tmp_path: Path) -> None:
    """node1's sshd is frozen (SIGSTOP): the TCP connection opens, the handshake never
    comes. Until the connect timeout, the start-up report names it, and its rank."""
    cluster = make_sshd_cluster(2, first_octet=40)
    cluster.stop_node(1)
    try:
        code, head = run_sshrun([*cluster_args(cluster), "--nproc-per-node", "1",
                                 "--connect-timeout", "20", "--startup-report", "1",
                                 str(WORKERS / "echo_args.py")], cwd=tmp_path)
    finally:
        cluster.cont_node(1)
    assert code == 255, head.transcript()
    stuck = "2 of 2 ranks not started: node1 r1 (connecting), node0 r0 (agent up)"
    assert any(line.startswith("sshrun: start-up still going after ")
               and line.endswith(f"s: {stuck}") for line in head.err), head.transcript()
    assert head.err[-1].startswith("sshrun: error: node1: "), head.transcript()
