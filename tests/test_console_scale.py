"""The console at scale, end to end on the embedded cluster: --ranks (only some
global ranks on the console, every rank in the log directory) and --timestamps
(node-side times before the prefix)."""

from __future__ import annotations

import datetime
import io
import re
from pathlib import Path

import pytest
from head import WORKERS, run_sshrun
from jobprocs import assert_no_leftovers, new_canary

from sshrun import api
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
