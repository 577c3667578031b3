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
