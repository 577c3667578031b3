"""Settings: one resolver from (options, YAML file, environment, defaults) to the job.

The command line and the Python API are two doors onto this one resolver:
the CLI turns argparse's namespace into :class:`Options`, the API builds
:class:`Options` from its keywords, and :func:`resolve` applies every check
(sshrun.values) and every precedence rule, so that both doors accept and
refuse exactly the same things with the same one-line messages.

Precedence, per key: the option (a flag, or the API's keyword) beats the YAML
file (``-c``), which beats the environment, which beats the default. "-" means
that layer has no say::

    key               option                  YAML file                  default
    ----------------  ----------------------  -------------------------  --------------------
    hosts             -H, --hosts, -c,        (the file is the option)   $SLURM_JOB_NODELIST
                      --local-cluster (one)                              (or $SLURM_NODELIST)
                                                                         with slots from
                                                                         $SLURM_NTASKS_PER_NODE;
                                                                         else an error
    host selection    --include, --exclude    -                          every host
    python            --python (every host)   hosts[].python, then       python3 (this one on
                                              defaults.python            --local-cluster)
    workdir           --workdir (every host)  hosts[].workdir, then      the current directory
                                              defaults.workdir
    ssh config        --ssh-config            ssh.config                 ~/.ssh/config
    identity file     -                       hosts[].identity_file,     the ssh config's
                                              then ssh.identity_file
    jump host         -                       ssh.jump_host              the ssh config's
    host key policy   --host-key-policy       ssh.host_key_policy        strict
    connect timeout   --connect-timeout       ssh.connect_timeout        15 s
    env               -x (top layer)          env.set, hosts[].env       the head's variables
                                              (below -x)                 on the allow-list
    forwarded names   -x NAME, -x 'PAT_*'     env.forward (added)        DEFAULT_FORWARD
    env files         --env-file (after)      env.file (first)           none
    secrets           --secret (added)        env.secret (added)         none
    nproc_per_node    --nproc-per-node        torchrun.nproc_per_node    $PET_NPROC_PER_NODE;
                                                                         the host's slots, or 1
    nnodes            --nnodes (exec too)     torchrun.nnodes            $PET_NNODES; every host
    max_restarts      --max-restarts          torchrun.max_restarts      $PET_MAX_RESTARTS; 0
    rdzv_backend      --rdzv-backend          torchrun.rdzv_backend      $PET_RDZV_BACKEND;
                                                                         static
    rdzv_endpoint     --rdzv-endpoint, or     torchrun.rdzv_endpoint,    $PET_RDZV_ENDPOINT,
                      --master-addr and       or master_addr and         $PET_MASTER_*; the
                      --master-port (static)  master_port                first node
    rdzv_id           --rdzv-id               torchrun.rdzv_id           $PET_RDZV_ID; the job id
    rdzv_conf         --rdzv-conf             torchrun.rdzv_conf         $PET_RDZV_CONF; none
    other torchrun    --OPTION (the table in  torchrun.OPTION            $PET_OPTION (torchrun's
    options           sshrun.torchrun_options)                           own fallbacks); none
    grace period      --grace-period or       torchrun.shutdown_timeout  $PET_SHUTDOWN_TIMEOUT;
                      --shutdown-timeout                                 10 s
    heartbeat         --heartbeat-timeout     -                          15 s
    back-off          --restart-backoff,      -                          1 s, at most 60 s
                      --restart-backoff-max
    no_restart_on     --no-restart-on         -                          none
    host cool-down    --host-cooldown         -                          60 s
    version guard     --allow-version-mismatch -                         off: node 0's torch
                                                                         on every node
    start-up report   --startup-report        -                          30 s
    handshakes        --max-handshakes        -                          32
    colour            --color                 -                          auto (a terminal)
    event file        --events                -                          none
    log directory     --log-dir               log_dir (relative to the   $PET_LOG_DIR; none
                                              file's directory)

torchrun's ``PET_*`` variables are read on the head, by ``sshrun run`` only
(``sshrun exec`` runs no torchrun), below the flag and the file as the table
says; a switch's variable is on unless it is ``0``. A flag's switch cannot be
turned off on the command line (as in torchrun); the API's ``False`` can.
Two flags for one key (``--shutdown-timeout`` and ``--grace-period``) must
agree. sshrun.torchrun_settings does the torchrun rows.

Within the environment, layers stack (a later one wins): the allow-list and
``env.forward`` from the head, env files, ``env.set``, each host's own
``env``, then ``-x``. docs/configuration.md has the same table.

This module is longer than most (about 450 lines): a fifth of it is this
table, and :class:`Options` has a field for every long option.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import secrets
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Literal, TypeVar

from sshrun import sync_manifest, torchrun_settings, values
from sshrun.envfile import load_env_file
from sshrun.environment import DEFAULT_FORWARD, resolve_env
from sshrun.errors import ConfigError, SshrunError
from sshrun.file_settings import EnvFileSettings, SSHFileSettings
from sshrun.frozen_dataclass import frozen_dataclass
from sshrun.hostfile import HostSpec, load_hostfile, parse_host_list
from sshrun.local_cluster import MAX_NODES as MAX_LOCAL_NODES
from sshrun.local_cluster import local_cluster_hosts
from sshrun.output_filters import ConsoleFilter, DuplicateFilters, parse_ranks
from sshrun.plan import JobConfig, RestartPolicy, Timeouts
from sshrun.redact import is_secret_name
from sshrun.selection import apply_filters, slurm_hosts
from sshrun.sync_manifest import SyncTree
from sshrun.torchrun_options import EXEC_OPTIONS, OPTIONS, REFUSED
from sshrun.torchrun_settings import parse_nnodes as parse_nnodes
from sshrun.transport import HOST_KEY_POLICIES, HostKeyPolicy, SSHSettings, check_ssh_files

T = TypeVar("T")
Mode = Literal["run", "exec"]
Number = str | int | float


@frozen_dataclass
class Options:
    """What the user asked for: one field per long option of the command line.

    Values are as given (text from the command line; text, numbers or bools
    from the API); :func:`resolve` checks every one of them.
    """

    mode: Mode = "run"
    target: tuple[str, ...] = ()  # SCRIPT and its args, or exec's COMMAND and its args
    # cluster (one of)
    hostfile: str | None = None
    hosts: str | None = None
    local_cluster: Number | None = None
    config: str | None = None
    include: str | None = None
    exclude: str | None = None
    # torchrun's options (sshrun.torchrun_options: what sshrun does with each);
    # None: not given here. Switches: True, or (the API) False to override the
    # YAML file and PET_*.
    nproc_per_node: Number | None = None
    nnodes: Number | None = None
    rdzv_backend: str | None = None
    rdzv_endpoint: str | None = None
    rdzv_id: str | None = None
    rdzv_conf: str | None = None
    standalone: bool | None = None
    monitor_interval: Number | None = None
    start_method: str | None = None
    event_log_handler: str | None = None
    role: str | None = None
    module: bool | None = None
    no_python: bool | None = None
    run_path: bool | None = None
    redirects: Number | None = None
    tee: Number | None = None
    local_ranks_filter: Number | None = None
    duplicate_stdout_filters: str | None = None
    duplicate_stderr_filters: str | None = None
    node_rank: Number | None = None  # refused: sshrun assigns node ranks
    master_addr: str | None = None
    master_port: Number | None = None
    local_addr: str | None = None  # refused: every node gets its own
    logs_specs: str | None = None
    numa_binding: str | None = None
    signals_to_handle: str | None = None
    shutdown_timeout: Number | None = None
    virtual_local_rank: bool | None = None
    # on the nodes
    python: str | None = None
    workdir: str | None = None
    env: tuple[str, ...] = ()
    env_file: tuple[str, ...] = ()
    secret: tuple[str, ...] = ()
    sync: str | None = None  # --sync [DIR]: DIR on the head ("." when given bare)
    sync_exclude: tuple[str, ...] = ()
    sync_include: tuple[str, ...] = ()
    sync_max_size: str | None = None  # default sync_manifest.DEFAULT_MAX_SIZE
    sync_bwlimit: str | None = None  # bytes a second for all nodes together; default none
    # ssh
    ssh_config: str | None = None
    host_key_policy: str | None = None
    connect_timeout: Number | None = None
    max_handshakes: Number = "32"
    # job
    grace_period: Number | None = None  # default Timeouts.grace
    heartbeat_timeout: Number = Timeouts.heartbeat_timeout
    max_restarts: Number | None = None
    restart_backoff: Number = 1.0
    restart_backoff_max: Number = 60.0
    no_restart_on: str | None = None
    host_cooldown: Number = 60.0
    allow_version_mismatch: bool = False  # nodes whose torch is not node 0's still run
    startup_report: Number = 30.0  # seconds of start-up before who is missing is named
    dry_run: bool = False
    color: str = "auto"
    events: str | None = None  # PATH, or "-" for stdout
    log_dir: str | None = None  # DIR: the job's logs under DIR/<job-id>/
    # the console (sshrun.output_filters, sshrun.output)
    ranks: Number | None = None  # SPEC: only these global ranks' lines (run only)
    timestamps: bool = False  # each line stamped with its node-side time
    fold: bool | None = None  # identical lines across ranks folded; None: on a terminal (run)
    gather: bool = False  # exec: each distinct node output once, under its hostlist


# torchrun's options that `sshrun exec` has not.
RUN_ONLY = (*(o.dest for o in OPTIONS if o.dest not in EXEC_OPTIONS), "ranks", "fold")
SWITCHES = ("dry_run", "timestamps", "fold", "gather", "allow_version_mismatch",
            *(o.dest for o in OPTIONS if o.switch))
CLUSTER_OPTIONS = ("hostfile", "hosts", "local_cluster", "config")
# The flag each option is named by in messages (the long option, or its first).
FLAG = {f.name: "--" + f.name.replace("_", "-") for f in dataclasses.fields(Options)}
FLAG.update({"hostfile": "-H/--hostfile", "config": "-c/--config", "env": "-x/--env"})


@frozen_dataclass
class SettingNotice:
    """A line resolving has for the user (shown as ``sshrun: TEXT``); ``kind``:
    ``slurm_hosts`` (the hosts are Slurm's allocation) or ``insecure_host_keys``."""

    kind: str
    text: str


@frozen_dataclass
class Invocation:
    """Everything the command line (or the API) asked for, checked."""

    config: JobConfig
    ssh: SSHSettings
    local_cluster: int | None
    dry_run: bool
    colour: bool | None
    job_id: str
    secret_values: frozenset[str] = frozenset()
    events: str | None = None  # --events: a path, "-" (stdout), or None (no event file)
    log_dir: str | None = None  # --log-dir: the directory the job's own one goes in
    notices: tuple[SettingNotice, ...] = ()  # what resolving has to tell the user
    # Which ranks' streams the console shows; which lines the log dir copies apart.
    console: ConsoleFilter = dataclasses.field(default_factory=ConsoleFilter)
    duplicate: DuplicateFilters = dataclasses.field(default_factory=DuplicateFilters)
    timestamps: bool = False  # --timestamps: each console line with its node-side time
    fold: bool | None = None  # --fold/--no-fold; None: a torchrun job on a terminal folds
    gather: bool = False  # exec --gather: the nodes' output gathered (sshrun.gather)
    startup_report: float = 30.0  # --startup-report: seconds before who has not started is named


def options_from_namespace(args: argparse.Namespace, mode: Mode,
                           target: Sequence[str]) -> Options:
    """argparse's namespace as :class:`Options` (what exec lacks keeps its default)."""
    given = {f.name: getattr(args, f.name) for f in dataclasses.fields(Options)
             if f.name not in ("mode", "target") and hasattr(args, f.name)}
    for name in ("env", "env_file", "secret", "sync_exclude", "sync_include"):
        given[name] = tuple(given.get(name) or ())
    return Options(mode=mode, target=tuple(target), **given)


def _text(value: object, name: str) -> str:
    """An option's value as the command line would have given it."""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise ConfigError(f"{FLAG[name]}: expected a string or a number, got "
                          f"{type(value).__name__}")
    return value if isinstance(value, str) else repr(value) if isinstance(value, float) \
        else str(value)


def check_options(opts: Options) -> None:
    """What argparse checks for the CLI, checked again for the API's keywords."""
    for f in dataclasses.fields(Options):
        value = getattr(opts, f.name)
        if f.name in SWITCHES:
            if not isinstance(value, bool) and (value is not None
                                                or f.name in ("dry_run", "timestamps",
                                                              "gather",
                                                              "allow_version_mismatch")):
                raise ConfigError(f"{FLAG[f.name]}: expected True or False, got {value!r}")
            continue
        if f.name in ("env", "env_file", "secret", "target", "sync_exclude", "sync_include"):
            if not isinstance(value, tuple) or not all(isinstance(v, str) for v in value):
                what = "SCRIPT and its arguments" if f.name == "target" else FLAG[f.name]
                raise ConfigError(f"{what}: expected a list of strings")
            items = value if f.name != "target" else ()
        elif value is None:
            continue
        else:
            items = (_text(value, f.name),)
        # An empty value is an error, never a silent default.
        if f.name != "nnodes" and any(not v.strip() for v in items):
            raise ConfigError(f"{FLAG[f.name]}: expected a value, got an empty string")
    given = [name for name in CLUSTER_OPTIONS if getattr(opts, name) is not None]
    if len(given) > 1:
        raise ConfigError(f"{FLAG[given[0]]} and {FLAG[given[1]]} cannot be used together "
                          "(give one cluster)")
    if opts.mode not in ("run", "exec"):
        raise ConfigError(f"mode: expected 'run' or 'exec', got {opts.mode!r}")
    for option in REFUSED:
        if getattr(opts, option.dest) is not None:
            raise ConfigError(f"{FLAG[option.dest]}: {option.does}")
    if opts.mode == "run" and opts.gather:
        raise ConfigError("--gather: for sshrun exec (a command's output on every node), "
                          "not for torchrun's ranks")
    if opts.mode == "exec":
        for name in RUN_ONLY:
            if getattr(opts, name) not in (None, False):
                what = ("for torchrun's ranks" if name in ("ranks", "fold")
                        else "a torchrun option")
                raise ConfigError(f"{FLAG[name]}: {what}, not one of sshrun exec")
    choices = {"color": ("auto", "always", "never"),
               **{o.dest: o.choices for o in OPTIONS if o.choices is not None}}
    for name, allowed in choices.items():
        value = getattr(opts, name)
        if value is not None and value not in allowed:
            raise ConfigError(f"{FLAG[name]}: expected one of {', '.join(allowed)}, "
                              f"got {values.clip(str(value))}")


def resolve(opts: Options, environ: Mapping[str, str] | None = None,
            cwd: str | None = None) -> Invocation:
    """The job that ``opts`` ask for, every value checked (see the table above).

    ``environ`` is the head's environment (default ``os.environ``): forwarded
    variables and the Slurm allocation come from it. What resolving has to
    tell the user (the Slurm allocation it uses, the insecure host-key
    warning) it prints nowhere: it is kept as :class:`SettingNotice` values,
    in ``Invocation.notices`` (the launcher makes them ``notice`` events, so
    that every reader hears them), or, when resolving fails, in the error's
    ``notices``, since they may explain it (hosts taken from Slurm, then
    "--nnodes 4: only 2 hosts given").
    """
    notices: list[SettingNotice] = []
    try:
        inv = _resolve(opts, dict(os.environ if environ is None else environ), notices, cwd)
    except SshrunError as exc:
        exc.notices = (*(n.text for n in notices), *exc.notices)
        raise
    return replace(inv, notices=tuple(notices))


def _resolve(opts: Options, env: dict[str, str], notices: list[SettingNotice],
             cwd: str | None) -> Invocation:
    def say(kind: str, text: str) -> None:
        notices.append(SettingNotice(kind, text))

    check_options(opts)
    mode = opts.mode
    local_count = (None if opts.local_cluster is None else
                   _number(_text(opts.local_cluster, "local_cluster"), "--local-cluster", 1,
                           MAX_LOCAL_NODES, " node",
                           " nodes (one per loopback address 127.0.0.2-251)"))
    max_handshakes = _number(_text(opts.max_handshakes, "max_handshakes"),
                             "--max-handshakes", 1, 100_000)
    target = list(opts.target)
    if not target:
        raise ConfigError("sshrun exec: no command given (sshrun exec [OPTIONS] -- COMMAND)"
                          if mode == "exec" else "no script given (SCRIPT [SCRIPT_ARGS...])")
    cf = None
    if opts.config is not None:
        # Here, not at the top: only -c needs PyYAML and the schema (~20 ms).
        from sshrun.cluster_yaml import load_cluster_yaml

        cf = load_cluster_yaml(opts.config)
    yaml = dict(cf.torchrun_values) if cf is not None else {}
    if cf is not None and cf.log_dir is not None:
        yaml["log_dir"] = os.path.expanduser(cf.log_dir)
    given = torchrun_settings.gather(
        {o.dest: getattr(opts, o.dest) for o in OPTIONS}, yaml,
        cf.source if cf is not None else "", env, mode)
    if local_count is not None:
        # The embedded nodes' names, so that every check below (--nnodes,
        # --include) applies to them as to any cluster, in the dry run too.
        hosts: tuple[HostSpec, ...] = local_cluster_hosts(local_count)
        hosts = apply_filters(hosts, opts.include, opts.exclude)
    else:
        found = cf.hosts if cf is not None else _hosts(opts, env, say)
        hosts = apply_filters(found, opts.include, opts.exclude)
    ssh_file = cf.ssh if cf is not None else SSHFileSettings()
    connect = (_seconds(opts.connect_timeout, "connect_timeout")
               if opts.connect_timeout is not None else None)
    grace = torchrun_settings.grace_period(
        _seconds(opts.grace_period, "grace_period") if opts.grace_period is not None else None,
        given)
    timeouts = Timeouts.for_liveness(
        _seconds(opts.heartbeat_timeout, "heartbeat_timeout"),
        connect=connect or ssh_file.connect_timeout or Timeouts.connect,
        grace=grace if grace is not None else Timeouts.grace,
    )
    env_file = cf.env if cf is not None else EnvFileSettings()
    files = [entry for path in (*([env_file.file] if env_file.file else []), *opts.env_file)
             for entry in load_env_file(path)]
    secret_names_given = (*env_file.secret, *opts.secret)
    forward = (*DEFAULT_FORWARD, *env_file.forward)
    # Checked as a whole (a secret must get a value somewhere), then split so
    # that each host's own env sits above the file's and below -x flags.
    everything = resolve_env(env, forward=forward, flags=list(opts.env), files=files,
                             set_values=env_file.set, secrets=secret_names_given)
    flags = resolve_env(env, forward=(), flags=list(opts.env))
    from_flags = {name for name, _ in flags.values}
    base = resolve_env(env, forward=forward, files=files, set_values=env_file.set,
                       secrets=[s for s in secret_names_given if s not in from_flags])
    config = JobConfig(
        hosts=hosts,
        target=tuple(target),
        mode="exec" if mode == "exec" else "torchrun",
        python=_checked(values.node_path, opts.python, "--python"),
        default_python="python3" if local_count is None else sys.executable,
        workdir=_checked(values.node_path, opts.workdir, "--workdir"),
        default_workdir=cwd if cwd is not None else os.getcwd(),
        env=base.values,
        env_flags=flags.values,
        secrets=frozenset(everything.secrets),
        timeouts=timeouts,
        allow_version_mismatch=opts.allow_version_mismatch,
    )
    config = torchrun_settings.select_nodes(
        config, given, hosts, lambda: _seconds(opts.host_cooldown, "host_cooldown"))
    if mode == "run":
        config = torchrun_settings.rendezvous(config, given)
        config = torchrun_settings.torchrun_job(config, given)
    log_dir = given["log_dir"].value if "log_dir" in given else None
    sync_file = cf.sync if cf is not None else None
    if sync_file is not None:
        # The flags come on top of the file: DIR and the size replace, patterns add.
        opts = replace(opts, sync=opts.sync or sync_file.dir,
                       sync_exclude=(*sync_file.exclude, *opts.sync_exclude),
                       sync_include=(*sync_file.include, *opts.sync_include),
                       sync_max_size=opts.sync_max_size or sync_file.max_size,
                       sync_bwlimit=opts.sync_bwlimit or sync_file.bwlimit)
    if opts.sync is not None:
        rate = (sync_manifest.parse_size(opts.sync_bwlimit, "--sync-bwlimit")
                if opts.sync_bwlimit is not None else None)
        config = replace(config, sync=_sync_tree(opts, config, log_dir, say), sync_bwlimit=rate)
    elif (opts.sync_exclude or opts.sync_include or opts.sync_max_size is not None
          or opts.sync_bwlimit is not None):
        raise ConfigError("--sync-exclude, --sync-include, --sync-max-size and --sync-bwlimit "
                          "go with --sync")
    console, duplicate = torchrun_settings.output_filters(config, given, log_dir)
    if opts.ranks is not None:
        console = replace(console, ranks=_checked(parse_ranks, _text(opts.ranks, "ranks"),
                                                  "--ranks"))
    policy_text = opts.host_key_policy or ssh_file.host_key_policy or "strict"
    if policy_text not in HOST_KEY_POLICIES:
        raise ConfigError(f"host_key_policy: expected one of {', '.join(HOST_KEY_POLICIES)}")
    policy: HostKeyPolicy = policy_text
    ssh_config = opts.ssh_config or ssh_file.config
    ssh = SSHSettings(
        config_paths=(ssh_config,) if ssh_config else None,
        host_key_policy=policy,
        identity_files=(ssh_file.identity_file,) if ssh_file.identity_file else None,
        jump_host=ssh_file.jump_host,
        timeouts=timeouts,
        max_handshakes=max_handshakes,
    )
    if policy == "insecure":
        say("insecure_host_keys",
            "warning: --host-key-policy insecure: host keys are not checked, so "
            "anyone on the network path can pose as a node and see the job's secrets")
    if local_count is None:
        # Once, before any connection, in the dry run as in the real run.
        check_ssh_files(config.hosts, ssh)
    max_restarts = given["max_restarts"].value if "max_restarts" in given else 0
    codes_text = opts.no_restart_on if opts.no_restart_on is not None else ""
    codes = _checked(values.exit_codes, codes_text, "--no-restart-on") or frozenset()
    config = replace(config, restarts=RestartPolicy(
        max_restarts=max_restarts,
        backoff=_seconds(opts.restart_backoff, "restart_backoff", values.MAX_BACKOFF),
        backoff_max=_seconds(opts.restart_backoff_max, "restart_backoff_max",
                             values.MAX_BACKOFF),
        no_restart_on=codes,
    ))
    colour = {"auto": None, "always": True, "never": False}[opts.color]
    # Never the user's --rdzv-id: the job id tags every process for teardown,
    # and two jobs that share a rendezvous id must not share tags.
    return Invocation(config, ssh, local_count, opts.dry_run, colour, new_job_id(),
                      secret_values(config), events=opts.events, log_dir=log_dir,
                      console=console, duplicate=duplicate, timestamps=opts.timestamps,
                      fold=opts.fold if mode == "run" else False, gather=opts.gather,
                      startup_report=_seconds(opts.startup_report, "startup_report"))


def _sync_tree(opts: Options, config: JobConfig, log_dir: str | None,
               say: Callable[[str, str], None]) -> SyncTree:
    """``--sync``: the tree read and checked once, before any connection."""
    assert opts.sync is not None
    unset = [h.label for h in config.hosts if h.workdir is None]
    if config.workdir is None and unset:
        # The default working directory is the head's own path: on a node that
        # shares the head's filesystem, mirroring there would replace DIR itself.
        raise ConfigError(f"--sync: no destination for {unset[0]}: give --workdir DIR (the "
                          "synced copy on every node) or workdir per host in the config")
    size = (sync_manifest.parse_size(opts.sync_max_size) if opts.sync_max_size is not None
            else sync_manifest.DEFAULT_MAX_SIZE)
    tree = sync_manifest.build_manifest(sync_manifest.SyncOptions(
        source=opts.sync, excludes=opts.sync_exclude, includes=opts.sync_include,
        max_size=size, log_dir=log_dir))
    for line in sync_manifest.describe_skipped(tree):
        say("sync_skipped", line)
    return tree


def _hosts(opts: Options, environ: dict[str, str],
           say: Callable[[str, str], None]) -> tuple[HostSpec, ...]:
    if opts.hostfile is not None:
        return tuple(load_hostfile(opts.hostfile))
    if opts.hosts is not None:
        return tuple(parse_host_list(opts.hosts))
    slurm = slurm_hosts(environ)
    if slurm is not None:
        nodelist = environ.get("SLURM_JOB_NODELIST") or environ.get("SLURM_NODELIST")
        say("slurm_hosts", f"no hosts given; using the Slurm allocation {nodelist} "
            f"({len(slurm)} hosts)")
        return slurm
    raise ConfigError(
        "no cluster given: use -H/--hostfile PATH, --hosts LIST or --local-cluster N"
    )



def _seconds(value: Number, name: str, high: float = values.MAX_SECONDS) -> float:
    """A duration, with the same check as the command line's and the YAML file's."""
    text = _text(value, name)
    try:
        return values.seconds(text, high)
    except values.BadValue as exc:
        raise ConfigError(f"{FLAG[name]}: expected {exc.reason}, "
                          f"got {values.clip(text)}") from None


def _number(text: str, flag: str, low: int, high: int, unit: str = "",
            units: str | None = None) -> int:
    """A whole-number option, checked as the YAML file checks its numbers."""
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
        raise ConfigError(values.worded(flag, text, exc)) from None


def secret_values(config: JobConfig) -> frozenset[str]:
    """Values never to print: of named secrets and of secret-looking names."""
    pairs = [*config.env, *config.env_flags, *(kv for h in config.hosts for kv in h.env)]
    return frozenset(v for k, v in pairs if v and is_secret_name(k, config.secrets))


def new_job_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(3)

