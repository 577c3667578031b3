"""Run one job across the cluster as a gang: one attempt, its phases in order.

Phases, each bounded in time::

    connect   every node at once (handshakes bounded by a semaphore)
    start     an agent per node; each says hello (node 0's hello gives the port)
              -- both in sshrun.bring_up, one pipeline per node, spares if elastic
    check     every hello at once (sshrun.preflight), before any spec is sent
    run       specs out, output and events in, heartbeats out (sshrun.node_run)
    stop      on the first failure, Ctrl-C or a lost node: "stop" to every
              agent, which terminates its tree within the grace period
    close     connections closed; an agent that did not answer still tears
              down on its own when its stdin closes (both in sshrun.gang)

Node states (sshrun.outcome.NodeState): connecting -> starting -> running ->
exited | lost, with stopping in between when the job is being stopped. The
job's outcome is the first failure that reached the head before the stop
began; what survivors report while being stopped ("connection closed by
peer") is secondary and left out of the report.

What happens to the nodes is told as typed events (sshrun.events:
``node_connected``, ``agent_up``, ``ranks_started``, ``rank_started``, ``rendezvous_probe``,
``rank_exited``, ``node_lost``, ``stopping``, ``node_swept``) to ``emit``, and so are its
notices (``notice``: an interrupt, a host left out, a login shell's output), the launcher's
readers; text in them is as the supervisor received it (readers redact).
The attempt ends as an :class:`sshrun.outcome.Outcome`, plain data.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from sshrun import events
from sshrun.bring_up import bring_up, check_before_start
from sshrun.failure import FailureKind, exit_status
from sshrun.gang import Gang, NodeStatus, OutputTap
from sshrun.node_run import run_nodes
from sshrun.outcome import Outcome
from sshrun.output import Printer
from sshrun.plan import JobPlan
from sshrun.transport import SSHSettings

if TYPE_CHECKING:
    from sshrun.console import ConsoleOutput


class Supervisor:
    def __init__(self, plan: JobPlan, ssh: SSHSettings, printer: Printer,
                 console: ConsoleOutput | None = None,
                 emit: events.OnEvent = events.ignore,
                 tap: OutputTap | None = None) -> None:
        self.ssh = ssh
        self.gang = Gang(plan, printer, console, emit, tap)
        self._started = time.monotonic()

    @property
    def plan(self) -> JobPlan:
        """The attempt's plan: an elastic one's, renumbered once its members are up."""
        return self.gang.plan

    @property
    def nodes(self) -> list[NodeStatus]:
        """The attempt's nodes: its members, once they are up."""
        return self.gang.nodes

    # -- requests from outside (signal handlers) -----------------------------

    def interrupt(self) -> None:
        """Ctrl-C: the first stops gracefully, the second kills at once."""
        self.gang.interrupt()

    def stdout_closed(self) -> None:
        """Nobody reads our stdout any more (``sshrun ... | head``): stop as Ctrl-C does."""
        self.gang.stdout_closed()

    def stop(self, reason: str) -> None:
        self.gang.stop(reason)

    # -- the run ------------------------------------------------------------------

    async def run(self) -> Outcome:
        gang = self.gang
        try:
            await bring_up(gang, self.ssh)
            if gang.stop_reason is None:
                check_before_start(gang)
                await run_nodes(gang)
        finally:
            await gang.close_all()
        # Every stream has ended: the failing rank's last stderr lines are all here,
        # including those that arrived after its exit status.
        gang.printer.flush_all()
        failure = gang.first_failure
        if failure is not None and failure.reason != FailureKind.LOST:
            source = failure.rank if failure.rank is not None else -1
            failure.tail = gang.printer.tail(failure.node, source)
        return Outcome(
            exit_status(failure, interrupted=gang.interrupted, output_closed=gang.output_closed),
            failure, tuple(node.outcome() for node in gang.nodes), gang.interrupted,
            time.monotonic() - self._started, tuple(gang.left_out), gang.output_closed,
        )
