"""Scale limits handled, not hit (issue 12, item 5), against real OpenSSH sshd nodes.

- an sshd over its ``MaxStartups`` drops handshakes: those nodes are tried
  again and join, while a refused login still fails at once (one attempt);
- the head raises its soft open-file limit to fit N nodes, or refuses N at
  once (exit 2) when even the hard limit is too low;
- nodes behind one ProxyJump bastion share one connection to it, closed after
  the last node's.
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import MakeSshdCluster
from head import REPO, Head, run_sshrun
from sshd_cluster import SshdCluster, cluster_args

from sshrun.hostspec import HostSpec
from sshrun.transport import SSHSettings, connect

pytestmark = pytest.mark.sshd

DROPPING = ["MaxStartups 1:100:1", "LogLevel INFO"]  # a second concurrent handshake is dropped


def test_nodes_whose_sshd_drops_handshakes_are_retried_and_join(
        make_sshd_cluster: MakeSshdCluster) -> None:
    cluster = make_sshd_cluster(16, per_sshd=16, sshd_options=DROPPING)
    code, head = run_sshrun(["exec", *cluster_args(cluster), "--python", sys.executable,
                             "--max-handshakes", "16", "--", "sh", "-c", "echo ok"])
    assert code == 0, head.transcript()
    assert sorted(line.split(" | ")[0].strip() for line in head.out) == sorted(cluster.aliases)
    assert all(line.endswith("| ok") for line in head.out), head.transcript()
    # The limit was really hit: sshd says so for each connection it dropped.
    assert cluster.logs[0].read_text().count("past MaxStartups") > 0


def test_a_refused_login_is_not_retried(make_sshd_cluster: MakeSshdCluster,
                                        tmp_path: Path) -> None:
    cluster = make_sshd_cluster(1, sshd_options=[*DROPPING[:1], "LogLevel VERBOSE"])
    stranger = tmp_path / "stranger"
    subprocess.run([cluster.tools.ssh_keygen, "-q", "-t", "ed25519", "-N", "", "-f",
                    str(stranger)], check=True, capture_output=True, timeout=30)
    config = tmp_path / "ssh_config"
    config.write_text(cluster.ssh_config.read_text().replace(str(cluster.client_key),
                                                              str(stranger)))
    probed = len(cluster.logs[0].read_text())  # the cluster's own readiness probe
    code, head = run_sshrun(["exec", "-H", str(cluster.hostfile), "--ssh-config", str(config),
                             "--python", sys.executable, "--", "true"])
    assert code == 255, head.transcript()
    assert "node0: permission denied" in head.stderr, head.transcript()
    # One connection, one login refused: no second attempt.
    log = cluster.logs[0].read_text()[probed:]
    assert log.count("Connection from ") == 1, log
    assert log.count("Failed publickey") == 1, log


def behind_bastion(cluster: SshdCluster, tmp_path: Path) -> Path:
    """The cluster's ssh config, with every node but node0 behind node0 (ProxyJump)."""
    config = tmp_path / "ssh_config"
    config.write_text(cluster.ssh_config.read_text()
                      + f"\nHost {' '.join(cluster.aliases[1:])}\n    ProxyJump node0\n")
    hostfile = tmp_path / "hostfile"
    hostfile.write_text("".join(f"{alias}\n" for alias in cluster.aliases[1:]))
    return config


def established_to(address: str, port: int) -> int:
    """How many TCP connections on this machine are established to ``address:port``."""
    a, b, c, d = (int(x) for x in address.split("."))
    remote = f"{d:02X}{c:02X}{b:02X}{a:02X}:{port:04X}"
    rows = Path("/proc/net/tcp").read_text().splitlines()[1:]
    return sum(1 for row in rows if row.split()[2] == remote and row.split()[3] == "01")


def test_nodes_behind_one_bastion_share_one_connection_to_it(
        make_sshd_cluster: MakeSshdCluster, tmp_path: Path) -> None:
    cluster = make_sshd_cluster(9, sshd_options=["LogLevel VERBOSE"])
    config = behind_bastion(cluster, tmp_path)
    code, head = run_sshrun(["exec", "-H", str(tmp_path / "hostfile"), "--ssh-config",
                             str(config), "--python", sys.executable, "--", "sh", "-c",
                             "echo $SSH_CONNECTION"])
    assert code == 0, head.transcript()
    assert sorted(line.split(" | ")[0].strip() for line in head.out) == sorted(cluster.aliases[1:])
    bastion_log = cluster.logs[0].read_text()
    assert bastion_log.count("Accepted publickey") == 1, bastion_log
    for k in range(1, 9):
        assert cluster.logs[k].read_text().count("Accepted publickey") == 1


def test_a_chain_of_jump_hosts_is_shared_hop_by_hop(make_sshd_cluster: MakeSshdCluster,
                                                     tmp_path: Path) -> None:
    """node2-4 behind node0 then node1: one login on each hop for the three nodes."""
    cluster = make_sshd_cluster(5, sshd_options=["LogLevel VERBOSE"])
    config = tmp_path / "ssh_config"
    config.write_text(cluster.ssh_config.read_text()
                      + "\nHost node2 node3 node4\n    ProxyJump node0,node1\n")
    code, head = run_sshrun(["exec", "--hosts", "node2,node3,node4", "--ssh-config",
                             str(config), "--python", sys.executable, "--", "true"])
    assert code == 0, head.transcript()
    logins = [log.read_text().count("Accepted publickey") for log in cluster.logs]
    assert logins == [1, 1, 1, 1, 1], logins


