"""The checks every door applies to a value: command-line flags, the YAML file, Slurm.

Pure functions over strings, no I/O. Each either returns the parsed value or
raises :class:`BadValue` saying what was expected (and, for a character, at
which index); the caller words the one line the user sees, naming the flag,
the file position or the variable. The bounds are sshrun's documented limits
(docs/configuration.md, "Limits"):

- whole numbers are ASCII digits only, their length checked before ``int()``
  (Python refuses to convert more than 4,300 digits, and a huge value is a
  typo): at most ``MAX_DIGITS`` digits after leading zeros;
- durations are plain decimal numbers (no ``inf``, ``nan``, sign or ``_``),
  positive and at most ``MAX_SECONDS``; restart back-off at most
  ``MAX_BACKOFF``;
- words (``--rdzv-id``) are non-empty, without whitespace or control
  characters, at most ``MAX_WORD`` characters;
- node paths (``--python``, ``--workdir``) are non-empty, do not start with
  ``-`` (ssh or ``exec`` would read an option) and hold no control characters;
- endpoints are ``HOST``, ``HOST:PORT`` or ``[v6addr]:PORT``, ports 1 to
  ``MAX_PORT``; switches are ``true``/``false`` or a whole number (torchrun's
  ``PET_*`` switches: 0 is off, anything else on).
"""

from __future__ import annotations

import math
import re
from typing import Literal

MAX_DIGITS = 18
MAX_SECONDS = 1e9  # about 31 years: finite for every timer and int() on the way
MAX_BACKOFF = 86_400.0  # one day between restarts at most
MAX_RESTARTS = 1_000_000
MAX_EXIT_CODE = 255
MAX_WORD = 256
MAX_PORT = 65535
NPROC_WORDS = ("auto", "cpu", "gpu", "xpu")

_FLOAT = re.compile(r"\+?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][-+]?[0-9]+)?")
_MAX_FLOAT_TEXT = 64
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
CONF_KEY = re.compile(r"[A-Za-z0-9_.-]+")
_ENDPOINT = re.compile(
    r"(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._][A-Za-z0-9._-]*)(?::(?P<port>[0-9]+))?"
)

Kind = Literal["syntax", "low", "high", "empty", "option", "port"]


