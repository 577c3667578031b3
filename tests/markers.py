"""Which markers a test must carry, judged from what it uses; a pytest plugin that checks.

A test needs

``sshd``    when it takes the ``sshd_cluster`` or ``make_sshd_cluster`` fixture, or its
            module uses tests/sshd_cluster.py (real OpenSSH nodes on loopback);
``netns``   when its module uses tests/netns_node.py (a node in its own network
            namespace: root, ``ip netns`` and iptables);
``docker``  when its module uses tests/compose_cluster.py (Docker and Compose);
``torch``   when its own code joins a path to a script that runs torch.distributed (a
            file under examples/ or tests/workers/ that imports torch, as in
            ``WORKERS / "NAME.py"``) or imports torch itself.

``slow`` is a choice, not a need: what the fast tier (``-m "not slow"``) leaves out.

Used as ``python -m pytest --collect-only -q -p markers tests``: after collection it
prints one ``missing marker: NODEID: NAME`` line for each marker a test needs and lacks
(tests/test_markers.py runs it).
"""

from __future__ import annotations

import inspect
import re
import types
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent

SSHD_FIXTURES = frozenset({"sshd_cluster", "make_sshd_cluster"})
# A helper module of tests/ -> the marker a test module that uses it needs.
HELPER_MODULES = {"sshd_cluster": "sshd", "netns_node": "netns", "compose_cluster": "docker"}


def torch_scripts() -> frozenset[str]:
    """File names of the scripts that import torch (what a torch test runs on the nodes)."""
    found = set()
    for folder in (REPO / "examples", TESTS / "workers"):
        for path in folder.glob("*.py"):
            if "import torch" in path.read_text():
                found.add(path.name)
    return frozenset(found)


def helpers_used(module: types.ModuleType) -> set[str]:
    """The tests/ helper modules whose objects ``module`` imported."""
    used = set()
    for value in vars(module).values():
        name = value.__name__ if isinstance(value, types.ModuleType) else getattr(
            value, "__module__", None)
        if name in HELPER_MODULES:
            used.add(name)
    return used


def needed(fixtures: set[str], helpers: set[str], source: str,
           scripts: frozenset[str]) -> set[str]:
    """The markers a test needs, from its fixtures, its module's helpers and its source."""
    need = {HELPER_MODULES[h] for h in helpers}
    if fixtures & SSHD_FIXTURES:
        need.add("sshd")
    joined = set(re.findall(r'/\s*"([^"]+)"', source))  # ... / "train_ddp.py"
    if "import torch" in source or joined & scripts:
        need.add("torch")
    return need


def missing(item: pytest.Item, scripts: frozenset[str]) -> set[str]:
    """The markers ``item`` needs and does not carry."""
    if not isinstance(item, pytest.Function):
        return set()
    source = inspect.getsource(item.function)
    need = needed(set(item.fixturenames), helpers_used(item.module), source, scripts)
    return {name for name in need if item.get_closest_marker(name) is None}


def pytest_collection_finish(session: pytest.Session) -> None:
    scripts = torch_scripts()
    for item in session.items:
        for name in sorted(missing(item, scripts)):
            print(f"missing marker: {item.nodeid}: {name}")
