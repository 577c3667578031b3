"""The runtime half in process: one attempt of sshrun.supervisor on the embedded cluster.

Each scenario runs a :class:`sshrun.supervisor.Supervisor` once, as the
launcher does, against sshrun.local_cluster (asyncssh servers in this
process on 127.0.0.2 and 127.0.0.3, generated keys, a temporary known_hosts,
the real bootstrap and agent): a clean run, a rank failing, a node whose agent
connection drops, an interrupt mid-run, a second interrupt, an agent of another
protocol version. The tests read the events it told, the outcome it returned,
what the printer and the tap got, and the final report rendered from those
outcomes. Mid-run steps wait on what the run has
shown (a line, an event), each wait bounded; nothing sleeps.
"""

from __future__ import annotations

import asyncio
import io
import os
import re
import signal
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

import pytest
from head import WORKERS
from jobprocs import assert_no_leftovers, new_canary
from rich.console import Console

from sshrun import agent, errors, report, session
from sshrun.errors import AgentError, SshrunError
from sshrun.events import (
    AgentUp,
    Event,
    NodeConnected,
    NodeEvent,
    NodeLost,
    NodeSwept,
    Notice,
    RankExited,
    RanksStarted,
    Stopping,
)
from sshrun.failure import FailureKind
from sshrun.local_cluster import LocalCluster, local_cluster
from sshrun.node.protocol import PROTOCOL_VERSION
from sshrun.outcome import NodeState, Outcome
from sshrun.output import Printer
from sshrun.plan import JobConfig, Mode, Timeouts, plan_job
from sshrun.supervisor import Supervisor
from sshrun.transport import SSHSettings

JOB = "rt"
# Every wait in a scenario: generous for torch's start on two busy cores.
DEADLINE = 120.0
DEFAULTS = Timeouts()


class Recorder:
    """The supervisor's events, and the output its tap heard, with a wait on either."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.chunks: list[tuple[int, str, int, int, bytes]] = []  # node, host, rank, stream
        self.flushed: list[int] = []
        self._changed = asyncio.Event()

    def emit(self, event: Event) -> None:
        self.events.append(event)
        self._changed.set()

    # The OutputTap the log directory would be.
    def feed(self, node: int, host: str, rank: int, stream: int, data: bytes,
             when: float) -> None:
        self.chunks.append((node, host, rank, stream, data))
        self._changed.set()

    def flush_node(self, node: int) -> None:
        self.flushed.append(node)

    def output(self, node: int, rank: int | None = None) -> bytes:
        """What node ``node`` sent (of one source, ``rank``: -1 is torchrun or the command)."""
        return b"".join(c[4] for c in self.chunks
                        if c[0] == node and (rank is None or c[2] == rank))

    async def until(self, predicate: Callable[[], bool], what: str) -> None:
        try:
            async with asyncio.timeout(DEADLINE):
                while not predicate():
                    self._changed.clear()
                    await self._changed.wait()
        except TimeoutError:
            raise AssertionError(f"no {what} within {DEADLINE}s: {self.events}") from None


@dataclass
class Run:
    """One attempt, as the tests read it."""

    canary: str
    recorder: Recorder
    outcome: Outcome | None = None
    error: SshrunError | None = None
    stdout: str = ""
    stderr: str = ""
    hello_versions: list[int] = field(default_factory=list)

    @property
    def events(self) -> list[Event]:
        return self.recorder.events

    def of(self, node: int) -> list[str]:
        """The names of node ``node``'s own events, in order."""
        return [e.name for e in self.events if isinstance(e, NodeEvent) and e.node == node]

    def names(self) -> list[str]:
        return [e.name for e in self.events]


During = Callable[[Supervisor, Recorder], Awaitable[None]]


