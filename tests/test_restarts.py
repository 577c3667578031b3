"""Cluster-wide restarts (--max-restarts): every node stops, every node starts again."""

from __future__ import annotations

import re
import signal
from pathlib import Path

import pytest
from conftest import MakeSshdCluster
from head import WORKERS, Head, run_sshrun
from jobprocs import assert_no_leftovers, new_canary

from sshrun.plan import RestartPolicy


def test_backoff_doubles_up_to_its_cap() -> None:
    policy = RestartPolicy(max_restarts=10, backoff=0.5, backoff_max=3)
    assert [policy.delay(a) for a in range(5)] == [0.5, 1.0, 2.0, 3.0, 3.0]


@pytest.mark.parametrize(("attempt", "code", "reason", "allowed"), [
    (0, 3, "exit", True),
    (2, 3, "exit", False),  # restarts used up
    (0, 7, "exit", False),  # listed in no_restart_on
    (0, 2, "error", False),  # a node's configuration: a restart cannot fix it
])
def test_restart_policy(attempt: int, code: int, reason: str, allowed: bool) -> None:
    policy = RestartPolicy(max_restarts=2, no_restart_on=frozenset({7}))
    assert policy.allows(attempt, code, reason) is allowed


@pytest.mark.slow
def test_flaky_job_succeeds_on_its_second_attempt() -> None:
    canary = new_canary()
    code, head = run_sshrun(["--local-cluster", "2", "--max-restarts", "1",
                             "--restart-backoff", "0.2", "-x", f"SSHRUN_TEST_CANARY={canary}",
                             str(WORKERS / "flaky.py")])
    assert code == 0, head.transcript()
    # Nodes interleave within an attempt; attempts never do. Rank 0 may be
    # stopped before it prints in attempt 0: rank 1 fails at once.
    attempts = [int(line.split()[4]) for line in head.out]
    assert attempts == sorted(attempts), head.out
    assert "node2 r1 | attempt 0 rank 1" in head.out
    # node1's torchrun, stopped, does not repeat the stop ("Received 15 death signal").
    assert "death signal" not in head.stderr
    assert sorted(line for line in head.out if " attempt 1 " in line) == [
        "node1 r0 | attempt 1 rank 0", "node2 r1 | attempt 1 rank 1"]
    assert ("sshrun: attempt 0 failed (node2 (node 1), rank 1 (local rank 0): exited with "
            "code 3); restarting every node in 0.2s (restart 1 of 1)") in head.err
    assert "sshrun: job finished on 2 nodes" in head.stderr
    assert_no_leftovers(canary)


@pytest.mark.slow
def test_restarts_used_up_report_every_attempt(tmp_path: Path) -> None:
    # The failing rank waits for the other's line: both are counted below.
    code, head = run_sshrun(["--local-cluster", "2", "--max-restarts", "1",
                             "--restart-backoff", "0.1", "-x", "FLAKY_UNTIL=9",
                             "-x", f"FLAKY_SYNC_DIR={tmp_path}",
                             str(WORKERS / "flaky.py")])
    assert code == 3, head.transcript()
    assert ("sshrun: attempt 0 failed: node2 (node 1), rank 1 (local rank 0): "
            "exited with code 3") in head.err
    assert ("sshrun: first failure: node2 (node 1), rank 1 (local rank 0): "
            "exited with code 3") in head.err
    assert sum("attempt 1 rank" in line for line in head.out) == 2


def test_no_restart_on_fails_at_once() -> None:
    code, head = run_sshrun(["--local-cluster", "2", "--max-restarts", "3",
                             "--no-restart-on", "3", str(WORKERS / "flaky.py")])
    assert code == 3, head.transcript()
    assert not any("attempt 1" in line for line in head.out)
    assert "restarting" not in head.stderr


def test_ctrl_c_during_the_backoff_stops_the_job() -> None:
    head = Head(["--local-cluster", "2", "--max-restarts", "1", "--restart-backoff", "60",
                 str(WORKERS / "flaky.py")])
    head.wait_line("restarting every node in 60.0s", timeout=90)
    head.proc.send_signal(signal.SIGINT)
    assert head.wait(30) == 130, head.transcript()
    assert "interrupted while waiting to restart" in head.stderr


@pytest.mark.slow
@pytest.mark.sshd
def test_unreachable_node_is_retried_while_restarts_remain(
        make_sshd_cluster: MakeSshdCluster) -> None:
    """A rebooting node: refused at attempt 0, back during the back-off, used at attempt 1."""
    cluster = make_sshd_cluster(2, first_octet=50)
    cluster.kill_node(1)
    head = Head(["--hosts", "node0,node1", "--ssh-config", str(cluster.ssh_config),
                 "--max-restarts", "1", "--restart-backoff", "8", "-x", "ALL=1",
                 str(WORKERS / "echo_args.py"), "back"])
    head.wait_line("restarting every node in 8.0s", timeout=60)
    cluster.start_node(1)
    assert head.wait(90) == 0, head.transcript()
    assert sorted(line for line in head.out if "ARGV" in line) == [
        'node0 r0 | ARGV ["back"]', 'node1 r1 | ARGV ["back"]']
    assert re.search(r"^sshrun: attempt 0 failed: node1 \(node 1\): unreachable: cannot "
                     r"connect to .*: Connection refused$", head.stderr, re.M), head.stderr


@pytest.mark.sshd
def test_unreachable_node_without_restarts_fails_at_once(
        make_sshd_cluster: MakeSshdCluster) -> None:
    cluster = make_sshd_cluster(2, first_octet=52)
    cluster.kill_node(1)
    code, head = run_sshrun(["--hosts", "node0,node1", "--ssh-config", str(cluster.ssh_config),
                             str(WORKERS / "echo_args.py")])
    assert code == 255, head.transcript()
    assert re.fullmatch(r"sshrun: error: node1: cannot connect to 127\.0\.0\.53:\d+: "
                        r"Connection refused", head.stderr), head.stderr
