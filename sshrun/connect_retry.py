"""Which failed connection attempts are tried again, and after how long (pure).

An sshd over its ``MaxStartups`` (too many handshakes at once, as when
hundreds of nodes share one sshd, or one bastion) closes new connections
before its banner: asyncssh sees the connection lost, or reset, before any
login. That node is fine a moment later, so the connection is tried again
after a jittered, growing delay, all of it within the connect timeout (the
deadline of the first attempt). Everything else is final at once: a refused
connection (no sshd there), a name that does not resolve, a timeout (the
time is spent), and above all a refused login or host key, which no retry
may paper over.
"""

from __future__ import annotations

import asyncssh

from sshrun.frozen_dataclass import frozen_dataclass

# A connection closed or reset before the login completed.
DROPPED: tuple[type[BaseException], ...] = (
    asyncssh.ConnectionLost, ConnectionResetError, ConnectionAbortedError, BrokenPipeError,
)


def is_dropped(exc: BaseException) -> bool:
    """Whether a failed connection attempt was a dropped handshake, worth another try."""
    return isinstance(exc, DROPPED)


@frozen_dataclass
class Backoff:
    """Delay before retry k (from 0): ``min(cap, first * factor**k)``, jittered down to half."""

    first: float = 0.05
    factor: float = 2.0
    cap: float = 2.0


def retry_delay(retry: int, now: float, deadline: float, jitter: float,
                backoff: Backoff = Backoff()) -> float | None:
    """Seconds to wait before retry ``retry`` (0 for the first), or None when the next
    attempt would start past ``deadline``. ``jitter`` in [0, 1) spreads the nodes that
    an sshd dropped together, so that they do not come back together."""
    step = min(backoff.cap, backoff.first * backoff.factor ** min(retry, 64))
    delay = step * (0.5 + 0.5 * jitter)
    return delay if now + delay < deadline else None
