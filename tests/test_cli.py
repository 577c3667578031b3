"""Tests for sshrun.cli: the command line as a user sees it, without SSH.

Most tests call ``sshrun.cli.run(argv)`` in-process and read what it printed;
a few run ``python -m sshrun`` to check the exit status and stderr of the real
program (no traceback, ever).
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from sshrun.cli import parse_invocation, render_dry_run, run
from sshrun.plan import REDACTED, plan_job

REPO = Path(__file__).resolve().parent.parent
HEADER = re.compile(r"^job (\S+): (\d+) nodes?, (?:world size (.+)|one command each)$")


@pytest.fixture(autouse=True)
def _no_forwarded_head_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Exact dry-run outputs must not depend on what this shell exports."""
    import fnmatch

    from sshrun.environment import DEFAULT_FORWARD

    for name in list(os.environ):
        if any(fnmatch.fnmatchcase(name, p) for p in DEFAULT_FORWARD):
            monkeypatch.delenv(name)


def dry_run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[str, str]:
    """Run ``sshrun [run|exec] --dry-run ...`` in-process; it must succeed.

    Returns the job id from the first line, and everything printed on stdout.
    """
    words = list(argv)
    mode = [words.pop(0)] if words and words[0] in ("run", "exec") else []
    code = run([*mode, "--dry-run", *words])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert err == ""
    match = HEADER.match(out.splitlines()[0])
    assert match, out
    return match.group(1), out


