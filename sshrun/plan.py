"""The launch plan: what every node runs, computed without any I/O.

Input is a ``JobConfig`` (what the user asked for, already parsed); output is
a ``JobPlan`` with one ``NodePlan`` per host. Node rank is the host's position
in the hostfile. With the default static rendezvous, global ranks follow
hostfile order (node i holds ranks ``offset_i .. offset_i + nproc_i - 1``, as
torchrun's static rendezvous assigns them); ``--rdzv-backend c10d`` (or
``etcd``, ``etcd-v2``) lets the rendezvous decide and passes ``--local-addr``
so that every node advertises an address the others can route to. What each
backend needs is in ``sshrun.rendezvous``.

The rendezvous endpoint is the first node, at a port that node's agent found
free, unless the user gave ``--rdzv-endpoint`` (or torchrun's legacy
``--master-addr``/``--master-port``; the etcd backends need it: the etcd
server is the user's); ``--standalone`` leaves the rendezvous to torchrun on
the one node. The port is only known once the agents say hello, so
``torchrun_args`` takes the endpoint as an argument; ``--dry-run`` shows it
as ``<free port>``.
"""

from __future__ import annotations

from dataclasses import field
from typing import TYPE_CHECKING, Literal

from sshrun import rendezvous, values
from sshrun.errors import ConfigError
from sshrun.frozen_dataclass import frozen_dataclass
from sshrun.hostfile import MAX_SLOTS, HostSpec
from sshrun.membership import Membership
from sshrun.redact import REDACTED as REDACTED  # shown for secret names

if TYPE_CHECKING:
    from sshrun.sync_manifest import SyncTree

Mode = Literal["torchrun", "exec"]

NPROC_WORDS = ("auto", "cpu", "gpu", "xpu")

# Linux refuses to exec a program when one argument or one "NAME=value"
# environment string is longer than MAX_ARG_STRLEN (32 pages), and when all of
# them together pass ARG_MAX (a quarter of the stack limit, 2 MiB by default).
# What sshrun adds is held to half of that, leaving room for the node's login
# environment and torchrun's own arguments.
MAX_ARG_STRLEN = 131072
MAX_EXEC_TOTAL = 1024 * 1024


@frozen_dataclass
class Timeouts:
    """Every bound sshrun puts on waiting, in seconds, as one value."""

    connect: float = 15.0  # TCP connect plus SSH handshake and login
    keepalive_interval: float = 5.0  # SSH keepalive requests to each node
    keepalive_count_max: int = 3  # unanswered keepalives before a node is lost
    heartbeat: float = 2.0  # heartbeat period, both ways (head <-> agent)
    # Silence after which the head declares a node lost, and an agent
    # declares the head gone and tears its node's processes down.
    heartbeat_timeout: float = 15.0
    grace: float = 10.0  # SIGTERM -> SIGKILL on the nodes
    hello: float = 60.0  # agent start-up on a node (Python start, torch lookup)

    @classmethod
    def for_liveness(cls, heartbeat_timeout: float, connect: float = connect,
                     grace: float = grace) -> Timeouts:
        """Every liveness bound follows the one the user sets (``--heartbeat-timeout``).

        Heartbeats go four times per timeout (at most every 2 s), so a single
        late one is never fatal; SSH keepalives, three per timeout, catch a
        connection whose far end froze or vanished without a FIN even when no
        agent runs yet.
        """
        return cls(
            heartbeat_timeout=heartbeat_timeout,
            heartbeat=min(2.0, heartbeat_timeout / 4),
            keepalive_interval=heartbeat_timeout / 3,
            keepalive_count_max=3,
            connect=connect,
            grace=grace,
        )


