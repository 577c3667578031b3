"""sshrun: run a PyTorch job on every node of a cluster over SSH, as one job.

Usage::

    sshrun [run] [OPTIONS] SCRIPT [SCRIPT_ARGS...]
    sshrun exec  [OPTIONS] -- COMMAND [ARGS...]

``sshrun -H hostfile train.py --epochs 3`` connects to every host in the
hostfile (concurrently, with your OpenSSH config and known_hosts), starts a
small agent on each node, and has it run ``torchrun`` with the node's rank,
the node count and the rendezvous endpoint. Every line that any rank prints
comes back prefixed with its node and global rank::

    gpu01 r0 | epoch 1 loss 0.693
    gpu02 r2 | epoch 1 loss 0.701

The cluster is one job. When a rank exits non-zero or is killed, or a node is
lost, sshrun stops every node (SIGTERM, a grace period, then SIGKILL of every
process the job started, including daemons) and exits with that rank's exit
status; a report on stderr names the host, node rank, rank, exit code or
signal, and its traceback or last stderr lines. Ctrl-C stops every node
gracefully and exits 130; a second Ctrl-C kills at once.

Exit status: 0 every rank succeeded; N the first failing rank's code (128+S
for signal S); 2 usage or configuration error; 130 interrupted; 141 stdout
closed (``sshrun ... | head``: every node is stopped as on Ctrl-C, quietly;
128 + SIGPIPE, as a shell reports for a tool killed by SIGPIPE); 255 SSH
failure (connection, authentication, host key, lost node, or an agent that
stopped its node on its own because it heard nothing from sshrun).

Output: a line longer than 1 MiB characters is printed in pieces of that
size, each after the first marked ``+`` instead of ``|``
(``gpu01 r0 + ...``); joined, they give the line. A slow reader (a paused
pager, a slow ``tee``) slows the ranks down, as a pipe would: nothing is lost
and the job is not stopped.

Cluster (one of):

``-H/--hostfile PATH``
    One host per line: ``host``, ``host slots=N``, ``host:N``, ``user@host``,
    ``[host]:port`` or ``host port=P``, ranges ``node[01-16]``; ``#`` comments.
``--hosts LIST``
    The same entries inline, comma separated: ``gpu[01-04]:8,gpu05:4``.
``-c/--config PATH``
    A YAML cluster config: per-host user, port, slots, python, workdir,
    identity file and environment, plus ssh, env and torchrun sections
    (docs/configuration.md).
``--local-cluster N``
    N embedded SSH nodes on 127.0.0.2... inside sshrun: try it on one machine.

Without any of these, inside a Slurm allocation, ``SLURM_JOB_NODELIST`` gives
the hosts. ``--include``/``--exclude`` pick hosts or local slots with
DeepSpeed's syntax (``host1@host2:0,1``).

torchrun's options keep torchrun's names and meanings: ``--nproc-per-node``
(default: the host's slots, else 1), ``--nnodes N`` (use the first N hosts;
``MIN:MAX`` below), ``--rdzv-backend static|c10d`` (static: ranks in hostfile order),
``--rdzv-endpoint``, ``--rdzv-id``, ``--rdzv-conf``, ``-m/--module``,
``--no-python``.

On the nodes: ``--python PATH`` (default ``python3``; it needs torch, not
sshrun), ``--workdir DIR`` (default: the current directory), ``-x NAME`` to
forward a variable from here, ``-x NAME=VALUE`` to set one, ``-x 'NCCL_*'``
for every variable matching a pattern, ``--env-file PATH`` for a dotenv file,
``--secret NAME`` for a variable whose value sshrun never prints or writes. A
documented allow-list of torch, NCCL and CUDA variables is forwarded by
default. The node's login environment is the base, as with plain ssh.
Arguments, values and secrets travel over the SSH channel, never through a
remote shell or a command line.

SSH: ``--ssh-config PATH`` (default ``~/.ssh/config``: Host aliases, HostName,
User, Port, IdentityFile, ProxyJump), ``--host-key-policy strict`` (default;
also when the config says ``UserKnownHostsFile none``), ``accept-new`` or
``insecure``. Never a password prompt.

Faults. ``--max-restarts N`` restarts the whole cluster after a failure, up
to N times: every node is stopped, then all start again with a fresh
rendezvous, after ``--restart-backoff`` seconds (doubled each time, at most
``--restart-backoff-max``); ranks see ``SSHRUN_ATTEMPT``. Exit codes listed in
``--no-restart-on`` and configuration, authentication and host-key errors
fail at once. A node that sends nothing for ``--heartbeat-timeout`` seconds
(default 15: frozen, crashed, or cut off without a FIN) is lost: the job
stops or restarts; an agent that hears nothing from the head for as long
stops its node's processes on its own. ``--nnodes MIN:MAX`` makes the
hostfile a pool: up to MAX hosts run, a host that fails or cannot be reached
is left out for ``--host-cooldown`` seconds (spares fill in), and the job goes
on while at least MIN remain. docs/reliability.md has the guarantees.

``--dry-run`` prints every node's plan (torchrun arguments, environment; secrets
redacted by name and by value, controls shown as ``$'...'`` words) and exits.
It applies every check of the real run, the ssh config and identity files
included, and connects nowhere.

Bad input is one line and exit 2: every number is bounded (no ``inf`` or
``nan``; docs/configuration.md, "Limits and bounds", has the table), host names
follow DNS label rules, only regular files of at most 16 MiB are read, an
empty value is an error, and a variable too large for the nodes' exec is
named with Linux's limit. ``sshrun`` alone prints this help; a subcommand
goes first (``sshrun exec -H f -- cmd``, not ``sshrun -H f exec``).
``--host-key-policy insecure`` warns on stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import secrets
import signal
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import TypeVar, cast

from rich.console import Console
from rich.text import Text

from sshrun import errors, values
from sshrun.cluster_yaml import EnvFileSettings, SSHFileSettings, load_cluster_yaml
from sshrun.console import ConsoleOutput
from sshrun.envfile import load_env_file
from sshrun.environment import DEFAULT_FORWARD, resolve_env
from sshrun.errors import ConfigError, ConnectError, SshrunError
from sshrun.hostfile import MAX_HOSTS, HostSpec, load_hostfile, parse_host_list
from sshrun.local_cluster import MAX_NODES as MAX_LOCAL_NODES
from sshrun.local_cluster import local_cluster_hosts
from sshrun.membership import HostPool, Membership
from sshrun.output import Printer
from sshrun.plan import (
    JobConfig,
    JobPlan,
    RestartPolicy,
    Timeouts,
    format_endpoint,
    parse_endpoint,
    parse_nproc,
    plan_job,
    target_args,
    torchrun_args,
)
from sshrun.redact import Redactor, is_secret_name, redact_env
from sshrun.sanitize import sanitize, shown_plain
from sshrun.sanitize import shown as shell_word
from sshrun.selection import apply_filters, slurm_hosts
from sshrun.supervisor import Failure, Outcome, Supervisor
from sshrun.transport import HOST_KEY_POLICIES, HostKeyPolicy, SSHSettings, check_ssh_files


@dataclass(frozen=True)
class Invocation:
    """Everything the command line asked for, checked."""

    config: JobConfig
    ssh: SSHSettings
    local_cluster: int | None
    dry_run: bool
    colour: bool | None
    job_id: str
    secret_values: frozenset[str] = frozenset()


def _positive_float(value: str, high: float = values.MAX_SECONDS) -> float:
    """A duration flag: the same check as the YAML file's (sshrun.values.seconds)."""
    try:
        return values.seconds(value, high)
    except values.BadValue as exc:
        raise argparse.ArgumentTypeError(
            f"expected {exc.reason}, got {values.clip(value)}") from None


