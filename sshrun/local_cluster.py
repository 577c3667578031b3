"""An embedded cluster: N SSH nodes on 127.0.0.2, 127.0.0.3, ... inside sshrun.

``sshrun --local-cluster N train.py`` tries sshrun without any machine: each
node is an asyncssh server on its own loopback address with a throwaway host
key, accepting one throwaway client key. sshrun writes a temporary
known_hosts and an ssh config (``Host node1`` -> ``HostName 127.0.0.2``) and
then connects through exactly the code path of a real cluster: the config
alias, strict host-key checking, the bootstrap, the agent.

A node runs each exec request as ``/bin/sh -c COMMAND`` in a new session, as
sshd does, with the head's environment as the login environment. Its commands
are the head's own children, so closing the cluster waits (bounded) for those
still running: an agent whose connection closed is tearing down, and the
event loop must not close under it.
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import socket
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import asyncssh

from sshrun.errors import ConfigError
from sshrun.frozen_dataclass import frozen_dataclass
from sshrun.hostfile import HostSpec

MAX_NODES = 250  # 127.0.0.2 .. 127.0.0.251
# How long closing the cluster waits for the commands its nodes still run.
CLOSE_TIMEOUT = 15.0


def local_cluster_hosts(n: int) -> tuple[HostSpec, ...]:
    """The embedded cluster's node names (``node1`` ... ``nodeN``), known before it starts."""
    return tuple(HostSpec(f"node{k + 1}", where="--local-cluster") for k in range(n))


@frozen_dataclass
class LocalCluster:
    hosts: tuple[HostSpec, ...]
    ssh_config: str
    known_hosts: str
    client_key: str


class _NodeServer(asyncssh.SSHServer):
    def __init__(self, client_key: asyncssh.SSHKey) -> None:
        self._client_key = client_key

    def begin_auth(self, username: str) -> bool:
        return True

    def password_auth_supported(self) -> bool:
        return False

    def public_key_auth_supported(self) -> bool:
        return True

    def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
        return bool(key == self._client_key)


async def _copy(read: Callable[[int], Awaitable[bytes]], write: Callable[[bytes], None],
                drain: Callable[[], Awaitable[None]]) -> None:
    while data := await read(65536):
        write(data)
        await drain()


async def _run_command(process: asyncssh.SSHServerProcess[bytes]) -> None:
    command = process.command
    if not command:
        process.stderr.write(b"the embedded nodes run commands, not shells\n")
        process.exit(1)
        return
    proc = await asyncio.create_subprocess_exec(
        "/bin/sh", "-c", command,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, start_new_session=True,
    )
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    stdin = proc.stdin

    async def feed_stdin() -> None:
        # Channel EOF (or a lost connection) closes the command's stdin: that
        # is how an agent learns that the head is gone, as under sshd.
        try:
            with contextlib.suppress(asyncssh.Error, OSError, ConnectionError):
                await _copy(process.stdin.read, stdin.write, stdin.drain)
        finally:
            stdin.close()

    feeder = asyncio.ensure_future(feed_stdin())
    try:
        with contextlib.suppress(asyncssh.Error, OSError, ConnectionError):
            await asyncio.gather(
                _copy(proc.stdout.read, process.stdout.write, process.stdout.drain),
                _copy(proc.stderr.read, process.stderr.write, process.stderr.drain),
            )
        status = await proc.wait()
    finally:
        feeder.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await feeder
    process.exit(status if status >= 0 else 128 - status)


def _free_port(addresses: list[str]) -> int:
    """A port free on every node address (one port keeps the config short)."""
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind((addresses[0], 0))
            port = int(probe.getsockname()[1])
        try:
            for addr in addresses[1:]:
                with socket.socket() as s:
                    s.bind((addr, port))
        except OSError:
            continue
        return port
    raise ConfigError("--local-cluster: no port is free on every loopback address")


@contextlib.asynccontextmanager
async def local_cluster(n: int) -> AsyncIterator[LocalCluster]:
    if not 1 <= n <= MAX_NODES:
        raise ConfigError(f"--local-cluster: expected 1 to {MAX_NODES} nodes, got {n}")
    addresses = [f"127.0.0.{k + 2}" for k in range(n)]
    client_key = asyncssh.generate_private_key("ssh-ed25519")
    with tempfile.TemporaryDirectory(prefix="sshrun-local-") as tmp:
        key_path = Path(tmp, "id_ed25519")
        key_path.write_bytes(client_key.export_private_key())
        key_path.chmod(0o600)
        port = _free_port(addresses)
        servers: list[asyncssh.SSHAcceptor] = []
        known_lines: list[str] = []
        config_lines: list[str] = []
        user = getpass.getuser()
        public = client_key.convert_to_public()
        running: set[asyncio.Task[None]] = set()

        async def serve(process: asyncssh.SSHServerProcess[bytes]) -> None:
            task = asyncio.current_task()
            assert task is not None
            running.add(task)
            try:
                await _run_command(process)
            finally:
                running.discard(task)

        try:
            for k, addr in enumerate(addresses):
                host_key = asyncssh.generate_private_key("ssh-ed25519")
                known_lines.append(
                    f"[{addr}]:{port} {host_key.export_public_key().decode().strip()}"
                )
                config_lines += [
                    f"Host node{k + 1}", f"  HostName {addr}", f"  Port {port}",
                    f"  User {user}", f"  IdentityFile {key_path}", "",
                ]
                servers.append(await asyncssh.listen(
                    addr, port, server_host_keys=[host_key],
                    server_factory=lambda: _NodeServer(public),
                    process_factory=serve, encoding=None,
                    allow_scp=False, agent_forwarding=False,
                ))
            known = Path(tmp, "known_hosts")
            known.write_text("\n".join(known_lines) + "\n")
            config = Path(tmp, "ssh_config")
            config.write_text("\n".join(config_lines))
            hosts = local_cluster_hosts(n)
            yield LocalCluster(hosts, str(config), str(known), str(key_path))
        finally:
            for server in servers:
                server.close()
            await asyncio.gather(*(s.wait_closed() for s in servers), return_exceptions=True)
            if running:
                # Their connections are gone, so their stdin is closed: each agent
                # tears down and exits on its own, as it would under sshd.
                await asyncio.wait(set(running), timeout=CLOSE_TIMEOUT)
