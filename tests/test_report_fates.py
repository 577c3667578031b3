"""The final report's line on what every node did (sshrun/report.py), exact text.

Pure: outcomes built as the supervisor hands them on; the same line from real
attempts is in tests/test_runtime.py (the embedded cluster) and
tests/test_startup_sshd.py (sshd nodes).
"""

from __future__ import annotations

import io

from rich.console import Console

from sshrun import report
from sshrun.failure import Failure, FailureKind
from sshrun.outcome import NodeOutcome, NodeState, Outcome

EXITED, LOST = NodeState.EXITED, NodeState.LOST


def node(index: int, state: NodeState = EXITED, code: int | None = 0,
         stopped: bool = False, host: str | None = None) -> NodeOutcome:
    return NodeOutcome(index, host or f"node{index:02d}", state, code, stopped=stopped)


def outcome(nodes: list[NodeOutcome], failure: Failure | None = None,
            interrupted: bool = False, exit_code: int = 1) -> Outcome:
    return Outcome(exit_code, failure, tuple(nodes), interrupted, 12.34)


def render(o: Outcome) -> list[str]:
    text = io.StringIO()
    report.render(o, Console(file=text, width=300, no_color=True, highlight=False,
                             soft_wrap=True))
    return text.getvalue().splitlines()


def test_each_fate_in_order_with_folded_hostlists() -> None:
    rank_failed = Failure(3, "node03", FailureKind.EXIT, rank=12, local_rank=0, code=7)
    nodes = [node(0, stopped=True), node(1, stopped=True), node(2, code=0),
             # The failing node: its torchrun was also stopped, but the failure is its own.
             node(3, code=7, stopped=True),
             node(4, LOST, None), node(5, code=1), node(6, NodeState.STARTING, None),
             node(7, stopped=True)]
    assert report.node_fates(outcome(nodes, rank_failed)) == (
        "nodes: 1 finished (node02), 2 failed (node[03,05]), 3 stopped (node[00-01,07]), "
        "1 lost (node04), 1 never started (node06)")
    assert render(outcome(nodes, rank_failed, exit_code=7)) == [
        "sshrun: first failure: node03 (node 3), rank 12 (local rank 0): exited with code 7",
        "sshrun: nodes: 1 finished (node02), 2 failed (node[03,05]), "
        "3 stopped (node[00-01,07]), 1 lost (node04), 1 never started (node06)",
        "sshrun: exit status 7",
    ]


def test_a_thousand_nodes_are_one_short_line() -> None:
    lost = Failure(999, "gpu1000", FailureKind.LOST, message="lost: no word from the node")
    nodes = [node(k, stopped=True, host=f"gpu{k + 1:04d}") for k in range(999)]
    nodes.append(node(999, LOST, None, host="gpu1000"))
    nodes[17] = node(17, code=0, host="gpu0018")
    assert report.node_fates(outcome(nodes, lost)) == (
        "nodes: 1 finished (gpu0018), 998 stopped (gpu[0001-0017,0019-0999]), "
        "1 lost (gpu1000)")


def test_an_interrupt_says_what_each_node_did_after_the_interrupt_line() -> None:
    nodes = [node(0, stopped=True), node(1, stopped=True), node(2, code=0)]
    lines = render(outcome(nodes, interrupted=True, exit_code=130))
    assert lines == ["sshrun: interrupted after 12.3s; every node stopped",
                     "sshrun: nodes: 1 finished (node02), 2 stopped (node[00-01])"]


def test_a_job_that_succeeded_has_no_fates_line() -> None:
    lines = render(outcome([node(0), node(1)], exit_code=0))
    assert lines == ["sshrun: job finished on 2 nodes in 12.3s"]


def test_an_attempt_without_nodes_has_no_fates_line() -> None:
    assert report.node_fates(outcome([])) is None
