"""The embedded cluster (--local-cluster): asyncssh nodes inside sshrun, same code path."""

from __future__ import annotations

import re
import signal
import tomllib
from pathlib import Path

import pytest
from head import REPO, WORKERS, Head, run_sshrun
from jobprocs import assert_no_leftovers, new_canary


@pytest.mark.slow
@pytest.mark.torch
def test_readme_example_trains_across_two_local_nodes(tmp_path: Path) -> None:
    canary = new_canary()
    code, head = run_sshrun(
        ["--local-cluster", "2", "--nproc-per-node", "2", "-x", f"SSHRUN_TEST_CANARY={canary}",
         str(REPO / "examples" / "train_ddp.py"), "--epochs", "3"], cwd=tmp_path, timeout=240,
    )
    assert code == 0, head.transcript()
    digests = {m.group(2): m.group(3) for line in head.out
               if (m := re.fullmatch(r"node\d r(\d) \| rank (\d) final-params (\w+)", line))}
    assert sorted(digests) == ["0", "1", "2", "3"], head.transcript()
    assert len(set(digests.values())) == 1
    losses = [float(m.group(1)) for line in head.out
              if (m := re.fullmatch(r"node1 r0 \| epoch \d loss ([0-9.]+)", line))]
    assert len(losses) == 3 and losses[2] < losses[0], head.transcript()
    assert "job finished on 2 nodes" in head.stderr
    # The README's first command shows the job's output and nothing else: no
    # per-rank torch warnings (numpy missing once printed one per rank).
    job_line = re.compile(r"node\d r\d \| (epoch \d loss [0-9.]+|rank \d final-params \w+)")
    assert [line for line in head.out if not job_line.fullmatch(line)] == [], head.transcript()
    assert re.fullmatch(r"sshrun: job finished on 2 nodes in [0-9.]+s", head.stderr), head.stderr
    assert_no_leftovers(canary)


def test_examples_extra_brings_what_the_example_imports() -> None:
    # torch warns on every rank when numpy is missing ("Failed to initialize
    # NumPy"), so the first run's extra must bring it.
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    for extra in ("examples", "test"):
        names = {re.split(r"[<>=!~ \[]", spec)[0] for spec in extras[extra]}
        assert {"torch", "numpy"} <= names, (extra, names)


def test_failure_on_local_cluster(tmp_path: Path) -> None:
    canary = new_canary()
    code, head = run_sshrun(
        ["--local-cluster", "2", "--nproc-per-node", "2", "-x", f"SSHRUN_TEST_CANARY={canary}",
         "-x", "FAIL_RANK=0", "-x", "FAIL_CODE=42", str(WORKERS / "crash.py")], cwd=tmp_path,
    )
    assert code == 42, head.transcript()
    assert "first failure: node1 (node 0), rank 0 (local rank 0): exited with code 42" \
        in head.stderr
    assert_no_leftovers(canary)


@pytest.mark.slow
def test_ctrl_c_on_local_cluster(tmp_path: Path) -> None:
    canary = new_canary()
    head = Head(["--local-cluster", "2", "-x", f"SSHRUN_TEST_CANARY={canary}",
                 str(WORKERS / "hang.py")], cwd=tmp_path)
    head.wait_line("ready", timeout=90, count=2)
    head.proc.send_signal(signal.SIGINT)
    assert head.wait(60) == 130, head.transcript()
    assert_no_leftovers(canary)


def test_exec_on_local_cluster() -> None:
    code, head = run_sshrun(["exec", "--local-cluster", "3", "--", "echo", "hi"])
    assert code == 0, head.transcript()
    assert sorted(head.out) == ["node1 | hi", "node2 | hi", "node3 | hi"]


def _older_python() -> str | None:
    """An interpreter older than 3.11 on this machine (pyenv's, or one on PATH)."""
    import glob
    import shutil

    for pattern in ("~/.pyenv/versions/3.8*/bin/python3", "~/.pyenv/versions/3.9*/bin/python3"):
        found = sorted(glob.glob(str(Path(pattern).expanduser())))
        if found:
            return found[0]
    for name in ("python3.8", "python3.9"):
        path = shutil.which(name)
        if path and "/shims/" not in path:
            return path
    return None


def test_agent_runs_on_python_3_8_nodes() -> None:
    """Nodes may run an older Python than the head: the agent is kept 3.8-compatible."""
    python = _older_python()
    assert python is not None, "no Python 3.8 or 3.9 found on this machine to run the agent on"
    code, head = run_sshrun(["exec", "--local-cluster", "1", "--python", python, "--",
                             "sh", "-c", "echo old; exit 4"])
    assert code == 4, head.transcript()
    assert head.out == ["node1 | old"]
    assert "first failure: node1 (node 0): exited with code 4" in head.stderr
