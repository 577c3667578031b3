"""One attempt's nodes as a gang: what they share, and how they stop together.

A :class:`Gang` holds an attempt's nodes (:class:`NodeStatus`, one per node)
and the state that is the whole job's: its first failure, why it stops,
whether it was interrupted. Bring-up (:mod:`sshrun.bring_up`) and the run
(:mod:`sshrun.node_run`) act on one gang; :class:`sshrun.supervisor.Supervisor`
runs the phases.

Stopping is the gang's: the first failure that reaches the head (``fail``),
Ctrl-C (``interrupt``) or a closed stdout (``stdout_closed``) sends "stop" to
every agent that is starting or running, once, and sets the event that the
phases wait on. Failures that arrive after that (survivors' "connection
closed by peer") are not the cause and are not recorded. ``close_all`` ends
the connections, bounded in time; what does not close in time is aborted, and
its agent tears down on its own when its stdin closes.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from sshrun import events
from sshrun.failure import Failure
from sshrun.node.protocol import Kill, Stop
from sshrun.outcome import NodeOutcome, NodeState
from sshrun.output import Printer
from sshrun.plan import JobPlan, NodePlan
from sshrun.sanitize import sanitize
from sshrun.session import AgentSession
from sshrun.transport import NodeConnection

if TYPE_CHECKING:
    from sshrun.console import ConsoleOutput

# How long closing the connections may take before they are dropped.
CLOSE_TIMEOUT = 5.0


@dataclass(eq=False)  # one per node: identity, not equal fields
class NodeStatus:
    plan: NodePlan
    state: NodeState = NodeState.CONNECTING
    conn: NodeConnection | None = None
    session: AgentSession | None = None
    exit_code: int | None = None
    swept: dict[str, int] = field(default_factory=dict)
    # Global rank -> (local rank, shell-style exit status; None: unknown).
    rank_exits: dict[int, tuple[int, int | None]] = field(default_factory=dict)
    stopped: bool = False  # its agent's exit said the job was stopped, not ended by itself
    probe: str | None = None  # the rendezvous endpoint its agent probes when start-up stalls

    def outcome(self) -> NodeOutcome:
        """What this node did, as data that outlives its connection."""
        return NodeOutcome(self.plan.index, self.plan.host.label, self.state, self.exit_code,
                           dict(self.swept), dict(self.rank_exits), self.stopped)


class OutputTap(Protocol):
    """What hears the ranks' output ahead of the console (sshrun.log_dir.AttemptLog)."""

    def feed(self, node: int, host: str, rank: int, stream: int, data: bytes,
             when: float) -> None: ...

    def flush_node(self, node: int) -> None: ...