def fails(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = run(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def run_lines(out: str) -> list[str]:
    return [line.removeprefix("  run:     ") for line in out.splitlines()
            if line.startswith("  run:     ")]


def sshrun(*argv: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "sshrun", *argv], cwd=REPO,
                          capture_output=True, text=True, timeout=timeout)


# --- dry run ----------------------------------------------------------------------------


def test_dry_run_two_nodes_exact_output(capsys: pytest.CaptureFixture[str]) -> None:
    job, out = dry_run(capsys, "--hosts", "a:2,b:2", "--workdir", "/w",
                       "train.py", "--epochs", "3")
    common = (f"--nnodes 2 --nproc-per-node 2 --rdzv-backend static "
              f"--rdzv-endpoint 'a:<free port>' --rdzv-id {job} --max-restarts 0 "
              f"--monitor-interval 0.1 --shutdown-timeout 10")
    assert out == (
        f"job {job}: 2 nodes, world size 4\n"
        "rendezvous: static at a:<free port>\n"
        "node 0: a (ranks 0-1)\n"
        "  python:  python3\n"
        "  workdir: /w\n"
        f"  run:     torchrun {common} --node-rank 0 train.py --epochs 3\n"
        f"  env:     SSHRUN_JOB_ID={job}\n"
        "  env:     SSHRUN_NODE_RANK=0\n"
        "  env:     SSHRUN_NNODES=2\n"
        "  env:     SSHRUN_HOST=a\n"
        "  env:     SSHRUN_ATTEMPT=0\n"
        "node 1: b (ranks 2-3)\n"
        "  python:  python3\n"
        "  workdir: /w\n"
        f"  run:     torchrun {common} --node-rank 1 train.py --epochs 3\n"
        f"  env:     SSHRUN_JOB_ID={job}\n"
        "  env:     SSHRUN_NODE_RANK=1\n"
        "  env:     SSHRUN_NNODES=2\n"
        "  env:     SSHRUN_HOST=b\n"
        "  env:     SSHRUN_ATTEMPT=0\n"
    )


def test_dry_run_explicit_run_subcommand(capsys: pytest.CaptureFixture[str]) -> None:
    _, out = dry_run(capsys, "run", "--hosts", "a", "t.py")
    assert run_lines(out)[0].endswith(" --node-rank 0 t.py")


def test_script_arguments_pass_through_untouched(capsys: pytest.CaptureFixture[str]) -> None:
    # Everything after the script is the script's, even flags that sshrun itself has.
    script_args = ["--epochs", "3", "--hosts", "x,y", "--nnodes", "9", "-x", "A", "--",
                   "--dry-run", "it's", ""]
    _, out = dry_run(capsys, "--hosts", "a:2,b:2", "train.py", *script_args)
    assert out.splitlines()[0].endswith(": 2 nodes, world size 4")
    for line in run_lines(out):
        argv = shlex.split(line)
        assert argv[argv.index("train.py") + 1 :] == script_args


def test_dry_run_forwarded_env_and_workdir(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NCCL_DEBUG", "INFO")
    monkeypatch.setenv("NCCL_SOCKET_IFNAME", "eth0")
    monkeypatch.setenv("XNCCL_A", "no")
    _, out = dry_run(capsys, "--hosts", "a", "-x", "NCCL_*", "-x", "OMP_NUM_THREADS=4",
                     "t.py")
    env = [line for line in out.splitlines() if line.startswith("  env:")]
    assert env[:3] == [
        "  env:     NCCL_DEBUG=INFO",
        "  env:     NCCL_SOCKET_IFNAME=eth0",
        "  env:     OMP_NUM_THREADS=4",
    ]
    assert "XNCCL" not in out


def test_dry_run_never_prints_a_secret(capsys: pytest.CaptureFixture[str]) -> None:
    _, out = dry_run(capsys, "--hosts", "a:2,b:2", "-x", "WANDB_API_KEY=hunter2", "t.py")
    assert "hunter2" not in out
    assert out.count(f"  env:     WANDB_API_KEY={REDACTED}\n") == 2


def test_dry_run_never_prints_a_forwarded_secret(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_TOKEN", "hf_s3cr3t")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "aws_s3cr3t")
    _, out = dry_run(capsys, "--hosts", "a", "-x", "HF_TOKEN", "-x", "AWS_*", "t.py")
    assert "s3cr3t" not in out
    assert f"  env:     HF_TOKEN={REDACTED}\n" in out
    assert f"  env:     AWS_SECRET_ACCESS_KEY={REDACTED}\n" in out


def test_dry_run_secret_not_printed_by_the_real_program() -> None:
    result = sshrun("--dry-run", "--hosts", "a", "-x", "WANDB_API_KEY=hunter2", "t.py")
    assert result.returncode == 0, result.stderr
    assert "hunter2" not in result.stdout + result.stderr
    assert f"WANDB_API_KEY={REDACTED}" in result.stdout


def test_dry_run_c10d(capsys: pytest.CaptureFixture[str]) -> None:
    _, out = dry_run(capsys, "--hosts", "a,b", "--rdzv-backend", "c10d",
                     "--nproc-per-node", "auto", "t.py")
    assert ", world size decided at launch" in out.splitlines()[0]
    assert "rendezvous: c10d at a:<free port>" in out
    assert "node 0: a (auto processes)" in out
    lines = run_lines(out)
    assert "--local-addr a t.py" in lines[0]
    assert "--local-addr b t.py" in lines[1]
    assert all("--node-rank" not in line for line in lines)


def test_dry_run_rdzv_endpoint_and_id(capsys: pytest.CaptureFixture[str]) -> None:
    _, out = dry_run(capsys, "--hosts", "a,b", "--rdzv-endpoint", "[::1]:29500",
                     "--rdzv-id", "exp1", "t.py")
    assert "rendezvous: static at [::1]:29500" in out
    for line in run_lines(out):
        assert "--rdzv-endpoint '[::1]:29500' --rdzv-id exp1 " in line


def test_dry_run_nproc_per_node_overrides_slots(capsys: pytest.CaptureFixture[str]) -> None:
    _, out = dry_run(capsys, "--hosts", "a:2,b:4", "--nproc-per-node", "3", "t.py")
    assert out.splitlines()[0].endswith(": 2 nodes, world size 6")
    assert "node 0: a (ranks 0-2)" in out
    assert "node 1: b (ranks 3-5)" in out


def test_dry_run_with_hostfile(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    hostfile = tmp_path / "hosts"
    hostfile.write_text("# two nodes\ngpu01 slots=2\nalice@gpu02:3\n[gpu03]:2222\n")
    _, out = dry_run(capsys, "-H", str(hostfile), "t.py")
    assert out.splitlines()[0].endswith(": 3 nodes, world size 6")
    assert "node 0: gpu01 (ranks 0-1)" in out
    assert "node 1: gpu02 (ranks 2-4)" in out
    assert "node 2: [gpu03]:2222 (ranks 5-5)" in out


def test_dry_run_local_cluster(capsys: pytest.CaptureFixture[str]) -> None:
    _, out = dry_run(capsys, "--local-cluster", "2", "t.py")
    assert "node 0: node1 (ranks 0-0)" in out
    assert "node 1: node2 (ranks 1-1)" in out
    assert f"  python:  {sys.executable}\n" in out


def test_nnodes_uses_first_hosts(capsys: pytest.CaptureFixture[str]) -> None:
    _, out = dry_run(capsys, "--hosts", "a:2,b:2", "--nnodes", "1", "t.py")
    assert out.splitlines()[0].endswith(": 1 node, world size 2")
    assert "node 0: a (ranks 0-1)" in out
    assert "node 1" not in out
    assert "SSHRUN_HOST=b" not in out
    assert run_lines(out)[0].startswith("torchrun --nnodes 1 --nproc-per-node 2 ")


# --- exec -------------------------------------------------------------------------------


def test_exec_dry_run(capsys: pytest.CaptureFixture[str]) -> None:
    job, out = dry_run(capsys, "exec", "--hosts", "a", "--workdir", "/w", "--", "echo", "hi")
    assert out == (
        f"job {job}: 1 node, one command each\n"
        "node 0: a\n"
        "  python:  python3\n"
        "  workdir: /w\n"
        "  run:     echo hi\n"
        f"  env:     SSHRUN_JOB_ID={job}\n"
        "  env:     SSHRUN_NODE_RANK=0\n"
        "  env:     SSHRUN_NNODES=1\n"
        "  env:     SSHRUN_HOST=a\n"
        "  env:     SSHRUN_ATTEMPT=0\n"
    )


def test_exec_dry_run_flag_after_subcommand_real_program() -> None:
    result = sshrun("exec", "--dry-run", "--hosts", "a", "--", "echo", "hi")
    assert result.returncode == 0, result.stderr
    assert "  run:     echo hi\n" in result.stdout
    assert result.stderr == ""


def test_exec_keeps_later_double_dash_and_flags(capsys: pytest.CaptureFixture[str]) -> None:
    _, out = dry_run(capsys, "exec", "--hosts", "a,b", "--", "ls", "-l", "--", "--dry-run")
    assert run_lines(out) == ["ls -l -- --dry-run", "ls -l -- --dry-run"]


def test_exec_without_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = fails(capsys, "exec", "--dry-run", "--hosts", "a", "--")
    assert code == 2
    assert out == ""
    assert err == (
        "sshrun: error: sshrun exec: no command given (sshrun exec [OPTIONS] -- COMMAND)\n"
    )


def test_exec_dry_run_does_not_claim_ranks_from_slots(
    capsys: pytest.CaptureFixture[str],
) -> None:
    _, out = dry_run(capsys, "exec", "--hosts", "a:8", "--", "hostname")
    assert "ranks 0-7" not in out
    assert "world size 8" not in out


# --- errors -----------------------------------------------------------------------------


def test_missing_hostfile(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    missing = tmp_path / "no-such-hostfile"
    code, out, err = fails(capsys, "--dry-run", "-H", str(missing), "t.py")
    assert code == 2
    assert out == ""
    assert err == f"sshrun: error: hostfile not found: {missing}\n"


def test_missing_hostfile_without_dry_run_never_runs_locally(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    missing = tmp_path / "absent"
    code, out, err = fails(capsys, "-H", str(missing), "t.py")
    assert (code, out) == (2, "")
    assert err == f"sshrun: error: hostfile not found: {missing}\n"


def test_missing_hostfile_real_program(tmp_path: Path) -> None:
    missing = tmp_path / "hosts.txt"
    result = sshrun("-H", str(missing), "train.py")
    assert result.returncode == 2
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    assert result.stderr.splitlines() == [f"sshrun: error: hostfile not found: {missing}"]


def test_bad_hostfile_line(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    hostfile = tmp_path / "hosts"
    hostfile.write_text("good\nbad!host\n")
    code, out, err = fails(capsys, "--dry-run", "-H", str(hostfile), "t.py")
    assert code == 2
    assert out == ""
    assert err.startswith(f"sshrun: error: {hostfile}:2:4: invalid character '!'")
    assert err.count("\n") == 1


def test_bad_hostfile_real_program(tmp_path: Path) -> None:
    hostfile = tmp_path / "hosts"
    hostfile.write_text("a slots=2\na slots=2\n")
    result = sshrun("--dry-run", "-H", str(hostfile), "t.py")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert re.match(rf"sshrun: error: {re.escape(str(hostfile))}:2:\d+: ", result.stderr)
    assert len(result.stderr.splitlines()) == 1


def test_bad_inline_hosts(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = fails(capsys, "--dry-run", "--hosts", "a,,b", "t.py")
    assert code == 2
    assert err.startswith("sshrun: error: --hosts:1:")


def test_empty_hostfile(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    hostfile = tmp_path / "hosts"
    hostfile.write_text("# nothing here\n\n")
    code, _, err = fails(capsys, "--dry-run", "-H", str(hostfile), "t.py")
    assert code == 2
    assert err == f"sshrun: error: {hostfile}: no hosts\n"


def test_no_cluster_given(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = fails(capsys, "--dry-run", "t.py")
    assert code == 2
    assert out == ""
    assert err == ("sshrun: error: no cluster given: use -H/--hostfile PATH, --hosts LIST "
                   "or --local-cluster N\n")


def test_no_cluster_given_real_program() -> None:
    result = sshrun("train.py")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("sshrun: error: no cluster given")


def test_nnodes_more_than_hosts(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = fails(capsys, "--dry-run", "--hosts", "a,b", "--nnodes", "3", "t.py")
    assert code == 2
    assert out == ""
    assert err == "sshrun: error: --nnodes 3: only 2 hosts given\n"


@pytest.mark.parametrize("value", ["0", "-1", "x", "1.5", "", "0:2", "1:", ":2", "1:2:3"])
def test_nnodes_bad_value(capsys: pytest.CaptureFixture[str], value: str) -> None:
    code, _, err = fails(capsys, "--dry-run", "--hosts", "a,b", f"--nnodes={value}", "t.py")
    assert code == 2
    assert err == ("sshrun: error: --nnodes: expected N or MIN:MAX (positive integers), "
                   f"got {value!r}\n")


def test_nnodes_min_above_max(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = fails(capsys, "--dry-run", "--hosts", "a,b", "--nnodes", "2:1", "t.py")
    assert code == 2
    assert err == "sshrun: error: --nnodes 2:1: MIN is larger than MAX\n"


def test_elastic_min_above_the_hosts_given(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = fails(capsys, "--dry-run", "--hosts", "a,b", "--nnodes", "3:4", "t.py")
    assert code == 2
    assert err == "sshrun: error: --nnodes 3:4: only 2 hosts given\n"


def test_nnodes_superscript_digit_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, _ = fails(capsys, "--dry-run", "--hosts", "a,b", "--nnodes", "²", "t.py")
    assert code == 2


def test_nproc_superscript_digit_is_a_usage_error() -> None:
    result = sshrun("--dry-run", "--hosts", "a", "--nproc-per-node", "²", "t.py")
    assert "Traceback" not in result.stderr
    assert result.returncode == 2


def test_nnodes_fixed_min_max_range_accepted(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = fails(capsys, "--dry-run", "--hosts", "a,b,c", "--nnodes", "2:2", "t.py")
    assert code == 0, err
    assert "node 1: b" in out and "node 2" not in out


def test_elastic_dry_run_shows_the_first_attempt(capsys: pytest.CaptureFixture[str]) -> None:
    """MIN:MAX plans the first MAX hosts and says how the rest of the pool is used."""
    code, out, err = fails(capsys, "--dry-run", "--hosts", "a,b,c,d", "--nnodes", "2:3",
                           "--host-cooldown", "30", "--nproc-per-node", "2", "t.py")
    assert code == 0, err
    assert out.splitlines()[0].endswith(": 3 nodes, world size 6")
    assert out.splitlines()[2] == (
        "elastic: 2 to 3 nodes from 4 hosts; a host that fails is left out for 30s, "
        "spares fill in, each attempt renumbers the nodes that come up")
    assert "node 2: c (ranks 4-5)" in out and "node 3" not in out
    assert run_lines(out)[0].startswith("torchrun --nnodes 3 ")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--nproc-per-node", "0"], "--nproc-per-node: expected a positive integer"),
        (["--rdzv-endpoint", "host:99999"], "--rdzv-endpoint: port 99999 is out of range"),
        (["--rdzv-endpoint", "::1:29500"], "--rdzv-endpoint: expected HOST[:PORT]"),
        (["-x", "NOT_SET_ANYWHERE_42"], "-x/--env: NOT_SET_ANYWHERE_42 is not set on the head"),
        (["-x", "NCCL_*=1"], "a pattern cannot take a value"),
        (["--local-cluster", "0"], "--local-cluster: expected at least 1 node"),
        (["--max-handshakes", "0"], "--max-handshakes: expected at least 1"),
    ],
)
def test_config_errors_exit_2(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    cluster = [] if "--local-cluster" in argv else ["--hosts", "a"]
    code, out, err = fails(capsys, "--dry-run", *cluster, *argv, "t.py")
    assert code == 2
    assert out == ""
    assert err.startswith("sshrun: error: ")
    assert message in err
    assert err.count("\n") == 1


@pytest.mark.parametrize(
    "argv",
    [
        ["--bogus", "--hosts", "a", "t.py"],
        ["--hosts", "a", "--bogus", "t.py"],
        ["--hosts", "a", "-H", "hosts.txt", "t.py"],  # two clusters
        ["--hosts", "a", "--rdzv-backend", "zookeeper", "t.py"],
        ["--hosts", "a", "--grace-period", "-1", "t.py"],
        ["--hosts", "a", "--dry-run"],  # no script
    ],
)
def test_argparse_usage_errors_exit_2(
    capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        run(argv)
    assert exc.value.code == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert "sshrun: error: " in err


def test_unknown_flag_real_program() -> None:
    result = sshrun("--hosts", "a", "--bogus", "train.py", "--epochs", "3")
    assert result.returncode == 2
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    assert result.stderr.splitlines()[-1] == "sshrun: error: unrecognized arguments: --bogus"


# --- parse_invocation -------------------------------------------------------------------


def test_parse_invocation_fields() -> None:
    inv = parse_invocation(
        ["--hosts", "a:2,b", "-x", "TOKEN_X", "--python", "/opt/py", "--workdir", "/w",
         "--color", "never", "-m", "pkg.train", "--lr", "1"],
        environ={"TOKEN_X": "t"},
    )
    cfg = inv.config
    assert [h.host for h in cfg.hosts] == ["a", "b"]
    assert cfg.target == ("pkg.train", "--lr", "1")
    assert cfg.module and not cfg.no_python
    assert cfg.python == "/opt/py"
    assert {n.python for n in plan_job(cfg, "j").nodes} == {"/opt/py"}
    assert cfg.workdir == "/w"
    assert cfg.env_flags == (("TOKEN_X", "t"),)
    assert cfg.mode == "torchrun"
    assert inv.colour is False
    assert not inv.dry_run
    assert inv.local_cluster is None


def test_parse_invocation_exec_mode() -> None:
    inv = parse_invocation(["exec", "--hosts", "a", "--", "uname", "-a"], environ={})
    assert inv.config.mode == "exec"
    assert inv.config.target == ("uname", "-a")


def test_job_ids_differ_between_invocations() -> None:
    first = parse_invocation(["--hosts", "a", "t.py"], environ={})
    second = parse_invocation(["--hosts", "a", "t.py"], environ={})
    assert first.job_id != second.job_id


def test_render_dry_run_matches_run(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--hosts", "a:2,b:2", "--workdir", "/w", "t.py"]
    inv = parse_invocation(argv)
    expected = render_dry_run(plan_job(inv.config, inv.job_id))
    job, out = dry_run(capsys, *argv)
    assert out.replace(job, "JOB") == expected.replace(inv.job_id, "JOB")


def test_same_rdzv_id_gives_distinct_teardown_tags() -> None:
    argv = ["--hosts", "a,b", "--rdzv-id", "exp1", "t.py"]
    first = parse_invocation(argv, environ={})
    second = parse_invocation(argv, environ={})
    tags_first = {n.tag for n in plan_job(first.config, first.job_id).nodes}
    tags_second = {n.tag for n in plan_job(second.config, second.job_id).nodes}
    assert not tags_first & tags_second


def test_include_picks_slots_in_dry_run(capsys: pytest.CaptureFixture[str]) -> None:
    _, out = dry_run(capsys, "--hosts", "w0:4,w1:4", "--include", "w1:1,3", "t.py")
    assert "node 0: w1 (ranks 0-1)" in out
    assert "w0" not in out
    assert "  env:     CUDA_VISIBLE_DEVICES=1,3" in out


def test_slurm_allocation_when_no_hosts_given(capsys: pytest.CaptureFixture[str],
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLURM_JOB_NODELIST", "gpu[01-02]")
    code = run(["exec", "--dry-run", "--", "true"])
    out, err = capsys.readouterr()
    assert code == 0
    assert "node 0: gpu01" in out and "node 1: gpu02" in out
    assert err == "sshrun: no hosts given; using the Slurm allocation gpu[01-02] (2 hosts)\n"


def test_slurm_notice_comes_before_the_error_it_explains(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLURM_JOB_NODELIST", "gpu[01-02]")
    assert run(["--dry-run", "--nnodes", "4", "t.py"]) == 2
    assert capsys.readouterr().err.splitlines() == [
        "sshrun: no hosts given; using the Slurm allocation gpu[01-02] (2 hosts)",
        "sshrun: error: --nnodes 4: only 2 hosts given"]


@pytest.mark.parametrize("backend", ["etcd", "etcd-v2"])
def test_dry_run_etcd_uses_the_users_server(capsys: pytest.CaptureFixture[str],
                                            backend: str) -> None:
    _, out = dry_run(capsys, "--hosts", "a,b", "--rdzv-backend", backend,
                     "--rdzv-endpoint", "etcd1", "t.py")
    assert f"rendezvous: {backend} at etcd1:2379" in out
    for line in run_lines(out):
        assert f"--rdzv-backend {backend} --rdzv-endpoint etcd1:2379 " in line
        assert "--node-rank" not in line


def test_etcd_without_its_endpoint_is_exit_2_naming_the_flag(
        capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = fails(capsys, "--dry-run", "--hosts", "a", "--rdzv-backend", "etcd", "t.py")
    assert (code, out) == (2, "")
    assert err == ("sshrun: error: --rdzv-backend etcd needs --rdzv-endpoint HOST[:PORT]: the "
                   "etcd server's client address (port 2379 when left out)\n")
