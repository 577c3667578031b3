"""Each node while the job runs: specs out, frames in, heartbeats, liveness.

Every node that is up gets its spec (node 0's hello gave the rendezvous
port), then one pump per node reads its frames: output to the tap and the
printer, events to the node's state machine::

    running -> exited | lost        (stopping in between while the gang stops)

A rank's non-zero exit or signal, torchrun failing outside the ranks, an
agent's error, an agent stopping on its own, a silent node and a broken
connection are failures of the gang (``Gang.fail``), each of its kind
(sshrun.failure.FailureKind). A running node from which nothing (output,
event or heartbeat) has arrived for ``--heartbeat-timeout`` seconds is lost:
its connection is aborted at once, since a frozen or black-holed peer cannot
take part in a close. Once the stop begins, a node has the grace period plus
a margin to confirm it.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time

from sshrun import events
from sshrun.failure import Failure, FailureKind
from sshrun.gang import Gang, NodeStatus
from sshrun.node.protocol import (
    Error,
    Exited,
    Heartbeat,
    Message,
    RankExit,
    RankStarted,
    RendezvousProbe,
    Spec,
    Started,
    Stopping,
)
from sshrun.node.records import replace
from sshrun.outcome import NodeState
from sshrun.plan import (
    format_endpoint,
    given_endpoint,
    probe_endpoint,
    rank_env,
    target_args,
    torchrun_args,
)
from sshrun.sanitize import sanitize

# What a node has, beyond the grace period, to confirm a stop.
STOP_MARGIN = 15.0


def endpoint(gang: Gang) -> tuple[str, int | None]:
    """The rendezvous: the configured endpoint, else node 0's address and free port."""
    given = given_endpoint(gang.plan.config)
    if given is not None:
        return given
    first = gang.nodes[0]
    assert first.conn is not None and first.session is not None
    assert first.session.hello is not None
    return first.conn.address, first.session.hello.free_port


def spec(gang: Gang, node: NodeStatus, rdzv: tuple[str, int | None]) -> Spec:
    """What ``node``'s agent runs, and how it watches the head."""
    config = gang.plan.config
    t = config.timeouts
    message = Spec(
        mode=config.mode, tag=node.plan.tag, env=dict(node.plan.env),
        cwd=node.plan.workdir, grace=t.grace, hb_timeout=t.heartbeat_timeout,
        hb_period=t.heartbeat,
    )
    if config.mode == "torchrun":
        assert node.conn is not None
        probe = probe_endpoint(gang.plan, node.plan, rdzv)
        node.probe = format_endpoint(*probe) if probe is not None else None
        return replace(message, torchrun_args=tuple(torchrun_args(
            gang.plan, node.plan, rdzv, node.conn.address
        )), target=tuple(target_args(config)), rank_env=rank_env(gang.plan),
            probe_host=probe[0] if probe else None, probe_port=probe[1] if probe else None)
    return replace(message, argv=tuple(config.target), passthrough=True)


async def run_nodes(gang: Gang) -> None:
    """Send every node its spec, then pump them all until each has ended."""
    rdzv = endpoint(gang)
    for node in gang.nodes:
        assert node.session is not None
        node.state = NodeState.RUNNING
        # Silence is measured from here: nodes that said hello early
        # waited for the others without anything to say.
        node.session.last_heard = time.monotonic()
        node.session.send(spec(gang, node, rdzv))
    async with asyncio.TaskGroup() as tg:
        beat = tg.create_task(_heartbeats(gang))
        await asyncio.gather(*(_pump(gang, node) for node in gang.nodes))
        beat.cancel()


async def _heartbeats(gang: Gang) -> None:
    """Ours to every agent; and theirs checked: a silent running node is lost."""
    t = gang.plan.config.timeouts
    last = time.monotonic()
    while True:
        await asyncio.sleep(t.heartbeat)
        now = time.monotonic()
        # The head itself did not run (SIGSTOP, a suspended laptop, a
        # loop stall): that time is no node's silence.
        stalled = now - last - t.heartbeat
        last = now
        for node in gang.nodes:
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
                _lose(gang, node, f"lost: no word from the node for {silent:.0f}s "
                                  f"(--heartbeat-timeout {t.heartbeat_timeout:g}): "
                                  "frozen, crashed or cut off")


def _lose(gang: Gang, node: NodeStatus, message: str) -> None:
    node.state = NodeState.LOST
    gang.emit(events.NodeLost(**gang.about(node), why=message))
    gang.fail(Failure(node.plan.index, node.plan.host.label, FailureKind.LOST,
                      message=message))
    if node.conn is not None:
        # Nothing comes back from it, not even the end of a close handshake.
        node.conn.conn.abort()


