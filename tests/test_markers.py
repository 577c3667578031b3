"""Every test names what it needs (tests/markers.py), and the fast tier keeps a spread.

The checks run pytest's own collection in a subprocess, as a user's
``python -m pytest -m "not sshd"`` would select.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from head import REPO
from markers import needed, torch_scripts

TESTS = REPO / "tests"


def collect(*args: str, cwd: Path = REPO) -> tuple[int, list[str]]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(TESTS), str(REPO), *filter(None, [env.get("PYTHONPATH")])])
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
         "-p", "markers", *args],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=120,
    )
    return result.returncode, (result.stdout + result.stderr).splitlines()


def test_every_test_carries_the_markers_it_needs() -> None:
    code, lines = collect("tests")
    assert code == 0, "\n".join(lines[-30:])
    assert [line for line in lines if line.startswith("missing marker:")] == []
    assert any("::" in line for line in lines)  # something was collected


def test_the_check_names_each_missing_marker(tmp_path: Path) -> None:
    script = min(torch_scripts())
    (tmp_path / "test_fake.py").write_text(textwrap.dedent('''
        from pathlib import Path

        import pytest
        from netns_node import NetnsNode

        HERE = Path()

        @pytest.fixture
        def sshd_cluster() -> None:
            return None

        def test_unmarked(sshd_cluster: None) -> None:
            assert NetnsNode and HERE / "SCRIPT"

        @pytest.mark.sshd
        @pytest.mark.torch
        def test_marked(sshd_cluster: None) -> None:
            assert HERE / "SCRIPT"

        def test_names_a_script_without_running_it() -> None:
            assert "SCRIPT"

        pytestmark = [pytest.mark.slow, pytest.mark.netns]
    '''.replace("SCRIPT", script)))
    code, lines = collect("--rootdir", str(tmp_path), "test_fake.py", cwd=tmp_path)
    assert code == 0, "\n".join(lines)
    assert [line for line in lines if line.startswith("missing marker:")] == [
        "missing marker: test_fake.py::test_unmarked: sshd",
        "missing marker: test_fake.py::test_unmarked: torch",
    ]
    # Without the module's netns mark, every test in it lacks it.
    (tmp_path / "test_fake.py").write_text(
        (tmp_path / "test_fake.py").read_text().replace(", pytest.mark.netns]", "]"))
    code, lines = collect("--rootdir", str(tmp_path), "test_fake.py", cwd=tmp_path)
    assert [line for line in lines if line.endswith(": netns")] == [
        f"missing marker: test_fake.py::{name}: netns" for name in
        ("test_unmarked", "test_marked", "test_names_a_script_without_running_it")
    ]


def test_needs_from_fixtures_helpers_and_source() -> None:
    scripts = torch_scripts()
    assert {"train_ddp.py", "elastic_ddp.py"} <= scripts
    assert "flaky.py" not in scripts
    assert needed({"make_sshd_cluster", "tmp_path"}, set(), "", scripts) == {"sshd"}
    assert needed(set(), {"compose_cluster"}, "", scripts) == {"docker"}
    assert needed(set(), {"netns_node", "sshd_cluster"}, "", scripts) == {"netns", "sshd"}
    worker, plain = "elastic_ddp.py", "flaky.py"
    assert needed(set(), set(), f'run(WORKERS / "{worker}")', scripts) == {"torch"}
    assert needed(set(), set(), f'run(WORKERS  /  "{worker}")', scripts) == {"torch"}
    assert needed({"tmp_path"}, set(), f'run(WORKERS / "{plain}")', scripts) == set()
    assert needed(set(), set(), f'names = ["{worker}"]', scripts) == set()


def test_the_fast_tier_keeps_units_fuzzing_and_sshd_smoke_tests() -> None:
    code, lines = collect("tests", "-m", "not slow")
    assert code == 0, "\n".join(lines[-30:])
    files = {line.split("::")[0] for line in lines if "::" in line}
    assert {"tests/test_plan.py", "tests/test_environment.py", "tests/test_cli_fuzz.py",
            "tests/test_sshd_cluster.py", "tests/test_launch_sshd.py"} <= files
    assert "tests/test_compose.py" not in files
    assert "tests/test_blackhole.py" not in files
