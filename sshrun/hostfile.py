"""Hostfiles and ``--hosts`` lists: parse, expand.

A hostfile names one host per line, in the dialects that DeepSpeed, Open MPI,
MPICH and Horovod users already have::

    # comment (``#`` starts a comment anywhere on a line)
    node01                      # one host, slots from --nproc-per-node
    node02 slots=8              # DeepSpeed / Open MPI
    node03:8                    # MPICH / Horovod: ``:N`` is the slot count
    alice@node04 slots=4        # user name
    [node05]:2222 slots=4       # bracketed form: ``:N`` after ``]`` is a port
    [::1]:2222                  # IPv6 addresses are always bracketed
    node06 port=2222 user=bob   # port and user as keys
    gpu[01-16] slots=8          # hostlist range: gpu01 ... gpu16
    cpu[1,3,5-7]-r[1-2]         # lists, and groups forming a cartesian product
    node07 slots=4 max_slots=8  # max_slots is accepted and ignored (Open MPI)

Grammar of a line, after the comment is removed and surrounding whitespace
stripped (blank lines are skipped)::

    line     := hostpart (WS key=value)*
    hostpart := [user "@"] ( pattern [":" SLOTS] | "[" host "]" [":" PORT] )
    pattern  := host name with hostlist ranges "[" item ("," item)* "]"
    item     := DIGITS | DIGITS "-" DIGITS
    key      := slots | port | user | max_slots

- Host names hold ASCII letters, digits, ``-``, ``.`` and ``_`` and may not
  start with ``-`` (ssh would read it as an option).  Inside ``[...]`` at the
  start of the host, a name or an IPv6 address is written, never a range.
- User names hold ASCII letters, digits, ``.``, ``_`` and ``-``, not leading.
- ``host:N`` is a slot count, 1 to 1024; a port is ``[host]:PORT`` or
  ``port=PORT``.  ``[host]:PORT:N`` is refused: it reads as either.
- Ranges keep the zero padding of their lower bound (``[08-10]`` gives 08,
  09, 10) and may expand to at most 100000 hosts, as may a whole file.
- Each field may be given once (``alice@h user=bob`` is an error), and a host
  (same name, case-insensitively, and same port) may appear once.

``--hosts`` takes the same entries separated by commas (commas inside
``[...]`` belong to a range): ``gpu[01-08]:8,alice@[10.0.0.9]:2222``.

Every error is a :class:`~sshrun.errors.LocationError` naming source, line and
1-based column (tabs count as one column) and saying what was expected.

Other loaders that hold host entries (the YAML cluster config,
:mod:`sshrun.cluster_yaml`) check them with the same grammar through
:func:`parse_host_entry`, :func:`expand_host_name`, :func:`check_single_host`,
:func:`check_user` and :func:`host_identity`, which raise
:class:`HostEntryError` with a column index for the caller to locate.
"""

from __future__ import annotations

import ipaddress
import itertools
import os
import re
import string
from collections.abc import Iterable
from dataclasses import dataclass, field

from sshrun.configfile import read_config_text
from sshrun.errors import ConfigError, LocationError, shown

__all__ = [
    "MAX_COLON_SLOTS",
    "MAX_HOSTS",
    "MAX_SLOTS",
    "HostEntry",
    "HostEntryError",
    "HostSpec",
    "HostlistError",
    "check_single_host",
    "check_user",
    "dns_name_problem",
    "expand_host_name",
    "expand_hostlist",
    "host_identity",
    "hostlist_size",
    "load_hostfile",
    "parse_host_entry",
    "parse_host_list",
    "parse_hostfile",
]

# A range such as node[0-9999999] would otherwise build millions of strings
# from one short line; the same bound applies to a whole file or list.
MAX_HOSTS = 100_000
# Above this, ``host:N`` is far more likely a port written the OpenSSH way
# than a slot count, and silently starting thousands of ranks would be worse
# than asking.
MAX_COLON_SLOTS = 1024
# Only a sanity bound: slots=N beyond it is a typo, not a machine.
MAX_SLOTS = 1_000_000
MAX_PORT = 65535