def test_the_bastion_connection_closes_after_the_last_nodes(
        make_sshd_cluster: MakeSshdCluster, tmp_path: Path) -> None:
    cluster = make_sshd_cluster(9)
    config = behind_bastion(cluster, tmp_path)
    bastion = cluster.address(0)

    async def scenario() -> None:
        settings = SSHSettings(config_paths=(str(config),))
        conns = await asyncio.gather(*(connect(HostSpec(alias), settings)
                                       for alias in cluster.aliases[1:]))
        assert settings.cache.jumps.open_count() == 1
        assert established_to(bastion, cluster.port) == 1
        for node in conns[:-1]:
            node.conn.close()
            await node.conn.wait_closed()
        # Seven nodes gone, one left: the bastion still carries it.
        assert established_to(bastion, cluster.port) == 1
        result = await conns[-1].conn.run("echo alive", check=True)
        assert result.stdout == "alive\n"
        conns[-1].conn.close()
        await conns[-1].conn.wait_closed()
        assert settings.cache.jumps.open_count() == 0
        async with asyncio.timeout(10):
            while established_to(bastion, cluster.port):
                await asyncio.sleep(0.02)

    asyncio.run(scenario())


def sshrun_limited(args: list[str], soft: int, hard: int) -> subprocess.CompletedProcess[str]:
    """``sshrun ARGS`` in a process whose open-file limit is ``soft``/``hard``."""
    env = dict(os.environ)
    env.pop("SSH_AUTH_SOCK", None)
    return subprocess.run(
        [sys.executable, "-m", "sshrun", *args], cwd=REPO, env=env, text=True,
        capture_output=True, timeout=300, stdin=subprocess.DEVNULL,
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard)),
    )


def test_the_head_raises_its_soft_open_file_limit_to_fit_the_nodes(
        make_sshd_cluster: MakeSshdCluster) -> None:
    # 48 sockets cannot fit under a soft limit of 40: only a raised one runs the job.
    cluster = make_sshd_cluster(48, per_sshd=16)
    done = sshrun_limited(["exec", *cluster_args(cluster), "--python", sys.executable,
                           "--", "sh", "-c", "echo ok"], soft=40, hard=1024)
    assert done.returncode == 0, done.stdout + done.stderr
    assert sorted(line.split(" | ")[0].strip() for line in done.stdout.splitlines()) == sorted(
        cluster.aliases)


def test_nodes_past_the_hard_open_file_limit_are_refused_before_any_connection(
        tmp_path: Path) -> None:
    # No sshd listens on these addresses: a connection attempt would be exit 255.
    hostfile = tmp_path / "hostfile"
    hostfile.write_text("".join(f"127.0.9.{k}\n" for k in range(1, 251)))
    done = sshrun_limited(["exec", "-H", str(hostfile), "--", "true"], soft=200, hard=200)
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.splitlines() == [
        "sshrun: error: 250 nodes need about 314 open files on the head, but its open-file "
        "limit is 200 (hard; soft 200): raise it (`ulimit -Hn`, /etc/security/limits.conf, "
        "or LimitNOFILE= for a service), or run fewer nodes"], done.stderr


@pytest.mark.slow
def test_512_loopback_nodes_run_exec(tmp_path: Path) -> None:
    """127.0.0.2-254 and on into 127.0.1.x and 127.0.2.x, 16 addresses per sshd."""
    # 512 addresses' readiness shares one deadline: longer than a few nodes'.
    with SshdCluster(512, tmp_path / "sshd", per_sshd=16, ready_timeout=120) as cluster:
        run_512(cluster)


def run_512(cluster: SshdCluster) -> None:
    assert cluster.address(252) == "127.0.0.254" and cluster.address(511) == "127.0.2.5"
    code, head = run_sshrun(["exec", *cluster_args(cluster), "--python", sys.executable,
                             "--", "sh", "-c", "echo ok $SSH_CONNECTION"], timeout=600)
    assert code == 0, head.transcript()[-3000:]
    seen = {}
    for line in head.out:
        alias, _, text = line.partition(" | ")
        seen[alias.strip()] = text
    assert sorted(seen) == sorted(cluster.aliases)
    # Each node answered from its own address (the last field of SSH_CONNECTION's server side).
    for k, alias in enumerate(cluster.aliases):
        assert seen[alias].split()[:1] == ["ok"] and seen[alias].split()[3] == cluster.address(k)


@pytest.mark.slow
def test_agents_up_early_wait_for_a_long_bring_up(make_sshd_cluster: MakeSshdCluster,
                                                  tmp_path: Path) -> None:
    """node0's agent is up while node1 takes longer than an agent waits for a silent head
    (30 s before its spec): the head's heartbeats keep node0 waiting, and both run."""
    cluster = make_sshd_cluster(2)
    events = tmp_path / "events.jsonl"
    cluster.stop_node(1)
    try:
        head = Head(["exec", *cluster_args(cluster), "--python", sys.executable,
                     "--connect-timeout", "120", "--events", str(events), "--",
                     "sh", "-c", "echo ok"])
        deadline = time.monotonic() + 60
        while not (events.exists() and any(
                json.loads(line).get("event") == "agent_up"
                for line in events.read_text().splitlines() if line.endswith("}"))):
            assert time.monotonic() < deadline and head.proc.poll() is None, head.transcript()
            time.sleep(0.05)
        # The point is the time that passes: longer than the agent's 30 s.
        time.sleep(35)
        assert head.proc.poll() is None, head.transcript()
    finally:
        cluster.cont_node(1)
    code = head.wait(120)
    assert code == 0, head.transcript()
    assert sorted(line.split(" | ")[0].strip() for line in head.out) == ["node0", "node1"]