@frozen_dataclass
class RestartPolicy:
    """Cluster-wide restarts: every node stops, then every node starts again."""

    max_restarts: int = 0
    backoff: float = 1.0  # seconds before the first restart, doubled each time
    backoff_max: float = 60.0
    no_restart_on: frozenset[int] = frozenset()  # exit codes a restart cannot fix

    def delay(self, attempt: int) -> float:
        """Seconds to wait before starting attempt ``attempt + 1``."""
        # A float power: 2 ** 1024 as an int overflows when multiplied by a
        # float; 2.0 ** 1023 times any bounded back-off is at worst inf, and
        # min() turns that into backoff_max.
        return float(min(self.backoff_max, self.backoff * 2.0 ** min(max(attempt, 0), 1023)))

    def allows(self, attempt: int, exit_code: int, reason: str | None) -> bool:
        # A configuration problem on a node (reason "error") fails the same way again.
        return (attempt < self.max_restarts and exit_code not in self.no_restart_on
                and reason != "error")


@frozen_dataclass
class JobConfig:
    hosts: tuple[HostSpec, ...]
    target: tuple[str, ...]  # script and its args, or a command and its args
    mode: Mode = "torchrun"
    module: bool = False
    no_python: bool = False
    nproc_per_node: str | None = None  # None: the host's slots, else 1
    rdzv_backend: str = "static"
    rdzv_endpoint: str | None = None
    rdzv_port: int | None = None  # --master-port alone: the first node, at this port
    rdzv_id: str | None = None
    rdzv_conf: str | None = None
    standalone: bool = False  # torchrun --standalone on the one node
    monitor_interval: str = "0.1"  # torchrun's --monitor-interval
    torchrun_extra: tuple[str, ...] = ()  # options passed on to every node's torchrun
    # A flag (python, workdir) overrides every host's own setting; the
    # default_* values apply where neither the flag nor the host sets one.
    python: str | None = None
    default_python: str = "python3"
    workdir: str | None = None
    default_workdir: str | None = None
    env: tuple[tuple[str, str], ...] = ()  # below each host's own env
    env_flags: tuple[tuple[str, str], ...] = ()  # -x: above each host's env
    secrets: frozenset[str] = frozenset()  # names whose values are never shown
    timeouts: Timeouts = field(default_factory=Timeouts)
    restarts: RestartPolicy = field(default_factory=RestartPolicy)
    membership: Membership | None = None  # --nnodes MIN:MAX with MIN < MAX
    # --allow-version-mismatch: nodes whose torch is not node 0's run (with a warning).
    allow_version_mismatch: bool = False
    # --sync: the head's tree, read once; mirrored to each node's workdir before its agent.
    sync: SyncTree | None = None
    sync_bwlimit: float | None = None  # --sync-bwlimit: bytes a second, all nodes together


@frozen_dataclass
class NodePlan:
    index: int  # node rank
    host: HostSpec
    nproc: str  # an integer, or one of torchrun's words (auto, cpu, gpu)
    first_rank: int | None  # None when ranks are not known before launch
    env: tuple[tuple[str, str], ...]  # in order; a later value of a name wins
    tag: str  # SSHRUN_TAG: job, node and attempt; the teardown's only key
    python: str = "python3"
    workdir: str | None = None

    @property
    def ranks(self) -> range | None:
        if self.first_rank is None or not self.nproc.isdigit():
            return None
        return range(self.first_rank, self.first_rank + int(self.nproc))


@frozen_dataclass
class JobPlan:
    config: JobConfig
    job_id: str
    attempt: int
    nodes: tuple[NodePlan, ...]

    @property
    def world_size(self) -> int | None:
        sizes = [n.nproc for n in self.nodes]
        return sum(int(s) for s in sizes) if all(s.isdigit() for s in sizes) else None


def parse_nproc(value: str, source: str = "--nproc-per-node") -> str:
    value = value.strip()
    try:
        return values.nproc(value, MAX_SLOTS)
    except values.BadValue as exc:
        raise ConfigError(f"{source}: expected {exc.reason}, got {values.clip(value)}") from None


def parse_endpoint(value: str, source: str = "--rdzv-endpoint") -> tuple[str, int | None]:
    """``host``, ``host:port`` or ``[v6addr]:port`` (sshrun.values.endpoint)."""
    value = value.strip()
    try:
        return values.endpoint(value)
    except values.BadValue as exc:
        if exc.kind == "port":
            port_text = value.rpartition(":")[2]
            raise ConfigError(f"{source}: port {values.clip(port_text, 20)[1:-1]} is out of "
                              f"range 1-{values.MAX_PORT}") from None
        raise ConfigError(f"{source}: expected HOST[:PORT], got {value!r}") from None


