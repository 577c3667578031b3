"""SSH connections to the nodes: the only module that talks to asyncssh's client.

Options are built once per host, explicitly:

- the user's OpenSSH config (``--ssh-config``, default ``~/.ssh/config``)
  supplies Host aliases, HostName, User, Port, IdentityFile and ProxyJump;
- host keys are always checked against known_hosts files, including when the
  config says ``UserKnownHostsFile none`` (asyncssh would then check nothing).
  ``--host-key-policy`` decides what happens to a key that is not there:
  ``strict`` refuses it, ``accept-new`` records a key for a host that has
  none (OpenSSH's ``StrictHostKeyChecking accept-new``) but still refuses a
  changed one, and ``insecure`` checks nothing (and says so);
- agent forwarding off, keepalives on, connect and login timeouts, no
  password or keyboard-interactive prompts (a prompt would hang a cluster).

Every failure becomes an ``SSHError`` that names the host and says what to do.
"""

from __future__ import annotations

import asyncio
import getpass
import os
import shlex
import socket
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import asyncssh

from sshrun.configfile import read_config_bytes, read_config_text
from sshrun.errors import AuthError, ConfigError, ConnectError, HostKeyError, SSHError
from sshrun.hostfile import HostSpec
from sshrun.plan import Timeouts

HostKeyPolicy = Literal["strict", "accept-new", "insecure"]
HOST_KEY_POLICIES: tuple[HostKeyPolicy, ...] = ("strict", "accept-new", "insecure")

DEFAULT_SSH_CONFIG = Path("~/.ssh/config")
DEFAULT_KNOWN_HOSTS = (Path("~/.ssh/known_hosts"), Path("/etc/ssh/ssh_known_hosts"))


@dataclass(frozen=True)
class SSHSettings:
    config_paths: tuple[str, ...] | None = None  # None: ~/.ssh/config when it exists
    host_key_policy: HostKeyPolicy = "strict"
    known_hosts: tuple[str, ...] | None = None  # None: from the config, else the defaults
    identity_files: tuple[str, ...] | None = None  # None: the config's, else asyncssh's
    jump_host: str | None = None  # ProxyJump for every node; None: the ssh config's
    timeouts: Timeouts = field(default_factory=Timeouts)
    max_handshakes: int = 32  # concurrent handshakes: head CPU and sshd MaxStartups


class _Client(asyncssh.SSHClient):
    """Sees the key a node offered, and applies accept-new."""

    def __init__(self, policy: HostKeyPolicy, known_hosts: Sequence[str]) -> None:
        self.policy = policy
        self.known_hosts = known_hosts
        self.offered: asyncssh.SSHKey | None = None
        self.known_keys: list[asyncssh.SSHKey] = []
        self.known_in: list[str] = []  # the files that hold a key for this host
        self.entry = ""  # how known_hosts names this host: host, or [host]:port

    def validate_host_public_key(
        self, host: str, addr: str, port: int, key: asyncssh.SSHKey
    ) -> bool:
        self.offered = key
        self.entry = host if port == 22 else f"[{host}]:{port}"
        for path in self.known_hosts:
            if not os.path.isfile(path):
                continue
            matched = asyncssh.read_known_hosts(path).match(
                host, addr, port if port != 22 else None
            )
            if matched[0]:
                self.known_keys += matched[0]
                self.known_in.append(path)
        if self.policy != "accept-new" or self.known_keys:
            return False
        entry_host = self.entry
        target = Path(self.known_hosts[0]).expanduser()
        target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        with target.open("a") as f:
            f.write(f"{entry_host} {key.export_public_key().decode().strip()}\n")
        return True


def _fingerprint(key: asyncssh.SSHKey | None) -> str:
    return key.get_fingerprint("sha256") if key is not None else "(unknown)"


def _known_hosts_files(configured: Sequence[str] | None) -> list[str]:
    paths = list(configured) if configured else [str(p) for p in DEFAULT_KNOWN_HOSTS]
    return [os.path.expanduser(p) for p in paths]


