"""Against real sshd nodes: what docs/operating.md describes.

The torch version guard at launch (sshrun/preflight.py), the final report's
line on what every node did (sshrun/report.py).


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
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from head import run_sshrun
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
              f"0) touch {done}; echo finishing;; "
              # A poll with a deadline (60 s), on node0's mark.
              f"1) for i in $(seq 600); do [ -e {done} ] && break; sleep 0.1; done; "
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
