"""The start-up tracker (sshrun/startup.py): events in, the live line's text and the
report lines out, time passed in. Pure; the same on a real pty and against sshd
nodes is in tests/test_operating_sshd.py."""

from __future__ import annotations

from typing import Any

from sshrun import events
from sshrun.hostfile import HostSpec
from sshrun.membership import Membership
from sshrun.plan import JobConfig, JobPlan, plan_job
from sshrun.startup import StartupTracker

JOB = "j"


def plan(n: int = 3, nproc: str = "2", mode: str = "torchrun", backend: str = "static",
         attempt: int = 0, membership: Membership | None = None,
         hosts: list[str] | None = None) -> JobPlan:
    names = hosts or [f"node{k}" for k in range(n)]
    config = JobConfig(hosts=tuple(HostSpec(h) for h in names), target=("t.py",),
                       mode=mode,  # type: ignore[arg-type]
                       nproc_per_node=nproc if mode == "torchrun" else None,
                       rdzv_backend=backend, membership=membership)
    return plan_job(config, JOB, attempt)


def about(p: JobPlan, host: str) -> Any:
    node = next(n for n in p.nodes if n.host.label == host)
    return {"job": JOB, "attempt": p.attempt, "host": host, "node": node.index}


def connect(t: StartupTracker, p: JobPlan, *hosts: str) -> None:
    for h in hosts:
        t.feed(events.NodeConnected(**about(p, h), address="127.0.0.1"))


def up(t: StartupTracker, p: JobPlan, *hosts: str) -> None:
    for h in hosts:
        t.feed(events.AgentUp(**about(p, h), python="p", python_version="3.11",
                              torch=True, hostname=h, pid=1))


def launch(t: StartupTracker, p: JobPlan, *hosts: str) -> None:
    for h in hosts:
        t.feed(events.RanksStarted(**about(p, h), pid=2, argv0="torchrun"))


def rank(t: StartupTracker, p: JobPlan, host: str, *ranks: int) -> None:
    for r in ranks:
        t.feed(events.RankStarted(**about(p, host), rank=r, local_rank=r % 2, pid=3))


def test_the_live_line_counts_each_stage() -> None:
    p = plan()
    t = StartupTracker(p, begun=100.0, report_after=30)
    assert t.status() == "starting: connected 0/3, agents up 0/3, ranks started 0/6"
    connect(t, p, "node0", "node1")
    up(t, p, "node0")
    assert t.status() == "starting: connected 2/3, agents up 1/3, ranks started 0/6"
    connect(t, p, "node2")
    up(t, p, "node1", "node2")
    launch(t, p, "node0", "node1", "node2")
    rank(t, p, "node0", 0, 1)
    rank(t, p, "node2", 4)
    assert t.status() == "starting: connected 3/3, agents up 3/3, ranks started 3/6"
    assert not t.over
    rank(t, p, "node1", 2, 3)
    rank(t, p, "node2", 5)
    assert t.over and t.done()


def test_no_report_before_the_threshold_then_who_is_missing_and_each_change() -> None:
    p = plan()
    t = StartupTracker(p, begun=100.0, report_after=30)
    connect(t, p, "node0", "node2")
    up(t, p, "node0", "node2")
    assert t.report(129.9) is None
    assert t.report(130.2) == (
        "start-up still going after 30s: 6 of 6 ranks not started: node1 r[2-3] (connecting), "
        "node[0,2] r[0-1,4-5] (agent up)")
    assert t.report(131.0) is None  # nothing changed
    connect(t, p, "node1")
    assert t.report(135.0) == (
        "start-up still going after 35.0s: 6 of 6 ranks not started: node1 r[2-3] "
        "(starting its agent), node[0,2] r[0-1,4-5] (agent up)")
    up(t, p, "node1")
    launch(t, p, "node0", "node1", "node2")
    rank(t, p, "node0", 0, 1)
    rank(t, p, "node2", 4)
    assert t.report(140.0) == (
        "start-up still going after 40.0s: 3 of 6 ranks not started: node[1-2] r[2-3,5] "
        "(at the rendezvous)")
    rank(t, p, "node1", 2, 3)
    rank(t, p, "node2", 5)
    assert t.report(142.5) == "every rank started after 42.5s"
    assert t.report(150.0) is None


