"""Bring an attempt's nodes up: connect, start each agent, take spares where allowed.

Connecting and starting are one pipeline per node (handshakes bounded by
``--max-handshakes``): each node's agent starts as soon as its connection is
up, and says hello (its interpreter, whether torch is there, a free port).
A node is up once its hello says it can run the job.

Fixed size: any node that fails fails the launch. Elastic (``--nnodes
MIN:MAX``): a node that cannot be reached or set up is left out and the next
spare host takes its place; the launch fails only with fewer than MIN nodes,
or on a host-key or authentication error, which no spare should paper over.
The nodes that came up are renumbered 0..n-1 in hostfile order.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Sequence
from dataclasses import replace

from sshrun import events, preflight
from sshrun.errors import AuthError, HostKeyError, NodeSetupError, SSHError
from sshrun.gang import Gang, NodeStatus
from sshrun.node.protocol import Heartbeat, Stop
from sshrun.nodeset import fold_hosts
from sshrun.outcome import NodeState
from sshrun.plan import plan_job
from sshrun.sanitize import sanitize
from sshrun.session import AgentSession
from sshrun.sync_meter import Bandwidth, SyncMeter
from sshrun.sync_transfer import sync_to
from sshrun.transport import SSHSettings, connect

# How often, at most, the sync's progress is told (the bar's redraws, the events).
PROGRESS_EVERY = 0.5


async def bring_up(gang: Gang, ssh: SSHSettings) -> None:
    """Connect to every node and start its agent, each node as soon as it can.

    Returns when the members are up or the stop began; raises the launch's
    error (the first host's, naming how many more failed) when it cannot start.
    Meanwhile the agents that are up hear the head's heartbeats: an agent
    gives up on a silent head, and bringing up hundreds of nodes can take
    longer than its patience.
    """
    error: SSHError | NodeSetupError | None = None
    meter = SyncMeter()
    rate = gang.plan.config.sync_bwlimit
    # One limit for the head's uplink, shared by the nodes in turns (sshrun.sync_meter).
    bandwidth = Bandwidth(rate) if rate is not None else None
    async with asyncio.TaskGroup() as tg:
        beat = tg.create_task(_heartbeats(gang))
        progress = tg.create_task(_sync_progress(gang, meter))
        try:
            await _bring_up(gang, ssh, meter, bandwidth)
        except (SSHError, NodeSetupError) as exc:
            error = exc
        finally:
            beat.cancel()
            progress.cancel()
    if error is not None:
        raise error


async def _heartbeats(gang: Gang) -> None:
    while True:
        await asyncio.sleep(gang.plan.config.timeouts.heartbeat)
        for node in gang.nodes:
            if node.session is not None and node.session.hello is not None:
                node.session.send(Heartbeat())


async def _sync_progress(gang: Gang, meter: SyncMeter) -> None:
    """``sync_progress``: while the nodes sync, every ``PROGRESS_EVERY`` seconds
    when something moved, and a last one when bring-up is over (cancelled)."""
    if gang.plan.config.sync is None:
        return
    told = 0

    def tell() -> None:
        nonlocal told
        if meter.changes != told:
            told = meter.changes
            gang.emit(events.SyncProgress(job=gang.plan.job_id, attempt=gang.plan.attempt,
                                          **dataclasses.asdict(meter.counts())))

    try:
        while True:
            await asyncio.sleep(PROGRESS_EVERY)
            tell()
    finally:
        tell()


async def _bring_up(gang: Gang, ssh: SSHSettings, meter: SyncMeter,
                    bandwidth: Bandwidth | None) -> None:
    elastic = gang.plan.config.membership
    want = min(elastic.max_nodes, len(gang.nodes)) if elastic else len(gang.nodes)
    need = elastic.min_nodes if elastic else len(gang.nodes)
    limit = asyncio.Semaphore(ssh.max_handshakes)
    queue = list(gang.nodes)
    up: list[NodeStatus] = []
    failures: list[tuple[NodeStatus, SSHError | NodeSetupError]] = []

    async def one(node: NodeStatus) -> None:
        try:
            await _up(gang, node, ssh, limit, meter, bandwidth)
            up.append(node)
        except (SSHError, NodeSetupError) as exc:
            failures.append((node, exc))

    def fatal() -> list[SSHError | NodeSetupError]:
        return [exc for _, exc in failures
                if not elastic or isinstance(exc, (HostKeyError, AuthError))]

    while len(up) < want and queue and gang.stop_reason is None and not fatal():
        batch = queue[: want - len(up)]
        del queue[: len(batch)]
        await gang.until_stopped(asyncio.gather(*(one(n) for n in batch)))
    if gang.stop_reason is not None:
        return
    if fatal() or len(up) < need:
        for node in gang.nodes:
            if node.session is not None:
                node.session.send(Stop(reason="launch failed"))
        error = _many(gang, fatal() or [exc for _, exc in failures])
        if not fatal():
            error = type(error)(error.host, f"{error.message}; only {len(up)} of the "
                                            f"{need} nodes needed (--nnodes) could start")
        raise error
    for node, exc in failures:
        gang.left_out.append((node.plan.host.label, exc.message))
        gang.notice("left_out", f"leaving out {node.plan.host.label}: {exc.message}",
                    host=node.plan.host.label)
    if elastic:
        _renumber(gang, [n for n in gang.nodes if n in up])


async def _up(gang: Gang, node: NodeStatus, ssh: SSHSettings,
              limit: asyncio.Semaphore, meter: SyncMeter,
              bandwidth: Bandwidth | None) -> None:
    label = node.plan.host.label
    node.conn = await connect(node.plan.host, ssh, limit)
    gang.emit(events.NodeConnected(**gang.about(node), address=node.conn.address))
    node.state = NodeState.STARTING
    tree = gang.plan.config.sync
    if tree is not None:
        # Before the agent: its hello checks the working directory the sync makes.
        assert node.plan.workdir is not None  # settings require a destination with --sync
        gang.emit(events.SyncStarted(**gang.about(node), files=tree.file_count,
                                     bytes=tree.total_bytes, dest=node.plan.workdir))
        done = await sync_to(node.conn.conn, label, node.plan.python, node.plan.workdir, tree,
                             gang.plan.config.timeouts.hello, meter, bandwidth)
        gang.emit(events.SyncFinished(**gang.about(node), files=done.files, bytes=done.bytes,
                                      deleted=done.deleted, path=done.path,
                                      seconds=round(done.seconds, 3),
                                      wire_sent=done.wire_sent,
                                      wire_received=done.wire_received))

    def shell_said(text: str, lines: list[str]) -> None:
        gang.notice("login_shell", text, lines, host=label)

    node.session = AgentSession(node.conn.conn, label, node.plan.python,
                                notice=shell_said)
    hello = await node.session.start(gang.plan.config.timeouts.hello, node.plan.workdir,
                                     site=gang.plan.config.mode != "exec")
    gang.emit(events.AgentUp(**gang.about(node), python=hello.python,
                             python_version=hello.python_version, torch=hello.torch,
                             hostname=hello.hostname, pid=hello.pid,
                             torch_version=hello.torch_version,
                             cuda_version=hello.cuda_version, modules=dict(hello.modules)))
    if not hello.workdir_ok:
        raise NodeSetupError(
            label, f"working directory {node.plan.workdir} does not exist on this node "
            "(--workdir, or workdir in the config)",
        )
    if gang.plan.config.mode == "torchrun" and not hello.torch:
        raise NodeSetupError(
            label, f"torch is not installed for {sanitize(hello.python)} "
            "on this node "
            "(install it there, or point --python at an interpreter that has it)",
        )


def _renumber(gang: Gang, members: list[NodeStatus]) -> None:
    """The nodes that came up are the job: node ranks 0..n-1 in hostfile order."""
    config = replace(gang.plan.config, hosts=tuple(n.plan.host for n in members))
    gang.plan = plan_job(config, gang.plan.job_id, gang.plan.attempt)
    for node, node_plan in zip(members, gang.plan.nodes, strict=True):
        node.plan = node_plan
    gang.nodes = members


def _many(gang: Gang,
          failures: Sequence[SSHError | NodeSetupError]) -> SSHError | NodeSetupError:
    """One error for the user: the first host's, and how many more failed."""
    order = [n.plan.host.label for n in gang.nodes]
    failures = sorted(failures, key=lambda e: order.index(e.host))
    first = failures[0]
    if len(failures) == 1:
        return first
    others = ", ".join(f.host for f in failures[1:])
    return type(first)(first.host, f"{first.message} (and {len(failures) - 1} more: {others})")


def check_before_start(gang: Gang) -> None:
    """Every node is up and nothing is started yet: refuse here what would fail
    later on one node (sshrun.preflight), before any spec is sent."""
    hellos = [preflight.NodeHello(n.plan.host.label, n.session.hello)
              for n in gang.nodes if n.session is not None and n.session.hello is not None]
    problems = preflight.check_hellos(hellos, gang.plan.config)
    mismatch = preflight.version_mismatch(hellos)
    if mismatch is not None and not problems:
        # --allow-version-mismatch: the user knows, but it is said once.
        gang.notice("version_mismatch", (
            f"warning: {fold_hosts(mismatch.hosts)}: {mismatch.theirs()}, but "
            f"{mismatch.node0()} (--allow-version-mismatch)"))
    if problems:
        for node in gang.nodes:
            if node.session is not None:
                node.session.send(Stop(reason="launch refused"))
        raise preflight.refusal(problems)
