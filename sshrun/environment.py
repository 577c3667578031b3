"""The environment policy: which variables reach the ranks, and which are secret.

Pure functions over values: no I/O except :func:`load_env_file`.

Where a node's variables come from (a later layer wins over an earlier one)::

    1. forwarded   the head's variables matching ``forward`` (DEFAULT_FORWARD,
                   or the YAML ``env.forward`` list): set on the head -> copied,
                   unset -> skipped, no error
    2. env file    ``--env-file FILE`` / YAML ``env.file`` entries, in order
    3. set         YAML ``env.set`` values
    4. -x flags    ``-x NAME`` (the head's value; an error when unset),
                   ``-x NAME=VALUE``, ``-x 'PATTERN'`` (the head's variables
                   matching the glob), in order: a later flag wins

A name given with ``--secret NAME`` (or YAML ``env.secret``) that none of the
layers sets is forwarded from the head, so ``--secret WANDB_API_KEY`` alone is
enough; a secret that is neither set anywhere nor on the head is an error.
(Per-host values from the YAML ``hosts`` entries are layered by
:mod:`sshrun.plan`, between the shared environment and the ``-x`` flags.)

Names are ``[A-Za-z_][A-Za-z0-9_]*``.  Patterns are shell globs (``*``,
``?``, ``[...]``, ``[!...]``) matched case-sensitively against the whole
name (:func:`fnmatch.fnmatchcase`): ``NCCL_*`` matches ``NCCL_DEBUG`` but not
``XNCCL_A``, ``NCCL`` or ``nccl_debug``.

Default forwarding, ``DEFAULT_FORWARD`` (only what is set on the head)::

    NCCL_*                 NCCL tuning and debugging (NCCL_DEBUG, NCCL_SOCKET_IFNAME,
                           NCCL_IB_*); set a per-host value in the YAML where
                           interfaces differ between hosts
    TORCH_*                torch knobs: TORCH_DISTRIBUTED_DEBUG, TORCH_NCCL_*,
                           TORCH_LOGS, TORCH_SHOW_CPP_STACKTRACES, TORCH_HOME, ...
    PYTORCH_*              PYTORCH_CUDA_ALLOC_CONF, PYTORCH_NO_CUDA_MEMORY_CACHING, ...
    TORCHINDUCTOR_*        torch.compile (inductor) settings
    TORCHDYNAMO_*          torch.compile (dynamo) settings
    GLOO_*                 GLOO_SOCKET_IFNAME and other gloo settings
    UCX_*, FI_*            UCX and libfabric (AWS EFA) transports under NCCL
    OMP_NUM_THREADS, MKL_NUM_THREADS, OPENBLAS_NUM_THREADS
                           CPU threads per rank (torchrun sets OMP_NUM_THREADS=1
                           when nothing does)
    CUDA_LAUNCH_BLOCKING, CUDA_DEVICE_ORDER, CUDA_MODULE_LOADING,
    CUBLAS_WORKSPACE_CONFIG, NVIDIA_TF32_OVERRIDE
                           CUDA behaviour that should be the same on every node
    PYTHONHASHSEED, PYTHONUNBUFFERED, PYTHONFAULTHANDLER, PYTHONWARNINGS,
    PYTHONDONTWRITEBYTECODE, PYTHONIOENCODING, PYTHONUTF8
                           interpreter behaviour (not PYTHONPATH or PYTHONHOME:
                           paths of the head; name them with -x if the nodes
                           share them)
    TOKENIZERS_PARALLELISM, HF_HUB_OFFLINE, HF_DATASETS_OFFLINE, TRANSFORMERS_OFFLINE
                           Hugging Face switches (never HF_TOKEN: secrets are
                           forwarded only when named)

``CUDA_VISIBLE_DEVICES`` is deliberately absent: which GPUs a node uses is the
node's business, not a copy of the head's.

Never forwarded by a pattern, ``NEVER_FORWARD`` (neither by the defaults, nor
by ``env.forward``, nor by ``-x 'PATTERN'``; ``-x '*'`` copies everything
else): the login session's own variables (``SSH_*``, ``PWD``, ``OLDPWD``,
``SHLVL``, ``_``, ``HOME``, ``USER``, ``LOGNAME``, ``SHELL``, ``MAIL``,
``HOSTNAME``, ``PPID``, ``UID``, ``EUID``, ``BASH*``, ``SHELLOPTS``, the
prompt and history variables), the terminal's (``TERM``, ``TERMCAP``,
``DISPLAY``, ``XAUTHORITY``, ``XDG_*``, ``LS_COLORS``, ``TMUX*``, ``STY``,
``WINDOW``, ``COLUMNS``, ``LINES``, D-Bus, Kerberos), paths that are the head's
and wrong elsewhere (``PATH``, ``LD_LIBRARY_PATH``, ``LD_PRELOAD``,
``VIRTUAL_ENV``, ``CONDA_*``), per-node GPU selection
(``CUDA_VISIBLE_DEVICES``, ``NVIDIA_VISIBLE_DEVICES``, ``ROCR_VISIBLE_DEVICES``,
``HIP_VISIBLE_DEVICES``), the per-rank variables that torchrun and Slurm set
(``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``, ``TORCHELASTIC_*``,
``SLURM_*``, ...) and sshrun's own ``SSHRUN_*``.  A name given exactly
(``-x PATH``, ``env.forward: [PATH]``, a value in a file or ``env.set``) is
the user's explicit choice and is honoured; sshrun's own ``SSHRUN_JOB_ID`` and
friends are appended by the planner after everything else, so they always win.
Head variables whose names are not valid names (``BASH_FUNC_f%%``) are never
copied by a pattern.

Env files (``--env-file``), dotenv style, one assignment per line::

    # a comment line; blank lines are skipped
    NCCL_DEBUG=INFO               # unquoted: ends at whitespace + '#', stripped
    export OMP_NUM_THREADS=4      # an optional 'export ' prefix
    URL=http://x/#frag            # '#' not after whitespace is part of the value
    GREETING="hello\\n\\"world\\""   # double quotes: \\n \\r \\t \\" \\\\ \\$ escapes,
                                  #   any other backslash is kept as written
    PATTERN='C:\\dir\\*.txt'        # single quotes: literal, no escapes
    EMPTY=

Whitespace around ``=`` is allowed; a quoted value ends on its own line (write
a newline as ``\\n`` inside double quotes) and may be followed only by
whitespace and a comment.  Values are literal: no ``$VAR`` expansion.  A name
given twice keeps its first position and its last value.  A NUL character is
an error anywhere.  Every error is a :class:`~sshrun.errors.LocationError`
with the file, the 1-based line and the 1-based column (a tab is one column).

Secrets: a name is secret when it was named with ``--secret`` / ``env.secret``
or looks like one (:data:`sshrun.plan.SECRET_NAME`: ``*_KEY``, ``*TOKEN*``,
``*PASSWORD*``, ...).  :func:`redact_env` shows such values as ``<redacted>``;
:func:`redact_text` removes the secret values from any text (values shorter than
four characters are left alone in free text, where they would match far too
much; they are still hidden by :func:`redact_env`).
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass

from sshrun.configfile import read_config_text, split_lines
from sshrun.errors import ConfigError, LocationError
from sshrun.plan import REDACTED, SECRET_NAME
from sshrun.redact import Redactor

__all__ = [
    "DEFAULT_FORWARD",
    "NEVER_FORWARD",
    "REDACTED",
    "EnvPlan",
    "is_pattern",
    "is_secret_name",
    "is_valid_name",
    "load_env_file",
    "parse_env_file",
    "redact_env",
    "redact_text",
    "render_env_file",
    "resolve_env",
]

DEFAULT_FORWARD: tuple[str, ...] = (
    "NCCL_*",
    "TORCH_*",
    "PYTORCH_*",
    "TORCHINDUCTOR_*",
    "TORCHDYNAMO_*",
    "GLOO_*",
    "UCX_*",
    "FI_*",
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "CUDA_LAUNCH_BLOCKING",
    "CUDA_DEVICE_ORDER",
    "CUDA_MODULE_LOADING",
    "CUBLAS_WORKSPACE_CONFIG",
    "NVIDIA_TF32_OVERRIDE",
    "PYTHONHASHSEED",
    "PYTHONUNBUFFERED",
    "PYTHONFAULTHANDLER",
    "PYTHONWARNINGS",
    "PYTHONDONTWRITEBYTECODE",
    "PYTHONIOENCODING",
    "PYTHONUTF8",
    "TOKENIZERS_PARALLELISM",
    "HF_HUB_OFFLINE",
    "HF_DATASETS_OFFLINE",
    "TRANSFORMERS_OFFLINE",
)

NEVER_FORWARD: tuple[str, ...] = (
    # the SSH login and the shell session
    "SSH_*", "PWD", "OLDPWD", "SHLVL", "_", "HOME", "USER", "LOGNAME", "SHELL", "MAIL",
    "HOSTNAME", "HOST", "PPID", "UID", "EUID", "GROUPS", "BASH", "BASH_*", "BASHOPTS",
    "SHELLOPTS", "IFS", "HISTFILE", "HISTFILESIZE", "HISTSIZE", "HISTCONTROL",
    "PS1", "PS2", "PS3", "PS4", "PROMPT_COMMAND", "MOTD_SHOWN",
    # the terminal and the desktop
    "TERM", "TERMCAP", "COLORTERM", "DISPLAY", "XAUTHORITY", "XDG_*", "LS_COLORS",
    "TMUX", "TMUX_*", "STY", "WINDOW", "COLUMNS", "LINES", "WAYLAND_DISPLAY",
    "DBUS_SESSION_BUS_ADDRESS", "SESSION_MANAGER", "KRB5CCNAME",
    # the head's own paths and activated environments
    "PATH", "LD_LIBRARY_PATH", "LD_PRELOAD", "VIRTUAL_ENV", "CONDA_*",
    # per-node GPU selection
    "CUDA_VISIBLE_DEVICES", "NVIDIA_VISIBLE_DEVICES", "ROCR_VISIBLE_DEVICES",
    "HIP_VISIBLE_DEVICES",
    # set per rank by torchrun, per task by Slurm
    "RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "GROUP_RANK", "GROUP_WORLD_SIZE",
    "ROLE_RANK", "ROLE_NAME", "ROLE_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT",
    "TORCHELASTIC_*", "SLURM_*",
    # sshrun's own
    "SSHRUN_*",
)

# The login session's own and bash's read-only variables: never forwarded or
# set, not even when named exactly (a node's bash refuses some of them, and
# the head's values are wrong on any other machine).
SESSION_ONLY: tuple[str, ...] = (
    "SSH_*", "PWD", "OLDPWD", "SHLVL", "_", "BASH", "BASH_*", "BASHOPTS", "SHELLOPTS",
    "EUID", "UID", "PPID", "GROUPS",
)

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_PATTERN = re.compile(r"[A-Za-z0-9_*?\[\]!-]+")
_GLOB_CHARS = "*?["


@dataclass(frozen=True)
class EnvPlan:
    """What to add to every node's login environment, and which of it is secret."""

    values: tuple[tuple[str, str], ...]  # each name once, in a stable order
    secrets: frozenset[str]  # explicit secrets, and names in values that look secret

    def secret_values(self) -> frozenset[str]:
        """The non-empty values of the secret names (what to redact from text)."""
        return frozenset(v for k, v in self.values if k in self.secrets and v)


