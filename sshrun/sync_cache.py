"""The head's copies of the manifests it synced, by digest, so that a node whose tree
is as last synced names its digest instead of sending its whole manifest.

Files ``$XDG_CACHE_HOME/sshrun/sync/<digest>.json.z`` (default ``~/.cache``):
a manifest in the wire format, JSON, zlib'd; the newest ``KEEP`` are kept. A
copy that cannot be read or written is no error, only a full manifest from
the node; what the head sends is checked on the node against the digest of
the head's whole manifest, so a wrong copy cannot make a wrong tree.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import zlib
from collections.abc import Mapping
from pathlib import Path

from sshrun.sync_manifest import Entry

KEEP = 32
_DIGEST = re.compile(r"[0-9a-f]{16}")


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "sshrun" / "sync"


def load(digest: str) -> dict[str, Entry] | None:
    if not _DIGEST.fullmatch(digest):
        return None
    try:
        value = json.loads(zlib.decompress((cache_dir() / f"{digest}.json.z").read_bytes()))
        return {str(p): Entry.from_wire(e) for p, e in value.items()}
    except (OSError, ValueError, zlib.error, AttributeError):
        return None


def store(digest: str, entries: Mapping[str, Entry]) -> None:
    folder = cache_dir()
    path = folder / f"{digest}.json.z"
    with contextlib.suppress(OSError):
        if path.exists():
            os.utime(path)
            return
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f".{digest}.{os.getpid()}.tmp"
        tmp.write_bytes(zlib.compress(json.dumps(
            {p: e.to_wire() for p, e in entries.items()}, separators=(",", ":")).encode()))
        os.replace(tmp, path)
        old = sorted(folder.glob("*.json.z"), key=lambda p: p.stat().st_mtime)[:-KEEP]
        for stale in old:
            stale.unlink()