def _backoff(value: str) -> float:
    return _positive_float(value, values.MAX_BACKOFF)


def build_parser(mode: str) -> argparse.ArgumentParser:
    prog = "sshrun exec" if mode == "exec" else "sshrun"
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Run a PyTorch job (or, with exec, any command) on every node over SSH.",
        allow_abbrev=False,
    )
    cluster = parser.add_argument_group("cluster (one of)")
    pick = cluster.add_mutually_exclusive_group()
    pick.add_argument("-H", "--hostfile", metavar="PATH", help="hostfile, one host per line")
    pick.add_argument("--hosts", metavar="LIST", help="inline hosts: node1:4,gpu[01-08]:8")
    pick.add_argument("--local-cluster", metavar="N",
                      help="run on N embedded SSH nodes on 127.0.0.2, 127.0.0.3, ...")
    pick.add_argument("-c", "--config", metavar="PATH",
                      help="YAML cluster config (docs/configuration.md)")
    cluster.add_argument("--include", metavar="HOST[:SLOTS]@...",
                         help="only these hosts (and local slots), DeepSpeed syntax")
    cluster.add_argument("--exclude", metavar="HOST[:SLOTS]@...",
                         help="all hosts but these (or these local slots)")
    if mode == "run":
        tr = parser.add_argument_group("torchrun (same names and meanings)")
        tr.add_argument("--nproc-per-node", "--nproc_per_node", metavar="N|auto|gpu|cpu")
        tr.add_argument("--nnodes", metavar="N|MIN:MAX",
                        help="use the first N hosts; MIN:MAX: up to MAX, leaving out hosts "
                             "that fail, while at least MIN remain")
        tr.add_argument("--rdzv-backend", "--rdzv_backend", default=None,
                        choices=("static", "c10d"))
        tr.add_argument("--rdzv-endpoint", "--rdzv_endpoint", metavar="HOST[:PORT]")
        tr.add_argument("--rdzv-id", "--rdzv_id", metavar="ID")
        tr.add_argument("--rdzv-conf", "--rdzv_conf", metavar="K=V,...")
        tr.add_argument("-m", "--module", action="store_true", help="SCRIPT is a module name")
        tr.add_argument("--no-python", "--no_python", action="store_true",
                        help="SCRIPT is an executable, not a Python file")
    nodes = parser.add_argument_group("on the nodes")
    nodes.add_argument("--python", metavar="PATH",
                       help="interpreter on the nodes (default python3; the embedded "
                            "cluster uses this one)")
    nodes.add_argument("--workdir", metavar="DIR", help="working directory (default: here)")
    nodes.add_argument("-x", "--env", action="append", default=[], metavar="NAME[=VALUE]",
                       help="forward or set an environment variable; NAME_* forwards a pattern")
    nodes.add_argument("--env-file", action="append", default=[], metavar="PATH",
                       help="NAME=VALUE lines to set on the nodes")
    nodes.add_argument("--secret", action="append", default=[], metavar="NAME",
                       help="a variable whose value is never printed or written "
                            "(forwarded from here unless set otherwise)")
    ssh = parser.add_argument_group("ssh")
    ssh.add_argument("--ssh-config", metavar="PATH", help="OpenSSH client config")
    ssh.add_argument("--host-key-policy", default=None, choices=HOST_KEY_POLICIES,
                     help="default strict")
    ssh.add_argument("--connect-timeout", type=_positive_float, default=None,
                     metavar="SECONDS")
    ssh.add_argument("--max-handshakes", default="32", metavar="N",
                     help="SSH handshakes in flight at once")
    job = parser.add_argument_group("job")
    job.add_argument("--grace-period", type=_positive_float, default=Timeouts.grace,
                     metavar="SECONDS", help="SIGTERM to SIGKILL on the nodes")
    job.add_argument("--heartbeat-timeout", type=_positive_float,
                     default=Timeouts.heartbeat_timeout, metavar="SECONDS",
                     help="a node silent this long is lost (the job stops or restarts); "
                          "an agent whose head is silent this long tears its node down "
                          "(default 15)")
    job.add_argument("--max-restarts", "--max_restarts", metavar="N",
                     help="restart the whole cluster up to N times after a failure (default 0)")
    job.add_argument("--restart-backoff", type=_backoff, default=1.0, metavar="SECONDS",
                     help="wait before the first restart, doubled each time (default 1)")
    job.add_argument("--restart-backoff-max", type=_backoff, default=60.0,
                     metavar="SECONDS", help="longest wait between restarts (default 60)")
    job.add_argument("--no-restart-on", metavar="CODES", default=None,
                     help="exit codes that fail at once, comma separated (e.g. 2,3)")
    job.add_argument("--host-cooldown", type=_positive_float, default=60.0, metavar="SECONDS",
                     help="with --nnodes MIN:MAX, how long a host that failed is left out "
                          "(default 60)")
    job.add_argument("--dry-run", action="store_true", help="print every node's plan and exit")
    job.add_argument("--color", "--colour", choices=("auto", "always", "never"), default="auto")
    if mode == "exec":
        parser.add_argument("command", nargs=argparse.REMAINDER, metavar="-- COMMAND [ARGS...]")
    else:
        parser.add_argument("script", metavar="SCRIPT")
        parser.add_argument("script_args", nargs=argparse.REMAINDER, metavar="SCRIPT_ARGS")
    return parser