async def _supervise(cluster: LocalCluster, target: tuple[str, ...], mode: Mode,
                     canary: str, env: tuple[tuple[str, str], ...] = (),
                     during: During | None = None, timeouts: Timeouts = DEFAULTS) -> Run:
    config = JobConfig(hosts=cluster.hosts, target=target, mode=mode, python=sys.executable,
                       nproc_per_node="1" if mode == "torchrun" else None,
                       env_flags=(("SSHRUN_TEST_CANARY", canary), *env), timeouts=timeouts)
    plan = plan_job(config, JOB, 0)
    ssh = SSHSettings(config_paths=(cluster.ssh_config,), known_hosts=(cluster.known_hosts,))
    out, err = io.BytesIO(), io.BytesIO()
    printer = Printer(stdout=out, stderr=err, colour=False, host_width=5, rank_width=2,
                      launcher_label="torchrun" if mode == "torchrun" else "")
    recorder = Recorder()
    supervisor = Supervisor(plan, ssh, printer, emit=recorder.emit, tap=recorder)
    run = Run(canary, recorder)
    task = asyncio.ensure_future(supervisor.run())
    try:
        if during is not None:
            await during(supervisor, recorder)
        async with asyncio.timeout(DEADLINE):
            run.outcome = await asyncio.shield(task)
    except SshrunError as exc:
        run.error = exc
    finally:
        if not task.done():  # a failed wait above: never leave the attempt running
            supervisor.interrupt()
            await asyncio.wait({task}, timeout=DEADLINE)
    run.hello_versions = [n.session.hello.version for n in supervisor.nodes
                          if n.session is not None and n.session.hello is not None]
    run.stdout, run.stderr = out.getvalue().decode(), err.getvalue().decode()
    return run


def _scenario(target: tuple[str, ...], mode: Mode, env: tuple[tuple[str, str], ...] = (),
              during: During | None = None, timeouts: Timeouts = DEFAULTS) -> Run:
    """One attempt on a fresh embedded cluster of two nodes."""
    canary = new_canary()

    async def main() -> Run:
        async with local_cluster(2) as cluster:
            return await _supervise(cluster, target, mode, canary, env, during, timeouts)

    return asyncio.run(main())


def _ready_on_both(recorder: Recorder) -> bool:
    return all(b"ready" in recorder.output(n) for n in (0, 1))


def _running_on_both(recorder: Recorder) -> bool:
    """The ready line and ranks_started from both nodes: an exec command's stdout reaches
    the head past its agent (passthrough), so its first line may come before the
    agent's ranks_started."""
    return _ready_on_both(recorder) and sum(
        isinstance(e, RanksStarted) for e in recorder.events) == 2


# -- the scenarios, each run once per module ---------------------------------------------


@pytest.fixture(scope="module")
def clean() -> Run:
    return _scenario((str(WORKERS / "echo_args.py"), "a b"), "torchrun", env=(("ALL", "1"),))


@pytest.fixture(scope="module")
def rank_fails() -> Run:
    return _scenario((str(WORKERS / "crash.py"),), "torchrun",
                     env=(("FAIL_RANK", "1"), ("FAIL_CODE", "42")))


async def _kill_node2s_agent(supervisor: Supervisor, recorder: Recorder) -> None:
    await recorder.until(lambda: _running_on_both(recorder),
                         "ready line and ranks_started from both nodes")
    up = next(e for e in recorder.events if isinstance(e, AgentUp) and e.node == 1)
    os.kill(up.pid, signal.SIGKILL)


HANG = ("sh", "-c", "echo ready; exec sleep 120")


@pytest.fixture(scope="module")
def agent_dies() -> Run:
    return _scenario(HANG, "exec", during=_kill_node2s_agent)


async def _interrupt_when_ready(supervisor: Supervisor, recorder: Recorder) -> None:
    await recorder.until(lambda: _running_on_both(recorder),
                         "ready line and ranks_started from both nodes")
    supervisor.interrupt()


@pytest.fixture(scope="module")
def interrupted() -> Run:
    return _scenario(HANG, "exec", during=_interrupt_when_ready)


E = TypeVar("E", bound=Event)


def _events(run: Run, kind: type[E]) -> list[E]:
    return [e for e in run.events if isinstance(e, kind)]


