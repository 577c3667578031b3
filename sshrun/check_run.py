"""``sshrun check``: the agent on every node at once, no job started; one row per node.

The same machinery as ``sshrun exec``: a connection per node
(``sshrun.transport``, handshakes bounded), the agent and its hello
(``sshrun.session``), then one exec spec per node. What it runs is the probe
``sshrun/node/check_probe.py``, whose source travels in the spec's argv over
stdin (``PYTHON -c SOURCE ARGS``, under the job's interpreter), like any
exec command.

Per node, concurrently: connect, hello, then pings (the node's clock and the
SSH round trip to the agent) until every node has answered or given up. Once
all have, the rendezvous the job would use (``--rdzv-endpoint``, else node
0's address as the head reached it and the free port its hello names) is the
probe's: node 0 listens on its port, every other node connects to it. The
probe's JSON line, hello and the pings make the node's
:class:`sshrun.check_result.NodeCheck`.

Bounded: connecting by ``--connect-timeout``, hello by its timeout, the probe
by ``CheckOptions.probe_budget``; a node past a bound is a row saying so, and
its agent is killed and its connection dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from dataclasses import dataclass, field, replace

from sshrun import agent
from sshrun import check_result as cr
from sshrun.errors import SSHError, SshrunError
from sshrun.frozen_dataclass import frozen_dataclass
from sshrun.node.protocol import (
    SOURCE_LAUNCHER,
    Error,
    Exited,
    Hello,
    Kill,
    Message,
    Ping,
    Pong,
    Spec,
)
from sshrun.plan import JobPlan, NodePlan, given_endpoint
from sshrun.sanitize import sanitize
from sshrun.session import AgentSession
from sshrun.transport import NodeConnection, SSHSettings, connect

PROBE_SOURCE = agent.source("check_probe")
PING_GAP = 0.2  # between pings while other nodes are still coming up
PROBE_OUTPUT_MAX = 1 << 20
CLOSE_TIMEOUT = 5.0


@frozen_dataclass
class CheckOptions:
    pings: int = 5  # clock samples at least
    network_timeout: float = 5.0  # for each node to reach node 0
    collective: float = 0.0  # seconds for the all_reduce; 0: none
    nccl_budget: float = 60.0  # importing torch to ask NCCL's version

    @property
    def probe_budget(self) -> float:
        """How long a probe may run: its own bounds, plus the interpreter's start."""
        return self.network_timeout + self.collective + self.nccl_budget + 30.0


@dataclass
class _Node:
    plan: NodePlan
    synced: bool = False  # the job syncs its tree into plan.workdir
    conn: NodeConnection | None = None
    session: AgentSession | None = None
    hello: Hello | None = None
    error: str | None = None
    unreachable: bool = False
    samples: list[cr.ClockSample] = field(default_factory=list)
    pongs: dict[int, asyncio.Future[tuple[float, float]]] = field(default_factory=dict)
    stdout: bytearray = field(default_factory=bytearray)
    stderr: bytearray = field(default_factory=bytearray)
    exited: asyncio.Future[Exited | str] | None = None
    pump: asyncio.Task[str | None] | None = None


async def run_check(plan: JobPlan, ssh: SSHSettings, options: CheckOptions) -> list[cr.NodeCheck]:
    """One row per node of ``plan``, in node order; never longer than the bounds."""
    nodes = [_Node(p, synced=plan.config.sync is not None) for p in plan.nodes]
    limit = asyncio.Semaphore(ssh.max_handshakes)
    timeouts = plan.config.timeouts
    all_up = _Arrivals(len(nodes))
    try:
        async with asyncio.TaskGroup() as group:
            for n in nodes:
                group.create_task(_up(n, ssh, limit, timeouts.connect + timeouts.hello,
                                      timeouts.hello, options, all_up))
        live = [n for n in nodes if n.error is None]
        if live and live[0] is nodes[0]:
            first = nodes[0]
            assert first.conn is not None and first.hello is not None
            # What the job's rendezvous would use: the given endpoint, else node 0's
            # address as the head reached it and a port free there.
            where = given_endpoint(plan.config) or (first.conn.address, first.hello.free_port)
            async with asyncio.TaskGroup() as group:
                for rank, node in enumerate(live):
                    group.create_task(_probe(node, rank, len(live), where, options))
        else:
            # Without node 0 there is nothing to test the network against.
            async with asyncio.TaskGroup() as group:
                for node in live:
                    group.create_task(_probe(node, 0, 1, ("", 0), options))
    finally:
        await _close(nodes)
    return [_row(n) for n in nodes]


