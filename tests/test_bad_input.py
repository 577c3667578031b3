"""Bad input at every door: one line, exit 2 (or 255 for SSH), never a traceback or a hang.

Each test here is one finding of issue 9 ("tracebacks, hangs and blow-ups on bad
input", "wrong codes and unclear messages"); the fuzz test of the whole command
line is in tests/test_cli_fuzz.py, and the findings that need a node (ssh
config, identity files, name lookup, host keys) are in tests/test_bad_input_sshd.py.
Everything here runs with ``--dry-run`` or before any connection: nothing is
contacted.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sshrun.cli import parse_invocation, run
from sshrun.cluster_yaml import parse_cluster_yaml
from sshrun.configfile import MAX_CONFIG_BYTES, read_config_text
from sshrun.envfile import parse_env_file
from sshrun.errors import ConfigError, LocationError
from sshrun.hostfile import (
    MAX_HOSTS,
    expand_hostlist,
    hostlist_size,
    parse_host_list,
    parse_hostfile,
)
from sshrun.plan import MAX_ARG_STRLEN, RestartPolicy
from sshrun.selection import slurm_hosts

REPO = Path(__file__).resolve().parent.parent
HUGE = "9" * 5000  # past Python's 4,300-digit limit on int()


def sshrun(*argv: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "sshrun", *argv], cwd=REPO,
                          capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


def one_error(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    """Run in-process; it must exit 2 with one ``sshrun: error:`` line, and return it."""
    try:
        code = run(list(argv))
    except SystemExit as exc:  # argparse's own errors: usage, then one line
        code = exc.code  # type: ignore[assignment]
        out, err = capsys.readouterr()
        assert code == 2, err
        assert out == ""
        last = err.splitlines()[-1]
        assert last.startswith(("sshrun: error: ", "sshrun exec: error: ")), err
        assert "Traceback" not in err
        return last
    out, err = capsys.readouterr()
    assert code == 2, (out, err)
    assert out == ""
    assert err.count("\n") == 1 and err.startswith("sshrun: error: "), err
    return err.rstrip("\n")


# --- numbers: inf, nan, huge, over-long --------------------------------------------------


@pytest.mark.parametrize("value", ["inf", "1e309", "nan", "-inf", "Infinity", "1_0", "1e10"])
@pytest.mark.parametrize("flag", ["--grace-period", "--heartbeat-timeout", "--connect-timeout",
                                  "--restart-backoff", "--restart-backoff-max",
                                  "--host-cooldown", "--startup-report"])
def test_durations_are_finite_and_bounded(capsys: pytest.CaptureFixture[str], flag: str,
                                          value: str) -> None:
    line = one_error(capsys, "--dry-run", "--hosts", "a", f"{flag}={value}", "t.py")
    assert f"argument {flag}: expected " in line
    assert repr(value) in line


@pytest.mark.parametrize("value", ["0", "-1"])
def test_the_startup_report_wants_a_positive_time(capsys: pytest.CaptureFixture[str],
                                                 value: str) -> None:
    line = one_error(capsys, "--dry-run", "--hosts", "a", f"--startup-report={value}", "t.py")
    assert line.startswith("sshrun: error: argument --startup-report: expected "), line


def test_the_startup_report_through_the_api_is_checked_as_the_flag_is() -> None:
    from sshrun.errors import ConfigError
    from sshrun.settings import Options, resolve

    with pytest.raises(ConfigError, match=r"^--startup-report: expected "):
        resolve(Options(hosts="a", target=("t.py",), startup_report="nan"))
    assert resolve(Options(hosts="a", target=("t.py",), startup_report=2.5)).startup_report \
        == 2.5


def test_restart_backoff_is_at_most_a_day(capsys: pytest.CaptureFixture[str]) -> None:
    line = one_error(capsys, "--dry-run", "--hosts", "a", "--restart-backoff", "86401", "t.py")
    assert "up to 86400" in line
    assert run(["--dry-run", "--hosts", "a", "--restart-backoff", "86400", "t.py"]) == 0


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--hosts", "a", "--max-restarts", HUGE], "--max-restarts: expected at most 1000000"),
        (["--hosts", "a", "--no-restart-on", f"1,{HUGE}"],
         "--no-restart-on: expected exit codes 0-255"),
        (["--hosts", "a", "--nnodes", HUGE], "--nnodes: expected N or MIN:MAX"),
        (["--hosts", "a", "--nnodes", f"1:{HUGE}"], "--nnodes: expected N or MIN:MAX"),
        (["--hosts", "a", "--nproc-per-node", HUGE], "--nproc-per-node: expected a positive"),
        (["--hosts", "a", "--rdzv-endpoint", f"h:{HUGE}"], "--rdzv-endpoint: port 9999"),
        (["--hosts", "a:4", "--include", f"a:{HUGE}"], "--include '"),
        (["--hosts", "a:4", "--exclude", f"a:0,{HUGE}"], "--exclude '"),
        (["--local-cluster", HUGE], "--local-cluster: expected at most 250 nodes"),
        (["--hosts", "a", "--max-handshakes", HUGE], "--max-handshakes: expected at most"),
    ],
)
def test_over_long_integers_are_one_line(capsys: pytest.CaptureFixture[str], argv: list[str],
                                         message: str) -> None:
    line = one_error(capsys, "--dry-run", *argv, "t.py")
    assert message in line
    assert len(line) < 400  # the value is clipped, not echoed whole


def test_slurm_ntasks_per_node_over_long() -> None:
    environ = {"SLURM_JOB_NODELIST": "gpu[01-02]", "SLURM_NTASKS_PER_NODE": HUGE}
    with pytest.raises(ConfigError, match=r"^SLURM_NTASKS_PER_NODE: expected at most 1000000"):
        slurm_hosts(environ)
    with pytest.raises(ConfigError, match="SLURM_NTASKS_PER_NODE"):
        parse_invocation(["--dry-run", "t.py"], environ=environ)


def test_yaml_numbers_share_the_bounds() -> None:
    with pytest.raises(LocationError, match="expected a number of seconds up to 1e"):
        parse_cluster_yaml("hosts: [a]\nssh: {connect_timeout: 1e10}\n", "c.yaml")
    with pytest.raises(LocationError, match="expected a number of seconds for connect_timeout"):
        parse_cluster_yaml("hosts: [a]\nssh: {connect_timeout: .inf}\n", "c.yaml")
    with pytest.raises(LocationError, match=r"expected N or MIN:MAX \(positive integers\) up"):
        parse_cluster_yaml("hosts: [a]\ntorchrun: {nnodes: 100001}\n", "c.yaml")
    with pytest.raises(LocationError, match="between 0 and 1000000"):
        parse_cluster_yaml(f"hosts: [a]\ntorchrun: {{max_restarts: {HUGE}}}\n", "c.yaml")


def test_restart_delay_never_overflows() -> None:
    policy = RestartPolicy(max_restarts=5000, backoff=1.0, backoff_max=60.0)
    assert policy.delay(1024) == 60.0
    assert policy.delay(10**6) == 60.0
    tiny = RestartPolicy(backoff=1e-300, backoff_max=5.0)
    assert tiny.delay(5000) == 5.0


# --- host names ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("hosts", "message"),
    [
        ("a..b", "no empty labels"),
        (".a", "no empty labels"),
        ("a" * 64, "at most 63 characters, got one of 64"),
        ("x." + "a" * 64 + ".y", "at most 63 characters, got one of 64"),
        (".".join(["a" * 63] * 4), "at most 253 characters, got 255"),
        ("[" + "b" * 64 + "]:2222", "at most 63 characters"),
        ("n[1-2]" + "c" * 62, "at most 63 characters, got one of 64"),
    ],
)
def test_host_labels_follow_dns_rules(hosts: str, message: str) -> None:
    with pytest.raises(LocationError, match=message):
        parse_host_list(hosts)
    with pytest.raises(LocationError, match=message):
        parse_hostfile(hosts + "\n", "hosts.txt")
    with pytest.raises(LocationError, match=message):
        parse_cluster_yaml(f"hosts: ['{hosts}']\n", "c.yaml")


def test_valid_dns_names_and_ip_literals_pass() -> None:
    names = [h.host for h in parse_host_list(
        f"{'a' * 63}.example.org,gpu01.,10.0.0.1,[::1]:2222,[fe80::1]")]
    assert names == [f"{'a' * 63}.example.org", "gpu01.", "10.0.0.1", "::1", "fe80::1"]


def test_yaml_jump_host_labels_checked() -> None:
    with pytest.raises(LocationError, match="expected jump_host"):
        parse_cluster_yaml("hosts: [a]\nssh: {jump_host: 'bastion..x'}\n", "c.yaml")


# --- files: only regular ones, bounded ---------------------------------------------------


@pytest.fixture
def fifo(tmp_path: Path) -> Path:
    path = tmp_path / "fifo"
    os.mkfifo(path)
    return path


@pytest.mark.parametrize(
    ("argv", "kind"),
    [
        (["-H", "{path}", "t.py"], "hostfile"),
        (["--hosts", "a", "--env-file", "{path}", "t.py"], "env file"),
        (["-c", "{path}", "t.py"], "cluster config"),
        (["--hosts", "a", "--ssh-config", "{path}", "t.py"], "ssh config"),
    ],
)
@pytest.mark.parametrize("which", ["fifo", "/dev/zero"])
def test_fifo_and_devices_are_refused_without_blocking(fifo: Path, argv: list[str], kind: str,
                                                       which: str) -> None:
    path = str(fifo) if which == "fifo" else which
    started = time.monotonic()
    result = sshrun("--dry-run", *[a.replace("{path}", path) for a in argv], timeout=30)
    assert time.monotonic() - started < 30
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    what = "a FIFO" if which == "fifo" else "a character device"
    assert result.stderr == f"sshrun: error: {kind} is not a regular file ({what}): {path}; " \
                            "give the path of a file\n"


def test_files_over_the_size_cap_are_refused(tmp_path: Path) -> None:
    big = tmp_path / "hosts"
    with big.open("wb") as f:
        f.truncate(MAX_CONFIG_BYTES + 1)  # sparse: no 16 MiB written
    with pytest.raises(ConfigError, match="larger than the limit of 16 MiB"):
        read_config_text(big, "hostfile")
    exact = tmp_path / "ok"
    exact.write_bytes(b"a\n" * 10)
    assert read_config_text(exact, "hostfile") == "a\n" * 10


# --- counts checked before anything expands ----------------------------------------------


def test_include_with_many_ranges_is_refused_before_expanding(
        capsys: pytest.CaptureFixture[str]) -> None:
    flag = "@".join(f"h{k}x[1-99999]" for k in range(80))
    assert len(flag) < 1200
    started = time.monotonic()
    line = one_error(capsys, "--dry-run", "--hosts", "a", "--include", flag, "t.py")
    assert time.monotonic() - started < 5
    assert f"names more than the limit of {MAX_HOSTS} hosts" in line


def test_hostlist_size_without_building() -> None:
    assert hostlist_size("n[1-3]x[01-02,7]") == len(expand_hostlist("n[1-3]x[01-02,7]")) == 9
    assert hostlist_size("n" + "[0-999999999999999999]" * 300) > MAX_HOSTS
    with pytest.raises(ValueError, match="more than 10\\*\\*36 hosts"):
        expand_hostlist("n" + "[0-999999999999999999]" * 300)


def test_local_cluster_is_bounded_before_building_hosts(
        capsys: pytest.CaptureFixture[str]) -> None:
    started = time.monotonic()
    line = one_error(capsys, "--dry-run", "--local-cluster", "10000000", "t.py")
    assert time.monotonic() - started < 5
    assert "--local-cluster: expected at most 250 nodes" in line


# --- the dry run checks what the real run checks -----------------------------------------


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--local-cluster", "300"], "--local-cluster: expected at most 250 nodes"),
        (["--local-cluster", "2", "--nnodes", "3:5"], "--nnodes 3:5: only 2 hosts given"),
        (["--local-cluster", "2", "--nnodes", "3"], "--nnodes 3: only 2 hosts given"),
        (["--hosts", "a", "-m", "--no-python"], "-m/--module and --no-python cannot be used"),
    ],
)
def test_dry_run_refuses_what_the_real_run_refuses(capsys: pytest.CaptureFixture[str],
                                                   argv: list[str], message: str) -> None:
    assert message in one_error(capsys, "--dry-run", *argv, "t.py")
    assert message in one_error(capsys, *argv, "t.py")


def test_local_cluster_nnodes_and_include_apply(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["--dry-run", "--local-cluster", "3", "--nnodes", "2", "t.py"]) == 0
    out = capsys.readouterr().out
    assert "node 1: node2" in out and "node3" not in out
    assert run(["--dry-run", "--local-cluster", "3", "--include", "node3", "t.py"]) == 0
    out = capsys.readouterr().out
    assert "node 0: node3" in out and "node1" not in out


# --- messages that say what to do --------------------------------------------------------


def test_subcommand_after_options_is_an_error(capsys: pytest.CaptureFixture[str]) -> None:
    line = one_error(capsys, "-H", "hosts.txt", "exec", "--", "hostname")
    assert line == ("sshrun: error: 'exec' is a subcommand: put it first, as in `sshrun exec "
                    "[OPTIONS] ...` (to run a script of that name, write ./exec)")
    assert "put it first" in one_error(capsys, "--dry-run", "--hosts", "a", "run", "t.py")


def test_no_arguments_prints_the_help() -> None:
    result = sshrun()
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.startswith("usage: sshrun ")
    assert "-H PATH, --hostfile PATH" in result.stderr  # the help, not a bare usage line
    assert "required: SCRIPT" not in result.stderr
    assert "Traceback" not in result.stderr


def test_oversized_variable_is_named_with_the_limit(tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    env_file = tmp_path / "big.env"
    env_file.write_text("SMALL=1\nBIG_BLOB=" + "v" * 1_000_000 + "\n")
    for dry in (["--dry-run"], []):
        line = one_error(capsys, *dry, "--hosts", "a", "--env-file", str(env_file), "t.py")
        assert line == (f"sshrun: error: environment variable BIG_BLOB is {1_000_010} bytes "
                        f"as NAME=value, more than Linux's limit of {MAX_ARG_STRLEN} bytes "
                        "(MAX_ARG_STRLEN) for one variable; pass large data in a file")
        assert "vvvv" not in line


def test_many_large_variables_are_refused_as_a_total(tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    env_file = tmp_path / "many.env"
    env_file.write_text("".join(f"V{k}={'x' * 120_000}\n" for k in range(10)))
    line = one_error(capsys, "--dry-run", "--hosts", "a", "--env-file", str(env_file), "t.py")
    assert "a: the environment and arguments sshrun passes are" in line
    assert "more than the limit of 1048576 bytes" in line


def test_env_file_with_cr_line_endings(tmp_path: Path) -> None:
    assert parse_env_file("A=1\rB=2\r", "x.env") == [("A", "1"), ("B", "2")]
    assert parse_env_file("A=1\r\nB=2\n", "x.env") == [("A", "1"), ("B", "2")]
    with pytest.raises(LocationError, match=r"^x\.env:2:1: "):
        parse_env_file("A=1\r2B=x\r", "x.env")


def test_insecure_policy_warns(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["--dry-run", "--hosts", "a", "--host-key-policy", "insecure", "t.py"]) == 0
    err = capsys.readouterr().err
    assert err == ("sshrun: warning: --host-key-policy insecure: host keys are not checked, so "
                   "anyone on the network path can pose as a node and see the job's secrets\n")


# --- the command line accepts what the YAML file accepts, no more ------------------------


@pytest.mark.parametrize(
    ("flag", "value", "yaml", "message"),
    [
        ("--rdzv-id", "$(x) y", "torchrun: {rdzv_id: '$(x) y'}", "unexpected character ' '"),
        ("--rdzv-id", "a\tb", "torchrun: {rdzv_id: \"a\\tb\"}", "unexpected character '\\t'"),
        ("--nproc-per-node", "99999999999", "torchrun: {nproc_per_node: 99999999999}",
         "1000000"),
        ("--nnodes", "100001", "torchrun: {nnodes: 100001}", "up to 100000"),
        ("--rdzv-conf", "a=b c", "torchrun: {rdzv_conf: 'a=b c'}", "spaces"),
        ("--workdir", "-rf", "defaults: {workdir: '-rf'}", "start with '-'"),
        ("--workdir", "/w\x1b[2J", "defaults: {workdir: \"/w\\e[2J\"}", "control character"),
        ("--connect-timeout", "1e10", "ssh: {connect_timeout: 1e10}", "up to 1e+09"),
    ],
)
def test_flags_and_yaml_refuse_the_same(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                        flag: str, value: str, yaml: str, message: str) -> None:
    line = one_error(capsys, "--dry-run", "--hosts", "a", f"{flag}={value}", "t.py")
    assert message in line
    config = tmp_path / "c.yaml"
    config.write_text(f"hosts: [a]\n{yaml}\n")
    assert message in one_error(capsys, "--dry-run", "-c", str(config), "t.py")


@pytest.mark.parametrize(
    "flag",
    ["--rdzv-id", "--rdzv-endpoint", "--rdzv-conf", "--nproc-per-node", "--workdir", "--python",
     "--ssh-config", "--hostfile", "--env-file", "--secret", "--env", "--max-restarts",
     "--no-restart-on", "--include", "--max-handshakes", "--local-cluster"],
)
def test_empty_values_are_errors_not_defaults(capsys: pytest.CaptureFixture[str],
                                              flag: str) -> None:
    cluster = [] if flag in ("--hostfile", "--local-cluster") else ["--hosts", "a"]
    line = one_error(capsys, "--dry-run", *cluster, f"{flag}=", "t.py")
    assert line == f"sshrun: error: {flag}: expected a value, got an empty string"


def test_workdir_tilde_is_kept_for_the_node(capsys: pytest.CaptureFixture[str]) -> None:
    """``~`` is the node's home, expanded by the agent there (as for the YAML workdir)."""
    assert run(["--dry-run", "--hosts", "a", "--workdir", "~/proj", "t.py"]) == 0
    assert "  workdir: ~/proj\n" in capsys.readouterr().out


