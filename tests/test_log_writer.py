"""``--log-dir DIR``'s writer (a full disk, the line format) and a directory that cannot be
written; the job's record against real nodes is tests/test_log_dir.py's."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from head import run_sshrun

import sshrun
from sshrun.log_dir import LogDir


def test_an_unwritable_log_dir_exits_2_with_one_line(tmp_path: Path) -> None:
    """A file where the directory would be: exit 2 and one line naming it, before any
    connection (the host is one nothing listens on)."""
    hostfile = tmp_path / "hostfile"
    hostfile.write_text("127.0.0.1 port=9\n")
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    code, head = run_sshrun(["exec", "-H", str(hostfile), "--log-dir", str(blocker),
                             "--", "true"])
    assert code == 2, head.transcript()
    assert head.err == [head.err[0]] and len(head.err) == 1, head.err
    assert head.err[0].startswith(f"sshrun: error: --log-dir {blocker}: cannot write "), head.err
    assert head.out == []


def test_a_write_error_is_told_once_and_nothing_more_is_written(tmp_path: Path) -> None:
    """A full disk (/dev/full) under one rank's file: one warning, and the writes after
    it (other files, other attempts) are dropped without another."""
    warnings: list[str] = []
    log = LogDir.create(str(tmp_path), "job-1", frozenset(), warnings.append)
    host = tmp_path / "job-1" / "attempt-0" / "node0"
    host.mkdir(parents=True)
    (host / "rank-0.log").symlink_to("/dev/full")
    attempt = log.attempt(0)
    attempt.feed(0, "node0", 0, 1, b"x" * 100_000 + b"\n", 1.0)
    attempt.feed(0, "node0", 1, 1, b"fine\n", 1.0)
    attempt.close()
    log.attempt(1).feed(0, "node0", 0, 2, b"later\n", 2.0)
    log.flush()
    assert len(warnings) == 1, warnings
    assert warnings[0].startswith(f"sshrun: warning: --log-dir {tmp_path}: cannot write "
                                  f"{host / 'rank-0.log'}: No space left on device"), warnings
    assert not (tmp_path / "job-1" / "attempt-1").exists()


def test_log_lines_are_timed_tagged_sanitized_and_redacted(tmp_path: Path) -> None:
    """Lines split across chunks, a progress bar, escapes, a last line without a newline,
    the launcher's file, a host label that is not a safe file name."""
    log = LogDir.create(str(tmp_path), "job-2", frozenset({"hunter2-secret"}),
                        lambda line: pytest.fail(line))
    attempt = log.attempt(3)
    attempt.feed(0, "u@h/x", 5, 1, b"par", 1764661234.25)
    attempt.feed(0, "u@h/x", 5, 1, b"tial\n\x1b[31mred\x1b[0m \x1b]0;title\x07ok\n", 1764661235.5)
    attempt.feed(0, "u@h/x", 5, 2, b"a\rb\n key=hunter2-secret\nno newline", 1764661236.0)
    attempt.feed(0, "u@h/x", -1, 2, b"torchrun says\n", 1764661237.0)
    attempt.close()
    node = tmp_path / "job-2" / "attempt-3" / "u@h_x"
    assert (node / "rank-5.log").read_text().splitlines() == [
        "2025-12-02T07:40:35.500000+00:00 out partial",
        "2025-12-02T07:40:35.500000+00:00 out red ok",
        "2025-12-02T07:40:36.000000+00:00 err b",
        "2025-12-02T07:40:36.000000+00:00 err  key=<redacted>",
        "2025-12-02T07:40:36.000000+00:00 err no newline",
    ]
    assert (node / "launcher.log").read_text() == (
        "2025-12-02T07:40:37.000000+00:00 err torchrun says\n")


def test_the_api_writes_the_log_dir_even_when_quiet(tmp_path: Path) -> None:
    """``log_dir=`` on an embedded node: the command's lines, the summary, and the report
    that the quiet console did not print."""
    result = sshrun.launch("sh", "-c", "echo hi; echo oops >&2; exit 3", mode="exec",
                           local_cluster=1, quiet=True, log_dir=tmp_path)
    assert result.exit_code == 3
    root = tmp_path / result.job_id
    lines = (root / "attempt-0" / "node1" / "launcher.log").read_text().splitlines()
    assert sorted(line.split(" ", 1)[1] for line in lines) == ["err oops", "out hi"], lines
    summary = json.loads((root / "summary.json").read_text())
    assert summary["job"] == result.job_id and summary["exit_code"] == 3
    assert summary["first_failure"]["tail"] == ["oops"]
    assert "exited with code 3" in (root / "report.txt").read_text()
