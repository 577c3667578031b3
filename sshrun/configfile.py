"""Reading a configuration file (hostfile, cluster config, env file) as text.

One place maps every way a read can fail to one clear line naming the file:
missing, a directory, unreadable, or not UTF-8 (with the line and column of
the first bad byte). A UTF-8 byte-order mark is accepted and dropped.
"""

from __future__ import annotations

import os
from pathlib import Path

from sshrun.errors import ConfigError, LocationError


def read_config_text(path: str | os.PathLike[str], kind: str) -> str:
    """The text of ``path``; ``kind`` ("hostfile", "env file", ...) names it in errors."""
    name = os.fspath(path)
    try:
        data = Path(name).expanduser().read_bytes()
    except (FileNotFoundError, NotADirectoryError):
        raise ConfigError(f"{kind} not found: {name}") from None
    except IsADirectoryError:
        raise ConfigError(f"{kind} is a directory, expected a file: {name}") from None
    except PermissionError:
        raise ConfigError(f"cannot read {kind} {name}: permission denied") from None
    except OSError as err:
        raise ConfigError(f"cannot read {kind} {name}: {err.strerror or err}") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        good = data[: err.start].decode("utf-8-sig")
        lines = good.replace("\r\n", "\n").replace("\r", "\n").split("\n")
        raise LocationError(
            name, len(lines), len(lines[-1]) + 1,
            f"invalid UTF-8 byte 0x{data[err.start]:02x}: expected a UTF-8 text file",
        ) from None
