"""Reading a configuration file (hostfile, cluster config, env file, ssh files).

One place maps every way a read can fail to one clear line naming the file:
missing, a directory, not a regular file (a FIFO, a device such as
``/dev/zero``), larger than ``MAX_CONFIG_BYTES``, unreadable, or not UTF-8
(with the line and column of the first bad byte). A UTF-8 byte-order mark is
accepted and dropped.

The file is opened non-blocking, so that a FIFO never blocks the open, and
checked with ``fstat`` on the open descriptor before anything is read; at most
``MAX_CONFIG_BYTES + 1`` bytes are ever read.
"""

from __future__ import annotations

import os
import stat

from sshrun.errors import ConfigError, LocationError, shown

MAX_CONFIG_BYTES = 16 * 1024 * 1024  # 16 MiB: far beyond any real cluster's files


def read_config_bytes(path: str | os.PathLike[str], kind: str,
                      limit: int = MAX_CONFIG_BYTES) -> bytes:
    """The bytes of the regular file ``path``; ``kind`` ("hostfile", ...) names it in errors."""
    full = os.path.expanduser(os.fspath(path))
    name = shown(os.fspath(path))  # how messages name it: one printable line
    if not name:
        raise ConfigError(f"{kind}: expected a path, got an empty string")
    try:
        fd = os.open(full, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except (FileNotFoundError, NotADirectoryError):
        raise ConfigError(f"{kind} not found: {name}") from None
    except IsADirectoryError:
        raise ConfigError(f"{kind} is a directory, expected a file: {name}") from None
    except PermissionError:
        raise ConfigError(f"cannot read {kind} {name}: permission denied") from None
    except (OSError, ValueError) as err:
        reason = err.strerror if isinstance(err, OSError) and err.strerror else str(err)
        raise ConfigError(f"cannot read {kind} {name}: {reason}") from None
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise ConfigError(f"{kind} is a directory, expected a file: {name}")
        if not stat.S_ISREG(mode):
            raise ConfigError(
                f"{kind} is not a regular file ({_file_type(mode)}): {name}; "
                "give the path of a file"
            )
        chunks: list[bytes] = []
        size = 0
        while size <= limit:
            chunk = os.read(fd, min(1 << 20, limit + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        if size > limit:
            raise ConfigError(
                f"{kind} {name} is larger than the limit of {limit // (1024 * 1024)} MiB"
            )
        return b"".join(chunks)
    except OSError as err:
        raise ConfigError(f"cannot read {kind} {name}: {err.strerror or err}") from None
    finally:
        os.close(fd)


def _file_type(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a file"


def read_config_text(path: str | os.PathLike[str], kind: str) -> str:
    """The text of ``path``; ``kind`` ("hostfile", "env file", ...) names it in errors."""
    name = os.fspath(path)
    data = read_config_bytes(name, kind)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        good = data[: err.start].decode("utf-8-sig")
        lines = split_lines(good)
        raise LocationError(
            name, len(lines), len(lines[-1]) + 1,
            f"invalid UTF-8 byte 0x{data[err.start]:02x}: expected a UTF-8 text file",
        ) from None


def split_lines(text: str) -> list[str]:
    """Lines broken as Python's universal newlines do (``\\n``, ``\\r\\n`` and a lone ``\\r``).

    Line numbers then match what an editor shows for Unix, Windows and old Mac files.
    """
    return text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
