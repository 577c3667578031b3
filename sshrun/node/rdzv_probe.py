"""Whether this node can reach the rendezvous: a short TCP connect, retried, never blocking.

The static rendezvous has every node wait at node 0's TCP store, and c10d's
and etcd's wait at their endpoint, so a node whose packets to it are dropped
(a firewall, the wrong interface) looks from the head just like the others:
at the rendezvous. The agent of a node that is not the store's host (the
head says which, in the spec) therefore connects to the endpoint itself
once torchrun has been waiting ``PROBE_AFTER`` seconds, and again every
``PROBE_EVERY`` seconds while none of its ranks has started; the head hears
of a failure, of another failure, and of the end of one
(``sshrun.node.protocol.RendezvousProbe``), never of a probe that found the
way open in a start-up that was only slow.

A refusal is the store not listening yet: "waiting", until ``REFUSED_GRACE``
seconds after torchrun started (then something refuses for good: a REJECT
rule, the wrong port). A timeout, an unreachable host or network is the
failure at once: the first connect is already ``PROBE_AFTER`` seconds in.

The connect is non-blocking and looked at on the agent's tick, so output and
heartbeats keep flowing. A job that reaches its rendezvous within
``PROBE_AFTER`` seconds never connects anything, nor imports anything more
than the agent has (``errno`` and ``_socket`` come with the first connect).

Standard library only, Python 3.8.
"""

from __future__ import annotations

import os
import select

# Imported by the first connect, not when the bundle loads (every job loads this).
# _socket: socket's C module, since socket's enums cost a node ~2 ms.
TYPE_CHECKING = False
if TYPE_CHECKING:
    import _socket

PROBE_AFTER = 3.0  # torchrun waiting this long before the first connect
PROBE_TIMEOUT = 3.0  # one connect's bound
PROBE_EVERY = 2.0  # between connects, while no rank has started
REFUSED_GRACE = 20.0  # refusals before this (since torchrun started) are "waiting"

REACHABLE = "reachable"
WAITING = "waiting"
UNREACHABLE = "unreachable"


class Probe:
    """One node's probes of ``host``:``port``; ``poll(now)`` on every tick."""

    def __init__(self, host: str, port: int, began: float) -> None:
        self.host = host
        self.port = port
        self.began = began
        self.next_at = began + PROBE_AFTER
        self.sock: _socket.socket | None = None
        self.deadline = 0.0
        self.said: tuple[str, str | None] = (WAITING, None)  # what the head last heard
        self.done = False

    def close(self) -> None:
        self.done = True
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def poll(self, now: float) -> tuple[str, str | None] | None:
        """A new outcome (state, error) for the head, or None."""
        if self.done:
            return None
        if self.sock is None:
            if now < self.next_at:
                return None
            outcome = self._connect(now)
        else:
            outcome = self._check(now)
        if outcome is None:
            return None
        self.next_at = now + PROBE_EVERY
        if outcome[0] == REACHABLE:
            self.close()  # the way there works; whatever still holds the job, it is not this
        if outcome == self.said or UNREACHABLE not in (outcome[0], self.said[0]):
            return None  # news only: a failure, another one, or the end of one
        self.said = outcome
        return outcome

    def _connect(self, now: float) -> tuple[str, str | None] | None:
        import _socket
        import errno

        try:
            family, kind, proto, _, address = _socket.getaddrinfo(
                self.host, self.port, 0, _socket.SOCK_STREAM)[0]
            sock = _socket.socket(family, kind, proto)
        except OSError as exc:
            return UNREACHABLE, f"cannot resolve it: {exc.strerror or exc}"
        sock.setblocking(False)
        code = sock.connect_ex(address)
        if code in (errno.EINPROGRESS, errno.EAGAIN, errno.EWOULDBLOCK):
            self.sock = sock
            self.deadline = now + PROBE_TIMEOUT
            return None
        sock.close()
        return self._outcome(code, now)

    def _check(self, now: float) -> tuple[str, str | None] | None:
        import _socket
        import errno

        sock = self.sock
        assert sock is not None
        if select.select([], [sock.fileno()], [], 0)[1]:
            code = sock.getsockopt(_socket.SOL_SOCKET, _socket.SO_ERROR)
        elif now >= self.deadline:
            code = errno.ETIMEDOUT
        else:
            return None
        sock.close()
        self.sock = None
        return self._outcome(code, now)

    def _outcome(self, code: int, now: float) -> tuple[str, str | None]:
        import errno

        if code == 0:
            return REACHABLE, None
        if code == errno.ECONNREFUSED:
            if now - self.began < REFUSED_GRACE:
                return WAITING, None
            return UNREACHABLE, "connection refused"
        if code == errno.ETIMEDOUT:
            return UNREACHABLE, "timed out"
        return UNREACHABLE, os.strerror(code)
