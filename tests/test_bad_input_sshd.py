"""Bad SSH configuration against real sshd nodes: exit 2 naming the file, or 255 saying why.

The ssh config and identity files are checked once, before any connection
(in the dry run too); a name that cannot be resolved, a changed host key and
the insecure policy get messages that say what to do.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from head import run_sshrun
from sshd_cluster import SshdCluster, cluster_args

pytestmark = pytest.mark.sshd


def node_config(cluster: SshdCluster, tmp_path: Path, extra: str = "",
                name: str = "ssh_config") -> Path:
    """The cluster's ssh config with ``extra`` lines appended to every Host block."""
    text = cluster.ssh_config.read_text()
    if extra:
        text = text.replace("    LogLevel ERROR\n", f"    LogLevel ERROR\n{extra}")
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.slow
@pytest.mark.parametrize("dry", [True, False])
@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda d: d / "missing", "ssh config not found: {path}"),
        (lambda d: d, "ssh config is a directory, expected a file: {path}"),
    ],
)
def test_missing_or_directory_ssh_config_is_exit_2(sshd_cluster: SshdCluster, tmp_path: Path,
                                                   make: object, message: str,
                                                   dry: bool) -> None:
    assert callable(make)
    path = make(tmp_path)
    code, head = run_sshrun(["exec", *(["--dry-run"] if dry else []), "-H",
                             str(sshd_cluster.hostfile), "--ssh-config", str(path), "--", "true"])
    assert code == 2, head.transcript()
    assert head.stderr == "sshrun: error: " + message.format(path=path)
    assert head.stdout == ""


@pytest.mark.slow
@pytest.mark.parametrize("dry", [True, False])
def test_garbage_ssh_config_is_exit_2_with_its_line(sshd_cluster: SshdCluster, tmp_path: Path,
                                                    dry: bool) -> None:
    config = node_config(sshd_cluster, tmp_path, "    Port not-a-port\n")
    code, head = run_sshrun(["exec", *(["--dry-run"] if dry else []), "-H",
                             str(sshd_cluster.hostfile), "--ssh-config", str(config), "--",
                             "true"])
    assert code == 2, head.transcript()
    assert head.stderr.startswith(f"sshrun: error: bad ssh config ({config}): {config} line ")
    assert "Invalid Port integer value: not-a-port" in head.stderr
    assert len(head.err) == 1


@pytest.mark.slow
@pytest.mark.parametrize("dry", [True, False])
@pytest.mark.parametrize("kind", ["missing", "directory", "garbage", "fifo"])
def test_bad_identity_file_is_exit_2_naming_it(sshd_cluster: SshdCluster, tmp_path: Path,
                                               kind: str, dry: bool) -> None:
    key = tmp_path / "key"
    if kind == "directory":
        key.mkdir()
    elif kind == "garbage":
        key.write_text("-----BEGIN OPENSSH PRIVATE KEY-----\nnot a key\n")
    elif kind == "fifo":
        os.mkfifo(key)
    config = tmp_path / "c.yaml"
    config.write_text(f"hosts: [node0, node1]\nssh: {{config: {sshd_cluster.ssh_config}, "
                      f"identity_file: {key}}}\ndefaults: {{python: {sys.executable}}}\n")
    code, head = run_sshrun(["exec", *(["--dry-run"] if dry else []), "-c", str(config), "--",
                             "true"], timeout=60)
    assert code == 2, head.transcript()
    assert len(head.err) == 1, head.transcript()
    assert str(key) in head.stderr
    assert "identity file" in head.stderr
    assert "Traceback" not in head.stderr


def test_missing_identity_file_in_the_ssh_config_is_exit_2(sshd_cluster: SshdCluster,
                                                           tmp_path: Path) -> None:
    missing = tmp_path / "nokey"
    text = sshd_cluster.ssh_config.read_text().replace(
        f"IdentityFile {shlex.quote(str(sshd_cluster.client_key))}", f"IdentityFile {missing}")
    config = tmp_path / "ssh_config"
    config.write_text(text)
    code, head = run_sshrun(["exec", "-H", str(sshd_cluster.hostfile), "--ssh-config",
                             str(config), "--", "true"])
    assert code == 2, head.transcript()
    assert head.stderr == (f"sshrun: error: identity file (IdentityFile in the ssh config, "
                           f"for node0) not found: {missing}")


