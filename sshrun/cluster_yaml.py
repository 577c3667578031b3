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
      rdzv_backend: c10d            # static | c10d
      rdzv_endpoint: gpu01:29400
      rdzv_id: job42
      rdzv_conf: {timeout: 900}     # or the string "timeout=900"

The file is read with PyYAML's safe composer (``yaml.compose`` with
``SafeLoader``: what ``yaml.safe_load`` accepts, no Python objects), and the
node tree is converted here so that every error is a
:class:`~sshrun.errors.LocationError` naming ``file:line:column`` of the
offending key or value.  Unknown keys get a did-you-mean suggestion.  Anchors,
aliases and ``<<`` merge keys work as in ``safe_load``; top-level keys that
start with ``x-`` are ignored, so that they can hold anchors (as in Docker
Compose files).

Relative ``identity_file``, ``ssh.config`` and ``env.file`` paths are taken
relative to the YAML file's directory; paths starting with ``~`` are left for
ssh to expand; ``python`` and ``workdir`` are node paths and kept as written
(a ``~`` in ``workdir`` is expanded on the node, as for ``--workdir``). The
value checks are :mod:`sshrun.values`', shared with the command line.
Environment values may be strings, numbers or booleans and are kept as their
YAML source text (``true`` stays ``"true"``, ``0x10`` stays ``"0x10"``).
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from sshrun import hostfile, values
from sshrun.configfile import read_config_text
from sshrun.environment import refused_name
from sshrun.errors import LocationError
from sshrun.hostfile import MAX_HOSTS, MAX_SLOTS, HostSpec
from sshrun.transport import HOST_KEY_POLICIES

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


@dataclass(frozen=True)
class SSHFileSettings:
    """The ``ssh`` section; None: not given (the command line or ssh decides)."""

    config: str | None = None  # path to an OpenSSH client config
    identity_file: str | None = None
    jump_host: str | None = None  # ProxyJump syntax [user@]host[:port][,...]
    host_key_policy: str | None = None  # one of HOST_KEY_POLICIES
    connect_timeout: float | None = None  # seconds


@dataclass(frozen=True)
class EnvFileSettings:
    """The ``env`` section."""

    forward: tuple[str, ...] = ()  # names or glob patterns
    set: tuple[tuple[str, str], ...] = ()
    secret: tuple[str, ...] = ()  # names
    file: str | None = None  # an env file (absolute when loaded from a file)


@dataclass(frozen=True)
class ClusterFile:
    """A parsed cluster config; ``hosts`` already have ``defaults`` merged in."""

    source: str
    hosts: tuple[HostSpec, ...]
    ssh: SSHFileSettings = SSHFileSettings()
    env: EnvFileSettings = EnvFileSettings()
    # torchrun option (dash spelling, e.g. "nproc-per-node") -> value, in
    # TORCHRUN_KEYS order.
    torchrun: tuple[tuple[str, str], ...] = ()


TOP_KEYS = ("hosts", "defaults", "ssh", "env", "torchrun")
HOST_KEYS = ("host", "slots", "user", "port", "python", "workdir", "identity_file", "env")
DEFAULTS_KEYS = ("user", "port", "slots", "python", "workdir", "identity_file", "env")
SSH_KEYS = ("config", "identity_file", "jump_host", "host_key_policy", "connect_timeout")
ENV_KEYS = ("forward", "set", "secret", "file")
TORCHRUN_KEYS = (
    "nproc_per_node",
    "nnodes",
    "max_restarts",
    "rdzv_backend",
    "rdzv_endpoint",
    "rdzv_id",
    "rdzv_conf",
)
NPROC_WORDS = ("auto", "cpu", "gpu", "xpu")
RDZV_BACKENDS = ("static", "c10d")
MAX_PORT = 65535
MAX_RESTARTS = values.MAX_RESTARTS