def given_endpoint(config: JobConfig) -> tuple[str, int] | None:
    """The user's ``--rdzv-endpoint`` with the backend's port where it has none
    (torchrun's defaults: 29400, etcd's 2379); None when sshrun picks it."""
    if not config.rdzv_endpoint:
        return None
    host, port = parse_endpoint(config.rdzv_endpoint)
    return host, port if port is not None else rendezvous.backend(config.rdzv_backend).default_port


def format_endpoint(host: str, port: int | None) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"{shown}:{port}" if port is not None else f"{shown}:<free port>"


def plan_job(config: JobConfig, job_id: str, attempt: int = 0) -> JobPlan:
    if not config.hosts:
        raise ConfigError("no hosts to run on")
    if not config.target:
        raise ConfigError("nothing to run: give a script (or, for sshrun exec, a command)")
    if config.rdzv_backend not in rendezvous.BACKENDS:
        raise ConfigError(f"--rdzv-backend: expected {rendezvous.expected()}, "
                          f"got {config.rdzv_backend!r}")
    backend = rendezvous.backend(config.rdzv_backend)
    if backend.needs_endpoint and not config.rdzv_endpoint:
        raise ConfigError(f"--rdzv-backend {backend.name} needs --rdzv-endpoint HOST[:PORT]: "
                          f"the etcd server's client address (port {backend.default_port} "
                          "when left out)")
    fixed_ranks = backend.fixed_ranks
    nodes: list[NodePlan] = []
    offset: int | None = 0
    for index, host in enumerate(config.hosts):
        if config.nproc_per_node is not None:
            nproc = config.nproc_per_node
        else:
            nproc = str(host.slots) if host.slots else "1"
        # --standalone is one node: its ranks are 0..n-1 whatever the rendezvous.
        deterministic = (fixed_ranks or config.standalone) and offset is not None
        first = offset if deterministic else None
        offset = offset + int(nproc) if offset is not None and nproc.isdigit() else None
        # One entry per name: first position, last value (the layers' precedence).
        layered = dict((*config.env, *host.env, *config.env_flags))
        env = (
            *layered.items(),
            ("SSHRUN_JOB_ID", job_id),
            ("SSHRUN_NODE_RANK", str(index)),
            ("SSHRUN_NNODES", str(len(config.hosts))),
            ("SSHRUN_HOST", host.label),
            ("SSHRUN_ATTEMPT", str(attempt)),
        )
        _check_exec_size(env, config.target, host.label)
        nodes.append(NodePlan(
            index, host, nproc, first, env, f"{job_id}.{index}.{attempt}",
            python=config.python or host.python or config.default_python,
            workdir=config.workdir or host.workdir or config.default_workdir,
        ))
    return JobPlan(config, job_id, attempt, tuple(nodes))


def _size(text: str) -> int:
    """Bytes of ``text`` in an exec'd string, its NUL included."""
    return len(text.encode("utf-8", "surrogatepass")) + 1


def _check_exec_size(env: tuple[tuple[str, str], ...], target: tuple[str, ...],
                     label: str) -> None:
    """Refuse, before anything starts, what the node's exec would refuse (E2BIG)."""
    sizes = [(_size(f"{name}={value}"), name) for name, value in env]
    for size, name in sizes:
        if size > MAX_ARG_STRLEN:
            raise ConfigError(
                f"environment variable {name} is {size} bytes as NAME=value, more than "
                f"Linux's limit of {MAX_ARG_STRLEN} bytes (MAX_ARG_STRLEN) for one "
                "variable; pass large data in a file"
            )
    for position, arg in enumerate(target, start=1):
        if _size(arg) > MAX_ARG_STRLEN:
            raise ConfigError(
                f"argument {position} of the command is {_size(arg)} bytes, more than "
                f"Linux's limit of {MAX_ARG_STRLEN} bytes (MAX_ARG_STRLEN) for one argument"
            )
    total = sum(size for size, _ in sizes) + sum(_size(arg) for arg in target)
    if total > MAX_EXEC_TOTAL:
        largest = max(sizes, default=(0, ""))[1]
        raise ConfigError(
            f"{label}: the environment and arguments sshrun passes are {total} bytes, more "
            f"than the limit of {MAX_EXEC_TOTAL} bytes (half of Linux's default ARG_MAX)"
            + (f"; the largest variable is {largest}" if largest else "")
        )


