"""docs/migrating.md: every sshrun command in it runs (as a dry run), every sshrun flag
it names exists, and every torchrun flag it maps is one torchrun has."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from sshrun.cli import build_parser

DOC = Path(__file__).resolve().parent.parent / "docs" / "migrating.md"
TEXT = DOC.read_text()


def sshrun_commands() -> list[str]:
    blocks = [b.replace("\\\n", " ").strip() for b in re.findall(r"```bash\n(.*?)```", TEXT, re.S)]
    # Inline ones that are whole commands, not a mention (`sshrun exec`).
    inline = [c for c in re.findall(r"`(sshrun [^`]+)`", TEXT) if len(c.split()) > 3]
    return [c for c in blocks + inline if c.startswith("sshrun ")]


def test_the_page_has_commands() -> None:
    assert len(sshrun_commands()) >= 6


@pytest.mark.parametrize("command", sshrun_commands())
def test_every_sshrun_command_runs_as_a_dry_run(command: str, tmp_path: Path) -> None:
    (tmp_path / "hosts.txt").write_text("gpu01 slots=8\ngpu02 slots=8\n")
    argv = shlex.split(command)[1:]
    argv.insert(1 if argv[0] == "exec" else 0, "--dry-run")
    done = subprocess.run([sys.executable, "-m", "sshrun", *argv], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, (command, done.stderr)
    assert done.stdout.startswith("job "), done.stdout


def flags_of(mode: str) -> set[str]:
    return {s for action in build_parser(mode)._actions for s in action.option_strings}


def test_every_sshrun_flag_named_exists() -> None:
    known = flags_of("run") | flags_of("exec")
    # The sshrun column of each table (the commands themselves run above).
    cells = [row.split("|")[2] for row in TEXT.splitlines()
             if row.startswith("| ") and row.count("|") >= 3]
    named = {flag for text in cells for flag in re.findall(r"`[^`]*`", text)
             for flag in re.findall(r"(?<![\w-])(--?[a-z][a-z0-9-]*)", flag)}
    assert len(named) > 10
    assert named - known == set()


@pytest.mark.torch
def test_every_torchrun_flag_mapped_is_torchruns() -> None:
    from torch.distributed.run import get_args_parser

    torchrun_flags = {s for a in get_args_parser()._actions for s in a.option_strings}
    section = TEXT[TEXT.index("## torchrun by hand"):TEXT.index("## pdsh + torchrun")]
    first_column = [row.split("|")[1] for row in section.splitlines()
                    if row.startswith("| `-")]
    named = {f for cell in first_column for f in re.findall(r"(--?[a-z][a-z0-9-]*)", cell)}
    assert named and named - torchrun_flags == set()
