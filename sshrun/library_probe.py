"""asyncssh's look for liboqs, answered without running gcc and ld when there is none.

Importing asyncssh asks ``ctypes.util.find_library`` for ``oqs`` and then
``liboqs`` (for the sntrup761 key exchange). On Linux each question runs
``ldconfig -p``, then ``gcc -Wl,-t -l<name>`` (which runs collect2 and ld),
then ``ld -t``: ten processes, ~45 ms of the head's CPU at every start
(docs/benchmarks.md, "The head's fixed cost"), nearly all of them to learn
that liboqs is not installed, which is the common case.

``install()`` wraps ``find_library`` so that those two names, and only
those, are answered ``None`` at once when no file named ``lib<name>.*`` is
anywhere the dynamic loader or the linker would look: the loader's cache
(``/etc/ld.so.cache``, searched as bytes), ``LD_LIBRARY_PATH``,
``LIBRARY_PATH`` and the default directories. Wherever such a file is, or
where there is no loader cache to search (not glibc), the question goes to
the real ``find_library``, so the answer is always the one it would give.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

_NAMES = ("oqs", "liboqs")
LOADER_CACHE = "/etc/ld.so.cache"
DEFAULT_DIRS = ("/lib", "/usr/lib", "/lib64", "/usr/lib64", "/usr/local/lib",
                "/usr/local/lib64")


def might_exist(name: str, cache: str = LOADER_CACHE,
                environ: dict[str, str] | os._Environ[str] = os.environ,
                default_dirs: tuple[str, ...] = DEFAULT_DIRS) -> bool:
    """Whether a ``lib<name>.*`` may be found: False only when it certainly is not."""
    stem = f"lib{name}."
    try:
        with open(cache, "rb") as f:
            if stem.encode() in f.read():
                return True
    except OSError:
        return True  # no glibc loader cache: let find_library look its own way
    dirs = [*environ.get("LD_LIBRARY_PATH", "").split(":"),
            *environ.get("LIBRARY_PATH", "").split(":"), *default_dirs]
    for directory in dirs:
        try:
            if any(entry.startswith(stem) for entry in os.listdir(directory or ".")):
                return True
        except OSError:
            continue
    return False


def install() -> None:
    """Wrap ``ctypes.util.find_library`` (once, Linux only; see the module docstring)."""
    if sys.platform != "linux":
        return
    import ctypes.util

    real: Callable[[str], str | None] = ctypes.util.find_library
    if getattr(real, "_sshrun_probe", False):
        return

    def find_library(name: str) -> str | None:
        if name in _NAMES and not might_exist(name):
            return None
        return real(name)

    find_library._sshrun_probe = True  # type: ignore[attr-defined]
    find_library.__doc__ = real.__doc__
    ctypes.util.find_library = find_library
