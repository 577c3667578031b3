"""The head's open files for N nodes: raise the soft limit to fit, or refuse at once.

Measured on the head (``sshrun exec`` on loopback sshd nodes, the peak of
``/proc/PID/fd``): 7 files for 1 node, 22 for 16, 70 for 64; one TCP socket
per node (a node's channels, and nodes behind a shared ProxyJump, take none
more) over a base of about 6 (stdio, the event loop's epoll and self-pipe).
``--log-dir`` keeps one file open per rank and one launcher.log per node
while the attempt runs (135 for 64 exec nodes), plus the two filtered files
with ``--duplicate-std*-filters``. The embedded cluster (``--local-cluster``)
serves each node from the head's own process: one more socket per node.

The estimate is the plan's upper bound plus a margin for what a run opens
for a moment (the ssh config, known_hosts, an identity file, a resolver's
socket). Past the hard limit nothing is started: exit 2, naming N, the need
and the limit, before any connection, instead of EMFILE on node 1,000.
"""

from __future__ import annotations

import resource

from sshrun.errors import ConfigError
from sshrun.frozen_dataclass import frozen_dataclass
from sshrun.plan import JobConfig

BASE_FDS = 64  # measured ~6, with room for the files a run opens for a moment
UNKNOWN_NPROC = 8  # ranks per node assumed for auto, gpu or cpu (decided on the node)


@frozen_dataclass
class FdNeed:
    nodes: int  # at most this many nodes connected at once
    fds: int  # open files the head needs for them


def estimate(config: JobConfig, *, log_dir: bool, filters: bool = False,
             local_cluster: bool = False) -> FdNeed:
    """The open files the head needs for ``config``'s nodes, from the plan alone."""
    hosts = config.hosts
    if config.membership is not None:
        hosts = hosts[:config.membership.max_nodes]
    fds = BASE_FDS
    for host in hosts:
        per_node = 2 if local_cluster else 1
        if log_dir:
            nproc = config.nproc_per_node or (str(host.slots) if host.slots else "1")
            ranks = int(nproc) if nproc.isdigit() else UNKNOWN_NPROC
            per_node += 1 + (ranks if config.mode == "torchrun" else 0) + (2 if filters else 0)
        fds += per_node
    return FdNeed(len(hosts), fds)


def new_soft_limit(need: int, soft: int, hard: int) -> int | None:
    """The soft RLIMIT_NOFILE to set for ``need`` files: ``soft`` when it fits, else
    ``need`` when the hard limit allows it, else None. RLIM_INFINITY is unlimited."""
    def fits(limit: int) -> bool:
        return limit == resource.RLIM_INFINITY or need <= limit
    if fits(soft):
        return soft
    return need if fits(hard) else None


def ensure(need: FdNeed) -> None:
    """Raise the soft open-file limit to fit ``need``, or a ``ConfigError`` (exit 2)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = new_soft_limit(need.fds, soft, hard)
    if target is None:
        raise ConfigError(
            f"{need.nodes} nodes need about {need.fds} open files on the head, but its "
            f"open-file limit is {hard} (hard; soft {soft}): raise it (`ulimit -Hn`, "
            "/etc/security/limits.conf, or LimitNOFILE= for a service), or run fewer nodes")
    if target != soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
