"""Chaos against real OpenSSH sshd nodes (issue 4): a node's torchrun SIGKILLed, a node
frozen with SIGSTOP, and two jobs on the same nodes where one is interrupted, fails or
restarts while the other must not notice.

Every job carries a canary variable (tests/jobprocs.py) so that each test proves that no
process of the job is left anywhere afterwards. Every wait is bounded; nothing sleeps a
fixed time.
"""

from __future__ import annotations

import os
import re
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from head import WORKERS, Head
from jobprocs import (
    assert_no_leftovers,
    canary_pids,
    describe,
    environ,
    new_canary,
    start_time,
    torchrun_of_node,
    wait_for,
)
from sshd_cluster import SshdCluster, cluster_args

pytestmark = [pytest.mark.sshd, pytest.mark.slow]

READY_TIMEOUT = 90.0


def _identity(pid: int) -> tuple[int, int] | None:
    """``(pid, start time)`` of a live (not zombie) process, or None."""
    started = start_time(pid)
    return None if started is None else (pid, started)


def _alive(identities: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Those of ``identities`` that are still the same live processes."""
    return [ident for ident in identities if _identity(ident[0]) == ident]


def _node_rank(pid: int) -> str | None:
    try:
        return environ(pid).get("SSHRUN_NODE_RANK")
    except OSError:
        return None


def _first_failure_lines(head: Head) -> list[str]:
    return [line for line in head.err if line.startswith("sshrun: first failure:")]


@contextmanager
def _reaped(*heads: Head) -> Iterator[None]:
    """Whatever happens in the block, no head outlives the test (SIGKILL of its group:
    its agents then see EOF and tear their nodes down)."""
    try:
        yield
    finally:
        for head in heads:
            if head.proc.poll() is None:
                os.killpg(head.proc.pid, signal.SIGKILL)
                head.proc.wait(10)


# -- 1. SIGKILL of one node's torchrun ---------------------------------------------------


def test_sigkill_of_torchrun_on_one_node_stops_the_job(sshd_cluster: SshdCluster) -> None:
    """torchrun on node 1 SIGKILLed: its ranks follow it (parent-death signal), the agent
    reports it, every node is stopped and the report blames node 1's torchrun (not a rank
    that only died because its torchrun did) with SIGKILL's status."""
    canary = new_canary()
    head = Head([*cluster_args(sshd_cluster), "--nproc-per-node", "2", "--grace-period", "3",
                 "-x", f"SSHRUN_TEST_CANARY={canary}", str(WORKERS / "hang.py")])
    with _reaped(head):
        head.wait_line("ready", timeout=READY_TIMEOUT, count=6)
        torchrun = torchrun_of_node(canary, 1)
        ranks = [ident for p in canary_pids(canary)
                 if p != torchrun and _node_rank(p) == "1" and (ident := _identity(p))]
        others = [p for p in canary_pids(canary) if _node_rank(p) in ("0", "2")]
        # Each rank is a shim process and the user's script forked from it.
        assert len(ranks) == 4, describe([p for p, _ in ranks])
        assert len(others) == 10, describe(others)
        started = time.monotonic()
        os.kill(torchrun, signal.SIGKILL)
        # The kernel kills them with their parent. Nothing else would within this bound:
        # the agent waits 2 s for its ranks' streams to end before it sweeps.
        wait_for(lambda: not _alive(ranks), 1.5, "node 1's ranks to die with its torchrun")
        followed = time.monotonic() - started
        code = head.wait(60)
        elapsed = time.monotonic() - started
    print(f"torchrun SIGKILL: its ranks gone after {followed:.2f}s, "
          f"sshrun exit {code} after {elapsed:.2f}s")
    first = _first_failure_lines(head)
    assert len(first) == 1, head.transcript()
    line = first[0]
    why = (f"expected node 1's torchrun blamed, killed by SIGKILL (exit status 137); got exit "
           f"{code} and {line!r} (its ranks only died because torchrun did)\n"
           + head.transcript())
    assert line.startswith("sshrun: first failure: node1 (node 1): "), why
    assert ", rank " not in line, why
    assert "killed by SIGKILL (exit status 137)" in line, why
    assert "sshrun: exit status 137" in head.err, head.transcript()
    assert code == 137, head.transcript()
    assert "survivor was never stopped" not in head.stdout
    assert_no_leftovers(canary)


