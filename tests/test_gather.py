"""exec --gather's grouping (sshrun/gather.py), as dshbak -c prints it."""

from __future__ import annotations

from sshrun.gather import NodeOutput, gather, render_gathered


def test_identical_outputs_print_once_under_their_hostlist() -> None:
    outputs = [NodeOutput(f"node{n}", ("Linux 6.1.0",), "exit 0") for n in (1, 2, 3, 5)]
    outputs.insert(3, NodeOutput("node4", ("uname: command not found",), "exit 1"))
    outputs.append(NodeOutput("node6", ("Linux 6.1.0",), "exit 1"))  # same text, other end
    assert render_gathered(gather(outputs)) == (
        "----------------\n"
        "node[1-3,5] (exit 0)\n"
        "----------------\n"
        "Linux 6.1.0\n"
        "----------------\n"
        "node4 (exit 1)\n"
        "----------------\n"
        "uname: command not found\n"
        "----------------\n"
        "node6 (exit 1)\n"
        "----------------\n"
        "Linux 6.1.0\n")


def test_no_output_is_a_block_too() -> None:
    groups = gather([NodeOutput("a1", (), "exit 0"), NodeOutput("a2", (), "exit 0")])
    assert render_gathered(groups) == "----------------\na[1-2] (exit 0)\n----------------\n"


def test_node_status_and_gathered_text_from_outcomes() -> None:
    from sshrun.gather import gathered_text, node_status
    from sshrun.outcome import NodeOutcome, NodeState

    nodes = [NodeOutcome(2, "node2", NodeState.EXITED, 143),
             NodeOutcome(0, "node0", NodeState.EXITED, 0),
             NodeOutcome(1, "node1", NodeState.LOST, None),
             NodeOutcome(3, "node3", NodeState.EXITED, 0)]
    assert [node_status(n) for n in nodes] == ["killed by SIGTERM", "exit 0", "lost", "exit 0"]
    assert node_status(NodeOutcome(0, "a", NodeState.EXITED, None)) == "no exit status"
    assert node_status(NodeOutcome(0, "a", NodeState.EXITED, 200)) == "exit 200"
    # By node rank; a node that printed nothing still has its block.
    assert gathered_text(nodes, {0: ["x"], 3: ["x"], 2: ["x"]}) == (
        "----------------\nnode[0,3] (exit 0)\n----------------\nx\n"
        "----------------\nnode1 (lost)\n----------------\n"
        "----------------\nnode2 (killed by SIGTERM)\n----------------\nx\n")
