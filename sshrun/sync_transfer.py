"""``--sync``'s transfer to one node, over the node's own sshrun connection.

Why an exec channel and not SFTP: SFTP needs the node's ``sftp-server``
subsystem (the embedded cluster of ``sshrun.local_cluster`` has none, and
some hardened sshd configs drop it), and it would take a round trip per file
to learn what the node has. Instead the head runs
``sshrun/node/sync_node.py`` under the bootstrap the agent uses (the same
one remote command, ``PYTHON -S -c BOOTSTRAP``; no rsync, nothing installed),
asks it for the destination's manifest, and streams only the files that
differ, back to back, on one channel; the node stages and swaps (see that
module). One channel per node, all nodes at once: SSH's own flow control
shares the head's uplink between them, or, with ``--sync-bwlimit``, one
``sync_meter.Bandwidth`` hands the limit out to them in turns. Each node's
progress goes to the attempt's ``SyncMeter`` (the progress bar).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import zlib
from pathlib import Path

import asyncssh

from sshrun import agent, preamble, sync_cache
from sshrun.errors import AgentError, NodeSetupError
from sshrun.frozen_dataclass import frozen_dataclass
from sshrun.preamble import Preamble
from sshrun.sanitize import sanitize
from sshrun.session import remote_command
from sshrun.sync_manifest import Entry, SyncTree, diff
from sshrun.sync_meter import Bandwidth, SyncMeter

SOURCE = agent.source("sync_node")
_CHUNK = 1 << 18
REPLY_MAX = 64 << 20  # a node's manifest of a 1 GiB tree of small files fits


@frozen_dataclass
class SyncResult:
    """What one node's sync did: files and bytes sent, paths removed, the path synced."""

    files: int
    bytes: int
    deleted: int
    path: str
    seconds: float
    wire_sent: int = 0  # every byte the head wrote to the channel: code, manifest, files
    wire_received: int = 0  # every byte it read back (the node's manifest, replies)


class _Channel:
    def __init__(self, process: asyncssh.SSHClientProcess[bytes], token: str,
                 stall: float, bandwidth: Bandwidth | None) -> None:
        self.process = process
        self.stall = stall
        self.bandwidth = bandwidth
        self.pre = Preamble(token)
        self.buf = bytearray()
        self.sent = 0
        self.received = 0

    async def reply(self, label: str) -> dict[str, object]:
        while b"\n" not in self.buf:
            data = await self.process.stdout.read(1 << 16)
            self.received += len(data)
            if not data:
                self.pre.end()
                raise AgentError(label, "sync: the node's side exited early"
                                     + (f": {self.pre.last_line()}" if not self.pre.found
                                        and self.pre.last_line() else ""))
            self.buf += self.pre.feed(data)
            if len(self.buf) > REPLY_MAX:
                raise AgentError(label, "sync: the node's reply is too long")
        at = self.buf.index(b"\n")
        line = bytes(self.buf[:at])
        del self.buf[:at + 1]
        try:
            value = json.loads(line)
        except ValueError:
            raise AgentError(label, "sync: the node's reply is not JSON") from None
        if not isinstance(value, dict):
            raise AgentError(label, "sync: the node's reply is not an object")
        if not value.get("ok"):
            raise NodeSetupError(label, sanitize(f"sync: {value.get('error')}"))
        return value

    async def blob(self, label: str, size: int) -> bytes:
        """``size`` bytes that follow a reply line (the node's zlib'd manifest)."""
        if size > REPLY_MAX:
            raise AgentError(label, "sync: the node's manifest is too long")
        while len(self.buf) < size:
            data = await self.process.stdout.read(1 << 16)
            self.received += len(data)
            if not data:
                raise AgentError(label, "sync: the node's side exited mid-manifest")
            self.buf += data
        out = bytes(self.buf[:size])
        del self.buf[:size]
        return out

    async def send(self, data: bytes, throttled: bool = False) -> None:
        if throttled and self.bandwidth is not None:
            loop = asyncio.get_running_loop()
            wait = self.bandwidth.reserve(len(data), loop.time())
            if wait > 0:
                await asyncio.sleep(wait)  # this node's turn on the uplink
        self.process.stdin.write(data)
        self.sent += len(data)
        # A node that stops reading (frozen, its disk stuck) is a silent node.
        async with asyncio.timeout(self.stall):
            await self.process.stdin.drain()


async def sync_to(conn: asyncssh.SSHClientConnection, label: str, python: str, dest: str,
                  tree: SyncTree, reply_timeout: float, meter: SyncMeter | None = None,
                  bandwidth: Bandwidth | None = None) -> SyncResult:
    """Mirror ``tree`` to ``dest`` on the node, or raise naming the node: a
    ``NodeSetupError`` (exit 2) for what the node refused (its destination, a
    permission), an ``AgentError`` (exit 255) for a broken channel or a silent node.
    ``meter`` hears what it has to send and sends (under ``label``); ``bandwidth``,
    when given, paces the files' bytes."""
    meter = meter or SyncMeter()
    meter.start(label)
    try:
        done = await _sync_to(conn, label, python, dest, tree, reply_timeout, meter, bandwidth)
    except BaseException:
        meter.fail(label)
        raise
    meter.finish(label)
    return done


