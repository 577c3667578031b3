"""sshrun: launch torchrun across a cluster over SSH and treat it as one job.

``sshrun.launch(...)``, ``sshrun.Launcher`` and ``sshrun.JobResult`` are the
Python API (docs/api.md). They are imported on first use, so that
``import sshrun`` stays light (and the node agent, shipped from this package,
stays standard library only).
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["AttemptResult", "ConfigError", "JobResult", "Launcher", "RankExit",
           "SshrunError", "launch"]

_HOMES = {
    "launch": "sshrun.api", "Launcher": "sshrun.api",
    "JobResult": "sshrun.result", "AttemptResult": "sshrun.result",
    "RankExit": "sshrun.result",
    "ConfigError": "sshrun.errors", "SshrunError": "sshrun.errors",
}

if "asyncssh" not in sys.modules:
    # Before asyncssh is imported: its look for liboqs runs ten processes (sshrun.library_probe).
    from sshrun import library_probe

    library_probe.install()

if TYPE_CHECKING:
    from sshrun.api import Launcher, launch
    from sshrun.errors import ConfigError, SshrunError
    from sshrun.result import AttemptResult, JobResult, RankExit


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'sshrun' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(home), name)