def test_unresolvable_host_names_the_host(sshd_cluster: SshdCluster, tmp_path: Path) -> None:
    config = node_config(sshd_cluster, tmp_path)
    with config.open("a") as f:
        f.write("\nHost ghost\n    HostName ghost.invalid\n    BatchMode yes\n")
    code, head = run_sshrun(["exec", "--hosts", "node0,ghost", "--ssh-config", str(config),
                             "--connect-timeout", "10", "--", "true"])
    assert code == 255, head.transcript()
    assert "ghost: cannot resolve host name ghost.invalid: " in head.stderr
    assert "Unknown error" not in head.stderr
    assert "Traceback" not in head.stderr


@pytest.mark.slow
def test_changed_key_hint_names_the_right_file_and_entry(sshd_cluster: SshdCluster,
                                                         tmp_path: Path) -> None:
    """The key lives in the cluster's own known_hosts, at [127.0.0.2]:PORT."""
    other = tmp_path / "other_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)],
                   check=True, capture_output=True, timeout=30)
    known = tmp_path / "known_hosts"
    entry = f"[{sshd_cluster.address(0)}]:{sshd_cluster.port}"
    known.write_text(f"{entry} {other.with_suffix('.pub').read_text().split(' ')[0]} "
                     f"{other.with_suffix('.pub').read_text().split(' ')[1]}\n")
    config = node_config(sshd_cluster, tmp_path)
    config.write_text(config.read_text().replace(str(sshd_cluster.known_hosts), str(known)))
    code, head = run_sshrun(["exec", "--hosts", "node0", "--ssh-config", str(config), "--",
                             "true"])
    assert code == 255, head.transcript()
    assert "host key has CHANGED" in head.stderr
    assert f"`ssh-keygen -R '{entry}' -f {known}`" in head.stderr
    assert "~/.ssh/known_hosts" not in head.stderr


@pytest.mark.slow
def test_unknown_key_hint_names_the_configured_file(sshd_cluster: SshdCluster,
                                                    tmp_path: Path) -> None:
    known = tmp_path / "empty_known_hosts"
    known.write_text("")
    config = node_config(sshd_cluster, tmp_path)
    config.write_text(config.read_text().replace(str(sshd_cluster.known_hosts), str(known)))
    code, head = run_sshrun(["exec", "--hosts", "node0", "--ssh-config", str(config), "--",
                             "true"])
    assert code == 255, head.transcript()
    assert (f"`ssh-keyscan -p {sshd_cluster.port} {sshd_cluster.address(0)} >> {known}`"
            in head.stderr)


@pytest.mark.slow
def test_insecure_policy_warns_and_connects(sshd_cluster: SshdCluster, tmp_path: Path) -> None:
    code, head = run_sshrun(["exec", *cluster_args(sshd_cluster), "--host-key-policy",
                             "insecure", "--", "true"])
    assert code == 0, head.transcript()
    assert head.err[0] == ("sshrun: warning: --host-key-policy insecure: host keys are not "
                           "checked, so anyone on the network path can pose as a node and see "
                           "the job's secrets")


@pytest.mark.slow
def test_workdir_tilde_is_the_nodes_home(sshd_cluster: SshdCluster) -> None:
    code, head = run_sshrun(["exec", "--hosts", "node0", "--ssh-config",
                             str(sshd_cluster.ssh_config), "--workdir", "~", "--", "pwd"])
    assert code == 0, head.transcript()
    assert head.out == [f"node0 | {os.path.expanduser('~')}"]


def test_a_command_no_node_has_is_one_line_naming_it(sshd_cluster: SshdCluster) -> None:
    """Looked for along the job's PATH on the node (sshrun/node/spawn.py): not found is
    the agent's own line, never a shell's "not found" with status 127."""
    code, head = run_sshrun(["exec", *cluster_args(sshd_cluster), "--python", sys.executable,
                             "--", "no-such-program-xyz", "arg"])
    assert code == 2, head.transcript()
    first = head.stderr.splitlines()[0]
    assert re.fullmatch(r"sshrun: first failure: node\d \(node \d\): cannot start "
                        r"no-such-program-xyz: No such file or directory", first), first
    assert head.stdout == ""
