"""The ``ssh``, ``env`` and ``sync`` sections of a cluster config, as values.

Apart from ``sshrun.cluster_yaml``, which fills them from a YAML file, so
that a run without ``-c`` builds their empty defaults without importing the
YAML reader (PyYAML and the schema: ~20 ms of every start-up).
"""

from __future__ import annotations

from sshrun.frozen_dataclass import frozen_dataclass

__all__ = ["EnvFileSettings", "SSHFileSettings", "SyncFileSettings"]


@frozen_dataclass
class SSHFileSettings:
    """The ``ssh`` section; None: not given (the command line or ssh decides)."""

    config: str | None = None  # path to an OpenSSH client config
    identity_file: str | None = None
    jump_host: str | None = None  # ProxyJump syntax [user@]host[:port][,...]
    host_key_policy: str | None = None  # one of HOST_KEY_POLICIES
    connect_timeout: float | None = None  # seconds


@frozen_dataclass
class EnvFileSettings:
    """The ``env`` section."""

    forward: tuple[str, ...] = ()  # names or glob patterns
    set: tuple[tuple[str, str], ...] = ()
    secret: tuple[str, ...] = ()  # names
    file: str | None = None  # an env file (absolute when loaded from a file)


@frozen_dataclass
class SyncFileSettings:
    """The ``sync`` section: ``--sync``'s settings; each host's ``workdir`` is its copy."""

    dir: str  # on the head (absolute when loaded from a file)
    exclude: tuple[str, ...] = ()
    include: tuple[str, ...] = ()
    max_size: str | None = None  # as --sync-max-size takes it
    bwlimit: str | None = None  # as --sync-bwlimit takes it
