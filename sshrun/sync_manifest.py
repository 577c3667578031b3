"""``--sync``'s head side: the tree to mirror, as a manifest, and what a node lacks.

:func:`build_manifest` walks DIR once, before anything is sent, and decides
what the nodes get:

* default excludes: ``.git``, ``__pycache__``, ``*.pyc``, any virtual
  environment (a directory holding ``pyvenv.cfg``) and the log directory;
  ``--sync-exclude PATTERN`` adds more. A pattern is an ``fnmatch`` pattern
  matched against an entry's name and against its path relative to DIR
  (``data``, ``*.ckpt``, ``models/big/*``);
* when DIR is a git checkout and ``git`` is there, files that ``git ls-files
  -co --exclude-standard`` leaves out (``.gitignore``) are left out too;
  anywhere else that step is skipped, silently: it is a convenience;
* secret files (``.env``, ``*.pem``, ``id_*``) are never sent unless a
  ``--sync-include PATTERN`` names them; what was skipped is said;
* a symlink inside the tree is kept as a symlink; one whose target leaves
  the tree (absolute, or ``..`` past DIR) is refused, naming it, since the
  node would see something else at that path or nothing;
* the total size is bounded (``DEFAULT_MAX_SIZE``): too big is a
  ``ConfigError`` before any connection.

The manifest maps each relative path (``/``-separated) to an :class:`Entry`;
:func:`diff` of the head's and a node's manifests is what to send and what
goes. Entries travel as JSON lists (:meth:`Entry.to_wire`), the format
``sshrun/node/sync_node.py`` reads and writes.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import math
import os
import shutil
import stat
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import field
from pathlib import Path

from sshrun.errors import ConfigError
from sshrun.frozen_dataclass import frozen_dataclass

DEFAULT_MAX_SIZE = 1 << 30
DEFAULT_EXCLUDES = (".git", "__pycache__", "*.pyc")
SECRET_PATTERNS = (".env", "*.pem", "id_*")
GIT_TIMEOUT = 30.0
_CHUNK = 1 << 20


@frozen_dataclass
class Entry:
    """One path of the tree: ``kind`` ``f`` (file), ``d`` (directory) or ``l``
    (symlink); ``digest``: a file's sha256 (hex), a symlink's target, else ''."""

    kind: str
    size: int = 0
    mode: int = 0
    digest: str = ""

    def to_wire(self) -> list[object]:
        return [self.kind, self.size, self.mode, self.digest]

    @classmethod
    def from_wire(cls, value: object) -> Entry:
        if (not isinstance(value, list) or len(value) != 4 or value[0] not in ("f", "d", "l")
                or not isinstance(value[1], int) or not isinstance(value[2], int)
                or not isinstance(value[3], str)):
            raise ValueError(f"bad manifest entry {value!r}")
        return cls(value[0], value[1], value[2], value[3])


Manifest = Mapping[str, Entry]


@frozen_dataclass
class SyncOptions:
    """What ``--sync`` and its flags asked for (checked, not yet read)."""

    source: str  # DIR on the head
    excludes: tuple[str, ...] = ()
    includes: tuple[str, ...] = ()  # secret files named explicitly
    max_size: int = DEFAULT_MAX_SIZE
    log_dir: str | None = None  # left out when it lies inside DIR


@frozen_dataclass
class SyncTree:
    """The tree as read on the head: its manifest and what was left out."""

    root: str  # absolute
    entries: Mapping[str, Entry]
    skipped_secrets: tuple[str, ...] = ()
    excluded: tuple[str, ...] = ()  # top-most excluded paths (default excludes not named)
    digest: str = field(default="")  # of the manifest: names the tree on a node

    @property
    def total_bytes(self) -> int:
        return sum(e.size for e in self.entries.values() if e.kind == "f")

    @property
    def file_count(self) -> int:
        return sum(1 for e in self.entries.values() if e.kind == "f")


@frozen_dataclass
class Delta:
    """What a node lacks: paths to send (files, in the head manifest's order), the
    node's paths that the head's tree lacks (gone after the swap), and whether the
    trees are the same (then nothing is staged at all)."""

    send: tuple[str, ...]
    delete: tuple[str, ...]
    same: bool

    def send_bytes(self, tree: Manifest) -> int:
        return sum(tree[p].size for p in self.send)


def diff(head: Manifest, node: Manifest) -> Delta:
    """Pure: the files whose kind, size, mode or content differ or are missing on the
    node, and the node's paths the head lacks. Directories and symlinks are never
    sent: the staging side makes them from the manifest."""
    send = tuple(p for p, e in head.items() if e.kind == "f" and node.get(p) != e)
    delete = tuple(p for p in node if p not in head)
    return Delta(send=send, delete=delete, same=dict(head) == dict(node))


def manifest_digest(entries: Manifest) -> str:
    text = json.dumps({p: e.to_wire() for p, e in sorted(entries.items())},
                      separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _matches(patterns: Iterable[str], rel: str, name: str) -> bool:
    return any(fnmatch.fnmatchcase(name, p) or fnmatch.fnmatchcase(rel, p) for p in patterns)


def _git_listed(root: Path) -> set[str] | None:
    """The paths git would keep (tracked and untracked, ignoring .gitignore'd), or
    None where DIR is not a git checkout or there is no git."""
    if not (root / ".git").exists() or shutil.which("git") is None:
        return None
    try:
        out = subprocess.run(["git", "-C", str(root), "ls-files", "-co", "--exclude-standard",
                              "-z"], capture_output=True, timeout=GIT_TIMEOUT, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0:
        return None
    return {p for p in out.stdout.decode("utf-8", "surrogateescape").split("\0") if p}


def _hash(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _inside(root: Path, link: Path) -> bool:
    target = os.readlink(link)
    if os.path.isabs(target):
        return False
    resolved = os.path.normpath(os.path.join(os.path.dirname(link), target))
    return resolved == str(root) or resolved.startswith(str(root) + os.sep)


def _size_text(n: int) -> str:
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


def build_manifest(options: SyncOptions) -> SyncTree:
    """Walk DIR (see the module docstring); a ``ConfigError`` (exit 2) names what is wrong."""
    root = Path(os.path.abspath(options.source))
    if not root.is_dir():
        raise ConfigError(f"--sync: {options.source} is not a directory")
    log_dir = os.path.abspath(options.log_dir) if options.log_dir else None
    listed = _git_listed(root)
    listed_dirs = ({str(Path(p).parent.as_posix()) for p in listed} if listed is not None
                   else set())
    for d in list(listed_dirs):
        while "/" in d:
            d = d.rsplit("/", 1)[0]
            listed_dirs.add(d)
    entries: dict[str, Entry] = {}
    secrets: list[str] = []
    excluded: list[str] = []
    total = 0
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        here = Path(dirpath)
        rel_dir = here.relative_to(root).as_posix()
        rel_dir = "" if rel_dir == "." else rel_dir
        keep: list[str] = []
        for name in sorted(dirnames):
            path = here / name
            rel = f"{rel_dir}/{name}" if rel_dir else name
            if path.is_symlink():
                filenames.append(name)  # a symlink to a directory is a link, not a walk
                continue
            if (_matches(DEFAULT_EXCLUDES, rel, name) or (path / "pyvenv.cfg").exists()
                    or (log_dir is not None and str(path) == log_dir)):
                continue
            if _matches(options.excludes, rel, name):
                excluded.append(rel)
                continue
            if listed is not None and rel not in listed_dirs:
                continue  # nothing git keeps lies below: .gitignore'd (or empty)
            keep.append(name)
            entries[rel] = Entry("d", 0, stat.S_IMODE(path.lstat().st_mode))
        dirnames[:] = keep
        for name in sorted(filenames):
            path = here / name
            rel = f"{rel_dir}/{name}" if rel_dir else name
            if _matches(DEFAULT_EXCLUDES, rel, name):
                continue
            if _matches(options.excludes, rel, name):
                excluded.append(rel)
                continue
            if listed is not None and rel not in listed:
                continue
            if _matches(SECRET_PATTERNS, rel, name) and not _matches(options.includes, rel, name):
                secrets.append(rel)
                continue
            info = path.lstat()
            if stat.S_ISLNK(info.st_mode):
                if not _inside(root, path):
                    raise ConfigError(f"--sync: {path} is a symlink to {os.readlink(path)}, "
                                      f"outside {root}: nodes would not have its target "
                                      "(copy the file in, or --sync-exclude it)")
                entries[rel] = Entry("l", 0, 0, os.readlink(path))
            elif stat.S_ISREG(info.st_mode):
                total += info.st_size
                if total > options.max_size:
                    raise ConfigError(f"--sync: {root} holds more than "
                                      f"{_size_text(options.max_size)} to send "
                                      "(--sync-max-size raises the limit; --sync-exclude "
                                      "leaves data out)")
                entries[rel] = Entry("f", info.st_size, stat.S_IMODE(info.st_mode), _hash(path))
            # sockets, fifos and devices are not code: left out
    ordered = dict(sorted(entries.items()))
    return SyncTree(str(root), ordered, tuple(secrets), tuple(excluded), manifest_digest(ordered))


def parse_size(text: str, flag: str = "--sync-max-size") -> int:
    """``500M``, ``2G``, ``1048576``: bytes; a ``ConfigError`` naming the flag otherwise."""
    scales = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
    t = text.strip().upper().removesuffix("IB").removesuffix("B")
    unit = t[-1:] if t[-1:] in scales and t[-1:] else ""
    number = t[: len(t) - len(unit)]
    try:
        value = float(number)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):  # float() takes "inf", "nan" and "1e400" too
        raise ConfigError(f"{flag}: {text!r} is not a size (like 500M or 2G)")
    if value <= 0:
        raise ConfigError(f"{flag}: {text!r} must be more than 0")
    return int(value * scales[unit])


def describe_skipped(tree: SyncTree) -> Sequence[str]:
    """The lines that say what was left out on purpose (secrets, --sync-exclude)."""
    lines = []
    if tree.skipped_secrets:
        lines.append(f"--sync: not sent, secret-like (--sync-include PATTERN sends one): "
                     f"{', '.join(tree.skipped_secrets)}")
    if tree.excluded:
        lines.append(f"--sync: excluded (--sync-exclude): {', '.join(tree.excluded)}")
    return lines
