"""``--events PATH|-``: every event as one JSON line, against real sshd nodes and the real head."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Any

import pytest
from head import WORKERS, Head, run_sshrun
from jobprocs import agent_of_node, assert_no_leftovers, new_canary
from sshd_cluster import SshdCluster, cluster_args

NODE_EVENTS = ("node_connected", "agent_up", "ranks_started", "rank_started", "rank_exited",
               "node_swept")


def read_events(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def names(events: list[dict[str, Any]], attempt: int | None = None) -> list[str]:
    return [e["event"] for e in events if attempt is None or e["attempt"] == attempt]


def check_common(events: list[dict[str, Any]]) -> None:
    """What every line has: the version, one job, a time that never goes back."""
    assert {e["v"] for e in events} == {1}
    assert len({e["job"] for e in events}) == 1
    times = [e["time"] for e in events]
    assert times == sorted(times)
    assert events[0]["event"] == "job_started" and events[-1]["event"] == "job_finished"


@pytest.mark.sshd
@pytest.mark.slow
def test_events_through_a_restart(sshd_cluster: SshdCluster, tmp_path: Path) -> None:
    """Rank 1 fails in attempt 0 and succeeds in attempt 1: the file tells both attempts."""
    path = tmp_path / "events.jsonl"
    canary = new_canary()
    code, head = run_sshrun([*cluster_args(sshd_cluster), "--max-restarts", "1",
                             "--restart-backoff", "0.2", "--events", str(path),
                             "-x", f"SSHRUN_TEST_CANARY={canary}", str(WORKERS / "flaky.py")])
    assert code == 0, head.transcript()
    events = read_events(path)
    check_common(events)
    assert events[0]["hosts"] == ["node0", "node1", "node2"]
    assert events[0]["max_restarts"] == 1
    first = names(events, 0)
    for name in ("node_connected", "agent_up", "ranks_started", "node_swept"):
        assert first.count(name) == 3, (name, first)
    # Each node's events in their order; the attempt's after all of them. The
    # others' ranks may be stopped before they exit on their own (or start).
    for host in ("node0", "node1", "node2"):
        mine = [e["event"] for e in events if e["attempt"] == 0 and e.get("host") == host]
        expected = list(NODE_EVENTS) if host == "node1" else [
            n for n in NODE_EVENTS if n not in ("rank_started", "rank_exited") or n in mine]
        assert mine == expected, (host, mine)
    assert first.index("attempt_failed") > max(i for i, n in enumerate(first) if n in NODE_EVENTS)
    assert first[-2:] == ["attempt_failed", "restarting"]
    failed = next(e for e in events if e["event"] == "attempt_failed")
    assert failed["exit_code"] == 3
    assert failed["failure"]["host"] == "node1" and failed["failure"]["rank"] == 1
    assert failed["failure"]["reason"] == "exit" and failed["failure"]["code"] == 3
    exited = {e["rank"]: e for e in events if e["event"] == "rank_exited" and e["attempt"] == 0}
    assert exited[1]["code"] == 3 and exited[1]["host"] == "node1" and exited[1]["signal"] is None
    stop = next(e for e in events if e["event"] == "stopping")
    assert stop["by"] == "head" and stop["reason"] == "node1 rank 1 failed"
    restart = next(e for e in events if e["event"] == "restarting")
    assert (restart["attempt"], restart["delay"], restart["restart"]) == (0, 0.2, 1)
    up = next(e for e in events if e["event"] == "agent_up")
    assert up["torch"] is True and up["python_version"].count(".") == 2 and up["hostname"]
    connected = {e["host"]: e["address"] for e in events
                 if e["event"] == "node_connected" and e["attempt"] == 0}
    assert connected == {"node0": "127.0.0.2", "node1": "127.0.0.3", "node2": "127.0.0.4"}
    second = names(events, 1)
    for name in NODE_EVENTS:
        assert second.count(name) == 3, (name, second)
    assert "attempt_failed" not in second and "stopping" not in second
    assert second[-1] == "job_finished"
    assert events[-1]["exit_code"] == 0 and events[-1]["attempt"] == 1
    assert all(e["code"] == 0 for e in events if e["event"] == "rank_exited" and e["attempt"] == 1)
    assert_no_leftovers(canary)


@pytest.mark.sshd
@pytest.mark.slow
def test_events_of_a_lost_node(sshd_cluster: SshdCluster, tmp_path: Path) -> None:
    """SIGKILL of node1's agent: node_lost for it, and the job finishes with 255."""
    path = tmp_path / "events.jsonl"
    canary = new_canary()
    head = Head([*cluster_args(sshd_cluster), "--grace-period", "2", "--events", str(path),
                 "-x", f"SSHRUN_TEST_CANARY={canary}", str(WORKERS / "hang.py")])
    head.wait_line("ready", timeout=90, count=3)
    os.kill(agent_of_node(canary, 1), signal.SIGKILL)
    assert head.wait(60) == 255, head.transcript()
    events = read_events(path)
    check_common(events)
    lost = [e for e in events if e["event"] == "node_lost"]
    assert [(e["host"], e["node"]) for e in lost] == [("node1", 1)], lost
    assert lost[0]["why"].startswith("connection to the agent lost")
    order = names(events)
    assert order.index("node_lost") < order.index("stopping") < order.index("attempt_failed")
    assert events[-1]["event"] == "job_finished" and events[-1]["exit_code"] == 255
    failed = next(e for e in events if e["event"] == "attempt_failed")
    assert failed["failure"]["reason"] == "lost" and failed["failure"]["host"] == "node1"
    # The survivors were stopped and swept; the lost node never said how it ended.
    swept = {e["host"] for e in events if e["event"] == "node_swept"}
    assert swept == {"node0", "node2"}
    assert_no_leftovers(canary, timeout=30)


