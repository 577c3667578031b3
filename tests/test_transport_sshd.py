"""Per-run costs of the SSH transport, against real OpenSSH sshd nodes (issue 12).

The ssh config is parsed once per host per run, and known_hosts decoded once
per run, whatever the number of connections and attempts. The config's
``Match exec`` runs a command each time asyncssh parses it for a host, which
counts parses on the real path; known_hosts decodes are counted by wrapping
the function asyncssh decodes each entry with (behaviour unchanged).
"""

from __future__ import annotations

import asyncio
import io
import os
import sys
from pathlib import Path

import asyncssh.known_hosts
import pytest
from head import run_sshrun
from sshd_cluster import SshdCluster

import sshrun
from sshrun.hostspec import HostSpec
from sshrun.ssh_options import SSHSettings, check_ssh_files
from sshrun.transport import connect

pytestmark = pytest.mark.sshd


def counting_config(cluster: SshdCluster, tmp_path: Path, known: Path | None = None) -> Path:
    """The cluster's config, which appends a line to ``tmp_path/parses`` at each parse."""
    text = cluster.ssh_config.read_text()
    if known is not None:
        text = text.replace(str(cluster.known_hosts), str(known))
    config = tmp_path / "ssh_config"
    config.write_text(text + f'\nMatch exec "echo >> {tmp_path / "parses"}"\n')
    return config


def parses(tmp_path: Path) -> int:
    path = tmp_path / "parses"
    return path.read_text().count("\n") if path.exists() else 0


def home_whose_config_breaks_every_connection(tmp_path: Path) -> dict[str, str]:
    """An environment whose ~/.ssh/config would break any connection that read it."""
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh" / "config").write_text("Host *\n  ProxyCommand /bin/false\n")
    env = dict(os.environ, HOME=str(home))
    env.pop("SSH_AUTH_SOCK", None)
    return env


def test_openssh_agrees_to_aes_gcm_and_a_configs_ciphers_win(sshd_cluster: SshdCluster,
                                                              tmp_path: Path) -> None:
    """What a real sshd negotiates with sshrun's options: AES-GCM when the config names
    no Ciphers, the config's own when it does."""
    config = tmp_path / "ssh_config"
    config.write_text(sshd_cluster.ssh_config.read_text() + f"\nHost {sshd_cluster.aliases[1]}\n"
                      "  Ciphers chacha20-poly1305@openssh.com\n")
    settings = SSHSettings(config_paths=(str(config),))
    hosts = [HostSpec(alias) for alias in sshd_cluster.aliases[:2]]
    check_ssh_files(hosts, settings)

    async def ciphers() -> list[tuple[str, str]]:
        seen = []
        for host in hosts:
            node = await connect(host, settings)
            async with node.conn:
                seen.append((str(node.conn.get_extra_info("send_cipher")),
                             str(node.conn.get_extra_info("recv_cipher"))))
        return seen

    assert asyncio.run(ciphers()) == [("aes128-gcm@openssh.com",) * 2,
                                      ("chacha20-poly1305@openssh.com",) * 2]


def test_config_is_parsed_once_per_node_across_attempts(sshd_cluster: SshdCluster,
                                                        tmp_path: Path) -> None:
    config = counting_config(sshd_cluster, tmp_path)
    code, head = run_sshrun(
        ["exec", "-H", str(sshd_cluster.hostfile), "--ssh-config", str(config),
         "--python", sys.executable, "--max-restarts", "1", "--restart-backoff", "0.1",
         "--", "false"],
        env=home_whose_config_breaks_every_connection(tmp_path))
    assert code == 1, head.transcript()
    assert head.stderr.count("restarting") >= 1, head.transcript()  # two attempts ran
    # Three nodes, two attempts: three parses (before: three per node and attempt).
    assert parses(tmp_path) == 3


def test_known_hosts_is_decoded_once_per_run(sshd_cluster: SshdCluster, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    decoded: list[str] = []
    real = asyncssh.known_hosts.import_public_key

    def counting(data: object, *args: object, **kwargs: object) -> object:
        decoded.append(str(data)[:40])
        return real(data, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(asyncssh.known_hosts, "import_public_key", counting)
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    out = io.BytesIO()
    result = sshrun.launch("false", mode="exec", hostfile=sshd_cluster.hostfile,
                           ssh_config=sshd_cluster.ssh_config, python=sys.executable,
                           max_restarts=1, restart_backoff=0.1, stdout=out,
                           stderr=io.BytesIO())
    assert [a.hosts for a in result.attempts] == [tuple(sshd_cluster.aliases)] * 2
    # One decode per entry for the run (before: every entry for every
    # connection of every attempt, 3 x 3 x 2 here).
    entries = sshd_cluster.known_hosts.read_text().count("\n")
    assert len(decoded) == entries == sshd_cluster.n


@pytest.mark.slow
def test_accept_new_records_each_host_once_across_attempts(sshd_cluster: SshdCluster,
                                                           tmp_path: Path) -> None:
    known = tmp_path / "known_hosts"
    known.write_text("")
    config = counting_config(sshd_cluster, tmp_path, known)
    code, head = run_sshrun(
        ["exec", "-H", str(sshd_cluster.hostfile), "--ssh-config", str(config),
         "--python", sys.executable, "--host-key-policy", "accept-new",
         "--max-restarts", "1", "--restart-backoff", "0.1", "--", "false"])
    assert code == 1, head.transcript()
    assert head.stderr.count("restarting") >= 1, head.transcript()
    # The second attempt found every key recorded by the first: no line twice.
    assert sorted(known.read_text().splitlines()) == sorted(
        sshd_cluster.known_hosts.read_text().splitlines())


def test_malformed_known_hosts_is_one_line_exit_2(sshd_cluster: SshdCluster,
                                                  tmp_path: Path) -> None:
    known = tmp_path / "known_hosts"
    known.write_text(sshd_cluster.known_hosts.read_text() + "garbage\n")
    config = tmp_path / "ssh_config"
    config.write_text(sshd_cluster.ssh_config.read_text().replace(
        str(sshd_cluster.known_hosts), str(known)))
    code, head = run_sshrun(["exec", "-H", str(sshd_cluster.hostfile), "--ssh-config",
                             str(config), "--", "true"])
    assert code == 2, head.transcript()
    assert head.err == [f"sshrun: error: known_hosts file {known}: "
                        "Invalid known hosts entry: garbage"]
