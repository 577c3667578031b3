"""YAML cluster configs (``sshrun -c cluster.yaml``): load and check.

A cluster config describes the nodes of a job and how to reach them::

    hosts:                          # required, a non-empty list
      - gpu[01-02] slots=8          # a hostfile line (ranges, user@, :N, port=)
      - host: gpu03                 # or a mapping with per-host settings
        slots: 4
        user: ubuntu
        port: 2222
        python: /opt/venv/bin/python
        workdir: /shared/proj
        identity_file: keys/gpu03   # relative to this file's directory
        env: {NCCL_SOCKET_IFNAME: eth1}
    defaults:                       # every per-host setting; a host's own wins
      user: ubuntu
      port: 22
      slots: 8
      python: /opt/venv/bin/python
      workdir: /shared/proj
      identity_file: ~/.ssh/id_ed25519
      env: {OMP_NUM_THREADS: 4}     # merged under each host's env
    ssh:
      config: ~/.ssh/config
      identity_file: ~/.ssh/id_ed25519
      jump_host: alice@bastion:2222 # ProxyJump syntax, hops separated by ','
      host_key_policy: strict       # strict | accept-new | insecure
      connect_timeout: 15           # seconds
    env:
      forward: [NCCL_*, WANDB_API_KEY]   # names or glob patterns
      set: {OMP_NUM_THREADS: "4"}
      secret: [WANDB_API_KEY]
      file: job.env                 # relative to this file's directory
    torchrun:                       # torchrun's option names, '_' or '-'
      nproc_per_node: auto          # N or auto | cpu | gpu | xpu
      nnodes: 2                     # N or MIN:MAX
      max_restarts: 3
      rdzv_backend: c10d            # static | c10d | etcd | etcd-v2
      rdzv_endpoint: gpu01:29400
      rdzv_id: job42
      rdzv_conf: {timeout: 900}     # or the string "timeout=900"
      role: trainer                 # ... every torchrun option sshrun takes (yaml_torchrun)
    log_dir: logs                   # the head's log directory, relative to this file

The file is read with PyYAML's safe composer (``yaml.compose`` with
``SafeLoader``: what ``yaml.safe_load`` accepts, no Python objects) by
:mod:`sshrun.yamlread`, which knows YAML but not this schema, and the node
tree is converted here so that every error is a
:class:`~sshrun.errors.LocationError` naming ``file:line:column`` of the
offending key or value.  Unknown keys get a did-you-mean suggestion.  Anchors,
aliases and ``<<`` merge keys work as in ``safe_load``; top-level keys that
start with ``x-`` are ignored, so that they can hold anchors (as in Docker
Compose files).

Relative ``identity_file``, ``ssh.config``, ``env.file`` and ``log_dir``
paths are taken relative to the YAML file's directory; paths starting with
``~`` are left for ssh (or, for ``log_dir``, the resolver) to expand;
``python`` and ``workdir`` are node paths and kept as written (a ``~`` in
``workdir`` is expanded on the node, as for ``--workdir``). The
value checks are :mod:`sshrun.values`', shared with the command line.
Environment values may be strings, numbers or booleans and are kept as their
YAML source text (``true`` stays ``"true"``, ``0x10`` stays ``"0x10"``).

The ``torchrun`` section is :mod:`sshrun.yaml_torchrun`'s (its keys are
torchrun's options, from one table). This module is a little longer than
most (about 440 lines, a quarter of it this docstring and the typed results):
the host entries, ``defaults``, ``ssh`` and ``env`` are read together (hosts
merge ``defaults``, duplicates are checked across entries).
"""

from __future__ import annotations

import os
import re
from dataclasses import field
from typing import Any

from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from sshrun import hostfile, values
from sshrun.configfile import read_config_text
from sshrun.environment import refused_name
from sshrun.errors import ConfigError, LocationError
from sshrun.file_settings import EnvFileSettings, SSHFileSettings, SyncFileSettings
from sshrun.frozen_dataclass import frozen_dataclass
from sshrun.hostfile import MAX_HOSTS, MAX_SLOTS, HostSpec
from sshrun.sync_manifest import parse_size
from sshrun.transport import HOST_KEY_POLICIES
from sshrun.yaml_torchrun import TORCHRUN_KEYS, read_torchrun, typed
from sshrun.yamlread import NULL, YamlReader, clip, compose, describe, suggest

__all__ = [
    "DEFAULTS_KEYS",
    "HOST_KEYS",
    "TOP_KEYS",
    "TORCHRUN_KEYS",
    "ClusterFile",
    "EnvFileSettings",
    "SSHFileSettings",
    "load_cluster_yaml",
    "parse_cluster_yaml",
]


