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

Blocks come in the order of their first node. Pure: the console reads the
nodes' output from the job and prints :func:`render_gathered`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sshrun.nodeset import fold_hosts

RULE = "-" * 16


@dataclass(frozen=True)
class NodeOutput:
    """One node's output, in order, and how its command ended (``exit 0``,
    ``killed by SIGKILL``)."""

    host: str
    lines: tuple[str, ...]
    status: str


@dataclass(frozen=True)
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