def _nodes(outcome: Outcome | None) -> list[tuple[str, int, NodeState, int | None, int]]:
    assert outcome is not None
    return [(n.host, n.index, n.state, n.exit_code, n.swept.get("left", -1))
            for n in outcome.nodes]


def test_a_clean_run(clean: Run) -> None:
    outcome = clean.outcome
    assert outcome is not None, clean.error
    assert (outcome.exit_code, outcome.first_failure, outcome.interrupted) == (0, None, False)
    for node in (0, 1):
        assert clean.of(node) == ["node_connected", "agent_up", "ranks_started", "rank_started",
                                  "rank_exited", "node_swept"]
    assert not _events(clean, Stopping) and not _events(clean, NodeLost)
    assert sorted((e.host, e.address) for e in _events(clean, NodeConnected)) == [
        ("node1", "127.0.0.2"), ("node2", "127.0.0.3")]
    assert sorted((e.node, e.rank, e.local_rank, e.code, e.signal)
                  for e in _events(clean, RankExited)) == [
        (0, 0, 0, 0, None), (1, 1, 0, 0, None)]
    assert _nodes(outcome) == [("node1", 0, NodeState.EXITED, 0, 0),
                               ("node2", 1, NodeState.EXITED, 0, 0)]
    assert [n.rank_exits for n in outcome.nodes] == [{0: (0, 0)}, {1: (0, 0)}]
    # Every line reached the printer, and the tap (the log directory's place) heard it;
    # each node's streams were flushed once, when its pump ended.
    assert sorted(clean.stdout.splitlines()) == [
        f'node{n + 1} r{n} | {what}' for n in (0, 1)
        for what in ('ARGV ["a b"]', f"CWD {os.getcwd()}")]
    for node in (0, 1):
        assert clean.recorder.output(node, rank=node).splitlines() == [
            b'ARGV ["a b"]', f"CWD {os.getcwd()}".encode()]
    assert sorted(clean.recorder.flushed) == [0, 1]
    assert_no_leftovers(clean.canary)


def test_a_rank_failing_stops_the_gang_and_is_the_first_failure(rank_fails: Run) -> None:
    outcome = rank_fails.outcome
    assert outcome is not None, rank_fails.error
    failure = outcome.first_failure
    assert outcome.exit_code == 42 and failure is not None
    assert (failure.host, failure.node, failure.rank, failure.local_rank, failure.code,
            failure.reason) == ("node2", 1, 1, 0, 42, FailureKind.EXIT)
    assert failure.tail == ["rank 1 about to fail"]
    names = rank_fails.names()
    failed = next(i for i, e in enumerate(rank_fails.events)
                  if isinstance(e, RankExited) and e.code == 42)
    assert [(e.reason, e.by, e.host) for e in _events(rank_fails, Stopping)] == [
        ("node2 rank 1 failed", "head", None)]
    # The failing rank's exit, then the stop, then every node's sweep.
    assert failed < names.index("stopping") < names.index("node_swept")
    for node in (0, 1):
        assert rank_fails.of(node) == ["node_connected", "agent_up", "ranks_started",
                                       "rank_started", "rank_exited", "node_swept"]
    # The survivor was stopped by the gang: SIGTERM from its torchrun.
    assert sorted((e.rank, e.code, e.signal) for e in _events(rank_fails, RankExited)) == [
        (0, 143, "SIGTERM"), (1, 42, None)]
    assert not _events(rank_fails, NodeLost)
    assert [n.rank_exits for n in outcome.nodes] == [{0: (0, 143)}, {1: (0, 42)}]
    assert [(n.state, n.swept["left"]) for n in outcome.nodes] == [(NodeState.EXITED, 0)] * 2
    assert_no_leftovers(rank_fails.canary)


