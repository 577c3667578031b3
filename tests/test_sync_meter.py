"""sshrun.sync_meter: the sync's counts, the bar, and a bandwidth limit shared in turns.

Pure, time passed in: the uplink's turns are simulated here, node by node.
"""

from __future__ import annotations

import heapq

import pytest

from sshrun import events
from sshrun.hostfile import HostSpec
from sshrun.plan import JobConfig, plan_job
from sshrun.startup import StartupTracker
from sshrun.sync_meter import Bandwidth, SyncCounts, SyncMeter, progress_bar


def test_counts_add_up_the_nodes_that_compared_and_name_the_rest() -> None:
    meter = SyncMeter()
    for node in ("a", "b", "c", "d"):
        meter.start(node)
    meter.plan("a", files=3, size=3000)
    meter.plan("b", files=1, size=500)
    meter.sent("a", 1000, file_done=True)
    meter.sent("a", 1000)
    meter.sent("b", 500, file_done=True)
    meter.finish("b")
    meter.finish("c")  # its tree was in place: nothing to send
    before = meter.changes
    meter.fail("d")
    assert meter.changes == before + 1
    assert meter.counts() == SyncCounts(nodes=4, synced=2, failed=1, comparing=0, files=2,
                                        files_total=4, bytes=2500, bytes_total=3500)
    assert not meter.counts().over
    meter.sent("a", 1000, file_done=True)
    meter.finish("a")
    assert meter.counts().over


def test_a_failed_node_leaves_the_totals() -> None:
    meter = SyncMeter()
    meter.start("a")
    meter.start("b")
    meter.plan("a", files=2, size=2 << 20)
    meter.sent("a", 1 << 20, file_done=True)
    assert meter.counts().comparing == 1
    meter.fail("a")
    counts = meter.counts()
    assert (counts.bytes, counts.bytes_total, counts.failed, counts.comparing) == (0, 0, 1, 1)


def test_the_bar_says_bytes_files_and_nodes() -> None:
    counts = SyncCounts(nodes=8, synced=3, failed=0, comparing=2, files=1200, files_total=5000,
                        bytes=14 << 20, bytes_total=40 << 20)
    assert progress_bar(counts) == ("sync [#######.............]  35% 14.0/40.0 MiB, "
                                    "files 1,200/5,000, nodes synced 3/8, 2 comparing")
    done = SyncCounts(nodes=2, synced=1, failed=1, comparing=0, files=0, files_total=0,
                      bytes=0, bytes_total=0)
    assert progress_bar(done, width=4) == ("sync [####] 100% 0.0/0.0 MiB, files 0/0, "
                                           "nodes synced 1/2, 1 failed")


def _simulate(rate: float, wants: dict[str, int], link: dict[str, float]) -> dict[str, float]:
    """Each node sends its bytes chunk by chunk through one Bandwidth, asking for its next
    turn as soon as its last chunk has crossed its own link (``link``: its bytes a
    second); when each node finished."""
    bandwidth = Bandwidth(rate)
    left = dict(wants)
    finished: dict[str, float] = {}
    asks = [(0.0, name) for name in wants]  # (when it asks for its next turn, node)
    heapq.heapify(asks)
    while asks:
        now, name = heapq.heappop(asks)
        size = min(bandwidth.chunk, left[name])
        start = now + bandwidth.reserve(size, now)
        done = start + size / link.get(name, float("inf"))
        left[name] -= size
        if left[name]:
            heapq.heappush(asks, (done, name))
        else:
            finished[name] = done
    return finished


def test_the_limit_holds_and_equal_trees_finish_together() -> None:
    mib = 1 << 20
    finished = _simulate(4 * mib, {f"node{k}": 2 * mib for k in range(4)}, {})
    # 8 MiB at 4 MiB/s: 2 s in all, and nobody is served whole before the others start.
    assert max(finished.values()) == pytest.approx(2.0, abs=0.06)
    assert min(finished.values()) > 1.8


def test_a_slow_link_leaves_its_share_to_the_others() -> None:
    """Max-min fair: a node that can take only 0.5 MiB/s gets that, the other two share
    the remaining 3.5 MiB/s equally."""
    mib = 1 << 20
    finished = _simulate(4 * mib, {"slow": 1 * mib, "a": 7 * mib, "b": 7 * mib},
                         {"slow": 0.5 * mib})
    assert 2.0 <= finished["slow"] < 3.2, finished
    # a and b: the uplink is never idle while they ask: 15 MiB at 4 MiB/s, ~3.75 s.
    assert finished["a"] == pytest.approx(3.75, rel=0.05)
    assert abs(finished["a"] - finished["b"]) < 0.1


def test_reserve_books_turns_in_order_and_an_idle_uplink_does_not_bank_time() -> None:
    bandwidth = Bandwidth(1000.0)
    assert bandwidth.reserve(500, 10.0) == 0.0
    assert bandwidth.reserve(500, 10.0) == pytest.approx(0.5)
    assert bandwidth.reserve(100, 10.2) == pytest.approx(0.8)
    assert bandwidth.reserve(100, 100.0) == 0.0  # idle since: no burst saved up
    assert bandwidth.reserve(100, 100.0) == pytest.approx(0.1)
    assert Bandwidth(1.0).chunk == 16 << 10 and Bandwidth(1e12).chunk == 1 << 18
    with pytest.raises(ValueError):
        Bandwidth(0)


def test_the_live_line_shows_the_bar_while_the_nodes_sync() -> None:
    config = JobConfig(hosts=(HostSpec("a", slots=1), HostSpec("b", slots=1)),
                       target=("train.py",), nproc_per_node="1")
    tracker = StartupTracker(plan_job(config, "job", 0), 0.0, 30.0)
    progress = {"job": "job", "attempt": 0, "nodes": 2, "failed": 0, "comparing": 0,
                "files": 1, "files_total": 2, "bytes": 1 << 20, "bytes_total": 4 << 20}
    assert tracker.feed(events.SyncProgress(synced=0, **progress))
    assert tracker.status() == (
        "sync [#####...............]  25% 1.0/4.0 MiB, files 1/2, nodes synced 0/2; "
        "starting: connected 0/2, agents up 0/2, ranks started 0/2")
    assert tracker.feed(events.SyncProgress(synced=2, **progress))
    assert tracker.status() == "starting: connected 0/2, agents up 0/2, ranks started 0/2"
