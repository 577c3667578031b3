"""The values that hold hosts: what a hostfile line, ``--hosts`` entry or YAML
host entry says, and the limits on it.

:class:`HostSpec` is one node of the cluster as every later stage (selection,
planning, transport) sees it. :class:`HostEntry` is one hostfile line's worth
of hosts before the file-level checks; :class:`HostEntryError` a fault in its
text at a column the caller locates. :func:`host_identity` says when two
entries are the same host. Pure: no parsing beyond IPv6's canonical form.
"""

from __future__ import annotations

import ipaddress

from sshrun.frozen_dataclass import frozen_dataclass
from sshrun.values import MAX_PORT

__all__ = [
    "MAX_COLON_SLOTS",
    "MAX_PORT",
    "MAX_SLOTS",
    "HostEntry",
    "HostEntryError",
    "HostSpec",
    "host_identity",
]

# Above this, ``host:N`` is far more likely a port written the OpenSSH way
# than a slot count, and silently starting thousands of ranks would be worse
# than asking.
MAX_COLON_SLOTS = 1024
# Only a sanity bound: slots=N beyond it is a typo, not a machine.
MAX_SLOTS = 1_000_000


@frozen_dataclass
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


@frozen_dataclass
class HostEntry:
    """One host entry as a hostfile line writes it: its hosts share user, port and slots."""

    hosts: tuple[str, ...]  # the host part, ranges expanded
    host_at: int  # 0-based index of the host name (after any user@) in the text
    user: str | None = None
    port: int | None = None
    slots: int | None = None


class HostEntryError(ValueError):
    """A fault at the 0-based ``index`` of a host entry's text; ``message`` says what
    was expected (the caller adds the file and line)."""

    def __init__(self, index: int, message: str) -> None:
        super().__init__(message)
        self.index = index
        self.message = message


def host_identity(host: str, port: int | None) -> tuple[str, int | None]:
    """What makes two entries the same host (for duplicates): DNS names ignore case,
    an IPv6 address is compared in its compressed form."""
    if ":" in host:
        try:
            return (ipaddress.IPv6Address(host).compressed, port)
        except ValueError:
            pass
    return (host.lower(), port)