async def _pump(gang: Gang, node: NodeStatus) -> None:
    assert node.session is not None
    label = node.plan.host.label
    index = node.plan.index
    printer = gang.printer
    tap = gang.tap

    def on_output(rank: int, stream: int, data: bytes, when: float) -> None:
        if tap is not None:
            tap.feed(index, label, rank, stream, data, when)
        printer.feed(index, label, rank, stream, data, when)

    def on_event(event: Message) -> None:
        _on_event(gang, node, event)

    stop_budget = gang.plan.config.timeouts.grace + STOP_MARGIN
    pump = asyncio.ensure_future(node.session.pump(on_output, on_event, gang.console))
    try:
        # While the job runs the pump may take as long as the job; once a
        # stop begins, the node has the grace period plus a margin.
        stop_wait = asyncio.ensure_future(gang.stopped.wait())
        done, _ = await asyncio.wait({pump, stop_wait}, return_when=asyncio.FIRST_COMPLETED)
        stop_wait.cancel()
        if pump not in done and not await gang.within(pump, stop_budget):
            gang.notice(
                "stop_unconfirmed",
                f"{label}: agent did not confirm the stop within {stop_budget:.0f}s; "
                "closing its connection (it tears down on its own)", host=label)
        stderr = await pump if pump.done() else None
    finally:
        if not pump.done():
            pump.cancel()
    printer.flush_node(index)
    if tap is not None:
        tap.flush_node(index)
    if node.state not in (NodeState.EXITED, NodeState.LOST):
        node.state = NodeState.LOST
        detail = f": {printer.redact(stderr.splitlines()[-1])}" if stderr else ""
        message = f"connection to the agent lost{detail}"
        gang.emit(events.NodeLost(**gang.about(node), why=message))
        gang.fail(Failure(index, label, FailureKind.LOST, message=message))


def _on_event(gang: Gang, node: NodeStatus, event: Message) -> None:
    index = node.plan.index
    label = node.plan.host.label
    if isinstance(event, Started):
        gang.emit(events.RanksStarted(**gang.about(node), pid=event.pid, argv0=event.argv0))
    elif isinstance(event, RankStarted):
        gang.emit(events.RankStarted(**gang.about(node), rank=event.rank,
                                     local_rank=event.local_rank, pid=event.pid))
    elif isinstance(event, RendezvousProbe):
        if node.probe is not None:  # only the nodes told to probe do
            error = sanitize(event.error) if event.error is not None else None
            gang.emit(events.RendezvousProbe(**gang.about(node), state=sanitize(event.state),
                                             address=node.probe, error=error))
    elif isinstance(event, RankExit):
        node.rank_exits[event.rank] = (event.local_rank, event.code)
        gang.emit(events.RankExited(**gang.about(node), rank=event.rank,
                                    local_rank=event.local_rank, code=event.code,
                                    signal=signal_name(event.code)))
        if event.code != 0:
            gang.fail(Failure(
                index, label,
                FailureKind.EXIT if event.code is not None else FailureKind.SIGNAL,
                rank=event.rank, local_rank=event.local_rank, code=event.code,
                traceback=sanitize(gang.printer.redact(event.traceback),
                                   colour=True, multiline=True)
                if event.traceback else None,
            ))
    elif isinstance(event, Error):
        gang.fail(Failure(index, label, FailureKind.ERROR,
                          message=sanitize(gang.printer.redact(event.message))))
    elif isinstance(event, Stopping):
        _agent_stopped(gang, node, event.reason)
    elif isinstance(event, Exited):
        node.state = NodeState.EXITED
        node.exit_code = event.code
        node.stopped = event.stopped is not None
        node.swept = {"terminated": event.swept.terminated, "killed": event.swept.killed,
                      "left": event.swept.left}
        gang.emit(events.NodeSwept(**gang.about(node), terminated=event.swept.terminated,
                                   killed=event.swept.killed, left=event.swept.left))
        _on_exited(gang, node, event)


def _on_exited(gang: Gang, node: NodeStatus, event: Exited) -> None:
    index = node.plan.index
    label = node.plan.host.label
    first = gang.first_failure
    if (first is not None and first.node == index and first.code is None
            and first.rank is not None):
        # A rank that died without reporting: torchrun knows its signal.
        info = event.failures.get(first.rank)
        if info is not None and info.exitcode is not None:
            first.code = 128 - info.exitcode if info.exitcode < 0 else info.exitcode
    stopped = event.stopped
    if stopped is not None and _agent_stopped(gang, node, stopped):
        return
    code = node.exit_code or 0
    if code != 0 and stopped is None:
        if gang.plan.config.mode == "exec":
            gang.fail(Failure(index, label, FailureKind.EXIT, code=code))
        else:
            gang.fail(Failure(index, label, FailureKind.LAUNCHER, code=code,
                              message="torchrun failed before or outside the ranks"))


def _agent_stopped(gang: Gang, node: NodeStatus, reason: str) -> bool:
    """An agent stops its job: a failure unless the head asked for a stop.

    An agent stops on its own when it heard nothing from the head for
    the heartbeat timeout, or its stdin closed: the job did not finish,
    whatever its ranks' exit statuses say afterwards.
    """
    if gang.stop_reason is not None:
        return False
    gang.emit(events.Stopping(**gang.about(node), reason=str(reason), by="agent"))
    gang.fail(Failure(node.plan.index, node.plan.host.label, FailureKind.LOST, message=(
        f"stopped by its agent: {sanitize(gang.printer.redact(str(reason)))}")))
    return True


def signal_name(code: int | None) -> str | None:
    """``SIGKILL`` for a shell-style status of 128+9; None when no signal ended it."""
    if code is not None and code > 128:
        with contextlib.suppress(ValueError):
            return signal.Signals(code - 128).name
    return None
