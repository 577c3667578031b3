"""Run one job across the cluster as a gang.

Phases, each bounded in time::

    connect   every node at once (handshakes bounded by a semaphore)
    start     an agent per node; each says hello (node 0's hello gives the port)
    check     every hello at once (sshrun.preflight), before any spec is sent
    run       specs out, output and events in, heartbeats out
    stop      on the first failure, Ctrl-C or a lost node: "stop" to every
              agent, which terminates its tree within the grace period
    close     connections closed; an agent that did not answer still tears
              down on its own when its stdin closes

Node states: connecting -> starting -> running -> exited | lost, with
stopping in between when the job is being stopped. The job's outcome is the
first failure that reached the head before the stop began; what survivors
report while being stopped ("connection closed by peer") is secondary and
left out of the report.

What happens to the nodes is told as typed events (sshrun.events:
``node_connected``, ``agent_up``, ``ranks_started``, ``rank_exited``,
``node_lost``, ``stopping``, ``node_swept``) to ``emit``, and so are its
notices (``notice``: an interrupt, a host left out, a login shell's output), the launcher's
readers; text in them is as the supervisor received it (readers redact).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import signal
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Protocol

from sshrun import events, preflight
from sshrun.errors import AuthError, HostKeyError, NodeSetupError, SSHError
from sshrun.failure import Failure as Failure  # where the report and the CLI find it
from sshrun.failure import FailureKind, exit_status
from sshrun.node.protocol import (
    Error,
    Exited,
    Heartbeat,
    Kill,
    Message,
    RankExit,
    Spec,
    Started,
    Stop,
    Stopping,
)
from sshrun.output import Printer
from sshrun.plan import (
    JobPlan,
    NodePlan,
    given_endpoint,
    plan_job,
    rank_env,
    target_args,
    torchrun_args,
)
from sshrun.sanitize import sanitize
from sshrun.session import AgentSession
from sshrun.transport import NodeConnection, SSHSettings, connect

if TYPE_CHECKING:
    from sshrun.console import ConsoleOutput

# How long closing the connections may take before they are dropped.
CLOSE_TIMEOUT = 5.0


class NodeState(enum.Enum):
    CONNECTING = "connecting"
    STARTING = "starting"
    RUNNING = "running"
    STOPPING = "stopping"
    EXITED = "exited"
    LOST = "lost"


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


@dataclass
class Outcome:
    exit_code: int
    first_failure: Failure | None
    nodes: list[NodeStatus]
    interrupted: bool
    elapsed: float
    left_out: list[tuple[str, str]] = field(default_factory=list)  # host, why
    output_closed: bool = False  # stopped because nobody reads stdout any more


class OutputTap(Protocol):
    """What hears the ranks' output ahead of the console (sshrun.log_dir.AttemptLog)."""

    def feed(self, node: int, host: str, rank: int, stream: int, data: bytes,
             when: float) -> None: ...

    def flush_node(self, node: int) -> None: ...


