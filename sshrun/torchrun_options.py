"""Every option of torchrun (torch 2.13's ``torch.distributed.run``), and what sshrun does with it.

One table, read by every door: the command line's argparse (``sshrun.cli``),
the resolver (``sshrun.settings``, ``sshrun.torchrun_settings``), the YAML
file's ``torchrun:`` section (``sshrun.yaml_torchrun``) and torchrun's
``PET_*`` environment fallbacks. Each option has its torchrun spellings, the
parser of its value (text in, a typed value out, or
:class:`sshrun.values.BadValue`), and one of four ways sshrun handles it:

``sshrun``
    sshrun does it, with torchrun's meaning, for the whole cluster: the node
    count and rendezvous, restarts, ``--standalone``, how the script is run
    (``-m``, ``--no-python``, ``--run-path``).
``passed``
    passed on, as given, to every node's torchrun.
``mapped``
    onto one of sshrun's own settings: ``--log-dir`` is the head's log
    directory; ``--redirects``, ``--tee``, ``--local-ranks-filter`` and the
    duplicate filters are the console's and the log directory's
    (``sshrun.output_filters``); ``--master-addr``/``--master-port`` the
    static rendezvous endpoint; ``--shutdown-timeout`` the grace period.
``refused``
    refused with one line that says what sshrun does instead.

``PET_<DEST>`` is torchrun's fallback for every option it declares with its
``env``/``check_env`` actions (all but ``--logs-specs`` and
``--numa-binding``); sshrun reads the same variables, below the flag and the
YAML file. tests/test_torchrun_options.py walks torch's own parser and checks
that this table has every option in both spellings.

Pure: no I/O, and torch is never imported (the head does not need it).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, Literal

from sshrun import output_filters, rendezvous, values
from sshrun.frozen_dataclass import frozen_dataclass
from sshrun.hostfile import MAX_HOSTS, MAX_SLOTS

Handling = Literal["sshrun", "passed", "mapped", "refused"]
Parser = Callable[[str], Any]

# The rendezvous backends: sshrun.rendezvous has the table, and what each needs.
RDZV_BACKENDS: tuple[str, ...] = rendezvous.NAMES
START_METHODS = ("spawn", "fork", "forkserver")
EVENT_LOG_HANDLERS = ("console", "dynamic_rendezvous", "null")  # torch 2.13's registry
NUMA_BINDINGS = ("node", "socket", "exclusive", "core-complex")
_SIGNAL = re.compile(r"SIG[A-Z][A-Z0-9]*")


def choice(allowed: tuple[str, ...]) -> Parser:
    def parse(text: str) -> str:
        if text not in allowed:
            raise values.BadValue(f"one of {', '.join(allowed)}")
        return text
    return parse


def _nnodes(text: str) -> tuple[int, int]:
    return values.nnodes(text, MAX_HOSTS)


def _nproc(text: str) -> str:
    return values.nproc(text, MAX_SLOTS)


def _restarts(text: str) -> int:
    return values.whole_number(text, 0, values.MAX_RESTARTS)


def _port(text: str) -> int:
    return values.whole_number(text, 1, values.MAX_PORT)


def _whole_seconds(text: str) -> int:
    return values.whole_number(text, 1, int(values.MAX_SECONDS))


def _text(text: str) -> str:
    if not text:
        raise values.BadValue("a value, got nothing", "empty")
    return text


def _address(text: str) -> str:
    """``--master-addr``: a host name or address, ``[v6addr]`` in brackets, no port."""
    try:
        _, port = values.endpoint(text)
    except values.BadValue:
        port = 0  # not a host either
    if port is not None:
        raise values.BadValue("a host name or address ([v6addr] in brackets), without a port "
                              "(that is --master-port)")
    return text


def _signals(text: str) -> str:
    names = [name.strip() for name in text.split(",")]
    if not all(_SIGNAL.fullmatch(name) for name in names):
        raise values.BadValue("signal names, comma separated (SIGTERM,SIGUSR1)")
    return ",".join(names)


def _float_text(value: object) -> str:
    return repr(value)


def endpoint_text(endpoint: tuple[str, int | None]) -> str:
    """A parsed endpoint as torchrun's command line takes it (``[v6addr]:port``)."""
    host, port = endpoint
    shown = f"[{host}]" if ":" in host else host
    return shown if port is None else f"{shown}:{port}"