_HOST_CHARS = frozenset(string.ascii_letters + string.digits + "-._")
_USER_CHARS = _HOST_CHARS
_IPV6_CHARS = frozenset(string.hexdigits + ":.")
_RANGE_CHARS = frozenset(string.digits + ",-")
_KEYS = ("slots", "port", "user", "max_slots")
_KEY_HELP = "slots=N, port=P, user=NAME, max_slots=N"
# Bounds of a range longer than this are typos; the cap also keeps int() far
# from Python's limit on converting very long digit strings.
_MAX_RANGE_DIGITS = 18
_MAX_COUNT = 10**36
_TOKEN = re.compile(r"\S+")
# DNS limits (RFC 1035): what name lookup accepts; a longer or empty label
# would pass here and fail later, inside the resolver, without a line number.
MAX_LABEL = 63
MAX_NAME = 253


@dataclass(frozen=True)
class HostSpec:
    """One node of the cluster, as the hostfile or ``--hosts`` named it."""

    host: str
    user: str | None = None
    port: int | None = None
    slots: int | None = None
    where: str = ""
    # Per-host settings only a YAML cluster config can give; None: the defaults.
    python: str | None = None
    workdir: str | None = None
    identity_file: str | None = None
    env: tuple[tuple[str, str], ...] = ()

    @property
    def label(self) -> str:
        """How output prefixes name this node: ``host`` or ``[host]:port``."""
        if self.port is None:
            return self.host
        return f"[{self.host}]:{self.port}"


class HostlistError(ValueError):
    """A malformed hostlist range; ``offset`` is the 0-based index of the fault."""

    def __init__(self, offset: int, message: str) -> None:
        self.offset = offset
        self.message = message
        super().__init__(message)


@dataclass(frozen=True)
class _Range:
    low: int
    high: int
    width: int

    def __len__(self) -> int:
        return self.high - self.low + 1

    def values(self) -> list[str]:
        return [f"{n:0{self.width}d}" for n in range(self.low, self.high + 1)]


def expand_hostlist(pattern: str) -> list[str]:
    """Expand hostlist ranges: ``node[01-03]`` -> node01, node02, node03.

    A bracket group holds comma-separated numbers and ``LOW-HIGH`` ranges;
    several groups form a cartesian product, the leftmost varying slowest.
    Text outside the brackets is copied as is (the caller validates it).
    Raises :class:`HostlistError` (a ``ValueError``) for an unbalanced,
    nested, empty, non-numeric or reversed range, or one expanding to more
    than ``MAX_HOSTS`` names.
    """
    parts = _parse_pattern(pattern)
    count = _count(parts)
    if count > MAX_HOSTS:
        size_text = str(count) if count <= _MAX_COUNT else "more than 10**36"
        raise HostlistError(
            0, f"{pattern!r} expands to {size_text} hosts, more than the limit of {MAX_HOSTS}"
        )
    choices = [
        [part] if isinstance(part, str) else [v for r in part for v in r.values()] for part in parts
    ]
    return ["".join(combo) for combo in itertools.product(*choices)]


def hostlist_size(pattern: str) -> int:
    """How many names ``expand_hostlist(pattern)`` gives, computed without building them."""
    return _count(_parse_pattern(pattern))


def _count(parts: list[str | list[_Range]]) -> int:
    """The product of the groups' sizes, saturating above ``_MAX_COUNT``.

    Many wide groups would otherwise make a number too long to print.
    """
    count = 1
    for part in parts:
        if not isinstance(part, str):
            count *= sum(len(r) for r in part)
            if count > _MAX_COUNT:
                return _MAX_COUNT + 1
    return count


