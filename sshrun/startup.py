"""Start-up, as the events tell it: who is connected, whose agent is up, which ranks started.

A reader of one attempt's events (sshrun.events) that answers two questions
while the job starts: the live status line (``status``: connected k/N,
agents up k/N, ranks started k/world) and, once start-up has taken longer
than ``--startup-report`` seconds, who has not started yet (``report``:
hostlists and rank ranges, each node by where it is stuck, and a node whose
agent found it cannot reach the rendezvous apart from those that wait there,
with the address and the error). A rank counts as
started when its shim connects to its agent (``rank_started``), which
torchrun does only after the rendezvous; for ``sshrun exec`` the unit is each
node's command (``ranks_started``).

Pure: the attempt's nodes come from its plan, events are fed in, and time is
passed in (``now``, the clock the attempt began on). sshrun.startup_console
renders it on the console.

Ranks are named when the plan knows them (the static rendezvous with a
number of processes per node); otherwise they are counted, and with
``--nproc-per-node auto`` (no total) start-up ends once every node has
started ranks. An elastic attempt (``--nnodes MIN:MAX``) counts nodes up to
its MAX, and names only the nodes that have connected.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sshrun import events
from sshrun.nodeset import fold_hosts, fold_ranks
from sshrun.plan import JobPlan
from sshrun.sync_meter import SyncCounts, progress_bar

# Where a node that has not started is stuck, in start-up order.
CONNECTING = "connecting"
AGENT = "starting its agent"
WAITING = "agent up"  # every agent must say hello before anything starts
RENDEZVOUS = "at the rendezvous"
STAGES = (CONNECTING, AGENT, WAITING, RENDEZVOUS)
# After RENDEZVOUS, one stage per endpoint and error: a node at the rendezvous whose
# agent found it cannot reach it (events.RendezvousProbe), the culprit of a stall.
UNREACHABLE = "cannot reach the rendezvous at {address}: {error}"


@dataclass
class NodeStart:
    """One node's start-up so far."""

    host: str
    ranks: range | None  # its global ranks, when the plan knows them
    nproc: int | None  # how many ranks it starts, when the plan knows
    connected: bool = False
    agent_up: bool = False
    launched: bool = False  # its torchrun (or exec's command) started
    started: set[int] = field(default_factory=set)  # ranks whose shim connected
    unreachable: str | None = None  # why its agent cannot reach the rendezvous, if so

    def want(self, exec_mode: bool) -> int | None:
        return 1 if exec_mode else self.nproc

    def done(self, exec_mode: bool) -> bool:
        if exec_mode:
            return self.launched
        if self.nproc is None:
            return bool(self.started)
        return len(self.started) >= self.nproc

    def stage(self) -> str:
        if not self.connected:
            return CONNECTING
        if not self.agent_up:
            return AGENT
        if not self.launched:
            return WAITING
        return self.unreachable or RENDEZVOUS

    def missing(self) -> set[int]:
        """Its ranks that have not started (only when the plan knows them)."""
        return set(self.ranks) - self.started if self.ranks is not None else set()