def test_unresolvable_host_name_check_comes_before_lookup() -> None:
    """A name no resolver could take fails in the parser, naming it, exit 2."""
    result = sshrun("exec", "--hosts", "a" * 70 + ".invalid", "--", "true")
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("sshrun: error: --hosts:1:1: invalid host name ")


@pytest.mark.parametrize("flag", [["--log-dir", "/tmp/logs"], ["--max-restarts", "3"],
                                  ["--role", "trainer"], ["--tee", "3"], ["-m"],
                                  ["--shutdown-timeout", "5"]])
def test_check_refuses_the_options_it_would_ignore(capsys: pytest.CaptureFixture[str],
                                                   flag: list[str]) -> None:
    """sshrun check takes the job's nodes and rendezvous; a run-only option is named, not
    silently dropped (nothing is contacted: the refusal comes before any connection)."""
    line = one_error(capsys, "check", "--hosts", "127.0.0.2", *flag)
    name = "--module" if flag == ["-m"] else flag[0]
    assert line == (f"sshrun: error: {name}: an option of the job, not of sshrun check "
                    "(which checks the nodes and the rendezvous)")


def test_check_takes_the_rendezvous_options_and_refuses_node_rank_with_its_reason(
        capsys: pytest.CaptureFixture[str]) -> None:
    inv = parse_invocation(["check", "--hosts", "a,b", "--nnodes", "2", "--nproc-per-node",
                            "2", "--rdzv-backend", "c10d", "--rdzv-endpoint", "a:29400"])
    assert (inv.config.rdzv_backend, inv.config.rdzv_endpoint) == ("c10d", "a:29400")
    line = one_error(capsys, "check", "--hosts", "a,b", "--node-rank", "1")
    assert line.startswith("sshrun: error: --node-rank: sshrun assigns node ranks"), line
