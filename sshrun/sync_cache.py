"""The head's copies of the manifests it synced, by digest, so that a node whose tree
is as last synced names its digest instead of sending its whole manifest.

Files ``$XDG_CACHE_HOME/sshrun/sync/<digest>.json.z`` (default ``~/.cache``):
a manifest in the wire format, JSON, zlib'd, kept by sshrun.head_cache; the
newest ``KEEP`` are kept. A copy that cannot be read or written is no error,
only a full manifest from the node; what the head sends is checked on the
node against the digest of the head's whole manifest, so a wrong copy cannot
make a wrong tree.
"""

from __future__ import annotations

import json
import re
import zlib
from collections.abc import Mapping
from pathlib import Path

from sshrun import head_cache
from sshrun.sync_manifest import Entry

KEEP = 32
_DIGEST = re.compile(r"[0-9a-f]{16}")


def cache_dir() -> Path:
    return head_cache.folder("sync")


def _name(digest: str) -> str:
    return f"{digest}.json.z"


def load(digest: str) -> dict[str, Entry] | None:
    if not _DIGEST.fullmatch(digest):
        return None
    body = head_cache.load("sync", _name(digest))
    if body is None:
        return None
    try:
        value = json.loads(zlib.decompress(body))
        return {str(p): Entry.from_wire(e) for p, e in value.items()}
    except (ValueError, zlib.error, AttributeError):
        return None


def store(digest: str, entries: Mapping[str, Entry]) -> None:
    if head_cache.touch("sync", _name(digest)):
        return
    body = zlib.compress(json.dumps({p: e.to_wire() for p, e in entries.items()},
                                    separators=(",", ":")).encode())
    head_cache.store("sync", _name(digest), body, KEEP)