@frozen_dataclass
class TorchrunOption:
    """One torchrun option: its spellings, its value, and what sshrun does with it."""

    dest: str  # torchrun's dest: the Options field, the YAML key, PET_<DEST>
    flags: tuple[str, ...]  # torchrun's spellings, dashes first
    handling: Handling
    parse: Parser | None  # None: a switch (no value)
    does: str  # what sshrun does with it, one line (the docs' table, --help)
    metavar: str | None = None
    choices: tuple[str, ...] | None = None
    env: bool = True  # torchrun reads PET_<DEST> for it
    modes: tuple[str, ...] = ("run",)  # the subcommands that take it
    fmt: Callable[[Any], str] = str  # a parsed value as torchrun's command line takes it

    @property
    def flag(self) -> str:
        """The name messages give it: its first long spelling."""
        return next(f for f in self.flags if f.startswith("--"))

    @property
    def pet(self) -> str:
        return f"PET_{self.dest.upper()}"

    @property
    def switch(self) -> bool:
        return self.parse is None

    def value(self, text: str) -> Any:
        """``text`` parsed: a switch's as on/off (torchrun's ``PET_*`` reading), or BadValue."""
        return values.switch(text) if self.parse is None else self.parse(text)


def _option(dest: str, handling: Handling, parse: Parser | None, does: str,
            short: str | None = None, underscore: bool = True, **more: Any) -> TorchrunOption:
    dashes = "--" + dest.replace("_", "-")
    flags = (*((short,) if short else ()), dashes,
             *((f"--{dest}",) if underscore and "_" in dest else ()))
    if "choices" in more and parse is None:
        parse = choice(more["choices"])
    return TorchrunOption(dest, flags, handling, parse, does, **more)


