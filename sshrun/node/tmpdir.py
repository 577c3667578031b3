"""The agent's private directory: made as ``tempfile.mkdtemp`` makes one, removed at the end.

Without ``tempfile`` and ``shutil``: importing the two costs every node about
4 ms of CPU for every job (docs/benchmarks.md, "Agent cost on a node"), for
two calls that ``os`` does as well here.

Runs on the node: standard library only, Python 3.8.
"""

from __future__ import annotations

import os

# Where to put it, in tempfile.gettempdir's order: the environment's choice first.
_ENV = ("TMPDIR", "TEMP", "TMP")
_DIRS = ("/tmp", "/var/tmp", "/usr/tmp")


def make_tmpdir(prefix: str = "sshrun-") -> str:
    """A new directory that only this user can enter (0700), under the first usable base."""
    bases = [os.environ.get(name, "") for name in _ENV] + list(_DIRS)
    bases.append(os.getcwd())
    for base in bases:
        if not base:
            continue
        for _ in range(100):
            path = os.path.join(os.path.abspath(base), prefix + os.urandom(8).hex())
            try:
                os.mkdir(path, 0o700)
                return path
            except FileExistsError:
                continue  # someone's name: draw another
            except OSError:
                break  # not writable, not there: the next base
    raise OSError("no usable temporary directory (tried $TMPDIR, $TEMP, $TMP, /tmp, "
                  "/var/tmp, /usr/tmp and the working directory)")


def remove_tree(path: str) -> None:
    """Remove ``path`` and what it holds, as far as possible; never raises."""
    for root, dirs, files in os.walk(path, topdown=False):
        for name in files:
            try:
                os.unlink(os.path.join(root, name))
            except OSError:
                pass
        for name in dirs:
            sub = os.path.join(root, name)
            try:
                # A link to a directory is listed with the directories: unlink it, never
                # what it points to.
                if os.path.islink(sub):
                    os.unlink(sub)
                else:
                    os.rmdir(sub)
            except OSError:
                pass
    try:
        os.rmdir(path)
    except OSError:
        pass