# --- names and patterns -------------------------------------------------------------------


def is_valid_name(name: str) -> bool:
    return _NAME.fullmatch(name) is not None


def is_pattern(text: str) -> bool:
    """A glob (it holds ``*``, ``?`` or ``[``) made of name characters and glob syntax."""
    return any(c in text for c in _GLOB_CHARS) and _PATTERN.fullmatch(text) is not None


def refused_name(text: str, limit: int = 40) -> str:
    """How an error shows a ``NAME[=VALUE]`` it refuses: the name part, never the value.

    ``-x 'HF_TOKEN =hf_...'`` is shown as ``'HF_TOKEN '=...``: what is wrong
    is in the name, and the value may be a secret.
    """
    name, sep, _ = text.partition("=")
    clipped = name if len(name) <= limit else name[:limit] + "..."
    return repr(clipped) + ("=..." if sep else "")


def _never(name: str) -> bool:
    return any(fnmatch.fnmatchcase(name, p) for p in NEVER_FORWARD)


def _matching(head_env: Mapping[str, str], patterns: Sequence[str]) -> list[str]:
    """The head's names matching any pattern, minus NEVER_FORWARD, sorted."""
    return [
        key for key in sorted(head_env)
        if is_valid_name(key) and not _never(key)
        and any(fnmatch.fnmatchcase(key, p) for p in patterns)
    ]


