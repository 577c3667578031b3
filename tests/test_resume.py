"""sshrun's restarts look like torchrun's own to the script (docs/reliability.md, Restarts).

torchrun under sshrun never restarts (``--max-restarts 0``) and each attempt has
its own rendezvous id, so torchrun alone would tell every rank restart 0 of 0
and a new run id per attempt. The rank shim sets ``TORCHELASTIC_RESTART_COUNT``
(the attempt), ``TORCHELASTIC_MAX_RESTARTS`` (sshrun's ``--max-restarts``) and
``TORCHELASTIC_RUN_ID`` (``--rdzv-id``, else the job id) instead, so that a
script that resumes from a checkpoint keyed by them works across sshrun's
restarts. Against real sshd nodes.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from head import WORKERS, run_sshrun
from jobprocs import assert_no_leftovers, new_canary
from sshd_cluster import SshdCluster

pytestmark = pytest.mark.sshd

LINE = re.compile(r"node(\d) r(\d) \| rank (\d) restart (\d+) of (\d+) run (\S+) "
                  r"attempt (\d+) job (\S+)")


@pytest.mark.parametrize("rdzv_id", [
    "exp7", pytest.param(None, marks=pytest.mark.slow, id="job-id")])
def test_a_script_resumes_from_its_checkpoint_across_a_restart(
        sshd_cluster: SshdCluster, tmp_path: Path, rdzv_id: str | None) -> None:
    canary = new_canary()
    code, head = run_sshrun([
        "--hosts", "node0,node1", "--ssh-config", str(sshd_cluster.ssh_config),
        "--max-restarts", "2", "--restart-backoff", "0.2",
        *(["--rdzv-id", rdzv_id] if rdzv_id else []),
        "-x", f"CKPT_DIR={tmp_path}", "-x", f"SSHRUN_TEST_CANARY={canary}",
        str(WORKERS / "resume.py")])
    assert code == 0, head.transcript()
    seen = {}
    jobs = set()
    for line in head.out:
        m = LINE.fullmatch(line)
        if m:
            node, prefix_rank, rank, restart, budget, run, attempt, job = m.groups()
            assert node == prefix_rank == rank, line
            seen[int(rank), int(restart)] = (int(budget), run, int(attempt))
            jobs.add(job)
    assert len(jobs) == 1, jobs
    run_id = rdzv_id or jobs.pop()
    # What torchrun itself would have said: restart 0 of 0, run <id>.1 on attempt 1.
    assert seen == {(rank, restart): (2, run_id, restart)
                    for rank in (0, 1) for restart in (0, 1)}, head.transcript()
    assert sorted(line for line in head.out if "resumed" in line) == [
        "node0 r0 | rank 0 resumed at step 5", "node1 r1 | rank 1 resumed at step 5"]
    assert sorted(p.name for p in (tmp_path / run_id).iterdir()) == [
        "rank-0.json", "rank-1.json"]
    assert_no_leftovers(canary)
