"""Tests for sshrun.output: bytes to clean lines, and prefixed lines on the head."""

from __future__ import annotations

import io
import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rich.console import Console

from sshrun.console_report import ConsoleReport
from sshrun.events import Notice
from sshrun.output import MAX_LINE, Continuation, LineFramer, Printer, clean_line
from sshrun.redact import Redactor

FAST = settings(max_examples=300, deadline=None)

RESET = "\x1b[0m"


def feed_all(chunks: list[bytes]) -> list[str]:
    """Every line a framer gives for these chunks, the flushed last line included."""
    framer = LineFramer()
    lines: list[str] = []
    for chunk in chunks:
        lines += framer.feed(chunk)
    return lines + framer.flush()


# --- LineFramer -------------------------------------------------------------------------


def test_lines_split_on_newline_only() -> None:
    framer = LineFramer()
    assert framer.feed(b"one\ntwo\n") == ["one", "two"]
    assert framer.feed(b"thr") == []
    assert framer.pending
    assert framer.feed(b"ee\n\nfive\n") == ["three", "", "five"]
    assert not framer.pending
    assert framer.flush() == []


def test_vertical_tab_form_feed_and_unicode_separators_do_not_split() -> None:
    # str.splitlines() would split on all of these; a line framer must not.
    text = "a\x0bb\x0cc\x1cd\u2028e\u2029f\x85g"
    lines = feed_all([text.encode() + b"\n"])
    assert len(lines) == 1
    # The controls themselves are dropped (NEL is a C1 control).
    assert lines[0] == "abcd\u2028e\u2029fg"


def test_utf8_character_split_across_feeds_is_decoded_whole() -> None:
    data = "naïve €uro 😀\n".encode()
    euro = data.index("€".encode())
    emoji = data.index("😀".encode())
    framer = LineFramer()
    # Cut inside the 3-byte euro sign and inside the 4-byte emoji.
    assert framer.feed(data[: euro + 1]) == []
    assert framer.feed(data[euro + 1 : emoji + 2]) == []
    assert framer.feed(data[emoji + 2 :]) == ["naïve €uro 😀"]


def test_every_byte_of_a_character_in_its_own_feed() -> None:
    framer = LineFramer()
    out: list[str] = []
    for byte in "😀€\n".encode():
        out += framer.feed(bytes([byte]))
    assert out == ["😀€"]


def test_invalid_bytes_become_replacement_character() -> None:
    assert feed_all([b"a\xffb\xc3(c\n"]) == ["a\ufffdb\ufffd(c"]


def test_truncated_character_at_end_of_stream_becomes_replacement_character() -> None:
    framer = LineFramer()
    assert framer.feed("ok €".encode()[:-1]) == []
    assert framer.flush() == ["ok \ufffd"]


def test_carriage_return_progress_shows_last_state() -> None:
    assert feed_all([b"10%\r20%\r30%\n"]) == ["30%"]


def test_carriage_return_progress_split_across_feeds() -> None:
    assert feed_all([b"10%\r2", b"0%\r30", b"%\n"]) == ["30%"]


def test_crlf_line_ending_shows_the_line() -> None:
    assert feed_all([b"abc\r\n"]) == ["abc"]
    assert feed_all([b"abc\r", b"\n"]) == ["abc"]


def test_trailing_carriage_return_keeps_last_non_empty_state() -> None:
    assert feed_all([b"50%\r100%\r\n"]) == ["100%"]
    assert feed_all([b"\r\r\n"]) == [""]


def test_one_mebibyte_line_stays_whole() -> None:
    size = 1 << 20
    line = b"x" * size
    framer = LineFramer()
    out: list[str] = []
    for start in range(0, size, 65536):
        out += framer.feed(line[start : start + 65536])
    assert out == []
    out += framer.feed(b"\nnext\n")
    assert len(out) == 2
    assert len(out[0]) == size
    assert out[0] == "x" * size
    assert out[1] == "next"


def test_flush_returns_last_partial_line_once() -> None:
    framer = LineFramer()
    assert framer.feed(b"done\nno newline") == ["done"]
    assert framer.flush() == ["no newline"]
    assert framer.flush() == []
    assert not framer.pending


def test_flush_of_empty_stream_returns_nothing() -> None:
    assert LineFramer().flush() == []


