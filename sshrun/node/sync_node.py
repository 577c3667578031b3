"""``--sync``'s node side: report the destination's manifest, stage the new tree, swap it in.

Not part of the agent's bundle: the head runs it on its own exec channel
under the bootstrap (``PYTHON -S -c BOOTSTRAP``, this source as the payload,
``_MARKER`` appended by the head), before the agent starts, so that jobs
without ``--sync`` do not carry it. Standard library only, Python 3.8.

Layout on the node, for a destination ``DEST`` (the node's working directory)::

    DEST -> DEST.sshrun-<digest>.<nonce>     a symlink, swapped by rename(2)
    DEST.sshrun-<digest>.<nonce>/            the tree the job sees
    .DEST.sshrun-cache.json                  size/mtime/inode -> sha256 of that tree
    .DEST.sshrun-lock                        flock(2)'d while a sync runs

A new tree is staged in ``DEST.sshrun-tmp-<pid>``: files the head sends are
written there (their sha256 checked), unchanged ones hard-linked from the
current tree (copied where links fail), then renamed to its final name and
put in place by renaming a new symlink over ``DEST``. The job's ``chdir``
resolves the link once, so a running job never sees a tree change under
it, and an interrupted sync leaves ``DEST`` pointing at the previous
tree; its staging directory is removed by the next sync. The previous
tree is kept (a job still running in it), older ones removed.

Protocol over stdin/stdout: the node writes ``_MARKER`` (after any login
shell noise), then one JSON line per reply. The head sends one JSON line
``{"dest": D}``; the node answers ``{"ok": true, "digest": H}``, its tree's
manifest digest (after ``{"ok": true, "waiting": true}`` while another sync
holds DEST's lock). A head that has no copy of that manifest
(``sshrun.sync_cache``) asks ``{"manifest": true}``, and the node answers
``{"ok": true, "manifest_bytes": N}`` and N bytes: the manifest, JSON,
zlib'd. Then ``{"done": true}`` (nothing to
change) or ``{"changed": {...}, "removed": [paths], "send": [paths],
"digest": H}`` (the entries that differ from the node's manifest, and the
digest the whole new manifest must have) followed by the bytes of each path
in ``send``, in order; the node answers ``{"ok": true, "received": BYTES,
"files": N}``.
Any failure is ``{"ok": false, "error": TEXT}`` and exit status 1.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import stat
import sys
import zlib
from typing import Any, BinaryIO

Wire = Any  # JSON values as json.loads gives them

_MARKER = b""  # the head appends its own, with its token
_CHUNK = 1 << 20
_buf = bytearray()


class SyncFailed(Exception):
    pass


def _read_line() -> Wire:
    while b"\n" not in _buf:
        chunk = os.read(0, _CHUNK)
        if not chunk:
            raise SyncFailed("the head went away")
        _buf.extend(chunk)
    at = _buf.index(b"\n")
    line = bytes(_buf[:at])
    del _buf[:at + 1]
    return json.loads(line.decode("utf-8"))


def _read_into(f: BinaryIO, size: int, digest: Any) -> None:
    left = size
    if _buf:
        take = bytes(_buf[:left])
        del _buf[:len(take)]
        f.write(take)
        digest.update(take)
        left -= len(take)
    while left > 0:
        chunk = os.read(0, min(left, _CHUNK))
        if not chunk:
            raise SyncFailed("the head went away mid-file")
        f.write(chunk)
        digest.update(chunk)
        left -= len(chunk)


def _reply(obj: Wire) -> None:
    _write_all((json.dumps(obj) + "\n").encode("utf-8"))


def _write_all(data: bytes) -> None:
    while data:
        data = data[os.write(1, data):]


def _lock(dest: str) -> int:
    """Hold DEST's lock for the rest of this process: nodes that share a filesystem
    (the embedded cluster, an NFS home) sync one after the other, and each after
    the first finds the tree in place. Says "waiting" first, so that the head
    knows the wait is another sync's and not a silent node."""
    parent, base, _ = _names(dest)
    fd = os.open(os.path.join(parent, "." + base + ".sshrun-lock"), os.O_RDWR | os.O_CREAT,
                 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        _reply({"ok": True, "waiting": True})
        fcntl.flock(fd, fcntl.LOCK_EX)
    return fd


def _names(dest: str) -> tuple[str, str, str]:
    parent, base = os.path.split(dest)
    return parent, base, os.path.join(parent, "." + base + ".sshrun-cache.json")


def _current(dest: str) -> str | None:
    """The tree DEST points at now (None: none yet); refuses what sshrun did not make."""
    parent, base, _ = _names(dest)
    if os.path.islink(dest):
        target = os.readlink(dest)
        if os.sep in target or not target.startswith(base + ".sshrun-"):
            raise SyncFailed(dest + " is a symlink sshrun did not make (to " + target
                             + "); --sync replaces it: remove it or choose another workdir")
        path = os.path.join(parent, target)
        return path if os.path.isdir(path) else None
    if os.path.isdir(dest):
        if os.listdir(dest):
            raise SyncFailed(dest + " is a directory sshrun did not sync; --sync makes it "
                             "a symlink to the synced tree: remove it or choose another "
                             "workdir")
        return None
    if os.path.lexists(dest):
        raise SyncFailed(dest + " exists and is not a directory")
    return None


def _load_cache(path: str) -> dict[str, Wire]:
    try:
        with open(path) as f:
            cache = json.load(f)
        return cache if isinstance(cache, dict) else {}
    except (OSError, ValueError):
        return {}


def _hash(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            chunk = f.read(_CHUNK)
            if not chunk:
                return digest.hexdigest()
            digest.update(chunk)


def _manifest(tree: str | None, cache: dict[str, Wire]
              ) -> tuple[dict[str, Wire], dict[str, Wire]]:
    """The tree's manifest (the head's wire format) and the cache that produced it."""
    entries: dict[str, Wire] = {}
    fresh: dict[str, Wire] = {}
    if tree is None:
        return entries, fresh
    for dirpath, dirnames, filenames in os.walk(tree):
        rel_dir = os.path.relpath(dirpath, tree)
        rel_dir = "" if rel_dir == "." else rel_dir.replace(os.sep, "/")
        for name in list(dirnames) + filenames:
            path = os.path.join(dirpath, name)
            rel = rel_dir + "/" + name if rel_dir else name
            info = os.lstat(path)
            mode = stat.S_IMODE(info.st_mode)
            if stat.S_ISLNK(info.st_mode):
                entries[rel] = ["l", 0, 0, os.readlink(path)]
            elif stat.S_ISDIR(info.st_mode):
                entries[rel] = ["d", 0, mode, ""]
            elif stat.S_ISREG(info.st_mode):
                key = [info.st_size, info.st_mtime_ns, info.st_ino]
                known = cache.get(rel)
                sha = known[3] if isinstance(known, list) and known[:3] == key else _hash(path)
                fresh[rel] = [*key, sha]
                entries[rel] = ["f", info.st_size, mode, sha]
        dirnames[:] = [d for d in dirnames if not os.path.islink(os.path.join(dirpath, d))]
    return entries, fresh


def _write_cache(path: str, cache: dict[str, Wire]) -> None:
    tmp = path + ".tmp-" + str(os.getpid())
    with open(tmp, "w") as f:
        json.dump(cache, f)
    os.replace(tmp, path)


def _clean(parent: str, base: str, keep: set[str]) -> None:
    """Remove staging left by an interrupted sync and trees older than the previous one."""
    prefix = base + ".sshrun-"
    for name in os.listdir(parent or "."):
        path = os.path.join(parent, name)
        if name.startswith(prefix) and path not in keep and os.path.isdir(path) \
                and not os.path.islink(path):
            shutil.rmtree(path, ignore_errors=True)


def _digest(entries: dict[str, Wire]) -> str:
    """The head's ``sync_manifest.manifest_digest``, byte for byte."""
    text = json.dumps({p: entries[p] for p in sorted(entries)}, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _stage(dest: str, current: str | None, reported: dict[str, Wire], request: Wire
           ) -> tuple[int, int]:
    parent, base, cache_path = _names(dest)
    # The head sends what differs from the manifest reported: the new tree is
    # that one, less what went, plus what changed, and must be the head's.
    removed = set(request["removed"])
    entries = {p: e for p, e in reported.items() if p not in removed}
    entries.update(request["changed"])
    if _digest(entries) != request["digest"]:
        raise SyncFailed("the tree did not match the head's manifest (did it change "
                         "during the sync?)")
    send = request["send"]
    sending = set(send)
    stage = os.path.join(parent, base + ".sshrun-tmp-" + str(os.getpid()))
    _clean(parent, base, {current} if current else set())
    os.mkdir(stage, 0o700)
    cache: dict[str, Wire] = {}
    received = 0
    dirs: list[tuple[str, int]] = []
    for rel in sorted(entries):
        kind, size, mode, digest = entries[rel]
        path = os.path.join(stage, *rel.split("/"))
        if kind == "d":
            os.makedirs(path, exist_ok=True)
            dirs.append((path, mode))
        elif kind == "l":
            os.symlink(digest, path)
        elif rel not in sending:
            old = os.path.join(current, *rel.split("/")) if current else None
            if old is None or not os.path.isfile(old):
                raise SyncFailed("the head did not send " + rel + " and the node lacks it")
            try:
                os.link(old, path)
            except OSError:
                shutil.copy2(old, path)
    for rel in send:
        kind, size, mode, digest = entries[rel]
        path = os.path.join(stage, *rel.split("/"))
        sha = hashlib.sha256()
        with open(path, "wb") as f:
            _read_into(f, size, sha)
        if sha.hexdigest() != digest:
            raise SyncFailed(rel + " arrived changed (sha256 differs): was it edited "
                                   "during the sync?")
        os.chmod(path, mode)
        received += size
    for path, mode in reversed(dirs):
        os.chmod(path, mode)
    for rel in entries:
        if entries[rel][0] == "f":
            info = os.lstat(os.path.join(stage, *rel.split("/")))
            cache[rel] = [info.st_size, info.st_mtime_ns, info.st_ino, entries[rel][3]]
    final = os.path.join(parent, base + ".sshrun-" + request["digest"] + "."
                         + os.urandom(3).hex())
    os.chmod(stage, 0o755)
    os.rename(stage, final)
    link = os.path.join(parent, "." + base + ".sshrun-link-" + str(os.getpid()))
    if os.path.lexists(link):
        os.unlink(link)
    os.symlink(os.path.basename(final), link)
    if os.path.isdir(dest) and not os.path.islink(dest):
        os.rmdir(dest)  # empty (checked): nothing to lose, nothing to see half of
    os.replace(link, dest)
    _write_cache(cache_path, cache)
    _clean(parent, base, {final, current} if current else {final})
    return received, len(send)


def main() -> int:
    os.write(1, _MARKER)
    try:
        request = _read_line()
        dest = os.path.abspath(os.path.expanduser(request["dest"]))
        parent = os.path.dirname(dest)
        if not os.path.isdir(parent):
            os.makedirs(parent, exist_ok=True)
        _lock(dest)
        current = _current(dest)
        entries, fresh = _manifest(current, _load_cache(_names(dest)[2]))
        # The digest first: a head that kept this manifest needs no more.
        _reply({"ok": True, "path": dest, "digest": _digest(entries) if entries else ""})
        request = _read_line()
        if request.get("manifest"):
            packed = zlib.compress(json.dumps(entries, separators=(",", ":")).encode(), 6)
            _reply({"ok": True, "manifest_bytes": len(packed)})
            _write_all(packed)
            request = _read_line()
        if request.get("done"):
            if current is not None and fresh:
                _write_cache(_names(dest)[2], fresh)
            return 0
        received, files = _stage(dest, current, entries, request)
        _reply({"ok": True, "received": received, "files": files})
        return 0
    except (SyncFailed, OSError, ValueError, KeyError, TypeError) as exc:
        text = str(exc) if isinstance(exc, SyncFailed) else type(exc).__name__ + ": " + str(exc)
        with contextlib.suppress(OSError):
            _reply({"ok": False, "error": text})
        return 1


if __name__ == "__main__":
    sys.exit(main())