class BadValue(ValueError):
    """A value that fails a check; ``reason`` completes "expected ...", ``index`` a character."""

    def __init__(self, reason: str, kind: Kind = "syntax", index: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.kind = kind
        self.index = index


def clip(text: str, limit: int = 60) -> str:
    """How a message shows a value: quoted, escaped, and cut short."""
    return repr(text if len(text) <= limit else text[:limit] + "...")


def worded(name: str, text: str, exc: BadValue) -> str:
    """``exc`` as the one line that names the flag, variable or key ``name``."""
    if exc.kind == "option":
        # ssh and the node's ``exec`` would read it as one of their options.
        return (f"{name} may not start with '-' (the node's shell would read it as an "
                f"option), got {clip(text)}")
    if exc.index is not None and exc.index < len(text):
        return (f"{name}: unexpected character {text[exc.index]!r} at {exc.index + 1} in "
                f"{clip(text)}: expected {exc.reason}")
    return f"{name}: expected {exc.reason}, got {clip(text)}"


def whole_number(text: str, low: int, high: int, unit: str = "") -> int:
    """ASCII digits from ``low`` to ``high``; ``unit`` words the bounds ("node", "nodes")."""
    if not text:
        raise BadValue("a whole number, got nothing", "empty")
    if not (text.isascii() and text.isdigit()):
        raise BadValue("a whole number")
    digits = text.lstrip("0") or "0"
    number = int(digits) if len(digits) <= MAX_DIGITS else None
    if number is not None and number < low:
        raise BadValue(f"at least {low}{unit}", "low")
    if number is None or number > high:
        raise BadValue(f"at most {high}{unit}", "high")
    return number


def seconds(text: str, high: float = MAX_SECONDS) -> float:
    """A positive, finite number of seconds up to ``high``."""
    if not text:
        raise BadValue("a number of seconds, got nothing", "empty")
    if len(text) > _MAX_FLOAT_TEXT or not _FLOAT.fullmatch(text):
        raise BadValue("a number of seconds")
    number = float(text)
    if not number > 0:
        raise BadValue("a positive number of seconds", "low")
    if not math.isfinite(number) or number > high:
        raise BadValue(f"a number of seconds up to {high:g}", "high")
    return number


def nproc(text: str, high: int) -> str:
    """torchrun's ``--nproc-per-node``: a count from 1 to ``high``, or one of its words."""
    if text in NPROC_WORDS:
        return text
    try:
        return str(whole_number(text, 1, high))
    except BadValue as exc:
        raise BadValue(f"a positive integer up to {high} or one of {', '.join(NPROC_WORDS)}",
                       exc.kind) from None


def nnodes(text: str, high: int) -> tuple[int, int]:
    """``N`` or ``MIN:MAX``, each from 1 to ``high``, MIN <= MAX."""
    low_s, colon, high_s = text.partition(":")
    try:
        bounds = (whole_number(low_s, 1, high),
                  whole_number(high_s, 1, high) if colon else whole_number(low_s, 1, high))
    except BadValue as exc:
        raise BadValue("N or MIN:MAX (positive integers)"
                       + (f" up to {high}" if exc.kind == "high" else ""), exc.kind) from None
    if bounds[0] > bounds[1]:
        raise BadValue("MIN <= MAX", "low")
    return bounds


def exit_codes(text: str) -> frozenset[int]:
    """Exit codes 0-255, comma separated (spaces allowed around them)."""
    codes = [c.strip() for c in text.split(",") if c.strip()]
    try:
        return frozenset(whole_number(c, 0, MAX_EXIT_CODE) for c in codes)
    except BadValue:
        raise BadValue(f"exit codes 0-{MAX_EXIT_CODE}, comma separated") from None


def word(text: str) -> str:
    """A non-empty word without whitespace or control characters (``--rdzv-id``)."""
    if not text:
        raise BadValue("a non-empty word, got nothing", "empty")
    for j, ch in enumerate(text):
        if ch.isspace() or _CONTROL.match(ch):
            raise BadValue("a word without whitespace or control characters", index=j)
    if len(text) > MAX_WORD:
        raise BadValue(f"at most {MAX_WORD} characters, got {len(text)}", "high")
    return text


def node_path(text: str) -> str:
    """A path on the nodes (``--python``, ``--workdir``): not empty, no leading '-'."""
    if not text:
        raise BadValue("a path, got nothing", "empty")
    if text.startswith("-"):
        raise BadValue("a path that does not start with '-'", "option", index=0)
    match = _CONTROL.search(text)
    if match:
        raise BadValue("a path without control characters", index=match.start())
    return text


def conf_value_problem(text: str) -> int | None:
    """Index of the first character a ``--rdzv-conf`` value cannot hold, or None."""
    return next((j for j, ch in enumerate(text)
                 if ch in ",=" or ch.isspace() or _CONTROL.match(ch)), None)


def rdzv_conf(text: str) -> str:
    """torchrun's ``--rdzv-conf``: ``KEY=VALUE[,KEY=VALUE...]``, as the YAML file checks it."""
    offset = 0
    for piece in text.split(","):
        key, eq, value = piece.partition("=")
        if not eq:
            raise BadValue("KEY=VALUE[,KEY=VALUE...]", index=offset)
        if not CONF_KEY.fullmatch(key):
            raise BadValue("keys of letters, digits, '_', '.' or '-'", index=offset)
        bad = conf_value_problem(value)
        if bad is not None:
            raise BadValue("values without ',', '=', spaces or control characters",
                           index=offset + len(key) + 1 + bad)
        offset += len(piece) + 1
    return text


def endpoint(text: str) -> tuple[str, int | None]:
    """``HOST``, ``HOST:PORT`` or ``[v6addr][:PORT]``; kind ``port``: the port is out of range."""
    match = _ENDPOINT.fullmatch(text)
    if match is None:
        raise BadValue("HOST[:PORT]")
    host = match.group("host")
    if host.startswith("["):
        host = host[1:-1]
    port_text = match.group("port")
    if port_text is None:
        return host, None
    try:
        return host, whole_number(port_text, 1, MAX_PORT)
    except BadValue:
        raise BadValue(f"a port from 1 to {MAX_PORT}", "port") from None


def switch(text: str) -> bool:
    """On or off: ``true``/``false``, or a whole number as torchrun reads ``PET_*`` switches."""
    if text in ("true", "false"):
        return text == "true"
    try:
        return whole_number(text, 0, 10**MAX_DIGITS - 1) != 0
    except BadValue:
        raise BadValue("0 or 1 (or true or false)") from None