async def _options(
    host: HostSpec, settings: SSHSettings
) -> tuple[asyncssh.SSHClientConnectionOptions, list[str]]:
    config: Sequence[str] | None
    if settings.config_paths is not None:
        config = [os.path.expanduser(p) for p in settings.config_paths]
        for path in config:
            if not os.path.isfile(path):
                raise ConnectError(host.label, f"ssh config file not found: {path}")
    else:
        default = DEFAULT_SSH_CONFIG.expanduser()
        config = [str(default)] if default.is_file() else []
    t = settings.timeouts
    kwargs: dict[str, object] = {
        "config": config,
        "agent_forwarding": False,
        "keepalive_interval": t.keepalive_interval,
        "keepalive_count_max": t.keepalive_count_max,
        "connect_timeout": t.connect,
        "login_timeout": t.connect,
        "password_auth": False,
        "kbdint_auth": False,
        "request_pty": False,
    }
    if host.user:
        kwargs["username"] = host.user
    if host.port:
        kwargs["port"] = host.port
    if host.identity_file is not None:
        kwargs["client_keys"] = [os.path.expanduser(host.identity_file)]
    elif settings.identity_files is not None:
        kwargs["client_keys"] = [os.path.expanduser(p) for p in settings.identity_files]
    try:
        options = await asyncssh.SSHClientConnectionOptions.construct(host=host.host, **kwargs)
    except (OSError, ValueError, asyncssh.Error) as exc:
        raise ConnectError(host.label, f"bad ssh options: {exc}") from None
    if settings.known_hosts is not None:
        known = _known_hosts_files(settings.known_hosts)
    else:
        # asyncssh's options hold the config's UserKnownHostsFile, or None for
        # "none": we check against the default files then, never nothing.
        configured = options.known_hosts
        files = configured if isinstance(configured, list | tuple) and configured else None
        known = _known_hosts_files([str(f) for f in files] if files else None)
    return options, known


def check_ssh_files(hosts: Sequence[HostSpec], settings: SSHSettings) -> None:
    """Check the ssh config and every identity file once, before any connection.

    A missing, unreadable, non-regular or garbage file is a ``ConfigError``
    (exit 2) naming it; without this, each host would fail on its own with
    exit 255. The config is parsed as asyncssh parses it for each distinct
    host (options under a ``Host`` block are read only where it matches), and
    each identity file is read through the same bounded reader as every
    other configuration file and decoded as a private key.
    """
    from asyncssh.config import SSHClientConfig

    if settings.config_paths is not None:
        paths = [os.path.expanduser(p) for p in settings.config_paths]
        for path in paths:
            read_config_text(path, "ssh config")
    else:
        default = DEFAULT_SSH_CONFIG.expanduser()
        paths = [str(default)] if default.is_file() else []
    checked: set[str] = set()
    explicit = [(p, "ssh.identity_file") for p in settings.identity_files or ()]
    for path, where in explicit:
        _check_identity(path, where, checked, encrypted_ok=False)
    local_user = _local_user()
    seen: set[tuple[str, str | None, int | None]] = set()
    for host in hosts:
        key = (host.host, host.user, host.port)
        if key in seen:
            continue
        seen.add(key)
        if host.identity_file is not None:
            _check_identity(host.identity_file, f"identity_file of {host.label}", checked,
                            encrypted_ok=False)
        if not paths:
            continue
        try:
            config = SSHClientConfig.load(
                None, paths, False, False, False, local_user,
                host.user if host.user else (), host.host, host.port if host.port else (),
            )
        except (OSError, ValueError) as exc:
            raise ConfigError(f"bad ssh config ({', '.join(paths)}): {exc}") from None
        if host.identity_file is not None or settings.identity_files is not None:
            continue  # the config's IdentityFile is not used for this host
        identity = config.get("IdentityFile", ())
        for path in identity if isinstance(identity, list | tuple) else ():
            # asyncssh skips an encrypted key from the config (an agent may
            # hold it) but fails on a missing or unreadable one.
            _check_identity(str(path), f"IdentityFile in the ssh config, for {host.label}",
                            checked, encrypted_ok=True)


def _local_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return ""


def _check_identity(path: str, where: str, checked: set[str], *, encrypted_ok: bool) -> None:
    full = os.path.expanduser(path)
    if full in checked:
        return
    checked.add(full)
    data = read_config_bytes(full, f"identity file ({where})")
    try:
        asyncssh.import_private_key(data)
    except asyncssh.KeyImportError as exc:
        encrypted = "passphrase" in str(exc).lower()
        if encrypted and encrypted_ok:
            return
        if encrypted:
            raise ConfigError(
                f"identity file {path} ({where}) is encrypted, and sshrun never prompts "
                "for a passphrase: load the key into ssh-agent and leave identity_file out"
            ) from None
        raise ConfigError(
            f"identity file {path} ({where}) is not a private key sshrun can read: {exc}"
        ) from None


@dataclass
class NodeConnection:
    conn: asyncssh.SSHClientConnection
    address: str  # where the other nodes can reach this one (rendezvous, --local-addr)


def _jump_hosts(proxy_jump: str) -> list[HostSpec]:
    """ProxyJump's ``[user@]host[:port],...`` as hosts to connect to in order."""
    hops = []
    for hop in proxy_jump.split(","):
        user, _, rest = hop.strip().rpartition("@")
        name, _, port = rest.partition(":")
        hops.append(HostSpec(name, user=user or None, port=int(port) if port else None))
    return hops