def test_a_node_whose_agent_connection_drops_is_lost(agent_dies: Run) -> None:
    outcome = agent_dies.outcome
    assert outcome is not None, agent_dies.error
    failure = outcome.first_failure
    assert outcome.exit_code == errors.EXIT_SSH and failure is not None
    assert (failure.host, failure.node, failure.rank, failure.reason) == (
        "node2", 1, None, FailureKind.LOST)
    assert failure.message.startswith("connection to the agent lost")
    assert failure.tail == []
    assert agent_dies.of(1) == ["node_connected", "agent_up", "ranks_started", "node_lost"]
    assert agent_dies.of(0) == ["node_connected", "agent_up", "ranks_started", "node_swept"]
    assert [(e.host, e.why) for e in _events(agent_dies, NodeLost)] == [
        ("node2", failure.message)]
    names = agent_dies.names()
    assert names.count("stopping") == 1
    assert names.index("node_lost") < names.index("stopping") < names.index("node_swept")
    assert [(e.reason, e.by) for e in _events(agent_dies, Stopping)] == [
        ("node2 node failed", "head")]
    assert _nodes(outcome) == [("node1", 0, NodeState.EXITED, 143, 0),
                               ("node2", 1, NodeState.LOST, None, -1)]
    # The dead agent's sentinel swept node2's command; the stop, node1's.
    assert_no_leftovers(agent_dies.canary)


def test_an_interrupt_mid_run_stops_every_node_and_leaves_nothing(interrupted: Run) -> None:
    outcome = interrupted.outcome
    assert outcome is not None, interrupted.error
    assert (outcome.exit_code, outcome.first_failure, outcome.interrupted) == (
        errors.EXIT_INTERRUPTED, None, True)
    names = interrupted.names()
    assert names.count("notice") == 1 and names.count("stopping") == 1
    assert names.index("notice") < names.index("stopping")
    assert [(e.reason, e.by) for e in _events(interrupted, Stopping)] == [
        ("interrupted by the user", "head")]
    stop = names.index("stopping")
    for node in (0, 1):
        assert interrupted.of(node) == ["node_connected", "agent_up", "ranks_started",
                                        "node_swept"]
    assert all(i > stop for i, e in enumerate(interrupted.events) if isinstance(e, NodeSwept))
    assert [e.left for e in _events(interrupted, NodeSwept)] == [0, 0]
    assert [(n.state, n.swept["left"]) for n in outcome.nodes] == [(NodeState.EXITED, 0)] * 2
    assert sorted(interrupted.stdout.splitlines()) == ["node1 | ready", "node2 | ready"]
    assert_no_leftovers(interrupted.canary)


async def _interrupt_twice(supervisor: Supervisor, recorder: Recorder) -> None:
    await recorder.until(lambda: _ready_on_both(recorder), "ready line from both nodes")
    supervisor.interrupt()
    await recorder.until(lambda: any(isinstance(e, Stopping) for e in recorder.events),
                         "the stop")
    supervisor.interrupt()


# SIGTERM ignored, and the grace period far longer than the test may take.
DEAF = ("sh", "-c", "trap '' TERM; echo ready; exec sleep 120")
LONG_GRACE = 90.0


def test_a_second_interrupt_kills_at_once() -> None:
    run = _scenario(DEAF, "exec", during=_interrupt_twice,
                    timeouts=Timeouts(grace=LONG_GRACE))
    outcome = run.outcome
    assert outcome is not None, run.error
    assert (outcome.exit_code, outcome.first_failure, outcome.interrupted) == (
        errors.EXIT_INTERRUPTED, None, True)
    assert [n.kind for n in _events(run, Notice)] == ["interrupted", "killing"]
    names = run.names()
    assert names.count("stopping") == 1
    notices = [i for i, n in enumerate(names) if n == "notice"]
    assert notices[0] < names.index("stopping") < notices[1] < names.index("node_swept")
    # Killed (SIGKILL: 128 + 9), not waited for: the grace period never ran out.
    assert [(n.state, n.exit_code, n.swept["left"]) for n in outcome.nodes] == [
        (NodeState.EXITED, 137, 0)] * 2
    assert outcome.elapsed < LONG_GRACE
    assert_no_leftovers(run.canary)


