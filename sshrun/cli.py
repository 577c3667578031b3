"""sshrun: run a PyTorch job on every node of a cluster over SSH, as one job.

Usage::

    sshrun [run] [OPTIONS] SCRIPT [SCRIPT_ARGS...]
    sshrun exec  [OPTIONS] -- COMMAND [ARGS...]
    sshrun check [OPTIONS]

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
``MIN:MAX`` below), ``--rdzv-backend static|c10d|etcd|etcd-v2`` (static: ranks in
hostfile order; etcd, etcd-v2: the etcd server at ``--rdzv-endpoint``, python-etcd
on every node), ``--rdzv-endpoint``, ``--rdzv-id``, ``--rdzv-conf``, ``-m/--module``,
``--no-python``, ``--run-path``, ``--standalone`` (one node, its own
rendezvous), ``--master-addr``/``--master-port`` (the static rendezvous's
endpoint), ``--log-dir`` (below); ``--role``, ``--start-method``,
``--monitor-interval`` and torchrun's other process options go on to every
node's torchrun; ``-r/--redirects``, ``-t/--tee`` and
``--local-ranks-filter`` say which ranks' streams reach the console (every
line still reaches the log directory), ``--duplicate-stdout-filters`` and
``--duplicate-stderr-filters`` copy matching lines apart in it, and
``--shutdown-timeout`` is the grace period. ``--node-rank`` and
``--local-addr`` are refused with one line saying why (sshrun assigns both).
torchrun's ``PET_*`` variables are read too, below the flags and the YAML
file. docs/configuration.md has the table of every option.

On the nodes: ``--python PATH`` (default ``python3``; it needs torch, not
sshrun), ``--workdir DIR`` (default: the current directory), ``-x NAME`` to
forward a variable from here, ``-x NAME=VALUE`` to set one, ``-x 'NCCL_*'``
for every variable matching a pattern, ``--env-file PATH`` for a dotenv file,
``--secret NAME`` for a variable whose value sshrun never prints or writes. A
documented allow-list of torch, NCCL and CUDA variables is forwarded by
default. The node's login environment is the base, as with plain ssh.
Arguments, values and secrets travel over the SSH channel, never through a
remote shell or a command line.

Code sync (docs/sync.md): ``--sync [DIR]`` mirrors DIR (default: here) to
each node's working directory (``--workdir`` or each host's ``workdir``,
required) before the job, every node at once over its own connection: only
files whose size, mode or sha256 differ are sent, removed files go, and the
new tree is staged and swapped in with one rename, so a job never sees half
a tree. Left out: ``.git``, ``__pycache__``, ``*.pyc``, virtual environments,
the log directory, ``.gitignore``'d files and ``--sync-exclude PATTERN``;
secret-like files (``.env``, ``*.pem``, ``id_*``) unless ``--sync-include
PATTERN`` names them (sshrun says what it skipped). A symlink out of the tree
or a tree over ``--sync-max-size`` (default 1G) is refused (exit 2) before
anything is sent; a node that fails to sync fails the launch, naming it.
``--sync-bwlimit RATE`` caps the bytes a second sent to all nodes together,
in equal shares; on a terminal a bar shows the bytes, files and nodes synced.

SSH: ``--ssh-config PATH`` (default ``~/.ssh/config``: Host aliases, HostName,
User, Port, IdentityFile, ProxyJump), ``--host-key-policy strict`` (default;
also when the config says ``UserKnownHostsFile none``), ``accept-new`` or
``insecure``. Never a password prompt. Nodes behind one ProxyJump host share
one connection to it. A handshake a node's sshd drops before the login (its
MaxStartups) is tried again, with a jittered back-off, within
``--connect-timeout`` (default 15); a refused login or host key never is.
The head raises its open-file limit to fit the nodes, or says at once (exit
2) that they cannot fit.

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

Events. ``--events PATH`` writes everything that happens (nodes connecting,
agents up, ranks started and exiting, nodes lost, stops, sweeps, failed
attempts, restarts, the job's end) as one JSON object a line: ``{"v": 1,
"time": ..., "job": ID, "attempt": N, "event": NAME, ...}``; secrets never
appear. ``--events -`` writes them to stdout and the ranks' output to stderr.
A path that cannot be opened is exit 2 before anything starts; a write error
later is told once on stderr and the job goes on.

Logs. ``--log-dir DIR`` keeps the job's record on the head, in
``DIR/JOB-ID/``: ``events.jsonl`` (as ``--events``), ``report.txt`` (sshrun's
lines and the final report, as printed), ``summary.json`` (exit code, first
failure, attempts, hosts) and ``attempt-N/HOST/rank-R.log`` for every rank
(``launcher.log``: torchrun's own output, or exec's command). Each log line
is ``TIME out|err TEXT``: the node's time (ISO 8601, UTC) when its agent read
the line, and the text as the console shows it, secrets redacted. A
directory that cannot be written is exit 2 before anything starts; a write
error later is told once on stderr and the job goes on.

The console at scale. ``--ranks 0-7,12`` shows only those global ranks'
lines (torchrun's own still shown; every rank still reaches ``--log-dir``).
``--timestamps`` starts each line with the node-side time it was read
(``12:03:04.123456 node1 r3 | ...``, the head's time zone). On a terminal a
line that many ranks print is shown once at once, then, after a second, as
``node[2-64] r[8-511] | (same line, 504 more ranks)``; ``--no-fold`` shows
every copy, ``--fold`` folds in a pipe too. ``sshrun exec --gather`` prints
each distinct output once under its nodes' hostlist and exit status, as
``dshbak -c``.

Before a job. ``sshrun check`` takes the job's cluster options (the same
hosts, ``--python``, ``--workdir``, ``--rdzv-endpoint``) and starts no job:
the agent on every node at once, one row per node with its SSH round trip,
login user, interpreter and Python version, torch with its CUDA and NCCL
versions, GPUs (count, model, memory, processes already on them with owner
and command; "no GPU" without nvidia-smi), free disk in the working
directory, clock offset from the head, whether the working directory exists,
and whether the node reaches node 0 on the rendezvous address (node 0
listens, the others connect within ``--network-timeout``, default 5 s). A
verdict names what makes a node unfit: a torch or Python version unlike the
majority's, fewer GPUs than slots, no interpreter, torch or working
directory, a clock more than 1 s off, node 0 unreachable. ``--collective
[SECONDS]`` also runs a short all_reduce across the nodes (gloo; NCCL when
every node has GPUs) and reports its time and bandwidth. A table on a
terminal, plain columns when piped, ``--json`` for scripts. Exit status 0
every node fit, 1 any unfit, 2 usage error, 255 a node that cannot be
reached at all. docs/operating.md has the columns.

Start-up. On a terminal one live line on stderr says how far start-up
is (``sshrun: starting: connected 3/4, agents up 2/4, ranks started 0/8``)
and goes once every rank runs; a rank has started when it is past the
rendezvous. When start-up takes longer than ``--startup-report`` seconds
(default 30), a line names the nodes and ranks that have not started and
where each is stuck, and another whenever that changes (also when piped);
a node whose agent cannot connect to the rendezvous endpoint is named with
it (``node1 r[2-3] (cannot reach the rendezvous at 10.0.0.1:29500: timed out)``).
The final report of a failed or interrupted job says what every node did:
``sshrun: nodes: 1 failed (node2), 6 stopped (node[0-1,3-6]), 1 lost (node7)``
(docs/operating.md).

Before anything starts, every agent says which torch it has: nodes whose
torch version is not node 0's stop the launch (exit 2, one line naming them
and both versions); ``--allow-version-mismatch`` launches anyway, with a
warning.

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

This module is the command line's door only: argparse, then
:func:`sshrun.settings.resolve` (one precedence table for flags, the YAML
file, the environment and defaults), then :func:`sshrun.launcher.run_job`
(attempts, restarts, the elastic pool), whose result's exit status is the
process's. The Python API (``sshrun.launch``, docs/api.md) is the other door
onto the same two.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from sshrun import errors, values
from sshrun.errors import ConfigError, SshrunError
from sshrun.plan import Timeouts, plan_job
from sshrun.sanitize import sanitize
from sshrun.settings import (
    Invocation,
    new_job_id,
    options_from_namespace,
    parse_nnodes,
    resolve,
    secret_values,
)
from sshrun.torchrun_options import OPTIONS
from sshrun.transport import HOST_KEY_POLICIES

if TYPE_CHECKING:
    from sshrun.check_result import NodeCheck as CheckRow
    from sshrun.plan import JobPlan

__all__ = ["Invocation", "build_parser", "main", "new_job_id", "parse_invocation",
           "parse_nnodes", "render_dry_run", "run", "secret_values"]


def render_dry_run(plan: JobPlan, inv: Invocation | None = None) -> str:
    """``sshrun.dry_run.render_dry_run``, imported only when a dry run asks for it:
    every start-up would pay for it otherwise (its module and what it imports)."""
    from sshrun import dry_run

    return dry_run.render_dry_run(plan, inv)


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
    prog = {"exec": "sshrun exec", "check": "sshrun check"}.get(mode, "sshrun")
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Run a PyTorch job (or, with exec, any command) on every node over SSH."
        if mode != "check" else "Check every node before a job: one row per node, what is "
        "wrong with it, and whether the nodes reach node 0.",
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
    # check takes the job's options that decide its nodes and rendezvous; the others
    # are parsed and refused by name (parse_invocation).
    _add_torchrun_options(parser, mode)
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
                     metavar="SECONDS",
                     help="connect and log in, dropped handshakes retried (default 15)")
    ssh.add_argument("--max-handshakes", default="32", metavar="N",
                     help="SSH handshakes in flight at once")
    sync = parser.add_argument_group("code sync (docs/sync.md)")
    sync.add_argument("--sync", nargs="?", const=".", default=None, metavar="DIR",
                      help="mirror DIR (default: here) to every node's --workdir before "
                           "the job: deltas only, swapped in atomically")
    sync.add_argument("--sync-exclude", action="append", default=[], metavar="PATTERN",
                      help="leave out names or paths matching PATTERN (beyond .git, "
                           "__pycache__, *.pyc, virtualenvs, the log dir, .gitignore)")
    sync.add_argument("--sync-include", action="append", default=[], metavar="PATTERN",
                      help="send secret-like files (.env, *.pem, id_*) matching PATTERN")
    sync.add_argument("--sync-max-size", metavar="SIZE", default=None,
                      help="refuse a tree bigger than SIZE (default 1G)")
    sync.add_argument("--sync-bwlimit", metavar="RATE", default=None,
                      help="send at most RATE bytes a second (50M: 50 MiB/s), all nodes "
                           "together, in equal shares (default: no limit)")
    if mode == "check":
        # The job's --sync: the tree is checked as the run would, and the working
        # directory is the sync's to make.
        _add_check_options(parser)
        return parser
    job = parser.add_argument_group("job")
    job.add_argument("--grace-period", type=_positive_float, default=None,
                     metavar="SECONDS", help="SIGTERM to SIGKILL on the nodes (default 10)")
    job.add_argument("--heartbeat-timeout", type=_positive_float,
                     default=Timeouts.heartbeat_timeout, metavar="SECONDS",
                     help="a node silent this long is lost (the job stops or restarts); "
                          "an agent whose head is silent this long tears its node down "
                          "(default 15)")
    job.add_argument("--restart-backoff", type=_backoff, default=1.0, metavar="SECONDS",
                     help="wait before the first restart, doubled each time (default 1)")
    job.add_argument("--restart-backoff-max", type=_backoff, default=60.0,
                     metavar="SECONDS", help="longest wait between restarts (default 60)")
    job.add_argument("--no-restart-on", metavar="CODES", default=None,
                     help="exit codes that fail at once, comma separated (e.g. 2,3)")
    job.add_argument("--host-cooldown", type=_positive_float, default=60.0, metavar="SECONDS",
                     help="with --nnodes MIN:MAX, how long a host that failed is left out "
                          "(default 60)")
    job.add_argument("--allow-version-mismatch", action="store_true",
                     help="launch even when a node's torch version is not node 0's "
                          "(a warning instead of exit 2)")
    job.add_argument("--dry-run", action="store_true", help="print every node's plan and exit")
    job.add_argument("--color", "--colour", choices=("auto", "always", "never"), default="auto")
    job.add_argument("--events", metavar="PATH|-", default=None,
                     help="write every event as a JSON line to PATH (- : stdout, and the "
                          "ranks' output goes to stderr)")
    shown = parser.add_argument_group("console")
    if mode != "exec":
        shown.add_argument("--ranks", metavar="SPEC", default=None,
                           help="only these global ranks' lines on the console (0, 0-7,12); "
                                "every rank still reaches --log-dir")
        folding = shown.add_mutually_exclusive_group()
        folding.add_argument("--fold", dest="fold", action="store_const", const=True,
                             default=None,
                             help="fold a line many ranks print into its first copy and one "
                                  "count (default: on a terminal)")
        folding.add_argument("--no-fold", dest="fold", action="store_const", const=False,
                             help="every rank's copy of every line on the console")
    shown.add_argument("--startup-report", type=_positive_float, default=30.0,
                       metavar="SECONDS",
                       help="once start-up takes this long, name the nodes and ranks that "
                            "have not started, and again as that changes (default 30)")
    shown.add_argument("--timestamps", action="store_true",
                       help="each line stamped with the node-side time it was read "
                            "(HH:MM:SS.ffffff, the head's local time zone)")
    if mode == "exec":
        shown.add_argument("--gather", action="store_true",
                           help="print each distinct output once, under the hostlist of its "
                                "nodes and their exit statuses, when the command ends "
                                "(as dshbak -c)")
        parser.add_argument("command", nargs=argparse.REMAINDER, metavar="-- COMMAND [ARGS...]")
    else:
        parser.add_argument("script", metavar="SCRIPT")
        parser.add_argument("script_args", nargs=argparse.REMAINDER, metavar="SCRIPT_ARGS")
    return parser


def _add_check_options(parser: argparse.ArgumentParser) -> None:
    check = parser.add_argument_group("check")
    check.add_argument("--json", action="store_true",
                       help="one JSON object on stdout: every node's fields and verdict")
    check.add_argument("--network-timeout", type=_positive_float, default=5.0,
                       metavar="SECONDS",
                       help="how long each node has to reach node 0 (default 5)")
    check.add_argument("--collective", nargs="?", type=_positive_float, const=60.0,
                       default=None, metavar="SECONDS",
                       help="also an all_reduce across all nodes (gloo; NCCL when every node "
                            "has GPUs), bounded by SECONDS (default 60)")
    check.add_argument("--color", "--colour", choices=("auto", "always", "never"),
                       default="auto")


def _add_torchrun_options(parser: argparse.ArgumentParser, mode: str) -> None:
    """Every torchrun option, from sshrun.torchrun_options' table.

    Those the subcommand has not are still parsed (hidden from the help), so
    that sshrun refuses them with its own line rather than argparse's
    "unrecognized arguments".
    """
    group = parser.add_argument_group(
        "torchrun's options (torchrun's names and meanings; docs/configuration.md says what "
        "sshrun does with each)")
    for option in OPTIONS:
        shown = mode in option.modes and option.handling != "refused"
        help_text = option.does if shown else argparse.SUPPRESS
        if option.switch:
            group.add_argument(*option.flags, dest=option.dest, action="store_true",
                               default=None, help=help_text)
        else:
            group.add_argument(*option.flags, dest=option.dest, metavar=option.metavar,
                               choices=option.choices if shown else None, help=help_text)


def parse_invocation(argv: Sequence[str], environ: dict[str, str] | None = None) -> Invocation:
    """The command line, as the job it asks for (sshrun.settings has the precedence)."""
    argv = list(argv)
    mode = "run"
    if argv and argv[0] in ("run", "exec", "check"):
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
    if mode == "check":
        for option in OPTIONS:
            if ("check" not in option.modes and option.handling != "refused"
                    and getattr(args, option.dest) not in (None, False)):
                raise ConfigError(f"{option.flag}: an option of the job, not of sshrun check "
                                  "(which checks the nodes and the rendezvous)")
        # Resolved as the job it checks for; its probe is built per node (sshrun.check_run).
        return resolve(options_from_namespace(args, "run", ["sshrun-check"]), environ)
    if mode == "exec":
        target = list(args.command)
        if target and target[0] == "--":
            target.pop(0)
    else:
        target = [args.script, *args.script_args]
    opts = options_from_namespace(args, "exec" if mode == "exec" else "run", target)
    return resolve(opts, environ)


SUBCOMMANDS = ("run", "exec", "check")
# Options whose own parser already refuses '' with its usual message.
_OWN_EMPTY_CHECK = frozenset({"nnodes"})


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


def run(argv: Sequence[str]) -> int:
    from sshrun.launcher import Runtime, run_job

    try:
        if argv and argv[0] == "check":
            return _check(list(argv[1:]))
        inv = parse_invocation(argv)
        if inv.dry_run:
            # Not a job, so no events: the dry run shows resolving's notices itself.
            _print_notices(notice.text for notice in inv.notices)
            sys.stdout.write(render_dry_run(plan_job(inv.config, inv.job_id), inv))
            sys.stdout.flush()
            return errors.EXIT_OK
        runtime = Runtime(stdout=sys.stdout.buffer, stderr=sys.stderr.buffer,
                          handle_signals=True)
        return asyncio.run(run_job(inv, runtime)).exit_code
    except BrokenPipeError:
        # ``sshrun --dry-run | head``: quiet, as a classic tool killed by SIGPIPE.
        _drop_stdout()
        return errors.EXIT_PIPE
    except SshrunError as exc:
        # Last line of defence: a message may quote a node or a file.
        _print_notices(exc.notices)
        with contextlib.suppress(OSError):  # a closed stderr must not make a traceback
            print(f"sshrun: error: {sanitize(str(exc))}", file=sys.stderr)
        return exc.exit_code


def _check(argv: list[str]) -> int:
    """``sshrun check``: the table (or JSON) on stdout, the exit status of DESIGN.md §3."""
    from sshrun import check_result, check_table

    args = build_parser("check").parse_args(argv)
    inv = parse_invocation(["check", *argv])
    _print_notices(notice.text for notice in inv.notices)
    rows = asyncio.run(_check_nodes(inv, args))
    found = check_result.verdicts(rows)
    code = check_result.exit_code(rows, found)
    if args.json:
        sys.stdout.write(check_table.as_json(rows, found, code))
    elif inv.colour or (inv.colour is None and sys.stdout.isatty()):
        check_table.rich_table(rows, found, sys.stdout, inv.colour)
    else:
        sys.stdout.write(check_table.plain(rows, found))
    sys.stdout.flush()
    return code


async def _check_nodes(inv: Invocation, args: argparse.Namespace) -> list[CheckRow]:
    from dataclasses import replace

    from sshrun.check_run import CheckOptions, run_check
    from sshrun.local_cluster import local_cluster

    options = CheckOptions(network_timeout=args.network_timeout,
                           collective=args.collective or 0.0)
    plan = plan_job(inv.config, inv.job_id)
    if inv.local_cluster is None:
        return await run_check(plan, inv.ssh, options)
    async with local_cluster(inv.local_cluster) as cluster:
        ssh = replace(inv.ssh, config_paths=(cluster.ssh_config,),
                      known_hosts=(cluster.known_hosts,), host_key_policy="strict")
        return await run_check(plan, ssh, options)


def _print_notices(texts: Iterable[str]) -> None:
    with contextlib.suppress(OSError):
        for text in texts:
            print(f"sshrun: {text}", file=sys.stderr)


def _drop_stdout() -> None:
    """Nobody reads stdout: what Python still holds for it must not fail at exit."""
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())


def main(argv: Sequence[str] | None = None) -> None:
    sys.exit(run(sys.argv[1:] if argv is None else argv))
