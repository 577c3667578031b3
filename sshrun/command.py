"""The ``sshrun`` command's first step, before the rest of sshrun is imported.

A command that starts, runs one job and exits pays for Python's cyclic
garbage collector on what its imports made: ~45,000 objects (asyncssh,
cryptography, asyncio, sshrun) that live as long as the process, scanned by
~25 ms of collections during the imports and again at exit, ~70 ms of the
head's CPU in all (docs/benchmarks.md, "The head's fixed cost"). So the
collector is paused while everything a job needs is imported, what the
imports made is moved to the permanent generation (``gc.freeze``: never
scanned again), and the collector runs as usual for the job itself.

``sshrun.launch()`` from Python does none of this: the caller's process is
the caller's.
"""

from __future__ import annotations

import gc


def main() -> None:
    paused = gc.isenabled()
    gc.disable()
    try:
        from sshrun import cli, launcher  # noqa: F401 (launcher: what every job imports)
    finally:
        gc.freeze()
        if paused:
            gc.enable()
    cli.main()
