"""ruff and mypy are part of the test suite, so that the README's test command runs them."""

from __future__ import annotations

import subprocess
import sys

from head import REPO


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=300)


def test_ruff_clean() -> None:
    result = _run("ruff", "check", "sshrun", "tests", "examples")
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_strict_clean() -> None:
    result = _run("mypy", "sshrun")
    assert result.returncode == 0, result.stdout + result.stderr


def test_head_never_imports_torch() -> None:
    code = ("import sys, sshrun.cli, sshrun.supervisor, sshrun.local_cluster; "
            "print('torch' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=60, cwd=REPO)
    assert result.stdout.strip() == "False", result.stderr


def test_agent_is_standard_library_only() -> None:
    """The agent ships itself to nodes that have no sshrun and maybe no asyncssh."""
    code = ("import sys; before = set(sys.modules); import sshrun.agent; "
            "new = {m.split('.')[0] for m in set(sys.modules) - before}; "
            "print(sorted(new - set(sys.stdlib_module_names) - {'sshrun'}))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=60, cwd=REPO)
    assert result.stdout.strip() == "[]", result.stdout + result.stderr