class Gang:
    def __init__(self, plan: JobPlan, printer: Printer, console: ConsoleOutput | None = None,
                 emit: events.OnEvent = events.ignore, tap: OutputTap | None = None) -> None:
        self.plan = plan
        # Hears every chunk of output before the printer does (the log directory).
        self.tap = tap
        self.emit = emit
        self.printer = printer
        # Where the printer's output goes; its backlog holds the nodes back.
        self.console = console
        # Elastic: plan.nodes are the candidates, in order; the members are
        # known once they are up (sshrun.bring_up).
        self.nodes = [NodeStatus(n) for n in plan.nodes]
        self.all_nodes = list(self.nodes)  # members and left-out candidates, to close
        self.left_out: list[tuple[str, str]] = []  # host, why: at this attempt's start
        self.first_failure: Failure | None = None
        self.stop_reason: str | None = None
        self.interrupted = False
        self.output_closed = False
        self.stopped = asyncio.Event()  # set when the stop begins
        self.killing = False  # a second Ctrl-C: no more waiting for anyone

    # -- requests from outside (signal handlers) -----------------------------

    def interrupt(self) -> None:
        """Ctrl-C: the first stops gracefully, the second kills at once."""
        if self.interrupted:
            self.notice("killing", "second interrupt: killing every node's processes now")
            self.killing = True
            for node in self.nodes:
                if node.session is not None:
                    node.session.send(Kill(reason="interrupted twice"))
            return
        self.interrupted = True
        self.notice("interrupted",
                    "interrupted: stopping every node (Ctrl-C again to kill at once)")
        self.stop("interrupted by the user")

    def stdout_closed(self) -> None:
        """Nobody reads our stdout any more (``sshrun ... | head``): stop as Ctrl-C does."""
        if self.stop_reason is not None:
            return
        self.output_closed = True
        self.notice("stdout_closed", "stdout closed: stopping every node")
        self.stop("the head's stdout was closed")

    def stop(self, reason: str) -> None:
        if self.stop_reason is not None:
            return
        self.stop_reason = reason
        self.stopped.set()
        self.emit(events.Stopping(job=self.plan.job_id, attempt=self.plan.attempt,
                                  reason=reason, by="head"))
        for node in self.nodes:
            if node.session is not None and node.state in (NodeState.RUNNING, NodeState.STARTING):
                node.state = NodeState.STOPPING
                node.session.send(Stop(reason=reason))

    def fail(self, failure: Failure) -> None:
        """A failure: the job's first, and the stop, unless the stop has begun."""
        if self.first_failure is None and self.stop_reason is None:
            self.first_failure = failure
            where = f"rank {failure.rank}" if failure.rank is not None else "node"
            self.stop(f"{failure.host} {where} failed")

    # -- what every phase tells -----------------------------------------------

    def notice(self, kind: str, text: str, lines: Sequence[str] = (),
               host: str | None = None) -> None:
        """One of sshrun's notices, as an event: the console report prints it."""
        self.emit(events.Notice(job=self.plan.job_id, attempt=self.plan.attempt, kind=kind,
                                text=sanitize(text), lines=tuple(sanitize(t) for t in lines),
                                host=host))

    def about(self, node: NodeStatus) -> dict[str, Any]:
        """The fields every node's event starts with."""
        return {"job": self.plan.job_id, "attempt": self.plan.attempt,
                "host": node.plan.host.label, "node": node.plan.index}

    # -- waiting, bounded by the stop -------------------------------------------

    async def until_stopped(self, work: asyncio.Future[Any] | Any) -> None:
        """Run ``work`` until it ends or the stop begins (then it is cancelled)."""
        task = asyncio.ensure_future(work)
        stop_wait = asyncio.ensure_future(self.stopped.wait())
        cancelled = False
        try:
            await asyncio.wait({task, stop_wait}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop_wait.cancel()
            if not task.done():
                task.cancel()
                cancelled = True
                await asyncio.gather(task, return_exceptions=True)
        # A cancelled gather() ends with CancelledError as its exception, not as
        # cancelled, when a child was still running (a sync mid-file): that is
        # the cancel asked for here.
        if task.cancelled() or (cancelled
                                and isinstance(task.exception(), asyncio.CancelledError)):
            return
        if not task.cancelled() and task.exception() is not None:
            # A bug or an unexpected failure must surface, not be skipped over.
            raise task.exception()

    async def within(self, pump: asyncio.Future[Any], budget: float) -> bool:
        """Wait for ``pump`` for ``budget`` seconds, not counting the time our own
        console held its output back (that wait is ours, not the node's), unless
        a second Ctrl-C asked to end now."""
        def held() -> float:
            return self.console.held_seconds() if self.console and not self.killing else 0.0

        start, held_start = time.monotonic(), held()
        while True:
            left = budget - (time.monotonic() - start) + (held() - held_start)
            if left <= 0:
                return False
            done, _ = await asyncio.wait({pump}, timeout=left)
            if done:
                return True

    # -- the end ------------------------------------------------------------------

    async def close_all(self) -> None:
        for node in self.all_nodes:
            if node.session is not None and node.state != NodeState.EXITED:
                # EOF tells an agent that is still running to tear down.
                node.session.close()
            if node.conn is not None:
                node.conn.conn.close()
        conns = [n.conn.conn for n in self.all_nodes if n.conn is not None]
        try:
            async with asyncio.timeout(CLOSE_TIMEOUT):
                await asyncio.gather(*(c.wait_closed() for c in conns), return_exceptions=True)
        except TimeoutError:
            # A peer that cannot even take our goodbye (black-holed, frozen):
            # drop the connection; its agent tears down on its own.
            for conn in conns:
                conn.abort()