class _Arrivals:
    """Set once every node has said hello or given up."""

    def __init__(self, count: int) -> None:
        self.left = count
        self.all = asyncio.Event()

    def one(self) -> None:
        self.left -= 1
        if self.left <= 0:
            self.all.set()


async def _up(node: _Node, ssh: SSHSettings, limit: asyncio.Semaphore, budget: float,
              hello_timeout: float, options: CheckOptions, arrivals: _Arrivals) -> None:
    try:
        up = await _hello(node, ssh, limit, budget, hello_timeout)
    finally:
        arrivals.one()
    if up:
        await _pings(node, options.pings, arrivals.all, hello_timeout)


async def _hello(node: _Node, ssh: SSHSettings, limit: asyncio.Semaphore, budget: float,
                 hello_timeout: float) -> bool:
    """Connect and start the agent; False (and the row's error) when that failed."""
    label = node.plan.host.label
    try:
        async with asyncio.timeout(budget):
            node.conn = await connect(node.plan.host, ssh, limit)
            node.session = AgentSession(node.conn.conn, label, node.plan.python)
            # A synced working directory is the sync's to make: not missing yet.
            node.hello = await node.session.start(
                hello_timeout, None if node.synced else node.plan.workdir)
    except SSHError as exc:
        node.error, node.unreachable = f"unreachable: {exc.message}", True
        return False
    except SshrunError as exc:
        node.error = _reason(exc, label)
        return False
    except TimeoutError:
        node.error = f"no answer within {budget:.0f}s"
        node.unreachable = node.conn is None
        return False
    loop = asyncio.get_running_loop()
    node.exited = loop.create_future()
    node.pump = asyncio.create_task(node.session.pump(
        lambda rank, stream, data, when: _output(node, rank, stream, data),
        lambda event: _event(node, event)))
    node.pump.add_done_callback(lambda _: _closed(node))
    return True


def _closed(node: _Node) -> None:
    """The agent's channel ended: whoever still waits on it hears so now, not at its bound."""
    for answer in node.pongs.values():
        if not answer.done():
            answer.set_exception(ConnectionResetError("the connection closed"))
    node.pongs.clear()
    if node.exited is not None and not node.exited.done():
        node.exited.set_result("the connection closed before the check ended")


def _reason(exc: SshrunError, label: str) -> str:
    text = str(exc)
    return text[len(label) + 2:] if text.startswith(label + ": ") else text


async def _pings(node: _Node, count: int, all_up: asyncio.Event, timeout: float) -> None:
    """At least ``count`` clock samples, and more while other nodes come up (which also
    keeps the agent hearing from the head)."""
    assert node.session is not None
    loop = asyncio.get_running_loop()
    seq = 0
    with contextlib.suppress(TimeoutError, ConnectionResetError):
        while seq < count or not all_up.is_set():
            answer = node.pongs[seq] = loop.create_future()
            sent = time.time()
            node.session.send(Ping(seq=seq))
            async with asyncio.timeout(timeout):
                node_time, received = await answer
            node.samples.append(cr.ClockSample(sent, node_time, received))
            seq += 1
            if seq >= count:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(PING_GAP):
                        await all_up.wait()


def _output(node: _Node, rank: int, stream: int, data: bytes) -> None:
    if rank != SOURCE_LAUNCHER:
        return
    into = node.stdout if stream == 1 else node.stderr
    if len(into) < PROBE_OUTPUT_MAX:
        into += data