_TAG = "tag:yaml.org,2002:"
_NULL = _TAG + "null"
_BOOL = _TAG + "bool"
_STR = _TAG + "str"
_MERGE = _TAG + "merge"
_SCALAR_TAGS = frozenset(_TAG + t for t in ("str", "int", "float", "bool", "null", "timestamp"))
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_ENV_PATTERN = re.compile(r"[A-Za-z0-9_*?\[\]!-]+")
_FLOAT = re.compile(r"\+?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][-+]?[0-9]+)?")
_HOP = re.compile(
    r"(?:(?P<user>[A-Za-z0-9._][A-Za-z0-9._-]*)@)?"
    r"(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._][A-Za-z0-9._-]*)"
    r"(?::(?P<port>[0-9]{1,5}))?"
)
_ENDPOINT = re.compile(
    r"(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._][A-Za-z0-9._-]*)(?::(?P<port>[0-9]{1,5}))?"
)
_CONF_KEY = re.compile(r"[A-Za-z0-9_.-]+")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_LINE_BREAK = re.compile("\r\n|[\r\n\x85\u2028\u2029]")


def _clip(text: str, limit: int = 60) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "...")


def _describe(node: Node) -> str:
    """How an error message shows a value it did not expect."""
    if isinstance(node, MappingNode):
        return "a mapping"
    if isinstance(node, SequenceNode):
        return "a list"
    if node.tag == _NULL:
        return "nothing (null)"
    if node.tag == _BOOL and isinstance(node, ScalarNode) and node.style is None:
        return f"{node.value} (a boolean; quote it to mean the string)"
    return _clip(str(node.value))


def _suggest(name: str, valid: Sequence[str]) -> str:
    match = difflib.get_close_matches(name, valid, n=1, cutoff=0.6)
    if match:
        return f"did you mean {match[0]!r}?"
    return f"expected one of {', '.join(valid)}"


def _resolve(path: str, base_dir: str | None) -> str:
    if base_dir is None or path.startswith("~") or os.path.isabs(path):
        return path
    return os.path.normpath(os.path.join(base_dir, path))


@dataclass(frozen=True)
class _Defaults:
    user: str | None = None
    port: int | None = None
    slots: int | None = None
    python: str | None = None
    workdir: str | None = None
    identity_file: str | None = None
    env: tuple[tuple[str, str], ...] = ()


