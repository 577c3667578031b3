"""sshrun check's pure parts: clock offset from injected samples, verdicts, exit codes,
the plain table's exact text, and the node probe on its own (Python 3.8 included)."""

from __future__ import annotations

import glob
import io
import json
import os
import pwd
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from sshrun import agent, check_table
from sshrun.check_result import (
    ClockSample,
    Gpu,
    GpuProcess,
    Network,
    NodeCheck,
    clock_offset,
    exit_code,
    majority,
    verdicts,
    with_probe,
)


def test_offset_is_taken_from_the_sample_with_the_shortest_round_trip() -> None:
    samples = [
        ClockSample(sent=100.0, node=102.9, received=100.4),  # rtt 0.4: offset 2.7
        ClockSample(sent=101.0, node=103.55, received=101.1),  # rtt 0.1: offset 2.5
        ClockSample(sent=102.0, node=104.0, received=102.3),  # rtt 0.3: offset 1.85
    ]
    clock = clock_offset(samples)
    assert clock is not None
    assert clock.rtt == pytest.approx(0.1)
    assert clock.offset == pytest.approx(103.55 - 101.05)


def test_offset_of_a_node_behind_the_head_is_negative() -> None:
    clock = clock_offset([ClockSample(sent=50.0, node=48.0, received=50.2)])
    assert clock is not None and clock.offset == pytest.approx(-2.1)


def test_no_usable_sample_gives_no_offset() -> None:
    assert clock_offset([]) is None
    # A head clock that stepped back between send and receive: not a sample.
    assert clock_offset([ClockSample(sent=10.0, node=10.0, received=9.0)]) is None


def _row(node: int, **fields: object) -> NodeCheck:
    base = NodeCheck(node=node, host=f"n{node}", slots="2", workdir="/w", address="10.0.0.1",
                     rtt=0.0012, offset=0.0003, user="u", python="/usr/bin/python3",
                     python_version="3.11.7", torch=True, torch_version="2.13.0",
                     cuda_version=None, gpus=None, free_bytes=5 * 1024**3, workdir_ok=True,
                     network=Network(ok=True, address=None if node == 0 else "10.0.0.1:29500",
                                     heard=2 if node == 0 else None))
    return replace(base, **fields)  # type: ignore[arg-type]


def test_majority_ties_go_to_the_first_node() -> None:
    assert majority(["a", "b", "b", None]) == "b"
    assert majority(["a", "b"]) == "a"
    assert majority([None, None]) is None


def test_verdicts_name_each_problem() -> None:
    gpu = Gpu(index=0, model="H200", memory_mib=143771, used_mib=0)
    rows = [
        _row(0),
        _row(1, torch_version="2.12.0", python_version="3.10.1"),
        _row(2, torch=False, torch_version=None, workdir_ok=False),
        _row(3, offset=-1.5, gpus=(gpu,)),
        _row(4, network=Network(ok=False, address="10.0.0.1:29500", error="timed out")),
        _row(5, error="unreachable: connection refused", unreachable=True, torch=None),
        _row(6, offset=0.9),
    ]
    found = verdicts(rows)
    assert [v.problems for v in found] == [
        (),
        ("torch 2.12.0 (most nodes: 2.13.0)", "Python 3.10.1 (most nodes: 3.11.7)"),
        ("working directory /w missing", "no torch for /usr/bin/python3"),
        ("1 GPUs for 2 slots", "clock -1.5s off the head's"),
        ("cannot reach node 0 at 10.0.0.1:29500: timed out",),
        ("unreachable: connection refused",),
        (),
    ]
    assert exit_code(rows, found) == 255
    assert exit_code(rows[:5], found[:5]) == 1
    assert exit_code([rows[0], rows[6]], [found[0], found[6]]) == 0


def test_processes_on_gpus_are_a_warning_not_a_failure() -> None:
    busy = Gpu(index=0, model="H200", memory_mib=143771, used_mib=2000, processes=(
        GpuProcess(pid=4242, owner="alice", command="python old_job.py", used_mib=2000),))
    rows = [_row(0, gpus=(busy, replace(busy, index=1, processes=())))]
    (verdict,) = verdicts(rows)
    assert verdict.ok and verdict.warnings == ("1 process already on its GPUs",)
    text = check_table.plain(rows, [verdict])
    assert "n0 gpu0: pid 4242 alice 2000 MiB python old_job.py" in text.splitlines()
    assert " 2x H200 140.4 GiB, 1 in use " in text


def test_plain_table_exact_text() -> None:
    rows = [_row(0), _row(1, torch_version="2.12.0")]
    text = check_table.plain(rows, verdicts(rows))
    assert text == (
        "node  host  rtt     user  python                   torch   gpus    disk free  clock"
        "    workdir  network            verdict\n"
        "0     n0    1.2 ms  u     3.11.7 /usr/bin/python3  2.13.0  no GPU  5.0 GiB    +0.3 ms"
        "  /w       listened, 2 came   ok\n"
        "1     n1    1.2 ms  u     3.11.7 /usr/bin/python3  2.12.0  no GPU  5.0 GiB    +0.3 ms"
        "  /w       ok 10.0.0.1:29500  UNFIT: torch 2.12.0 (most nodes: 2.13.0)\n"
        "1 of 2 nodes unfit: n1\n")