def _refuse_session(name: str, where: str) -> None:
    if any(fnmatch.fnmatchcase(name, p) for p in SESSION_ONLY):
        raise ConfigError(
            f"{where}: {name} is a login-session variable; sshrun never forwards or sets it"
        )


def _check_value(name: str, value: str, what: str) -> None:
    if "\0" in value:
        raise ConfigError(f"{what}: {name}: a value cannot contain a NUL character")


# --- resolving ----------------------------------------------------------------------------


def resolve_env(
    head_env: Mapping[str, str],
    *,
    forward: Sequence[str] = DEFAULT_FORWARD,
    flags: Sequence[str] = (),
    files: Sequence[tuple[str, str]] = (),
    set_values: Sequence[tuple[str, str]] = (),
    secrets: Sequence[str] = (),
) -> EnvPlan:
    """The environment to add on the nodes; see the module docstring for the layers.

    ``values`` holds each name once: at the position where it was first set,
    with the value of the layer that set it last.
    """
    out: dict[str, str] = {}

    # 1. forwarded: patterns and exact names, only what is set on the head
    patterns: list[str] = []
    names: list[str] = []
    for entry in forward:
        if is_valid_name(entry):
            names.append(entry)
        elif is_pattern(entry):
            patterns.append(entry)
        else:
            raise ConfigError(
                f"env.forward: {refused_name(entry)}: expected NAME or a NAME_* pattern"
            )
    for name in names:
        _refuse_session(name, "env.forward")
    chosen = set(_matching(head_env, patterns)) | {n for n in names if n in head_env}
    for key in sorted(chosen):
        out[key] = head_env[key]

    # 2. env file entries, then 3. env.set
    for where, pairs in (("--env-file", files), ("env.set", set_values)):
        for name, value in pairs:
            if not is_valid_name(name):
                raise ConfigError(f"{where}: {refused_name(name)}: expected a NAME")
            _refuse_session(name, where)
            _check_value(name, value, where)
            out[name] = value

    # 4. -x flags, in order
    for flag in flags:
        name, sep, value = flag.partition("=")
        if is_pattern(name):
            if sep:
                raise ConfigError(
                    f"-x/--env {refused_name(flag)}: a pattern cannot take a value "
                    "(the value is not shown)"
                )
            for key in _matching(head_env, [name]):
                out[key] = head_env[key]
        elif not is_valid_name(name):
            raise ConfigError(
                f"-x/--env {refused_name(flag)}: expected NAME, NAME=VALUE or a NAME_* "
                "pattern, with no space in the name" + (" (the value is not shown)" if sep else "")
            )
        elif sep:
            _refuse_session(name, "-x/--env")
            _check_value(name, value, "-x/--env")
            out[name] = value
        elif name in head_env:
            _refuse_session(name, "-x/--env")
            out[name] = head_env[name]
        else:
            _refuse_session(name, "-x/--env")
            raise ConfigError(f"-x/--env: {name} is not set on the head; use -x {name}=VALUE")

    # secrets: named, forwarded from the head when no layer set them
    for name in secrets:
        if not is_valid_name(name):
            raise ConfigError(
                f"--secret {refused_name(name)}: expected a variable's NAME (give its value "
                "with -x NAME=VALUE, an env file, or the head's environment)"
            )
        if name in out:
            continue
        if name not in head_env:
            raise ConfigError(f"--secret {name}: not set on the head nor given a value")
        out[name] = head_env[name]

    secret_names = frozenset(secrets) | {k for k in out if is_secret_name(k, ())}
    return EnvPlan(tuple(out.items()), frozenset(secret_names))