# In torchrun's own order (``torchrun --help``).
OPTIONS: tuple[TorchrunOption, ...] = (
    _option("nnodes", "sshrun", _nnodes,
            "N: the first N hosts; MIN:MAX: an elastic pool of the hosts (sshrun exec: N only)",
            metavar="N|MIN:MAX", modes=("run", "exec", "check")),
    _option("nproc_per_node", "sshrun", _nproc,
            "processes on every node (default: the host's slots, else 1)",
            metavar="N|auto|cpu|gpu|xpu", modes=("run", "check")),
    _option("rdzv_backend", "sshrun", None, "the rendezvous (default static: ranks in host order)",
            choices=RDZV_BACKENDS, modes=("run", "check")),
    _option("rdzv_endpoint", "sshrun", values.endpoint,
            "where the rendezvous is (default: the first node, at a port free there)",
            metavar="HOST[:PORT]", fmt=endpoint_text, modes=("run", "check")),
    _option("rdzv_id", "sshrun", values.word,
            "the rendezvous id (default: the job id; each restart adds .N)", metavar="ID",
            modes=("run", "check")),
    _option("rdzv_conf", "sshrun", values.rdzv_conf,
            "passed to every node's torchrun (checked here: KEY=VALUE,...)",
            metavar="KEY=VALUE,...", modes=("run", "check")),
    _option("standalone", "sshrun", None,
            "one node with its own rendezvous: sshrun runs it on the one host given (or the "
            "first, with --nnodes 1)", underscore=False, modes=("run", "check")),
    _option("max_restarts", "sshrun", _restarts,
            "restarts of the whole cluster by sshrun (torchrun itself gets 0)", metavar="N",
            modes=("run", "exec")),
    _option("monitor_interval", "passed", values.seconds,
            "passed to every node's torchrun (default 0.1)", metavar="SECONDS", fmt=_float_text),
    _option("start_method", "passed", None,
            "passed to every node's torchrun (which uses it for function entrypoints only; "
            "sshrun's is a program)", choices=START_METHODS),
    _option("event_log_handler", "passed", None,
            "passed to every node's torchrun (its events go to torchrun's output, "
            "launcher.log in the log directory)", choices=EVENT_LOG_HANDLERS),
    _option("role", "passed", values.word, "passed to every node's torchrun (ROLE_NAME)",
            metavar="ROLE", underscore=False),
    _option("module", "sshrun", None, "SCRIPT is a module, run as python -m runs it",
            short="-m", underscore=False),
    _option("no_python", "sshrun", None, "SCRIPT is a program, run without Python"),
    _option("run_path", "sshrun", None,
            "SCRIPT is run with runpy.run_path, as sshrun runs any script; as in torchrun it "
            "wins over -m and --no-python"),
    _option("log_dir", "mapped", _text,
            "sshrun's log directory on the head (every rank's lines, events, report), not "
            "torchrun's on the nodes", metavar="DIR", modes=("run", "exec")),
    _option("redirects", "mapped", output_filters.parse_streams,
            "these streams (1 out, 2 err, 3 both; or LOCAL_RANK:STREAMS,...) reach only the "
            "log directory, not the console; needs --log-dir", short="-r",
            metavar="STREAMS"),
    _option("tee", "mapped", output_filters.parse_streams,
            "these streams reach the console and the log directory, even where --redirects "
            "names them; needs --log-dir", short="-t", metavar="STREAMS"),
    _option("local_ranks_filter", "mapped", output_filters.parse_local_ranks,
            "only these local ranks, on every node, reach the console (every rank still "
            "reaches the log directory)", metavar="RANKS", fmt=output_filters.format_local_ranks),
    _option("duplicate_stdout_filters", "mapped", output_filters.parse_filters,
            "the ranks' stdout lines holding any of these also go to "
            "attempt-N/HOST/filtered_stdout.log in the log directory; needs --log-dir",
            metavar="TEXT,...", fmt=output_filters.format_filters),
    _option("duplicate_stderr_filters", "mapped", output_filters.parse_filters,
            "as --duplicate-stdout-filters, for stderr (filtered_stderr.log)",
            metavar="TEXT,...", fmt=output_filters.format_filters),
    _option("node_rank", "refused", _text,
            "sshrun assigns node ranks in host order (the first host is node 0): order the "
            "hosts instead", metavar="N"),
    _option("master_addr", "mapped", _address,
            "with the static rendezvous, where it is: the same as --rdzv-endpoint "
            "ADDR[:--master-port]", metavar="ADDR", modes=("run", "check")),
    _option("master_port", "mapped", _port,
            "with the static rendezvous, its port (on --master-addr, else the first node)",
            metavar="PORT", modes=("run", "check")),
    _option("local_addr", "refused", _text,
            "sshrun gives every node its own address (its host as the host list names it) "
            "with --rdzv-backend c10d; one address cannot serve every node", metavar="ADDR"),
    _option("logs_specs", "passed", values.word,
            "passed to every node's torchrun (a torchrun.logs_specs entry point there)",
            metavar="NAME", env=False),
    _option("numa_binding", "passed", None,
            "passed to every node's torchrun (which needs CUDA there for it)",
            choices=NUMA_BINDINGS, env=False),
    _option("signals_to_handle", "passed", _signals,
            "passed to every node's torchrun (sshrun stops a node with SIGTERM, and sweeps "
            "what is left after the grace period)", metavar="SIG,..."),
    _option("shutdown_timeout", "mapped", _whole_seconds,
            "the grace period (--grace-period): SIGTERM to SIGKILL on the nodes, torchrun's "
            "included", metavar="SECONDS"),
    _option("virtual_local_rank", "passed", None,
            "passed to every node's torchrun: each rank sees LOCAL_RANK=0 and its own GPU as "
            "device 0"),
)

BY_DEST: dict[str, TorchrunOption] = {o.dest: o for o in OPTIONS}
BY_FLAG: dict[str, TorchrunOption] = {f: o for o in OPTIONS for f in o.flags}
PASSED = tuple(o for o in OPTIONS if o.handling == "passed")
REFUSED = tuple(o for o in OPTIONS if o.handling == "refused")
# torchrun's options that `sshrun exec` takes too; the others are refused there.
EXEC_OPTIONS = tuple(o.dest for o in OPTIONS if "exec" in o.modes)
# Those `sshrun check` takes: what decides the nodes and the rendezvous it probes.
CHECK_OPTIONS = tuple(o.dest for o in OPTIONS if "check" in o.modes)


def passed_args(given: dict[str, Any]) -> tuple[str, ...]:
    """torchrun arguments for the ``passed`` options in ``given`` (dest -> parsed value)."""
    args: list[str] = []
    for option in PASSED:
        if option.dest == "monitor_interval" or option.dest not in given:
            continue  # monitor_interval takes the place of sshrun's own default
        value = given[option.dest]
        if option.switch:
            args += [option.flag] if value else []
        else:
            args += [option.flag, option.fmt(value)]
    return tuple(args)
