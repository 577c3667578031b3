"""The run's known_hosts files, each read and decoded once.

asyncssh, given known_hosts as paths, reads and decodes every file for every
connection: at 128 nodes with 256 entries that was 32,768 public-key decodes
(issue 12). Here a file is read once per run and handed to asyncssh as one
pre-parsed ``SSHKnownHosts``; it is read again only if it changed on disk
(its inode, size or modification time), so that a key fixed between two
attempts of a long job is seen, as before.

``accept-new`` appends a key with ``record``, which also adds it to what is
held in memory, so that recording 256 new hosts does not re-read the file 256
times. A file that cannot be read or holds a malformed line is a
``ConfigError`` naming it (before, asyncssh's traceback).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import asyncssh

from sshrun.configfile import read_config_bytes
from sshrun.errors import ConfigError, shown
from sshrun.frozen_dataclass import frozen_dataclass

# asyncssh checks against this file when none of the configured ones exists;
# the view does the same, so that nothing changes for such a host.
ASYNCSSH_FALLBACK = Path("~/.ssh/known_hosts")
# Far beyond any site's global known_hosts; the limit only bounds memory.
MAX_KNOWN_HOSTS_BYTES = 256 * 1024 * 1024

Signature = tuple[int, int, int, int]  # st_dev, st_ino, st_size, st_mtime_ns


@dataclass
class _File:
    path: str
    signature: Signature
    text: str
    parsed: asyncssh.SSHKnownHosts | None = None  # decoded on first use (a refused key)

    def hosts(self) -> asyncssh.SSHKnownHosts:
        if self.parsed is None:
            self.parsed = _decode(self.path, self.text)
        return self.parsed


@dataclass
class _Merged:
    signatures: tuple[tuple[str, Signature], ...]
    hosts: asyncssh.SSHKnownHosts


@frozen_dataclass
class KnownHostsView:
    """What one connection checks against: asyncssh's trusted set and each file apart."""

    trusted: asyncssh.SSHKnownHosts  # every existing file, merged as asyncssh merges them
    files: tuple[_File, ...] = ()  # the configured files that exist, each apart

    def holding(self, host: str, addr: str, port: int | None
                ) -> list[tuple[str, list[asyncssh.SSHKey]]]:
        """The files that hold a key for this host, and those keys."""
        found = []
        for f in self.files:
            # Decoded only now, when a key was refused (to say which file holds
            # the old one): a run whose keys all match decodes each entry once.
            keys = f.hosts().match(host, addr, port)[0]
            if keys:
                found.append((f.path, list(keys)))
        return found


class KnownHostsFiles:
    """The known_hosts files of one run, each read once (again only when it changed)."""

    def __init__(self) -> None:
        self._files: dict[str, _File] = {}
        self._merged: dict[tuple[str, ...], _Merged] = {}

    def view(self, paths: Sequence[str]) -> KnownHostsView:
        """The view of ``paths`` (expanded paths, in order); files that do not exist are skipped."""
        present = [f for f in (self._file(p) for p in paths) if f is not None]
        trusting = present
        if not present:
            fallback = os.path.expanduser(str(ASYNCSSH_FALLBACK))
            if os.path.isfile(fallback) and os.access(fallback, os.R_OK):
                found = self._file(fallback)
                trusting = [found] if found is not None else []
        key = tuple(f.path for f in trusting)
        signatures = tuple((f.path, f.signature) for f in trusting)
        merged = self._merged.get(key)
        if merged is None or merged.signatures != signatures:
            hosts = asyncssh.SSHKnownHosts()
            for f in trusting:
                _load(hosts, f.path, f.text)
            merged = self._merged[key] = _Merged(signatures, hosts)
        return KnownHostsView(merged.hosts, tuple(present))

    def record(self, path: str, entry: str, key: asyncssh.SSHKey) -> None:
        """Append ``entry key`` to ``path`` (accept-new), and to what is held of it."""
        target = Path(path).expanduser()
        target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        line = f"{entry} {key.export_public_key().decode().strip()}\n"
        held = self._files.get(path)
        with target.open("a") as f:
            f.write(line)
        if held is None:
            return  # a file new to this run: read whole at the next view
        before = held.signature
        try:
            st = os.stat(target)
        except OSError:
            return
        after = _signature(st)
        if (after[:2] != before[:2]
                or after[2] != before[2] + len(line.encode())):
            return  # someone else wrote too: the next view reads it again
        held.text += line
        held.signature = after
        if held.parsed is not None:
            held.parsed.load(line)
        for merged in self._merged.values():
            if any(p == held.path for p, _ in merged.signatures):
                merged.hosts.load(line)
                merged.signatures = tuple((p, after if p == held.path else s)
                                          for p, s in merged.signatures)

    def _file(self, path: str) -> _File | None:
        try:
            st = os.stat(path)
        except OSError:
            return None
        if not stat.S_ISREG(st.st_mode):
            return None  # as before: only regular files are read
        signature = _signature(st)
        held = self._files.get(path)
        if held is not None and held.signature == signature:
            return held
        data = read_config_bytes(path, "known_hosts file", limit=MAX_KNOWN_HOSTS_BYTES)
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            line = data[: exc.start].count(b"\n") + 1
            raise ConfigError(
                f"known_hosts file {shown(path)} line {line}: invalid UTF-8 byte "
                f"0x{data[exc.start]:02x}: expected a UTF-8 text file") from None
        held = self._files[path] = _File(path, signature, text)
        return held


def _signature(st: os.stat_result) -> Signature:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def _decode(path: str, text: str) -> asyncssh.SSHKnownHosts:
    hosts = asyncssh.SSHKnownHosts()
    _load(hosts, path, text)
    return hosts


def _load(hosts: asyncssh.SSHKnownHosts, path: str, text: str) -> None:
    try:
        hosts.load(text)
    except ValueError as exc:
        # asyncssh names the entry ("Invalid known hosts entry: ..."), not the file.
        raise ConfigError(f"known_hosts file {shown(path)}: {exc}") from None