def _hosts(args: argparse.Namespace, environ: dict[str, str]) -> tuple[HostSpec, ...]:
    if args.hostfile is not None:
        return tuple(load_hostfile(args.hostfile))
    if args.hosts is not None:
        return tuple(parse_host_list(args.hosts))
    slurm = slurm_hosts(environ)
    if slurm is not None:
        nodelist = environ.get("SLURM_JOB_NODELIST") or environ.get("SLURM_NODELIST")
        print(f"sshrun: no hosts given; using the Slurm allocation {nodelist} "
              f"({len(slurm)} hosts)", file=sys.stderr)
        return slurm
    raise ConfigError(
        "no cluster given: use -H/--hostfile PATH, --hosts LIST or --local-cluster N"
    )


def parse_invocation(argv: Sequence[str], environ: dict[str, str] | None = None) -> Invocation:
    environ = dict(os.environ if environ is None else environ)
    argv = list(argv)
    mode = "run"
    if argv and argv[0] in ("run", "exec"):
        mode = argv.pop(0)
    parser = build_parser(mode)
    if not argv and mode == "run":
        # Nothing at all: the help says what to give, better than argparse's
        # "required: SCRIPT, SCRIPT_ARGS".
        parser.print_help(sys.stderr)
        raise SystemExit(errors.EXIT_USAGE)
    args = parser.parse_args(argv)
    _refuse_empty(parser, args)
    if mode == "run" and args.script in SUBCOMMANDS:
        raise ConfigError(
            f"{args.script!r} is a subcommand: put it first, as in `sshrun {args.script} "
            "[OPTIONS] ...` (to run a script of that name, write ./" + args.script + ")"
        )
    local_count = (None if args.local_cluster is None else
                   _number(args.local_cluster, "--local-cluster", 1, MAX_LOCAL_NODES,
                           " node", " nodes (one per loopback address 127.0.0.2-251)"))
    max_handshakes = _number(args.max_handshakes, "--max-handshakes", 1, 100_000)
    if mode == "exec":
        target = list(args.command)
        if target and target[0] == "--":
            target.pop(0)
        if not target:
            raise ConfigError("sshrun exec: no command given (sshrun exec [OPTIONS] -- COMMAND)")
    else:
        target = [args.script, *args.script_args]
    cf = load_cluster_yaml(args.config) if args.config is not None else None
    torch_opts = dict(cf.torchrun) if cf is not None else {}
    if local_count is not None:
        # The embedded nodes' names, so that every check below (--nnodes,
        # --include) applies to them as to any cluster, in the dry run too.
        hosts: tuple[HostSpec, ...] = local_cluster_hosts(local_count)
        hosts = apply_filters(hosts, args.include, args.exclude)
    else:
        found = cf.hosts if cf is not None else _hosts(args, environ)
        hosts = apply_filters(found, args.include, args.exclude)
    ssh_file = cf.ssh if cf is not None else SSHFileSettings()
    timeouts = Timeouts.for_liveness(
        args.heartbeat_timeout,
        connect=args.connect_timeout or ssh_file.connect_timeout or Timeouts.connect,
        grace=args.grace_period,
    )
    env_file = cf.env if cf is not None else EnvFileSettings()
    files = [entry for path in (*([env_file.file] if env_file.file else []), *args.env_file)
             for entry in load_env_file(path)]
    secrets = (*env_file.secret, *args.secret)
    forward = (*DEFAULT_FORWARD, *env_file.forward)
    # Checked as a whole (a secret must get a value somewhere), then split so
    # that each host's own env sits above the file's and below -x flags.
    everything = resolve_env(environ, forward=forward, flags=args.env, files=files,
                             set_values=env_file.set, secrets=secrets)
    flags = resolve_env(environ, forward=(), flags=args.env)
    from_flags = {name for name, _ in flags.values}
    base = resolve_env(environ, forward=forward, files=files, set_values=env_file.set,
                       secrets=[s for s in secrets if s not in from_flags])
    secret_names = frozenset(everything.secrets)
    config = JobConfig(
        hosts=hosts,
        target=tuple(target),
        mode="exec" if mode == "exec" else "torchrun",
        python=_checked(values.node_path, args.python, "--python"),
        default_python="python3" if args.local_cluster is None else sys.executable,
        workdir=_checked(values.node_path, args.workdir, "--workdir"),
        default_workdir=os.getcwd(),
        env=base.values,
        env_flags=flags.values,
        secrets=secret_names,
        timeouts=timeouts,
    )
    if mode == "run":
        def opt(flag: str | None, key: str) -> str | None:
            """A flag overrides the config file's torchrun section."""
            return flag if flag is not None else torch_opts.get(key)

        nnodes_text = opt(args.nnodes, "nnodes")
        nnodes = parse_nnodes(nnodes_text) if nnodes_text is not None else None
        if args.module and args.no_python:
            raise ConfigError("-m/--module and --no-python cannot be used together "
                              "(a module is run by Python)")
        endpoint = opt(args.rdzv_endpoint, "rdzv-endpoint")
        if endpoint is not None:
            parse_endpoint(endpoint)
        nproc = opt(args.nproc_per_node, "nproc-per-node")
        config = replace(
            config,
            nproc_per_node=parse_nproc(nproc) if nproc else None,
            rdzv_backend=opt(args.rdzv_backend, "rdzv-backend") or "static",
            rdzv_endpoint=endpoint,
            rdzv_id=_checked(values.word, opt(args.rdzv_id, "rdzv-id"), "--rdzv-id"),
            rdzv_conf=_checked(values.rdzv_conf, opt(args.rdzv_conf, "rdzv-conf"),
                               "--rdzv-conf"),
            module=args.module,
            no_python=args.no_python,
        )
        if nnodes is not None and nnodes[0] < nnodes[1]:
            low, high = nnodes
            if hosts and low > len(hosts):
                raise ConfigError(f"--nnodes {nnodes_text}: only {len(hosts)} hosts given")
            config = replace(config, membership=Membership(low, high, args.host_cooldown))
        elif nnodes is not None and hosts:
            if nnodes[0] > len(hosts):
                raise ConfigError(f"--nnodes {nnodes[0]}: only {len(hosts)} hosts given")
            config = replace(config, hosts=hosts[:nnodes[0]])
    policy_text = args.host_key_policy or ssh_file.host_key_policy or "strict"
    if policy_text not in HOST_KEY_POLICIES:
        raise ConfigError(f"host_key_policy: expected one of {', '.join(HOST_KEY_POLICIES)}")
    policy = cast(HostKeyPolicy, policy_text)
    ssh_config = args.ssh_config or ssh_file.config
    ssh = SSHSettings(
        config_paths=(ssh_config,) if ssh_config else None,
        host_key_policy=policy,
        identity_files=(ssh_file.identity_file,) if ssh_file.identity_file else None,
        jump_host=ssh_file.jump_host,
        timeouts=timeouts,
        max_handshakes=max_handshakes,
    )
    if policy == "insecure":
        print("sshrun: warning: --host-key-policy insecure: host keys are not checked, so "
              "anyone on the network path can pose as a node and see the job's secrets",
              file=sys.stderr)
    if local_count is None:
        # Once, before any connection, in the dry run as in the real run.
        check_ssh_files(config.hosts, ssh)
    restarts_text = args.max_restarts if args.max_restarts is not None else (
        torch_opts.get("max-restarts", "0"))
    max_restarts = _number(restarts_text, "--max-restarts", 0, values.MAX_RESTARTS)
    codes_text = args.no_restart_on if args.no_restart_on is not None else ""
    codes = _checked(values.exit_codes, codes_text, "--no-restart-on") or frozenset()
    config = replace(config, restarts=RestartPolicy(
        max_restarts=max_restarts, backoff=args.restart_backoff,
        backoff_max=args.restart_backoff_max, no_restart_on=codes,
    ))
    colour = {"auto": None, "always": True, "never": False}[args.color]
    # Never the user's --rdzv-id: the job id tags every process for teardown,
    # and two jobs that share a rendezvous id must not share tags.
    job_id = new_job_id()
    return Invocation(config, ssh, local_count, args.dry_run, colour, job_id,
                      secret_values(config))


