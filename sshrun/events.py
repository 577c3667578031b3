"""The job's events: typed, timestamped, one stream that every reader subscribes to.

Each event is a frozen dataclass whose ``name`` is the event's name in
DESIGN.md §3 (``job_started``, ``attempt_failed``, ...). The launcher emits
them to every ``on_event`` callback in turn: the console report
(sshrun.console_report) is one reader, the Python API's callbacks are
others. A callback runs in the event loop: it must return quickly and never
block (hand slow work to a thread or a queue).

The launcher's own events: a job starting and finishing, an attempt
failing, a restart, a host left out. The supervisor's, per attempt and per
node: a node connected, its agent up, its ranks (torchrun or the command)
started, each rank started (past the rendezvous), what a stalled node found
when it tried to reach the rendezvous, a rank exited, a node
lost, a stop beginning, what a node's sweep did, and its notices
(``notice``: an interrupt, a host left out, a login shell's stray output).
Every event carries the job id, the attempt number (0 for the first) and the
wall-clock time it happened (``time.time()``, Unix seconds); a node's
event also its host label and node rank (in that attempt). ``--sync`` adds
a node's sync starting and finishing, and the whole sync's progress.

Remote text inside an event (a failure's message, traceback or last lines)
is as the supervisor keeps it: sanitized and redacted by the job's secrets;
the event itself holds no secret values.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import field
from typing import TYPE_CHECKING, ClassVar

from sshrun.frozen_dataclass import frozen_dataclass

if TYPE_CHECKING:
    from sshrun.failure import Failure
    from sshrun.result import JobResult


@frozen_dataclass(kw_only=True)
class Event:
    """What every event has."""

    name: ClassVar[str] = "event"
    job: str
    attempt: int
    time: float = field(default_factory=time.time)


@frozen_dataclass(kw_only=True)
class JobStarted(Event):
    """The job begins: its mode and the hosts it may run on (the pool, when elastic)."""

    name: ClassVar[str] = "job_started"
    mode: str  # "torchrun" or "exec"
    hosts: tuple[str, ...]
    max_restarts: int


@frozen_dataclass(kw_only=True)
class AttemptFailed(Event):
    """An attempt ended with a failure (not a stop the user asked for)."""

    name: ClassVar[str] = "attempt_failed"
    exit_code: int
    failure: Failure | None  # None: the attempt failed without one (exit status only)


@frozen_dataclass(kw_only=True)
class HostLeftOut(Event):
    """Elastic: a host sits out the next attempts for ``cooldown`` seconds.

    ``at_start``: it could not be reached or set up when the attempt started
    (the attempt ran without it); otherwise the attempt's first failure was on it.
    """

    name: ClassVar[str] = "host_left_out"
    host: str
    reason: str
    cooldown: float
    at_start: bool = False


@frozen_dataclass(kw_only=True)
class Restarting(Event):
    """Every node starts again after ``delay`` seconds, as attempt ``attempt + 1``."""

    name: ClassVar[str] = "restarting"
    delay: float
    restart: int  # 1 for the first restart
    max_restarts: int
    # Elastic: the delay is the wait for cool-downs to end, since this many
    # nodes are needed (None when the back-off alone decided it).
    nodes_needed: int | None = None


@frozen_dataclass(kw_only=True)
class JobFinished(Event):
    """The job is over; ``result`` says everything about it."""

    name: ClassVar[str] = "job_finished"
    exit_code: int
    elapsed: float
    result: JobResult


@frozen_dataclass(kw_only=True)
class NodeEvent(Event):
    """What every node's event has: which node (its rank in this attempt)."""

    host: str
    node: int


@frozen_dataclass(kw_only=True)
class NodeConnected(NodeEvent):
    """The SSH connection is up (``address``: the one the node was reached at)."""

    name: ClassVar[str] = "node_connected"
    address: str


@frozen_dataclass(kw_only=True)
class SyncStarted(NodeEvent):
    """``--sync`` began on the node: the tree's files and bytes, and where it goes."""

    name: ClassVar[str] = "sync_started"
    files: int
    bytes: int
    dest: str


@frozen_dataclass(kw_only=True)
class SyncFinished(NodeEvent):
    """The node's tree is in place: what was sent (``files``, ``bytes``: content
    only), how many of its paths went, and how long it took."""

    name: ClassVar[str] = "sync_finished"
    files: int
    bytes: int
    deleted: int
    path: str
    seconds: float
    wire_sent: int = 0  # all the head sent on the sync channel (code, manifest, files)
    wire_received: int = 0  # all it read back (the node's manifest, replies)


@frozen_dataclass(kw_only=True)
class SyncProgress(Event):
    """Every node's ``--sync`` so far (sshrun.sync_meter), at most twice a second while
    any node syncs and once when the last is done: ``files``/``bytes`` sent of
    ``files_total``/``bytes_total``, over the nodes that have compared trees
    (``comparing``: those that have not yet)."""

    name: ClassVar[str] = "sync_progress"
    nodes: int
    synced: int
    failed: int
    comparing: int
    files: int
    files_total: int
    bytes: int
    bytes_total: int