class _Converter:
    """Turns the composed node tree into a ClusterFile, or raises LocationError."""

    def __init__(self, text: str, source: str, base_dir: str | None) -> None:
        self.text = text
        self.source = source
        self.base_dir = base_dir
        self.flat: dict[int, dict[str, tuple[Node, Node]]] = {}
        self.flattening: set[int] = set()

    # -- errors and positions --------------------------------------------

    def fail(self, node: Node, message: str, index: int | None = None) -> NoReturn:
        line, column = self.position(node, index)
        raise LocationError(self.source, line, column, message)

    def position(self, node: Node, index: int | None = None) -> tuple[int, int]:
        """1-based line and column of ``node``, or of character ``index`` of its value."""
        start = node.start_mark
        line, column = start.line + 1, start.column + 1
        if index is None or not isinstance(node, ScalarNode):
            return line, column
        end = node.end_mark
        raw = self.text[start.index : end.index]
        if start.line != end.line or _LINE_BREAK.search(raw):
            return line, column
        if node.style is None and raw == node.value:
            return line, column + index
        if node.style in ("'", '"') and raw[1:-1] == node.value:
            return line, column + 1 + index
        return line, column

    def ref(self, node: Node) -> str:
        line, column = self.position(node)
        return f"{self.source}:{line}:{column}"

    # -- generic node checks ------------------------------------------------

    def check_tag(self, node: Node) -> None:
        if isinstance(node, ScalarNode):
            ok = node.tag in _SCALAR_TAGS
        elif isinstance(node, SequenceNode):
            ok = node.tag == _TAG + "seq"
        else:
            ok = node.tag == _TAG + "map"
        if not ok:
            self.fail(node, f"unsupported YAML tag {node.tag!r}: expected plain YAML values")

    def is_null(self, node: Node) -> bool:
        self.check_tag(node)
        return isinstance(node, ScalarNode) and node.tag == _NULL

    def mapping(self, node: Node, section: str, valid: Sequence[str]) -> dict[str, Node]:
        """The keys of a mapping node (merges applied); unknown keys are errors."""
        pairs = self.pairs(node, section)
        result: dict[str, Node] = {}
        for name, (key, value) in pairs.items():
            if name not in valid:
                self.fail(key, f"unknown key {name!r} in {section}; {_suggest(name, valid)}")
            result[name] = value
        return result

    def pairs(self, node: Node, section: str) -> dict[str, tuple[Node, Node]]:
        """name -> (key node, value node) of a mapping, ``<<`` merges applied."""
        self.check_tag(node)
        if not isinstance(node, MappingNode):
            self.fail(node, f"expected a mapping for {section}, got {_describe(node)}")
        cached = self.flat.get(id(node))
        if cached is not None:
            return cached
        if id(node) in self.flattening:
            self.fail(node, f"recursive '<<' merge in {section}")
        self.flattening.add(id(node))
        merged: dict[str, tuple[Node, Node]] = {}
        own: dict[str, tuple[Node, Node]] = {}
        for key, value in node.value:
            if isinstance(key, ScalarNode) and key.tag == _MERGE:
                for source in self.merge_sources(value, section):
                    for name, pair in self.pairs(source, section).items():
                        merged.setdefault(name, pair)
                continue
            name = self.key_name(key, section)
            first = own.get(name)
            if first is not None:
                self.fail(
                    key,
                    f"duplicate key {name!r} in {section} (first at {self.ref(first[0])})",
                )
            own[name] = (key, value)
        self.flattening.discard(id(node))
        result = dict(merged)
        result.update(own)
        self.flat[id(node)] = result
        return result

    def merge_sources(self, node: Node, section: str) -> list[Node]:
        self.check_tag(node)
        if isinstance(node, MappingNode):
            return [node]
        if isinstance(node, SequenceNode):
            for item in node.value:
                self.check_tag(item)
                if not isinstance(item, MappingNode):
                    self.fail(item, f"expected a mapping to merge with '<<', got {_describe(item)}")
            return list(node.value)
        self.fail(
            node,
            f"expected a mapping or a list of mappings to merge with '<<' in {section}, "
            f"got {_describe(node)}",
        )

    def key_name(self, key: Node, section: str) -> str:
        self.check_tag(key)
        if not isinstance(key, ScalarNode):
            self.fail(key, f"expected a key name in {section}, got {_describe(key)}")
        return str(key.value)

    # -- scalar values ----------------------------------------------------

    def scalar(self, node: Node, what: str, expected: str) -> str:
        """The source text of a non-null scalar."""
        self.check_tag(node)
        if not isinstance(node, ScalarNode) or node.tag == _NULL:
            self.fail(node, f"expected {expected} for {what}, got {_describe(node)}")
        value = str(node.value)
        if "\x00" in value:
            self.fail(node, f"expected {expected} for {what}, got a value with a NUL character")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            self.fail(node, f"expected {expected} for {what}, got a value that is not UTF-8")
        return value

    def string(self, node: Node, what: str, *, empty_ok: bool = False) -> str:
        """A string; numbers are taken as written, an unquoted boolean is refused."""
        value = self.scalar(node, what, "a string")
        if node.tag == _BOOL and isinstance(node, ScalarNode) and node.style is None:
            self.fail(node, f"expected a string for {what}, got {_describe(node)}")
        if not value and not empty_ok:
            self.fail(node, f"expected a non-empty string for {what}, got ''")
        return value

    # The checks themselves are sshrun.values', shared with the command line;
    # these methods word them with the file position.

    def word(self, node: Node, what: str) -> str:
        """A string without whitespace or control characters."""
        value = self.string(node, what)
        try:
            return values.word(value)
        except values.BadValue as exc:
            if exc.index is not None:
                ch = value[exc.index]
                self.fail(node, f"unexpected character {ch!r} in {what} {_clip(value)}",
                          exc.index)
            self.fail(node, f"expected {exc.reason} for {what}")

    def integer(self, node: Node, what: str, low: int, high: int) -> int:
        value = self.scalar(node, what, "an integer")
        try:
            return values.whole_number(value, low, high)
        except values.BadValue as exc:
            if exc.kind in ("low", "high"):
                self.fail(node, f"expected {what} between {low} and {high}, got {_clip(value)}")
            self.fail(node, f"expected an integer for {what}, got {_describe(node)}")

    def seconds(self, node: Node, what: str) -> float:
        value = self.scalar(node, what, "a number of seconds")
        try:
            return values.seconds(value)
        except values.BadValue as exc:
            if exc.kind == "low":
                self.fail(node, f"expected a positive number of seconds for {what}, got {value}")
            if exc.kind == "high":
                self.fail(node, f"expected {exc.reason} for {what}, got {_clip(value)}")
            self.fail(node, f"expected a number of seconds for {what}, got {_describe(node)}")

    def choice(self, node: Node, what: str, valid: Sequence[str]) -> str:
        value = self.string(node, what)
        if value not in valid:
            self.fail(node, f"unknown {what} {_clip(value)}; {_suggest(value, valid)}")
        return value

    def path(self, node: Node, what: str, *, resolve: bool) -> str:
        value = self.string(node, what)
        try:
            values.node_path(value)
        except values.BadValue as exc:
            if value.startswith("-"):
                self.fail(node, f"{what} may not start with '-', got {_clip(value)}")
            assert exc.index is not None
            self.fail(
                node,
                f"unexpected control character {value[exc.index]!r} in {what} {_clip(value)}",
                exc.index,
            )
        return _resolve(value, self.base_dir) if resolve else value

    def user(self, node: Node, what: str) -> str:
        value = self.string(node, what)
        try:
            hostfile.check_user(value)
        except hostfile.HostEntryError as err:
            self.fail(node, err.message, err.index)
        return value

    def string_list(self, node: Node, what: str) -> list[tuple[Node, str]]:
        """A list of strings (a single string is a list of one)."""
        self.check_tag(node)
        if isinstance(node, MappingNode):
            self.fail(node, f"expected a list of strings for {what}, got a mapping")
        items = node.value if isinstance(node, SequenceNode) else [node]
        result: list[tuple[Node, str]] = []
        firsts: dict[str, Node] = {}
        for item in items:
            value = self.string(item, what)
            first = firsts.get(value)
            if first is not None:
                self.fail(
                    item,
                    # The name part only: an entry with a value may hold a secret.
                    f"{refused_name(value, 60)} listed twice in {what} "
                    f"(first at {self.ref(first)})",
                )
            firsts[value] = item
            result.append((item, value))
        return result

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
                f"expected a mapping with a 'hosts' list at the top level, got {_describe(root)}",
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
                    f"unknown key {name!r} in the cluster config; {_suggest(name, TOP_KEYS)}",
                )
            top[name] = value
        if "hosts" not in top:
            self.fail(root, "missing required key 'hosts': expected a non-empty list of hosts")
        defaults = self.defaults(top.get("defaults"))
        hosts = self.hosts(top["hosts"], defaults)
        ssh = self.ssh(top.get("ssh"))
        env = self.env(top.get("env"))
        torchrun = self.torchrun(top.get("torchrun"))
        return ClusterFile(self.source, tuple(hosts), ssh, env, torchrun)

    def section(self, node: Node | None, section: str, valid: Sequence[str]) -> dict[str, Node]:
        if node is None or self.is_null(node):
            return {}
        return self.mapping(node, section, valid)

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
            self.fail(node, f"expected a non-empty list of hosts for hosts, got {_describe(node)}")
        if not node.value:
            self.fail(node, "expected a non-empty list of hosts for hosts, got an empty list")
        specs: list[HostSpec] = []
        seen: dict[tuple[str, int | None], str] = {}
        for i, item in enumerate(node.value):
            section = f"hosts[{i}]"
            self.check_tag(item)
            if isinstance(item, MappingNode):
                names, host_node, host_index, own = self.host_mapping(item, section)
            elif isinstance(item, ScalarNode) and item.tag != _NULL:
                names, host_node, host_index, own = self.host_line(item, section)
            else:
                self.fail(
                    item,
                    f"expected a hostfile-style string or a mapping for {section}, "
                    f"got {_describe(item)}",
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
                f"expected a host name for host, got {_clip(text)}: give the user as 'user:'",
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
                        f"expected a host name or IPv6 address for host, got {_clip(text)}: "
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
                    f"got {_clip(hop)}",
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

    def torchrun(self, node: Node | None) -> tuple[tuple[str, str], ...]:
        if node is None or self.is_null(node):
            return ()
        given: dict[str, tuple[Node, str, Node]] = {}
        for name, (key, value) in self.pairs(node, "torchrun").items():
            canonical = name.replace("-", "_")
            if canonical not in TORCHRUN_KEYS:
                valid: tuple[str, ...] = TORCHRUN_KEYS
                if "-" in name:
                    valid = tuple(k.replace("_", "-") for k in TORCHRUN_KEYS)
                self.fail(key, f"unknown key {name!r} in torchrun; {_suggest(name, valid)}")
            first = given.get(canonical)
            if first is not None:
                self.fail(
                    key,
                    f"{canonical} given twice in torchrun: {name!r} here, {first[1]!r} at "
                    f"{self.ref(first[0])}",
                )
            given[canonical] = (key, name, value)
        result: list[tuple[str, str]] = []
        for canonical in TORCHRUN_KEYS:
            if canonical in given:
                _, name, value = given[canonical]
                text = self.torchrun_value(canonical, name, value)
                result.append((canonical.replace("_", "-"), text))
        return tuple(result)

    def torchrun_value(self, canonical: str, name: str, node: Node) -> str:
        if canonical == "nproc_per_node":
            text = self.scalar(node, name, "a positive integer or one of auto, cpu, gpu, xpu")
            if text in NPROC_WORDS:
                return text
            if not (text.isascii() and text.isdigit()):
                self.fail(
                    node,
                    f"expected a positive integer or one of {', '.join(NPROC_WORDS)} for {name}, "
                    f"got {_describe(node)}",
                )
            return str(self.integer(node, name, 1, MAX_SLOTS))
        if canonical == "nnodes":
            return self.nnodes(node, name)
        if canonical == "max_restarts":
            return str(self.integer(node, name, 0, MAX_RESTARTS))
        if canonical == "rdzv_backend":
            return self.choice(node, name, RDZV_BACKENDS)
        if canonical == "rdzv_endpoint":
            return self.endpoint(node, name)
        if canonical == "rdzv_id":
            return self.word(node, name)
        return self.rdzv_conf(node, name)

    def nnodes(self, node: Node, name: str) -> str:
        text = self.scalar(node, name, "N or MIN:MAX")
        try:
            low, high = values.nnodes(text, MAX_HOSTS)
        except values.BadValue as exc:
            if exc.kind == "low":
                self.fail(node, f"expected N or MIN:MAX with 1 <= MIN <= MAX for {name}, "
                                f"got {_clip(text)}")
            if exc.kind == "high":
                self.fail(node, f"expected {exc.reason} for {name}, got {_clip(text)}")
            self.fail(node, f"expected N or MIN:MAX for {name}, got {_describe(node)}")
        return f"{low}:{high}" if ":" in text else str(low)

    def endpoint(self, node: Node, name: str) -> str:
        text = self.string(node, name)
        match = _ENDPOINT.fullmatch(text)
        port = match.group("port") if match else None
        if match is None or (port is not None and not 1 <= int(port) <= MAX_PORT):
            self.fail(node, f"expected HOST or HOST:PORT for {name}, got {_clip(text)}")
        return text

    def rdzv_conf(self, node: Node, name: str) -> str:
        self.check_tag(node)
        items: list[tuple[str, str]] = []
        if isinstance(node, MappingNode):
            for key_name, (key, value) in self.pairs(node, name).items():
                self.conf_item(key, key_name, None, f"{name} key")
                text = self.scalar(value, f"{name}.{key_name}", "a string or number")
                self.conf_item(value, text, None, f"{name} value", value_part=True)
                items.append((key_name, text))
        else:
            text = self.string(node, name)
            offset = 0
            for piece in text.split(","):
                key_name, eq, value_text = piece.partition("=")
                if not eq:
                    self.fail(
                        node,
                        f"expected KEY=VALUE[,KEY=VALUE...] for {name}, got {_clip(text)}",
                        offset,
                    )
                self.conf_item(node, key_name, offset, f"{name} key")
                self.conf_item(
                    node, value_text, offset + len(key_name) + 1, f"{name} value", value_part=True
                )
                items.append((key_name, value_text))
                offset += len(piece) + 1
        if not items:
            self.fail(node, f"expected at least one KEY=VALUE for {name}")
        return ",".join(f"{k}={v}" for k, v in items)

    def conf_item(
        self, node: Node, text: str, index: int | None, what: str, *, value_part: bool = False
    ) -> None:
        if value_part:
            if values.conf_value_problem(text) is not None:
                self.fail(
                    node,
                    f"unexpected character in {what} {_clip(text)}: ',', '=', spaces and "
                    "control characters cannot be passed",
                    index,
                )
        elif not values.CONF_KEY.fullmatch(text):
            self.fail(
                node,
                f"expected {what} of letters, digits, '_', '.' or '-', got {_clip(text)}",
                index,
            )


def _reader_position(text: str, position: int) -> tuple[int, int]:
    before = _LINE_BREAK.split(text[:position])
    return len(before), len(before[-1]) + 1


def parse_cluster_yaml(text: str, source: str, base_dir: str | None = None) -> ClusterFile:
    """Parse a cluster config; ``source`` names it in errors and in ``where``.

    Relative ``identity_file``, ``ssh.config`` and ``env.file`` paths are
    joined to ``base_dir`` (kept relative when it is None).  Raises
    :class:`~sshrun.errors.LocationError` for anything wrong.
    """
    text = text.removeprefix("\ufeff")
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        problem = err.problem or err.context or "invalid YAML"
        if err.context and err.problem:
            if err.context.startswith("while "):
                problem = f"{err.problem} ({err.context})"
            else:
                problem = f"{err.context}, {err.problem}"
        line, column = (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)
        raise LocationError(source, line, column, f"invalid YAML: {problem}") from None
    except yaml.reader.ReaderError as err:
        line, column = _reader_position(text, err.position)
        raise LocationError(
            source, line, column, f"invalid YAML: unacceptable character #x{err.character:04x}"
        ) from None
    except yaml.YAMLError as err:
        raise LocationError(source, 1, 1, f"invalid YAML: {err}") from None
    except RecursionError:
        raise LocationError(source, 1, 1, "invalid YAML: nested too deeply") from None
    try:
        return _Converter(text, source, base_dir).convert(root)
    except RecursionError:
        raise LocationError(source, 1, 1, "cluster config nested too deeply") from None


def load_cluster_yaml(path: str | os.PathLike[str]) -> ClusterFile:
    """Read and parse a cluster config file; relative paths in it are taken from its directory."""
    name = os.fspath(path)
    text = read_config_text(name, "cluster config")
    return parse_cluster_yaml(text, name, os.path.dirname(os.path.abspath(name)))