def test_a_fast_start_reports_nothing_at_all() -> None:
    p = plan(n=1)
    t = StartupTracker(p, begun=0.0, report_after=30)
    connect(t, p, "node0")
    up(t, p, "node0")
    launch(t, p, "node0")
    rank(t, p, "node0", 0, 1)
    assert t.over
    assert t.report(31.0) is None


def test_a_stop_ends_the_start_up_without_a_word() -> None:
    p = plan(n=2)
    t = StartupTracker(p, begun=0.0, report_after=1)
    assert t.report(1.5) is not None
    assert t.feed(events.Stopping(job=JOB, attempt=0, reason="interrupted", by="head"))
    assert t.over and t.report(5.0) is None


def test_events_of_another_attempt_are_not_this_ones() -> None:
    p = plan(n=1, attempt=1)
    t = StartupTracker(p, begun=0.0, report_after=1)
    earlier = plan(n=1, attempt=0)
    connect(t, earlier, "node0")
    assert t.status() == "starting: connected 0/1, agents up 0/1, ranks started 0/2"


def test_ranks_unknown_before_the_rendezvous_are_counted_not_named() -> None:
    p = plan(n=2, backend="c10d")
    t = StartupTracker(p, begun=0.0, report_after=1)
    connect(t, p, "node0", "node1")
    up(t, p, "node0", "node1")
    launch(t, p, "node0", "node1")
    rank(t, p, "node1", 0)
    assert t.report(2.0) == ("start-up still going after 1s: 3 of 4 ranks not started: "
                             "node[0-1] (at the rendezvous)")


def test_nproc_auto_has_no_total_and_ends_when_every_node_has_ranks() -> None:
    p = plan(n=2, nproc="auto")
    t = StartupTracker(p, begun=0.0, report_after=1)
    assert t.status() == "starting: connected 0/2, agents up 0/2, ranks started 0"
    connect(t, p, "node0", "node1")
    up(t, p, "node0", "node1")
    launch(t, p, "node0", "node1")
    rank(t, p, "node0", 0)
    assert t.report(2.0) == ("start-up still going after 1s: not started: node1 "
                             "(at the rendezvous)")
    rank(t, p, "node1", 8)
    assert t.over


def test_exec_counts_each_nodes_command() -> None:
    p = plan(n=3, mode="exec")
    t = StartupTracker(p, begun=0.0, report_after=1)
    assert t.status() == "starting: connected 0/3, agents up 0/3, commands started 0/3"
    connect(t, p, "node0", "node1", "node2")
    up(t, p, "node0", "node1", "node2")
    launch(t, p, "node0")
    assert t.report(1.0) == ("start-up still going after 1s: 2 of 3 nodes not started: "
                             "node[1-2] (agent up)")
    launch(t, p, "node1", "node2")
    assert t.report(1.2) == "every command started after 1.2s"


def test_many_nodes_fold_into_one_short_line() -> None:
    p = plan(hosts=[f"gpu{k:03d}" for k in range(1, 257)], nproc="4")
    t = StartupTracker(p, begun=0.0, report_after=30)
    everyone = [f"gpu{k:03d}" for k in range(1, 257)]
    late = {"gpu017", "gpu018", "gpu200"}
    connect(t, p, *(h for h in everyone if h not in late))
    up(t, p, *(h for h in everyone if h not in late))
    launch(t, p, *(h for h in everyone if h not in late))
    for k, h in enumerate(everyone):
        if h not in late:
            rank(t, p, h, *range(4 * k, 4 * k + 4))
    assert t.status() == ("starting: connected 253/256, agents up 253/256, "
                          "ranks started 1012/1024")
    assert t.report(30.0) == ("start-up still going after 30s: 12 of 1024 ranks not started: "
                              "gpu[017-018,200] r[64-71,796-799] (connecting)")


