"""Pure decisions behind the scale limits (issue 12, item 5): which failed handshakes are
tried again and when, and how many open files the head needs for N nodes. The real
parts (sshd dropping handshakes, a lowered open-file limit) are in tests/test_limits_sshd.py."""

from __future__ import annotations

import errno
import resource

import asyncssh
import pytest

from sshrun.connect_retry import Backoff, is_dropped, retry_delay
from sshrun.fd_limit import BASE_FDS, UNKNOWN_NPROC, estimate, new_soft_limit
from sshrun.hostspec import HostSpec
from sshrun.membership import Membership
from sshrun.plan import JobConfig


@pytest.mark.parametrize("exc", [
    asyncssh.ConnectionLost("Connection lost"),
    ConnectionResetError(errno.ECONNRESET, "Connection reset by peer"),
    ConnectionAbortedError(errno.ECONNABORTED, "aborted"),
    BrokenPipeError(errno.EPIPE, "broken pipe"),
])
def test_a_connection_closed_before_the_login_is_a_dropped_handshake(exc: Exception) -> None:
    assert is_dropped(exc)


@pytest.mark.parametrize("exc", [
    asyncssh.PermissionDenied("Permission denied"),
    asyncssh.HostKeyNotVerifiable("Host key is not trusted"),
    ConnectionRefusedError(errno.ECONNREFUSED, "refused"),
    TimeoutError(),
    OSError(errno.EHOSTUNREACH, "No route to host"),
    asyncssh.ProtocolError("bad packet"),
])
def test_refused_logins_keys_and_connections_are_final(exc: Exception) -> None:
    assert not is_dropped(exc)


def test_the_delay_grows_to_its_cap_jittered_down_to_half() -> None:
    b = Backoff(first=0.1, factor=2.0, cap=1.0)
    assert [retry_delay(k, 0.0, 100.0, 0.999999, b) for k in range(6)] == pytest.approx(
        [0.1, 0.2, 0.4, 0.8, 1.0, 1.0])
    assert [retry_delay(k, 0.0, 100.0, 0.0, b) for k in range(6)] == pytest.approx(
        [0.05, 0.1, 0.2, 0.4, 0.5, 0.5])
    # Very many retries stay at the cap (no overflow).
    assert retry_delay(10_000, 0.0, 100.0, 0.5, b) == pytest.approx(0.75)


def test_no_retry_starts_past_the_connect_timeout() -> None:
    b = Backoff(first=0.1, factor=2.0, cap=1.0)
    assert retry_delay(0, 14.0, 15.0, 0.0, b) == pytest.approx(0.05)
    assert retry_delay(3, 14.5, 15.0, 0.5, b) is None  # 0.6 s more would pass 15 s
    assert retry_delay(0, 15.0, 15.0, 0.0, b) is None


def test_retries_within_a_timeout_are_bounded() -> None:
    spent, retries = 0.0, 0
    while (delay := retry_delay(retries, spent, 15.0, 0.0)) is not None:
        spent += delay
        retries += 1
    assert 5 < retries < 40 and spent < 15.0


def config(n: int, **kwargs: object) -> JobConfig:
    hosts = tuple(HostSpec(f"n{k}", slots=4) for k in range(n))
    return JobConfig(hosts, ("train.py",), **kwargs)  # type: ignore[arg-type]


def test_one_socket_per_node_over_a_base() -> None:
    assert estimate(config(1000, mode="exec"), log_dir=False).fds == BASE_FDS + 1000
    assert estimate(config(1000), log_dir=False).nodes == 1000
    assert estimate(config(10), log_dir=False, local_cluster=True).fds == BASE_FDS + 20


def test_the_log_dir_keeps_each_rank_and_each_launcher_log_open() -> None:
    assert estimate(config(10), log_dir=True).fds == BASE_FDS + 10 * (1 + 1 + 4)
    assert estimate(config(10, mode="exec"), log_dir=True).fds == BASE_FDS + 10 * 2
    assert estimate(config(10), log_dir=True, filters=True).fds == BASE_FDS + 10 * 8
    assert estimate(config(10, nproc_per_node="gpu"), log_dir=True).fds == (
        BASE_FDS + 10 * (2 + UNKNOWN_NPROC))


def test_an_elastic_job_connects_at_most_its_maximum() -> None:
    need = estimate(config(100, membership=Membership(2, 10)), log_dir=False)
    assert need.nodes == 10 and need.fds == BASE_FDS + 10


def test_the_soft_limit_is_raised_only_when_needed_and_only_to_the_hard_one() -> None:
    assert new_soft_limit(500, 1024, 4096) == 1024
    assert new_soft_limit(2000, 1024, 4096) == 2000
    assert new_soft_limit(4096, 1024, 4096) == 4096
    assert new_soft_limit(5000, 1024, 4096) is None
    assert new_soft_limit(10**6, 1024, resource.RLIM_INFINITY) == 10**6
    assert new_soft_limit(10**6, resource.RLIM_INFINITY, resource.RLIM_INFINITY) == (
        resource.RLIM_INFINITY)