SUBCOMMANDS = ("run", "exec")
# Options whose own parser already refuses '' with its usual message.
_OWN_EMPTY_CHECK = frozenset({"nnodes"})
T = TypeVar("T")


def _refuse_empty(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """An empty value is an error, never a silent default (every option, new ones too)."""
    for action in parser._actions:
        if not action.option_strings or action.dest in _OWN_EMPTY_CHECK:
            continue
        value = getattr(args, action.dest, None)
        given = value if isinstance(value, list) else [value]
        if any(isinstance(v, str) and not v.strip() for v in given):
            flag = next((o for o in action.option_strings if o.startswith("--")),
                        action.option_strings[0])
            raise ConfigError(f"{flag}: expected a value, got an empty string")


def _number(text: str, flag: str, low: int, high: int, unit: str = "",
            units: str | None = None) -> int:
    """A whole-number flag, checked as the YAML file checks its numbers."""
    try:
        return values.whole_number(text.strip(), low, high, unit)
    except values.BadValue as exc:
        reason = exc.reason
        if exc.kind == "high" and units is not None:
            reason = f"at most {high}{units}"
        raise ConfigError(f"{flag}: expected {reason}, got {values.clip(text)}") from None


def _checked(check: Callable[[str], T], text: str | None, flag: str) -> T | None:
    """``check(text)`` with its complaint worded for ``flag``; None stays None."""
    if text is None:
        return None
    try:
        return check(text)
    except values.BadValue as exc:
        if exc.kind == "option":
            # ssh and the node's ``exec`` would read it as one of their options.
            raise ConfigError(f"{flag} may not start with '-' (the node's shell would read it "
                              f"as an option), got {values.clip(text)}") from None
        if exc.index is not None:
            raise ConfigError(
                f"{flag}: unexpected character {text[exc.index]!r} at {exc.index + 1} in "
                f"{values.clip(text)}: expected {exc.reason}"
            ) from None
        raise ConfigError(f"{flag}: expected {exc.reason}, got {values.clip(text)}") from None


def secret_values(config: JobConfig) -> frozenset[str]:
    """Values never to print: of named secrets and of secret-looking names."""
    pairs = [*config.env, *config.env_flags, *(kv for h in config.hosts for kv in h.env)]
    return frozenset(v for k, v in pairs if v and is_secret_name(k, config.secrets))


def parse_nnodes(value: str) -> tuple[int, int]:
    """``N`` (fixed), or torchrun's ``MIN:MAX`` (elastic when MIN < MAX)."""
    try:
        return values.nnodes(value, MAX_HOSTS)
    except values.BadValue as exc:
        if exc.reason == "MIN <= MAX":
            raise ConfigError(f"--nnodes {value}: MIN is larger than MAX") from None
        raise ConfigError(f"--nnodes: expected {exc.reason}, got {values.clip(value)}") from None


def new_job_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(3)


def render_dry_run(plan: JobPlan) -> str:
    """Every node's plan, as the real run would start it.

    Secrets are hidden by name (``redact_env``) and by value everywhere, as
    in the real run; a value with a control character or an escape in it is
    shown as a ``$'...'`` word (``\\r``, ``\\x1b``), never raw.
    """
    config = plan.config
    redact = Redactor(secret_values(config))
    elastic = config.membership
    if elastic is not None:
        # What the first attempt runs when every host comes up.
        pool = config.hosts
        plan = plan_job(replace(config, hosts=pool[:elastic.max_nodes]), plan.job_id)
    first = plan.nodes[0]
    if config.rdzv_endpoint:
        endpoint = parse_endpoint(config.rdzv_endpoint)
    else:
        endpoint = (first.host.host, None)
    nodes = f"{len(plan.nodes)} node{'s' * (len(plan.nodes) != 1)}"
    if config.mode == "exec":
        out = [f"job {plan.job_id}: {nodes}, one command each"]
    else:
        size = plan.world_size if plan.world_size is not None else "decided at launch"
        out = [f"job {plan.job_id}: {nodes}, world size {size}",
               f"rendezvous: {config.rdzv_backend} at {format_endpoint(*endpoint)}"]
    if elastic is not None:
        out.append(
            f"elastic: {elastic.min_nodes} to {elastic.max_nodes} nodes from "
            f"{len(pool)} hosts; a host that fails is left out for {elastic.cooldown:g}s, "
            "spares fill in, each attempt renumbers the nodes that come up"
        )
    for node in plan.nodes:
        ranks = node.ranks
        if config.mode == "exec":
            out.append(f"node {node.index}: {node.host.label}")
        else:
            shown = (f"ranks {ranks.start}-{ranks.stop - 1}" if ranks is not None
                     else f"{node.nproc} processes")
            out.append(f"node {node.index}: {node.host.label} ({shown})")
        if config.mode == "torchrun":
            argv = ["torchrun", *torchrun_args(plan, node, endpoint, node.host.host),
                    *target_args(config)[1:]]
        else:
            argv = list(config.target)
        out.append(f"  python:  {shown_plain(redact(node.python))}")
        out.append(f"  workdir: {shown_plain(redact(str(node.workdir)))}")
        out.append(f"  run:     {' '.join(shell_word(redact(arg)) for arg in argv)}")
        for name, value in redact_env(node.env, config.secrets):
            out.append(f"  env:     {name}={shown_plain(redact(value))}")
    # Again over the whole text: a secret may span two arguments.
    return redact("\n".join(out) + "\n")


async def _launch(inv: Invocation) -> int:
    """The job, with the console written by threads: nothing on the event loop
    waits for the terminal or a pipe (sshrun.console)."""
    out = ConsoleOutput(sys.stdout.buffer, sys.stderr.buffer)
    interrupts = _Interrupts()
    loop = asyncio.get_running_loop()
    # One handler for the whole run, so that no Ctrl-C ever falls between
    # two phases and becomes a KeyboardInterrupt traceback.
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, interrupts)
    try:
        try:
            code = await _launch_attempts(inv, out, interrupts)
        finally:
            # The last output and the report reach a slow reader, however
            # slowly; a Ctrl-C meanwhile gives up on them.
            interrupts.pending = False
            complete = await out.finish(lambda: interrupts.pending)
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
    if not complete:
        return errors.EXIT_INTERRUPTED
    if out.stdout.closed and code == errors.EXIT_OK:
        return errors.EXIT_PIPE  # part of the output never reached its reader
    return code


