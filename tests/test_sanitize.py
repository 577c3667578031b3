"""The one sanitizer for remote text, the redactor and the login-shell preamble."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sshrun.output import clean_line
from sshrun.preamble import Preamble, marker
from sshrun.redact import REDACTED, Redactor
from sshrun.sanitize import SGR, sanitize, shown

BIDI = "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
# Text made mostly of the pieces that hostile output is made of.
PIECES = st.sampled_from([
    "\x1b", "[", "]", "\\", "\x07", "m", "0", "1", ";", ":", "?", ">", "2J", "H", "P", "X",
    "^", "_", "(", "c", "7", "\x9b", "\x9d", "\x90", "\x00", "\x08", "\r", "\n", "\t", "\x7f",
    "\x85", "a", " ", "é", "\ud800", *BIDI, "\x1b[31m", "\x1b[0m", "\x1b]0;t\x07",
    "\x1b]52;c;aGk=\x1b\\", "\x1b[2J", "\x1b[?1049h", "\x1b[>4;2m",
])
HOSTILE = st.lists(st.one_of(PIECES, st.text(max_size=3)), max_size=40).map("".join)
_ALLOWED_CONTROLS = {"\t"}


def _bad_controls(text: str, newline: bool) -> list[str]:
    allowed = _ALLOWED_CONTROLS | ({"\n"} if newline else set())
    return [c for c in text if (ord(c) < 0x20 or 0x7f <= ord(c) <= 0x9f) and c not in allowed
            and c != "\x1b"]


@given(HOSTILE, st.booleans(), st.booleans())
def test_sanitized_text_holds_no_escape_but_colour_no_control_no_bidi(
    text: str, colour: bool, multiline: bool
) -> None:
    out = sanitize(text, colour=colour, multiline=multiline)
    rest = SGR.sub("", out) if colour else out
    assert "\x1b" not in rest
    assert not _bad_controls(out, multiline)
    assert not any(c in BIDI or "\u206a" <= c <= "\u206f" for c in out)
    assert not any("\ud800" <= c <= "\udfff" for c in out)
    if not multiline:
        assert "\n" not in out
    assert sanitize(out, colour=colour, multiline=multiline) == out  # idempotent


@given(st.lists(st.tuples(st.text(alphabet="abc xyz.,", max_size=8),
                          st.sampled_from(["\x1b[31m", "\x1b[1;32m", "\x1b[0m", "\x1b[m",
                                           "\x1b[38;5;208m", "\x1b[38:2:1:2:3m"])),
                max_size=8))
def test_colour_is_kept_where_asked_and_plain_text_untouched(
    parts: list[tuple[str, str]]
) -> None:
    text = "".join(p + sgr for p, sgr in parts)
    assert sanitize(text, colour=True) == text
    assert sanitize(text) == "".join(p for p, _ in parts)


@pytest.mark.parametrize(("raw", "expected"), [
    ("\x1b]52;c;ZXZpbA==\x07copied", "copied"),  # OSC 52 clipboard write
    ("\x1b]0;owned\x1b\\title", "title"),  # title, ST-terminated
    ("\x1b[2J\x1b[Hclear", "clear"),  # clear screen, cursor home
    ("up\x1b[3A\x1b[10;5Hmove", "upmove"),  # cursor moves
    ("\x1b[>4;2mkeys", "keys"),  # modifyOtherKeys: a CSI ...m that is not colour
    ("\x1bcreset\x1b7\x1b(0line", "resetline"),  # RIS, save cursor, charset
    ("\x1bP1$r\x1b\\dcs", "dcs"),  # DCS string
    ("\x9b2J8bit", "2J8bit"),  # an 8-bit CSI loses its power
    ("admin\u202e\u2066txt.exe\u2069", "admintxt.exe"),  # Trojan Source
    ("tab\tstays", "tab\tstays"),
    ("bell\x07bs\x08del\x7fnul\x00", "bellbsdelnul"),
    ("open \x1b]0;never closed", "open "),
])
def test_each_escape_class(raw: str, expected: str) -> None:
    assert sanitize(raw) == expected
    assert clean_line(raw) == expected


def test_multiline_keeps_lines_and_drops_cr() -> None:
    tb = "Traceback\r\n  \x1b]0;t\x07File\n\x1b[31mError\x1b[0m: \u202ex"
    assert sanitize(tb, multiline=True) == "Traceback\n  File\nError: x"
    assert sanitize(tb) == "Traceback   File Error: x"
    assert sanitize(tb, colour=True, multiline=True) == (
        "Traceback\n  File\n\x1b[31mError\x1b[0m: x")


def test_clean_line_keeps_its_progress_bar_handling() -> None:
    assert clean_line("10%\r50%\r\x1b[32m100%\x1b[0m\r") == "\x1b[32m100%\x1b[0m"


def test_shown_escapes_controls_as_a_bash_word() -> None:
    assert shown("plain") == "plain"
    assert shown("two words") == "'two words'"
    assert shown("a\rb") == "$'a\\rb'"
    assert shown("it's\x1b[2J\u202e\\") == "$'it\\'s\\x1b[2J\\u202e\\\\'"


# --- redactor -------------------------------------------------------------------------

PEM = ("-----BEGIN OPENSSH PRIVATE KEY-----\n"
       "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW\n"
       "QyNTUxOQAAACDxkFhV4Fv8oY0pR0b2sYf7f3xk0PnIl8uA2bq0p1n9ZwAAAJjm\n"
       "-----END OPENSSH PRIVATE KEY-----\n")


def test_multiline_secret_redacted_whole_and_line_by_line() -> None:
    redact = Redactor([PEM])
    assert redact(f"key: {PEM}.") == f"key: {REDACTED}."
    lines = PEM.splitlines()
    for line in lines:
        assert redact(f"rank 0 | {line}") == f"rank 0 | {REDACTED}"
    crlf = "\r\n".join(lines)
    assert lines[1] not in redact(crlf) and lines[2] not in redact(crlf)
    assert redact("indented:   " + lines[1] + "  ") == f"indented:   {REDACTED}  "


def test_env_pairs_hide_secret_names_whatever_the_value_and_secret_values_elsewhere() -> None:
    """The dry run's view: a secret name's value is hidden even when too short for
    free text; a secret value under an ordinary name is redacted where it appears."""
    redact = Redactor(["hunter22"], names={"MINE"})
    pairs = [("MINE", "x"), ("HF_TOKEN", "t"), ("URL", "https://u:hunter22@h"), ("A", "1")]
    assert redact.env(pairs) == [
        ("MINE", REDACTED), ("HF_TOKEN", REDACTED), ("URL", f"https://u:{REDACTED}@h"),
        ("A", "1"),
    ]
    assert redact.env(dict(pairs)) == redact.env(pairs)
    assert Redactor(names={"MINE"}).is_secret("MINE") and not Redactor().is_secret("MINE")
    assert not Redactor(names={"MINE"})  # no value to look for in free text


def test_short_lines_of_a_multiline_secret_are_left_alone() -> None:
    redact = Redactor(["abc\nlonger-line\n"])
    assert redact("abc and longer-line") == f"abc and {REDACTED}"


@pytest.mark.parametrize(("secrets", "text", "expected"), [
    (["abcdef", "defghi"], "xabcdefghix", f"x{REDACTED}x"),  # overlap: one span, nothing left
    (["abcd", "abcdefgh"], "abcdefgh abcd", f"{REDACTED} {REDACTED}"),  # contained
    (["aaaa"], "aaaaaa", f"{REDACTED}"),  # self-overlap
    (["abcd", "cdef"], "abcd cdef", f"{REDACTED} {REDACTED}"),
    (["xyz"], "xyz", "xyz"),  # too short to matter in free text
])
def test_overlapping_secrets(secrets: list[str], text: str, expected: str) -> None:
    assert Redactor(secrets)(text) == expected


@given(st.lists(st.text(alphabet="ab\n", min_size=4, max_size=8), min_size=1, max_size=3),
       st.text(alphabet="ab \n", max_size=30))
def test_redactor_never_leaves_a_secret(secrets: list[str], filler: str) -> None:
    text = filler + "".join(secrets) + filler
    out = Redactor(secrets)(text)
    for secret in secrets:
        if len(secret) >= 4:
            assert secret not in out
        for line in secret.split("\n"):
            if len(line.strip()) >= 4:
                assert line.strip() not in out


# --- the login shell's preamble ----------------------------------------------------------

def test_preamble_is_held_back_across_chunks_and_bounded() -> None:
    token = "0123456789abcdef" * 2
    mark = marker(token)
    junk = b"\x1b]0;motd\x07Welcome \xff\xfe\n" + b"x" * 3_000_000 + b"\nlast line\n"
    stream = junk + mark + b"FRAMES"
    pre = Preamble(token, keep=1024)
    out = b"".join(pre.feed(stream[i:i + 7919]) for i in range(0, len(stream), 7919))
    assert out == b"FRAMES"
    assert pre.found and pre.total == len(junk)
    assert len(pre.head) == 1024 and len(pre.tail) == 1024
    notice = pre.notice()
    assert notice[0] == "Welcome \ufffd\ufffd"
    assert notice[-1] == f"... ({len(junk)} bytes in all; not all shown)"
    assert pre.last_line() == "last line"


def test_preamble_without_marker_keeps_the_tail_for_errors() -> None:
    pre = Preamble("ab" * 16)
    assert pre.feed(b"motd\nsh: 1: exec: /no/python: not found\n") == b""
    pre.end()
    assert not pre.found
    assert pre.last_line() == "sh: 1: exec: /no/python: not found"


def test_no_preamble_no_notice() -> None:
    pre = Preamble("cd" * 16)
    assert pre.feed(marker("cd" * 16) + b"x") == b"x"
    assert pre.notice() == []
    assert re.fullmatch(rb"\nsshrun-agent-sync [0-9a-f]{32}\n", marker("cd" * 16))