def test_colour_sgr_sequences_kept() -> None:
    raw = "\x1b[31mred\x1b[0m \x1b[1;32mbold green\x1b[m \x1b[38;5;208mo\x1b[38:2::1:2:3mt"
    assert clean_line(raw) == raw
    assert feed_all([(raw + "\n").encode()]) == [raw]


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("\x1b[2Jcleared", "cleared"),  # clear screen
        ("\x1b[H\x1b[2Jtop", "top"),  # cursor home, clear screen
        ("a\x1b[10;20Hb", "ab"),  # cursor position
        ("up\x1b[3Adown", "updown"),  # cursor up
        ("\x1b[2Kline", "line"),  # erase line
        ("\x1b[?25lhidden cursor\x1b[?25h", "hidden cursor"),  # private modes
        ("\x1b[?1049halt screen", "alt screen"),
        ("\x1b]0;pwned title\x07text", "text"),  # OSC title, BEL-terminated
        ("\x1b]2;title\x1b\\text", "text"),  # OSC title, ST-terminated
        ("\x1b]8;;http://x.example/\x1b\\link\x1b]8;;\x1b\\", "link"),  # hyperlink
        ("\x1b]52;c;aGk=\x07clip", "clip"),  # clipboard write
        ("\x1bPqdcs\x1b\\after", "after"),  # DCS string
        ("\x1bcreset", "reset"),  # full terminal reset
        ("\x1b7saved\x1b8", "saved"),  # save / restore cursor
        ("tail\x1b", "tail"),  # a lone ESC
    ],
)
def test_non_colour_escape_sequences_removed(raw: str, shown: str) -> None:
    assert clean_line(raw) == shown
    assert feed_all([(raw + "\n").encode()]) == [shown]


def test_colour_kept_while_cursor_movement_removed_in_one_line() -> None:
    raw = "\x1b[2K\x1b[32mok\x1b[0m\x1b[1A"
    assert clean_line(raw) == "\x1b[32mok\x1b[0m"


def test_c0_controls_removed_but_tab_kept() -> None:
    controls = "".join(chr(c) for c in range(0x20) if c not in (0x09, 0x0A, 0x0D, 0x1B))
    raw = f"a\tb{controls}c\x7fd"
    assert clean_line(raw) == "a\tbcd"
    assert feed_all([(raw + "\n").encode()]) == ["a\tbcd"]


def test_nul_and_bell_removed() -> None:
    assert feed_all([b"ding\x07 \x00nul\n"]) == ["ding nul"]


# --- LineFramer properties --------------------------------------------------------------

# Text a rank may print that the framer must pass through unchanged: any character
# except surrogates, control characters and the bidi controls the sanitizer drops
# (issue 9), plus newline and tab.
_BIDI = "\u061c\u200e\u200f" + "".join(map(chr, range(0x202A, 0x202F))) + "".join(
    map(chr, range(0x2066, 0x2070)))
plain_text = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Cc"), whitelist_characters="\n\t",
                           blacklist_characters=_BIDI),
    max_size=200,
)


@st.composite
def text_and_chunks(draw: st.DrawFn) -> tuple[str, list[bytes]]:
    text = draw(plain_text)
    data = text.encode()
    cuts = sorted(draw(st.lists(st.integers(0, len(data)), max_size=20)))
    bounds = [0, *cuts, len(data)]
    return text, [data[a:b] for a, b in itertools.pairwise(bounds)]


def expected_lines(text: str) -> list[str]:
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()  # a final newline ends the last line; it does not start one
    return lines


@FAST
@given(text_and_chunks())
def test_framing_is_independent_of_chunk_boundaries(case: tuple[str, list[bytes]]) -> None:
    text, chunks = case
    assert feed_all(chunks) == expected_lines(text)


@FAST
@given(st.lists(st.binary(max_size=64), max_size=20))
def test_arbitrary_bytes_never_raise(chunks: list[bytes]) -> None:
    lines = feed_all(chunks)
    for line in lines:
        assert "\n" not in line
        assert "\r" not in line
        line.encode("utf-8")  # no lone surrogates


@FAST
@given(st.lists(st.binary(max_size=64), max_size=20))
def test_arbitrary_bytes_line_count_matches_newlines(chunks: list[bytes]) -> None:
    data = b"".join(chunks)
    lines = feed_all(chunks)
    newlines = data.count(b"\n")
    trailing = 0 if data.endswith(b"\n") or not data else 1
    # Every newline ends one line, and a non-empty unterminated tail is one more.
    assert len(lines) == newlines + trailing


# --- Printer ----------------------------------------------------------------------------


