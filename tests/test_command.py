"""sshrun.command, the `sshrun` command's first step: imports with the collector paused."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_the_console_script_and_python_m_start_there() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert project["project"]["scripts"]["sshrun"] == "sshrun.command:main"
    assert "from sshrun.command import main" in (REPO / "sshrun" / "__main__.py").read_text()


def test_the_job_runs_with_the_collector_on_and_the_imports_frozen() -> None:
    code = ("import gc, sys\n"
            "from sshrun import command\n"
            "sys.argv = ['sshrun', 'exec', '--help']\n"
            "try:\n"
            "    command.main()\n"
            "except SystemExit as exc:\n"
            "    assert exc.code == 0, exc.code\n"
            "print(gc.isenabled(), gc.get_freeze_count() > 10000,\n"
            "      'asyncssh' in sys.modules and 'sshrun.launcher' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[-1] == "True True True"
