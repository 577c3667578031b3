"""The JSON event writer (sshrun/event_log.py) and --events on the embedded nodes."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from head import run_sshrun

import sshrun
from sshrun.errors import ConfigError
from sshrun.event_log import EventLog, open_event_file
from sshrun.events import AttemptFailed, RankExited
from sshrun.failure import Failure, FailureKind
from sshrun.redact import Redactor


def test_every_string_is_redacted_however_deep() -> None:
    sink = io.BytesIO()
    log = EventLog(sink, Redactor(["hunter2-secret"]), warn=print)
    failure = Failure(1, "gpu-hunter2-secret", FailureKind.EXIT, rank=3, code=1,
                      tail=["token hunter2-secret", "ok"])
    log(AttemptFailed(job="j1", attempt=2, time=12.5, exit_code=1, failure=failure))
    log(RankExited(job="j1", attempt=2, time=13.0, host="gpu1", node=1, rank=3,
                   local_rank=0, code=137, signal="SIGKILL"))
    first, second = (json.loads(line) for line in sink.getvalue().decode().splitlines())
    assert "hunter2-secret" not in sink.getvalue().decode()
    assert first == {"v": 1, "time": 12.5, "job": "j1", "attempt": 2,
                     "event": "attempt_failed", "exit_code": 1, "failure": {
                         "node": 1, "host": "gpu-<redacted>", "reason": "exit", "rank": 3,
                         "local_rank": None, "code": 1, "message": "", "traceback": None,
                         "tail": ["token <redacted>", "ok"]}}
    assert second == {"v": 1, "time": 13.0, "job": "j1", "attempt": 2, "event": "rank_exited",
                      "host": "gpu1", "node": 1, "rank": 3, "local_rank": 0, "code": 137,
                      "signal": "SIGKILL"}


def test_a_write_error_is_told_once() -> None:
    class Full(io.RawIOBase):
        def write(self, data: object) -> int:
            raise OSError(28, "No space left on device")

    told: list[str] = []
    log = EventLog(Full(), Redactor(), told.append, "out.jsonl")
    for n in range(3):
        log(RankExited(job="j", attempt=0, host="h", node=0, rank=n, local_rank=n, code=0,
                       signal=None))
    assert told == ["sshrun: warning: --events out.jsonl: cannot write: "
                    "No space left on device; no more events are written"]


def test_a_path_that_cannot_be_opened_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^--events .*: cannot open it for writing: "
                                          "Is a directory$"):
        open_event_file(str(tmp_path))


def test_unwritable_events_path_is_a_usage_error(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-dir" / "events.jsonl"
    code, head = run_sshrun(["exec", "--local-cluster", "1", "--events", str(missing),
                             "--", "true"], timeout=60)
    assert code == 2, head.transcript()
    assert head.err == [f"sshrun: error: --events {missing}: cannot open it for writing: "
                        "No such file or directory"], head.err
    assert head.out == []


@pytest.mark.slow
def test_a_write_error_is_told_once_and_the_job_goes_on() -> None:
    """/dev/full opens but takes nothing: one warning, and the job's own status."""
    code, head = run_sshrun(["exec", "--local-cluster", "2", "--events", "/dev/full",
                             "--", "echo", "still-running"], timeout=120)
    assert code == 0, head.transcript()
    warnings = [line for line in head.err if "--events /dev/full" in line]
    assert warnings == ["sshrun: warning: --events /dev/full: cannot write: "
                        "No space left on device; no more events are written"], head.err
    assert sum(line.endswith("| still-running") for line in head.out) == 2, head.out


@pytest.mark.slow
def test_api_callbacks_hear_every_event(tmp_path: Path) -> None:
    """The callback hears what the file holds, in the same order: the launcher's
    events and the nodes'."""
    path = tmp_path / "events.jsonl"
    heard: list[str] = []
    result = sshrun.Launcher(mode="exec", local_cluster=1, quiet=True,
                             events=path, on_event=lambda e: heard.append(e.name)).run("true")
    assert result.exit_code == 0
    written = [json.loads(line)["event"] for line in path.read_text().splitlines()]
    assert heard == written
    assert written == ["job_started", "node_connected", "agent_up", "ranks_started",
                       "node_swept", "job_finished"]
    plain: list[str] = []
    sshrun.launch("true", mode="exec", local_cluster=1, quiet=True,
                  on_event=lambda e: plain.append(e.name))
    assert plain == written


def test_any_event_names_every_event_there_is() -> None:
    """A new event class must join ``AnyEvent`` (what API users match on) and, when the
    supervisor emits it, ``SUPERVISOR_EVENTS``: the sync events once were in neither."""
    import typing

    from sshrun import events

    def concrete(cls: type) -> set[type]:
        found = set()
        for sub in cls.__subclasses__():
            if "name" in vars(sub):
                found.add(sub)
            found |= concrete(sub)
        return found

    every = concrete(events.Event)
    assert every == set(typing.get_args(events.AnyEvent))
    assert {events.SyncStarted, events.SyncFinished} <= set(events.SUPERVISOR_EVENTS)
    assert len({cls.name for cls in every}) == len(every)
