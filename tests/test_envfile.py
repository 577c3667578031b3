"""Tests for sshrun.envfile: the env-file grammar, errors located, the round trip."""

from __future__ import annotations

import string
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from renderers import render_env_file

from sshrun.configfile import split_lines
from sshrun.envfile import load_env_file, parse_env_file
from sshrun.errors import ConfigError, LocationError

SRC = "job.env"
FAST = settings(max_examples=300, deadline=None)
env_names = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,12}", fullmatch=True)


# --- env file grammar ----------------------------------------------------------------------


def test_env_file_grammar() -> None:
    text = (
        "# comment\n"
        "\n"
        "   \t\n"
        "  # indented comment\n"
        "A=1\n"
        "export B=two words  # inline comment\n"
        "C = spaced\n"
        "URL=http://x/#frag\n"
        "HASH=#notacomment\n"
        "E=\n"
        "F= # only a comment\n"
        'G="dq \\"q\\" \\\\ \\n \\t \\r \\$ \\d # not a comment"  # comment\n'
        "H='sq \\n \"x\" # literal'\n"
        "I=it's\n"
        "export=5\n"
        "J=a=b\r\n"
        "K=\"\"\n"
        "L=''\n"
        "\texport   M=\tm\t\n"
    )
    assert parse_env_file(text, SRC) == [
        ("A", "1"),
        ("B", "two words"),
        ("C", "spaced"),
        ("URL", "http://x/#frag"),
        ("HASH", "#notacomment"),
        ("E", ""),
        ("F", ""),
        ("G", 'dq "q" \\ \n \t \r $ \\d # not a comment'),
        ("H", 'sq \\n "x" # literal'),
        ("I", "it's"),
        ("export", "5"),
        ("J", "a=b"),
        ("K", ""),
        ("L", ""),
        ("M", "m"),
    ]


def test_env_file_duplicate_names_last_wins_first_position() -> None:
    assert parse_env_file("A=1\nB=2\nA=3\n", SRC) == [("A", "3"), ("B", "2")]


def test_env_file_empty_and_bom() -> None:
    assert parse_env_file("", SRC) == []
    assert parse_env_file("\ufeffA=1", SRC) == [("A", "1")]


@pytest.mark.parametrize(
    ("text", "where", "message"),
    [
        ("1A=x", "1:1", "a name starts with a letter or '_', not '1'"),
        ("A=1\n  -X=1", "2:3", "a name starts with a letter or '_', not '-'"),
        ("A-B=1", "1:2", "'-' cannot appear in a name"),
        ("A.B=1", "1:2", "'.' cannot appear in a name"),
        ("=x", "1:1", "a name starts with a letter or '_', not '='"),
        ("A", "1:2", "missing '=' after A"),
        ("A B=1", "1:3", "missing '=' after A"),
        ("export A", "1:9", "missing '=' after A"),
        ("export", "1:7", "missing '=' after export"),
        ("A  # comment", "1:4", "missing '=' after A"),
        ('A="abc', "1:3", "unterminated '\"' quote"),
        ('A="abc\\"', "1:3", "unterminated '\"' quote"),
        ("B=1\nA='abc", "2:3", "unterminated \"'\" quote"),
        ('A="x" y', "1:7", "unexpected 'y' after the closing quote"),
        ("A='x'y", "1:6", "unexpected 'y' after the closing quote"),
        ("A=x\0y", "1:4", "a NUL character cannot appear in an env file"),
        ("A=1\r\nÄ=2", "2:1", "a name starts with a letter or '_', not 'Ä'"),
    ],
)
def test_env_file_errors(text: str, where: str, message: str) -> None:
    with pytest.raises(LocationError) as info:
        parse_env_file(text, SRC)
    err = info.value
    assert str(err).startswith(f"{SRC}:{where}: expected NAME=VALUE: {message}")
    assert (err.source, f"{err.line}:{err.column}") == (SRC, where)


@FAST
@given(st.text())
def test_env_file_any_text_parses_or_raises_config_error(text: str) -> None:
    try:
        entries = parse_env_file(text, SRC)
    except ConfigError as err:
        assert isinstance(err, LocationError)
        assert str(err).startswith(f"{SRC}:{err.line}:{err.column}: ")
        # Lines as an editor counts them: \n, \r\n and a lone \r end one (as in hostfiles).
        assert 1 <= err.line <= len(split_lines(text))
    else:
        assert len({k for k, _ in entries}) == len(entries)


line_chars = st.sampled_from([*"AB_=#'\" \t\\\nx$e", "export "])


@FAST
@given(st.lists(line_chars, max_size=30).map("".join))
def test_env_file_dotenv_like_text_parses_or_raises_config_error(text: str) -> None:
    try:
        parse_env_file(text, SRC)
    except LocationError as err:
        assert err.line >= 1 and err.column >= 1


values = st.text(
    st.characters(codec="utf-8", exclude_characters="\0"), max_size=40
)
tricky = st.lists(
    st.sampled_from([*"\"'\\#= \t\n\r$ab", "\\n", "\\\""]), max_size=20
).map("".join)


@FAST
@given(st.dictionaries(env_names, st.one_of(values, tricky), max_size=8))
def test_rendered_env_file_round_trips(entries: dict[str, str]) -> None:
    text = render_env_file(entries.items())
    assert parse_env_file(text, SRC) == list(entries.items())


@FAST
@given(st.dictionaries(env_names, st.text(string.printable.replace("\n", "").replace("\r", ""),
                                          max_size=30), max_size=8))
def test_rendered_printable_values_round_trip(entries: dict[str, str]) -> None:
    assert parse_env_file(render_env_file(entries.items()), SRC) == list(entries.items())


def test_render_refuses_bad_names() -> None:
    with pytest.raises(ConfigError):
        render_env_file([("A-B", "1")])


# --- load_env_file -------------------------------------------------------------------------


def test_load_env_file(tmp_path: Path) -> None:
    path = tmp_path / "job.env"
    path.write_text("# job\nexport NCCL_DEBUG=INFO\nHF_TOKEN='hf x'\n")
    assert load_env_file(str(path)) == [("NCCL_DEBUG", "INFO"), ("HF_TOKEN", "hf x")]


def test_load_env_file_missing(tmp_path: Path) -> None:
    missing = str(tmp_path / "nope.env")
    with pytest.raises(ConfigError, match=f"^env file not found: {missing}$"):
        load_env_file(missing)


def test_load_env_file_error_names_the_path(tmp_path: Path) -> None:
    path = tmp_path / "bad.env"
    path.write_text("A=1\nB\n")
    with pytest.raises(LocationError, match=f"^{path}:2:2: expected NAME=VALUE"):
        load_env_file(str(path))


def test_load_env_file_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "bin.env"
    path.write_bytes(b"A=1\nB=\xff\n")
    expected = f"^{path}:2:3: invalid UTF-8 byte 0xff: expected a UTF-8 text file"
    with pytest.raises(LocationError, match=expected):
        load_env_file(str(path))


def test_load_env_file_directory(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="env file"):
        load_env_file(str(tmp_path))
