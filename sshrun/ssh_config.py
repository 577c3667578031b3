"""The ssh config as asyncssh reads it for a host, without reading every line for every host.

asyncssh parses the whole config file for each host it connects to: each line
is split with ``shlex`` and looked at, although only the ``Host`` blocks that
name the host apply. A config with one ``Host`` block per node (generated
ones are common; tests/sshd_cluster.py writes one) then costs O(nodes) per
node: 21 ms a host at 256 blocks, 5.5 s of the head's CPU for the run
(issue 12).

``IndexedConfig`` is asyncssh's ``SSHClientConfig`` with a ``parse`` that
gives the same result from an index of the file, built once per file (and
again when the file changes):

- every line split once, as asyncssh splits it (``shlex``, the ``=`` forms,
  the option name lowered);
- the blocks: a ``Host`` or ``Match`` line and the lines up to the next one;
- the ``Host`` lines whose patterns are all plain names (no ``*``, ``?`` or
  ``!``), by name.

For a host, the loop visits the lines before the first block, every
``Match`` block, the ``Host`` blocks with a wildcard or a negation, and the
``Host`` blocks that name the host, in file order, and treats each visited
line exactly as asyncssh does; a ``Host`` block it does not visit is one
whose line asyncssh would find not matching, so that it would skip the
block's lines too. Everything else is asyncssh's own: the handler that sets
each option, ``Match`` (``exec`` included), ``Include``, the ``%`` tokens and
their expansion, the error messages.

The loop copies asyncssh's ``SSHConfig.parse``, so it is used only where the
sources it copies are the ones it was written against (their digests,
``_KNOWN_SOURCES``), and only for a file every line of which splits
cleanly; otherwise asyncssh's own ``parse`` runs, as before.
"""

from __future__ import annotations

import bisect
import hashlib
import inspect
import os
import shlex
import threading
from collections.abc import Callable
from pathlib import Path

import asyncssh.config
import asyncssh.pattern
from asyncssh.config import SSHClientConfig, SSHConfig
from asyncssh.logging import logger

from sshrun import head_cache
from sshrun.frozen_dataclass import frozen_dataclass

# sha256 of the asyncssh sources that the loop copies or relies on, as in
# asyncssh 2.18 to 2.24 (its parser last changed in October 2024).
_KNOWN_SOURCES = {
    "SSHConfig.parse":
        "8809c434443397c9df04e87dd30d9188e2dde502b7d88c61d65f8f5dd10488cf",
    "SSHClientConfig._match_host":
        "8c64d71b506808f371c1f06f2dec92e06be6933a5dac920b16028d4f325e912f",
    "_PatternList.__init__":
        "46919ab858b84565e2fc6eeb067adf431ef0bf2e5d44459462505f373eace26d",
    "_PatternList.matches":
        "b78dce6e95a7dae315f2c090e397f2a68345766447dcd0c581860af6b26414e2",
    "WildcardPatternList.build_pattern":
        "6a3adac58efc6553b924def48ca5d4c6dd01f8b98712729530d6ae2fe06c26b9",
    "_BaseWildcardPattern.__init__":
        "24966bf99b2acef32d4de9f5b6bf6d449149352eff71e5431a23ef5ef2ca79c0",
    "_BaseWildcardPattern._matches":
        "5ac141dfaba149f914524c9b4822d49c00b5a754db782bfdaa78c10cacc9ef21",
    "WildcardPattern.matches":
        "d500203bedcbb33d62e7819c51428f18591b3c213b5785b163b1392eda381a86",
}
_INDEX_CACHE_SIZE = 16  # files: a config and what it includes


