"""The log directory on the head (``--log-dir DIR``): one job's record, in files.

::

    DIR/<job-id>/events.jsonl        the event stream (sshrun.event_log's lines)
    DIR/<job-id>/report.txt          sshrun's own lines and the final report, as printed
    DIR/<job-id>/summary.json        exit code, first failure, attempts, hosts
    DIR/<job-id>/attempt-<n>/<host>/rank-<global rank>.log
    DIR/<job-id>/attempt-<n>/<host>/launcher.log   torchrun's own output, or exec's command
    DIR/<job-id>/attempt-<n>/<host>/filtered_stdout.log   with --duplicate-stdout-filters
    DIR/<job-id>/attempt-<n>/<host>/filtered_stderr.log   with --duplicate-stderr-filters

A log line is ``<time> <out|err> <text>``: the time is the node's wall clock
when its agent read the chunk that ended the line (for an exec command's
stdout, which goes to the head past the agent, ``Passthrough``, the head's
clock when the head read it), ISO 8601, UTC, in microseconds; the text is as
the console shows it (sanitized, no colour) with the job's secrets redacted.
Every line of every rank reaches its file, whatever the console shows. A
filtered file holds the node's rank lines of that stream that contain any of
the filter strings (torchrun's
``--duplicate-std*-filters``, ``sshrun.output_filters``), each as
``<time> r<rank> <text>``, all ranks of the node in the order read.

One reader of the job's events (sshrun.events) and, per attempt, a tap on
the ranks' output ahead of the console's printer. Writes are buffered and
flushed at each attempt's end and at the job's; the directory is created and
``events.jsonl`` opened before anything starts, so that a directory that
cannot be written is a ConfigError. A write error later (a full disk) is
told once on stderr, and nothing more is written: the job and its console go
on untouched.
"""

from __future__ import annotations

import contextlib
import datetime
import io
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from sshrun.console_report import ConsoleReport
from sshrun.errors import ConfigError
from sshrun.event_log import EventLog
from sshrun.events import Event, JobFinished, JobStarted
from sshrun.output import MAX_LINE, LineFramer
from sshrun.output_filters import DuplicateFilters
from sshrun.redact import Redactor
from sshrun.sanitize import sanitize
from sshrun.styled import StyledConsole

SUMMARY_VERSION = 1
BUFFER = 1 << 16
_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9._@:+-]")
_STREAMS = {1: "out", 2: "err"}


def _file_name(label: str) -> str:
    """A host label as one path component (never a separator, never ``..``)."""
    name = _UNSAFE_NAME.sub("_", label)
    return name if name.strip(".") else name.replace(".", "_") or "_"


def stamp(when: float) -> str:
    """A node's time as a log line shows it."""
    return datetime.datetime.fromtimestamp(when, datetime.UTC).isoformat(
        timespec="microseconds")


class _Writer:
    """The directory's files: the first error is told once, and then nothing is written."""

    def __init__(self, flag: str, warn: Callable[[str], None]) -> None:
        self.flag = flag
        self.warn = warn
        self.failed = False
        self.files: dict[Path, IO[bytes]] = {}

    def open(self, path: Path) -> IO[bytes] | None:
        f = self.files.get(path)
        if f is None and not self.failed:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                # Open until the attempt (or the job) ends: closed by close().
                f = self.files[path] = open(path, "wb", buffering=BUFFER)  # noqa: SIM115
            except OSError as exc:
                self.fail(path, exc)
        return f

    def write(self, path: Path, data: bytes) -> None:
        f = self.open(path)
        if f is None:
            return
        try:
            f.write(data)
        except (OSError, ValueError) as exc:
            self.fail(path, exc)

    def write_file(self, path: Path, data: bytes) -> None:
        self.write(path, data)
        self.close(path)

    def flush(self) -> None:
        for path, f in list(self.files.items()):
            if self.failed:
                return
            try:
                f.flush()
            except (OSError, ValueError) as exc:
                self.fail(path, exc)

    def close(self, path: Path) -> None:
        f = self.files.pop(path, None)
        if f is None:
            return
        try:
            f.close()
        except (OSError, ValueError) as exc:
            self.fail(path, exc)

    def close_all(self, keep: Path | None = None) -> None:
        for path in list(self.files):
            if path != keep:
                self.close(path)

    def fail(self, path: Path, exc: BaseException) -> None:
        if self.failed:
            return
        self.failed = True
        why = getattr(exc, "strerror", None) or exc
        self.warn(f"sshrun: warning: {self.flag}: cannot write {path}: {why}; "
                  "the log directory is not written any more")
        for f in self.files.values():
            # The error is told already; what the buffers held is lost.
            with contextlib.suppress(OSError, ValueError):
                f.close()
        self.files.clear()


class _EventsFile:
    """events.jsonl, as the EventLog's sink: its errors are the directory's."""

    def __init__(self, writer: _Writer, path: Path) -> None:
        self.writer = writer
        self.path = path

    def write(self, data: bytes, /) -> int:
        self.writer.write(self.path, data)
        return len(data)


