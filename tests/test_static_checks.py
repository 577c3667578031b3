"""ruff and mypy are part of the test suite, so that the README's test command runs them."""

from __future__ import annotations

import ast
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


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def private_reaches(source: str) -> list[str]:
    """Where a module uses another sshrun module's private names (``_x``)."""
    tree = ast.parse(source)
    modules: set[str] = set()  # local names bound to sshrun modules
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("sshrun"):
            for alias in node.names:
                if _private(alias.name):
                    found.append(f"line {node.lineno}: from {node.module} import {alias.name}")
                elif node.module == "sshrun":
                    modules.add(alias.asname or alias.name)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("sshrun.") and alias.asname:
                    modules.add(alias.asname)
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                and node.value.id in modules and _private(node.attr)):
            found.append(f"line {node.lineno}: {node.value.id}.{node.attr}")
    return found


def test_private_reaches_finds_both_forms() -> None:
    source = ("from sshrun import hostfile as _h\nfrom sshrun.plan import _x, y\n"
              "_h._parse_line('a', 0)\n_h.parse_host_entry('a')\n")
    assert private_reaches(source) == [
        "line 2: from sshrun.plan import _x", "line 3: _h._parse_line"]


def test_no_module_uses_another_modules_private_names() -> None:
    """Modules talk through public functions (hostfile.parse_host_entry, not _parse_line)."""
    found = {path.name: private_reaches(path.read_text())
             for path in sorted((REPO / "sshrun").glob("*.py"))}
    assert {name: where for name, where in found.items() if where} == {}
