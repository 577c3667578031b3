"""Every option of torchrun, as torch's own parser declares it, on sshrun's command line.

The walk takes ``torch.distributed.run.get_args_parser()``'s actions (torch
2.13 on this head) and gives each option, in every spelling, to sshrun's dry
run: it is either accepted with torchrun's meaning (seen in the node's
torchrun arguments or in what the job is) or refused with one line naming
it, exit 2; never argparse's "unrecognized arguments". The same for
torchrun's ``PET_*`` fallbacks, and for ``sshrun exec``.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from sshrun.cli import parse_invocation, run
from sshrun.dry_run import render_dry_run
from sshrun.errors import ConfigError
from sshrun.output_filters import Streams
from sshrun.plan import plan_job
from sshrun.settings import Invocation
from sshrun.torchrun_options import BY_DEST, BY_FLAG, OPTIONS, TorchrunOption

LOG_DIR = "/nonexistent/sshrun-logs"  # the dry run writes nothing


@dataclass(frozen=True)
class Sample:
    """A value to give an option, what else the job needs, and how to see its effect."""

    value: str | None  # None: a switch
    check: Callable[[Invocation, str], bool] | None  # None: refused
    extra: tuple[str, ...] = ()


def has(text: str) -> Callable[[Invocation, str], bool]:
    return lambda _, line: f" {text} " in f" {line} "


SAMPLES: dict[str, Sample] = {
    "nnodes": Sample("1", lambda inv, line: len(inv.config.hosts) == 1
                     and line.startswith("torchrun --nnodes 1 ")),
    "nproc_per_node": Sample("3", has("--nproc-per-node 3")),
    "rdzv_backend": Sample("c10d", has("--rdzv-backend c10d")),
    "rdzv_endpoint": Sample("h:1234", has("--rdzv-endpoint h:1234")),
    "rdzv_id": Sample("myid", has("--rdzv-id myid")),
    "rdzv_conf": Sample("k=v", has("--rdzv-conf k=v")),
    "standalone": Sample(None, lambda _, line: line.startswith("torchrun --standalone ")
                         and "--rdzv" not in line and "--node-rank" not in line),
    "max_restarts": Sample("3", lambda inv, line: inv.config.restarts.max_restarts == 3
                           and has("--max-restarts 0")(inv, line)),
    "monitor_interval": Sample("0.5", has("--monitor-interval 0.5")),
    "start_method": Sample("fork", has("--start-method fork")),
    "event_log_handler": Sample("console", has("--event-log-handler console")),
    "role": Sample("trainer", has("--role trainer")),
    "module": Sample(None, lambda _, line: line.endswith(" -m t.py")),
    "no_python": Sample(None, lambda _, line: line.endswith(" --no-python t.py")),
    # As torchrun: --run-path wins over -m (runpy.run_path of the script).
    "run_path": Sample(None, lambda inv, line: not inv.config.module
                       and line.endswith(" 0 t.py"), extra=("-m",)),
    "log_dir": Sample("/tmp/elsewhere", lambda inv, _: inv.log_dir == "/tmp/elsewhere"),
    "redirects": Sample("3", lambda inv, _: inv.console.redirects == Streams(3)),
    "tee": Sample("0:1", lambda inv, _: inv.console.tee == Streams(per_rank=((0, 1),))),
    "local_ranks_filter": Sample("1", lambda inv, _: inv.console.local_ranks == {1}),
    "duplicate_stdout_filters": Sample("x,,y", lambda inv, _: inv.duplicate.stdout == ("x,y",)),
    "duplicate_stderr_filters": Sample("x", lambda inv, _: inv.duplicate.stderr == ("x",)),
    "node_rank": Sample("1", None),
    "master_addr": Sample("10.0.0.9", lambda inv, _: inv.config.rdzv_endpoint == "10.0.0.9"),
    "master_port": Sample("1234", has("--rdzv-endpoint a:1234")),
    "local_addr": Sample("10.0.0.9", None),
    "logs_specs": Sample("myspecs", has("--logs-specs myspecs")),
    "numa_binding": Sample("node", has("--numa-binding node")),
    "signals_to_handle": Sample("SIGTERM,SIGUSR1", has("--signals-to-handle SIGTERM,SIGUSR1")),
    "shutdown_timeout": Sample("7", lambda inv, line: inv.config.timeouts.grace == 7.0
                               and has("--shutdown-timeout 7")(inv, line)),
    "virtual_local_rank": Sample(None, has("--virtual-local-rank")),
}


def torchrun_actions() -> list[argparse.Action]:
    """torch's own torchrun options (its parser, not sshrun's table), help left out."""
    run_module = pytest.importorskip("torch.distributed.run")
    return [a for a in run_module.get_args_parser()._actions
            if a.option_strings and not isinstance(a, argparse._HelpAction)]


def spellings() -> list[tuple[str, str]]:
    try:
        return [(a.dest, flag) for a in torchrun_actions() for flag in a.option_strings]
    except pytest.skip.Exception:
        return []


def base(dest: str) -> list[str]:
    return ["--hosts", "a:2", *(["--log-dir", LOG_DIR] if dest != "log_dir" else [])]


def first_run_line(inv: Invocation) -> str:
    text = render_dry_run(plan_job(inv.config, inv.job_id), inv)
    line = next(line for line in text.splitlines() if line.startswith("  run:     "))
    return line.removeprefix("  run:     ")


@pytest.mark.torch
def test_the_table_has_every_torchrun_option_in_every_spelling() -> None:
    actions = torchrun_actions()
    assert {a.dest for a in actions} == set(BY_DEST) == set(SAMPLES)
    for action in actions:
        option = BY_FLAG[action.option_strings[0]]
        assert set(option.flags) == set(action.option_strings), action.option_strings
        assert option.switch == (action.nargs == 0), option.dest
        assert option.env == (type(action).__name__ in ("env", "check_env")), option.dest
        if action.choices is not None:
            assert option.choices == tuple(action.choices), option.dest


@pytest.mark.torch
@pytest.mark.parametrize(("dest", "flag"), spellings())
def test_every_torchrun_option_is_accepted_or_refused_by_name(
        dest: str, flag: str, capsys: pytest.CaptureFixture[str]) -> None:
    sample = SAMPLES[dest]
    given = [flag] if sample.value is None else [flag, sample.value]
    argv = [*base(dest), *sample.extra, *given, "t.py"]
    code = run(["--dry-run", *argv])
    out, err = capsys.readouterr()
    option = BY_DEST[dest]
    if sample.check is None:
        assert code == 2
        assert out == ""
        assert err.count("\n") == 1 and err.startswith(f"sshrun: error: {option.flag}: "), err
        assert option.does in err
        return
    assert code == 0, err
    inv = parse_invocation(argv, environ={})
    line = first_run_line(inv)
    assert sample.check(inv, line), line


@pytest.mark.torch
@pytest.mark.parametrize(("dest", "flag"), spellings())
def test_exec_takes_its_torchrun_options_and_refuses_the_others_by_name(
        dest: str, flag: str, capsys: pytest.CaptureFixture[str]) -> None:
    sample = SAMPLES[dest]
    value = "1" if dest == "nnodes" else sample.value
    given = [flag] if value is None else [flag, value]
    code = run(["exec", "--dry-run", "--hosts", "a,b", *given, "--", "true"])
    out, err = capsys.readouterr()
    if "exec" in BY_DEST[dest].modes:
        assert code == 0, err
        return
    assert code == 2 and out == ""
    # One line, naming the option first (-m/--module, -r/--redirects, ...).
    assert err.count("\n") == 1 and err.startswith("sshrun: error: "), err
    assert BY_DEST[dest].flag in err.removeprefix("sshrun: error: ").split(": ")[0], err


@pytest.mark.parametrize("option", [o for o in OPTIONS if o.env], ids=lambda o: o.pet)
def test_pet_variables_are_torchruns_fallbacks(option: TorchrunOption) -> None:
    sample = SAMPLES[option.dest]
    environ = {option.pet: "1" if sample.value is None else sample.value}
    argv = [*base(option.dest), *sample.extra, "t.py"]
    if sample.check is None:
        with pytest.raises(ConfigError, match=rf"^{option.pet} \(torchrun's "):
            parse_invocation(argv, environ=environ)
        return
    inv = parse_invocation(argv, environ=environ)
    assert sample.check(inv, first_run_line(inv)), first_run_line(inv)


def test_pet_switch_zero_is_off_and_bad_values_name_the_variable() -> None:
    inv = parse_invocation(["--hosts", "a,b", "t.py"], environ={"PET_STANDALONE": "0"})
    assert not inv.config.standalone
    for name, value, message in [
        ("PET_STANDALONE", "yes", "PET_STANDALONE: expected 0 or 1 (or true or false)"),
        ("PET_NNODES", "x", "PET_NNODES: expected N or MIN:MAX"),
        ("PET_NPROC_PER_NODE", "0", "PET_NPROC_PER_NODE: expected a positive integer"),
        ("PET_ROLE", "", "PET_ROLE: expected a value, got an empty string"),
        ("PET_START_METHOD", "clone", "PET_START_METHOD: expected one of spawn, fork"),
    ]:
        with pytest.raises(ConfigError) as exc:
            parse_invocation(["--hosts", "a", "t.py"], environ={name: value})
        assert str(exc.value).startswith(message), exc.value


def test_options_without_a_pet_variable_ignore_one() -> None:
    """torchrun declares --logs-specs and --numa-binding without its env action."""
    inv = parse_invocation(["--hosts", "a", "t.py"],
                           environ={"PET_LOGS_SPECS": "x", "PET_NUMA_BINDING": "bogus"})
    assert inv.config.torchrun_extra == ()


def test_exec_reads_no_pet_variable() -> None:
    inv = parse_invocation(["exec", "--hosts", "a,b", "--", "true"],
                           environ={"PET_NNODES": "1", "PET_NODE_RANK": "3",
                                    "PET_LOG_DIR": "/x"})
    assert len(inv.config.hosts) == 2 and inv.log_dir is None


def test_exec_nnodes_takes_the_first_hosts(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["exec", "--dry-run", "--hosts", "a,b,c", "--nnodes", "2", "--", "true"]) == 0
    out = capsys.readouterr().out
    assert "node 1: b" in out and "node 2" not in out
    assert run(["exec", "--dry-run", "--hosts", "a,b", "--nnodes", "3", "--", "true"]) == 2
    assert capsys.readouterr().err == "sshrun: error: --nnodes 3: only 2 hosts given\n"
    assert run(["exec", "--dry-run", "--hosts", "a,b", "--nnodes", "1:2", "--", "true"]) == 2
    assert capsys.readouterr().err == (
        "sshrun: error: sshrun exec --nnodes: expected N, got 1:2 (MIN:MAX, an elastic pool, "
        "is for training jobs)\n")


# -- combinations, as torchrun treats them -------------------------------------------------


@pytest.mark.parametrize(("argv", "message"), [
    (["--hosts", "a,b,c", "--standalone"],
     "--standalone runs one node, but 3 hosts are given (a, b, c): give one host, or "
     "--nnodes 1 to use the first"),
    (["--hosts", "a,b", "--standalone", "--nnodes", "2"],
     "--standalone runs one node, but 2 hosts are given"),
    (["--hosts", "a", "--standalone", "--nnodes", "1:2"],
     "--standalone runs one node: --nnodes 1:2 is an elastic pool of them"),
    (["--hosts", "a", "--standalone", "--rdzv-endpoint", "h:1"],
     "--standalone sets up its own rendezvous on the node (c10d at a free port): leave out "
     "--rdzv-endpoint"),
    (["--hosts", "a", "--standalone", "--master-port", "1"],
     "--standalone sets up its own rendezvous on the node (c10d at a free port): leave out "
     "--master-port"),
    (["--hosts", "a", "--master-addr", "h", "--rdzv-backend", "c10d"],
     "--master-addr: only with --rdzv-backend static (torchrun ignores it with c10d); give "
     "--rdzv-endpoint HOST:PORT"),
    (["--hosts", "a", "--master-port", "1", "--rdzv-endpoint", "h:2"],
     "--master-port and --rdzv-endpoint both say where the rendezvous is: give one"),
    (["--hosts", "a", "--master-addr", "h:1"], "--master-addr: expected a host name or "
     "address ([v6addr] in brackets), without a port (that is --master-port)"),
    (["--hosts", "a", "--shutdown-timeout", "5", "--grace-period", "3"],
     "--shutdown-timeout 5 and --grace-period 3 are the same setting"),
    (["--hosts", "a", "-r", "3"], "--redirects: sshrun keeps the ranks' logs on the head, in "
     "--log-dir DIR: give it"),
    (["--hosts", "a", "--duplicate-stdout-filters", "x"], "--duplicate-stdout-filters: sshrun "
     "keeps the ranks' logs on the head"),
    (["--hosts", "a", "--duplicate-stdout-filters", "x,"], "--duplicate-stdout-filters: "
     "expected filters separated by ',' (',,' for a comma), none of them empty"),
    (["--hosts", "a", "--nproc-per-node", "auto", "--local-ranks-filter", "0"],
     "--local-ranks-filter: sshrun tells local ranks apart by their global rank"),
    (["--hosts", "a:2,b:3", "--rdzv-backend", "c10d", "--local-ranks-filter", "0"],
     "--local-ranks-filter: sshrun tells local ranks apart"),
    (["--hosts", "a", "--log-dir", "d", "-r", "0:4"], "--redirects: unexpected character "
     "'0' at 1 in '0:4': expected 0-3 (1 stdout, 2 stderr, 3 both) or LOCAL_RANK:0-3[,...]"),
    (["--hosts", "a", "--signals-to-handle", "TERM"], "--signals-to-handle: expected signal "
     "names, comma separated"),
    (["--hosts", "a", "-m", "--no-python"], "-m/--module and --no-python cannot be used"),
])
def test_combinations_refused_with_one_line(capsys: pytest.CaptureFixture[str],
                                            argv: list[str], message: str) -> None:
    code = run(["--dry-run", *argv, "t.py"])
    out, err = capsys.readouterr()
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith(f"sshrun: error: {message}"), err


def test_standalone_with_nnodes_1_runs_on_the_first_host(
        capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["--dry-run", "--hosts", "a:2,b:2", "--standalone", "--nnodes", "1",
                "t.py"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[1:3] == ["rendezvous: standalone (c10d on the node, at a port "
                                     "free there)", "node 0: a (ranks 0-1)"]
    assert "node 1" not in out


def test_master_addr_and_port_are_the_static_endpoint(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["--dry-run", "--hosts", "a,b", "--master-addr", "[::1]", "--master-port",
                "29501", "t.py"]) == 0
    out = capsys.readouterr().out
    assert "rendezvous: static at [::1]:29501\n" in out
    assert out.count("--rdzv-endpoint '[::1]:29501' ") == 2


def test_the_dry_run_shows_the_console_and_log_filters(
        capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["--dry-run", "--hosts", "a:2", "--log-dir", "logs", "-r", "2", "-t", "0:2",
                "--local-ranks-filter", "0,1", "--duplicate-stderr-filters", "loss,,acc",
                "t.py"]) == 0
    lines = capsys.readouterr().out.splitlines()
    job = lines[0].split()[1].rstrip(":")
    assert lines[2:5] == [
        f"log dir: logs/{job}/",
        "console: local ranks 0,1 only, --redirects 2, --tee 0:2 (every line still reaches "
        "the log dir)",
        "log dir: the stderr lines holding any of loss,,acc also go to "
        "attempt-N/HOST/filtered_stderr.log",
    ]


def test_an_options_equals_spelling_and_the_underscore_one_agree() -> None:
    one = parse_invocation(["--hosts", "a", "--master_port=1234", "--signals_to_handle",
                            "SIGTERM", "t.py"], environ={})
    two = parse_invocation(["--hosts", "a", "--master-port", "1234",
                            "--signals-to-handle=SIGTERM", "t.py"], environ={})
    assert one.config == two.config


def test_refused_options_through_the_api() -> None:
    from sshrun.api import _options

    with pytest.raises(ConfigError, match=r"^--node-rank: sshrun assigns node ranks in host "
                                          r"order"):
        _options("run", {"hosts": "a", "node_rank": 1})


def test_the_help_lists_torchruns_options(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        run(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for flag in ("--standalone", "--master-addr", "--local-ranks-filter", "-r STREAMS, "
                 "--redirects STREAMS", "--numa-binding"):
        assert flag in out
    assert "--node-rank" not in out  # refused: documented, not offered


def test_the_log_dir_flag_has_torchruns_underscore_spelling(tmp_path: Path) -> None:
    inv = parse_invocation(["--hosts", "a", "--log_dir", str(tmp_path), "t.py"], environ={})
    assert inv.log_dir == str(tmp_path)


def test_the_configuration_page_has_the_table() -> None:
    """docs/configuration.md's table of torchrun's options is this table, row for row."""
    page = (Path(__file__).resolve().parent.parent / "docs" / "configuration.md").read_text()
    for option in OPTIONS:
        flags = ", ".join(f"`{f}`" for f in option.flags)
        pet = f"`{option.pet}`" if option.env else "-"
        assert f"| {flags} | {option.handling} | {option.does} | {pet} |\n" in page, \
            option.dest
