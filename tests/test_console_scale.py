"""The console at scale, end to end on the embedded cluster: --ranks (only some
global ranks on the console, every rank in the log directory), --timestamps
(node-side times before the prefix) and folding (--fold, --no-fold)."""

from __future__ import annotations

import asyncio
import datetime
import io
import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from head import WORKERS, run_sshrun
from jobprocs import assert_no_leftovers, new_canary

from sshrun import api
from sshrun.fold import LineFolder
from sshrun.output import Printer, console_stamp
from sshrun.output_filters import format_ranks, parse_ranks
from sshrun.values import BadValue

SCRIPT = str(WORKERS / "same_warning.py")
WARNING = "UserWarning: the same warning on every rank"


def test_parse_ranks() -> None:
    assert parse_ranks("0") == ((0, 0),)
    assert parse_ranks("0-7,12") == ((0, 7), (12, 12))
    # Sorted and merged: overlapping and adjacent pieces are one range.
    assert parse_ranks(" 12, 3-5,0-3,6 ") == ((0, 6), (12, 12))
    assert format_ranks(parse_ranks("5,0-2,3")) == "0-3,5"
    for bad in ("", "x", "-1", "1-", "3-1", "1,,2", "0-99999999", "1.5"):
        with pytest.raises(BadValue):
            parse_ranks(bad)


def rank_lines(lines: list[str]) -> list[str]:
    return sorted(line for line in lines if re.match(r"node\d r\d ", line))


@pytest.mark.parametrize("bad", ["x", "3-1", "1,,2"])
def test_bad_ranks_is_one_line_naming_the_flag(bad: str) -> None:
    code, head = run_sshrun(["--local-cluster", "2", "--ranks", bad, SCRIPT], timeout=60)
    assert code == 2, head.transcript()
    assert head.out == [] and len(head.err) == 1, head.transcript()
    assert head.err[0].startswith("sshrun: error: --ranks: expected global ranks"), head.err
    assert bad in head.err[0]


def test_ranks_limit_the_console_and_the_log_dir_keeps_every_rank(tmp_path: Path) -> None:
    canary = new_canary()
    logs = tmp_path / "logs"
    code, head = run_sshrun(
        ["--local-cluster", "2", "--nproc-per-node", "2", "-x", f"SSHRUN_TEST_CANARY={canary}",
         "--log-dir", str(logs), "--ranks", "1-2", SCRIPT], cwd=tmp_path)
    assert code == 0, head.transcript()
    assert rank_lines(head.out) == ["node1 r1 | rank 1 done", "node2 r2 | rank 2 done"], \
        head.transcript()
    assert rank_lines(head.err) == [f"node1 r1 | {WARNING}", f"node2 r2 | {WARNING}"], \
        head.transcript()
    job = next(logs.iterdir())
    for rank in range(4):
        text = (job / "attempt-0" / f"node{rank // 2 + 1}" / f"rank-{rank}.log").read_text()
        assert f" err {WARNING}\n" in text and f" out rank {rank} done\n" \
            in text, text
    assert_no_leftovers(canary)


def test_ranks_through_the_api_compose_with_local_ranks_filter(tmp_path: Path) -> None:
    out, err = io.StringIO(), io.StringIO()
    # --ranks 0-2 and --local-ranks-filter 1: rank 1 only (rank 3 is local 1 but not named).
    result = api.launch(SCRIPT, local_cluster=2, nproc_per_node=2, ranks="0-2",
                        local_ranks_filter=1, stdout=out, stderr=err, workdir=str(tmp_path))
    assert result.exit_code == 0, (out.getvalue(), err.getvalue())
    assert rank_lines(out.getvalue().splitlines()) == ["node1 r1 | rank 1 done"], out.getvalue()
    assert rank_lines(err.getvalue().splitlines()) == [f"node1 r1 | {WARNING}"], err.getvalue()
    # The report's last lines still have every rank's stderr (rank 0's warning, hidden here).
    assert [rank.rank for rank in result.attempts[0].ranks] == [0, 1, 2, 3]


