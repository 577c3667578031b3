"""Env files: ``--env-file FILE`` and YAML ``env.file``, parsed into pairs.

Pure parsing, no I/O except :func:`load_env_file`. Which of the pairs reach
the nodes, and in which layer, is :mod:`sshrun.environment`'s.

Dotenv style, one assignment per line::

    # a comment line; blank lines are skipped
    NCCL_DEBUG=INFO               # unquoted: ends at whitespace + '#', stripped
    export OMP_NUM_THREADS=4      # an optional 'export ' prefix
    URL=http://x/#frag            # '#' not after whitespace is part of the value
    GREETING="hello\\n\\"world\\""   # double quotes: \\n \\r \\t \\" \\\\ \\$ escapes,
                                  #   any other backslash is kept as written
    PATTERN='C:\\dir\\*.txt'        # single quotes: literal, no escapes
    EMPTY=

Whitespace around ``=`` is allowed; a quoted value ends on its own line (write
a newline as ``\\n`` inside double quotes) and may be followed only by
whitespace and a comment.  Values are literal: no ``$VAR`` expansion.  A name
given twice keeps its first position and its last value.  A NUL character is
an error anywhere.  Every error is a :class:`~sshrun.errors.LocationError`
with the file, the 1-based line and the 1-based column (a tab is one column).
"""

from __future__ import annotations

from sshrun.configfile import read_config_text, split_lines
from sshrun.environment import NAME
from sshrun.errors import LocationError

__all__ = ["load_env_file", "parse_env_file"]

_WS = " \t"
_ESCAPES = {"n": "\n", "r": "\r", "t": "\t", '"': '"', "\\": "\\", "$": "$"}
_EXPECTED = "expected NAME=VALUE"


class _LineError(Exception):
    def __init__(self, index: int, message: str) -> None:
        super().__init__(message)
        self.index = index
        self.message = message


def _skip_ws(line: str, i: int) -> int:
    while i < len(line) and line[i] in _WS:
        i += 1
    return i


def _rest_is_comment(line: str, i: int) -> None:
    i = _skip_ws(line, i)
    if i < len(line) and line[i] != "#":
        # One character, never the rest of the line: that may be the rest of a secret.
        raise _LineError(
            i, f"{_EXPECTED}: unexpected {line[i]!r} after the closing quote "
               "(only a # comment may follow)"
        )


def _double_quoted(line: str, start: int) -> tuple[str, int]:
    """The value of a double-quoted string opening at ``start``, and the index after it."""
    out: list[str] = []
    i = start + 1
    while i < len(line):
        c = line[i]
        if c == '"':
            return "".join(out), i + 1
        if c == "\\" and i + 1 < len(line):
            nxt = line[i + 1]
            out.append(_ESCAPES.get(nxt, "\\" + nxt))
            i += 2
            continue
        out.append(c)
        i += 1
    raise _LineError(
        start, f"{_EXPECTED}: unterminated '\"' quote (a quoted value ends on its line; "
               "write a newline as \\n)"
    )


def _single_quoted(line: str, start: int) -> tuple[str, int]:
    end = line.find("'", start + 1)
    if end < 0:
        raise _LineError(
            start, f"{_EXPECTED}: unterminated \"'\" quote (a quoted value ends on its line)"
        )
    return line[start + 1:end], end + 1


def _unquoted(line: str, start: int) -> str:
    """An unquoted value starting at a non-blank ``start``: up to whitespace + '#'."""
    end = len(line)
    for k in range(start + 1, len(line)):
        if line[k] == "#" and line[k - 1] in _WS:
            end = k
            break
    return line[start:end].strip(_WS)


def _parse_line(line: str) -> tuple[str, str] | None:
    nul = line.find("\0")
    if nul >= 0:
        raise _LineError(nul, f"{_EXPECTED}: a NUL character cannot appear in an env file")
    i = _skip_ws(line, 0)
    if i == len(line) or line[i] == "#":
        return None
    if line.startswith("export", i) and i + 6 < len(line) and line[i + 6] in _WS:
        j = _skip_ws(line, i + 6)
        if j < len(line) and NAME.match(line, j):
            i = j
    match = NAME.match(line, i)
    if match is None:
        raise _LineError(
            i, f"{_EXPECTED}: a name starts with a letter or '_', not {line[i]!r}"
        )
    name = match.group()
    i = match.end()
    if i < len(line) and line[i] not in _WS and line[i] != "=":
        raise _LineError(i, f"{_EXPECTED}: {line[i]!r} cannot appear in a name")
    i = _skip_ws(line, i)
    if i == len(line) or line[i] != "=":
        raise _LineError(i, f"{_EXPECTED}: missing '=' after {name}")
    after_eq = i + 1
    i = _skip_ws(line, after_eq)
    if i == len(line):
        return name, ""
    if line[i] == '"':
        value, end = _double_quoted(line, i)
        _rest_is_comment(line, end)
        return name, value
    if line[i] == "'":
        value, end = _single_quoted(line, i)
        _rest_is_comment(line, end)
        return name, value
    if line[i] == "#" and i > after_eq:
        return name, ""  # "A= # comment"; "A=#x" is the value "#x"
    return name, _unquoted(line, i)


def parse_env_file(text: str, source: str) -> list[tuple[str, str]]:
    """The assignments of an env file, each name once (first position, last value).

    Raises :class:`~sshrun.errors.LocationError` (a ``ConfigError``) naming
    ``source``, the line and the column of the first problem.
    """
    if text.startswith("\ufeff"):
        text = text[1:]
    out: dict[str, str] = {}
    # Line breaks as in hostfiles: \n, \r\n and an old Mac's lone \r.
    for number, line in enumerate(split_lines(text), start=1):
        try:
            entry = _parse_line(line)
        except _LineError as err:
            raise LocationError(source, number, err.index + 1, err.message) from None
        if entry is not None:
            out[entry[0]] = entry[1]
    return list(out.items())


def load_env_file(path: str) -> list[tuple[str, str]]:
    """Read and parse an env file; errors name ``path`` as given."""
    text = read_config_text(path, "env file")
    return parse_env_file(text, path)