def test_json_has_every_field_and_the_verdict() -> None:
    rows = [_row(0)]
    data = json.loads(check_table.as_json(rows, verdicts(rows), 0))
    assert data["ok"] is True and data["exit_code"] == 0
    assert data["nodes"][0]["verdict"] == {"ok": True, "problems": [], "warnings": []}
    assert data["nodes"][0]["torch_version"] == "2.13.0"


def test_probe_json_is_checked_and_sanitized() -> None:
    row = with_probe(_row(0), {"user": "u\x1b]0;evil\x07", "gpus": [{"model": 3}],
                               "free_bytes": "many", "network": "nope"})
    assert row.user is not None and "\x1b]" not in row.user
    assert row.gpus == (Gpu(index=None, model="?", memory_mib=None, used_mib=None),)
    assert row.free_bytes is None and row.network is None


def _python_3_8() -> str:
    found = sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.8*/bin/python3")))
    assert found, "no Python 3.8 on this machine to run the probe with"
    return found[0]


@pytest.mark.parametrize("python", ["3.8", "this"])
def test_probe_runs_alone_and_says_there_is_no_gpu(python: str, tmp_path: Path) -> None:
    exe = _python_3_8() if python == "3.8" else sys.executable
    args = {"node": 0, "nodes": 1, "addr": "", "port": 0, "timeout": 1, "workdir": str(tmp_path),
            "python": exe, "nccl": False, "collective": 0}
    out = subprocess.run([exe, "-c", agent.source("check_probe"), json.dumps(args)],
                         capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["gpus"] is None and data["gpu_error"] is None  # no nvidia-smi here
    assert data["disk_path"] == str(tmp_path) and data["free_bytes"] > 0
    assert "network" not in data


def test_probe_reads_nvidia_smi_csv(tmp_path: Path) -> None:
    """No GPU here: a stand-in ``nvidia-smi`` on PATH prints what the real one prints for
    these queries (two GPUs, one process: this test's own, so /proc has its owner and
    command). The real one is exercised on a GPU machine."""
    me = os.getpid()
    smi = tmp_path / "nvidia-smi"
    smi.write_text(
        "#!/bin/sh\n"
        'case "$1" in\n'
        "  --query-gpu=*) printf '0, NVIDIA H200, 143771, 2000, GPU-aaa\\n"
        "1, NVIDIA H200, 143771, 0, GPU-bbb\\n' ;;\n"
        f"  --query-compute-apps=*) printf 'GPU-aaa, {me}, 2000\\n' ;;\n"
        "  *) exit 9 ;;\n"
        "esac\n")
    smi.chmod(0o755)
    args = {"node": 0, "nodes": 1, "addr": "", "port": 0, "timeout": 1, "workdir": None,
            "python": sys.executable, "nccl": False, "collective": 0}
    env = dict(os.environ, PATH=f"{tmp_path}:{os.environ['PATH']}")
    out = subprocess.run([sys.executable, "-c", agent.source("check_probe"), json.dumps(args)],
                         capture_output=True, text=True, timeout=60, check=False, env=env)
    assert out.returncode == 0, out.stderr
    row = with_probe(_row(0), json.loads(out.stdout))
    assert row.gpu_error is None and row.gpus is not None
    first, second = row.gpus
    assert (first.index, first.model, first.memory_mib, first.used_mib) == (
        0, "NVIDIA H200", 143771, 2000)
    assert second.index == 1 and second.processes == ()
    (proc,) = first.processes
    assert proc.pid == me and proc.used_mib == 2000
    assert proc.owner == pwd.getpwuid(os.getuid()).pw_name
    assert proc.command is not None and "pytest" in proc.command


def test_rich_table_shows_the_same_words() -> None:
    rows = [_row(0), _row(1, torch_version="2.12.0")]
    found = verdicts(rows)
    out = io.StringIO()
    check_table.rich_table(rows, found, out, colour=False, width=250)
    lines = out.getvalue().splitlines()
    header = next(line for line in lines if "verdict" in line)
    assert [w for w in header.replace("┃", " ").split()] == [
        "node", "host", "rtt", "user", "python", "torch", "gpus", "disk", "free", "clock",
        "workdir", "network", "verdict"]
    body = [line for line in lines if "│" in line]
    assert len(body) == 2
    assert "listened, 2 came" in body[0] and body[0].split("│")[-2].strip() == "ok"
    assert body[1].split("│")[-2].strip() == "UNFIT: torch 2.12.0 (most nodes: 2.13.0)"
    assert lines[-1] == "1 of 2 nodes unfit: n1"
    assert "\x1b[" not in out.getvalue()  # --color never