def _parse_pattern(pattern: str) -> list[str | list[_Range]]:
    """Literal text and range groups, in order; raises HostlistError."""
    parts: list[str | list[_Range]] = []
    literal_start = 0
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "]":
            raise HostlistError(i, f"unbalanced ']' in {pattern!r}: expected '[' before it")
        if ch != "[":
            i += 1
            continue
        close = pattern.find("]", i + 1)
        if close < 0:
            raise HostlistError(
                i, f"unbalanced '[' in {pattern!r}: expected ']' to close the range"
            )
        parts.append(pattern[literal_start:i])
        parts.append(_parse_group(pattern, i, close))
        i = literal_start = close + 1
    parts.append(pattern[literal_start:])
    return parts


def _parse_group(pattern: str, start: int, close: int) -> list[_Range]:
    """Parse the range group ``pattern[start:close + 1]``, brackets included."""
    for j in range(start + 1, close):
        ch = pattern[j]
        if ch == "[":
            raise HostlistError(j, f"nested '[' in {pattern!r}: ranges cannot be nested")
        if ch not in _RANGE_CHARS:
            raise HostlistError(
                j,
                f"invalid character {ch!r} in range {pattern[start : close + 1]!r} of "
                f"{pattern!r}: "
                "expected digits, ',' or '-' as in [01-16] or [1,3,5-7]",
            )
    if close == start + 1:
        raise HostlistError(
            start, f"empty range '[]' in {pattern!r}: expected [LOW-HIGH] or [N,M,...]"
        )
    ranges: list[_Range] = []
    offset = start + 1
    for item in pattern[start + 1 : close].split(","):
        ranges.append(_parse_item(pattern, item, offset))
        offset += len(item) + 1
    return ranges


def _parse_item(pattern: str, item: str, offset: int) -> _Range:
    low_s, dash, high_s = item.partition("-")
    if not item:
        raise HostlistError(
            offset, f"empty item in range {pattern!r}: expected N or LOW-HIGH between commas"
        )
    if not low_s or (dash and not high_s) or "-" in high_s:
        raise HostlistError(
            offset, f"bad range item {item!r} in {pattern!r}: expected N or LOW-HIGH"
        )
    if len(low_s) > _MAX_RANGE_DIGITS or len(high_s) > _MAX_RANGE_DIGITS:
        raise HostlistError(
            offset,
            f"range item {item!r} in {pattern!r} is too long: "
            f"expected numbers of at most {_MAX_RANGE_DIGITS} digits",
        )
    low = int(low_s)
    high = int(high_s) if dash else low
    if high < low:
        raise HostlistError(
            offset, f"reversed range {item!r} in {pattern!r}: expected LOW-HIGH with LOW <= HIGH"
        )
    return _Range(low, high, len(low_s))


class HostEntryError(ValueError):
    """A fault at the 0-based ``index`` of a host entry's text; ``message`` says what
    was expected (the caller adds the file and line)."""

    def __init__(self, index: int, message: str) -> None:
        super().__init__(message)
        self.index = index
        self.message = message


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


def _check_name(name: str, at: int, what: str, allowed: frozenset[str], hint: str) -> None:
    """Reject a name with a leading '-' or a character outside ``allowed``."""
    # The leading '-' first: "-oProxyCommand=..." is an injection attempt,
    # and naming its '=' would hide that.
    if name.startswith("-"):
        raise HostEntryError(
            at, f"{what} may not start with '-' (ssh would read it as an option), got {name!r}"
        )
    for j, ch in enumerate(name):
        if ch not in allowed:
            raise HostEntryError(
                at + j, f"invalid character {ch!r} in {what} {name!r}: expected {hint}"
            )


def _check_user(name: str, at: int, token: str) -> None:
    if not name:
        raise HostEntryError(at, f"expected a user name, got {token!r}")
    _check_name(name, at, "user name", _USER_CHARS, "letters, digits, '.', '_' or '-'")