def make_printer(**kwargs: object) -> tuple[Printer, io.BytesIO, io.BytesIO]:
    out, err = io.BytesIO(), io.BytesIO()
    printer = Printer(stdout=out, stderr=err, **kwargs)  # type: ignore[arg-type]
    return printer, out, err


def test_plain_prefix_format() -> None:
    printer, out, err = make_printer(colour=False, host_width=6, rank_width=3)
    printer.feed(0, "gpu01", 0, 1, b"hello\n")
    printer.feed(1, "node2", 12, 1, b"world\nagain\n")
    assert out.getvalue().decode() == (
        "gpu01  r0  | hello\n"
        "node2  r12 | world\n"
        "node2  r12 | again\n"
    )
    assert err.getvalue() == b""


def test_prefix_method_matches_format() -> None:
    printer, _, _ = make_printer(colour=False, host_width=5, rank_width=3)
    for host, rank in (("a", 0), ("bb", 7), ("ccccc", 10)):
        assert printer.prefix(0, host, rank) == f"{host:<5} {f'r{rank}':<3} | "


def test_zero_widths_give_single_spaces() -> None:
    printer, out, _ = make_printer(colour=False)
    printer.feed(0, "h", 3, 1, b"x\n")
    assert out.getvalue() == b"h r3 | x\n"


def test_launcher_label_for_rank_minus_one() -> None:
    printer, out, _ = make_printer(colour=False, host_width=4, rank_width=8)
    printer.feed(0, "n1", -1, 1, b"starting\n")
    assert out.getvalue() == b"n1   torchrun | starting\n"


def test_custom_launcher_label() -> None:
    printer, out, _ = make_printer(colour=False, host_width=2, rank_width=3,
                                   launcher_label="cmd")
    printer.feed(0, "n1", -1, 1, b"x\n")
    assert out.getvalue() == b"n1 cmd | x\n"


def test_empty_launcher_label_has_host_only() -> None:
    printer, out, _ = make_printer(colour=False, host_width=4, rank_width=3,
                                   launcher_label="")
    printer.feed(0, "n1", -1, 1, b"hi\n")
    assert out.getvalue() == b"n1   | hi\n"


def test_stderr_lines_go_to_stderr_only() -> None:
    printer, out, err = make_printer(colour=False, host_width=1, rank_width=2)
    printer.feed(0, "a", 0, 2, b"oops\n")
    printer.feed(0, "a", 0, 1, b"fine\n")
    assert err.getvalue() == b"a r0 | oops\n"
    assert out.getvalue() == b"a r0 | fine\n"


def test_stdout_and_stderr_of_one_rank_are_framed_separately() -> None:
    printer, out, err = make_printer(colour=False)
    printer.feed(0, "a", 0, 1, b"out-")
    printer.feed(0, "a", 0, 2, b"err-")
    printer.feed(0, "a", 0, 1, b"line\n")
    printer.feed(0, "a", 0, 2, b"line\n")
    assert out.getvalue() == b"a r0 | out-line\n"
    assert err.getvalue() == b"a r0 | err-line\n"


def test_output_is_cleaned_before_printing() -> None:
    printer, out, _ = make_printer(colour=False)
    printer.feed(0, "a", 0, 1, b"\x1b]0;title\x07\x1b[2J10%\r100%\n")
    assert out.getvalue() == b"a r0 | 100%\n"


def test_colour_prefix_and_reset() -> None:
    printer, out, err = make_printer(colour=True, host_width=1, rank_width=2)
    printer.feed(0, "a", 0, 1, b"one\n")
    printer.feed(1, "b", 1, 2, b"two\n")
    assert out.getvalue().decode() == f"\x1b[36ma r0 |{RESET} one{RESET}\n"
    assert err.getvalue().decode() == f"\x1b[33mb r1 |{RESET} two{RESET}\n"


def test_colour_is_per_node_not_per_rank() -> None:
    printer, _, _ = make_printer(colour=True)
    first = printer.prefix(2, "c", 4)
    second = printer.prefix(2, "c", 5)
    assert first.split("m", 1)[0] == second.split("m", 1)[0] == "\x1b[32"
    assert printer.prefix(3, "d", 6).startswith("\x1b[35m")


def test_colour_reset_closes_a_ranks_unterminated_colour() -> None:
    printer, out, _ = make_printer(colour=True)
    printer.feed(0, "a", 0, 1, b"\x1b[31mred forever\n")
    assert out.getvalue().decode() == f"\x1b[36ma r0 |{RESET} \x1b[31mred forever{RESET}\n"


