"""Each host's SSH connection options, built once per run; the checks before connecting.

Options are built explicitly:

- the user's OpenSSH config (``--ssh-config``, default ``~/.ssh/config``)
  supplies Host aliases, HostName, User, Port, IdentityFile and ProxyJump;
- agent forwarding off, keepalives on, connect and login timeouts, no
  password or keyboard-interactive prompts (a prompt would hang a cluster);
- the known_hosts files a host is checked against: ``SSHSettings.known_hosts``
  (the local cluster's), else the config's ``UserKnownHostsFile``, else the
  defaults, never none;
- AES-GCM before ChaCha20-Poly1305 (``PREFERRED_CIPHERS``), unless the config
  names ``Ciphers``: the same AEAD ciphers OpenSSH offers, in another order.
  Every byte of every rank's output is decrypted by the one head process,
  and asyncssh's ChaCha20-Poly1305 takes three cipher calls per packet where
  AES-GCM takes one: ~25% less head CPU streaming 8 nodes' output, and less
  on the nodes' sshd too wherever the CPU has AES instructions
  (docs/benchmarks.md).

Once per run (issue 12). ``check_ssh_files`` runs before any connection: it
parses the config once for each distinct host, checks the identity files,
builds that host's options from the parsed config and reads its known_hosts
files; ``sshrun.transport.connect`` then uses those options as they are.
Before, the config was parsed three times per node and known_hosts decoded
once per connection. What the run has built lives in ``SSHSettings.cache``:
the resolver makes one ``SSHSettings`` per run, and ``dataclasses.replace``
gives a fresh, empty cache. A host the check did not see (a ProxyJump hop,
the local cluster's nodes) is built at its first connection.

asyncssh's parser reads the whole config file for every host; the parse here
is ``sshrun.ssh_config.IndexedConfig``'s, which gives the same result
visiting only the blocks that can apply, so that a config with one ``Host``
block per node does not cost O(nodes) per node.
"""

from __future__ import annotations

import asyncio
import getpass
import os
from collections.abc import Sequence
from dataclasses import field
from pathlib import Path
from typing import Any, Literal, cast

import asyncssh
from asyncssh.config import SSHClientConfig
from asyncssh.encryption import get_default_encryption_algs

from sshrun.configfile import read_config_bytes, read_config_text
from sshrun.errors import ConfigError, ConnectError
from sshrun.frozen_dataclass import frozen_dataclass
from sshrun.hostspec import HostSpec
from sshrun.jumps import JumpPool
from sshrun.known_hosts import KnownHostsFiles
from sshrun.plan import Timeouts
from sshrun.ssh_config import IndexedConfig

HostKeyPolicy = Literal["strict", "accept-new", "insecure"]
HOST_KEY_POLICIES: tuple[HostKeyPolicy, ...] = ("strict", "accept-new", "insecure")

DEFAULT_SSH_CONFIG = Path("~/.ssh/config")
DEFAULT_KNOWN_HOSTS = (Path("~/.ssh/known_hosts"), Path("/etc/ssh/ssh_known_hosts"))

HostKey = tuple[str, str | None, int | None, str | None]  # host, user, port, identity file

# asyncssh's default ciphers, AES-GCM first (see the module's docstring).
_GCM = (b"aes128-gcm@openssh.com", b"aes256-gcm@openssh.com")
PREFERRED_CIPHERS: tuple[str, ...] = tuple(
    alg.decode("ascii") for alg in sorted(
        get_default_encryption_algs(),
        key=lambda alg: _GCM.index(alg) if alg in _GCM else len(_GCM)))


@frozen_dataclass
class HostOptions:
    """One host's connection options, and the known_hosts files it is checked against."""

    options: asyncssh.SSHClientConnectionOptions
    known_hosts: tuple[str, ...]  # expanded paths, existing or not, in order


