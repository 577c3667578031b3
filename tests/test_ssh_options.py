"""sshrun.ssh_options: each host's options built once per run, as asyncssh would build them.

Real files (an ssh config, keys that asyncssh generates); nothing is connected.
The ssh config's ``Match exec`` runs a command each time asyncssh parses the
config for a host, which counts the parses without touching any code.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import asyncssh
import pytest

from sshrun.errors import ConnectError
from sshrun.hostspec import HostSpec
from sshrun.plan import Timeouts
from sshrun.ssh_options import PREFERRED_CIPHERS, SSHSettings, check_ssh_files

T = Timeouts()
# What sshrun always asks for, as sshrun.ssh_options passes it.
KWARGS: dict[str, Any] = {
    "agent_forwarding": False, "keepalive_interval": T.keepalive_interval,
    "keepalive_count_max": T.keepalive_count_max, "connect_timeout": T.connect,
    "login_timeout": T.connect, "password_auth": False, "kbdint_auth": False,
    "request_pty": False, "encryption_algs": list(PREFERRED_CIPHERS),
}
SKIP = {"kwargs", "config", "client_keys", "agent_identities"}


def comparable(options: asyncssh.SSHClientConnectionOptions) -> dict[str, object]:
    """What a connection uses from the options, keys by their public data."""
    seen = {k: v for k, v in vars(options).items() if k not in SKIP}
    seen["client_keys"] = [k.public_data for k in options.client_keys or []]
    seen["agent_identities"] = [
        i if isinstance(i, bytes) else i.public_data for i in options.agent_identities or []]
    seen["config"] = options.config.get_options(False)
    return seen


def write_key(path: Path) -> Path:
    path.write_bytes(asyncssh.generate_private_key("ssh-ed25519").export_private_key())
    path.chmod(0o600)
    return path


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A HOME of our own, whose ~/.ssh/config says things no test's config says."""
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh" / "config").write_text("Host *\n  User from-home-config\n  Port 2999\n")
    monkeypatch.setenv("HOME", str(home))
    return home


def cluster_config(tmp_path: Path, count: Path | None = None) -> Path:
    key = write_key(tmp_path / "id_a")
    config = tmp_path / "ssh_config"
    text = "".join(
        f"Host node{k}\n  HostName 127.0.0.{k + 2}\n  Port 2222\n  IdentityFile {key}\n"
        f"  IdentitiesOnly yes\n  UserKnownHostsFile {tmp_path}/kh\n"
        for k in range(3))
    text += "Host jump\n  HostName 127.0.0.9\n  User hop\n"
    text += "Host *\n  ProxyJump jump\n  ServerAliveInterval 7\n"
    if count is not None:
        text += f'Match exec "echo >> {count}"\n'
    config.write_text(text)
    (tmp_path / "kh").write_text("")
    return config


def test_options_are_asyncssh_s_own(tmp_path: Path, home: Path) -> None:
    config = cluster_config(tmp_path)
    settings = SSHSettings(config_paths=(str(config),))
    hosts = [HostSpec("node1"), HostSpec("node2", user="u", port=2200)]
    check_ssh_files(hosts, settings)
    for host in hosts:
        built = asyncio.run(settings.cache.options(host, settings))
        extra = {"username": host.user} if host.user else {}
        extra |= {"port": host.port} if host.port else {}
        stock = asyncssh.SSHClientConnectionOptions(
            config=[str(config)], host=host.host, **KWARGS, **extra)
        assert comparable(built.options) == comparable(stock)
        # And as asyncssh.connect rebuilds them for the connection: sshrun
        # passes config=[] (read nothing), asyncssh's own default is ().
        at_connect = asyncssh.SSHClientConnectionOptions(built.options, config=[], host=host.host)
        stock_at_connect = asyncssh.SSHClientConnectionOptions(stock, config=(), host=host.host)
        assert comparable(at_connect) == comparable(stock_at_connect)
        assert at_connect.username != "from-home-config"
        assert built.known_hosts == (f"{tmp_path}/kh",)


def test_the_config_is_parsed_once_per_host(tmp_path: Path, home: Path) -> None:
    count = tmp_path / "parses"
    settings = SSHSettings(config_paths=(str(cluster_config(tmp_path, count)),))
    hosts = [HostSpec(f"node{k}") for k in range(3)]
    check_ssh_files([*hosts, hosts[0]], settings)
    assert count.read_text().count("\n") == 3

    async def connect_all() -> None:
        for host in hosts:
            await settings.cache.options(host, settings)
        # A ProxyJump hop the check did not see: built once, at its first use,
        # however many nodes ask for it at the same time.
        await asyncio.gather(*(settings.cache.options(HostSpec("jump"), settings)
                               for _ in range(5)))

    asyncio.run(connect_all())
    assert count.read_text().count("\n") == 4


def test_options_asyncssh_refuses_fail_at_the_connection(tmp_path: Path, home: Path) -> None:
    # A config asyncssh parses but cannot make options of: as before, the
    # host's ConnectError (exit 255) when it connects, not a ConfigError.
    config = tmp_path / "ssh_config"
    config.write_text("Host node0\n  CanonicalizePermittedCNAMEs no-colon\n")
    settings = SSHSettings(config_paths=(str(config),))
    check_ssh_files([HostSpec("node0")], settings)
    with pytest.raises(ConnectError) as info:
        asyncio.run(settings.cache.options(HostSpec("node0"), settings))
    assert str(info.value) == "node0: bad ssh options: CNAME rules must contain two patterns"


def test_a_fresh_cache_for_other_settings(tmp_path: Path, home: Path) -> None:
    import dataclasses

    settings = SSHSettings(config_paths=(str(cluster_config(tmp_path)),))
    check_ssh_files([HostSpec("node0")], settings)
    other = dataclasses.replace(settings, known_hosts=("/elsewhere",))
    assert other.cache is not settings.cache
    assert other == dataclasses.replace(other)  # the cache is not part of the settings
    built = asyncio.run(other.cache.options(HostSpec("node0"), other))
    assert built.known_hosts == ("/elsewhere",)


def test_aes_gcm_first_unless_the_config_names_ciphers(tmp_path: Path, home: Path) -> None:
    """The head decrypts every rank's output: AES-GCM (one cipher call a packet in
    asyncssh) before ChaCha20-Poly1305 (three); the config's Ciphers win."""
    stock = [alg.decode() for alg in asyncssh.SSHClientConnectionOptions(
        config=[], host="x").encryption_algs]
    assert PREFERRED_CIPHERS[:2] == ("aes128-gcm@openssh.com", "aes256-gcm@openssh.com")
    assert sorted(PREFERRED_CIPHERS) == sorted(stock) and stock[0].startswith("chacha20")
    config = tmp_path / "ssh_config"
    config.write_text("Host chacha\n  Ciphers chacha20-poly1305@openssh.com,aes256-ctr\n")
    settings = SSHSettings(config_paths=(str(config),))
    hosts = [HostSpec("chacha"), HostSpec("other")]
    check_ssh_files(hosts, settings)
    chosen = [[alg.decode() for alg in asyncio.run(
        settings.cache.options(host, settings)).options.encryption_algs] for host in hosts]
    assert chosen == [["chacha20-poly1305@openssh.com", "aes256-ctr"], list(PREFERRED_CIPHERS)]
