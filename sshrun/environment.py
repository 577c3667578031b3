"""The environment policy: which variables reach the ranks, and which are secret.

Pure functions over values, no I/O.

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

Env files (``--env-file``, YAML ``env.file``) are read by
:mod:`sshrun.envfile`; which names are secret, and how their values are
hidden, is :mod:`sshrun.redact`'s.
"""

from __future__ import annotations

import fnmatch
import functools
import re
from collections.abc import Callable, Mapping, Sequence

from sshrun.errors import ConfigError
from sshrun.frozen_dataclass import frozen_dataclass
from sshrun.redact import is_secret_name

__all__ = [
    "DEFAULT_FORWARD",
    "NAME",
    "NEVER_FORWARD",
    "SESSION_ONLY",
    "EnvPlan",
    "is_pattern",
    "is_valid_name",
    "refused_name",
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

# A variable's name, here and in env files (sshrun.envfile).
NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_PATTERN = re.compile(r"[A-Za-z0-9_*?\[\]!-]+")
_GLOB_CHARS = "*?["


@frozen_dataclass
class EnvPlan:
    """What to add to every node's login environment, and which of it is secret."""

    values: tuple[tuple[str, str], ...]  # each name once, in a stable order
    secrets: frozenset[str]  # explicit secrets, and names in values that look secret


# --- names and patterns -------------------------------------------------------------------


def is_valid_name(name: str) -> bool:
    return NAME.fullmatch(name) is not None


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


@functools.cache
def _any_of(patterns: tuple[str, ...]) -> Callable[[str], bool]:
    """One test for "matches one of these fnmatch patterns" (``fnmatchcase``): a job
    matches every head variable against dozens of patterns, ~10 ms of start-up pattern
    by pattern, and ~2 ms more to compile them as one regex. Nearly all are names or
    ``PREFIX*``, a set and a ``startswith``; only the rest are compiled."""
    exact: set[str] = set()
    prefixes: list[str] = []
    others: list[str] = []
    for p in patterns:
        if not any(c in p for c in _GLOB_CHARS):
            exact.add(p)
        elif p.endswith("*") and not any(c in p[:-1] for c in _GLOB_CHARS):
            prefixes.append(p[:-1])
        else:
            others.append(p)
    starts = tuple(prefixes)
    rest = (re.compile("|".join(f"(?:{fnmatch.translate(p)})" for p in others)).match
            if others else None)

    def matches(name: str) -> bool:
        return (name in exact or name.startswith(starts)
                or (rest is not None and rest(name) is not None))

    return matches


def _matching(head_env: Mapping[str, str], patterns: Sequence[str]) -> list[str]:
    """The head's names matching any pattern, minus NEVER_FORWARD, sorted."""
    never, wanted = _any_of(NEVER_FORWARD), _any_of(tuple(patterns))
    return [key for key in sorted(head_env)
            if is_valid_name(key) and not never(key) and wanted(key)]


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