@frozen_dataclass
class ClusterFile:
    """A parsed cluster config; ``hosts`` already have ``defaults`` merged in."""

    source: str
    hosts: tuple[HostSpec, ...]
    ssh: SSHFileSettings = field(default_factory=SSHFileSettings)
    env: EnvFileSettings = field(default_factory=EnvFileSettings)
    # torchrun option (dash spelling, e.g. "nproc-per-node") -> value as
    # torchrun's command line takes it, in TORCHRUN_KEYS order.
    torchrun: tuple[tuple[str, str], ...] = ()
    log_dir: str | None = None  # the head's log directory (absolute when loaded from a file)
    sync: SyncFileSettings | None = None

    @property
    def torchrun_values(self) -> dict[str, Any]:
        """The torchrun section parsed (dest -> typed value) by sshrun.torchrun_options."""
        return typed(self.torchrun)


TOP_KEYS = ("hosts", "defaults", "ssh", "env", "torchrun", "log_dir", "sync")
SYNC_KEYS = ("dir", "exclude", "include", "max_size", "bwlimit")
HOST_KEYS = ("host", "slots", "user", "port", "python", "workdir", "identity_file", "env")
DEFAULTS_KEYS = ("user", "port", "slots", "python", "workdir", "identity_file", "env")
SSH_KEYS = ("config", "identity_file", "jump_host", "host_key_policy", "connect_timeout")
ENV_KEYS = ("forward", "set", "secret", "file")
MAX_PORT = values.MAX_PORT

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_ENV_PATTERN = re.compile(r"[A-Za-z0-9_*?\[\]!-]+")
_HOP = re.compile(
    r"(?:(?P<user>[A-Za-z0-9._][A-Za-z0-9._-]*)@)?"
    r"(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._][A-Za-z0-9._-]*)"
    r"(?::(?P<port>[0-9]{1,5}))?"
)


@frozen_dataclass
class _Defaults:
    user: str | None = None
    port: int | None = None
    slots: int | None = None
    python: str | None = None
    workdir: str | None = None
    identity_file: str | None = None
    env: tuple[tuple[str, str], ...] = ()


