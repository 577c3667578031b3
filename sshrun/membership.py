"""Elastic membership: which hosts take part in the next attempt.

With ``--nnodes MIN:MAX`` the hostfile is a pool. Each attempt runs on up to
MAX hosts, in hostfile order, leaving out any host that is cooling down.
A host is left out (for ``--host-cooldown`` seconds) when it could not be
reached or set up while the attempt started, or when the attempt's first
failure happened on it: lost, a rank killed or exiting non-zero, torchrun
dying. Spare hosts beyond MAX fill in for those left out. An attempt needs
at least MIN hosts; when fewer are available because some are cooling down,
the next attempt waits until enough of them have served their time.

Every attempt is a fixed-size torchrun job (``--nnodes`` its member count,
node ranks 0..n-1 in hostfile order, a fresh rendezvous on its first
member), so a lost host, the first one included, never holds the
rendezvous of a later attempt. There is no scale-up in the middle of an
attempt: a host that comes back joins at the next restart.

Pure: time is passed in, nothing here touches the network.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from sshrun.frozen_dataclass import frozen_dataclass
from sshrun.hostfile import HostSpec


@frozen_dataclass
class Membership:
    min_nodes: int
    max_nodes: int
    cooldown: float = 60.0


@frozen_dataclass
class LeftOut:
    """One host left out of the job, as the report shows it."""

    host: str
    attempt: int  # the attempt in which it failed or could not be started
    reason: str
    until: float  # monotonic time its cool-down ends
    at_start: bool = False  # it could not be started (rather than failed while running)

    def describe(self) -> str:
        when = "at the start of" if self.at_start else "after"
        return f"{self.host} {when} attempt {self.attempt}: {self.reason}"


@dataclass
class HostPool:
    hosts: tuple[HostSpec, ...]
    membership: Membership
    history: list[LeftOut] = field(default_factory=list)

    def leave_out(self, host: str, attempt: int, reason: str, now: float,
                  at_start: bool = False) -> LeftOut:
        record = LeftOut(host, attempt, reason, now + self.membership.cooldown, at_start)
        self.history.append(record)
        return record

    def cooling(self, now: float) -> dict[str, float]:
        """Hosts still cooling down, and when each is available again."""
        until: dict[str, float] = {}
        for record in self.history:
            until[record.host] = max(until.get(record.host, 0.0), record.until)
        return {host: t for host, t in until.items() if t > now}

    def available(self, now: float) -> tuple[HostSpec, ...]:
        """Every host not cooling down, in hostfile order (spares included)."""
        cooling = self.cooling(now)
        return tuple(h for h in self.hosts if h.label not in cooling)

    def wait_needed(self, now: float) -> float:
        """Seconds until at least MIN hosts are available (0 when they are now)."""
        missing = self.membership.min_nodes - len(self.available(now))
        if missing <= 0:
            return 0.0
        ends = sorted(self.cooling(now).values())
        if missing > len(ends):  # cannot happen: the pool holds at least MIN hosts
            return math.inf
        return ends[missing - 1] - now
