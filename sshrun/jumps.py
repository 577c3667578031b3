"""ProxyJump connections shared by the nodes behind them, one per hop chain per run.

Nodes behind one bastion reach it over one SSH connection (each node is a
channel in it), not one each: a bastion's sshd would otherwise see N
handshakes at once (its ``MaxStartups``), and the head N more sockets. A
chain ``a,b`` is ``b`` reached through the shared connection to ``a``, so
chains that begin alike share their first hops too.

Each holder (a node's connection, or a longer chain) counts once; the last
one to let go closes the hop, which lets go of the hop before it. Nodes that
ask while the hop is connecting wait for that one attempt and share its
outcome.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import asyncssh

from sshrun.errors import ConnectError, SSHError
from sshrun.hostspec import HostSpec

Chain = tuple[HostSpec, ...]
OpenHop = Callable[[HostSpec, "asyncssh.SSHClientConnection | None"],
                   Awaitable[asyncssh.SSHClientConnection]]


def parse_chain(proxy_jump: str) -> Chain:
    """ProxyJump's ``[user@]host[:port],...`` as hosts to connect to in order."""
    hops = []
    for hop in proxy_jump.split(","):
        user, _, rest = hop.strip().rpartition("@")
        name, _, port = rest.partition(":")
        hops.append(HostSpec(name, user=user or None, port=int(port) if port else None))
    return tuple(hops)


@dataclass
class _Hop:
    ready: asyncio.Future[asyncssh.SSHClientConnection]
    holders: int = 0


@dataclass
class JumpPool:
    """The run's open jump connections, by chain."""

    _hops: dict[Chain, _Hop] = field(default_factory=dict)

    def open_count(self) -> int:
        """How many jump connections are open or opening."""
        return len(self._hops)

    async def acquire(self, chain: Chain, open_hop: OpenHop) -> asyncssh.SSHClientConnection:
        """The connection to the chain's last hop, held until ``release(chain)``;
        the hop's ``SSHError`` when it cannot be reached."""
        hop = self._hops.get(chain)
        if hop is not None:
            hop.holders += 1
            try:
                return await asyncio.shield(hop.ready)
            except BaseException:
                self._let_go(chain, hop)
                raise
        hop = self._hops[chain] = _Hop(asyncio.get_running_loop().create_future(), 1)
        parent = None
        try:
            if len(chain) > 1:
                parent = await self.acquire(chain[:-1], open_hop)
            conn = await open_hop(chain[-1], parent)
        except BaseException as exc:
            del self._hops[chain]
            if parent is not None:
                self.release(chain[:-1])
            # The nodes waiting on this attempt fail with it; a cancelled attempt
            # (the run is stopping) must not cancel them as if they were.
            failure = exc if isinstance(exc, SSHError) else ConnectError(
                chain[-1].label, "the connection to this ProxyJump host was abandoned")
            hop.ready.set_exception(failure)
            hop.ready.exception()  # retrieved: nobody may be waiting
            raise
        hop.ready.set_result(conn)
        return conn

    def release(self, chain: Chain) -> None:
        """One holder of ``chain`` is done; the last closes it."""
        hop = self._hops.get(chain)
        if hop is not None:
            self._let_go(chain, hop)

    def _let_go(self, chain: Chain, hop: _Hop) -> None:
        hop.holders -= 1
        if hop.holders > 0 or self._hops.get(chain) is not hop:
            return
        del self._hops[chain]
        if hop.ready.done() and hop.ready.exception() is None:
            hop.ready.result().close()
            if len(chain) > 1:
                self.release(chain[:-1])
