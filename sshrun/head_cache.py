"""The head's small caches: ``$XDG_CACHE_HOME/sshrun/<kind>/<name>`` (default ``~/.cache``).

Each cache is a folder of files that are only ever worth having, never
needed: ``agent`` (the compiled agent payload, sshrun.agent), ``sync`` (the
manifests last synced, sshrun.sync_cache), ``ssh`` (whether the installed
asyncssh is one whose config parser sshrun.ssh_config copies). A file
holds the SHA-256 of its body in front of it, so that a torn or foreign
file reads as absent; it is written to a temporary name and renamed into
place, so that two heads at once see one whole copy or none; and only the
newest ``keep`` files of a folder are kept. Any ``OSError`` (no home, a
read-only or full disk) is swallowed: the caller builds what it wanted
afresh.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from pathlib import Path


def folder(kind: str) -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "sshrun" / kind


def load(kind: str, name: str) -> bytes | None:
    """The body stored under ``name``, or None when it is absent, unreadable or torn."""
    try:
        data = (folder(kind) / name).read_bytes()
    except OSError:
        return None
    digest, body = data[:32], data[32:]
    return body if hashlib.sha256(body).digest() == digest else None


def store(kind: str, name: str, body: bytes, keep: int) -> None:
    """``body`` under ``name``, in place of any copy, keeping the newest ``keep`` files."""
    where = folder(kind)
    with contextlib.suppress(OSError):
        where.mkdir(parents=True, exist_ok=True)
        tmp = where / f".{name}.{os.getpid()}.tmp"
        tmp.write_bytes(hashlib.sha256(body).digest() + body)
        os.replace(tmp, where / name)
        kept = [p for p in where.iterdir() if not p.name.startswith(".")]
        for stale in sorted(kept, key=lambda p: p.stat().st_mtime)[:-keep]:
            stale.unlink()


def touch(kind: str, name: str) -> bool:
    """Mark ``name`` as just used (the newest kept); False when there is no such file."""
    try:
        os.utime(folder(kind) / name)
    except OSError:
        return False
    return True
