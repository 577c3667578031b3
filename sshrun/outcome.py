"""What one attempt did, as the supervisor hands it on: plain data.

:class:`Outcome` is the supervisor's answer for one attempt (its exit status,
its first failure, what each node did); :class:`NodeOutcome` is one node's
part, taken when the attempt has ended. They sit below the supervisor that
makes them and the result, the report and the launcher that read them, so
that none of those needs the supervisor (or asyncssh) to know what an
attempt did. Pure: no I/O.
"""

from __future__ import annotations

import enum
from dataclasses import field

from sshrun.failure import Failure
from sshrun.frozen_dataclass import frozen_dataclass


class NodeState(enum.Enum):
    """A node's state in one attempt (the supervisor's per-node state machine)."""

    CONNECTING = "connecting"
    STARTING = "starting"
    RUNNING = "running"
    STOPPING = "stopping"
    EXITED = "exited"
    LOST = "lost"


@frozen_dataclass
class NodeOutcome:
    """What one node did in one attempt."""

    index: int  # node rank in the attempt
    host: str  # its label, as every line and event names it
    state: NodeState  # the last one: exited, lost, or where a failed launch left it
    exit_code: int | None  # its agent's job (torchrun or the exec command); None: no word
    # What the agent's sweep did ("terminated", "killed", "left"); empty: it never said.
    swept: dict[str, int] = field(default_factory=dict)
    # Global rank -> (local rank, shell-style exit status; None: unknown).
    rank_exits: dict[int, tuple[int, int | None]] = field(default_factory=dict)
    stopped: bool = False  # its job was stopped (by the head, or its agent), not ended by itself


@frozen_dataclass
class Outcome:
    """How one attempt ended."""

    exit_code: int
    first_failure: Failure | None
    nodes: tuple[NodeOutcome, ...]  # the attempt's members, by node rank
    interrupted: bool
    elapsed: float
    left_out: tuple[tuple[str, str], ...] = ()  # host, why
    output_closed: bool = False  # stopped because nobody reads stdout any more