async def _launch_attempts(inv: Invocation, out: ConsoleOutput, interrupts: _Interrupts) -> int:
    from sshrun import report
    from sshrun.local_cluster import local_cluster

    console = Console(file=out.text(), highlight=False, soft_wrap=True,
                      force_terminal=inv.colour, no_color=inv.colour is False)
    config, ssh = inv.config, inv.ssh
    redactor = Redactor(inv.secret_values)
    async with contextlib.AsyncExitStack() as stack:
        if inv.local_cluster is not None:
            cluster = await stack.enter_async_context(local_cluster(inv.local_cluster))
            # config.hosts already name these nodes (as --nnodes and --include chose).
            ssh = replace(ssh, config_paths=(cluster.ssh_config,),
                          known_hosts=(cluster.known_hosts,), host_key_policy="strict")
        pool = HostPool(config.hosts, config.membership) if config.membership else None
        outcomes = []
        attempt = 0
        while True:
            if interrupts.pending:
                return errors.EXIT_INTERRUPTED
            if out.stdout.closed:
                return errors.EXIT_PIPE
            hosts = config.hosts if pool is None else pool.available(time.monotonic())
            policy = config.restarts
            try:
                outcome = await _attempt(inv, replace(config, hosts=hosts), ssh, attempt,
                                         interrupts, out)
            except ConnectError as exc:
                # A node that is rebooting may answer by the next attempt; a
                # key or login problem (AuthError, HostKeyError) would not.
                if not policy.allows(attempt, errors.EXIT_SSH, "unreachable"):
                    raise
                outcome = _unreachable(exc, hosts)
            outcomes.append(outcome)
            failure = outcome.first_failure
            if (outcome.exit_code == 0 or outcome.interrupted or outcome.output_closed
                    or not policy.allows(attempt, outcome.exit_code,
                                         failure.reason if failure else None)):
                break
            delay = policy.delay(attempt)
            why = ""
            if pool is not None:
                wait = _leave_out(pool, outcome, attempt, console)
                if wait > delay:
                    delay = wait
                    why = (f"; waiting for cool-downs to end: {pool.membership.min_nodes} "
                           "nodes are needed")
            console.print(Text(
                f"sshrun: attempt {attempt} failed ({redactor(report.describe(failure))}"
                if failure
                else f"sshrun: attempt {attempt} failed (exit status {outcome.exit_code}"
            ) + Text(f"); restarting every node in {delay:.1f}s "
                     f"(restart {attempt + 1} of {policy.max_restarts}{why})", style="yellow"))
            if await _interruptible_sleep(delay, interrupts, out):
                if out.stdout.closed:
                    return errors.EXIT_PIPE
                console.print(Text("sshrun: interrupted while waiting to restart"))
                return errors.EXIT_INTERRUPTED
            attempt += 1
        report.render(outcomes[-1], console, previous=outcomes[:-1],
                      left_out=pool.history if pool is not None else (), redact=redactor)
        return outcomes[-1].exit_code


