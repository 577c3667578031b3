"""torchrun's options resolved: each one's layer (flag, YAML file, ``PET_*``), then the job's.

:func:`gather` takes every option of ``sshrun.torchrun_options``' table from
the first layer that gives it, parsed by the table's parser and worded for
that layer: the option (a flag or the API's keyword), then the YAML file
(``torchrun:``, and the top-level ``log_dir``), then torchrun's ``PET_<DEST>``
variable on the head, as torchrun itself falls back to it. ``sshrun exec``
takes only ``--nnodes``, ``--max-restarts`` and ``--log-dir`` (and the
file's ``max_restarts`` and ``log_dir``), never ``PET_*``: it runs no
torchrun. A refused option fails in whichever layer gives it.

The other functions turn the gathered values into the job: the node count,
the rendezvous (``--standalone``, the legacy ``--master-addr``/
``--master-port``), how the script runs, what every node's torchrun gets
passed, and the console's and the log directory's filters
(``sshrun.output_filters``). The precedence table is sshrun.settings'.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

from sshrun import values
from sshrun.errors import ConfigError
from sshrun.frozen_dataclass import frozen_dataclass
from sshrun.hostfile import MAX_HOSTS, HostSpec
from sshrun.membership import Membership
from sshrun.output_filters import (
    ConsoleFilter,
    DuplicateFilters,
    Streams,
    local_ranks_known,
)
from sshrun.plan import JobConfig, parse_endpoint, parse_nproc
from sshrun.torchrun_options import (
    BY_DEST,
    EXEC_OPTIONS,
    OPTIONS,
    TorchrunOption,
    endpoint_text,
    passed_args,
)


@frozen_dataclass
class Given:
    """One option's value and the layer it came from, as messages name it."""

    value: Any
    where: str  # "--nnodes", "PET_NNODES", "torchrun.nnodes in c.yaml"


Gathered = dict[str, Given]


def parse_nnodes(value: str, name: str = "--nnodes") -> tuple[int, int]:
    """``N`` (fixed), or torchrun's ``MIN:MAX`` (elastic when MIN < MAX)."""
    try:
        return values.nnodes(value, MAX_HOSTS)
    except values.BadValue as exc:
        if exc.reason == "MIN <= MAX":
            raise ConfigError(f"{name} {value}: MIN is larger than MAX") from None
        raise ConfigError(f"{name}: expected {exc.reason}, got {values.clip(value)}") from None


def _parse(option: TorchrunOption, text: str, name: str) -> Any:
    if not text.strip() and option.dest != "nnodes":  # --nnodes '' says what N is
        raise ConfigError(f"{name}: expected a value, got an empty string")
    if option.dest == "nnodes":
        return parse_nnodes(text, name)
    if option.dest == "nproc_per_node":
        return parse_nproc(text, name)
    if option.dest == "rdzv_endpoint":
        return parse_endpoint(text, name)
    try:
        return option.value(text)
    except values.BadValue as exc:
        raise ConfigError(values.worded(name, text, exc)) from None


def _flag_text(value: object, name: str) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise ConfigError(f"{name}: expected a string or a number, got {type(value).__name__}")
    return value if isinstance(value, str) else repr(value) if isinstance(value, float) \
        else str(value)


def gather(flags: Mapping[str, object], yaml: Mapping[str, Any], yaml_source: str,
           environ: Mapping[str, str], mode: str) -> Gathered:
    """Every torchrun option given somewhere, from its first layer (flag > YAML > PET_*)."""
    out: Gathered = {}
    for option in OPTIONS:
        if mode == "exec" and option.dest not in EXEC_OPTIONS:
            continue
        flag = flags.get(option.dest)
        pet = environ.get(option.pet) if option.env and mode == "run" else None
        if flag is not None:
            if option.handling == "refused":
                raise ConfigError(f"{option.flag}: {option.does}")
            value = flag if option.switch else _parse(option, _flag_text(flag, option.flag),
                                                      option.flag)
            out[option.dest] = Given(value, option.flag)
        elif option.dest in yaml and (mode == "run" or option.dest != "nnodes"):
            key = "log_dir" if option.dest == "log_dir" else f"torchrun.{option.dest}"
            out[option.dest] = Given(yaml[option.dest], f"{key} in {yaml_source}")
        elif pet is not None:
            if option.handling == "refused":
                raise ConfigError(f"{option.pet} (torchrun's {option.flag}): {option.does}; "
                                  "unset it")
            out[option.dest] = Given(_parse(option, pet, option.pet), option.pet)
    return out


def _on(given: Gathered, dest: str) -> bool:
    return dest in given and bool(given[dest].value)


def grace_period(flag: float | None, given: Gathered) -> float | None:
    """``--shutdown-timeout`` is the grace period; it must agree with ``--grace-period``."""
    timeout = given.get("shutdown_timeout")
    if timeout is None:
        return flag
    if flag is not None and flag != timeout.value:
        raise ConfigError(f"{timeout.where} {timeout.value} and --grace-period {flag:g} are "
                          "the same setting (SIGTERM to SIGKILL on the nodes): give one")
    return float(timeout.value)


def select_nodes(config: JobConfig, given: Gathered, hosts: tuple[HostSpec, ...],
                 cooldown: Callable[[], float]) -> JobConfig:
    """``--nnodes``: the first N hosts, or MIN:MAX, an elastic pool (training jobs only)."""
    nnodes = given.get("nnodes")
    if nnodes is None:
        return config
    low, high = nnodes.value
    shown = f"{low}:{high}" if low != high else str(low)
    if low < high:
        if config.mode == "exec":
            raise ConfigError(f"sshrun exec {nnodes.where}: expected N, got {shown} "
                              "(MIN:MAX, an elastic pool, is for training jobs)")
        if hosts and low > len(hosts):
            raise ConfigError(f"--nnodes {shown}: only {len(hosts)} hosts given")
        return replace(config, membership=Membership(low, high, cooldown()))
    if hosts:
        if low > len(hosts):
            raise ConfigError(f"--nnodes {low}: only {len(hosts)} hosts given")
        return replace(config, hosts=hosts[:low])
    return config


