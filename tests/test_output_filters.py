"""torchrun's logging options as sshrun means them: which rank lines reach the console
(--local-ranks-filter, --redirects, --tee), judged against torchrun's own DefaultLogsSpecs,
and the log directory's filtered copies (--duplicate-std*-filters)."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from sshrun.hostfile import HostSpec
from sshrun.log_dir import LogDir
from sshrun.output import Printer
from sshrun.output_filters import (
    ConsoleFilter,
    DuplicateFilters,
    Streams,
    local_rank_of,
    local_ranks_known,
    parse_filters,
    parse_local_ranks,
    parse_streams,
)
from sshrun.plan import JobConfig, plan_job
from sshrun.values import BadValue


@pytest.mark.parametrize(("text", "streams"), [
    ("0", Streams()), ("3", Streams(3)), ("0:1", Streams(per_rank=((0, 1),))),
    ("1:2,0:3,1:1", Streams(per_rank=((0, 3), (1, 1)))),  # a later rank wins, as torchrun
    ("12:2", Streams(per_rank=((12, 2),))),  # more than torchrun's one digit
])
def test_parse_streams(text: str, streams: Streams) -> None:
    assert parse_streams(text) == streams
    assert parse_streams(str(streams)) == streams


@pytest.mark.parametrize("text", ["", "4", "-1", "01", "0:", ":1", "0:1,", "a:1", "0:1:2", " 3"])
def test_parse_streams_refuses(text: str) -> None:
    with pytest.raises(BadValue):
        parse_streams(text)


def test_parse_local_ranks_and_filters() -> None:
    assert parse_local_ranks("0, 2,2") == frozenset({0, 2})
    for bad in ("", "a", "-1", "1,,2", "1.5"):
        with pytest.raises(BadValue):
            parse_local_ranks(bad)
    assert parse_filters("a,b") == ("a", "b")
    assert parse_filters("a,,b,c") == ("a,b", "c")  # torchrun's escape for a comma
    for bad in ("", "a,", ",a", "a,,,"):
        with pytest.raises(BadValue):
            parse_filters(bad)


CASES = [
    # (redirects, tee, local ranks filter)
    ("0", "0", None), ("3", "0", None), ("1", "0", None), ("2", "1", None),
    ("3", "0:1,1:2", None), ("0:3,1:1", "0", None), ("0:3", "0:2", None),
    ("0", "0", {1}), ("3", "3", {0}), ("0:1", "1:3", {1, 2}), ("2", "0", {0, 2}),
]


@pytest.mark.torch
@pytest.mark.parametrize(("redirects", "tee", "ranks"), CASES)
def test_the_console_shows_what_torchrun_would(tmp_path: Path, redirects: str, tee: str,
                                               ranks: set[int] | None) -> None:
    """torchrun's DefaultLogsSpecs decides per local rank and stream: a stream is on the
    console when it is not redirected to a file, or when it is tee'd from it; a local rank
    the filter leaves out never is."""
    from torch.distributed.elastic.multiprocessing.api import DefaultLogsSpecs, Std

    nprocs = 3
    specs = DefaultLogsSpecs(log_dir=str(tmp_path), redirects=Std.from_str(redirects),
                             tee=Std.from_str(tee), local_ranks_filter=ranks)
    dest = specs.reify({i: {} for i in range(nprocs)})
    ours = ConsoleFilter(local_ranks=frozenset(ranks) if ranks is not None else None,
                         redirects=parse_streams(redirects), tee=parse_streams(tee))
    for local in range(nprocs):
        for stream, files, tees in ((1, dest.stdouts, dest.tee_stdouts),
                                    (2, dest.stderrs, dest.tee_stderrs)):
            torchrun_shows = files[local] == "" or local in tees
            assert ours.shows(local, stream) == torchrun_shows, (local, stream)


def _plan(*hosts: tuple[str, int], **config: object):  # type: ignore[no-untyped-def]
    spec = JobConfig(hosts=tuple(HostSpec(h, slots=s) for h, s in hosts), target=("t.py",),
                     **config)  # type: ignore[arg-type]
    return spec, plan_job(spec, "job")


def test_local_ranks_from_global_ranks() -> None:
    same, plan = _plan(("a", 2), ("b", 2), rdzv_backend="c10d")
    local = local_rank_of(plan)
    assert [local(0, r) for r in range(4)] == [0, 1, 0, 1]  # node blocks of equal size
    assert local_ranks_known(same)
    static, plan = _plan(("a", 2), ("b", 3))
    local = local_rank_of(plan)
    assert [local(0, 0), local(0, 1), local(1, 2), local(1, 4)] == [0, 1, 0, 2]
    assert local_ranks_known(static)
    dynamic, _ = _plan(("a", 2), ("b", 3), rdzv_backend="c10d")
    assert not local_ranks_known(dynamic)
    words, _ = _plan(("a", 2), nproc_per_node="auto")
    assert not local_ranks_known(words)


def test_the_printer_hides_what_the_filter_hides_and_keeps_stderr_for_the_report() -> None:
    _, plan = _plan(("a", 2), ("b", 2))
    shows = ConsoleFilter(local_ranks=frozenset({1}), redirects=Streams(2)).for_plan(plan)
    out, err = io.BytesIO(), io.BytesIO()
    printer = Printer(stdout=out, stderr=err, colour=False, host_width=1, rank_width=2,
                      secrets=["hunter2-secret"], shows=shows)
    for rank in range(4):
        node = rank // 2
        printer.feed(node, "ab"[node], rank, 1, f"out {rank}\n".encode())
        printer.feed(node, "ab"[node], rank, 2, f"err {rank} hunter2-secret\n".encode())
    printer.feed(0, "a", -1, 2, b"torchrun says\n")
    printer.flush_all()
    assert out.getvalue().decode().splitlines() == ["a r1 | out 1", "b r3 | out 3"]
    assert err.getvalue().decode().splitlines() == ["a torchrun | torchrun says"]
    # The report still has every rank's last stderr lines, redacted.
    assert printer.tail(0, 0) == ["err 0 <redacted>"]
    assert printer.tail(1, 3) == ["err 3 <redacted>"]


def test_no_filter_shows_everything() -> None:
    _, plan = _plan(("a", 2))
    assert ConsoleFilter().for_plan(plan) is None
    assert ConsoleFilter(tee=Streams(3)).for_plan(plan) is None  # a tee alone hides nothing


def test_the_log_dir_copies_filtered_lines_per_node(tmp_path: Path) -> None:
    log = LogDir.create(str(tmp_path), "job-1", frozenset({"hunter2-secret"}),
                        lambda line: pytest.fail(line),
                        DuplicateFilters(stdout=("loss", "a,b"), stderr=("warn",)))
    attempt = log.attempt(0)
    attempt.feed(0, "a", 0, 1, b"step 1 loss 0.5 hunter2-secret\nnothing\n", 10.0)
    attempt.feed(0, "a", 1, 1, b"got a,b\n", 11.0)
    attempt.feed(0, "a", 1, 2, b"warn: x\nloss on stderr\n", 12.0)
    attempt.feed(0, "a", -1, 1, b"torchrun loss\n", 13.0)  # not a rank's: not copied
    attempt.feed(1, "b", 2, 1, b"loss 0.4\n", 14.0)
    attempt.close()
    node = tmp_path / "job-1" / "attempt-0" / "a"
    stdout = (node / "filtered_stdout.log").read_text().splitlines()
    assert [line.split(" ", 1)[1] for line in stdout] == [
        "r0 step 1 loss 0.5 <redacted>", "r1 got a,b"]
    assert [line.split(" ", 1)[1] for line in
            (node / "filtered_stderr.log").read_text().splitlines()] == ["r1 warn: x"]
    assert (tmp_path / "job-1" / "attempt-0" / "b" / "filtered_stdout.log").read_text() \
        .split(" ", 1)[1] == "r2 loss 0.4\n"
    # Every line still reaches the rank's own file.
    assert "nothing" in (node / "rank-0.log").read_text()