# -- 2. a frozen node (SIGSTOP of its sshd and everything under it) ------------------------

LOST_BOUND_S = 40.0


def test_frozen_node_is_declared_lost_and_the_job_stops(sshd_cluster: SshdCluster) -> None:
    """SIGSTOP of node 1's sshd and its sessions (agent, torchrun, ranks): the head hears
    nothing from it for --heartbeat-timeout seconds, declares it lost, stops the others and
    exits 255. Once the node runs again, its agent finds the head gone and tears down."""
    canary = new_canary()
    head = Head([*cluster_args(sshd_cluster), "--nproc-per-node", "2", "--grace-period", "3",
                 "--heartbeat-timeout", "4", "-x", f"SSHRUN_TEST_CANARY={canary}",
                 str(WORKERS / "hang.py")])
    with _reaped(head):
        head.wait_line("ready", timeout=READY_TIMEOUT, count=6)
        frozen = [p for p in canary_pids(canary) if _node_rank(p) == "1"]
        assert len(frozen) == 5, describe(frozen)  # torchrun, 2 x (shim + script)
        sshd_cluster.stop_node(1, sessions=True)
        try:
            started = time.monotonic()
            code = head.wait(LOST_BOUND_S + 20)
            detected = time.monotonic() - started
            print(f"frozen node declared lost, sshrun exit {code} after {detected:.2f}s "
                  "(--heartbeat-timeout 4)")
            # The other nodes were stopped; node 1's processes are still there, frozen.
            survivors = canary_pids(canary)
            assert {_node_rank(p) for p in survivors} <= {"1"}, describe(survivors)
            assert set(survivors) == set(frozen), describe(survivors)
        finally:
            sshd_cluster.cont_node(1, sessions=True)
        resumed = time.monotonic()
        assert_no_leftovers(canary, timeout=30)
        print(f"node 1 torn down {time.monotonic() - resumed:.2f}s after SIGCONT")
    assert code == 255, head.transcript()
    assert detected < LOST_BOUND_S, f"lost node detected after {detected:.1f}s"
    first = _first_failure_lines(head)
    assert len(first) == 1, head.transcript()
    # The node (no rank: none failed), the silence it measured and the option that bounds
    # it, e.g. "node1 (node 1): lost: no word from the node for 4s (--heartbeat-timeout 4):
    # frozen, crashed or cut off".
    assert re.match(r"sshrun: first failure: node1 \(node 1\): .*\b\d+s "
                    r"\(--heartbeat-timeout 4\)", first[0]), head.transcript()
    assert "sshrun: exit status 255" in head.err, head.transcript()
    assert "survivor was never stopped" not in head.stdout


# -- 3. isolation: job A's trouble never reaches job B on the same nodes -------------------


def _wait_exit_while_alive(head: Head, others: list[tuple[int, int]], timeout: float) -> int:
    """Wait (bounded) for ``head`` to exit, checking all along that every process in
    ``others`` (pid, start time) stays alive; return its exit status."""
    deadline = time.monotonic() + timeout
    while head.proc.poll() is None:
        gone = sorted(set(others) - set(_alive(others)))
        assert not gone, f"job B lost {gone} during job A's teardown\n" + head.transcript()
        assert time.monotonic() < deadline, (
            f"job A did not exit within {timeout}s\n" + head.transcript())
        time.sleep(0.05)
    return head.wait(10)