class SSHCache:
    """What one run has built: each host's options (or why they failed), known_hosts,
    the open ProxyJump connections."""

    def __init__(self) -> None:
        self.known_hosts = KnownHostsFiles()
        self.jumps = JumpPool()  # ProxyJump connections, shared by the nodes behind them
        self._built: dict[HostKey, HostOptions | ConnectError] = {}
        self._pending: dict[HostKey, asyncio.Future[HostOptions | ConnectError]] = {}

    async def options(self, host: HostSpec, settings: SSHSettings) -> HostOptions:
        """``host``'s options, built at its first use; an ``SSHError`` if they cannot be."""
        key = _key(host)
        built = self._built.get(key)
        if built is None:
            pending = self._pending.get(key)
            if pending is None:
                # In an executor thread, as asyncssh builds options: a config's
                # ``Match exec`` runs a command.
                loop = asyncio.get_running_loop()
                pending = loop.run_in_executor(None, _build_lazily, host, settings)
                self._pending[key] = pending
            try:
                built = await asyncio.shield(pending)
            finally:
                self._pending.pop(key, None)
            self._built[key] = built
        if isinstance(built, ConnectError):
            raise ConnectError(host.label, built.message)
        return built

    def store(self, host: HostSpec, built: HostOptions | ConnectError) -> None:
        self._built[_key(host)] = built

    def has(self, host: HostSpec) -> bool:
        return _key(host) in self._built


@frozen_dataclass
class SSHSettings:
    config_paths: tuple[str, ...] | None = None  # None: ~/.ssh/config when it exists
    host_key_policy: HostKeyPolicy = "strict"
    known_hosts: tuple[str, ...] | None = None  # None: from the config, else the defaults
    identity_files: tuple[str, ...] | None = None  # None: the config's, else asyncssh's
    jump_host: str | None = None  # ProxyJump for every node; None: the ssh config's
    timeouts: Timeouts = field(default_factory=Timeouts)
    max_handshakes: int = 32  # concurrent handshakes: head CPU and sshd MaxStartups
    # Not a setting: what this run has built from the settings (see the module).
    cache: SSHCache = field(default_factory=SSHCache, init=False, repr=False, compare=False)


def _key(host: HostSpec) -> HostKey:
    return (host.host, host.user, host.port, host.identity_file)


def _config_paths(settings: SSHSettings) -> list[str]:
    if settings.config_paths is not None:
        return [os.path.expanduser(p) for p in settings.config_paths]
    default = DEFAULT_SSH_CONFIG.expanduser()
    return [str(default)] if default.is_file() else []


def _local_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return ""


def _parse(host: HostSpec, paths: Sequence[str]) -> SSHClientConfig:
    """The config as asyncssh reads it for ``host``: options under a ``Host`` block apply
    only where it matches. OSError or ValueError (asyncssh's ConfigParseError) on failure."""
    return cast(SSHClientConfig, IndexedConfig.load(  # typed as its base's
        None, list(paths), False, False, False, _local_user(),
        host.user if host.user else (), host.host, host.port if host.port else (),
    ))


def _build(host: HostSpec, settings: SSHSettings, config: SSHClientConfig | None) -> HostOptions:
    """``host``'s options from its parsed config (None: no config file), not parsing again.

    Raises what asyncssh raises (OSError, ValueError, asyncssh.Error)."""
    t = settings.timeouts
    kwargs: dict[str, Any] = {
        "agent_forwarding": False,
        "keepalive_interval": t.keepalive_interval,
        "keepalive_count_max": t.keepalive_count_max,
        "connect_timeout": t.connect,
        "login_timeout": t.connect,
        "password_auth": False,
        "kbdint_auth": False,
        "request_pty": False,
    }
    if config is None or not config.get("Ciphers"):
        kwargs["encryption_algs"] = list(PREFERRED_CIPHERS)
    if host.user:
        kwargs["username"] = host.user
    if host.port:
        kwargs["port"] = host.port
    if host.identity_file is not None:
        kwargs["client_keys"] = [os.path.expanduser(host.identity_file)]
    elif settings.identity_files is not None:
        kwargs["client_keys"] = [os.path.expanduser(p) for p in settings.identity_files]
    options_type = asyncssh.SSHClientConnectionOptions
    if config is None:
        options = options_type(config=[], host=host.host, **kwargs)
    else:
        # asyncssh takes a parsed config only from options that new options
        # extend (their ``config``); a bare carrier lends it ours. ``config=[]``
        # (not the default ``()``) reads no file: not the config again, and not
        # ~/.ssh/config either.
        carrier = object.__new__(options_type)
        carrier.kwargs = {}
        carrier.config = config
        options = options_type(carrier, config=[], host=host.host, **kwargs)
    if settings.known_hosts is not None:
        known = _known_hosts_files(settings.known_hosts)
    else:
        # asyncssh's options hold the config's UserKnownHostsFile, or None for
        # "none": we check against the default files then, never nothing.
        configured = options.known_hosts
        files = configured if isinstance(configured, list | tuple) and configured else None
        known = _known_hosts_files([str(f) for f in files] if files else None)
    return HostOptions(options, tuple(known))


