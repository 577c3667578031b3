"""The examples in docs/api.md run, as they are, from the repository root."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
from head import REPO

BLOCKS = re.findall(r"```python\n(.*?)```", (REPO / "docs" / "api.md").read_text(), re.S)


def test_docs_have_the_three_examples() -> None:
    assert len(BLOCKS) == 3
    assert "sshrun.launch(" in BLOCKS[0]
    assert "for lr in" in BLOCKS[1]
    assert "launcher.arun(" in BLOCKS[2] and "asyncio.run(" in BLOCKS[2]


@pytest.mark.torch
@pytest.mark.parametrize("index", range(3), ids=["script", "sweep", "arun"])
def test_docs_example_runs(index: int) -> None:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    env.pop("SSH_AUTH_SOCK", None)
    done = subprocess.run([sys.executable, "-c", BLOCKS[index]], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout + done.stderr
    if index == 0:
        assert sorted(line for line in done.stdout.splitlines() if "lr" in line) == [
            f"node{n // 2 + 1} r{n} | rank {n} of 4: lr 0.5" for n in range(4)]
    if index == 1:
        assert re.findall(r"^lr (\S+): exit 0 in", done.stdout, re.M) == [
            "0.1", "0.01", "0.001"], done.stdout