def _check_host_pattern(pattern: str, at: int, token: str) -> list[str]:
    """Validate a host name that may hold ranges, and expand it."""
    if not pattern:
        raise HostEntryError(at, f"expected a host name, got {token!r}")
    if pattern.startswith("-"):
        raise HostEntryError(
            at,
            f"host name may not start with '-' (ssh would read it as an option), got {pattern!r}",
        )
    depth = 0
    for j, ch in enumerate(pattern):
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth = max(0, depth - 1)
        elif depth == 0 and ch not in _HOST_CHARS:
            raise HostEntryError(
                at + j,
                f"invalid character {ch!r} in host name {pattern!r}: expected letters, "
                "digits, '-', '.', '_' or a range like node[01-16]",
            )
    try:
        names = expand_hostlist(pattern)
    except HostlistError as err:
        raise HostEntryError(at + err.offset, err.message) from None
    for name in names:
        _check_dns_name(name, at)
    return names


def dns_name_problem(name: str) -> str | None:
    """Why ``name`` cannot be looked up (DNS label and name lengths), or None."""
    body = name[:-1] if name.endswith(".") else name  # an absolute name's final dot
    if len(body) > MAX_NAME:
        return f"a host name is at most {MAX_NAME} characters, got {len(body)}"
    for label in body.split("."):
        if not label:
            return "a host name has no empty labels (no leading, trailing or double '.')"
        if len(label) > MAX_LABEL:
            return (f"each dot-separated label of a host name is at most {MAX_LABEL} "
                    f"characters, got one of {len(label)}")
    return None


def _check_dns_name(name: str, at: int) -> None:
    problem = dns_name_problem(name)
    if problem is not None:
        text = name if len(name) <= 60 else name[:60] + "..."
        raise HostEntryError(at, f"invalid host name {text!r}: {problem}")


def _check_bracketed_host(inner: str, at: int, token: str) -> None:
    """Validate the name or IPv6 address written inside ``[...]``."""
    if not inner:
        raise HostEntryError(
            at, f"expected a host name or IPv6 address inside [...], got {token!r}"
        )
    if ":" not in inner:
        _check_name(
            inner,
            at,
            "host name",
            _HOST_CHARS,
            "letters, digits, '-', '.' or '_' (no ranges inside [host]:PORT)",
        )
        _check_dns_name(inner, at)
        return
    _check_name(inner, at, "IPv6 address", _IPV6_CHARS, "hex digits, ':' or '.'")
    try:
        ipaddress.IPv6Address(inner)
    except ValueError:
        raise HostEntryError(at, f"expected an IPv6 address inside [...], got {inner!r}") from None


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
        _check_user(user, at, token)
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
    _check_bracketed_host(inner, at + 1, token)
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
    depth = 0
    colon = -1
    for j, ch in enumerate(rest):
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth = max(0, depth - 1)
        elif ch == ":" and depth == 0:
            colon = j
            break
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
    hosts = _check_host_pattern(pattern, at, token)
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
        _check_user(value, at + len(eq) + len(key), token)
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


def _host_key(host: str, port: int | None) -> tuple[str, int | None]:
    """Identity for duplicate detection: DNS names ignore case, IPv6 has many spellings."""
    if ":" in host:
        try:
            return (ipaddress.IPv6Address(host).compressed, port)
        except ValueError:
            pass
    return (host.lower(), port)


