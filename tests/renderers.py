"""Writers that the round-trip tests read back: test helpers, not sshrun's.

sshrun only reads hostfiles, env files and cluster configs; these write them
in a canonical form so that property tests can check ``parse(render(x)) == x``.
Each refuses a value that no file could express, using sshrun's own checks.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import yaml

from sshrun import hostfile
from sshrun.cluster_yaml import SSH_KEYS, ClusterFile
from sshrun.environment import is_valid_name
from sshrun.errors import ConfigError
from sshrun.hostfile import MAX_PORT, MAX_SLOTS, HostSpec
from sshrun.torchrun_options import BY_DEST

# --- env files ---------------------------------------------------------------------------


def render_env_file(entries: Iterable[tuple[str, str]]) -> str:
    """An env file that :func:`sshrun.envfile.parse_env_file` reads back as ``entries``.

    Every value is double-quoted with ``\\\\``, ``\\"``, ``\\n`` and ``\\r``
    escaped.
    """
    lines: list[str] = []
    for name, value in entries:
        if not is_valid_name(name):
            raise ConfigError(f"env file: {name!r}: expected a NAME")
        if "\0" in value:
            raise ConfigError(f"env file: {name}: a value cannot contain a NUL character")
        escaped = (value.replace("\\", "\\\\").replace('"', '\\"')
                   .replace("\n", "\\n").replace("\r", "\\r"))
        lines.append(f'{name}="{escaped}"\n')
    return "".join(lines)


# --- hostfiles ---------------------------------------------------------------------------


def _spec_problem(spec: HostSpec) -> str | None:
    """Why ``spec`` cannot be written so that it reads back, or None."""
    try:
        # One name or IPv6 address, no ranges: what [host] holds.
        hostfile.check_single_host(spec.host)
        if spec.user is not None:
            hostfile.check_user(spec.user)
    except hostfile.HostEntryError as err:
        return err.message
    if spec.port is not None and not 1 <= spec.port <= MAX_PORT:
        return f"port {spec.port} outside 1-{MAX_PORT}"
    if spec.slots is not None and not 1 <= spec.slots <= MAX_SLOTS:
        return f"slots {spec.slots} outside 1-{MAX_SLOTS}"
    return None


def _render_host_line(spec: HostSpec) -> str:
    problem = _spec_problem(spec)
    if problem:
        raise ValueError(f"cannot render {spec!r}: {problem}")
    user = f"{spec.user}@" if spec.user is not None else ""
    if spec.port is not None:
        hostpart = f"[{spec.host}]:{spec.port}"
    elif ":" in spec.host:
        hostpart = f"[{spec.host}]"
    else:
        hostpart = spec.host
    slots = f" slots={spec.slots}" if spec.slots is not None else ""
    return f"{user}{hostpart}{slots}"


def render_hostfile(hosts: Sequence[HostSpec]) -> str:
    """Write ``hosts`` as a canonical hostfile that parses back to equal specs.

    Raises ``ValueError`` for a spec that no hostfile line can express (bad
    characters, out-of-range numbers) or for a duplicate host.
    """
    seen: set[tuple[str, int | None]] = set()
    lines: list[str] = []
    for spec in hosts:
        key = hostfile.host_identity(spec.host, spec.port)
        if key in seen:
            raise ValueError(f"cannot render duplicate host {spec.label}")
        seen.add(key)
        lines.append(_render_host_line(spec))
    return "".join(f"{line}\n" for line in lines)


# --- cluster configs ---------------------------------------------------------------------

def _render_host(spec: HostSpec) -> dict[str, object]:
    out: dict[str, object] = {"host": spec.host}
    for name in ("user", "port", "slots", "python", "workdir", "identity_file"):
        value = getattr(spec, name)
        if value is not None:
            out[name] = value
    if spec.env:
        out["env"] = dict(spec.env)
    return out


def _nonempty(pairs: Iterable[tuple[str, object]]) -> dict[str, object]:
    return {k: v for k, v in pairs if v is not None and v != () and v != {}}


class _Dumper(yaml.SafeDumper):
    """SafeDumper that double-quotes strings holding Unicode line breaks.

    PyYAML may write U+0085, U+2028 or U+2029 raw inside a single-quoted or
    block scalar, where reading it back folds it into a space.
    """


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    if any(ch in value for ch in "\x85\u2028\u2029"):
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style='"')
    return dumper.represent_str(value)


_Dumper.add_representer(str, _represent_str)


def _plain(value: str) -> str | int:
    """A canonical decimal number as an int (written unquoted), else the string."""
    if value.isascii() and value.isdigit() and len(value) < 19 and value == str(int(value)):
        return int(value)
    return value


def _torchrun_value(name: str, value: str) -> str | int | bool:
    """A switch as a YAML boolean (its text is true/false), anything else as _plain."""
    if BY_DEST[name.replace("-", "_")].switch:
        return value == "true"
    return _plain(value)


def render_cluster_yaml(cf: ClusterFile) -> str:
    """Write ``cf`` as YAML that parses back to an equal ClusterFile.

    Every host is written as a mapping with its merged settings (no
    ``defaults`` section); ``where`` and ``source`` are not kept.
    """
    doc: dict[str, object] = {"hosts": [_render_host(h) for h in cf.hosts]}
    ssh = _nonempty((name, getattr(cf.ssh, name)) for name in SSH_KEYS)
    if ssh:
        doc["ssh"] = ssh
    env = _nonempty(
        [
            ("forward", list(cf.env.forward) or None),
            ("set", dict(cf.env.set) or None),
            ("secret", list(cf.env.secret) or None),
            ("file", cf.env.file),
        ]
    )
    if env:
        doc["env"] = env
    if cf.torchrun:
        doc["torchrun"] = {name.replace("-", "_"): _torchrun_value(name, value)
                           for name, value in cf.torchrun}
    if cf.log_dir is not None:
        doc["log_dir"] = cf.log_dir
    body = yaml.dump(
        doc, Dumper=_Dumper, sort_keys=False, allow_unicode=True, default_flow_style=False
    )
    return f"# sshrun cluster config\n{body}"