def test_printer_stamps_each_line_with_the_time_its_last_chunk_was_read() -> None:
    out = io.BytesIO()
    printer = Printer(stdout=out, stderr=out, colour=False, timestamps=True)
    read = datetime.datetime(2026, 3, 4, 12, 3, 4, 123456).timestamp()  # head's zone
    printer.feed(0, "node1", 3, 1, b"loss 0.25\nhalf", read)
    printer.feed(0, "node1", 3, 1, b" a line\n", read + 1.5)
    assert out.getvalue().decode() == ("12:03:04.123456 node1 r3 | loss 0.25\n"
                                       "12:03:05.623456 node1 r3 | half a line\n")
    assert console_stamp(read) == "12:03:04.123456"


def test_timestamps_are_node_side_times_before_the_prefix(tmp_path: Path) -> None:
    before = datetime.datetime.now()
    code, head = run_sshrun(["--local-cluster", "2", "--nproc-per-node", "2", "--timestamps",
                             SCRIPT], cwd=tmp_path)
    after = datetime.datetime.now()
    assert code == 0, head.transcript()
    stamped = re.compile(r"(\d\d:\d\d:\d\d\.\d{6}) (node\d r\d \| rank \d done)")
    found = [m for line in head.out if (m := stamped.fullmatch(line))]
    assert sorted(m.group(2) for m in found) == [
        f"node{r // 2 + 1} r{r} | rank {r} done" for r in range(4)], head.transcript()
    for m in found:
        when = datetime.datetime.combine(before.date(), datetime.time.fromisoformat(m.group(1)))
        if when < before - datetime.timedelta(hours=12):  # the run crossed midnight
            when += datetime.timedelta(days=1)
        assert before <= when <= after, (m.group(0), before, after)
    # torchrun's own lines are stamped too.
    launcher = [line for line in head.err if " torchrun | " in line]
    assert all(re.match(r"\d\d:\d\d:\d\d\.\d{6} node\d torchrun \| ", line)
               for line in launcher), head.transcript()


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_printer_folds_across_ranks_and_prints_the_count_after_the_window() -> None:
    out, err = io.BytesIO(), io.BytesIO()
    clock = Clock()
    printer = Printer(stdout=out, stderr=err, colour=False, host_width=5, rank_width=2,
                      folder=LineFolder(window=1.0), clock=clock)
    for rank in range(4):
        printer.feed(rank // 2, f"node{rank // 2 + 1}", rank, 2, WARNING.encode() + b"\n")
        printer.feed(rank // 2, f"node{rank // 2 + 1}", rank, 1, f"rank {rank}\n".encode())
    # The first copy at once; the others are counted, not held back.
    assert err.getvalue().decode() == f"node1 r0 | {WARNING}\n"
    clock.now += 0.5
    printer.fold_due()
    assert err.getvalue().decode() == f"node1 r0 | {WARNING}\n"
    clock.now += 0.5
    printer.fold_due()
    assert err.getvalue().decode() == (f"node1 r0 | {WARNING}\n"
                                       "node[1-2] r[1-3] | (same line, 3 more ranks)\n")
    # Distinct lines are never folded; the report's tails keep every copy.
    assert out.getvalue().decode() == "".join(
        f"node{r // 2 + 1} r{r} | rank {r}\n" for r in range(4))
    assert [printer.tail(r // 2, r) for r in range(4)] == [[WARNING]] * 4


def test_printer_timer_prints_the_count_with_no_more_output_and_flush_closes() -> None:
    async def main() -> tuple[str, str]:
        err = io.BytesIO()
        printer = Printer(stdout=io.BytesIO(), stderr=err, colour=False,
                          folder=LineFolder(window=0.2))
        printer.feed(0, "node1", 0, 2, b"same\n")
        printer.feed(1, "node2", 1, 2, b"same\n")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10
        while b"more rank" not in err.getvalue() and loop.time() < deadline:
            await asyncio.sleep(0.02)
        after_timer = err.getvalue().decode()
        # A fold still open when the attempt ends is printed by flush_all.
        printer.feed(1, "node2", 2, 2, b"again\n")
        printer.feed(0, "node1", 3, 2, b"again\n")
        printer.flush_all()
        return after_timer, err.getvalue().decode()

    after_timer, at_end = asyncio.run(main())
    assert after_timer == "node1 r0 | same\nnode2 r1 | (same line, 1 more rank)\n"
    assert at_end == after_timer + "node2 r2 | again\nnode1 r3 | (same line, 1 more rank)\n"


FOLDED = {0: "node[1-2] r[1-3]", 1: "node[1-2] r[0,2-3]", 2: "node[1-2] r[0-1,3]",
          3: "node[1-2] r[0-2]"}


@pytest.mark.torch
def test_fold_on_the_embedded_cluster_and_the_log_dir_keeps_every_copy(tmp_path: Path) -> None:
    canary = new_canary()
    logs = tmp_path / "logs"
    code, head = run_sshrun(
        ["--local-cluster", "2", "--nproc-per-node", "2", "-x", f"SSHRUN_TEST_CANARY={canary}",
         "-x", "SAME_BARRIER=1", "--log-dir", str(logs), "--fold", SCRIPT], cwd=tmp_path,
        timeout=240)
    assert code == 0, head.transcript()
    shown = [line for line in head.err if re.match(r"node[\d\[]", line)]
    assert len(shown) == 2, head.transcript()
    first = re.fullmatch(rf"node\d r(\d) \| {WARNING}", shown[0])
    assert first is not None, head.transcript()
    rank = int(first.group(1))
    assert shown == [f"node{rank // 2 + 1} r{rank} | {WARNING}",
                     f"{FOLDED[rank]} | (same line, 3 more ranks)"], head.transcript()
    # The count comes before the final report.
    assert head.err.index(shown[1]) < next(
        i for i, line in enumerate(head.err) if line.startswith("sshrun: job finished")), \
        head.transcript()
    assert rank_lines(head.out) == [f"node{r // 2 + 1} r{r} | rank {r} done"
                                    for r in range(4)], head.transcript()
    job = next(logs.iterdir())
    for r in range(4):
        text = (job / "attempt-0" / f"node{r // 2 + 1}" / f"rank-{r}.log").read_text()
        assert f" err {WARNING}\n" in text, text
    assert_no_leftovers(canary)


@pytest.mark.torch
def test_no_fold_shows_every_copy(tmp_path: Path) -> None:
    code, head = run_sshrun(
        ["--local-cluster", "2", "--nproc-per-node", "2", "-x", "SAME_BARRIER=1", "--no-fold",
         SCRIPT], cwd=tmp_path, timeout=240)
    assert code == 0, head.transcript()
    assert rank_lines(head.err) == [f"node{r // 2 + 1} r{r} | {WARNING}" for r in range(4)], \
        head.transcript()


@pytest.mark.torch
def test_fold_is_on_by_default_when_stdout_is_a_terminal(tmp_path: Path) -> None:
    main, tty = os.openpty()
    env = dict(os.environ)
    env.pop("SSH_AUTH_SOCK", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "sshrun", "--local-cluster", "2", "--nproc-per-node", "2",
         "-x", "SAME_BARRIER=1", SCRIPT], cwd=tmp_path, env=env, stdin=subprocess.DEVNULL,
        stdout=tty, stderr=subprocess.PIPE, start_new_session=True)
    os.close(tty)
    chunks: list[bytes] = []

    def read_terminal() -> None:
        while True:
            try:
                data = os.read(main, 65536)
            except OSError:  # EIO: the terminal's last writer has closed it
                return
            if not data:
                return
            chunks.append(data)

    reader = threading.Thread(target=read_terminal, daemon=True)
    reader.start()
    try:
        _, err = proc.communicate(timeout=240)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
    reader.join(10)
    os.close(main)
    plain = re.compile(r"\x1b\[[0-9;]*m")
    errors = plain.sub("", err.decode()).splitlines()
    screen = plain.sub("", b"".join(chunks).decode()).replace("\r\n", "\n").splitlines()
    assert proc.returncode == 0, (errors, screen)
    # On a terminal the ranks' lines are coloured, and their copies folded.
    assert "\x1b[" in b"".join(chunks).decode()
    shown = [line for line in errors if re.match(r"node[\d\[]", line)]
    first = re.fullmatch(rf"node\d r(\d) \| {WARNING}", shown[0]) if shown else None
    assert first is not None, errors
    rank = int(first.group(1))
    assert shown == [f"node{rank // 2 + 1} r{rank} | {WARNING}",
                     f"{FOLDED[rank]} | (same line, 3 more ranks)"], errors
    assert sorted(line for line in screen if " | rank " in line) == [
        f"node{r // 2 + 1} r{r} | rank {r} done" for r in range(4)], screen