class StartupTracker:
    """One attempt's start-up, from its events; ``now`` is the attempt's clock."""

    def __init__(self, plan: JobPlan, begun: float, report_after: float) -> None:
        config = plan.config
        self.exec_mode = config.mode == "exec"
        self.elastic = config.membership is not None
        self.expected = (min(config.membership.max_nodes, len(plan.nodes))
                         if config.membership is not None else len(plan.nodes))
        self.attempt = plan.attempt
        self.nodes = {n.host.label: NodeStart(
            n.host.label, None if self.elastic else n.ranks,
            int(n.nproc) if n.nproc.isdigit() else None) for n in plan.nodes}
        world = plan.world_size
        self.world: int | None = (self.expected if self.exec_mode else
                                  None if self.elastic or world is None else world)
        self.begun = begun
        self.report_after = report_after
        self.over = False  # every rank started, or the attempt stops: nothing more to say
        self.reported: str | None = None  # what the last report said (None: none yet)
        self.sync: SyncCounts | None = None  # --sync's progress while it goes (the bar)

    # -- fed --------------------------------------------------------------------

    def feed(self, event: events.Event) -> bool:
        """Take one event; True when what ``status`` says may have changed."""
        if self.over or event.attempt != self.attempt:
            return False
        if isinstance(event, events.Stopping | events.NodeLost):
            self.over = True
            return True
        if isinstance(event, events.SyncProgress):
            self.sync = SyncCounts(
                nodes=event.nodes, synced=event.synced, failed=event.failed,
                comparing=event.comparing, files=event.files, files_total=event.files_total,
                bytes=event.bytes, bytes_total=event.bytes_total)
            return True
        if not isinstance(event, events.NodeEvent):
            return False
        node = self.nodes.get(event.host)
        if node is None:
            return False
        if isinstance(event, events.NodeConnected):
            node.connected = True
        elif isinstance(event, events.AgentUp):
            node.agent_up = True
        elif isinstance(event, events.RanksStarted):
            node.launched = True
        elif isinstance(event, events.RankStarted):
            node.started.add(event.rank)
        elif isinstance(event, events.RendezvousProbe):
            node.unreachable = (UNREACHABLE.format(address=event.address,
                                                   error=event.error or event.state)
                                if event.state == "unreachable" else None)
        else:
            return False
        if self.done():
            self.over = True
        return True

    # -- asked ------------------------------------------------------------------

    def _members(self) -> list[NodeStart]:
        """The nodes that count: every one, or, elastic, those that connected."""
        return [n for n in self.nodes.values() if n.connected or not self.elastic]

    def started_units(self) -> int:
        if self.exec_mode:
            return sum(n.launched for n in self.nodes.values())
        return sum(len(n.started) for n in self.nodes.values())

    def done(self) -> bool:
        members = self._members()
        if len(members) < self.expected:
            return False
        if self.world is not None and not self.elastic:
            return self.started_units() >= self.world
        return all(n.done(self.exec_mode) for n in members)

    def status(self) -> str:
        """``starting: connected 2/3, agents up 1/3, ranks started 0/6``; while
        ``--sync`` goes, its bar first: ``sync [####....] 50% ..., nodes synced 1/3; ``."""
        nodes = self.nodes.values()
        connected = sum(n.connected for n in nodes)
        up = sum(n.agent_up for n in nodes)
        unit = "commands" if self.exec_mode else "ranks"
        total = f"/{self.world}" if self.world is not None else ""
        sync = (progress_bar(self.sync) + "; "
                if self.sync is not None and not self.sync.over else "")
        return (f"{sync}starting: connected {connected}/{self.expected}, agents up "
                f"{up}/{self.expected}, {unit} started {self.started_units()}{total}")

    def missing(self) -> str:
        """Who has not started, each stage's nodes (and their ranks) folded:
        ``2 of 6 ranks not started: node1 r[2-3] (starting its agent)``."""
        by_stage: dict[str, list[NodeStart]] = {stage: [] for stage in STAGES}
        for node in self._members():
            if not node.done(self.exec_mode):
                by_stage.setdefault(node.stage(), []).append(node)
        parts = []
        for stage, stuck in by_stage.items():
            if not stuck:
                continue
            text = fold_hosts(n.host for n in stuck)
            ranks = {r for n in stuck for r in n.missing()}
            if ranks and not self.exec_mode:
                text += f" {fold_ranks(ranks)}"
            parts.append(f"{text} ({stage})")
        unit = "nodes" if self.exec_mode else "ranks"
        if self.elastic:
            unconnected = self.expected - len(self._members())
            if unconnected > 0:
                parts.append(f"{unconnected} more node{'s' * (unconnected != 1)} "
                             f"({CONNECTING})")
        if self.world is not None:
            head = f"{self.world - self.started_units()} of {self.world} {unit} not started"
        else:
            head = "not started"
        return f"{head}: {', '.join(parts)}"

    def report(self, now: float) -> str | None:
        """What to print at ``now``: the first report once start-up has taken
        ``report_after`` seconds, then a new one whenever who is missing changes;
        and once every rank has started after a report, that it did. None: nothing new."""
        elapsed = now - self.begun
        if self.reported is not None and self.over:
            if self.done() and self.reported != "":
                self.reported = ""  # said once
                unit = "command" if self.exec_mode else "rank"
                return f"every {unit} started after {elapsed:.1f}s"
            return None
        if self.over or elapsed < self.report_after:
            return None
        missing = self.missing()
        if missing == self.reported:
            return None
        first = self.reported is None
        self.reported = missing
        # The first report is due at the threshold itself, whenever the timer ran.
        when = f"{self.report_after:g}s" if first else f"{elapsed:.1f}s"
        return f"start-up still going after {when}: {missing}"