# -- the agent protocol over a real embedded connection ------------------------------------


def test_every_agent_says_hello_in_the_heads_protocol_version(clean: Run) -> None:
    assert clean.hello_versions == [PROTOCOL_VERSION, PROTOCOL_VERSION]
    ups = _events(clean, AgentUp)
    assert sorted(e.host for e in ups) == ["node1", "node2"]
    assert all(e.python == sys.executable and e.torch and e.pid > 0 for e in ups)
    assert [e.argv0 for e in _events(clean, RanksStarted)] == [sys.executable] * 2


def test_an_agent_of_another_protocol_version_fails_the_launch_in_one_line(
        monkeypatch: pytest.MonkeyPatch) -> None:
    old = agent.source("protocol")
    line = f"PROTOCOL_VERSION = {PROTOCOL_VERSION}\n"
    assert line in old
    bundle = agent.build_bundle({"protocol": old.replace(line, "PROTOCOL_VERSION = 99\n")})
    monkeypatch.setattr(session, "AGENT_BUNDLE", bundle)
    run = _scenario(("true",), "exec")
    assert run.outcome is None and isinstance(run.error, AgentError)
    assert run.error.exit_code == errors.EXIT_SSH
    message = str(run.error)
    assert "\n" not in message
    assert message.startswith(f"node1: the agent speaks protocol version 99, this head "
                              f"speaks version {PROTOCOL_VERSION}: "), message
    assert message.endswith(" (and 1 more: node2)"), message
    # Both connected; neither agent counts as up, and nothing ran.
    assert sorted(run.names()) == ["node_connected", "node_connected"]
    assert run.hello_versions == []
    assert_no_leftovers(run.canary)


# -- the report, rendered from those outcomes ---------------------------------------------


def _render(outcome: Outcome | None, previous: list[Outcome | None] | None = None) -> list[str]:
    assert outcome is not None
    earlier = [o for o in previous or [] if o is not None]
    text = io.StringIO()
    console = Console(file=text, width=200, no_color=True, highlight=False, soft_wrap=True)
    report.render(outcome, console, previous=earlier)
    return text.getvalue().splitlines()


def test_the_report_of_a_clean_run(clean: Run) -> None:
    [line] = _render(clean.outcome)
    assert re.fullmatch(r"sshrun: job finished on 2 nodes in \d+\.\ds", line), line


def test_the_report_of_a_failed_rank_names_it_with_its_last_lines(rank_fails: Run) -> None:
    assert _render(rank_fails.outcome) == [
        "sshrun: first failure: node2 (node 1), rank 1 (local rank 0): exited with code 42",
        "last lines of its stderr:",
        "  rank 1 about to fail",
        "sshrun: nodes: 1 failed (node2), 1 stopped (node1)",
        "sshrun: exit status 42",
    ]


def test_the_report_of_a_lost_node(agent_dies: Run) -> None:
    assert _render(agent_dies.outcome) == [
        "sshrun: first failure: node2 (node 1): connection to the agent lost",
        "sshrun: nodes: 1 stopped (node1), 1 lost (node2)",
        "sshrun: exit status 255",
    ]


def test_the_report_of_an_interrupt(interrupted: Run) -> None:
    line, fates = _render(interrupted.outcome)
    assert re.fullmatch(r"sshrun: interrupted after \d+\.\ds; every node stopped", line), line
    assert fates == "sshrun: nodes: 2 stopped (node[1-2])"


def test_the_report_lists_earlier_attempts_by_their_first_failure(
        clean: Run, rank_fails: Run, agent_dies: Run) -> None:
    lines = _render(clean.outcome, [rank_fails.outcome, agent_dies.outcome])
    assert lines[:2] == [
        "sshrun: attempt 0 failed: node2 (node 1), rank 1 (local rank 0): exited with code 42",
        "sshrun: attempt 1 failed: node2 (node 1): connection to the agent lost",
    ]
    assert lines[2].startswith("sshrun: job finished on 2 nodes in ") and len(lines) == 3
