"""YAML cluster configs and the environment policy against real sshd nodes."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import pytest
from head import WORKERS, run_sshrun
from sshd_cluster import SshdCluster

from sshrun.cli import run

pytestmark = pytest.mark.sshd

SECRET = "s3cr3t-canary-7f1d9a"

PROBE = '''\
import os, sys
secret = os.environ.get("MY_SECRET", "")
leaks = []
for pid in os.listdir("/proc"):
    if pid.isdigit():
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if secret.encode() in f.read():
                    leaks.append(pid)
        except OSError:
            pass
print("has-secret", secret == os.environ.get("EXPECTED_LEN_CHECK", secret), len(secret))
print("cmdline-leaks", len(leaks))
print("echo", secret)
print("host-var", os.environ.get("PER_HOST", "-"), "py", os.path.basename(sys.executable))
print("nccl", os.environ.get("NCCL_DEBUG", "-"), "glob", os.environ.get("MYAPP_X", "-"))
'''


def write_yaml(cluster: SshdCluster, tmp_path: Path, extra_host: str = "") -> Path:
    config = tmp_path / "cluster.yaml"
    config.write_text(
        "defaults:\n"
        f"  python: {sys.executable}\n"
        f"  workdir: {tmp_path}\n"
        "  env: {PER_HOST: default}\n"
        "hosts:\n"
        "  - node0\n"
        "  - host: node1\n"
        "    env: {PER_HOST: node1-own}\n"
        + extra_host +
        "ssh:\n"
        f"  config: {cluster.ssh_config}\n"
        "env:\n"
        "  forward: ['MYAPP_*']\n"
        "  secret: [MY_SECRET]\n"
        "torchrun:\n"
        "  nproc_per_node: 1\n"
    )
    return config


@pytest.mark.slow
def test_yaml_config_env_policy_and_secret_canary(sshd_cluster: SshdCluster,
                                                  tmp_path: Path) -> None:
    config = write_yaml(sshd_cluster, tmp_path)
    script = tmp_path / "probe.py"
    script.write_text(PROBE)
    env = dict(os.environ, MY_SECRET=SECRET, NCCL_DEBUG="INFO", MYAPP_X="1", MYAPPX="no")
    code, head = run_sshrun(["-c", str(config), str(script)], env=env, cwd=tmp_path)
    assert code == 0, head.transcript()
    transcript = head.transcript()
    assert SECRET not in transcript
    assert "node0 r0 | echo <redacted>" in head.out
    assert f"node0 r0 | has-secret True {len(SECRET)}" in head.out
    assert "node0 r0 | cmdline-leaks 0" in head.out
    assert "node1 r1 | cmdline-leaks 0" in head.out
    assert "node0 r0 | host-var default py " + os.path.basename(sys.executable) in head.out
    assert "node1 r1 | host-var node1-own py " + os.path.basename(sys.executable) in head.out
    # NCCL_* is in the default allow-list; MYAPP_* forwarded by the config's glob.
    assert "node0 r0 | nccl INFO glob 1" in head.out


def test_yaml_per_host_python_checked_before_launch(sshd_cluster: SshdCluster,
                                                    tmp_path: Path) -> None:
    config = write_yaml(sshd_cluster, tmp_path,
                        "  - host: node2\n    python: /nonexistent/python3\n")
    code, head = run_sshrun(["-c", str(config), str(WORKERS / "echo_args.py")],
                            env=dict(os.environ, MY_SECRET=SECRET))
    assert code == 2, head.transcript()
    assert "node2: cannot run interpreter '/nonexistent/python3'" in head.stderr
    assert "Traceback" not in head.stderr


def test_missing_secret_is_a_configuration_error(sshd_cluster: SshdCluster,
                                                 tmp_path: Path) -> None:
    config = write_yaml(sshd_cluster, tmp_path)
    env = {k: v for k, v in os.environ.items() if k != "MY_SECRET"}
    code, head = run_sshrun(["-c", str(config), str(WORKERS / "echo_args.py")], env=env)
    assert code == 2, head.transcript()
    assert "MY_SECRET: not set on the head nor given a value" in head.stderr


def test_hostfile_and_yaml_give_the_same_plan(tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    hostfile = tmp_path / "hosts"
    hostfile.write_text("gpu[01-02] slots=2\nalice@gpu03:4\n")
    yaml_file = tmp_path / "cluster.yaml"
    yaml_file.write_text("hosts:\n  - gpu[01-02] slots=2\n"
                         "  - {host: gpu03, user: alice, slots: 4}\n"
                         "torchrun: {rdzv_backend: c10d, rdzv_id: exp1}\n")
    outputs = []
    for argv in (["-H", str(hostfile), "--rdzv-backend", "c10d", "--rdzv-id", "exp1"],
                 ["-c", str(yaml_file)]):
        assert run(["--dry-run", "--workdir", "/w", *argv, "train.py", "--lr", "1"]) == 0
        out = capsys.readouterr().out
        outputs.append(re.sub(r"\d{8}-\d{6}-[0-9a-f]{6}", "JOB", out))
    assert outputs[0] == outputs[1]
    assert "node 2: gpu03 (4 processes)" in outputs[0]


def test_yaml_unknown_key_names_line_and_suggests(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text("hosts:\n  - host: a\n    slot: 4\n")
    assert run(["--dry-run", "-c", str(config), "t.py"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"sshrun: error: {config}:3:5: ")
    assert "'slots'" in err


@pytest.mark.slow
def test_yaml_jump_host_reaches_nodes_through_a_bastion(sshd_cluster: SshdCluster,
                                                        tmp_path: Path) -> None:
    """ssh.jump_host: node1 and node2 reached through node0, with the same strict keys."""
    config = tmp_path / "jump.yaml"
    config.write_text(
        "hosts: [node1, node2]\n"
        f"defaults: {{python: {sys.executable}}}\n"
        "ssh:\n"
        f"  config: {sshd_cluster.ssh_config}\n"
        "  jump_host: node0\n"
    )
    code, head = run_sshrun(["exec", "-c", str(config), "--", "sh", "-c",
                             "echo via $SSH_CONNECTION"])
    assert code == 0, head.transcript()
    assert sorted(x.split(" | ")[0] for x in head.out) == ["node1", "node2"]
    # Proof that the path goes through the bastion: freeze it, and the nodes
    # cannot be reached, with the hop named.
    sshd_cluster.stop_node(0)
    try:
        code, head = run_sshrun(["exec", "-c", str(config), "--connect-timeout", "3", "--",
                                 "true"])
    finally:
        sshd_cluster.cont_node(0)
    assert code == 255, head.transcript()
    assert "node1: via ProxyJump node0: timed out" in head.stderr