def test_elastic_counts_up_to_max_and_names_only_who_connected() -> None:
    p = plan(n=4, membership=Membership(min_nodes=2, max_nodes=3, cooldown=60.0))
    t = StartupTracker(p, begun=0.0, report_after=1)
    assert t.status() == "starting: connected 0/3, agents up 0/3, ranks started 0"
    connect(t, p, "node0", "node2")
    assert t.report(1.0) == ("start-up still going after 1s: not started: node[0,2] "
                             "(starting its agent), 1 more node (connecting)")


def probe(t: StartupTracker, p: JobPlan, host: str, state: str,
          error: str | None = None, address: str = "169.254.1.2:29500") -> bool:
    return t.feed(events.RendezvousProbe(**about(p, host), state=state, address=address,
                                         error=error))


def test_a_node_that_cannot_reach_the_rendezvous_is_named_apart_with_the_address() -> None:
    p = plan(n=4)
    t = StartupTracker(p, begun=100.0, report_after=2)
    hosts = ("node0", "node1", "node2", "node3")
    connect(t, p, *hosts)
    up(t, p, *hosts)
    launch(t, p, *hosts)
    assert t.report(102.0) == ("start-up still going after 2s: 8 of 8 ranks not started: "
                               "node[0-3] r[0-7] (at the rendezvous)")
    assert probe(t, p, "node1", "waiting") is True
    assert t.report(103.0) is None  # refused while the store comes up: still waiting
    probe(t, p, "node1", "unreachable", "timed out")
    probe(t, p, "node3", "unreachable", "timed out")
    probe(t, p, "node2", "unreachable", "No route to host", address="10.0.0.1:29500")
    assert t.status() == "starting: connected 4/4, agents up 4/4, ranks started 0/8"
    assert t.report(107.0) == (
        "start-up still going after 7.0s: 8 of 8 ranks not started: "
        "node0 r[0-1] (at the rendezvous), "
        "node[1,3] r[2-3,6-7] (cannot reach the rendezvous at 169.254.1.2:29500: timed out), "
        "node2 r[4-5] (cannot reach the rendezvous at 10.0.0.1:29500: No route to host)")
    # The way opens again (the rule went): back with the others, said as a change.
    probe(t, p, "node1", "reachable")
    probe(t, p, "node2", "reachable")
    probe(t, p, "node3", "reachable")
    assert t.report(109.0) == ("start-up still going after 9.0s: 8 of 8 ranks not started: "
                               "node[0-3] r[0-7] (at the rendezvous)")


def test_an_unreachable_node_whose_ranks_start_is_not_missing() -> None:
    p = plan(n=2)
    t = StartupTracker(p, begun=0.0, report_after=1)
    connect(t, p, "node0", "node1")
    up(t, p, "node0", "node1")
    launch(t, p, "node0", "node1")
    probe(t, p, "node1", "unreachable", "timed out")
    rank(t, p, "node1", 2, 3)
    assert t.report(5.0) == ("start-up still going after 1s: 2 of 4 ranks not started: "
                             "node0 r[0-1] (at the rendezvous)")
    rank(t, p, "node0", 0, 1)
    assert t.over
    assert t.report(6.0) == "every rank started after 6.0s"


def test_with_c10d_an_unreachable_node_is_named_without_ranks() -> None:
    p = plan(n=2, backend="c10d")
    t = StartupTracker(p, begun=0.0, report_after=1)
    connect(t, p, "node0", "node1")
    up(t, p, "node0", "node1")
    launch(t, p, "node0", "node1")
    probe(t, p, "node1", "unreachable", "No route to host", address="[fd00::1]:29400")
    assert t.report(9.0) == (
        "start-up still going after 1s: 4 of 4 ranks not started: node0 (at the rendezvous), "
        "node1 (cannot reach the rendezvous at [fd00::1]:29400: No route to host)")
