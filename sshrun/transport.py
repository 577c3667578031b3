"""SSH connections to the nodes: the only module that connects with asyncssh.

Each host's options come from ``sshrun.ssh_options``, built once per run (the
ssh config, identity files, timeouts, no agent forwarding, no prompts), and
its known_hosts files from ``sshrun.known_hosts``, read once per run. Host keys
are always checked against known_hosts files, including when the config says
``UserKnownHostsFile none`` (asyncssh would then check nothing).
``--host-key-policy`` decides what happens to a key that is not there:
``strict`` refuses it, ``accept-new`` records a key for a host that has none
(OpenSSH's ``StrictHostKeyChecking accept-new``) but still refuses a changed
one, and ``insecure`` checks nothing (and says so).

Every failure becomes an ``SSHError`` that names the host and says what to do.
"""

from __future__ import annotations

import asyncio
import os
import random
import shlex
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import asyncssh

from sshrun.connect_retry import DROPPED, retry_delay
from sshrun.errors import AuthError, ConnectError, HostKeyError, SSHError
from sshrun.hostspec import HostSpec
from sshrun.jumps import parse_chain
from sshrun.known_hosts import KnownHostsFiles, KnownHostsView
from sshrun.ssh_options import DEFAULT_KNOWN_HOSTS, HostOptions, SSHSettings
from sshrun.ssh_options import HOST_KEY_POLICIES as HOST_KEY_POLICIES
from sshrun.ssh_options import HostKeyPolicy as HostKeyPolicy
from sshrun.ssh_options import check_ssh_files as check_ssh_files

__all__ = ["HOST_KEY_POLICIES", "HostKeyPolicy", "NodeConnection", "SSHSettings",
           "check_ssh_files", "connect"]


class _Client(asyncssh.SSHClient):
    """Sees the key a node offered, and applies accept-new; says when it closes."""

    def __init__(self, policy: HostKeyPolicy, known_hosts: Sequence[str],
                 view: KnownHostsView | None, files: KnownHostsFiles) -> None:
        self.policy = policy
        self.known_hosts = known_hosts
        self.view = view  # None: insecure, nothing is checked
        self.files = files
        # Called once when a logged-in connection is gone: lets go of its jump host.
        self.closed: Callable[[], None] | None = None
        self.offered: asyncssh.SSHKey | None = None
        self.known_keys: list[asyncssh.SSHKey] = []
        self.known_in: list[str] = []  # the files that hold a key for this host
        self.entry = ""  # how known_hosts names this host: host, or [host]:port

    def validate_host_public_key(
        self, host: str, addr: str, port: int, key: asyncssh.SSHKey
    ) -> bool:
        # asyncssh calls this only for a key that its trusted set lacks.
        self.offered = key
        self.entry = host if port == 22 else f"[{host}]:{port}"
        if self.view is not None:
            for path, keys in self.view.holding(host, addr, port if port != 22 else None):
                self.known_keys += keys
                self.known_in.append(path)
        if self.policy != "accept-new" or self.known_keys:
            return False
        self.files.record(self.known_hosts[0], self.entry, key)
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        closed, self.closed = self.closed, None
        if closed is not None:
            closed()


def _fingerprint(key: asyncssh.SSHKey | None) -> str:
    return key.get_fingerprint("sha256") if key is not None else "(unknown)"


@dataclass
class NodeConnection:
    conn: asyncssh.SSHClientConnection
    address: str  # where the other nodes can reach this one (rendezvous, --local-addr)