@pytest.mark.sshd
def test_secret_never_reaches_the_events_file(sshd_cluster: SshdCluster,
                                              tmp_path: Path) -> None:
    """A secret the job prints (and fails with) is redacted in every event."""
    path = tmp_path / "events.jsonl"
    value = "s3cret-value-for-events-0451"
    env = dict(os.environ, MY_API_THING=value)
    code, head = run_sshrun(
        ["exec", *cluster_args(sshd_cluster), "--include", "node0", "--secret", "MY_API_THING",
         "--events", str(path), "--", "sh", "-c",
         'echo "out $MY_API_THING"; echo "err $MY_API_THING" >&2; exit 7'], env=env)
    assert code == 7, head.transcript()
    text = path.read_text()
    assert value not in text
    assert value not in head.stdout + head.stderr
    failed = next(e for e in read_events(path) if e["event"] == "attempt_failed")
    # The failure's last stderr lines went through the redactor, not around it.
    assert failed["failure"]["tail"] == ["err <redacted>"], failed


@pytest.mark.sshd
def test_events_to_stdout_and_rank_output_to_stderr(sshd_cluster: SshdCluster,
                                                    tmp_path: Path) -> None:
    code, head = run_sshrun(["exec", *cluster_args(sshd_cluster), "--include", "node0",
                             "--events", "-", "--", "echo", "hello-events"])
    assert code == 0, head.transcript()
    events = [json.loads(line) for line in head.out]  # every stdout line is an event
    check_common(events)
    assert "ranks_started" in names(events)
    assert any(line.endswith("| hello-events") for line in head.err), head.err
    assert "sshrun: job finished" in head.stderr


@pytest.mark.sshd
@pytest.mark.slow
def test_resolving_notices_are_events(sshd_cluster: SshdCluster, tmp_path: Path) -> None:
    """The Slurm allocation taken as the hosts, and the insecure policy's warning:
    notice events in the file, and the same lines on the console, before any node."""
    path = tmp_path / "events.jsonl"
    env = {**os.environ, "SLURM_JOB_NODELIST": "node[0-1]", "SLURM_NTASKS_PER_NODE": "1"}
    code, head = run_sshrun(["exec", "--ssh-config", str(sshd_cluster.ssh_config),
                             "--host-key-policy", "insecure", "--events", str(path),
                             "--", "echo", "hi"], env=env)
    assert code == 0, head.transcript()
    events = read_events(path)
    check_common(events)
    assert names(events)[:3] == ["job_started", "notice", "notice"]
    assert [(e["kind"], e["text"]) for e in events[1:3]] == [
        ("slurm_hosts", "no hosts given; using the Slurm allocation node[0-1] (2 hosts)"),
        ("insecure_host_keys", "warning: --host-key-policy insecure: host keys are not "
         "checked, so anyone on the network path can pose as a node and see the job's secrets")]
    assert events[0]["hosts"] == ["node0", "node1"]
    assert head.err[:2] == ["sshrun: " + e["text"] for e in events[1:3]]
    assert sorted(head.out) == ["node0 | hi", "node1 | hi"]
