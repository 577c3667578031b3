"""``--log-dir DIR``: the job's record on the head, against real sshd nodes and the real head
(the writer itself: tests/test_log_writer.py)."""

from __future__ import annotations

import datetime
import json
import os
import signal
import time
from pathlib import Path

import pytest
from head import WORKERS, Head, run_sshrun
from jobprocs import agent_of_node, assert_no_leftovers, new_canary
from sshd_cluster import SshdCluster, cluster_args


def job_dir(base: Path) -> Path:
    dirs = list(base.iterdir())
    assert len(dirs) == 1, dirs
    return dirs[0]


def log_lines(path: Path) -> list[tuple[float, str, str]]:
    """A log file's lines as (Unix time, stream, text)."""
    out = []
    for line in path.read_text().splitlines():
        when, stream, text = line.split(" ", 2)
        stamp = datetime.datetime.fromisoformat(when)
        assert stamp.tzinfo is not None and stamp.utcoffset() == datetime.timedelta(0), line
        out.append((stamp.timestamp(), stream, text))
    return out


@pytest.mark.sshd
@pytest.mark.slow
def test_log_dir_through_a_restart(sshd_cluster: SshdCluster, tmp_path: Path) -> None:
    """Rank 1 fails in attempt 0: both attempts' rank files, their lines timed and tagged,
    the launcher's own output, the events, the report and the summary; no secret anywhere."""
    base = tmp_path / "logs"
    secret = "s3cret-value-for-logdir-7731"
    canary = new_canary()
    env = dict(os.environ, LOG_SECRET=secret)
    started = time.time()
    code, head = run_sshrun([*cluster_args(sshd_cluster), "--max-restarts", "1",
                             "--restart-backoff", "0.2", "--log-dir", str(base),
                             "--secret", "LOG_SECRET", "-x", f"SSHRUN_TEST_CANARY={canary}",
                             str(WORKERS / "log_lines.py")], env=env)
    ended = time.time()
    assert code == 0, head.transcript()
    root = job_dir(base)
    assert root.name == json.loads((root / "events.jsonl").read_text().splitlines()[0])["job"]
    every = [p for p in root.rglob("*") if p.is_file()]
    for path in every:
        assert secret not in path.read_text(), path
    # Attempt 0: the failing rank had its say; attempt 1: every rank.
    for attempt, ranks in ((0, [1]), (1, [0, 1, 2])):
        for rank in ranks:
            path = root / f"attempt-{attempt}" / f"node{rank}" / f"rank-{rank}.log"
            lines = log_lines(path)
            texts = [(stream, text) for _, stream, text in lines]
            assert (("out", f"out attempt {attempt} rank {rank} <redacted>") in texts
                    and ("err", f"err attempt {attempt} rank {rank} <redacted>") in texts
                    and ("out", "bar 100%") in texts), (path, texts)
            times = [t for t, _, _ in lines]
            assert all(started - 1 <= t <= ended + 1 for t in times), (times, started, ended)
    # torchrun's own lines (a stopped node's, if it had any): timed and tagged too.
    for path in root.glob("attempt-*/*/launcher.log"):
        for when, stream, _ in log_lines(path):
            assert stream in ("out", "err") and started - 1 <= when <= ended + 1, path
    events = [json.loads(line) for line in (root / "events.jsonl").read_text().splitlines()]
    assert [e["event"] for e in events].count("restarting") == 1
    assert events[-1]["event"] == "job_finished" and events[-1]["exit_code"] == 0
    report = (root / "report.txt").read_text()
    assert "sshrun: attempt 0 failed" in report and "sshrun: job finished" in report, report
    assert "\x1b" not in report
    summary = json.loads((root / "summary.json").read_text())
    assert summary["exit_code"] == 0 and summary["first_failure"] is None
    assert summary["hosts"] == ["node0", "node1", "node2"]
    assert [a["exit_code"] for a in summary["attempts"]] == [3, 0]
    first = summary["attempts"][0]["first_failure"]
    assert (first["host"], first["rank"], first["code"]) == ("node1", 1, 3)
    assert "err attempt 0 rank 1 <redacted>" in first["tail"], first
    assert_no_leftovers(canary)


@pytest.mark.sshd
@pytest.mark.slow
def test_log_dir_of_a_lost_node(sshd_cluster: SshdCluster, tmp_path: Path) -> None:
    """SIGKILL of node1's agent: summary.json says 255, report.txt names node1."""
    base = tmp_path / "logs"
    canary = new_canary()
    head = Head([*cluster_args(sshd_cluster), "--grace-period", "2", "--log-dir", str(base),
                 "-x", f"SSHRUN_TEST_CANARY={canary}", str(WORKERS / "hang.py")])
    head.wait_line("ready", timeout=90, count=3)
    os.kill(agent_of_node(canary, 1), signal.SIGKILL)
    assert head.wait(60) == 255, head.transcript()
    root = job_dir(base)
    summary = json.loads((root / "summary.json").read_text())
    assert summary["exit_code"] == 255
    assert summary["first_failure"]["host"] == "node1"
    assert summary["first_failure"]["reason"] == "lost"
    report = (root / "report.txt").read_text()
    assert "node1" in report and "lost" in report, report
    # Each rank's ready line reached its file, the lost node's too.
    for rank in range(3):
        lines = log_lines(root / "attempt-0" / f"node{rank}" / f"rank-{rank}.log")
        assert any(s == "out" and t.startswith(f"rank {rank} pid ") and t.endswith(" ready")
                   for _, s, t in lines), lines
    assert_no_leftovers(canary, timeout=30)


@pytest.mark.sshd
def test_exec_command_output_goes_to_launcher_log(sshd_cluster: SshdCluster,
                                                  tmp_path: Path) -> None:
    """exec's command is the launcher: its lines, both streams, secrets redacted."""
    base = tmp_path / "logs"
    value = "s3cret-value-for-logdir-0452"
    env = dict(os.environ, MY_API_THING=value)
    code, head = run_sshrun(
        ["exec", *cluster_args(sshd_cluster), "--include", "node0", "--secret", "MY_API_THING",
         "--log-dir", str(base), "--", "sh", "-c",
         'echo "out $MY_API_THING"; echo "err $MY_API_THING" >&2; exit 7'], env=env)
    assert code == 7, head.transcript()
    root = job_dir(base)
    lines = log_lines(root / "attempt-0" / "node0" / "launcher.log")
    assert sorted((s, t) for _, s, t in lines) == [("err", "err <redacted>"),
                                                   ("out", "out <redacted>")], lines
    assert not list(root.glob("attempt-0/node0/rank-*.log"))
    for path in root.rglob("*"):
        if path.is_file():
            assert value not in path.read_text(), path
    summary = json.loads((root / "summary.json").read_text())
    assert summary["exit_code"] == 7 and summary["first_failure"]["code"] == 7
    assert summary["first_failure"]["tail"] == ["err <redacted>"]
    assert "exited with code 7" in (root / "report.txt").read_text()