async def _open_jumps(
    host: HostSpec, tunnel: object, settings: SSHSettings
) -> asyncssh.SSHClientConnection | None:
    """Connect through ProxyJump hosts ourselves, so that they get the same config,
    the same host-key policy and the same errors as the nodes (asyncssh on its own
    would read only ~/.ssh/config for them)."""
    if not isinstance(tunnel, str) or tunnel.lower() == "none":
        return None
    conn: asyncssh.SSHClientConnection | None = None
    for hop in _jump_hosts(tunnel):
        try:
            conn = await _connect_one(hop, settings, conn)
        except SSHError as exc:
            raise type(exc)(host.label, f"via ProxyJump {hop.label}: {exc.message}") from None
    return conn


async def connect(
    host: HostSpec, settings: SSHSettings, limit: asyncio.Semaphore | None = None
) -> NodeConnection:
    """One logged-in connection to ``host``, or an ``SSHError`` saying why not."""
    async with limit if limit is not None else _NullLimit():
        options, _ = await _options(host, settings)
        jump = await _open_jumps(host, settings.jump_host or options.tunnel, settings)
        conn = await _connect_one(host, settings, jump)
    address = str(options.host)
    peer = conn.get_extra_info("peername")
    if jump is None and isinstance(peer, tuple) and peer:
        # The address we reached is one the cluster can route to; an ssh
        # alias or a name only the head resolves might not be.
        address = str(peer[0])
    return NodeConnection(conn, address)


async def _connect_one(
    host: HostSpec, settings: SSHSettings, tunnel: asyncssh.SSHClientConnection | None
) -> asyncssh.SSHClientConnection:
    options, known = await _options(host, settings)
    policy = settings.host_key_policy
    client = _Client(policy, known)
    known_arg: list[str] | None = [p for p in known if os.path.isfile(p)]
    if policy == "insecure":
        known_arg = None
    try:
        conn, _ = await asyncssh.create_connection(
            lambda: client, host.host, options=options, known_hosts=known_arg,
            tunnel=tunnel if tunnel is not None else (),
        )
        if tunnel is not None:
            # The jump connection closes with the node's.
            conn.set_tunnel(tunnel)
    except asyncssh.HostKeyNotVerifiable:
        entry = client.entry or (
            str(options.host) if options.port == 22 else f"[{options.host}]:{options.port}")
        if client.known_keys:
            # Name the file that holds the old key and the entry as it is
            # written there ([host]:port off port 22), so the command works.
            removals = "; ".join(
                f"`ssh-keygen -R {shlex.quote(entry)} -f {shlex.quote(path)}`"
                for path in client.known_in
            )
            raise HostKeyError(
                host.label,
                f"host key has CHANGED (offered {_fingerprint(client.offered)}, "
                f"{', '.join(client.known_in)} has "
                f"{', '.join(_fingerprint(k) for k in client.known_keys)}); "
                f"if the node was reinstalled, remove its old entry with {removals} "
                "and connect once to check the new key",
            ) from None
        target = known[0] if known else str(DEFAULT_KNOWN_HOSTS[0])
        port_flag = f"-p {options.port} " if options.port != 22 else ""
        raise HostKeyError(
            host.label,
            f"host key {_fingerprint(client.offered)} is not in known_hosts "
            f"({', '.join(known) or 'none'}); check it and add it with "
            f"`ssh-keyscan {port_flag}{shlex.quote(str(options.host))} >> "
            f"{shlex.quote(target)}`, or run with --host-key-policy accept-new",
        ) from None
    except asyncssh.PermissionDenied:
        raise AuthError(
            host.label,
            f"permission denied for user {options.username!r}: no key was accepted "
            "(check IdentityFile, the ssh agent, and the node's authorized_keys)",
        ) from None
    except TimeoutError:
        raise ConnectError(
            host.label, f"timed out after {settings.timeouts.connect:.0f}s connecting or logging in"
        ) from None
    except socket.gaierror as exc:
        # errno -3 (EAI_AGAIN) reads "Unknown error -3" through os.strerror;
        # the resolver's own words name the problem.
        raise ConnectError(
            host.label, f"cannot resolve host name {options.host}: "
            f"{exc.strerror or 'name lookup failed'} (check the name, or HostName "
            "in the ssh config)",
        ) from None
    except UnicodeError:
        # The IDNA codec refuses a name with an empty or over-long label.
        raise ConnectError(
            host.label, f"cannot resolve host name {options.host}: not a valid DNS name "
            "(labels of 1-63 characters)",
        ) from None
    except OSError as exc:
        # asyncio words a refused connect as "Connect call failed (addr, port)";
        # the errno says it plainly.
        reason = (os.strerror(exc.errno) if isinstance(exc.errno, int) and exc.errno
                  else exc.strerror or str(exc))
        raise ConnectError(
            host.label, f"cannot connect to {options.host}:{options.port}: {reason}"
        ) from None
    except asyncssh.Error as exc:
        raise SSHError(host.label, f"SSH failed: {exc.reason}") from None
    return conn


class _NullLimit:
    async def __aenter__(self) -> None:
        return None

    async def __aexit__(self, *exc: object) -> None:
        return None