def _sources() -> dict[str, str]:
    pattern = asyncssh.pattern
    objects: dict[str, Callable[..., object]] = {
        "SSHConfig.parse": SSHConfig.parse,
        "SSHClientConfig._match_host": SSHClientConfig._match_host,
        # What _match_host's WildcardPatternList(...).matches(host) runs.
        "_PatternList.__init__": pattern._PatternList.__init__,
        "_PatternList.matches": pattern._PatternList.matches,
        "WildcardPatternList.build_pattern": pattern.WildcardPatternList.build_pattern,
        "_BaseWildcardPattern.__init__": pattern._BaseWildcardPattern.__init__,
        "_BaseWildcardPattern._matches": pattern._BaseWildcardPattern._matches,
        "WildcardPattern.matches": pattern.WildcardPattern.matches,
    }
    digests = {}
    for name, obj in objects.items():
        try:
            text = inspect.getsource(obj)
        except (OSError, TypeError):
            text = ""  # no source (a frozen install): never the known digest
        digests[name] = hashlib.sha256(text.encode()).hexdigest()
    return digests


_enabled: bool | None = None


def _files_key() -> str:
    """What the digests depend on: asyncssh's version and its two source files, as stat
    sees them (a reinstall or an edit changes them)."""
    parts = [asyncssh.__version__]
    for module in (asyncssh.config, asyncssh.pattern):
        path = module.__file__ or ""
        try:
            st = os.stat(path)
        except OSError:
            return ""
        parts.append(f"{path}:{st.st_ino}:{st.st_size}:{st.st_mtime_ns}")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:32]


def _sources_known() -> bool:
    """``_sources() == _KNOWN_SOURCES``, from the head's cache when the files are as when
    it was stored (sshrun.head_cache): reading the sources costs ~5 ms per run."""
    key = _files_key()
    if key:
        cached = head_cache.load("ssh", key)
        if cached in (b"0", b"1"):
            return cached == b"1"
    known = _sources() == _KNOWN_SOURCES
    if key:
        head_cache.store("ssh", key, b"1" if known else b"0", keep=4)
    return known


def indexed_parsing() -> bool:
    """Whether the installed asyncssh is one whose parser ``IndexedConfig`` copies."""
    global _enabled
    if _enabled is None:
        _enabled = (SSHClientConfig._handlers.get("host", (None, None))[1]
                    is SSHClientConfig._match_host and _sources_known())
    return _enabled


Entry = tuple[int, str, tuple[str, ...]]  # line number, option (lowered), arguments


@frozen_dataclass
class _Index:
    entries: tuple[Entry, ...]
    lines: int  # how many lines the file has: asyncssh's line number at its end
    heads: tuple[int, ...]  # indices of the Host and Match lines, in order
    by_name: dict[str, tuple[int, ...]]  # name -> the plain Host lines naming it
    always: tuple[int, ...]  # the Match lines, and the Host lines with a pattern

    def visited(self, host: str) -> list[int]:
        """The heads to visit for ``host``, in file order."""
        named = self.by_name.get(os.path.normcase(host), ())
        return sorted({*named, *self.always}) if named else list(self.always)

    def block(self, head: int) -> range:
        """Entry indices from ``head`` (or the start, for -1) up to the next head."""
        k = bisect.bisect_right(self.heads, head)
        end = self.heads[k] if k < len(self.heads) else len(self.entries)
        return range(head + 1 if head >= 0 else 0, end)


def _split(line: str, conditionals: set[str], no_split: set[str]) -> tuple[str, list[str]]:
    """One line as ``SSHConfig.parse`` splits it (this copies its first half)."""
    split_args = shlex.split(line)
    args: list[str] = []
    loption = ""
    allow_equal = True
    for i, arg in enumerate(split_args, 1):
        if arg.startswith("="):
            if len(arg) > 1:
                args.append(arg[1:])
        elif not allow_equal:
            args.extend(split_args[i - 1:])
            break
        elif arg.endswith("="):
            args.append(arg[:-1])
        elif "=" in arg:
            arg, val = arg.split("=", 1)
            args.append(arg)
            args.append(val)
        else:
            args.append(arg)
        if i == 1:
            loption = args.pop(0).lower()
            allow_equal = loption in conditionals
    if loption in no_split:
        args = [line.lstrip()[len(loption):].strip()]
    return loption, args


