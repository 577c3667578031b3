"""One hostfile line (or ``--hosts`` entry): its grammar, parsed into a HostEntry.

Grammar of a line, after the comment is removed and surrounding whitespace
stripped (a blank line is no entry)::

    line     := hostpart (WS key=value)*
    hostpart := [user "@"] ( pattern [":" SLOTS] | "[" host "]" [":" PORT] )
    pattern  := host name with hostlist ranges "[" item ("," item)* "]"
    item     := DIGITS | DIGITS "-" DIGITS
    key      := slots | port | user | max_slots

- Names are checked by :mod:`sshrun.hostnames`, ranges expanded by
  :mod:`sshrun.hostlist` (zero padding kept, at most ``MAX_HOSTS`` names).
- ``host:N`` is a slot count, 1 to 1024; a port is ``[host]:PORT`` or
  ``port=PORT``.  ``[host]:PORT:N`` is refused: it reads as either.
- ``max_slots=N`` is accepted and ignored (Open MPI's oversubscription bound).
- Each field may be given once (``alice@h user=bob`` is an error).

Faults raise :class:`~sshrun.hostspec.HostEntryError` at the 0-based index of
the fault; the caller (:mod:`sshrun.hostfile`, :mod:`sshrun.cluster_yaml`)
adds the file and line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from sshrun.hostlist import outside_ranges
from sshrun.hostnames import check_single_host, check_user, expand_host_name
from sshrun.hostspec import MAX_COLON_SLOTS, MAX_PORT, MAX_SLOTS, HostEntry, HostEntryError

__all__ = ["parse_host_entry"]

_KEYS = ("slots", "port", "user", "max_slots")
_KEY_HELP = "slots=N, port=P, user=NAME, max_slots=N"
_TOKEN = re.compile(r"\S+")


@dataclass
class _Entry:
    """One parsed line: its hosts share user, port and slots."""

    hosts: list[str]
    host_at: int
    user: str | None = None
    port: int | None = None
    slots: int | None = None
    # field -> (column index, how it was written), to name the first of two.
    given: dict[str, tuple[int, str]] = field(default_factory=dict)

    def set(self, key: str, value: int | str | None, at: int, how: str) -> None:
        if key in self.given:
            first_at, first_how = self.given[key]
            raise HostEntryError(
                at, f"{key} given twice: {how} here, {first_how} at column {first_at + 1}"
            )
        self.given[key] = (at, how)
        if key == "user":
            assert value is None or isinstance(value, str)
            self.user = value
        elif key == "port":
            assert value is None or isinstance(value, int)
            self.port = value
        elif key == "slots":
            assert value is None or isinstance(value, int)
            self.slots = value


def _number(text: str) -> int | None:
    """ASCII digits as an int (huge ones clamped), else None.

    ``int()`` alone would accept ``+1``, ``1_0``, `` 1`` and non-ASCII digits,
    and fail on thousands of digits.
    """
    if not text or not text.isascii() or not text.isdigit():
        return None
    if len(text) > 18:
        return 10**18
    return int(text)



def _parse_hostpart(token: str, at: int) -> _Entry:
    key = token.partition("=")[0]
    if key in _KEYS:
        raise HostEntryError(at, f"expected a host name before {token!r}")
    rest, rest_at = token, at
    user: str | None = None
    user_at = token.find("@")
    if user_at >= 0:
        user = token[:user_at]
        if not user:
            raise HostEntryError(at, f"expected a user name before '@', got {token!r}")
        check_user(user, at, token)
        rest, rest_at = token[user_at + 1 :], at + user_at + 1

    if rest.startswith("["):
        entry = _parse_bracketed(rest, rest_at, token)
    else:
        entry = _parse_plain(rest, rest_at, token)
    if user is not None:
        entry.set("user", user, at, "'user@host'")
    return entry


def _parse_bracketed(rest: str, at: int, token: str) -> _Entry:
    close = rest.find("]")
    if close < 0:
        raise HostEntryError(at, f"expected ']' to close '[' as in [host]:PORT, got {token!r}")
    inner = rest[1:close]
    check_single_host(inner, at + 1, token)
    entry = _Entry(hosts=[inner], host_at=at)
    after = rest[close + 1 :]
    after_at = at + close + 1
    if not after:
        return entry
    if after[0] != ":":
        raise HostEntryError(after_at, f"expected ':PORT' or nothing after ']', got {token!r}")
    port_text = after[1:]
    extra = port_text.find(":")
    if extra >= 0:
        raise HostEntryError(
            after_at + 1 + extra,
            f"'[host]:PORT:N' is not accepted, got {token!r}: write '[host]:PORT slots=N'",
        )
    port = _number(port_text)
    if port is None or not 1 <= port <= MAX_PORT:
        raise HostEntryError(
            after_at + 1,
            f"expected [host]:PORT with PORT a port number 1-{MAX_PORT}, got {token!r}",
        )
    entry.set("port", port, after_at, "'[host]:PORT'")
    return entry


def _parse_plain(rest: str, at: int, token: str) -> _Entry:
    colon = next((j for j, ch in outside_ranges(rest) if ch == ":"), -1)
    pattern = rest if colon < 0 else rest[:colon]
    slots_text = rest[colon + 1 :]
    # Before the host check, so that a bare IPv6 address such as ::1 gets
    # this hint rather than "expected a host name".
    if colon >= 0 and ":" in slots_text:
        raise HostEntryError(
            at + colon,
            f"expected host:N with N the number of slots, got {token!r}: an IPv6 address "
            "or a port is written in brackets, as in [::1] or [host]:2222",
        )
    hosts = expand_host_name(pattern, at, token)
    entry = _Entry(hosts=hosts, host_at=at)
    if colon < 0:
        return entry

    slots_at = at + colon + 1
    slots = _number(slots_text)
    if slots is None or slots < 1:
        raise HostEntryError(
            slots_at,
            f"expected host:N with N a positive integer (the number of slots), got {token!r}",
        )
    if slots > MAX_COLON_SLOTS:
        # A range cannot go inside [host]:PORT, so only port= fits there.
        fix = f"'{pattern} port={slots_text}'"
        if "[" not in pattern:
            fix = f"'[{pattern}]:{slots_text}' or {fix}"
        raise HostEntryError(
            slots_at,
            f"':N' gives the number of slots, and {slots_text} in {token!r} is more than "
            f"{MAX_COLON_SLOTS}; to give port {slots_text}, write {fix}",
        )
    entry.set("slots", slots, at + colon, "'host:N'")
    return entry


def _apply_option(entry: _Entry, token: str, at: int) -> None:
    key, eq, value = token.partition("=")
    if not eq:
        if token in _KEYS:
            raise HostEntryError(
                at, f"expected {token}=VALUE without spaces around '=', got {token!r}"
            )
        raise HostEntryError(
            at,
            f"expected key=value ({_KEY_HELP}) after the host, got {token!r}; "
            "write one host per line",
        )
    if not key:
        raise HostEntryError(at, f"expected key=value ({_KEY_HELP}), got {token!r}")
    if key not in _KEYS:
        raise HostEntryError(
            at, f"unknown key {key!r} in {token!r}: expected one of {', '.join(_KEYS)}"
        )
    how = f"{key + '='!r}"
    if key == "user":
        check_user(value, at + len(eq) + len(key), token)
        entry.set("user", value, at, how)
        return
    number = _number(value)
    if key == "port":
        if number is None or not 1 <= number <= MAX_PORT:
            raise HostEntryError(
                at, f"expected port=P with P a port number 1-{MAX_PORT}, got {token!r}"
            )
        entry.set("port", number, at, how)
    elif key == "slots":
        if number is None or number < 1:
            raise HostEntryError(at, f"expected slots=N with N a positive integer, got {token!r}")
        if number > MAX_SLOTS:
            raise HostEntryError(
                at, f"expected slots=N with N a positive integer up to {MAX_SLOTS}, got {token!r}"
            )
        entry.set("slots", number, at, how)
    else:
        # Open MPI's oversubscription bound: meaningless to torchrun, but a
        # typo in it is still worth reporting.
        if number is None:
            raise HostEntryError(
                at, f"expected max_slots=N with N a non-negative integer, got {token!r}"
            )
        entry.set("max_slots", None, at, how)


def _parse_line(text: str, base: int) -> _Entry | None:
    """Parse one line (comment already removed); ``base`` offsets its columns."""
    tokens = [(base + m.start(), m.group()) for m in _TOKEN.finditer(text)]
    if not tokens:
        return None
    at, token = tokens[0]
    entry = _parse_hostpart(token, at)
    for at, token in tokens[1:]:
        _apply_option(entry, token, at)
    return entry


def parse_host_entry(text: str, base: int = 0) -> HostEntry | None:
    """One hostfile line's text, its comment already removed; None when blank.

    ``base`` is added to every index (an entry's offset within a ``--hosts``
    list). Raises :class:`HostEntryError` at the index of the first fault.
    """
    entry = _parse_line(text, base)
    if entry is None:
        return None
    return HostEntry(tuple(entry.hosts), entry.host_at, entry.user, entry.port, entry.slots)
