"""What the node's interpreter has, found cheaply: torch's and CUDA's versions, modules.

The agent says hello with these before the head sends anything else, and its
whole start is held to a few tens of milliseconds of CPU. So nothing here
imports torch (about a second) or a module it asks about: presence is
``importlib.util.find_spec`` on a top-level name (as ``_find_spec`` asks
the finders itself: importing ``importlib.util`` costs a node ~3 ms), which
only looks along ``sys.path``; torch's versions are read as text from ``torch/version.py``,
which torch's build writes (``__version__ = '2.13.0+cpu'``,
``cuda: Optional[str] = None``). ``importlib.metadata``, which reads
distribution records, is asked only when that file says no version.

The agent runs under ``python -S`` (``sshrun.session.remote_command``): the
``site`` module's ``.pth`` files import what they name (editable installs'
finders, setuptools' hooks, certifi), which cost an interpreter ~30 ms of
CPU here and more in a large conda environment, and the agent needs none of
it. Where hello's answers decide what is refused (a torchrun job, ``sshrun
check``: ``Preflight.site``) the agent runs ``load_site()`` first, and the
answers are the job's interpreter's. Otherwise (exec) a name is looked for
first in the site directories as ``site`` would add them, without running
any ``.pth`` file or ``sitecustomize``; only a name not found there (or
torch's version from its distribution record) makes the agent run
``site.main()`` and look again along the whole path. In a virtual
environment (a ``pyvenv.cfg`` beside the interpreter) ``site`` alone knows
the directories (the environment's, and the system's or not), so there the
agent runs ``site.main()`` before it looks.

Standard library only, Python 3.8.
"""

from __future__ import annotations

import importlib.machinery
import os
import sys

# typing is ~3 ms to import on a node; its names are the type checker's only.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable
    from typing import Any

# The top-level assignments read from torch/version.py, annotated or not.
_NAMES = ("__version__", "cuda")
_MAX_READ = 65536


def _site_dirs() -> list[str] | None:
    """The site directories ``site`` would add (the user's, then the system's), unread;
    None in a virtual environment, whose own rules (``pyvenv.cfg``) only ``site`` applies."""
    import site

    exe_dir = os.path.dirname(os.path.abspath(sys.executable))
    for folder in (exe_dir, os.path.dirname(exe_dir)):
        if os.path.isfile(os.path.join(folder, "pyvenv.cfg")):
            return None
    if "__PYVENV_LAUNCHER__" in os.environ:
        return None
    dirs = site.getsitepackages()
    if (not sys.flags.no_user_site and os.geteuid() == os.getuid()
            and os.getegid() == os.getgid()):
        dirs.insert(0, site.getusersitepackages())
    return dirs


_site_loaded = False


def _site_skipped() -> bool:
    """Under ``-S``, and ``load_site`` has not run yet."""
    return bool(sys.flags.no_site) and not _site_loaded


def load_site() -> None:
    """What ``python`` without ``-S`` does at start: the site directories and their .pth files."""
    global _site_loaded
    if _site_skipped():
        import site

        _site_loaded = True
        site.main()


def _find_spec(name: str) -> Any:
    """``importlib.util.find_spec(name)`` for a top-level name: an imported module's
    spec, else the first that a finder on ``sys.meta_path`` gives."""
    if name in sys.modules:
        module = sys.modules[name]
        if module is None:
            return None
        spec = module.__spec__
        if spec is None:
            raise ValueError(f"{name}.__spec__ is None")
        return spec
    for finder in sys.meta_path:
        find = getattr(finder, "find_spec", None)
        if find is not None:
            spec = find(name, None)
            if spec is not None:
                return spec
    return None


def _find(name: str) -> Any:
    """``name``'s spec, or None; a finder that breaks counts as not finding it."""
    try:
        spec = _find_spec(name)
        if spec is None and _site_skipped():
            dirs = _site_dirs()
            spec = importlib.machinery.PathFinder.find_spec(name, dirs) if dirs else None
            if spec is None:
                load_site()
                spec = _find_spec(name)
        return spec
    except Exception:
        # ValueError (a module without __spec__), ImportError from a custom
        # finder, or anything a half-installed package's hook raises: the
        # module cannot be imported either.
        return None


def has_modules(names: Iterable[str]) -> dict[str, bool]:
    """Whether each top-level module could be imported, without importing it."""
    return {name: _find(name) is not None for name in names}


def _literal(text: str) -> str | None:
    """A quoted string's text; None for ``None`` or anything else."""
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        return text[1:-1]
    return None


def _assignments(text: str) -> dict[str, str | None]:
    """``NAME = 'value'`` and ``NAME: type = 'value'`` lines of ``_NAMES``, the last of
    each, as ``_literal`` reads the value (no ``re``: importing it costs a node ~3 ms)."""
    found: dict[str, str | None] = {}
    for line in text.split("\n"):
        for name in _NAMES:
            if not line.startswith(name):
                continue
            rest = line[len(name):].lstrip(" \t\r\f\v")
            if rest.startswith(":"):
                rest = rest[rest.find("="):] if "=" in rest else ""
            value = rest[1:].strip(" \t") if rest.startswith("=") else ""
            if value:
                found[name] = _literal(value)
    return found


def torch_versions() -> tuple[bool, str | None, str | None]:
    """Whether torch is importable, its version, and the CUDA version it was built with."""
    spec = _find("torch")
    if spec is None:
        return False, None, None
    found: dict[str, str | None] = {}
    for folder in spec.submodule_search_locations or ():
        try:
            with open(os.path.join(folder, "version.py"), encoding="utf-8") as f:
                text = f.read(_MAX_READ)
        except (OSError, ValueError):
            continue
        found = _assignments(text)
        break
    version = found.get("__version__")
    if version is None:
        version = _distribution_version("torch")
    return True, version, found.get("cuda")


def _distribution_version(name: str) -> str | None:
    try:
        load_site()
        import importlib.metadata as metadata
        return metadata.version(name)
    except Exception:
        return None
