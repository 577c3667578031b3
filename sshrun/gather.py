"""``sshrun exec --gather``: each distinct output once, under the nodes that gave it.

As ``pdsh ... | dshbak -c``: the nodes whose whole output (and exit status)
is the same are one block, headed by their hostlist::

    ----------------
    node[1-3,5] (exit 0)
    ----------------
    Linux 6.1.0
    ----------------
    node4 (exit 1)
    ----------------
    uname: command not found

Blocks come in the order of their first node. Pure: the console's Printer
keeps each node's lines (stdout and stderr merged, in the order they reached
the head, as ``2>&1`` would) instead of printing them, and when the attempt
ends the launcher prints :func:`gathered_text` of them and the attempt's
:class:`sshrun.outcome.NodeOutcome` values.
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Mapping, Sequence

from sshrun.frozen_dataclass import frozen_dataclass
from sshrun.nodeset import fold_hosts
from sshrun.outcome import NodeOutcome, NodeState

RULE = "-" * 16


@frozen_dataclass
class NodeOutput:
    """One node's output, in order, and how its command ended (``exit 0``,
    ``killed by SIGKILL``)."""

    host: str
    lines: tuple[str, ...]
    status: str


@frozen_dataclass
class Gathered:
    hosts: tuple[str, ...]
    lines: tuple[str, ...]
    status: str

    def header(self) -> str:
        return f"{fold_hosts(self.hosts)} ({self.status})"


def gather(outputs: Sequence[NodeOutput]) -> list[Gathered]:
    """The distinct (output, status) pairs, each with every node that gave it."""
    groups: dict[tuple[tuple[str, ...], str], list[str]] = {}
    for node in outputs:
        groups.setdefault((node.lines, node.status), []).append(node.host)
    return [Gathered(tuple(hosts), lines, status) for (lines, status), hosts in groups.items()]


def render_gathered(groups: Sequence[Gathered]) -> str:
    return "".join(f"{RULE}\n{group.header()}\n{RULE}\n"
                   + "".join(f"{line}\n" for line in group.lines) for group in groups)


def node_status(node: NodeOutcome) -> str:
    """How a node's command ended, as its block's header says it."""
    if node.exit_code is None:
        return "lost" if node.state is NodeState.LOST else "no exit status"
    if node.exit_code > 128:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(node.exit_code - 128).name}"
    return f"exit {node.exit_code}"


def gathered_text(nodes: Sequence[NodeOutcome], lines: Mapping[int, Sequence[str]]) -> str:
    """``sshrun exec --gather``'s console: every node of the attempt, by node rank, with
    the lines kept for it (``lines``: node index -> lines)."""
    return render_gathered(gather([
        NodeOutput(node.host, tuple(lines.get(node.index, ())), node_status(node))
        for node in sorted(nodes, key=lambda n: n.index)]))
