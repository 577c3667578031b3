"""``sshrun check`` against real OpenSSH nodes on loopback (tests/sshd_cluster.py).

Exact values come from ``--json``; the plain table (stdout is a pipe here) is
checked for the words a user reads. This machine has no GPU and no
nvidia-smi: check must say so, and the tests assert it. Clock offsets can
only be measured here (the nodes share the head's clock; no faketime): the
test asserts that the measured offset is below a second and the round trip
positive; the offset arithmetic and the skew verdict are tested with injected
samples in tests/test_check_result.py.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from head import run_sshrun
from sshd_cluster import SshdCluster, cluster_args

pytestmark = [pytest.mark.sshd, pytest.mark.torch]

CHECK_TIMEOUT = 120


def _check(args: list[str], cwd: Path) -> tuple[int, dict[str, Any], str]:
    code, head = run_sshrun(["check", "--json", *args], timeout=CHECK_TIMEOUT, cwd=cwd)
    assert "Traceback" not in head.stderr, head.transcript()
    try:
        data = json.loads(head.stdout)
    except ValueError:
        pytest.fail(f"check --json printed what is not JSON:\n{head.transcript()}")
    return code, data, head.transcript()


def _wrapper(path: Path, body: str) -> Path:
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def _yaml(cluster: SshdCluster, tmp_path: Path, node2_python: str) -> Path:
    config = tmp_path / "cluster.yaml"
    config.write_text(
        f"defaults: {{python: {sys.executable}, workdir: {tmp_path}}}\n"
        "hosts:\n  - node0\n  - node1\n"
        f"  - {{host: node2, python: {node2_python}}}\n"
        f"ssh: {{config: {cluster.ssh_config}}}\n")
    return config


def test_healthy_cluster(sshd_cluster: SshdCluster, tmp_path: Path) -> None:
    assert shutil.which("nvidia-smi") is None, "this test expects a machine without GPUs"
    code, data, transcript = _check([*cluster_args(sshd_cluster), "--python", sys.executable,
                                     "--workdir", str(tmp_path)], tmp_path)
    assert code == 0, transcript
    assert data["ok"] is True and data["exit_code"] == 0
    nodes = data["nodes"]
    assert [n["host"] for n in nodes] == ["node0", "node1", "node2"]
    for k, node in enumerate(nodes):
        assert node["verdict"] == {"ok": True, "problems": [], "warnings": []}, node
        assert node["error"] is None
        assert node["user"] == os.environ.get("USER", "root") or node["user"]
        assert node["python"] == sys.executable
        assert node["python_version"] == ".".join(map(str, sys.version_info[:3]))
        assert node["torch"] is True and node["torch_version"] == torch.__version__
        assert node["cuda_version"] == torch.version.cuda
        # No GPU here: no nvidia-smi, and check says so rather than failing.
        assert node["gpus"] is None and node["gpu_error"] is None
        assert node["workdir"] == str(tmp_path) and node["workdir_ok"] is True
        assert node["free_bytes"] == pytest.approx(
            os.statvfs(tmp_path).f_bavail * os.statvfs(tmp_path).f_frsize, rel=0.05)
        # The nodes share this clock: what is measured is the method's error.
        assert 0 < node["rtt"] < 5 and abs(node["offset"]) < 1.0, node
        if k == 0:
            assert node["network"] == {"ok": True, "address": None, "error": None, "heard": 2}
        else:
            net = node["network"]
            assert net["ok"] is True, net
            assert net["address"].startswith(sshd_cluster.address(0) + ":")


def test_plain_table_says_no_gpu(sshd_cluster: SshdCluster, tmp_path: Path) -> None:
    code, head = run_sshrun(["check", *cluster_args(sshd_cluster), "--python",
                             sys.executable], timeout=CHECK_TIMEOUT, cwd=tmp_path)
    assert code == 0, head.transcript()
    lines = head.stdout.splitlines()
    assert lines[0].split() == ["node", "host", "rtt", "user", "python", "torch", "gpus",
                                "disk", "free", "clock", "workdir", "network", "verdict"]
    rows = lines[1:4]
    assert [r.split()[1] for r in rows] == ["node0", "node1", "node2"]
    for row in rows:
        assert " no GPU " in row and row.endswith("  ok"), row
        assert f" {torch.__version__} " in row
    assert lines[4] == "all 3 nodes fit"


def test_node_without_torch(sshd_cluster: SshdCluster, tmp_path: Path) -> None:
    # A virtual environment of the same interpreter, without the system's
    # site-packages: a real node's Python with no torch.
    venv = tmp_path / "bare-venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True,
                   timeout=120)
    bare = venv / "bin" / "python"
    code, data, transcript = _check(["-c", str(_yaml(sshd_cluster, tmp_path, str(bare)))],
                                    tmp_path)
    assert code == 1, transcript
    node2 = data["nodes"][2]
    assert node2["torch"] is False and node2["torch_version"] is None
    assert node2["verdict"]["problems"] == [f"no torch for {bare}"]
    assert [n["verdict"]["ok"] for n in data["nodes"]] == [True, True, False]


def test_node_with_another_torch_version(sshd_cluster: SshdCluster, tmp_path: Path) -> None:
    fake = tmp_path / "fake-site" / "torch"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("")
    (fake / "version.py").write_text("__version__ = '2.12.0'\ncuda: None = None\n")
    other = _wrapper(tmp_path / "python-other",
                     f'PYTHONPATH={fake.parent} exec {sys.executable} "$@"')
    code, data, transcript = _check(["-c", str(_yaml(sshd_cluster, tmp_path, str(other)))],
                                    tmp_path)
    assert code == 1, transcript
    nodes = data["nodes"]
    assert [n["torch_version"] for n in nodes] == [torch.__version__] * 2 + ["2.12.0"]
    assert nodes[2]["verdict"]["problems"] == [
        f"torch 2.12.0 (most nodes: {torch.__version__})"]
    assert nodes[0]["verdict"]["ok"] and nodes[1]["verdict"]["ok"]


def test_missing_interpreter_and_workdir(sshd_cluster: SshdCluster, tmp_path: Path) -> None:
    code, data, transcript = _check(
        ["-c", str(_yaml(sshd_cluster, tmp_path, "/nonexistent/python3")),
         "--workdir", str(tmp_path / "nowhere")], tmp_path)
    assert code == 1, transcript
    nodes = data["nodes"]
    for node in nodes[:2]:
        assert node["verdict"]["problems"] == [
            f"working directory {tmp_path / 'nowhere'} missing"], node
    assert nodes[2]["error"].startswith("cannot run interpreter '/nonexistent/python3'")


def test_a_synced_workdir_need_not_exist_yet(sshd_cluster: SshdCluster,
                                             tmp_path: Path) -> None:
    """The config's ``sync:`` makes the working directory: check does not call it missing,
    and the run that follows creates it."""
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "hello.py").write_text("print('from the synced copy')\n")
    dest = tmp_path / "not-yet" / "work"
    config = tmp_path / "sync.yaml"
    config.write_text(
        f"defaults: {{python: {sys.executable}, workdir: {dest}}}\n"
        "hosts:\n  - node0\n  - node1\n"
        f"ssh: {{config: {sshd_cluster.ssh_config}}}\n"
        f"sync: {{dir: {tree}}}\n")
    code, data, transcript = _check(["-c", str(config)], tmp_path)
    assert code == 0, transcript
    for node in data["nodes"]:
        assert node["synced"] is True and node["workdir"] == str(dest), node
        assert node["verdict"]["problems"] == [], node
    assert not dest.exists(), "check must not make the working directory"
    table_code, head = run_sshrun(["check", "-c", str(config)], timeout=CHECK_TIMEOUT,
                                  cwd=tmp_path)
    assert table_code == 0 and f"{dest} (synced)" in head.stdout, head.transcript()
    run_code, run = run_sshrun(["-c", str(config), "--nproc-per-node", "1", "hello.py"],
                               timeout=CHECK_TIMEOUT, cwd=tmp_path)
    assert run_code == 0 and run.stdout.count("from the synced copy") == 2, run.transcript()


def test_unreachable_node_is_a_row_and_exit_255(make_sshd_cluster: Any,
                                                tmp_path: Path) -> None:
    cluster = make_sshd_cluster(2, first_octet=40)
    cluster.kill_node(1)
    code, data, transcript = _check([*cluster_args(cluster), "--python", sys.executable,
                                     "--connect-timeout", "5"], tmp_path)
    assert code == 255, transcript
    assert data["nodes"][0]["verdict"]["ok"] is True
    node1 = data["nodes"][1]
    assert node1["unreachable"] is True and node1["error"].startswith("unreachable: ")


def test_collective_reports_time_and_bandwidth(sshd_cluster: SshdCluster,
                                               tmp_path: Path) -> None:
    code, data, transcript = _check([*cluster_args(sshd_cluster), "--python", sys.executable,
                                     "--collective", "120"], tmp_path)
    assert code == 0, transcript
    for node in data["nodes"]:
        coll = node["collective"]
        # No GPU here: gloo. 4 MiB of float32 summed over 3 nodes, checked on the node.
        assert coll["ok"] is True and coll["backend"] == "gloo", coll
        assert coll["bytes"] == 4 * 1024 * 1024 and coll["error"] is None
        assert coll["seconds"] > 0 and coll["bus_bandwidth"] > 0


def test_frozen_node_is_a_row_not_a_hang(make_sshd_cluster: Any, tmp_path: Path) -> None:
    cluster = make_sshd_cluster(2, first_octet=44)
    cluster.stop_node(1)  # its sshd takes the TCP connection and never answers
    try:
        began = time.monotonic()
        code, data, transcript = _check([*cluster_args(cluster), "--python", sys.executable,
                                         "--connect-timeout", "3"], tmp_path)
        took = time.monotonic() - began
    finally:
        cluster.cont_node(1)
    assert code == 255, transcript
    assert data["nodes"][0]["verdict"]["ok"] is True
    node1 = data["nodes"][1]
    assert node1["unreachable"] is True and node1["error"].startswith("unreachable: "), node1
    # The connect timeout, the start of the head and node0's probe; nowhere near a hang.
    assert took < 60, transcript
