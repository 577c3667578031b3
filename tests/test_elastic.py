"""Elastic membership (--nnodes MIN:MAX) against real sshd nodes and embedded ones.

Each test uses its own cluster: nodes are killed or frozen on purpose.
"""

from __future__ import annotations

import re
import time

import pytest
from conftest import MakeSshdCluster
from head import WORKERS, Head, run_sshrun
from jobprocs import assert_no_leftovers, new_canary

pytestmark = pytest.mark.sshd


@pytest.mark.slow
def test_unreachable_host_is_left_out_and_a_spare_fills_in(
        make_sshd_cluster: MakeSshdCluster) -> None:
    """node1 is down: node0, node2, node3 start; then node2's rank fails, and the restart
    runs on node0 and node3 (node1 and node2 both cooling down)."""
    cluster = make_sshd_cluster(4, first_octet=30)
    cluster.kill_node(1)
    code, head = run_sshrun(["--hosts", "node0,node1,node2,node3", "--ssh-config",
                             str(cluster.ssh_config), "--nnodes", "2:3", "--max-restarts", "1",
                             "--restart-backoff", "0.1", str(WORKERS / "flaky.py")])
    assert code == 0, head.transcript()
    # Attempt 0: node2 and node3 are nodes 1 and 2, with ranks 1 and 2 (the others
    # may be stopped before they print: rank 1 fails at once).
    first = {line for line in head.out if " attempt 0 " in line}
    assert "node2 r1 | attempt 0 rank 1" in first
    assert first <= {"node0 r0 | attempt 0 rank 0", "node2 r1 | attempt 0 rank 1",
                     "node3 r2 | attempt 0 rank 2"}, first
    assert sorted(line for line in head.out if " attempt 1 " in line) == [
        "node0 r0 | attempt 1 rank 0", "node3 r1 | attempt 1 rank 1"]
    assert re.search(r"^sshrun: leaving out node1: cannot connect to 127\.0\.0\.31:\d+: "
                     r"Connection refused$", head.stderr, re.M), head.stderr
    assert ("sshrun: attempt 0 failed (node2 (node 1), rank 1 (local rank 0): exited with "
            "code 3); restarting every node in 0.1s (restart 1 of 1)") in head.err
    left = [line for line in head.err if line.startswith("sshrun: left out ")]
    assert len(left) == 2, head.stderr
    assert re.fullmatch(r"sshrun: left out node1 at the start of attempt 0: cannot connect "
                        r"to 127\.0\.0\.31:\d+: Connection refused", left[0]), left
    assert left[1] == ("sshrun: left out node2 after attempt 0: node2 (node 1), rank 1 "
                       "(local rank 0): exited with code 3")
    assert "sshrun: job finished on 2 nodes" in head.stderr


def test_too_few_hosts_fail_naming_them(make_sshd_cluster: MakeSshdCluster) -> None:
    cluster = make_sshd_cluster(3, first_octet=35)
    cluster.kill_node(0)
    cluster.kill_node(2)
    code, head = run_sshrun(["--hosts", "node0,node1,node2", "--ssh-config",
                             str(cluster.ssh_config), "--nnodes", "2:3",
                             str(WORKERS / "echo_args.py")])
    assert code == 255, head.transcript()
    assert re.fullmatch(
        r"sshrun: error: node0: .*refused.* \(and 1 more: node2\); "
        r"only 1 of the 2 nodes needed \(--nnodes\) could start", head.stderr), head.stderr


@pytest.mark.slow
@pytest.mark.torch
def test_frozen_first_host_is_left_out_and_the_job_goes_on(
        make_sshd_cluster: MakeSshdCluster) -> None:
    """The rendezvous host itself freezes: the next attempt rendezvous on node1."""
    cluster = make_sshd_cluster(3, first_octet=40)
    canary = new_canary()
    head = Head(["--hosts", "node0,node1,node2", "--ssh-config", str(cluster.ssh_config),
                 "--nnodes", "2:3", "--max-restarts", "1", "--restart-backoff", "0.2",
                 "--heartbeat-timeout", "3", "-x", f"SSHRUN_TEST_CANARY={canary}",
                 str(WORKERS / "elastic_ddp.py")])
    try:
        head.wait_line("ready", timeout=90, count=3)
        frozen = time.monotonic()
        cluster.stop_node(0, sessions=True)
        code = head.wait(90)
        assert code == 0, head.transcript()
    finally:
        cluster.cont_node(0, sessions=True)
    print(f"frozen first host to the end of the job: {time.monotonic() - frozen:.1f}s")
    assert sorted(line for line in head.out if "world" in line) == [
        f"node1 r0 | world 2 sum 3 host node1 endpoint {cluster.address(1)}",
        f"node2 r1 | world 2 sum 3 host node2 endpoint {cluster.address(1)}",
    ]
    assert re.search(r"^sshrun: left out node0 after attempt 0: node0 \(node 0\): "
                     r"lost: no word from the node for \d+s", head.stderr, re.M), head.stderr
    assert "sshrun: job finished on 2 nodes" in head.stderr
    # node0's agent, thawed, finds its head gone and takes its job down.
    assert_no_leftovers(canary, timeout=30)


@pytest.mark.slow
def test_cooled_down_host_comes_back() -> None:
    """Pool node1..node3, MIN 2: node2 fails, then node3 (rank 1 fails on attempts 0
    and 1); attempt 2 waits for node2's cool-down and runs on node1 and node2."""
    canary = new_canary()
    # The cool-down outlasts an attempt, so that attempt 2 has to wait for node2.
    code, head = run_sshrun(["--local-cluster", "3", "--nnodes", "2:3", "--max-restarts", "2",
                             "--restart-backoff", "0.1", "--host-cooldown", "25",
                             "-x", "FLAKY_UNTIL=2", "-x", f"SSHRUN_TEST_CANARY={canary}",
                             str(WORKERS / "flaky.py")])
    assert code == 0, head.transcript()
    assert sorted(line for line in head.out if " attempt 2 " in line) == [
        "node1 r0 | attempt 2 rank 0", "node2 r1 | attempt 2 rank 1"]
    assert [line for line in head.err if line.startswith("sshrun: left out ")] == [
        "sshrun: left out node2 after attempt 0: node2 (node 1), rank 1 (local rank 0): "
        "exited with code 3",
        "sshrun: left out node3 after attempt 1: node3 (node 1), rank 1 (local rank 0): "
        "exited with code 3",
    ]
    waited = re.search(r"^sshrun: attempt 1 failed \(.*\); restarting every node in "
                       r"([0-9.]+)s \(restart 2 of 2; waiting for cool-downs to end: 2 nodes "
                       r"are needed\)$", head.stderr, re.M)
    assert waited and float(waited.group(1)) > 1, head.stderr
    assert "sshrun: job finished on 2 nodes" in head.stderr
    assert_no_leftovers(canary)