class Supervisor:
    def __init__(self, plan: JobPlan, ssh: SSHSettings, printer: Printer,
                 console: ConsoleOutput | None = None,
                 emit: events.OnEvent = events.ignore,
                 tap: OutputTap | None = None) -> None:
        self.plan = plan
        # Hears every chunk of output before the printer does (the log directory).
        self.tap = tap
        self.emit = emit
        self.ssh = ssh
        self.printer = printer
        # Where the printer's output goes; its backlog holds the nodes back.
        self.console = console
        # Elastic: plan.nodes are the candidates, in order; the members are
        # known once they are up (see _bring_up).
        self.membership = plan.config.membership
        self.nodes = [NodeStatus(n) for n in plan.nodes]
        self.all_nodes = list(self.nodes)  # members and left-out candidates, to close
        self.left_out: list[tuple[str, str]] = []  # host, why: at this attempt's start
        self.first_failure: Failure | None = None
        self.stop_reason: str | None = None
        self.interrupted = False
        self.output_closed = False
        self._stop_event = asyncio.Event()
        self._kill = False
        self._started = time.monotonic()

    # -- requests from outside (signal handlers) -----------------------------

    def interrupt(self) -> None:
        """Ctrl-C: the first stops gracefully, the second kills at once."""
        if self.interrupted:
            self._notice("killing", "second interrupt: killing every node's processes now")
            self._kill = True
            for node in self.nodes:
                if node.session is not None:
                    node.session.send(Kill(reason="interrupted twice"))
            return
        self.interrupted = True
        self._notice("interrupted",
                     "interrupted: stopping every node (Ctrl-C again to kill at once)")
        self.stop("interrupted by the user")

    def stdout_closed(self) -> None:
        """Nobody reads our stdout any more (``sshrun ... | head``): stop as Ctrl-C does."""
        if self.stop_reason is not None:
            return
        self.output_closed = True
        self._notice("stdout_closed", "stdout closed: stopping every node")
        self.stop("the head's stdout was closed")

    def stop(self, reason: str) -> None:
        if self.stop_reason is not None:
            return
        self.stop_reason = reason
        self._stop_event.set()
        self.emit(events.Stopping(job=self.plan.job_id, attempt=self.plan.attempt,
                                  reason=reason, by="head"))
        for node in self.nodes:
            if node.session is not None and node.state in (NodeState.RUNNING, NodeState.STARTING):
                node.state = NodeState.STOPPING
                node.session.send(Stop(reason=reason))

    # -- the run ------------------------------------------------------------------

    async def run(self) -> Outcome:
        try:
            await self._bring_up()
            if self.stop_reason is None:
                self._preflight()
                await self._run_all()
        finally:
            await self._close_all()
        # Every stream has ended: the failing rank's last stderr lines are all here,
        # including those that arrived after its exit status.
        self.printer.flush_all()
        failure = self.first_failure
        if failure is not None and failure.reason != FailureKind.LOST:
            source = failure.rank if failure.rank is not None else -1
            failure.tail = self.printer.tail(failure.node, source)
        return Outcome(
            exit_status(failure, interrupted=self.interrupted, output_closed=self.output_closed),
            self.first_failure, self.nodes, self.interrupted,
            time.monotonic() - self._started, self.left_out, self.output_closed,
        )

    async def _close_all(self) -> None:
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

    async def _bring_up(self) -> None:
        """Connect to every node and start its agent, each node as soon as it can.

        Fixed size: any node that fails fails the launch. Elastic: a node that
        cannot be reached or set up is left out and the next spare host takes
        its place; the launch fails only with fewer than MIN nodes, or on a
        host key or authentication error, which no spare should paper over.
        """
        elastic = self.membership
        want = min(elastic.max_nodes, len(self.nodes)) if elastic else len(self.nodes)
        need = elastic.min_nodes if elastic else len(self.nodes)
        limit = asyncio.Semaphore(self.ssh.max_handshakes)
        queue = list(self.nodes)
        up: list[NodeStatus] = []
        failures: list[tuple[NodeStatus, SSHError | NodeSetupError]] = []

        async def one(node: NodeStatus) -> None:
            try:
                await self._up(node, limit)
                up.append(node)
            except (SSHError, NodeSetupError) as exc:
                failures.append((node, exc))

        def fatal() -> list[SSHError | NodeSetupError]:
            return [exc for _, exc in failures
                    if not elastic or isinstance(exc, (HostKeyError, AuthError))]

        while len(up) < want and queue and self.stop_reason is None and not fatal():
            batch = queue[: want - len(up)]
            del queue[: len(batch)]
            await self._until_stopped(asyncio.gather(*(one(n) for n in batch)))
        if self.stop_reason is not None:
            return
        if fatal() or len(up) < need:
            for node in self.nodes:
                if node.session is not None:
                    node.session.send(Stop(reason="launch failed"))
            error = self._many(fatal() or [exc for _, exc in failures])
            if not fatal():
                error = type(error)(error.host, f"{error.message}; only {len(up)} of the "
                                                f"{need} nodes needed (--nnodes) could start")
            raise error
        for node, exc in failures:
            self.left_out.append((node.plan.host.label, exc.message))
            self._notice("left_out", f"leaving out {node.plan.host.label}: {exc.message}",
                         host=node.plan.host.label)
        if elastic:
            self._renumber([n for n in self.nodes if n in up])

    async def _up(self, node: NodeStatus, limit: asyncio.Semaphore) -> None:
        label = node.plan.host.label
        node.conn = await connect(node.plan.host, self.ssh, limit)
        self.emit(events.NodeConnected(**self._about(node), address=node.conn.address))
        node.state = NodeState.STARTING

        def shell_said(text: str, lines: list[str]) -> None:
            self._notice("login_shell", text, lines, host=label)

        node.session = AgentSession(node.conn.conn, label, node.plan.python,
                                    notice=shell_said)
        hello = await node.session.start(self.plan.config.timeouts.hello, node.plan.workdir)
        self.emit(events.AgentUp(**self._about(node), python=hello.python,
                                 python_version=hello.python_version, torch=hello.torch,
                                 hostname=hello.hostname, pid=hello.pid,
                                 torch_version=hello.torch_version,
                                 cuda_version=hello.cuda_version, modules=dict(hello.modules)))
        if not hello.workdir_ok:
            raise NodeSetupError(
                label, f"working directory {node.plan.workdir} does not exist on this node "
                "(--workdir, or workdir in the config)",
            )
        if self.plan.config.mode == "torchrun" and not hello.torch:
            raise NodeSetupError(
                label, f"torch is not installed for {sanitize(hello.python)} "
                "on this node "
                "(install it there, or point --python at an interpreter that has it)",
            )

    def _preflight(self) -> None:
        """Every node is up and nothing is started yet: refuse here what would fail
        later on one node (sshrun.preflight), before any spec is sent."""
        hellos = [preflight.NodeHello(n.plan.host.label, n.session.hello)
                  for n in self.nodes if n.session is not None and n.session.hello is not None]
        problems = preflight.check_hellos(hellos, self.plan.config)
        if problems:
            for node in self.nodes:
                if node.session is not None:
                    node.session.send(Stop(reason="launch refused"))
            raise preflight.refusal(problems)

    def _notice(self, kind: str, text: str, lines: Sequence[str] = (),
                host: str | None = None) -> None:
        """One of sshrun's notices, as an event: the console report prints it."""
        self.emit(events.Notice(job=self.plan.job_id, attempt=self.plan.attempt, kind=kind,
                                text=sanitize(text), lines=tuple(sanitize(t) for t in lines),
                                host=host))

    def _about(self, node: NodeStatus) -> dict[str, Any]:
        """The fields every node's event starts with."""
        return {"job": self.plan.job_id, "attempt": self.plan.attempt,
                "host": node.plan.host.label, "node": node.plan.index}

    def _renumber(self, members: list[NodeStatus]) -> None:
        """The nodes that came up are the job: node ranks 0..n-1 in hostfile order."""
        config = replace(self.plan.config, hosts=tuple(n.plan.host for n in members))
        self.plan = plan_job(config, self.plan.job_id, self.plan.attempt)
        for node, node_plan in zip(members, self.plan.nodes, strict=True):
            node.plan = node_plan
        self.nodes = members

    def endpoint(self) -> tuple[str, int | None]:
        given = given_endpoint(self.plan.config)
        if given is not None:
            return given
        first = self.nodes[0]
        assert first.conn is not None and first.session is not None
        assert first.session.hello is not None
        return first.conn.address, first.session.hello.free_port

    def spec(self, node: NodeStatus, endpoint: tuple[str, int | None]) -> Spec:
        config = self.plan.config
        t = config.timeouts
        spec = Spec(
            mode=config.mode, tag=node.plan.tag, env=dict(node.plan.env),
            cwd=node.plan.workdir, grace=t.grace, hb_timeout=t.heartbeat_timeout,
            hb_period=t.heartbeat,
        )
        if config.mode == "torchrun":
            assert node.conn is not None
            return replace(spec, torchrun_args=tuple(torchrun_args(
                self.plan, node.plan, endpoint, node.conn.address
            )), target=tuple(target_args(config)), rank_env=rank_env(self.plan))
        return replace(spec, argv=tuple(config.target))

    async def _run_all(self) -> None:
        endpoint = self.endpoint()
        for node in self.nodes:
            assert node.session is not None
            node.state = NodeState.RUNNING
            # Silence is measured from here: nodes that said hello early
            # waited for the others without anything to say.
            node.session.last_heard = time.monotonic()
            node.session.send(self.spec(node, endpoint))
        async with asyncio.TaskGroup() as tg:
            beat = tg.create_task(self._heartbeats())
            await asyncio.gather(*(self._pump(node) for node in self.nodes))
            beat.cancel()

    async def _heartbeats(self) -> None:
        """Ours to every agent; and theirs checked: a silent running node is lost."""
        t = self.plan.config.timeouts
        last = time.monotonic()
        while True:
            await asyncio.sleep(t.heartbeat)
            now = time.monotonic()
            # The head itself did not run (SIGSTOP, a suspended laptop, a
            # loop stall): that time is no node's silence.
            stalled = now - last - t.heartbeat
            last = now
            for node in self.nodes:
                if node.session is None:
                    continue
                if stalled > t.heartbeat:
                    node.session.last_heard = min(now, node.session.last_heard + stalled)
                if node.state in (NodeState.RUNNING, NodeState.STOPPING):
                    node.session.send(Heartbeat())
                if node.session.held:
                    continue  # we hold it back: SSH keepalives still catch a dead link
                silent = now - node.session.last_heard
                if node.state == NodeState.RUNNING and silent > t.heartbeat_timeout:
                    self._lose(node, f"lost: no word from the node for {silent:.0f}s "
                                     f"(--heartbeat-timeout {t.heartbeat_timeout:g}): "
                                     "frozen, crashed or cut off")

    def _lose(self, node: NodeStatus, message: str) -> None:
        node.state = NodeState.LOST
        self.emit(events.NodeLost(**self._about(node), why=message))
        self._fail(Failure(node.plan.index, node.plan.host.label, FailureKind.LOST,
                           message=message))
        if node.conn is not None:
            # Nothing comes back from it, not even the end of a close handshake.
            node.conn.conn.abort()

    async def _pump(self, node: NodeStatus) -> None:
        assert node.session is not None
        label = node.plan.host.label
        index = node.plan.index

        tap = self.tap

        def on_output(rank: int, stream: int, data: bytes, when: float) -> None:
            if tap is not None:
                tap.feed(index, label, rank, stream, data, when)
            self.printer.feed(index, label, rank, stream, data)

        def on_event(event: Message) -> None:
            self._on_event(node, event)

        stop_budget = self.plan.config.timeouts.grace + 15.0
        pump = asyncio.ensure_future(node.session.pump(on_output, on_event, self.console))
        try:
            # While the job runs the pump may take as long as the job; once a
            # stop begins, the node has the grace period plus a margin.
            stop_wait = asyncio.ensure_future(self._stop_event.wait())
            done, _ = await asyncio.wait({pump, stop_wait}, return_when=asyncio.FIRST_COMPLETED)
            stop_wait.cancel()
            if pump not in done and not await self._within(pump, stop_budget):
                self._notice(
                    "stop_unconfirmed",
                    f"{label}: agent did not confirm the stop within {stop_budget:.0f}s; "
                    "closing its connection (it tears down on its own)", host=label)
            stderr = await pump if pump.done() else None
        finally:
            if not pump.done():
                pump.cancel()
        self.printer.flush_node(index)
        if tap is not None:
            tap.flush_node(index)
        if node.state not in (NodeState.EXITED, NodeState.LOST):
            node.state = NodeState.LOST
            detail = f": {self.printer.redact(stderr.splitlines()[-1])}" if stderr else ""
            message = f"connection to the agent lost{detail}"
            self.emit(events.NodeLost(**self._about(node), why=message))
            self._fail(Failure(index, label, FailureKind.LOST, message=message))

    async def _within(self, pump: asyncio.Future[Any], budget: float) -> bool:
        """Wait for ``pump`` for ``budget`` seconds, not counting the time our own
        console held its output back (that wait is ours, not the node's), unless
        a second Ctrl-C asked to end now."""
        def held() -> float:
            return self.console.held_seconds() if self.console and not self._kill else 0.0

        start, held_start = time.monotonic(), held()
        while True:
            left = budget - (time.monotonic() - start) + (held() - held_start)
            if left <= 0:
                return False
            done, _ = await asyncio.wait({pump}, timeout=left)
            if done:
                return True

    def _on_event(self, node: NodeStatus, event: Message) -> None:
        index = node.plan.index
        label = node.plan.host.label
        if isinstance(event, Started):
            self.emit(events.RanksStarted(**self._about(node), pid=event.pid,
                                          argv0=event.argv0))
        elif isinstance(event, RankExit):
            node.rank_exits[event.rank] = (event.local_rank, event.code)
            self.emit(events.RankExited(**self._about(node), rank=event.rank,
                                        local_rank=event.local_rank, code=event.code,
                                        signal=_signal_name(event.code)))
            if event.code != 0:
                self._fail(Failure(
                    index, label,
                    FailureKind.EXIT if event.code is not None else FailureKind.SIGNAL,
                    rank=event.rank, local_rank=event.local_rank, code=event.code,
                    traceback=sanitize(self.printer.redact(event.traceback),
                                       colour=True, multiline=True)
                    if event.traceback else None,
                ))
        elif isinstance(event, Error):
            self._fail(Failure(index, label, FailureKind.ERROR,
                               message=sanitize(self.printer.redact(event.message))))
        elif isinstance(event, Stopping):
            self._agent_stopped(node, event.reason)
        elif isinstance(event, Exited):
            node.state = NodeState.EXITED
            node.exit_code = event.code
            node.swept = {"terminated": event.swept.terminated, "killed": event.swept.killed,
                          "left": event.swept.left}
            self.emit(events.NodeSwept(**self._about(node), terminated=event.swept.terminated,
                                       killed=event.swept.killed, left=event.swept.left))
            self._on_exited(node, event)

    def _on_exited(self, node: NodeStatus, event: Exited) -> None:
        index = node.plan.index
        label = node.plan.host.label
        first = self.first_failure
        if (first is not None and first.node == index and first.code is None
                and first.rank is not None):
            # A rank that died without reporting: torchrun knows its signal.
            info = event.failures.get(first.rank)
            if info is not None and info.exitcode is not None:
                first.code = 128 - info.exitcode if info.exitcode < 0 else info.exitcode
        stopped = event.stopped
        if stopped is not None and self._agent_stopped(node, stopped):
            return
        code = node.exit_code or 0
        if code != 0 and stopped is None:
            if self.plan.config.mode == "exec":
                self._fail(Failure(index, label, FailureKind.EXIT, code=code))
            else:
                self._fail(Failure(index, label, FailureKind.LAUNCHER, code=code,
                                   message="torchrun failed before or outside the ranks"))

    def _agent_stopped(self, node: NodeStatus, reason: str) -> bool:
        """An agent stops its job: a failure unless the head asked for a stop.

        An agent stops on its own when it heard nothing from the head for
        the heartbeat timeout, or its stdin closed: the job did not finish,
        whatever its ranks' exit statuses say afterwards.
        """
        if self.stop_reason is not None:
            return False
        self.emit(events.Stopping(**self._about(node), reason=str(reason), by="agent"))
        self._fail(Failure(node.plan.index, node.plan.host.label, FailureKind.LOST, message=(
            f"stopped by its agent: {sanitize(self.printer.redact(str(reason)))}")))
        return True

    def _fail(self, failure: Failure) -> None:
        if self.first_failure is None and self.stop_reason is None:
            self.first_failure = failure
            where = f"rank {failure.rank}" if failure.rank is not None else "node"
            self.stop(f"{failure.host} {where} failed")

    def _many(self, failures: Sequence[SSHError | NodeSetupError]) -> SSHError | NodeSetupError:
        """One error for the user: the first host's, and how many more failed."""
        order = [n.plan.host.label for n in self.nodes]
        failures = sorted(failures, key=lambda e: order.index(e.host))
        first = failures[0]
        if len(failures) == 1:
            return first
        others = ", ".join(f.host for f in failures[1:])
        return type(first)(first.host, f"{first.message} (and {len(failures) - 1} more: {others})")

    async def _until_stopped(self, work: asyncio.Future[Any] | Any) -> None:
        task = asyncio.ensure_future(work)
        stop_wait = asyncio.ensure_future(self._stop_event.wait())
        try:
            await asyncio.wait({task, stop_wait}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop_wait.cancel()
            if not task.done():
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        if not task.cancelled() and task.exception() is not None:
            # A bug or an unexpected failure must surface, not be skipped over.
            raise task.exception()


def _signal_name(code: int | None) -> str | None:
    """``SIGKILL`` for a shell-style status of 128+9; None when no signal ended it."""
    if code is not None and code > 128:
        with contextlib.suppress(ValueError):
            return signal.Signals(code - 128).name
    return None