async def connect(
    host: HostSpec, settings: SSHSettings, limit: asyncio.Semaphore | None = None
) -> NodeConnection:
    """One logged-in connection to ``host``, or an ``SSHError`` saying why not.

    Through its ProxyJump hosts, if any, over the run's one shared connection to
    them (sshrun.jumps), held until this connection closes."""
    built = await settings.cache.options(host, settings)
    proxy = settings.jump_host or built.options.tunnel
    limit = limit if limit is not None else asyncio.Semaphore(1)
    if not isinstance(proxy, str) or proxy.lower() == "none":
        conn = await _connect_retrying(host, settings, None, built, limit)
        peer = conn.get_extra_info("peername")
        # The address we reached is one the cluster can route to; an ssh
        # alias or a name only the head resolves might not be.
        address = str(peer[0]) if isinstance(peer, tuple) and peer else str(built.options.host)
        return NodeConnection(conn, address)
    chain = parse_chain(proxy)
    jumps = settings.cache.jumps

    async def open_hop(hop: HostSpec, through: asyncssh.SSHClientConnection | None
                       ) -> asyncssh.SSHClientConnection:
        # Connected ourselves, so that jump hosts get the same config, the same
        # host-key policy and the same errors as the nodes (asyncssh on its own
        # would read only ~/.ssh/config for them).
        return await _connect_retrying(hop, settings, through,
                                       await settings.cache.options(hop, settings), limit)

    try:
        jump = await jumps.acquire(chain, open_hop)
    except SSHError as exc:
        raise type(exc)(host.label, f"via ProxyJump {exc.host}: {exc.message}") from None
    try:
        conn = await _connect_retrying(host, settings, jump, built, limit,
                                       closed=lambda: jumps.release(chain))
    except BaseException:
        jumps.release(chain)
        raise
    return NodeConnection(conn, str(built.options.host))


async def _connect_retrying(
    host: HostSpec, settings: SSHSettings, tunnel: asyncssh.SSHClientConnection | None,
    built: HostOptions, limit: asyncio.Semaphore, closed: Callable[[], None] | None = None,
) -> asyncssh.SSHClientConnection:
    """``_connect_one`` again after a dropped handshake (sshrun.connect_retry), each
    attempt within ``limit``'s handshakes. The attempts and the waits between them
    share the connect timeout; waiting for a handshake slot does not count."""
    loop = asyncio.get_running_loop()
    timeout = settings.timeouts.connect
    spent = 0.0
    retries = 0
    while True:
        async with limit:
            began = loop.time()
            try:
                async with asyncio.timeout(timeout - spent):
                    return await _connect_one(host, settings, tunnel, built, closed)
            except TimeoutError:
                dropped = f" ({retries} dropped handshakes retried)" if retries else ""
                raise ConnectError(host.label, f"timed out after {timeout:.0f}s connecting "
                                               f"or logging in{dropped}") from None
            except _Dropped as exc:
                spent += loop.time() - began
                delay = retry_delay(retries, spent, timeout, random.random())
                if delay is None:
                    raise ConnectError(
                        host.label, f"{exc.reason}, {retries + 1} times in {timeout:.0f}s "
                        "(the node's sshd may be over its MaxStartups: lower "
                        "--max-handshakes, or raise MaxStartups there)") from None
        retries += 1
        spent += delay
        await asyncio.sleep(delay)


class _Dropped(Exception):
    """A handshake that the node closed before the login: tried again."""

    def __init__(self, reason: str) -> None:
        self.reason = reason


async def _connect_one(
    host: HostSpec, settings: SSHSettings, tunnel: asyncssh.SSHClientConnection | None,
    built: HostOptions, closed: Callable[[], None] | None,
) -> asyncssh.SSHClientConnection:
    options, known = built.options, list(built.known_hosts)
    policy = settings.host_key_policy
    files = settings.cache.known_hosts
    view = None if policy == "insecure" else files.view(known)
    client = _Client(policy, known, view, files)
    try:
        # config=[]: the options hold the parsed config; the default () would
        # read ~/.ssh/config again on top of it.
        conn, _ = await asyncssh.create_connection(
            lambda: client, host.host, options=options, config=[],
            known_hosts=view.trusted if view is not None else None,
            tunnel=tunnel if tunnel is not None else (),
        )
        # Only a connection that logged in holds the jump; a failed attempt's
        # hold is the caller's to drop.
        client.closed = closed
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
    except DROPPED as exc:
        if isinstance(exc, asyncssh.Error):
            text = exc.reason
        else:
            text = os.strerror(exc.errno) if isinstance(exc, OSError) and exc.errno else str(exc)
        raise _Dropped(f"the handshake was dropped before the login ({text.lower()})") from None
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