def rendezvous(config: JobConfig, given: Gathered) -> JobConfig:
    """The backend, endpoint and id: ``--standalone``, ``--master-addr``/``--master-port``."""
    backend = given["rdzv_backend"].value if "rdzv_backend" in given else "static"
    endpoint = given.get("rdzv_endpoint")
    master = [given[d] for d in ("master_addr", "master_port") if d in given]
    if _on(given, "standalone"):
        for dest in ("rdzv_backend", "rdzv_endpoint", "rdzv_id", "master_addr", "master_port"):
            if dest in given:
                raise ConfigError(f"{given['standalone'].where} sets up its own rendezvous on "
                                  f"the node (c10d at a free port): leave out "
                                  f"{given[dest].where}")
        hosts = config.hosts
        if config.membership is not None:
            raise ConfigError(f"{given['standalone'].where} runs one node: --nnodes "
                              f"{config.membership.min_nodes}:{config.membership.max_nodes} "
                              "is an elastic pool of them")
        if len(hosts) > 1:
            shown = ", ".join(h.label for h in hosts[:5]) + (", ..." if len(hosts) > 5 else "")
            raise ConfigError(f"{given['standalone'].where} runs one node, but {len(hosts)} "
                              f"hosts are given ({shown}): give one host, or --nnodes 1 to "
                              "use the first")
        return replace(config, standalone=True, rdzv_backend="c10d")
    rdzv_endpoint = endpoint_text(endpoint.value) if endpoint is not None else None
    rdzv_port = None
    if master:
        # torchrun's legacy endpoint: used by the static rendezvous when no
        # --rdzv-endpoint is given, ignored (with a warning) otherwise. sshrun
        # refuses what torchrun would ignore.
        if backend != "static":
            raise ConfigError(f"{master[0].where}: only with --rdzv-backend static (torchrun "
                              f"ignores it with {backend}); give --rdzv-endpoint HOST:PORT")
        if endpoint is not None:
            raise ConfigError(f"{master[0].where} and {endpoint.where} both say where the "
                              "rendezvous is: give one")
        addr, port = given.get("master_addr"), given.get("master_port")
        if addr is not None:
            rdzv_endpoint = addr.value + (f":{port.value}" if port is not None else "")
        elif port is not None:
            rdzv_port = port.value  # the first node, at this port
    rdzv_id = given.get("rdzv_id")
    conf = given.get("rdzv_conf")
    return replace(config, rdzv_backend=backend, rdzv_endpoint=rdzv_endpoint,
                   rdzv_port=rdzv_port, rdzv_id=rdzv_id.value if rdzv_id else None,
                   rdzv_conf=conf.value if conf else None)


def torchrun_job(config: JobConfig, given: Gathered) -> JobConfig:
    """How the script runs, the processes per node, and what every torchrun is passed."""
    run_path, module, no_python = (_on(given, d) for d in ("run_path", "module", "no_python"))
    if run_path:
        # torchrun: --run-path wins over -m and --no-python (runpy.run_path of the script).
        module = no_python = False
    elif module and no_python:
        raise ConfigError("-m/--module and --no-python cannot be used together "
                          "(a module is run by Python)")
    nproc = given.get("nproc_per_node")
    interval = given.get("monitor_interval")
    passed = {d: g.value for d, g in given.items() if BY_DEST[d].handling == "passed"}
    return replace(
        config, module=module, no_python=no_python,
        nproc_per_node=nproc.value if nproc is not None else None,
        monitor_interval=BY_DEST["monitor_interval"].fmt(interval.value) if interval
        else config.monitor_interval,
        torchrun_extra=passed_args(passed),
    )


def output_filters(config: JobConfig, given: Gathered,
                   log_dir: str | None) -> tuple[ConsoleFilter, DuplicateFilters]:
    """``--redirects``, ``--tee``, ``--local-ranks-filter`` and the duplicate filters."""
    for dest in ("redirects", "tee", "duplicate_stdout_filters", "duplicate_stderr_filters"):
        found = given.get(dest)
        if found is not None and log_dir is None and found.value not in (Streams(), ()):
            raise ConfigError(f"{found.where}: sshrun keeps the ranks' logs on the head, in "
                              "--log-dir DIR: give it")
    ranks = given.get("local_ranks_filter")
    console = ConsoleFilter(
        local_ranks=ranks.value if ranks is not None else None,
        redirects=given["redirects"].value if "redirects" in given else Streams(),
        tee=given["tee"].value if "tee" in given else Streams(),
    )
    if console.needs_local_ranks and not local_ranks_known(config):
        what = ranks.where if ranks is not None else "--redirects/--tee LOCAL_RANK:..."
        raise ConfigError(
            f"{what}: sshrun tells local ranks apart by their global rank, which needs a "
            "numeric --nproc-per-node (or slots), the same on every node unless the "
            "rendezvous is static and --nnodes is not a range")
    duplicate = DuplicateFilters(
        stdout=given["duplicate_stdout_filters"].value if "duplicate_stdout_filters" in given
        else (),
        stderr=given["duplicate_stderr_filters"].value if "duplicate_stderr_filters" in given
        else (),
    )
    return console, duplicate