@frozen_dataclass(kw_only=True)
class AgentUp(NodeEvent):
    """The node's agent said hello: the interpreter it runs and what it has.

    ``python``: the interpreter's path; ``torch``: whether torch is
    importable, ``torch_version`` its version and ``cuda_version`` the CUDA
    it was built for (None without CUDA or without torch); ``modules``: each
    rendezvous client module (``sshrun.rendezvous.CLIENT_MODULES``, such as
    python-etcd's ``etcd``), importable or not.
    """

    name: ClassVar[str] = "agent_up"
    python: str
    python_version: str
    torch: bool
    hostname: str
    pid: int
    torch_version: str | None = None
    cuda_version: str | None = None
    modules: dict[str, bool] = field(default_factory=dict)


@frozen_dataclass(kw_only=True)
class RanksStarted(NodeEvent):
    """The node's torchrun (or exec's command) started."""

    name: ClassVar[str] = "ranks_started"
    pid: int
    argv0: str


@frozen_dataclass(kw_only=True)
class RankStarted(NodeEvent):
    """One rank started: its shim connected to the node's agent, which torchrun
    runs only once the rendezvous is complete (the start-up report counts these)."""

    name: ClassVar[str] = "rank_started"
    rank: int
    local_rank: int
    pid: int


@frozen_dataclass(kw_only=True)
class RendezvousProbe(NodeEvent):
    """A node whose ranks had not started after a few seconds tried to connect to
    the rendezvous endpoint (``address``, host:port) and could not: ``state``
    "unreachable" (``error``: "timed out", "No route to host", "connection
    refused" once a refusal has lasted); or, after that, it can again:
    "waiting" (refused: nothing listens there yet) or "reachable". Said when a
    failure begins, changes or ends, never for a start-up that is only slow.
    Node 0 hosts the store and does not probe (it does for etcd's server)."""

    name: ClassVar[str] = "rendezvous_probe"
    state: str
    address: str
    error: str | None = None


@frozen_dataclass(kw_only=True)
class RankExited(NodeEvent):
    """One rank exited: ``code`` shell-style (128+N: signal N; None: unknown)."""

    name: ClassVar[str] = "rank_exited"
    rank: int
    local_rank: int
    code: int | None
    signal: str | None  # the signal's name (SIGKILL) when a signal ended it


@frozen_dataclass(kw_only=True)
class NodeLost(NodeEvent):
    """The head lost the node: its connection dropped or it fell silent."""

    name: ClassVar[str] = "node_lost"
    why: str


@frozen_dataclass(kw_only=True)
class Stopping(Event):
    """The attempt is being stopped. ``by`` "head": the head began it (a failure,
    Ctrl-C, a lost node; host and node are None); "agent": that node's agent
    stopped its job on its own (it heard nothing from the head)."""

    name: ClassVar[str] = "stopping"
    reason: str
    by: str  # "head" or "agent"
    host: str | None = None
    node: int | None = None


@frozen_dataclass(kw_only=True)
class NodeSwept(NodeEvent):
    """The node's agent exited; what its sweep of the job's processes did."""

    name: ClassVar[str] = "node_swept"
    terminated: int
    killed: int
    left: int


@frozen_dataclass(kw_only=True)
class Notice(Event):
    """One of sshrun's own notices, as the console shows it (``sshrun: TEXT``,
    then ``sshrun: LINE`` for each of ``lines``).

    ``kind`` says which, for a reader that acts on it: ``interrupted`` (the
    first Ctrl-C or a cancel: every node is being stopped), ``killing`` (the
    second: every node's processes are killed now), ``stdout_closed`` (nobody
    reads the head's stdout: every node is being stopped), ``left_out`` (a host
    that could not start sits out this attempt), ``stop_unconfirmed`` (a
    node's agent did not confirm the stop in time), ``login_shell`` (a node's
    login shell printed text before the agent started; ``lines`` holds it),
    ``version_mismatch`` (nodes whose torch is not node 0's run, as
    ``--allow-version-mismatch`` allows), ``slurm_hosts`` and
    ``insecure_host_keys`` (resolving's notices, by the launcher right after
    ``job_started``).
    ``host``: the host it is about, if any. Remote text is sanitized but not
    redacted (readers redact, as for every event).
    """

    name: ClassVar[str] = "notice"
    kind: str
    text: str
    lines: tuple[str, ...] = ()
    host: str | None = None


AnyEvent = (JobStarted | AttemptFailed | HostLeftOut | Restarting | JobFinished
            | NodeConnected | SyncStarted | SyncProgress | SyncFinished | AgentUp
            | RanksStarted | RankStarted | RendezvousProbe | RankExited | NodeLost | Stopping
            | NodeSwept | Notice)
OnEvent = Callable[[Event], None]
# The supervisor's events (one attempt's nodes), apart from the launcher's.
SUPERVISOR_EVENTS = (NodeConnected, SyncStarted, SyncProgress, SyncFinished, AgentUp,
                     RanksStarted, RankStarted, RendezvousProbe, RankExited, NodeLost,
                     Stopping, NodeSwept, Notice)


def ignore(event: Event) -> None:
    """A reader that reads nothing (the supervisor's default)."""