def _known_hosts_files(configured: Sequence[str] | None) -> list[str]:
    paths = list(configured) if configured else [str(p) for p in DEFAULT_KNOWN_HOSTS]
    return [os.path.expanduser(p) for p in paths]


def _build_lazily(host: HostSpec, settings: SSHSettings) -> HostOptions | ConnectError:
    """At a first connection (no check ran for this host): every failure is the host's."""
    paths = _config_paths(settings)
    if settings.config_paths is not None:
        for path in paths:
            if not os.path.isfile(path):
                return ConnectError(host.label, f"ssh config file not found: {path}")
    try:
        return _build(host, settings, _parse(host, paths) if paths else None)
    except (OSError, ValueError, asyncssh.Error) as exc:
        return ConnectError(host.label, f"bad ssh options: {exc}")


def check_ssh_files(hosts: Sequence[HostSpec], settings: SSHSettings) -> None:
    """Check the ssh config and every identity file once, before any connection.

    A missing, unreadable, non-regular or garbage file is a ``ConfigError``
    (exit 2) naming it; without this, each host would fail on its own with
    exit 255. The config is parsed as asyncssh parses it, once for each
    distinct host (options under a ``Host`` block are read only where it
    matches), and each identity file is read through the same bounded reader
    as every other configuration file and decoded as a private key.

    Each host's options are then built from that parse and kept in
    ``settings.cache`` for its connection, and its known_hosts files are read
    (a malformed one is a ``ConfigError`` too). Options that asyncssh refuses
    are kept as the host's ``ConnectError``, raised when it connects (exit
    255, as when they were built there).
    """
    paths = _config_paths(settings)
    if settings.config_paths is not None:
        for path in paths:
            read_config_text(path, "ssh config")
    checked: set[str] = set()
    explicit = [(p, "ssh.identity_file") for p in settings.identity_files or ()]
    for path, where in explicit:
        _check_identity(path, where, checked, encrypted_ok=False)
    cache = settings.cache
    for host in hosts:
        if cache.has(host):
            continue
        if host.identity_file is not None:
            _check_identity(host.identity_file, f"identity_file of {host.label}", checked,
                            encrypted_ok=False)
        config: SSHClientConfig | None = None
        if paths:
            try:
                config = _parse(host, paths)
            except (OSError, ValueError) as exc:
                raise ConfigError(f"bad ssh config ({', '.join(paths)}): {exc}") from None
            if host.identity_file is None and settings.identity_files is None:
                # Otherwise the config's IdentityFile is not used for this host.
                identity = config.get("IdentityFile", ())
                for path in identity if isinstance(identity, list | tuple) else ():
                    # asyncssh skips an encrypted key from the config (an agent
                    # may hold it) but fails on a missing or unreadable one.
                    _check_identity(str(path), f"IdentityFile in the ssh config, for "
                                    f"{host.label}", checked, encrypted_ok=True)
        try:
            built: HostOptions | ConnectError = _build(host, settings, config)
        except (OSError, ValueError, asyncssh.Error) as exc:
            built = ConnectError(host.label, f"bad ssh options: {exc}")
        cache.store(host, built)
        if isinstance(built, HostOptions) and settings.host_key_policy != "insecure":
            cache.known_hosts.view(built.known_hosts)


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
