"""The JSON event file (``--events PATH|-``): every event as one JSON object a line.

One reader of the job's events (sshrun.events), as the console report is::

    {"v": 1, "time": 1764661234.5, "job": "20261202-...", "attempt": 0,
     "event": "rank_exited", "host": "gpu01", "node": 0, "rank": 1, ...}

Every string in a line, however deep, goes through the job's redactor: a
secret's value never reaches the file. ``job_finished`` carries the exit
code and the elapsed time; the whole :class:`sshrun.result.JobResult` is
the API's, not the file's. A failure (``attempt_failed``) is written with its
fields (kind, host, rank, code, message, traceback, last lines).

The writer never stops the job: the first write error is told once on
stderr (through ``warn``) and the lines after it are dropped. A file is
written directly (a local write, flushed a line at a time); ``-`` writes
through the head's console sink (sshrun.console), which never blocks the
event loop.
"""

from __future__ import annotations

import dataclasses
import enum
import json
from collections.abc import Callable
from typing import IO, Any, Protocol

from sshrun.errors import ConfigError
from sshrun.events import Event, JobFinished

VERSION = 1
# Fields of an event that the file leaves out (the JobResult is the API's).
_LEFT_OUT: dict[type[Event], tuple[str, ...]] = {JobFinished: ("result",)}


class _Sink(Protocol):
    def write(self, data: bytes, /) -> int: ...


def open_event_file(path: str) -> IO[bytes]:
    """``--events PATH`` opened for writing (truncated); a ConfigError when it cannot be."""
    try:
        return open(path, "wb", buffering=0)
    except OSError as exc:
        raise ConfigError(f"--events {path}: cannot open it for writing: "
                          f"{exc.strerror or exc}") from None


class EventLog:
    """``on_event`` that writes each event as a JSON line to ``sink``."""

    def __init__(self, sink: _Sink, redact: Callable[[str], str],
                 warn: Callable[[str], None], name: str = "-") -> None:
        self.sink = sink
        self.redact = redact
        self.warn = warn
        self.name = name
        self.failed = False

    def __call__(self, event: Event) -> None:
        if self.failed:
            return
        line = json.dumps(self.record(event), ensure_ascii=False, allow_nan=False) + "\n"
        try:
            self.sink.write(line.encode("utf-8", "replace"))
        except (OSError, ValueError) as exc:
            self.failed = True
            self.warn(f"sshrun: warning: --events {self.name}: cannot write: "
                      f"{getattr(exc, 'strerror', None) or exc}; no more events are written")

    def record(self, event: Event) -> dict[str, Any]:
        """The event as the JSON object its line holds."""
        out: dict[str, Any] = {"v": VERSION, "time": event.time,
                               "job": self.redact(event.job), "attempt": event.attempt,
                               "event": event.name}
        skip = ("job", "attempt", "time", *_LEFT_OUT.get(type(event), ()))
        for f in dataclasses.fields(event):
            if f.name not in skip:
                out[f.name] = self._value(getattr(event, f.name))
        return out

    def plain(self, value: object) -> Any:
        """A value as JSON takes it (enums by value, dataclasses as objects), redacted."""
        return self._value(value)

    def _value(self, value: object) -> Any:
        if isinstance(value, enum.Enum):
            return self._value(value.value)
        if isinstance(value, str):
            return self.redact(value)
        if value is None or isinstance(value, (bool, int, float)):
            return value
        if isinstance(value, (list, tuple)):
            return [self._value(v) for v in value]
        if isinstance(value, dict):
            return {self.redact(str(k)): self._value(v) for k, v in value.items()}
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            return {f.name: self._value(getattr(value, f.name))
                    for f in dataclasses.fields(value) if f.repr}
        return self.redact(str(value))