def test_tail_keeps_last_stderr_lines_only() -> None:
    printer, _, _ = make_printer(colour=False, keep_lines=3)
    printer.feed(0, "a", 0, 2, b"e1\ne2\ne3\n")
    printer.feed(0, "a", 0, 1, b"stdout is not kept\n")
    printer.feed(0, "a", 0, 2, b"e4\ne5\n")
    printer.feed(0, "a", 1, 2, b"other rank\n")
    printer.feed(1, "b", 0, 2, b"other node\n")
    assert printer.tail(0, 0) == ["e3", "e4", "e5"]
    assert printer.tail(0, 1) == ["other rank"]
    assert printer.tail(1, 0) == ["other node"]
    assert printer.tail(2, 0) == []


def test_tail_of_launcher_and_flushed_partial_line() -> None:
    printer, _, err = make_printer(colour=False)
    printer.feed(0, "a", -1, 2, b"Traceback\nValueError: bad")
    assert printer.tail(0, -1) == ["Traceback"]
    printer.flush_node(0)
    assert printer.tail(0, -1) == ["Traceback", "ValueError: bad"]
    assert err.getvalue() == b"a torchrun | Traceback\na torchrun | ValueError: bad\n"


def test_tail_is_clean_text_without_prefix() -> None:
    printer, _, _ = make_printer(colour=True)
    printer.feed(0, "a", 0, 2, b"\x1b[2Kboom\n")
    assert printer.tail(0, 0) == ["boom"]


def test_flush_node_emits_only_that_nodes_partial_lines() -> None:
    printer, out, err = make_printer(colour=False)
    printer.feed(0, "a", 0, 1, b"a-out")
    printer.feed(0, "a", 1, 2, b"a-err")
    printer.feed(1, "b", 2, 1, b"b-out")
    assert out.getvalue() == b""
    printer.flush_node(0)
    assert out.getvalue() == b"a r0 | a-out\n"
    assert err.getvalue() == b"a r1 | a-err\n"
    printer.flush_node(0)  # nothing more pending there
    assert out.getvalue() == b"a r0 | a-out\n"
    printer.flush_node(1)
    assert out.getvalue() == b"a r0 | a-out\nb r2 | b-out\n"


def test_flush_all_emits_every_partial_line() -> None:
    printer, out, _ = make_printer(colour=False)
    printer.feed(0, "a", 0, 1, b"x")
    printer.feed(1, "b", 1, 1, b"y")
    printer.flush_all()
    assert sorted(out.getvalue().splitlines()) == [b"a r0 | x", b"b r1 | y"]


def notice_console(secrets: tuple[str, ...] = ()) -> tuple[ConsoleReport, io.StringIO]:
    """The console report over a text buffer: where sshrun's notices are printed."""
    err = io.StringIO()
    console = Console(file=err, highlight=False, soft_wrap=True, force_terminal=False,
                      no_color=True)
    return ConsoleReport(console, Redactor(secrets)), err


def test_message_goes_to_stderr() -> None:
    # The notices are events now; the console report prints them as the printer did.
    report, err = notice_console()
    report(Notice(job="j", attempt=0, kind="left_out", text="stopping",
                  lines=("node a failed", "rank 3")))
    assert err.getvalue() == "sshrun: stopping\nsshrun: node a failed\nsshrun: rank 3\n"


def test_utf8_split_across_printer_feeds() -> None:
    printer, out, _ = make_printer(colour=False)
    data = "€\n".encode()
    printer.feed(0, "a", 0, 1, data[:1])
    printer.feed(0, "a", 0, 1, data[1:])
    assert out.getvalue().decode() == "a r0 | €\n"


def test_printer_redacts_secret_values_in_rank_output_and_notices() -> None:
    out, err = io.BytesIO(), io.BytesIO()
    printer = Printer(stdout=out, stderr=err, colour=False, host_width=1, rank_width=2,
                      secrets=["hunter2-secret", "abc"])
    printer.feed(0, "a", 0, 1, b"token=hunter2-secret abc\n")
    printer.feed(0, "a", 0, 2, b"err hunter2-secret\n")
    report, notices = notice_console(("hunter2-secret", "abc"))
    report(Notice(job="j", attempt=0, kind="login_shell", text="leak hunter2-secret"))
    assert out.getvalue() == b"a r0 | token=<redacted> abc\n"
    assert b"hunter2" not in err.getvalue()
    assert notices.getvalue() == "sshrun: leak <redacted>\n"
    assert printer.tail(0, 0) == ["err <redacted>"]


