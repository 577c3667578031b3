"""Host and user names as hostfile entries write them: checked, ranges expanded.

- Host names hold ASCII letters, digits, ``-``, ``.`` and ``_`` and may not
  start with ``-`` (ssh would read it as an option); each expanded name must
  also be one that DNS can look up (labels of 1-63 characters, 253 in all).
- Inside ``[...]`` a single name or an IPv6 address is written, never a range.
- User names hold ASCII letters, digits, ``.``, ``_`` and ``-``, not leading.

The hostfile grammar (:mod:`sshrun.hostline`) and the YAML cluster config
(:mod:`sshrun.cluster_yaml`) both check names here. Each check raises
:class:`~sshrun.hostspec.HostEntryError` at the index of the fault: ``at`` is
where the name starts in the caller's text (0 for a bare name), and ``token``,
the whole entry, is what an error about an empty name quotes.
"""

from __future__ import annotations

import ipaddress
import string

from sshrun.hostlist import HostlistError, expand_hostlist, outside_ranges
from sshrun.hostspec import HostEntryError

__all__ = [
    "MAX_LABEL",
    "MAX_NAME",
    "check_single_host",
    "check_user",
    "dns_name_problem",
    "expand_host_name",
]

_HOST_CHARS = frozenset(string.ascii_letters + string.digits + "-._")
_USER_CHARS = _HOST_CHARS
_IPV6_CHARS = frozenset(string.hexdigits + ":.")
# DNS limits (RFC 1035): what name lookup accepts; a longer or empty label
# would pass here and fail later, inside the resolver, without a line number.
MAX_LABEL = 63
MAX_NAME = 253


def _entry(name: str, token: str | None) -> str:
    """The text an error about an empty name quotes: the whole entry, if the caller has one."""
    return name if token is None else token


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


def check_user(name: str, at: int = 0, token: str | None = None) -> None:
    """A user name as ``user@`` and ``user=`` take it."""
    if not name:
        raise HostEntryError(at, f"expected a user name, got {_entry(name, token)!r}")
    _check_name(name, at, "user name", _USER_CHARS, "letters, digits, '.', '_' or '-'")


def expand_host_name(pattern: str, at: int = 0, token: str | None = None) -> list[str]:
    """A host name that may hold hostlist ranges, checked and expanded."""
    if not pattern:
        raise HostEntryError(at, f"expected a host name, got {_entry(pattern, token)!r}")
    if pattern.startswith("-"):
        raise HostEntryError(
            at,
            f"host name may not start with '-' (ssh would read it as an option), got {pattern!r}",
        )
    for j, ch in outside_ranges(pattern):
        if ch not in _HOST_CHARS:
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


def check_single_host(name: str, at: int = 0, token: str | None = None) -> None:
    """One host name (no ranges) or IPv6 address, as written inside ``[...]``."""
    if not name:
        raise HostEntryError(
            at, f"expected a host name or IPv6 address inside [...], got {_entry(name, token)!r}"
        )
    if ":" not in name:
        _check_name(
            name,
            at,
            "host name",
            _HOST_CHARS,
            "letters, digits, '-', '.' or '_' (no ranges inside [host]:PORT)",
        )
        _check_dns_name(name, at)
        return
    _check_name(name, at, "IPv6 address", _IPV6_CHARS, "hex digits, ':' or '.'")
    try:
        ipaddress.IPv6Address(name)
    except ValueError:
        raise HostEntryError(at, f"expected an IPv6 address inside [...], got {name!r}") from None