def _plain_names(args: tuple[str, ...]) -> list[str] | None:
    """The names a Host line matches exactly, or None when it has a pattern."""
    names = ",".join(args).split(",")
    if not args or any(n.startswith("!") or "*" in n or "?" in n for n in names):
        return None
    # asyncssh matches with fnmatch, which compares os.path.normcase'd text.
    return [os.path.normcase(n) for n in names]


def _build_index(path: Path, cls: type[SSHConfig]) -> _Index | None:
    """The index of ``path``, or None where asyncssh's own parse should run."""
    entries: list[Entry] = []
    line_no = 0
    try:
        with open(path) as file:  # as asyncssh opens it: newlines, encoding
            for raw in file:
                line_no += 1
                line = raw.strip()
                if not line or line[0] == "#":
                    continue
                loption, split = _split(line, cls._conditionals, cls._no_split)
                entries.append((line_no, loption, tuple(split)))
    except (OSError, ValueError, IndexError):
        return None  # asyncssh's parse raises it, at its place among the errors
    heads: list[int] = []
    by_name: dict[str, list[int]] = {}
    always: list[int] = []
    for k, (_, loption, args) in enumerate(entries):
        if loption not in cls._conditionals:
            continue
        heads.append(k)
        names = _plain_names(args) if loption == "host" else None
        if names is None:
            always.append(k)
        else:
            for name in dict.fromkeys(names):
                by_name.setdefault(name, []).append(k)
    return _Index(tuple(entries), line_no, tuple(heads),
                  {n: tuple(ks) for n, ks in by_name.items()}, tuple(always))


# By the file's identity and state, so that an edited file is read again.
_indexes: dict[tuple[str, int, int, int, int], _Index | None] = {}
_indexes_lock = threading.Lock()  # options are also built in executor threads


def _index(path: Path, cls: type[SSHConfig]) -> _Index | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    key = (str(path), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
    with _indexes_lock:
        if key in _indexes:
            return _indexes[key]
    index = _build_index(path, cls)
    with _indexes_lock:
        while len(_indexes) >= _INDEX_CACHE_SIZE:
            _indexes.pop(next(iter(_indexes)))
        _indexes[key] = index
    return index


class IndexedConfig(SSHClientConfig):
    """``SSHClientConfig`` whose ``parse`` visits only the blocks that can apply (module doc)."""

    def parse(self, path: Path) -> None:
        index = _index(path, type(self)) if indexed_parsing() else None
        if index is None:
            super().parse(path)
            return
        # From here on, as SSHConfig.parse does it, line by visited line.
        self._path = path
        self._line_no = 0
        self._matching = True
        self._tokens = {"%": "%"}
        logger.debug1('Reading config from "%s"', path)
        visits = [-1, *index.visited(self._orig_host)]
        skipped_last = bool(index.heads) and index.heads[-1] != visits[-1]
        for head in visits:
            for k in ([head] if head >= 0 else []) + list(index.block(head)):
                line_no, loption, given = index.entries[k]
                self._line_no = line_no
                if not self._matching and loption not in self._conditionals:
                    continue
                try:
                    option, handler = self._handlers[loption]
                except KeyError:
                    continue
                args = list(given)
                if not args:
                    self._error(f"Missing {option} value")
                handler(self, option, args)
                if args:
                    self._error(f'Extra data at end: {" ".join(args)}')
        # Where asyncssh leaves them: the file's last line, and not matching
        # when the last block was a Host block that does not apply.
        self._line_no = index.lines
        if skipped_last:
            self._matching = False
        self._set_tokens()
        for option in self._percent_expand:
            try:
                value = self._options[option]
            except KeyError:
                pass
            else:
                if isinstance(value, list):
                    value = [self._expand_val(item) for item in value]
                elif isinstance(value, str):
                    value = self._expand_val(value)
                self._options[option] = value