# --- secrets ------------------------------------------------------------------------------


def is_secret_name(name: str, secrets: Collection[str]) -> bool:
    """Named as a secret, or a name that looks secret (``*_KEY``, ``*TOKEN*``, ...)."""
    return name in secrets or SECRET_NAME.search(name) is not None


def redact_env(
    values: Mapping[str, str] | Iterable[tuple[str, str]], secrets: Collection[str]
) -> list[tuple[str, str]]:
    """The same pairs, in order, with every secret name's value shown as ``<redacted>``."""
    items = values.items() if isinstance(values, Mapping) else values
    return [(k, REDACTED if is_secret_name(k, secrets) else v) for k, v in items]


def redact_text(text: str, secret_values: Collection[str]) -> str:
    """``text`` with every occurrence of each secret value (4 characters or more) redacted.

    A value that contains or overlaps another is removed whole; a multi-line
    value also line by line (:class:`sshrun.redact.Redactor`).
    """
    return Redactor(secret_values).redact(text)


# --- env files ----------------------------------------------------------------------------

_WS = " \t"
_ESCAPES = {"n": "\n", "r": "\r", "t": "\t", '"': '"', "\\": "\\", "$": "$"}
_EXPECTED = "expected NAME=VALUE"


class _LineError(Exception):
    def __init__(self, index: int, message: str) -> None:
        super().__init__(message)
        self.index = index
        self.message = message


def _skip_ws(line: str, i: int) -> int:
    while i < len(line) and line[i] in _WS:
        i += 1
    return i


def _rest_is_comment(line: str, i: int) -> None:
    i = _skip_ws(line, i)
    if i < len(line) and line[i] != "#":
        # One character, never the rest of the line: that may be the rest of a secret.
        raise _LineError(
            i, f"{_EXPECTED}: unexpected {line[i]!r} after the closing quote "
               "(only a # comment may follow)"
        )


