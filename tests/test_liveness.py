"""Liveness: heartbeats both ways, on embedded nodes.

A quiet job must never be mistaken for a lost node; the loss scenarios
themselves (a frozen node, a black-holed one, a frozen head) are in
test_chaos.py, test_blackhole.py and test_launch_sshd.py.
"""

from __future__ import annotations

import sys

import pytest
from head import run_sshrun
from jobprocs import assert_no_leftovers, new_canary

pytestmark = pytest.mark.slow  # four heartbeat timeouts of silence


def test_a_silent_job_outlives_many_heartbeat_timeouts() -> None:
    """Four timeouts of silence from every rank: the agents' heartbeats carry the node."""
    canary = new_canary()
    code, head = run_sshrun(["exec", "--local-cluster", "2", "--heartbeat-timeout", "1",
                             "-x", f"SSHRUN_TEST_CANARY={canary}", "--",
                             sys.executable, "-c", "import time; time.sleep(4); print('done')"])
    assert code == 0, head.transcript()
    assert sorted(head.out) == ["node1 | done", "node2 | done"]
    assert "lost" not in head.stderr
    assert_no_leftovers(canary)