def torchrun_args(
    plan: JobPlan, node: NodePlan, endpoint: tuple[str, int | None], local_addr: str | None,
) -> list[str]:
    """torchrun's own arguments for one node (before the entrypoint)."""
    config = plan.config
    rdzv_id = run_id(plan)
    if plan.attempt:
        # A fresh rendezvous for every restart: stale store keys must not leak in.
        rdzv_id += f".{plan.attempt}"
    if config.standalone:
        # torchrun picks its own rendezvous: c10d on the node, a free port, a uuid.
        args = ["--standalone", "--nnodes", "1", "--nproc-per-node", node.nproc]
    else:
        if config.rdzv_port is not None:
            endpoint = (endpoint[0], config.rdzv_port)
        args = [
            "--nnodes", str(len(plan.nodes)),
            "--nproc-per-node", node.nproc,
            "--rdzv-backend", config.rdzv_backend,
            "--rdzv-endpoint", format_endpoint(*endpoint),
            "--rdzv-id", rdzv_id,
        ]
    args += [
        # sshrun, not torchrun, owns restarts: they must span the cluster.
        "--max-restarts", "0",
        "--monitor-interval", config.monitor_interval,
        "--shutdown-timeout", str(max(1, int(config.timeouts.grace))),
    ]
    if rendezvous.backend(config.rdzv_backend).fixed_ranks and not config.standalone:
        args += ["--node-rank", str(node.index)]
    elif local_addr and not config.standalone:
        args += ["--local-addr", local_addr]
    if config.rdzv_conf:
        args += ["--rdzv-conf", config.rdzv_conf]
    return [*args, *config.torchrun_extra]


def probe_endpoint(plan: JobPlan, node: NodePlan,
                   endpoint: tuple[str, int | None]) -> tuple[str, int] | None:
    """What ``node``'s agent connects to when its start-up stalls
    (sshrun.node.rdzv_probe): the rendezvous endpoint its torchrun is given.
    None where there is nothing to find out: exec, ``--standalone``, and node 0
    unless the endpoint is a server sshrun does not run (etcd), since node 0's
    torchrun hosts the store there itself."""
    config = plan.config
    if config.mode != "torchrun" or config.standalone:
        return None
    if node.index == 0 and not rendezvous.backend(config.rdzv_backend).needs_endpoint:
        return None
    host, port = endpoint
    if config.rdzv_port is not None:
        port = config.rdzv_port
    return (host, port) if port is not None else None


def run_id(plan: JobPlan) -> str:
    """The job's run id as the user knows it: ``--rdzv-id``, or sshrun's job id.

    Each attempt's rendezvous id (``torchrun_args``) adds the attempt to it;
    that one stays between sshrun and torchrun.
    """
    return plan.config.rdzv_id or plan.job_id


def rank_env(plan: JobPlan) -> dict[str, str]:
    """What every rank sees over torchrun's own values, so that sshrun's restarts look
    like torchrun's to the script.

    torchrun sets these from its own arguments (torch 2.13,
    ``LocalElasticAgent._start_workers``): under sshrun its restart count is
    always 0, its budget ``--max-restarts 0`` and its run id the attempt's
    rendezvous id. A script that resumes from a checkpoint reads them; the
    rank shim puts these in their place.
    """
    return {
        "TORCHELASTIC_RESTART_COUNT": str(plan.attempt),
        "TORCHELASTIC_MAX_RESTARTS": str(plan.config.restarts.max_restarts),
        "TORCHELASTIC_RUN_ID": run_id(plan),
    }


def target_args(config: JobConfig) -> list[str]:
    """What the rank shim runs: a mode word, then the target and its args."""
    mode = "module" if config.module else "exec" if config.no_python else "script"
    return [mode, *config.target]