def _event(node: _Node, event: Message) -> None:
    if isinstance(event, Pong):
        answer = node.pongs.pop(event.seq, None)
        if answer is not None and not answer.done():
            # The head's receive time is taken here, not when the waiter wakes
            # (on a loaded head that can be much later).
            answer.set_result((event.time, time.time()))
    elif isinstance(event, (Exited, Error)) and node.exited is not None \
            and not node.exited.done():
        node.exited.set_result(event if isinstance(event, Exited) else event.message)


async def _probe(node: _Node, rank: int, count: int, where: tuple[str, int],
                 options: CheckOptions) -> None:
    assert node.session is not None and node.hello is not None and node.exited is not None
    workdir = node.plan.workdir if node.hello.workdir_ok and not node.synced else None
    args = {"node": rank, "nodes": count, "addr": where[0], "port": where[1],
            "timeout": options.network_timeout,
            # free space where the job's files will be, the synced copy's too
            "workdir": node.plan.workdir if node.hello.workdir_ok else None,
            "python": node.plan.python, "nccl": node.hello.cuda_version is not None,
            "collective": options.collective}
    budget = options.probe_budget
    node.session.send(Spec(
        mode="exec", tag=node.plan.tag, env=dict(node.plan.env), cwd=workdir, grace=1.0,
        hb_timeout=budget + 30.0, hb_period=0.0,
        argv=(node.plan.python, "-c", PROBE_SOURCE, json.dumps(args))))
    try:
        async with asyncio.timeout(budget):
            done = await node.exited
    except TimeoutError:
        node.session.send(Kill(reason="sshrun check: the probe took too long"))
        node.error = f"the check did not finish within {budget:.0f}s"
        return
    if isinstance(done, str):
        node.error = f"the check did not run: {sanitize(done)}"
        return


async def _close(nodes: list[_Node]) -> None:
    for node in nodes:
        if node.session is not None:
            node.session.close()
        if node.conn is not None:
            node.conn.conn.close()
    conns = [n.conn.conn for n in nodes if n.conn is not None]
    pumps = [n.pump for n in nodes if n.pump is not None]
    try:
        async with asyncio.timeout(CLOSE_TIMEOUT):
            await asyncio.gather(*(c.wait_closed() for c in conns), *pumps,
                                 return_exceptions=True)
    except TimeoutError:
        for conn in conns:
            conn.abort()
        for pump in pumps:
            pump.cancel()
        await asyncio.gather(*pumps, return_exceptions=True)


def _probe_json(node: _Node) -> dict[str, object] | str:
    text = node.stdout.decode("utf-8", "replace").strip()
    if not text:
        last = node.stderr.decode("utf-8", "replace").strip().splitlines()
        return sanitize("the check printed nothing" + (f": {last[-1]}" if last else ""))
    try:
        data = json.loads(text.splitlines()[-1])
    except ValueError:
        return sanitize(f"the check printed what is not JSON: {text[:200]}")
    return data if isinstance(data, dict) else "the check printed what is not an object"


def _row(node: _Node) -> cr.NodeCheck:
    p = node.plan
    row = cr.NodeCheck(node=p.index, host=p.host.label, slots=p.nproc, workdir=p.workdir,
                       synced=node.synced,
                       address=node.conn.address if node.conn is not None else None,
                       error=node.error, unreachable=node.unreachable)
    hello = node.hello
    if hello is not None:
        clock = cr.clock_offset(node.samples)
        row = replace(row, python=sanitize(hello.python),
                      python_version=sanitize(hello.python_version), torch=hello.torch,
                      torch_version=_clean(hello.torch_version),
                      cuda_version=_clean(hello.cuda_version), workdir_ok=hello.workdir_ok,
                      rtt=clock.rtt if clock else None, offset=clock.offset if clock else None)
    if node.error is not None or hello is None:
        return row
    data = _probe_json(node)
    if isinstance(data, str):
        return replace(row, error=data)
    return cr.with_probe(row, data)


def _clean(text: str | None) -> str | None:
    return sanitize(text) if text is not None else None