# --- long lines and endless progress bars ----------------------------------------------


def test_line_over_the_limit_is_passed_on_in_marked_pieces_as_it_arrives() -> None:
    size = 64 << 20  # 64 MiB of one line, in the agent's 64 KiB chunks
    framer = LineFramer()
    pieces: list[str] = []
    chunk = b"0123456789abcdef" * 4096
    most = 0
    for _ in range(size // len(chunk)):
        pieces += framer.feed(chunk)
        most = max(most, framer.buffered)
    pieces += framer.feed(b"\nnext\n")
    # Never more than one piece (and the chunk that completed it) held at once.
    assert most <= MAX_LINE + len(chunk)
    assert [len(p) for p in pieces[:-1]] == [MAX_LINE] * (size // MAX_LINE)
    assert not isinstance(pieces[0], Continuation)
    assert all(isinstance(p, Continuation) for p in pieces[1:-1])
    assert "".join(pieces[:-1]) == chunk.decode() * (size // len(chunk))
    assert pieces[-1] == "next" and not isinstance(pieces[-1], Continuation)


def test_endless_progress_bar_holds_only_its_last_state() -> None:
    framer = LineFramer()
    most = 0
    total = 0
    step = 0
    while total < 15 << 20:  # 15 MB of tqdm-style redraws, never a newline
        data = "".join(f"\r{(step + k) % 100:3d}%|{'#' * 40}| {step + k}/1000000"
                       for k in range(1000)).encode()
        step += 1000
        total += len(data)
        assert framer.feed(data) == []
        most = max(most, framer.buffered)
    assert most < 200
    assert framer.flush() == [f"{(step - 1) % 100:3d}%|{'#' * 40}| {step - 1}/1000000"]


def test_a_state_over_the_limit_then_a_redraw() -> None:
    framer = LineFramer(max_line=4)
    assert framer.feed(b"abcdefghij") == ["abcd", "efgh"]
    # The rest of the long state ends it; the redraw after it is a line of its own.
    assert framer.feed(b"\rnew\r\n") == ["ij", "new"]
    pieces = frame([b"abcdefghij\r\n"], 4)
    assert [type(p) for p in pieces] == [str, Continuation, Continuation]
    assert frame([b"abcd\n"], 4) == ["abcd"]  # exactly the limit: whole


def test_printer_marks_continuation_pieces() -> None:
    out = io.BytesIO()
    printer = Printer(stdout=out, stderr=io.BytesIO(), colour=False, max_line=3)
    printer.feed(0, "a", 0, 1, b"abcdefg\nhi\n")
    assert out.getvalue() == b"a r0 | abc\na r0 + def\na r0 + g\na r0 | hi\n"


@st.composite
def text_and_chunks_with_cr(draw: st.DrawFn) -> tuple[str, list[bytes]]:
    text = draw(st.text(alphabet="ab\r\n€", max_size=80))
    data = text.encode()
    cuts = sorted(draw(st.lists(st.integers(0, len(data)), max_size=20)))
    bounds = [0, *cuts, len(data)]
    return text, [data[a:b] for a, b in itertools.pairwise(bounds)]


def frame(chunks: list[bytes], max_line: int) -> list[str]:
    framer = LineFramer(max_line=max_line)
    lines: list[str] = []
    for chunk in chunks:
        lines += framer.feed(chunk)
    return lines + framer.flush()


@FAST
@given(text_and_chunks_with_cr(), st.integers(1, 6))
def test_pieces_are_independent_of_chunk_boundaries(case: tuple[str, list[bytes]],
                                                    max_line: int) -> None:
    text, chunks = case
    pieces = frame(chunks, max_line)
    assert pieces == frame([text.encode()], max_line)
    assert [type(p) for p in pieces] == [type(p) for p in frame([text.encode()], max_line)]
    assert all(0 < len(p) <= max_line for p in pieces if isinstance(p, Continuation))


@FAST
@given(text_and_chunks(), st.integers(1, 6))
def test_pieces_rejoined_give_every_line_back(case: tuple[str, list[bytes]],
                                              max_line: int) -> None:
    text, chunks = case
    lines: list[str] = []
    for piece in frame(chunks, max_line):
        if isinstance(piece, Continuation):
            lines[-1] += piece
        else:
            assert len(piece) <= max_line
            lines.append(piece)
    assert lines == expected_lines(text)