def _leave_out(pool: HostPool, outcome: Outcome, attempt: int, console: Console) -> float:
    """Elastic: the attempt's failed hosts cool down; seconds until enough are back."""
    from sshrun import report

    now = time.monotonic()
    for host, reason in outcome.left_out:
        pool.leave_out(host, attempt, reason, now, at_start=True)
    failure = outcome.first_failure
    if failure is not None:
        pool.leave_out(failure.host, attempt, report.describe(failure), now)
        console.print(Text(f"sshrun: leaving {failure.host} out for "
                           f"{pool.membership.cooldown:g}s", style="yellow"))
    return pool.wait_needed(now)


def _unreachable(exc: ConnectError, hosts: Sequence[HostSpec]) -> Outcome:
    """An attempt that could not start because a node could not be reached."""
    labels = [h.label for h in hosts]
    node = labels.index(exc.host) if exc.host in labels else 0
    failure = Failure(node, exc.host, "lost", message=f"unreachable: {exc.message}")
    return Outcome(errors.EXIT_SSH, failure, [], interrupted=False, elapsed=0.0)


class _Interrupts:
    """Ctrl-C and SIGTERM go to whatever the run is doing at the moment."""

    def __init__(self) -> None:
        self.target: Callable[[], None] | None = None
        self.pending = False

    def __call__(self) -> None:
        if self.target is not None:
            self.target()
        else:
            self.pending = True


