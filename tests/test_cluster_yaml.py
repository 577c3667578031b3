"""Tests of sshrun.cluster_yaml: YAML cluster configs."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from renderers import render_cluster_yaml

from sshrun.cluster_yaml import (
    TORCHRUN_KEYS,
    ClusterFile,
    EnvFileSettings,
    SSHFileSettings,
    load_cluster_yaml,
    parse_cluster_yaml,
)
from sshrun.errors import ConfigError, LocationError
from sshrun.hostfile import HostSpec, dns_name_problem, parse_hostfile
from sshrun.transport import HOST_KEY_POLICIES

HOSTFILES = Path(__file__).resolve().parent.parent / "hostfiles"

FULL = """\
hosts:
  - gpu[01-02] slots=8
  - {host: gpu03, slots: 4, user: ubuntu, port: 2222, python: /opt/venv/bin/python}
  - host: gpu04
    workdir: /scratch
    identity_file: keys/id
    env: {A: x, OMP_NUM_THREADS: 2}
defaults:
  user: bob
  port: 22
  slots: 2
  python: /usr/bin/python3
  workdir: /shared/proj
  identity_file: ~/.ssh/id_default
  env: {A: default, B: "yes", C: true, D: 1.5}
ssh: {config: ssh_config, identity_file: ~/.ssh/id_ed25519, jump_host: alice@bastion:2222,
      host_key_policy: accept-new, connect_timeout: 15}
env: {forward: [NCCL_*, WANDB_API_KEY], set: {OMP_NUM_THREADS: "4"}, secret: [WANDB_API_KEY],
      file: job.env}
torchrun:
  nproc_per_node: auto
  nnodes: "1:2"
  max_restarts: 3
  rdzv_backend: c10d
  rdzv_endpoint: gpu01:29400
  rdzv_id: job42
  rdzv_conf: {join_timeout: 900, last_call_timeout: 30}
