"""``sshrun exec --gather`` against real sshd nodes: each distinct output once, under the
hostlist of its nodes and their exit status, compared with the exact console text."""

from __future__ import annotations

from pathlib import Path

import pytest
from head import run_sshrun
from jobprocs import assert_no_leftovers, new_canary
from sshd_cluster import SshdCluster, cluster_args

from sshrun import api
from sshrun.errors import ConfigError

pytestmark = pytest.mark.sshd

# Nodes 0 and 2 print the same two lines and leave a file; node 1 waits (bounded) for
# both files, so that its failure stops no node still running, then fails on stderr.
COMMAND = """
import os, sys, time
rank = os.environ["SSHRUN_NODE_RANK"]
here = sys.argv[1]
if rank != "1":
    print("Linux same")
    print("second line")
    open(os.path.join(here, "done-" + rank), "w").close()
    sys.exit(0)
deadline = time.monotonic() + 60
while not all(os.path.exists(os.path.join(here, "done-" + r)) for r in "02"):
    if time.monotonic() > deadline:
        sys.exit(9)
    time.sleep(0.05)
print("uname: command not found", file=sys.stderr)
sys.exit(3)
"""


def test_gather_prints_each_distinct_output_once(sshd_cluster: SshdCluster,
                                                 tmp_path: Path) -> None:
    canary = new_canary()
    code, head = run_sshrun(["exec", *cluster_args(sshd_cluster), "--gather", "-x",
                             f"SSHRUN_TEST_CANARY={canary}", "--", "python3", "-c", COMMAND,
                             str(tmp_path)])
    assert code == 3, head.transcript()
    assert head.out == [
        "----------------", "node[0,2] (exit 0)", "----------------",
        "Linux same", "second line",
        "----------------", "node1 (exit 3)", "----------------",
        "uname: command not found",
    ], head.transcript()
    # Nothing streamed: sshrun's report only on stderr.
    assert not [line for line in head.err if " | " in line], head.transcript()
    assert "first failure: node1 (node 1)" in head.stderr, head.transcript()
    assert_no_leftovers(canary)


def test_gather_of_identical_nodes_is_one_block(sshd_cluster: SshdCluster) -> None:
    code, head = run_sshrun(["exec", *cluster_args(sshd_cluster), "--gather", "--",
                             "echo", "hello"])
    assert code == 0, head.transcript()
    assert head.out == ["----------------", "node[0-2] (exit 0)", "----------------",
                        "hello"], head.transcript()


def test_gather_is_exec_only() -> None:
    code, head = run_sshrun(["--hosts", "a", "--gather", "x.py"], timeout=60)
    assert code == 2, head.transcript()
    assert head.err[-1] == "sshrun: error: unrecognized arguments: --gather", head.transcript()
    # The API says why.
    with pytest.raises(ConfigError, match=r"^--gather: for sshrun exec \(a command's output "
                       r"on every node\), not for torchrun's ranks$"):
        api.launch("x.py", hosts="a", gather=True)
