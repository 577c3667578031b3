"""Shared pytest fixtures: a real OpenSSH test cluster on loopback addresses.

``sshd_cluster``       session-wide, 3 nodes on 127.0.0.2..4 (aliases node0..node2)
``make_sshd_cluster``  factory for fresh clusters, ``make_sshd_cluster(n)``, closed at teardown
``ssh_env``            environment for ``ssh`` subprocesses
``netns_node``         one more sshd node in its own network namespace (tests/netns_node.py)

See ``tests/sshd_cluster.py`` for the files each cluster writes and which interpreter the
nodes use. If OpenSSH is missing and cannot be installed, these fixtures fail (not skip)
with the reason.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest
from netns_node import NetnsNode
from sshd_cluster import SshdCluster

MakeSshdCluster = Callable[..., SshdCluster]


@pytest.fixture(scope="session")
def sshd_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshdCluster]:
    """Three real sshd nodes shared by the whole session; tests must leave them running."""
    with SshdCluster(3, tmp_path_factory.mktemp("sshd")) as cluster:
        yield cluster


@pytest.fixture
def make_sshd_cluster(tmp_path: Path) -> Iterator[MakeSshdCluster]:
    """``make_sshd_cluster(n, first_octet=2, port=None, key_options="", sshd_options=(),
    per_sshd=1)``: a fresh cluster (see tests/sshd_cluster.py)."""
    clusters: list[SshdCluster] = []

    def make(n: int, first_octet: int = 2, port: int | None = None,
             key_options: str = "", sshd_options: Sequence[str] = (),
             per_sshd: int = 1) -> SshdCluster:
        cluster = SshdCluster(
            n, tmp_path / f"sshd{len(clusters)}", first_octet=first_octet, port=port,
            key_options=key_options, sshd_options=sshd_options, per_sshd=per_sshd,
        )
        clusters.append(cluster)
        return cluster

    yield make
    for cluster in reversed(clusters):
        cluster.close()


@pytest.fixture
def ssh_env() -> dict[str, str]:
    """Environment for ``ssh`` subprocesses: ours, HOME unchanged, without an ssh-agent.

    Dropping ``SSH_AUTH_SOCK`` makes the cluster's client key the only identity offered.
    """
    env = dict(os.environ)
    env.pop("SSH_AUTH_SOCK", None)
    return env


@pytest.fixture
def netns_node(sshd_cluster: SshdCluster, tmp_path: Path) -> Iterator[NetnsNode]:
    """An sshd node in a fresh network namespace, accepting the cluster's client key."""
    try:
        node = NetnsNode(tmp_path / "netns", sshd_cluster)
    except RuntimeError as exc:
        reason = str(exc)
    else:
        reason = ""
    if reason:  # a failure, never a skip: a test must not pass unrun
        pytest.fail(
            "cannot build a node in a network namespace (needs root with CAP_SYS_ADMIN and "
            f"CAP_NET_ADMIN, ip netns and a working iptables): {reason}",
            pytrace=False,
        )
    with node:
        yield node