class LogDir:
    """``on_event`` for the job's directory, and a tap per attempt on the ranks' output."""

    def __init__(self, root: Path, writer: _Writer, redactor: Redactor,
                 duplicate: DuplicateFilters | None = None) -> None:
        self.root = root
        self.writer = writer
        self.redactor = redactor
        self.duplicate = duplicate or DuplicateFilters()
        self.events_path = root / "events.jsonl"
        self.events = EventLog(_EventsFile(writer, self.events_path), redactor,
                               writer.warn, str(self.events_path))
        self._report_text = io.StringIO()
        self.report = ConsoleReport(
            StyledConsole(self._report_text, force_terminal=False, no_color=True), redactor)
        self.hosts: tuple[str, ...] = ()

    @classmethod
    def create(cls, base: str, job_id: str, secrets: frozenset[str],
               warn: Callable[[str], None],
               duplicate: DuplicateFilters | None = None) -> LogDir:
        """DIR/<job-id>/ made and events.jsonl opened; a ConfigError when it cannot be."""
        root = Path(base) / _file_name(job_id)
        writer = _Writer(f"--log-dir {base}", warn)
        try:
            root.mkdir(parents=True, exist_ok=True)
            path = root / "events.jsonl"
            writer.files[path] = open(path, "wb", buffering=BUFFER)  # noqa: SIM115
        except OSError as exc:
            raise ConfigError(f"--log-dir {base}: cannot write {root}: "
                              f"{exc.strerror or exc}") from None
        return cls(root, writer, Redactor(secrets), duplicate)

    def __call__(self, event: Event) -> None:
        if isinstance(event, JobStarted):
            self.hosts = event.hosts
        self.events(event)
        self.report(event)
        if isinstance(event, JobFinished):
            self._finish(event)

    def attempt(self, number: int) -> AttemptLog:
        return AttemptLog(self, self.root / f"attempt-{number}")

    def flush(self) -> None:
        self.writer.flush()

    def _finish(self, event: JobFinished) -> None:
        writer = self.writer
        writer.write_file(self.root / "report.txt",
                          self._report_text.getvalue().encode("utf-8", "replace"))
        text = json.dumps(self.summary(event), ensure_ascii=False, indent=2) + "\n"
        writer.write_file(self.root / "summary.json", text.encode("utf-8", "replace"))
        writer.close_all()

    def summary(self, event: JobFinished) -> dict[str, Any]:
        """summary.json: what the job's result says, secrets redacted."""
        result = event.result
        plain = self.events.plain
        return {
            "v": SUMMARY_VERSION,
            "job": plain(result.job_id),
            "exit_code": result.exit_code,
            "first_failure": plain(result.first_failure),
            "hosts": plain(self.hosts),
            "attempts": [{
                "number": a.number, "exit_code": a.exit_code, "hosts": plain(a.hosts),
                "first_failure": plain(a.first_failure), "elapsed": a.elapsed,
                "interrupted": a.interrupted,
                "ranks": [{"rank": r.rank, "local_rank": r.local_rank, "host": plain(r.host),
                           "code": r.code} for r in a.ranks],
            } for a in result.attempts],
            "left_out": plain(result.left_out),
            "elapsed": result.elapsed,
            "interrupted": result.interrupted,
            "error": plain(str(result.error)) if result.error is not None else None,
        }


class _Stream:
    """One stream of one rank: its lines and the time the last chunk was read."""

    def __init__(self, path: Path, tag: str, rank: int = -1,
                 filtered: Path | None = None, needles: tuple[str, ...] = ()) -> None:
        self.path = path
        self.tag = tag
        self.framer = LineFramer(MAX_LINE)
        self.when = 0.0
        self.rank = rank
        self.filtered = filtered  # the node's filtered_std*.log, when this stream has filters
        self.needles = needles


class AttemptLog:
    """One attempt's rank files: fed every chunk of output before the console is."""

    def __init__(self, log: LogDir, root: Path) -> None:
        self.log = log
        self.root = root
        self._streams: dict[tuple[int, int, int], _Stream] = {}

    def feed(self, node: int, host: str, rank: int, stream: int, data: bytes,
             when: float) -> None:
        key = (node, rank, stream)
        source = self._streams.get(key)
        if source is None:
            name = f"rank-{rank}.log" if rank >= 0 else "launcher.log"
            tag = _STREAMS.get(stream, str(stream))
            needles = self.log.duplicate.of(stream) if rank >= 0 else ()
            filtered = (self.root / _file_name(host) / f"filtered_std{tag}.log"
                        if needles else None)
            source = self._streams[key] = _Stream(
                self.root / _file_name(host) / name, tag, rank, filtered, needles)
        source.when = when
        self._write(source, source.framer.feed(data))

    def flush_node(self, node: int) -> None:
        """The node's streams ended: each last partial line too."""
        for key, source in self._streams.items():
            if key[0] == node:
                self._write(source, source.framer.flush())

    def close(self) -> None:
        """The attempt is over: every file written out and closed."""
        for key in {k[0] for k in self._streams}:
            self.flush_node(key)
        writer = self.log.writer
        paths = {s.path for s in self._streams.values()}
        paths |= {s.filtered for s in self._streams.values() if s.filtered is not None}
        for path in paths:
            writer.close(path)
        writer.flush()

    def _write(self, source: _Stream, lines: list[str]) -> None:
        if not lines or self.log.writer.failed:
            return
        when = stamp(source.when)
        head = f"{when} {source.tag} "
        redact = self.log.redactor
        shown = [sanitize(line) for line in lines]
        text = "".join(f"{head}{redact(line)}\n" for line in shown)
        self.log.writer.write(source.path, text.encode("utf-8", "replace"))
        if source.filtered is not None:
            needles = source.needles
            picked = "".join(f"{when} r{source.rank} {redact(line)}\n" for line in shown
                             if any(needle in line for needle in needles))
            if picked:
                self.log.writer.write(source.filtered, picked.encode("utf-8", "replace"))