"""


def parse(text: str, base_dir: str | None = None) -> ClusterFile:
    return parse_cluster_yaml(text, "c.yaml", base_dir)


def error(text: str) -> str:
    with pytest.raises(LocationError) as info:
        parse(text)
    assert info.value.source == "c.yaml"
    return str(info.value)


def strip_where(cf: ClusterFile) -> ClusterFile:
    hosts = tuple(dataclasses.replace(h, where="") for h in cf.hosts)
    return dataclasses.replace(cf, source="", hosts=hosts)


# -- every key ---------------------------------------------------------------


def test_full_example_every_key() -> None:
    cf = parse(FULL, "/base")
    default_env = (("A", "default"), ("B", "yes"), ("C", "true"), ("D", "1.5"))
    common = {
        "python": "/usr/bin/python3",
        "workdir": "/shared/proj",
        "identity_file": "~/.ssh/id_default",
        "env": default_env,
    }
    assert cf.hosts == (
        HostSpec("gpu01", "bob", 22, 8, "c.yaml:2", **common),
        HostSpec("gpu02", "bob", 22, 8, "c.yaml:2", **common),
        HostSpec(
            "gpu03",
            "ubuntu",
            2222,
            4,
            "c.yaml:3",
            python="/opt/venv/bin/python",
            workdir="/shared/proj",
            identity_file="~/.ssh/id_default",
            env=default_env,
        ),
        HostSpec(
            "gpu04",
            "bob",
            22,
            2,
            "c.yaml:4",
            python="/usr/bin/python3",
            workdir="/scratch",
            identity_file="/base/keys/id",
            env=(("A", "x"), ("B", "yes"), ("C", "true"), ("D", "1.5"), ("OMP_NUM_THREADS", "2")),
        ),
    )
    assert cf.ssh == SSHFileSettings(
        config="/base/ssh_config",
        identity_file="~/.ssh/id_ed25519",
        jump_host="alice@bastion:2222",
        host_key_policy="accept-new",
        connect_timeout=15.0,
    )
    assert cf.env == EnvFileSettings(
        forward=("NCCL_*", "WANDB_API_KEY"),
        set=(("OMP_NUM_THREADS", "4"),),
        secret=("WANDB_API_KEY",),
        file="/base/job.env",
    )
    assert cf.torchrun == (
        ("nproc-per-node", "auto"),
        ("nnodes", "1:2"),
        ("max-restarts", "3"),
        ("rdzv-backend", "c10d"),
        ("rdzv-endpoint", "gpu01:29400"),
        ("rdzv-id", "job42"),
        ("rdzv-conf", "join_timeout=900,last_call_timeout=30"),
    )
    assert cf.source == "c.yaml"


def test_minimal_config_has_empty_sections() -> None:
    cf = parse("hosts: [node1]\nssh:\nenv:\ntorchrun:\ndefaults:\n")
    assert cf.hosts == (HostSpec("node1", where="c.yaml:1"),)
    assert cf.ssh == SSHFileSettings()
    assert cf.env == EnvFileSettings()
    assert cf.torchrun == ()


def test_hostfile_style_strings() -> None:
    cf = parse(
        "hosts:\n"
        "  - node1\n"
        "  - node2:4\n"
        "  - alice@node3 slots=2 port=2200\n"
        "  - '[node4]:2222'\n"
        "  - '[::1]:22'\n"
        "  - cpu[1,3]-r[1-2] max_slots=4\n"
    )
    hosts = [(h.host, h.user, h.port, h.slots) for h in cf.hosts]
    assert hosts == [
        ("node1", None, None, None),
        ("node2", None, None, 4),
        ("node3", "alice", 2200, 2),
        ("node4", None, 2222, None),
        ("::1", None, 22, None),
        ("cpu1-r1", None, None, None),
        ("cpu1-r2", None, None, None),
        ("cpu3-r1", None, None, None),
        ("cpu3-r2", None, None, None),
    ]


def test_mapping_hosts_ranges_and_ipv6() -> None:
    cf = parse(
        "hosts:\n"
        "  - {host: 'gpu[08-10]', slots: 8}\n"
        "  - {host: '[fd00::5]'}\n"
        "  - {host: 'fd00::6', port: 2222}\n"
    )
    assert [h.host for h in cf.hosts] == ["gpu08", "gpu09", "gpu10", "fd00::5", "fd00::6"]
    assert [h.slots for h in cf.hosts] == [8, 8, 8, None, None]
    assert cf.hosts[-1].label == "[fd00::6]:2222"


def test_defaults_merge_and_host_wins() -> None:
    cf = parse(
        "defaults: {user: u, port: 2200, slots: 4, env: {A: '1', B: '2'}}\n"
        "hosts:\n"
        "  - x@h1:8 port=22\n"
        "  - h2\n"
        "  - {host: h3, user: v, env: {B: three, C: '4'}}\n"
    )
    h1, h2, h3 = cf.hosts
    assert (h1.user, h1.port, h1.slots) == ("x", 22, 8)
    assert (h2.user, h2.port, h2.slots) == ("u", 2200, 4)
    assert (h3.user, h3.port, h3.slots) == ("v", 2200, 4)
    assert h1.env == h2.env == (("A", "1"), ("B", "2"))
    assert h3.env == (("A", "1"), ("B", "three"), ("C", "4"))


def test_env_values_keep_their_yaml_text() -> None:
    cf = parse("hosts: [h]\nenv: {set: {A: true, B: 0x10, C: 1.50, D: '', E: 2024-01-02, ON: 1}}\n")
    assert cf.env.set == (
        ("A", "true"),
        ("B", "0x10"),
        ("C", "1.50"),
        ("D", ""),
        ("E", "2024-01-02"),
        ("ON", "1"),
    )


def test_env_single_string_and_forward_globs() -> None:
    cf = parse("hosts: [h]\nenv: {forward: 'NCCL_*', secret: TOKEN}\n")
    assert cf.env.forward == ("NCCL_*",)
    assert cf.env.secret == ("TOKEN",)


@pytest.mark.parametrize(
    ("value", "expected"),
    [("8", "8"), ("auto", "auto"), ("cpu", "cpu"), ("gpu", "gpu"), ("xpu", "xpu"), ("'4'", "4")],
)
def test_nproc_per_node(value: str, expected: str) -> None:
    cf = parse(f"hosts: [h]\ntorchrun: {{nproc-per-node: {value}}}\n")
    assert cf.torchrun == (("nproc-per-node", expected),)


def test_torchrun_dash_spelling_and_canonical_order() -> None:
    cf = parse(
        "hosts: [h]\ntorchrun:\n  rdzv-conf: a=1,b=x.y\n  max-restarts: 0\n"
        "  rdzv-backend: static\n  nnodes: 2\n  rdzv_id: '007'\n"
    )
    assert cf.torchrun == (
        ("nnodes", "2"),
        ("max-restarts", "0"),
        ("rdzv-backend", "static"),
        ("rdzv-id", "007"),
        ("rdzv-conf", "a=1,b=x.y"),
    )


def test_anchors_aliases_merge_keys_and_x_keys() -> None:
    cf = parse(
        "x-common: &common {user: u, slots: 2}\n"
        "x-env: &env {A: '1'}\n"
        "hosts:\n"
        "  - {<<: *common, host: h1}\n"
        "  - {<<: *common, host: h2, slots: 3, env: {<<: *env, B: '2'}}\n"
    )
    assert [(h.host, h.user, h.slots, h.env) for h in cf.hosts] == [
        ("h1", "u", 2, ()),
        ("h2", "u", 3, (("A", "1"), ("B", "2"))),
    ]


def test_paths_resolved_against_the_yaml_directory(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "c.yaml"
    path.parent.mkdir()
    path.write_text(
        "hosts:\n  - {host: h, identity_file: k/id, python: venv/bin/python, workdir: w}\n"
        "defaults: {identity_file: ~/.ssh/id}\n"
        "ssh: {config: ../ssh_config, identity_file: /abs/id}\n"
        "env: {file: job.env}\n"
    )
    cf = load_cluster_yaml(path)
    assert cf.source == str(path)
    assert cf.hosts[0].identity_file == str(tmp_path / "sub" / "k" / "id")
    assert cf.hosts[0].python == "venv/bin/python"
    assert cf.hosts[0].workdir == "w"
    assert cf.hosts[0].where == f"{path}:2"
    assert cf.ssh.config == str(tmp_path / "ssh_config")
    assert cf.ssh.identity_file == "/abs/id"
    assert cf.env.file == str(tmp_path / "sub" / "job.env")
    # Without a base directory, relative paths stay as written; ~ always does.
    cf = parse("hosts: [{host: h, identity_file: k/id}]\nssh: {config: ~/c}\n")
    assert cf.hosts[0].identity_file == "k/id"
    assert cf.ssh.config == "~/c"


def test_load_relative_path_uses_its_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "c.yaml").write_text("hosts: [h]\nenv: {file: e.env}\n")
    monkeypatch.chdir(tmp_path)
    cf = load_cluster_yaml("c.yaml")
    assert cf.env.file == os.path.join(str(tmp_path), "e.env")
    assert cf.hosts[0].where == "c.yaml:1"


def test_load_handles_bom_and_crlf(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_bytes(b"\xef\xbb\xbfhosts:\r\n  - a\r\n  - {host: b, slot: 1}\r\n")
    with pytest.raises(LocationError, match=r"c\.yaml:3:15: unknown key 'slot'"):
        load_cluster_yaml(path)


# -- errors ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "hosts:\n- gpu01\n- host: gpu02\n  slot: 8\n",
            "c.yaml:4:3: unknown key 'slot' in hosts[1]; did you mean 'slots'?",
        ),
        (
            "host: [a]\n",
            "c.yaml:1:1: unknown key 'host' in the cluster config; did you mean 'hosts'?",
        ),
        (
            "hosts: [a]\nfoo: 1\n",
            "c.yaml:2:1: unknown key 'foo' in the cluster config; "
            "expected one of hosts, defaults, ssh, env, torchrun, log_dir, sync",
        ),
        (
            "hosts: [a]\ndefaults: {workdr: /x}\n",
            "c.yaml:2:12: unknown key 'workdr' in defaults; did you mean 'workdir'?",
        ),
        (
            "hosts: [a]\nssh: {jumphost: b}\n",
            "c.yaml:2:7: unknown key 'jumphost' in ssh; did you mean 'jump_host'?",
        ),
        (
            "hosts: [a]\nenv: {secrets: [A]}\n",
            "c.yaml:2:7: unknown key 'secrets' in env; did you mean 'secret'?",
        ),
        (
            "hosts: [a]\ntorchrun: {nproc-per-nod: 2}\n",
            "c.yaml:2:12: unknown key 'nproc-per-nod' in torchrun; did you mean 'nproc-per-node'?",
        ),
        (
            "hosts: [a]\ntorchrun: {max_restart: 2}\n",
            "c.yaml:2:12: unknown key 'max_restart' in torchrun; did you mean 'max_restarts'?",
        ),
        (
            "hosts: [a]\ntorchrun: {foo: 2}\n",
            "c.yaml:2:12: unknown key 'foo' in torchrun; expected one of "
            + ", ".join(TORCHRUN_KEYS),
        ),
        (
            "hosts: [{host: a, slots: eight}]\n",
            "c.yaml:1:26: expected an integer for slots, got 'eight'",
        ),
        (
            "hosts: [{host: a, slots: 0}]\n",
            "c.yaml:1:26: expected slots between 1 and 1000000, got '0'",
        ),
        (
            "hosts: [{host: a, port: 70000}]\n",
            "c.yaml:1:25: expected port between 1 and 65535, got '70000'",
        ),
        (
            "hosts: [{host: a, port: 22:22}]\n",
            "c.yaml:1:25: expected an integer for port, got '22:22'",
        ),
        (
            "defaults: {slots: [1]}\nhosts: [a]\n",
            "c.yaml:1:19: expected an integer for slots, got a list",
        ),
        (
            "hosts: [{host: a, user: yes}]\n",
            "c.yaml:1:25: expected a string for user, got yes (a boolean; quote it to mean "
            "the string)",
        ),
        (
            "hosts: [{host: a, user: 'b c'}]\n",
            "c.yaml:1:27: invalid character ' ' in user name 'b c': expected letters, digits, "
            "'.', '_' or '-'",
        ),
        (
            "hosts: [{host: a, python: ''}]\n",
            "c.yaml:1:27: expected a non-empty string for python, got ''",
        ),
        (
            "hosts: [{host: a, workdir: -rf}]\n",
            "c.yaml:1:28: workdir may not start with '-', got '-rf'",
        ),
        ("hosts: [{slots: 1}]\n", "c.yaml:1:9: missing required key 'host' in hosts[0]"),
        (
            "ssh: {}\n",
            "c.yaml:1:1: missing required key 'hosts': expected a non-empty list of hosts",
        ),
        (
            "hosts: []\n",
            "c.yaml:1:8: expected a non-empty list of hosts for hosts, got an empty list",
        ),
        ("hosts: a\n", "c.yaml:1:8: expected a non-empty list of hosts for hosts, got 'a'"),
        (
            "hosts: [[a]]\n",
            "c.yaml:1:9: expected a hostfile-style string or a mapping for hosts[0], got a list",
        ),
        (
            "hosts: [a, ~]\n",
            "c.yaml:1:12: expected a hostfile-style string or a mapping for hosts[1], got "
            "nothing (null)",
        ),
        (
            "hosts: [a, '  ']\n",
            "c.yaml:1:12: expected a host entry such as 'node01 slots=8' for hosts[1]",
        ),
        # Columns inside a hostfile-style string point at the fault.
        (
            "hosts:\n  - gpu[01-02] slot=8\n",
            "c.yaml:2:16: unknown key 'slot' in 'slot=8': expected one of slots, port, user, "
            "max_slots",
        ),
        (
            "hosts:\n  - 'gpu01:x'\n",
            "c.yaml:2:12: expected host:N with N a positive integer (the number of slots), "
            "got 'gpu01:x'",
        ),
        (
            "hosts:\n  - gpu[03-01]\n",
            "c.yaml:2:9: reversed range '03-01' in 'gpu[03-01]': expected LOW-HIGH with "
            "LOW <= HIGH",
        ),
        (
            "hosts: [{host: 'gpu[1-'}]\n",
            "c.yaml:1:20: unbalanced '[' in 'gpu[1-': expected ']' to close the range",
        ),
        (
            "hosts: [{host: al@b}]\n",
            "c.yaml:1:18: expected a host name for host, got 'al@b': give the user as 'user:'",
        ),
        (
            "hosts: [{host: 'b:8'}]\n",
            "c.yaml:1:18: expected a host name or IPv6 address for host, got 'b:8': in a "
            "mapping, give slots and port as keys (slots: 8, port: 2222)",
        ),
        # Duplicates: hosts (across entries, ranges included) and keys.
        (
            "hosts:\n  - gpu[01-03]\n  - {host: gpu02}\n",
            "c.yaml:3:12: duplicate host gpu02 (first at c.yaml:2:5)",
        ),
        ("hosts:\n  - a\n  - b\n  - ' A'\n", "c.yaml:4:7: duplicate host A (first at c.yaml:2:5)"),
        (
            "defaults: {port: 22}\nhosts: [a, 'a port=22']\n",
            "c.yaml:2:13: duplicate host [a]:22 (first at c.yaml:2:9)",
        ),
        (
            "hosts: [a]\nhosts: [b]\n",
            "c.yaml:2:1: duplicate key 'hosts' in the cluster config (first at c.yaml:1:1)",
        ),
        (
            "hosts: [{host: a, slots: 1, slots: 2}]\n",
            "c.yaml:1:29: duplicate key 'slots' in hosts[0] (first at c.yaml:1:19)",
        ),
        (
            "hosts: [a]\ntorchrun: {nproc-per-node: 2, nproc_per_node: 3}\n",
            "c.yaml:2:31: nproc_per_node given twice in torchrun: 'nproc_per_node' here, "
            "'nproc-per-node' at c.yaml:2:12",
        ),
        (
            "hosts: [a]\nenv: {forward: [A, B, A]}\n",
            "c.yaml:2:23: 'A' listed twice in env.forward (first at c.yaml:2:17)",
        ),
        # ssh
        (
            "hosts: [a]\nssh: {host_key_policy: accept_new}\n",
            "c.yaml:2:24: unknown host_key_policy 'accept_new'; did you mean 'accept-new'?",
        ),
        (
            "hosts: [a]\nssh: {connect_timeout: soon}\n",
            "c.yaml:2:24: expected a number of seconds for connect_timeout, got 'soon'",
        ),
        (
            "hosts: [a]\nssh: {connect_timeout: 0}\n",
            "c.yaml:2:24: expected a positive number of seconds for connect_timeout, got 0",
        ),
        (
            "hosts: [a]\nssh: {jump_host: 'a@b,c:0'}\n",
            "c.yaml:2:23: expected jump_host as [user@]host[:port], hops separated by ',', "
            "got 'c:0'",
        ),
        (
            "hosts: [a]\nssh: {jump_host: -oProxyCommand=x}\n",
            "c.yaml:2:18: expected jump_host as [user@]host[:port], hops separated by ',', "
            "got '-oProxyCommand=x'",
        ),
        ("hosts: [a]\nssh: [config]\n", "c.yaml:2:6: expected a mapping for ssh, got a list"),
        # env
        (
            "hosts: [a]\nenv: {set: {1A: b}}\n",
            "c.yaml:2:13: expected an environment variable name (letters, digits, '_', not "
            "starting with a digit) in env.set, got '1A'",
        ),
        (
            "hosts: [a]\nenv: {set: {A: }}\n",
            "c.yaml:2:15: expected a string, number or boolean for env.set.A, got nothing (null)",
        ),
        (
            "hosts: [a]\nenv: {set: {A: [1]}}\n",
            "c.yaml:2:16: expected a string, number or boolean for env.set.A, got a list",
        ),
        (
            'hosts: [a]\nenv: {set: {A: "x\\0y"}}\n',
            "c.yaml:2:16: expected a string, number or boolean for env.set.A, got a value with "
            "a NUL character",
        ),
        (
            "hosts: [a]\nenv: {forward: ['A B']}\n",
            "c.yaml:2:17: expected a variable name or glob pattern (letters, digits, '_', '*', "
            "'?', '[...]') in env.forward, got 'A B'",
        ),
        (
            "hosts: [a]\nenv: {secret: [A*]}\n",
            "c.yaml:2:16: expected an environment variable name (letters, digits, '_', not "
            "starting with a digit) in env.secret, got 'A*'",
        ),
        (
            "hosts: [{host: a, env: {A-B: 1}}]\n",
            "c.yaml:1:25: expected an environment variable name (letters, digits, '_', not "
            "starting with a digit) in hosts[0].env, got 'A-B'",
        ),
        # torchrun
        (
            "hosts: [a]\ntorchrun: {nproc_per_node: many}\n",
            "c.yaml:2:28: expected a positive integer or one of auto, cpu, gpu, xpu for "
            "nproc_per_node, got 'many'",
        ),
        (
            "hosts: [a]\ntorchrun: {nproc_per_node: 0}\n",
            "c.yaml:2:28: expected nproc_per_node between 1 and 1000000, got '0'",
        ),
        (
            "hosts: [a]\ntorchrun: {nnodes: 3:2}\n",
            "c.yaml:2:20: expected N or MIN:MAX with 1 <= MIN <= MAX for nnodes, got '3:2'",
        ),
        (
            "hosts: [a]\ntorchrun: {nnodes: two}\n",
            "c.yaml:2:20: expected N or MIN:MAX for nnodes, got 'two'",
        ),
        (
            "hosts: [a]\ntorchrun: {max_restarts: -1}\n",
            "c.yaml:2:26: expected an integer for max_restarts, got '-1'",
        ),
        (
            "hosts: [a]\ntorchrun: {rdzv_backend: zookeeper}\n",
            "c.yaml:2:26: unknown rdzv_backend 'zookeeper'; expected one of static, c10d, "
            "etcd, etcd-v2",
        ),
        (
            "hosts: [a]\ntorchrun: {rdzv_backend: c10}\n",
            "c.yaml:2:26: unknown rdzv_backend 'c10'; did you mean 'c10d'?",
        ),
        (
            "hosts: [a]\ntorchrun: {rdzv_endpoint: 'h:99999'}\n",
            "c.yaml:2:27: expected HOST or HOST:PORT for rdzv_endpoint, got 'h:99999'",
        ),
        (
            "hosts: [a]\ntorchrun: {rdzv_id: 'a b'}\n",
            "c.yaml:2:23: unexpected character ' ' in rdzv_id 'a b'",
        ),
        (
            "hosts: [a]\ntorchrun: {rdzv_conf: 'a=1,b'}\n",
            "c.yaml:2:28: expected KEY=VALUE[,KEY=VALUE...] for rdzv_conf, got 'a=1,b'",
        ),
        (
            "hosts: [a]\ntorchrun: {rdzv_conf: {a: 'x,y'}}\n",
            "c.yaml:2:27: unexpected character in rdzv_conf value 'x,y': ',', '=', spaces and "
            "control characters cannot be passed",
        ),
        # documents and YAML itself
        ("", "c.yaml:1:1: empty cluster config: expected a mapping with a 'hosts' list"),
        (
            "# only a comment\n",
            "c.yaml:1:1: empty cluster config: expected a mapping with a 'hosts' list",
        ),
        (
            "- a\n",
            "c.yaml:1:1: expected a mapping with a 'hosts' list at the top level, got a list",
        ),
        (
            "hosts: [a\n",
            "c.yaml:2:1: invalid YAML: expected ',' or ']', but got '<stream end>' "
            "(while parsing a flow sequence)",
        ),
        (
            "hosts:\n  - a\n - b\n",
            "c.yaml:3:2: invalid YAML: expected <block end>, but found '<block sequence start>' "
            "(while parsing a block mapping)",
        ),
        (
            "hosts: [a]\n\tssh: {}\n",
            "c.yaml:2:1: invalid YAML: found character '\\t' that cannot start any token "
            "(while scanning for the next token)",
        ),
        ("hosts: [*nope]\n", "c.yaml:1:9: invalid YAML: found undefined alias 'nope'"),
        (
            "hosts: [a]\n---\nhosts: [b]\n",
            "c.yaml:2:1: invalid YAML: expected a single document in the stream, "
            "but found another document",
        ),
        (
            "hosts: [a]\nssh: {config: \x01}\n",
            "c.yaml:2:15: invalid YAML: unacceptable character #x0001",
        ),
        (
            "hosts: !!python/object/apply:os.system [echo]\n",
            "c.yaml:1:8: unsupported YAML tag 'tag:yaml.org,2002:python/object/apply:os.system': "
            "expected plain YAML values",
        ),
        (
            "hosts: [!!binary aGVsbG8=]\n",
            "c.yaml:1:9: unsupported YAML tag 'tag:yaml.org,2002:binary': expected plain YAML "
            "values",
        ),
        ("defaults: &d {<<: *d}\nhosts: [a]\n", "c.yaml:1:11: recursive '<<' merge in defaults"),
        (
            "defaults: {<<: [a]}\nhosts: [a]\n",
            "c.yaml:1:17: expected a mapping to merge with '<<', got 'a'",
        ),
        (
            "? [a]\n: b\nhosts: [a]\n",
            "c.yaml:1:3: expected a key name in the cluster config, got a list",
        ),
    ],
)
def test_errors(text: str, message: str) -> None:
    assert error(text) == message


def test_every_error_is_a_config_error_with_exit_2() -> None:
    with pytest.raises(ConfigError) as info:
        parse("hosts: [{host: a, slots: x}]")
    assert info.value.exit_code == 2


def test_missing_file_directory_and_bad_utf8(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError, match=f"^cluster config not found: {missing}$"):
        load_cluster_yaml(missing)
    with pytest.raises(ConfigError, match="is a directory"):
        load_cluster_yaml(tmp_path)
    bad = tmp_path / "bad.yaml"
    bad.write_bytes(b"hosts:\n  - a\xff\n")
    with pytest.raises(LocationError) as info:
        load_cluster_yaml(bad)
    assert str(info.value) == f"{bad}:2:6: invalid UTF-8 byte 0xff: expected a UTF-8 text file"


def test_quoted_scalars_point_inside_the_string() -> None:
    assert error('hosts: ["a b"]').startswith("c.yaml:1:12:")
    assert error("hosts: ['a b']").startswith("c.yaml:1:12:")
    assert error("hosts: [a b]").startswith("c.yaml:1:11:")
    # Escapes or line folding: the error points at the start of the value.
    assert error('hosts: ["\\x41 b"]').startswith("c.yaml:1:9:")


# -- the example files ---------------------------------------------------------


def test_example_cluster_yaml_parses() -> None:
    cf = load_cluster_yaml(HOSTFILES / "cluster.yaml")
    by_name = {h.host: h for h in cf.hosts}
    assert list(by_name) == ["gpu01", "gpu02", "gpu03", "gpu04", "fd00::5"]
    assert by_name["gpu01"].user == "ubuntu"
    assert by_name["gpu03"].user == "alice"
    assert by_name["gpu03"].slots == 4
    gpu04 = by_name["gpu04"]
    assert (gpu04.port, gpu04.slots, gpu04.workdir) == (2222, 4, "/scratch/proj")
    assert gpu04.python == "/opt/conda/envs/train/bin/python"
    assert gpu04.identity_file == str(HOSTFILES / "keys" / "gpu04")
    assert dict(gpu04.env)["NCCL_SOCKET_IFNAME"] == "ib0"
    assert dict(by_name["gpu01"].env)["NCCL_SOCKET_IFNAME"] == "eth0"
    assert by_name["fd00::5"].user == "root"
    assert cf.env.file == str(HOSTFILES / "job.env")
    assert cf.env.secret == ("WANDB_API_KEY",)
    assert dict(cf.torchrun)["nproc-per-node"] == "gpu"


def test_example_jump_yaml_parses() -> None:
    cf = load_cluster_yaml(HOSTFILES / "jump.yaml")
    assert [h.host for h in cf.hosts] == ["node01", "node02", "node03", "node04"]
    assert {h.user for h in cf.hosts} == {"research"}
    assert cf.ssh.jump_host == "alice@bastion.example.org:2222"
    assert cf.ssh.host_key_policy == "strict"


def test_hostfile_and_yaml_agree() -> None:
    hostfile = "gpu[01-02] slots=8\nalice@[gpu03]:2222 slots=4\ngpu04:2\n"
    yaml_text = (
        "hosts:\n"
        "  - gpu[01-02] slots=8\n"
        "  - {host: gpu03, user: alice, port: 2222, slots: 4}\n"
        "  - gpu04:2\n"
    )
    from_hostfile = [dataclasses.replace(h, where="") for h in parse_hostfile(hostfile, "h")]
    from_yaml = [dataclasses.replace(h, where="") for h in parse(yaml_text).hosts]
    assert from_yaml == from_hostfile


def test_full_example_round_trips() -> None:
    cf = parse(FULL, "/base")
    again = parse(render_cluster_yaml(cf))
    assert strip_where(again) == strip_where(cf)


# -- properties ----------------------------------------------------------------

_FRAGMENTS = [
    "hosts:",
    "defaults:",
    "ssh:",
    "env:",
    "torchrun:",
    "x-a:",
    "  - ",
    "- ",
    "gpu[01-02] slots=8",
    "a@b:4",
    "[::1]:22",
    "{host: a, slots: x}",
    "{host: 'g[1-3]'}",
    "host:",
    "slots:",
    "port:",
    "user:",
    "env:",
    "set:",
    "forward:",
    "secret:",
    "file:",
    "nproc_per_node:",
    "rdzv_conf:",
    "nnodes:",
    "jump_host:",
    "connect_timeout:",
    "host_key_policy:",
    "&a",
    "*a",
    "<<:",
    "!!binary",
    "!x",
    "~",
    "'",
    '"',
    "[",
    "]",
    "{",
    "}",
    ",",
    ":",
    "?",
    "|",
    ">",
    "#",
    "%YAML 1.1",
    "---",
    "...",
    "0x1F",
    "1:30",
    "-1",
    "yes",
    "1e9",
    ".inf",
    "\t",
    " ",
    "  ",
    "\n",
    "\r\n",
    "\ufeff",
    "\x85",
    "\u2028",
    "é",
]

yamlish = st.lists(st.sampled_from(_FRAGMENTS) | st.text(max_size=3), max_size=40).map("".join)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=200) | yamlish)
def test_any_text_parses_or_raises_config_error(text: str) -> None:
    try:
        cf = parse(text)
    except ConfigError as err:
        assert isinstance(err, LocationError)
        assert err.line >= 1 and err.column >= 1
        assert str(err).startswith(f"c.yaml:{err.line}:{err.column}: ")
    else:
        assert cf.hosts


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_mutated_full_example_parses_or_raises_config_error(data: st.DataObject) -> None:
    text = FULL
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, len(text)))
        cut = data.draw(st.integers(0, 5))
        insert = data.draw(st.sampled_from(_FRAGMENTS) | st.text(max_size=3))
        text = text[:at] + insert + text[at + cut :]
    try:
        parse(text)
    except ConfigError as err:
        assert isinstance(err, LocationError)


def test_huge_nesting_and_alias_bombs_are_config_errors() -> None:
    with pytest.raises(ConfigError):
        parse("hosts: " + "[" * 5000 + "]" * 5000)
    # A billion laughs: nine levels of nine aliases, never expanded.
    bomb = "x-a: &a [x, x, x, x, x, x, x, x, x]\n"
    for i in range(1, 9):
        bomb += f"x-a{i}: &a{i} [" + ", ".join([f"*a{i - 1}" if i > 1 else "*a"] * 9) + "]\n"
    assert len(parse(bomb + "hosts: [h]\n").hosts) == 1
    with pytest.raises(ConfigError, match="expected a hostfile-style string or a mapping"):
        parse(bomb + "hosts: *a8\n")
    with pytest.raises(ConfigError, match="expected a string, number or boolean"):
        parse(bomb + "hosts: [h]\nenv: {set: {A: *a8}}\n")
    merges = "x-0: &m0 {A: '1'}\n"
    for i in range(1, 60):
        merges += f"x-{i}: &m{i} {{<<: [*m{i - 1}, *m{i - 1}], B{i}: '1'}}\n"
    cf = parse(merges + "hosts: [h]\nenv: {set: *m59}\n")
    assert len(cf.env.set) == 60


_NAME = st.text(
    alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._",
    min_size=1,
    max_size=12,
).filter(lambda s: not s.startswith("-"))
# Host names follow DNS label rules (no empty label, none over 63 characters).
_HOSTS = _NAME.filter(lambda s: dns_name_problem(s) is None) | st.sampled_from(
    ["::1", "fd00::5", "2001:db8::1"]
)
_PATH = st.text(
    st.characters(codec="utf-8", exclude_categories=["Cc", "Cs"]), min_size=1, max_size=20
).filter(lambda s: not s.startswith("-"))
_ENV_NAME = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,8}", fullmatch=True)
_ENV_VALUE = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=20)
_ENV = st.lists(st.tuples(_ENV_NAME, _ENV_VALUE), max_size=4, unique_by=lambda p: p[0]).map(tuple)
_WORD = st.from_regex(r"[A-Za-z0-9_.][A-Za-z0-9_.-]{0,8}", fullmatch=True)


@st.composite
def host_specs(draw: st.DrawFn) -> HostSpec:
    return HostSpec(
        host=draw(_HOSTS),
        user=draw(st.none() | _NAME),
        port=draw(st.none() | st.integers(1, 65535)),
        slots=draw(st.none() | st.integers(1, 1_000_000)),
        python=draw(st.none() | _PATH),
        workdir=draw(st.none() | _PATH),
        identity_file=draw(st.none() | _PATH),
        env=draw(_ENV),
    )


@st.composite
def torchrun_options(draw: st.DrawFn) -> tuple[tuple[str, str], ...]:
    values = {
        "nproc_per_node": st.sampled_from(["auto", "cpu", "gpu", "xpu"])
        | st.integers(1, 64).map(str),
        "nnodes": st.integers(1, 9).map(str)
        | st.tuples(st.integers(1, 4), st.integers(4, 9)).map(lambda t: f"{t[0]}:{t[1]}"),
        "max_restarts": st.integers(0, 100).map(str),
        "rdzv_backend": st.sampled_from(["static", "c10d"]),
        "rdzv_endpoint": st.tuples(_WORD, st.none() | st.integers(1, 65535)).map(
            lambda t: t[0] if t[1] is None else f"{t[0]}:{t[1]}"
        ),
        "rdzv_id": _WORD,
        "rdzv_conf": st.lists(
            st.tuples(_WORD, st.from_regex(r"[A-Za-z0-9_.:/-]{0,6}", fullmatch=True)),
            min_size=1,
            max_size=3,
            unique_by=lambda p: p[0],
        ).map(lambda items: ",".join(f"{k}={v}" for k, v in items)),
        # The keys after the first releases', as torchrun's command line takes them.
        **{key: st.sampled_from(["true", "false"]) for key in
           ("standalone", "module", "no_python", "run_path", "virtual_local_rank")},
        "monitor_interval": st.floats(1e-3, 1e6).map(repr),
        "start_method": st.sampled_from(["spawn", "fork", "forkserver"]),
        "event_log_handler": st.sampled_from(["console", "null"]),
        "numa_binding": st.sampled_from(["node", "core-complex"]),
        "role": _WORD,
        "logs_specs": _WORD,
        "master_addr": _WORD,
        "master_port": st.integers(1, 65535).map(str),
        "shutdown_timeout": st.integers(1, 10**6).map(str),
        "signals_to_handle": st.sampled_from(["SIGTERM", "SIGTERM,SIGUSR1"]),
        **{key: st.sampled_from(["0", "3"]) | st.dictionaries(
            st.integers(0, 9), st.integers(0, 3), min_size=1).map(
            lambda d: ",".join(f"{k}:{v}" for k, v in sorted(d.items())))
           for key in ("redirects", "tee")},
        "local_ranks_filter": st.sets(st.integers(0, 99), min_size=1).map(
            lambda s: ",".join(map(str, sorted(s)))),
        **{key: st.lists(_WORD, min_size=1, max_size=3).map(",".join)
           for key in ("duplicate_stdout_filters", "duplicate_stderr_filters")},
    }
    chosen = draw(st.sets(st.sampled_from(TORCHRUN_KEYS)))
    return tuple(
        (key.replace("_", "-"), draw(values[key])) for key in TORCHRUN_KEYS if key in chosen
    )


# A jump host's name follows the same DNS rules as a node's.
_HOP = st.tuples(st.none() | _NAME, _NAME.filter(lambda s: dns_name_problem(s) is None),
                 st.none() | st.integers(1, 65535)).map(
    lambda t: (f"{t[0]}@" if t[0] else "") + t[1] + (f":{t[2]}" if t[2] else "")
)


@st.composite
def cluster_files(draw: st.DrawFn) -> ClusterFile:
    hosts = draw(
        st.lists(host_specs(), min_size=1, max_size=5, unique_by=lambda h: (h.host.lower(), h.port))
    )
    ssh = SSHFileSettings(
        config=draw(st.none() | _PATH),
        identity_file=draw(st.none() | _PATH),
        jump_host=draw(st.none() | st.lists(_HOP, min_size=1, max_size=3).map(",".join)),
        host_key_policy=draw(st.none() | st.sampled_from(HOST_KEY_POLICIES)),
        connect_timeout=draw(st.none() | st.floats(min_value=1e-3, max_value=1e9, allow_nan=False)),
    )
    env = EnvFileSettings(
        forward=tuple(
            draw(st.lists(st.from_regex(r"[A-Za-z0-9_*?]{1,8}", fullmatch=True), unique=True))
        ),
        set=draw(_ENV),
        secret=tuple(draw(st.lists(_ENV_NAME, unique=True, max_size=3))),
        file=draw(st.none() | _PATH),
    )
    return ClusterFile("", tuple(hosts), ssh, env, draw(torchrun_options()),
                       draw(st.none() | _PATH))


@settings(max_examples=200, deadline=None)
@given(cluster_files())
def test_render_parse_round_trip(cf: ClusterFile) -> None:
    text = render_cluster_yaml(cf)
    again = parse(text)
    assert strip_where(again) == cf
    assert render_cluster_yaml(again) == text


# -- torchrun's other options, and log_dir ------------------------------------------------


def test_torchrun_section_takes_torchruns_options_and_gives_typed_values() -> None:
    from sshrun.output_filters import Streams

    cf = parse(
        "hosts: [h]\ntorchrun:\n  standalone: true\n  module: no\n  monitor-interval: 2\n"
        "  start_method: fork\n  role: trainer\n  redirects: 3\n  tee: '0:1,1:2'\n"
        "  local_ranks_filter: [0, 1]\n  duplicate_stdout_filters: [loss, 'a,b']\n"
        "  duplicate_stderr_filters: 'x,,y'\n  master_addr: '[::1]'\n  master_port: 29500\n"
        "  signals_to_handle: SIGTERM, SIGUSR1\n  shutdown_timeout: 7\n"
        "  numa_binding: socket\n  logs_specs: mine\n  nnodes: '1:2'\n  max_restarts: 2\n"
    )
    assert cf.torchrun_values == {
        "nnodes": (1, 2), "max_restarts": 2, "standalone": True, "module": False,
        "monitor_interval": 2.0, "start_method": "fork", "role": "trainer",
        "redirects": Streams(3), "tee": Streams(per_rank=((0, 1), (1, 2))),
        "local_ranks_filter": frozenset({0, 1}),
        "duplicate_stdout_filters": ("loss", "a,b"), "duplicate_stderr_filters": ("x,y",),
        "master_addr": "[::1]", "master_port": 29500, "signals_to_handle": "SIGTERM,SIGUSR1",
        "shutdown_timeout": 7, "numa_binding": "socket", "logs_specs": "mine",
    }
    # The text is torchrun's command line's, in TORCHRUN_KEYS order.
    assert dict(cf.torchrun)["duplicate-stdout-filters"] == "loss,a,,b"
    assert [name for name, _ in cf.torchrun][:2] == ["nnodes", "max-restarts"]


def test_log_dir_is_relative_to_the_file_and_kept_with_a_tilde() -> None:
    assert parse("hosts: [h]\nlog_dir: logs\n", "/base").log_dir == "/base/logs"
    assert parse("hosts: [h]\nlog_dir: /abs\n", "/base").log_dir == "/abs"
    assert parse("hosts: [h]\nlog_dir: ~/logs\n", "/base").log_dir == "~/logs"
    assert parse("hosts: [h]\nlog_dir:\n", "/base").log_dir is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("hosts: [a]\ntorchrun: {node_rank: 1}\n",
         "c.yaml:2:12: node_rank in torchrun: sshrun assigns node ranks in host order"),
        ("hosts: [a]\ntorchrun: {local-addr: h}\n",
         "c.yaml:2:12: local-addr in torchrun: sshrun gives every node its own address"),
        ("hosts: [a]\ntorchrun: {log_dir: x}\n",
         "c.yaml:2:12: log_dir in torchrun: give log_dir at the top level of the file"),
        ("hosts: [a]\ntorchrun: {standalone: 1}\n",
         "c.yaml:2:24: expected true or false for standalone, got '1'"),
        ("hosts: [a]\ntorchrun: {start_method: clone}\n",
         "c.yaml:2:26: unknown start_method 'clone'; expected one of spawn, fork, forkserver"),
        ("hosts: [a]\ntorchrun: {redirects: '0:9'}\n",
         "c.yaml:2:24: expected 0-3 (1 stdout, 2 stderr, 3 both) or LOCAL_RANK:0-3[,...] for "
         "redirects, got '0:9'"),
        ("hosts: [a]\ntorchrun: {local_ranks_filter: [0, x]}\n",
         "c.yaml:2:32: expected local ranks 0-999999, comma separated (0,1,2) for "
         "local_ranks_filter, got '0,x'"),
        ("hosts: [a]\ntorchrun: {duplicate_stdout_filters: [a, ',b']}\n",
         "c.yaml:2:42: a filter in duplicate_stdout_filters may not start or end with ','"),
        ("hosts: [a]\ntorchrun: {duplicate_stdout_filters: []}\n",
         "c.yaml:2:38: expected at least one entry for duplicate_stdout_filters"),
        ("hosts: [a]\ntorchrun: {master_port: 0}\n",
         "c.yaml:2:25: expected at least 1 for master_port, got '0'"),
        ("hosts: [a]\ntorchrun: {monitor_interval: inf}\n",
         "c.yaml:2:30: expected a number of seconds for monitor_interval, got 'inf'"),
        ("hosts: [a]\ntorchrun: {role: yes}\n",
         "c.yaml:2:18: expected a string for role, got yes (a boolean; quote it to mean the "
         "string)"),
        ("hosts: [a]\nlog_dir: '-x'\n", "c.yaml:2:10: log_dir may not start with '-'"),
        ("hosts: [a]\ntorchrun: {rolle: x}\n",
         "c.yaml:2:12: unknown key 'rolle' in torchrun; did you mean 'role'?"),
    ],
)
def test_torchrun_section_errors(text: str, message: str) -> None:
    with pytest.raises(LocationError) as exc:
        parse(text)
    assert str(exc.value).startswith(message), str(exc.value)


# -- sync ----------------------------------------------------------------------


def test_sync_section() -> None:
    cf = parse("hosts: [a]\nsync:\n  dir: src\n  exclude: [data, '*.ckpt']\n"
               "  include: .env\n  max_size: 200M\n  bwlimit: 50M\n", base_dir="/proj")
    assert cf.sync is not None
    assert cf.sync.dir == "/proj/src"
    assert cf.sync.exclude == ("data", "*.ckpt") and cf.sync.include == (".env",)
    assert cf.sync.max_size == "200M" and cf.sync.bwlimit == "50M"
    assert parse("hosts: [a]\n").sync is None


def test_sync_section_errors_name_the_line() -> None:
    assert "c.yaml:2:7: missing required key 'dir' in sync" in error(
        "hosts: [a]\nsync: {exclude: [x]}\n")
    assert "c.yaml:2:26: sync.max_size: 'lots' is not a size" in error(
        "hosts: [a]\nsync: {dir: ., max_size: lots}\n")
    assert "c.yaml:2:25: sync.bwlimit: '.inf' is not a size" in error(
        "hosts: [a]\nsync: {dir: ., bwlimit: .inf}\n")
    assert "unknown key 'exlude'" in error("hosts: [a]\nsync: {dir: ., exlude: [x]}\n")