async def _attempt(inv: Invocation, config: JobConfig, ssh: SSHSettings, attempt: int,
                   interrupts: _Interrupts, out: ConsoleOutput) -> Outcome:
    plan = plan_job(config, inv.job_id, attempt)
    printer = Printer(
        secrets=inv.secret_values,
        colour=inv.colour, host_width=max(len(n.host.label) for n in plan.nodes),
        rank_width=len(f"r{(plan.world_size or 1) - 1}"),
        launcher_label="torchrun" if config.mode == "torchrun" else "",
        stdout=out.stdout, stderr=out.stderr,
    )
    supervisor = Supervisor(plan, ssh, printer, out)
    interrupts.target = supervisor.interrupt
    out.on_stdout_closed = supervisor.stdout_closed
    if out.stdout.closed:
        supervisor.stdout_closed()
    try:
        return await supervisor.run()
    finally:
        interrupts.target = None
        out.on_stdout_closed = None


async def _interruptible_sleep(seconds: float, interrupts: _Interrupts,
                               out: ConsoleOutput) -> bool:
    """Sleep; True when Ctrl-C (or SIGTERM), or the closing of stdout, came first."""
    interrupted = asyncio.Event()
    interrupts.target = interrupted.set
    out.on_stdout_closed = interrupted.set
    try:
        async with asyncio.timeout(seconds):
            await interrupted.wait()
        return True
    except TimeoutError:
        return False
    finally:
        interrupts.target = None
        out.on_stdout_closed = None


def run(argv: Sequence[str]) -> int:
    try:
        inv = parse_invocation(argv)
        if inv.dry_run:
            sys.stdout.write(render_dry_run(plan_job(inv.config, inv.job_id)))
            sys.stdout.flush()
            return errors.EXIT_OK
        return asyncio.run(_launch(inv))
    except BrokenPipeError:
        # ``sshrun --dry-run | head``: quiet, as a classic tool killed by SIGPIPE.
        _drop_stdout()
        return errors.EXIT_PIPE
    except SshrunError as exc:
        # Last line of defence: a message may quote a node or a file.
        with contextlib.suppress(OSError):  # a closed stderr must not make a traceback
            print(f"sshrun: error: {sanitize(str(exc))}", file=sys.stderr)
        return exc.exit_code


def _drop_stdout() -> None:
    """Nobody reads stdout: what Python still holds for it must not fail at exit."""
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())


def main(argv: Sequence[str] | None = None) -> None:
    sys.exit(run(sys.argv[1:] if argv is None else argv))