def _double_quoted(line: str, start: int) -> tuple[str, int]:
    """The value of a double-quoted string opening at ``start``, and the index after it."""
    out: list[str] = []
    i = start + 1
    while i < len(line):
        c = line[i]
        if c == '"':
            return "".join(out), i + 1
        if c == "\\" and i + 1 < len(line):
            nxt = line[i + 1]
            out.append(_ESCAPES.get(nxt, "\\" + nxt))
            i += 2
            continue
        out.append(c)
        i += 1
    raise _LineError(
        start, f"{_EXPECTED}: unterminated '\"' quote (a quoted value ends on its line; "
               "write a newline as \\n)"
    )


def _single_quoted(line: str, start: int) -> tuple[str, int]:
    end = line.find("'", start + 1)
    if end < 0:
        raise _LineError(
            start, f"{_EXPECTED}: unterminated \"'\" quote (a quoted value ends on its line)"
        )
    return line[start + 1:end], end + 1


def _unquoted(line: str, start: int) -> str:
    """An unquoted value starting at a non-blank ``start``: up to whitespace + '#'."""
    end = len(line)
    for k in range(start + 1, len(line)):
        if line[k] == "#" and line[k - 1] in _WS:
            end = k
            break
    return line[start:end].strip(_WS)


def _parse_line(line: str) -> tuple[str, str] | None:
    nul = line.find("\0")
    if nul >= 0:
        raise _LineError(nul, f"{_EXPECTED}: a NUL character cannot appear in an env file")
    i = _skip_ws(line, 0)
    if i == len(line) or line[i] == "#":
        return None
    if line.startswith("export", i) and i + 6 < len(line) and line[i + 6] in _WS:
        j = _skip_ws(line, i + 6)
        if j < len(line) and _NAME.match(line, j):
            i = j
    match = _NAME.match(line, i)
    if match is None:
        raise _LineError(
            i, f"{_EXPECTED}: a name starts with a letter or '_', not {line[i]!r}"
        )
    name = match.group()
    i = match.end()
    if i < len(line) and line[i] not in _WS and line[i] != "=":
        raise _LineError(i, f"{_EXPECTED}: {line[i]!r} cannot appear in a name")
    i = _skip_ws(line, i)
    if i == len(line) or line[i] != "=":
        raise _LineError(i, f"{_EXPECTED}: missing '=' after {name}")
    after_eq = i + 1
    i = _skip_ws(line, after_eq)
    if i == len(line):
        return name, ""
    if line[i] == '"':
        value, end = _double_quoted(line, i)
        _rest_is_comment(line, end)
        return name, value
    if line[i] == "'":
        value, end = _single_quoted(line, i)
        _rest_is_comment(line, end)
        return name, value
    if line[i] == "#" and i > after_eq:
        return name, ""  # "A= # comment"; "A=#x" is the value "#x"
    return name, _unquoted(line, i)


def parse_env_file(text: str, source: str) -> list[tuple[str, str]]:
    """The assignments of an env file, each name once (first position, last value).

    Raises :class:`~sshrun.errors.LocationError` (a ``ConfigError``) naming
    ``source``, the line and the column of the first problem.
    """
    if text.startswith("\ufeff"):
        text = text[1:]
    out: dict[str, str] = {}
    # Line breaks as in hostfiles: \n, \r\n and an old Mac's lone \r.
    for number, line in enumerate(split_lines(text), start=1):
        try:
            entry = _parse_line(line)
        except _LineError as err:
            raise LocationError(source, number, err.index + 1, err.message) from None
        if entry is not None:
            out[entry[0]] = entry[1]
    return list(out.items())


def load_env_file(path: str) -> list[tuple[str, str]]:
    """Read and parse an env file; errors name ``path`` as given."""
    text = read_config_text(path, "env file")
    return parse_env_file(text, path)


def render_env_file(entries: Iterable[tuple[str, str]]) -> str:
    """An env file that :func:`parse_env_file` reads back as ``entries``.

    Every value is double-quoted with ``\\\\``, ``\\"``, ``\\n`` and ``\\r``
    escaped.
    """
    lines: list[str] = []
    for name, value in entries:
        if not is_valid_name(name):
            raise ConfigError(f"env file: {name!r}: expected a NAME")
        _check_value(name, value, "env file")
        escaped = (value.replace("\\", "\\\\").replace('"', '\\"')
                   .replace("\n", "\\n").replace("\r", "\\r"))
        lines.append(f'{name}="{escaped}"\n')
    return "".join(lines)