@pytest.mark.parametrize("trouble", ["interrupt", "crash", "restart"])
def test_job_a_trouble_leaves_job_b_untouched(sshd_cluster: SshdCluster, tmp_path: Path,
                                              trouble: str) -> None:
    """Two jobs on the same three nodes. Job A is interrupted (Ctrl-C), has a failing rank,
    or fails, restarts every node and fails again; job B's processes stay alive throughout
    A's teardowns, and B then finishes 0 on its own."""
    canary_a, canary_b = new_canary(), new_canary()
    flag = tmp_path / "release-b"
    job_b = Head([*cluster_args(sshd_cluster), "--grace-period", "3",
                  "-x", f"SSHRUN_TEST_CANARY={canary_b}", "-x", "WAIT_SECONDS=90",
                  str(WORKERS / "wait_file.py"), str(flag)])
    job_a: Head | None = None
    try:
        with _reaped(job_b):
            job_b.wait_line("ready", timeout=READY_TIMEOUT, count=3)
            b_procs = [ident for p in canary_pids(canary_b) if (ident := _identity(p))]
            # torchrun, a rank shim and the script forked from it, on each node.
            assert len(b_procs) == 9, describe([p for p, _ in b_procs])

            a_args = [*cluster_args(sshd_cluster), "--grace-period", "3",
                      "-x", f"SSHRUN_TEST_CANARY={canary_a}"]
            if trouble == "interrupt":
                job_a = Head([*a_args, str(WORKERS / "hang.py")])
                expected = 130
            elif trouble == "crash":
                job_a = Head([*a_args, "-x", "FAIL_RANK=1", "-x", "FAIL_CODE=7",
                              str(WORKERS / "crash.py")])
                expected = 7
            else:
                job_a = Head([*a_args, "--max-restarts", "1", "--restart-backoff", "0.2",
                              "-x", "FAIL_RANK=1", "-x", "FAIL_CODE=3",
                              str(WORKERS / "crash.py")])
                expected = 3
            with _reaped(job_a):
                if trouble == "interrupt":
                    job_a.wait_line("ready", timeout=READY_TIMEOUT, count=3)
                    assert _alive(b_procs) == b_procs
                    job_a.proc.send_signal(signal.SIGINT)
                code_a = _wait_exit_while_alive(job_a, b_procs, timeout=60)
            assert code_a == expected, job_a.transcript()
            assert_no_leftovers(canary_a)
            # A is gone, with all of its processes; all of B's are still the same ones.
            assert job_b.proc.poll() is None, job_b.transcript()
            assert _alive(b_procs) == b_procs, describe(canary_pids(canary_b))
            assert set(canary_pids(canary_b)) == {p for p, _ in b_procs}

            if trouble == "interrupt":
                assert any(re.fullmatch(r"sshrun: interrupted after [\d.]+s; every node stopped",
                                        line) for line in job_a.err), job_a.transcript()
            else:
                assert ("sshrun: first failure: node1 (node 1), rank 1 (local rank 0): "
                        f"exited with code {expected}") in job_a.err, job_a.transcript()
            if trouble == "restart":
                assert any(re.match(r"sshrun: attempt 0 failed \(node1 \(node 1\), rank 1 ",
                                    line) for line in job_a.err), job_a.transcript()
                # Both attempts ran and failed; the second one's failure ended the job.
                assert job_a.err.count("node1 r1 | rank 1 about to fail") == 2, (
                    job_a.transcript())

            flag.touch()
            code_b = job_b.wait(30)
    finally:
        flag.touch()
    assert code_b == 0, job_b.transcript()
    assert sorted(line for line in job_b.out if "saw the flag" in line) == [
        f"node{r} r{r} | rank {r} saw the flag" for r in range(3)], job_b.transcript()
    assert not any("first failure" in line or "stopping" in line for line in job_b.err), (
        job_b.transcript())
    assert any(line.startswith("sshrun: job finished on 3 nodes") for line in job_b.err)
    assert_no_leftovers(canary_b)
