"""HostPool: which hosts an elastic job's next attempt may use (pure, time passed in)."""

from __future__ import annotations

import math

from sshrun.hostfile import HostSpec
from sshrun.membership import HostPool, LeftOut, Membership

HOSTS = tuple(HostSpec(h) for h in ("a", "b", "c", "d"))


def labels(hosts: tuple[HostSpec, ...]) -> list[str]:
    return [h.label for h in hosts]


def test_left_out_hosts_come_back_after_their_cooldown() -> None:
    pool = HostPool(HOSTS, Membership(2, 3, cooldown=10))
    pool.leave_out("b", 0, "lost", now=100)
    assert labels(pool.available(100)) == ["a", "c", "d"]
    assert labels(pool.available(109.9)) == ["a", "c", "d"]
    assert labels(pool.available(110)) == ["a", "b", "c", "d"]


def test_a_second_failure_extends_the_cooldown() -> None:
    pool = HostPool(HOSTS, Membership(1, 4, cooldown=10))
    pool.leave_out("a", 0, "lost", now=0)
    pool.leave_out("a", 1, "lost again", now=5)
    assert pool.cooling(12) == {"a": 15}
    assert [r.reason for r in pool.history] == ["lost", "lost again"]


def test_wait_needed_until_enough_hosts_are_back() -> None:
    pool = HostPool(HOSTS, Membership(3, 4, cooldown=10))
    assert pool.wait_needed(0) == 0
    pool.leave_out("a", 0, "x", now=0)
    assert pool.wait_needed(1) == 0  # b, c, d remain
    pool.leave_out("b", 1, "x", now=4)
    pool.leave_out("c", 2, "x", now=6)
    # d alone: two more are needed, and the second to come back is b at 14.
    assert pool.wait_needed(7) == 7


def test_wait_needed_is_infinite_only_for_an_impossible_minimum() -> None:
    pool = HostPool(HOSTS[:1], Membership(2, 2))
    assert pool.wait_needed(0) == math.inf


def test_left_out_describes_when() -> None:
    assert LeftOut("n3", 1, "connection refused", 0, at_start=True).describe() == (
        "n3 at the start of attempt 1: connection refused")
    assert LeftOut("n2", 0, "n2 (node 1): lost", 0).describe() == (
        "n2 after attempt 0: n2 (node 1): lost")