async def _sync_to(conn: asyncssh.SSHClientConnection, label: str, python: str, dest: str,
                   tree: SyncTree, reply_timeout: float, meter: SyncMeter,
                   bandwidth: Bandwidth | None) -> SyncResult:
    started = time.monotonic()
    token = preamble.new_token()
    code = (SOURCE + f"\n_MARKER = {preamble.marker(token)!r}\n").encode()
    try:
        process = await conn.create_process(remote_command(python), encoding=None)
    except (asyncssh.Error, OSError) as exc:
        raise AgentError(label, f"sync: cannot open a session: {exc}") from None
    channel = _Channel(process, token, reply_timeout, bandwidth)
    try:
        await channel.send(b"%08x" % len(code) + code + _line({"dest": dest}))
        async with asyncio.timeout(reply_timeout):
            first = await channel.reply(label)
        if first.get("waiting"):
            # Another node's sync holds this destination (a shared filesystem): its
            # own bounds apply to it, and the stop (Ctrl-C) to this wait.
            first = await channel.reply(label)
        path = str(first.get("path", dest))
        held = str(first.get("digest", ""))
        if held == tree.digest:
            await channel.send(_line({"done": True}))
            return SyncResult(0, 0, 0, path, time.monotonic() - started, channel.sent,
                              channel.received)
        node = {} if not held else sync_cache.load(held)
        if node is None:
            await channel.send(_line({"manifest": True}))
            async with asyncio.timeout(reply_timeout):
                told = await channel.reply(label)
                packed = await channel.blob(label, _count(label, told.get("manifest_bytes")))
            node = _node_manifest(label, _unpack(label, packed))
        delta = diff(tree.entries, node)
        if delta.same:  # the node's tree was this one under another digest: an old head
            await channel.send(_line({"done": True}))
            return SyncResult(0, 0, 0, path, time.monotonic() - started, channel.sent,
                              channel.received)
        # Only what differs from the node's manifest: the node applies it to its own
        # and checks the result against the digest of the head's.
        changed = {p: e.to_wire() for p, e in tree.entries.items() if node.get(p) != e}
        await channel.send(_line({"changed": changed, "removed": list(delta.delete),
                                  "send": list(delta.send), "digest": tree.digest}))
        meter.plan(label, len(delta.send), sum(tree.entries[r].size for r in delta.send))
        root = Path(tree.root)
        for rel in delta.send:
            await _send_file(channel, label, root / rel, tree.entries[rel], meter)
        async with asyncio.timeout(reply_timeout):  # the node only renames now
            done = await channel.reply(label)
        sync_cache.store(tree.digest, tree.entries)
        return SyncResult(len(delta.send), int(str(done.get("received", 0))),
                          len(delta.delete), path, time.monotonic() - started, channel.sent,
                          channel.received)
    except TimeoutError:
        raise AgentError(label, f"sync: the node did not answer or read within "
                                f"{reply_timeout:.0f}s") from None
    except (asyncssh.Error, OSError) as exc:
        raise AgentError(label, f"sync: the connection failed: {exc}") from None
    finally:
        with contextlib.suppress(asyncssh.Error, OSError):
            process.stdin.write_eof()
        process.close()


def _line(value: object) -> bytes:
    return (json.dumps(value, separators=(",", ":")) + "\n").encode()


def _count(label: str, value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise AgentError(label, "sync: the node's reply has no manifest size")
    return value


def _unpack(label: str, packed: bytes) -> object:
    try:
        return json.loads(zlib.decompress(packed))
    except (zlib.error, ValueError):
        raise AgentError(label, "sync: the node's manifest is not zlib'd JSON") from None


def _node_manifest(label: str, value: object) -> dict[str, Entry]:
    if not isinstance(value, dict):
        raise AgentError(label, "sync: the node's manifest is not an object")
    try:
        return {str(p): Entry.from_wire(e) for p, e in value.items()}
    except ValueError as exc:
        raise AgentError(label, f"sync: {exc}") from None


async def _send_file(channel: _Channel, label: str, path: Path, entry: Entry,
                     meter: SyncMeter) -> None:
    sent = 0
    step = channel.bandwidth.chunk if channel.bandwidth is not None else _CHUNK
    with path.open("rb") as f:
        while sent < entry.size:
            chunk = f.read(min(step, entry.size - sent))
            if not chunk:
                break
            await channel.send(chunk, throttled=True)
            sent += len(chunk)
            meter.sent(label, len(chunk), file_done=sent == entry.size)
    if entry.size == 0:
        meter.sent(label, 0, file_done=True)
    if sent != entry.size:
        # The node would wait for bytes that never come: say it here, and let the
        # finally drop the channel (the node then removes its staging on the next sync).
        raise NodeSetupError(label, f"sync: {path} changed size while syncing "
                                    f"({entry.size} bytes when read, {sent} now)")