class _Collector:
    """Accumulates HostSpecs, refusing duplicates and runaway totals."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.hosts: list[HostSpec] = []
        self.seen: dict[tuple[str, int | None], str] = {}

    def add(self, entry: _Entry, line: int, where: str, first_ref: str) -> None:
        column = entry.host_at + 1
        if len(self.hosts) + len(entry.hosts) > MAX_HOSTS:
            raise LocationError(self.source, line, column, f"more than {MAX_HOSTS} hosts in total")
        for host in entry.hosts:
            spec = HostSpec(host, entry.user, entry.port, entry.slots, where)
            key = _host_key(host, entry.port)
            first = self.seen.get(key)
            if first is not None:
                raise LocationError(
                    self.source, line, column, f"duplicate host {spec.label} (first at {first})"
                )
            self.seen[key] = first_ref
            self.hosts.append(spec)


def _split_lines(text: str) -> list[str]:
    # The same line breaks as Python's universal newlines, so line numbers
    # match what an editor shows for Unix, Windows and old Mac files.
    return text.replace("\r\n", "\n").replace("\r", "\n").split("\n")


def parse_hostfile(text: str, source: str) -> list[HostSpec]:
    """Parse hostfile text; ``source`` names it in errors and in ``where``."""
    # Windows editors write a byte-order mark that is not whitespace.
    text = text.removeprefix("\ufeff")
    collector = _Collector(source)
    for number, line in enumerate(_split_lines(text), start=1):
        body = line.split("#", 1)[0]
        try:
            entry = _parse_line(body, 0)
        except HostEntryError as err:
            raise LocationError(source, number, err.index + 1, err.message) from None
        if entry is not None:
            where = f"{source}:{number}"
            collector.add(entry, number, where, where)
    return collector.hosts


def _split_entries(value: str) -> Iterable[tuple[int, str]]:
    """Split at commas outside ``[...]``, yielding (offset, entry)."""
    depth = 0
    start = 0
    for j, ch in enumerate(value):
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth = max(0, depth - 1)
        elif ch == "," and depth == 0:
            yield start, value[start:j]
            start = j + 1
    yield start, value[start:]


def parse_host_list(value: str, source: str = "--hosts") -> list[HostSpec]:
    """Parse a comma-separated host list such as ``node[1-4]:8,alice@[10.0.0.9]:2222``.

    Each entry reads like a hostfile line (``#`` is not a comment here);
    errors are on line 1 at the column within ``value``.
    """
    if not value.strip():
        raise LocationError(source, 1, 1, "expected a comma-separated list of hosts, got nothing")
    collector = _Collector(source)
    for start, piece in _split_entries(value):
        try:
            entry = _parse_line(piece, start)
        except HostEntryError as err:
            raise LocationError(source, 1, err.index + 1, err.message) from None
        if entry is None:
            raise LocationError(
                source, 1, start + 1, f"expected a host between commas, got {value!r}"
            )
        collector.add(entry, 1, source, f"{source}:1:{entry.host_at + 1}")
    return collector.hosts


def load_hostfile(path: str | os.PathLike[str]) -> list[HostSpec]:
    """Read and parse a hostfile; a missing, unreadable or empty one is an error.

    A missing hostfile must never fall back to a local run (DESIGN.md).
    """
    name = os.fspath(path)
    text = read_config_text(name, "hostfile")
    hosts = parse_hostfile(text, name)
    if not hosts:
        raise ConfigError(f"{shown(name)}: no hosts")
    return hosts


# --- host entries for other loaders (sshrun.cluster_yaml) ---------------------------------


@dataclass(frozen=True)
class HostEntry:
    """One host entry as a hostfile line writes it: its hosts share user, port and slots."""

    hosts: tuple[str, ...]  # the host part, ranges expanded
    host_at: int  # 0-based index of the host name (after any user@) in the text
    user: str | None = None
    port: int | None = None
    slots: int | None = None


def parse_host_entry(text: str) -> HostEntry | None:
    """One hostfile line's text, its comment already removed; None when blank.

    Raises :class:`HostEntryError` at the column of the first fault.
    """
    entry = _parse_line(text, 0)
    if entry is None:
        return None
    return HostEntry(tuple(entry.hosts), entry.host_at, entry.user, entry.port, entry.slots)


def expand_host_name(pattern: str) -> list[str]:
    """A host name that may hold hostlist ranges, checked and expanded."""
    return _check_host_pattern(pattern, 0, pattern)


def check_single_host(name: str) -> None:
    """One host name (no ranges) or IPv6 address, as written inside ``[...]``."""
    _check_bracketed_host(name, 0, name)


def check_user(name: str) -> None:
    """A user name as ``user@`` and ``user=`` take it."""
    _check_user(name, 0, name)


def host_identity(host: str, port: int | None) -> tuple[str, int | None]:
    """What makes two entries the same host (for duplicates): DNS names ignore case,
    an IPv6 address is compared in its compressed form."""
    return _host_key(host, port)
