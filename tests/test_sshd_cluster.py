"""The loopback sshd cluster fixture works with the real ssh client and with asyncssh."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import asyncssh
import pytest
from conftest import MakeSshdCluster
from head import run_sshrun
from sshd_cluster import SshdCluster, cluster_args, current_user

pytestmark = pytest.mark.sshd

INTERPRETER_PROBE = 'python3 -c "import sys; print(sys.executable)"'


async def _connect(
    cluster: SshdCluster, k: int, known_hosts: Path | None = None, timeout: float = 20.0
) -> asyncssh.SSHClientConnection:
    return await asyncssh.connect(
        cluster.addresses[k],
        cluster.port,
        username=current_user(),
        known_hosts=str(known_hosts or cluster.known_hosts),
        client_keys=[str(cluster.client_key)],
        agent_path=None,
        connect_timeout=timeout,
    )


async def _run(cluster: SshdCluster, k: int, command: str, timeout: float = 20.0) -> str:
    async with await _connect(cluster, k, timeout=timeout) as conn:
        result = await conn.run(command, check=True, timeout=timeout)
    assert isinstance(result.stdout, str)
    return result.stdout


def test_cluster_files(sshd_cluster: SshdCluster) -> None:
    assert sshd_cluster.addresses == ["127.0.0.2", "127.0.0.3", "127.0.0.4"]
    assert sshd_cluster.aliases == ["node0", "node1", "node2"]
    assert sshd_cluster.hostfile.read_text().split() == sshd_cluster.aliases
    lines = sshd_cluster.known_hosts.read_text().splitlines()
    assert [line.split()[0] for line in lines] == [
        f"[{addr}]:{sshd_cluster.port}" for addr in sshd_cluster.addresses
    ]
    assert all(line.split()[1] == "ssh-ed25519" for line in lines)
    assert len(set(lines)) == 3  # each node has its own host key
    assert len(set(sshd_cluster.pids)) == 3


def test_openssh_client_with_strict_host_keys(
    sshd_cluster: SshdCluster, ssh_env: dict[str, str]
) -> None:
    done = subprocess.run(
        [
            "ssh",
            "-F",
            str(sshd_cluster.ssh_config),
            "-o",
            "StrictHostKeyChecking=yes",
            "node1",
            "echo",
            "hi",
        ],
        env=ssh_env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "hi\n"


def test_openssh_client_reaches_every_alias(
    sshd_cluster: SshdCluster, ssh_env: dict[str, str]
) -> None:
    for k in range(3):
        done = subprocess.run(
            sshd_cluster.ssh_command(k, "echo", "$SSH_CONNECTION"),
            env=ssh_env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        # SSH_CONNECTION = client_ip client_port server_ip server_port
        assert done.stdout.split()[2:] == [sshd_cluster.addresses[k], str(sshd_cluster.port)]


def test_asyncssh_runs_the_test_interpreter(sshd_cluster: SshdCluster) -> None:
    out = asyncio.run(_run(sshd_cluster, 1, INTERPRETER_PROBE))
    assert sshd_cluster.addresses[1] == "127.0.0.3"
    assert Path(out.strip()).parent == Path(sys.executable).parent
    which = asyncio.run(_run(sshd_cluster, 1, "command -v python3")).strip()
    assert which == str(Path(sys.executable).parent / "python3")
    assert "shims" not in which


def test_asyncssh_rejects_unknown_host_key(sshd_cluster: SshdCluster, tmp_path: Path) -> None:
    empty = tmp_path / "known_hosts"
    empty.write_text("")

    async def attempt() -> None:
        conn = await _connect(sshd_cluster, 1, known_hosts=empty)
        conn.close()

    with pytest.raises(asyncssh.HostKeyNotVerifiable):
        asyncio.run(attempt())


def test_stop_and_cont_node(make_sshd_cluster: MakeSshdCluster) -> None:
    cluster = make_sshd_cluster(2)
    assert asyncio.run(_run(cluster, 1, "echo up")) == "up\n"
    cluster.stop_node(1)
    try:
        with pytest.raises((TimeoutError, OSError, asyncssh.Error)):
            asyncio.run(_run(cluster, 1, "echo frozen", timeout=2.0))
        # The other node is unaffected.
        assert asyncio.run(_run(cluster, 0, "echo other")) == "other\n"
    finally:
        cluster.cont_node(1)
    assert asyncio.run(_run(cluster, 1, "echo back")) == "back\n"


def test_kill_and_restart_node(make_sshd_cluster: MakeSshdCluster) -> None:
    cluster = make_sshd_cluster(1, first_octet=10)
    assert cluster.addresses == ["127.0.0.10"]
    old_pid = cluster.pids[0]
    cluster.kill_node(0)
    with pytest.raises(OSError):
        asyncio.run(_run(cluster, 0, "true", timeout=2.0))
    cluster.start_node(0)
    assert cluster.pids[0] != old_pid
    assert asyncio.run(_run(cluster, 0, "echo again")) == "again\n"


def test_nodes_past_127_0_0_254_go_on_in_127_0_1(make_sshd_cluster: MakeSshdCluster) -> None:
    """Benchmarks of 256 and 512 nodes need more than one /24 of loopback addresses."""
    cluster = make_sshd_cluster(3, first_octet=253)
    assert cluster.addresses == ["127.0.0.253", "127.0.0.254", "127.0.1.1"]
    code, head = run_sshrun(["exec", *cluster_args(cluster), "--", "echo", "up"])
    assert code == 0, head.transcript()
    assert sorted(head.out) == ["node0 | up", "node1 | up", "node2 | up"]