class _Converter(YamlReader):
    """Turns the composed node tree into a ClusterFile, or raises LocationError."""

    def user(self, node: Node, what: str) -> str:
        value = self.string(node, what)
        try:
            hostfile.check_user(value)
        except hostfile.HostEntryError as err:
            self.fail(node, err.message, err.index)
        return value

    def env_name(self, node: Node, name: str, what: str) -> None:
        if not _ENV_NAME.fullmatch(name):
            self.fail(
                node,
                f"expected an environment variable name (letters, digits, '_', not starting "
                f"with a digit) in {what}, got {refused_name(name, 60)}",
            )

    def env_map(self, node: Node, what: str) -> list[tuple[str, str]]:
        if self.is_null(node):
            return []
        result: list[tuple[str, str]] = []
        for name, (key, value) in self.pairs(node, what).items():
            self.env_name(key, name, what)
            text = self.scalar(value, f"{what}.{name}", "a string, number or boolean")
            result.append((name, text))
        return result

    # -- sections ---------------------------------------------------------

    def convert(self, root: Node | None) -> ClusterFile:
        if root is None:
            raise LocationError(
                self.source, 1, 1, "empty cluster config: expected a mapping with a 'hosts' list"
            )
        self.check_tag(root)
        if not isinstance(root, MappingNode):
            self.fail(
                root,
                f"expected a mapping with a 'hosts' list at the top level, got {describe(root)}",
            )
        # Top-level keys starting with "x-" hold anchors for aliases to use,
        # as in Docker Compose files; they are otherwise ignored.
        pairs = self.pairs(root, "the cluster config")
        top: dict[str, Node] = {}
        for name, (key, value) in pairs.items():
            if name.startswith("x-"):
                continue
            if name not in TOP_KEYS:
                self.fail(
                    key,
                    f"unknown key {name!r} in the cluster config; {suggest(name, TOP_KEYS)}",
                )
            top[name] = value
        if "hosts" not in top:
            self.fail(root, "missing required key 'hosts': expected a non-empty list of hosts")
        defaults = self.defaults(top.get("defaults"))
        hosts = self.hosts(top["hosts"], defaults)
        ssh = self.ssh(top.get("ssh"))
        env = self.env(top.get("env"))
        torchrun = read_torchrun(self, top.get("torchrun"))
        log_dir = (self.path(top["log_dir"], "log_dir", resolve=True)
                   if "log_dir" in top and not self.is_null(top["log_dir"]) else None)
        sync = (self.sync(top["sync"])
                if "sync" in top and not self.is_null(top["sync"]) else None)
        return ClusterFile(self.source, tuple(hosts), ssh, env, torchrun, log_dir, sync)

    def sync(self, node: Node) -> SyncFileSettings:
        keys = self.section(node, "sync", SYNC_KEYS)
        if "dir" not in keys:
            self.fail(node, "missing required key 'dir' in sync: the directory to mirror "
                            "(relative to this file), e.g. dir: .")
        return SyncFileSettings(
            dir=self.path(keys["dir"], "sync.dir", resolve=True),
            exclude=tuple(v for _, v in self.string_list(keys["exclude"], "sync.exclude"))
            if "exclude" in keys else (),
            include=tuple(v for _, v in self.string_list(keys["include"], "sync.include"))
            if "include" in keys else (),
            max_size=self.size(keys["max_size"], "sync.max_size")
            if "max_size" in keys else None,
            bwlimit=self.size(keys["bwlimit"], "sync.bwlimit") if "bwlimit" in keys else None,
        )

    def size(self, node: Node, key: str) -> str:
        value = self.scalar(node, key, "a size like 500M")
        try:
            parse_size(value, key)
        except ConfigError as exc:
            self.fail(node, str(exc))
        return value

    def defaults(self, node: Node | None) -> _Defaults:
        keys = self.section(node, "defaults", DEFAULTS_KEYS)
        return _Defaults(**self.host_settings(keys, "defaults"))

    def host_settings(self, keys: dict[str, Node], section: str) -> dict[str, Any]:
        """The per-host settings common to ``defaults`` and a host mapping."""
        out: dict[str, Any] = {}
        if "user" in keys:
            out["user"] = self.user(keys["user"], "user")
        if "port" in keys:
            out["port"] = self.integer(keys["port"], "port", 1, MAX_PORT)
        if "slots" in keys:
            out["slots"] = self.integer(keys["slots"], "slots", 1, MAX_SLOTS)
        if "python" in keys:
            out["python"] = self.path(keys["python"], "python", resolve=False)
        if "workdir" in keys:
            out["workdir"] = self.path(keys["workdir"], "workdir", resolve=False)
        if "identity_file" in keys:
            out["identity_file"] = self.path(keys["identity_file"], "identity_file", resolve=True)
        if "env" in keys:
            out["env"] = tuple(self.env_map(keys["env"], f"{section}.env"))
        return out

    def hosts(self, node: Node, defaults: _Defaults) -> list[HostSpec]:
        self.check_tag(node)
        if not isinstance(node, SequenceNode):
            self.fail(node, f"expected a non-empty list of hosts for hosts, got {describe(node)}")
        if not node.value:
            self.fail(node, "expected a non-empty list of hosts for hosts, got an empty list")
        specs: list[HostSpec] = []
        seen: dict[tuple[str, int | None], str] = {}
        for i, item in enumerate(node.value):
            section = f"hosts[{i}]"
            self.check_tag(item)
            if isinstance(item, MappingNode):
                names, host_node, host_index, own = self.host_mapping(item, section)
            elif isinstance(item, ScalarNode) and item.tag != NULL:
                names, host_node, host_index, own = self.host_line(item, section)
            else:
                self.fail(
                    item,
                    f"expected a hostfile-style string or a mapping for {section}, "
                    f"got {describe(item)}",
                )
            if len(specs) + len(names) > MAX_HOSTS:
                self.fail(item, f"more than {MAX_HOSTS} hosts in total")
            env = dict(defaults.env)
            env.update(own.get("env", ()))
            line = item.start_mark.line + 1
            for name in names:
                spec = HostSpec(
                    host=name,
                    user=own.get("user", defaults.user),
                    port=own.get("port", defaults.port),
                    slots=own.get("slots", defaults.slots),
                    where=f"{self.source}:{line}",
                    python=own.get("python", defaults.python),
                    workdir=own.get("workdir", defaults.workdir),
                    identity_file=own.get("identity_file", defaults.identity_file),
                    env=tuple(env.items()),
                )
                key = hostfile.host_identity(spec.host, spec.port)
                first = seen.get(key)
                if first is not None:
                    self.fail(
                        host_node, f"duplicate host {spec.label} (first at {first})", host_index
                    )
                line_no, column = self.position(host_node, host_index)
                seen[key] = f"{self.source}:{line_no}:{column}"
                specs.append(spec)
        return specs

    def host_line(
        self, node: ScalarNode, section: str
    ) -> tuple[list[str], Node, int | None, dict[str, Any]]:
        text = self.string(node, section, empty_ok=True)
        try:
            entry = hostfile.parse_host_entry(text)
        except hostfile.HostEntryError as err:
            self.fail(node, err.message, err.index)
        if entry is None:
            self.fail(node, f"expected a host entry such as 'node01 slots=8' for {section}")
        own: dict[str, Any] = {}
        for name in ("user", "port", "slots"):
            if getattr(entry, name) is not None:
                own[name] = getattr(entry, name)
        return list(entry.hosts), node, entry.host_at, own

    def host_mapping(
        self, node: MappingNode, section: str
    ) -> tuple[list[str], Node, int | None, dict[str, Any]]:
        keys = self.mapping(node, section, HOST_KEYS)
        if "host" not in keys:
            self.fail(node, f"missing required key 'host' in {section}")
        host_node = keys["host"]
        names = self.host_names(host_node)
        return names, host_node, None, self.host_settings(keys, section)

    def host_names(self, node: Node) -> list[str]:
        text = self.string(node, "host", empty_ok=True)
        at = text.find("@")
        if at >= 0:
            self.fail(
                node,
                f"expected a host name for host, got {clip(text)}: give the user as 'user:'",
                at,
            )
        inner = text
        if text.startswith("[") and text.endswith("]") and ":" in text:
            inner = text[1:-1]
        try:
            if ":" in inner:
                try:
                    hostfile.check_single_host(inner)
                except hostfile.HostEntryError:
                    self.fail(
                        node,
                        f"expected a host name or IPv6 address for host, got {clip(text)}: "
                        "in a mapping, give slots and port as keys (slots: 8, port: 2222)",
                        text.find(":"),
                    )
                return [inner]
            return hostfile.expand_host_name(text)
        except hostfile.HostEntryError as err:
            self.fail(node, err.message, err.index)

    def ssh(self, node: Node | None) -> SSHFileSettings:
        keys = self.section(node, "ssh", SSH_KEYS)
        out: dict[str, Any] = {}
        if "config" in keys:
            out["config"] = self.path(keys["config"], "config", resolve=True)
        if "identity_file" in keys:
            out["identity_file"] = self.path(keys["identity_file"], "identity_file", resolve=True)
        if "jump_host" in keys:
            out["jump_host"] = self.jump_host(keys["jump_host"])
        if "host_key_policy" in keys:
            out["host_key_policy"] = self.choice(
                keys["host_key_policy"], "host_key_policy", HOST_KEY_POLICIES
            )
        if "connect_timeout" in keys:
            out["connect_timeout"] = self.seconds(keys["connect_timeout"], "connect_timeout")
        return SSHFileSettings(**out)

    def jump_host(self, node: Node) -> str:
        value = self.string(node, "jump_host")
        offset = 0
        for hop in value.split(","):
            match = _HOP.fullmatch(hop)
            port = match.group("port") if match else None
            name = match.group("host") if match else ""
            if (match is None or (port is not None and not 1 <= int(port) <= MAX_PORT)
                    or (not name.startswith("[") and hostfile.dns_name_problem(name))):
                self.fail(
                    node,
                    f"expected jump_host as [user@]host[:port], hops separated by ',', "
                    f"got {clip(hop)}",
                    offset,
                )
            offset += len(hop) + 1
        return value

    def env(self, node: Node | None) -> EnvFileSettings:
        keys = self.section(node, "env", ENV_KEYS)
        out: dict[str, Any] = {}
        if "forward" in keys:
            forward = []
            for item, value in self.string_list(keys["forward"], "env.forward"):
                if not _ENV_PATTERN.fullmatch(value):
                    self.fail(
                        item,
                        "expected a variable name or glob pattern (letters, digits, '_', "
                        f"'*', '?', '[...]') in env.forward, got {refused_name(value, 60)}",
                    )
                forward.append(value)
            out["forward"] = tuple(forward)
        if "set" in keys:
            out["set"] = tuple(self.env_map(keys["set"], "env.set"))
        if "secret" in keys:
            secret = []
            for item, value in self.string_list(keys["secret"], "env.secret"):
                self.env_name(item, value, "env.secret")
                secret.append(value)
            out["secret"] = tuple(secret)
        if "file" in keys:
            out["file"] = self.path(keys["file"], "file", resolve=True)
        return EnvFileSettings(**out)


def parse_cluster_yaml(text: str, source: str, base_dir: str | None = None) -> ClusterFile:
    """Parse a cluster config; ``source`` names it in errors and in ``where``.

    Relative ``identity_file``, ``ssh.config``, ``env.file`` and ``log_dir`` paths are
    joined to ``base_dir`` (kept relative when it is None).  Raises
    :class:`~sshrun.errors.LocationError` for anything wrong.
    """
    text = text.removeprefix("\ufeff")
    root = compose(text, source)
    try:
        return _Converter(text, source, base_dir).convert(root)
    except RecursionError:
        raise LocationError(source, 1, 1, "cluster config nested too deeply") from None


def load_cluster_yaml(path: str | os.PathLike[str]) -> ClusterFile:
    """Read and parse a cluster config file; relative paths in it are taken from its directory."""
    name = os.fspath(path)
    text = read_config_text(name, "cluster config")
    return parse_cluster_yaml(text, name, os.path.dirname(os.path.abspath(name)))
