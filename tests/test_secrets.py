"""Secrets and escapes at the command line: the dry run, error lines, ``--python``.

In-process through ``sshrun.cli.run`` (exact outputs), and through the real
program where the exit status and the one stderr line matter.
"""

from __future__ import annotations

import fnmatch
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sshrun.cli import run
from sshrun.environment import DEFAULT_FORWARD
from sshrun.plan import REDACTED

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _no_forwarded_head_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if any(fnmatch.fnmatchcase(name, p) for p in DEFAULT_FORWARD):
            monkeypatch.delenv(name)


def dry_run(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    words = list(argv)
    mode = [words.pop(0)] if words and words[0] in ("run", "exec") else []
    code = run([*mode, "--dry-run", *words])
    out, err = capsys.readouterr()
    assert (code, err) == (0, "")
    return out


def sshrun(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "sshrun", *argv], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=30)


def test_dry_run_redacts_a_secret_in_an_argument_and_in_a_second_variable(
    capsys: pytest.CaptureFixture[str]
) -> None:
    out = dry_run(capsys, "--hosts", "a", "-x", "HF_TOKEN=hf_secretvalue",
                  "-x", "COPY=hf_secretvalue", "-x", "URL=https://u:hf_secretvalue@h/x",
                  "t.py", "--token", "hf_secretvalue", "--auth=Bearer hf_secretvalue")
    assert "secretvalue" not in out
    assert f"  env:     HF_TOKEN={REDACTED}\n" in out
    assert f"  env:     COPY={REDACTED}\n" in out
    assert f"  env:     URL=https://u:{REDACTED}@h/x\n" in out
    run_line = next(line for line in out.splitlines() if line.startswith("  run:"))
    assert run_line.endswith(f" t.py --token '{REDACTED}' '--auth=Bearer {REDACTED}'")


def test_dry_run_redacts_a_multiline_secret_by_line(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    key = "-----BEGIN KEY-----\nAAAAB3NzaC1yc2EAAAADAQABAAABAQ\n-----END KEY-----"
    monkeypatch.setenv("DEPLOY_PEM", key)
    out = dry_run(capsys, "exec", "--hosts", "a", "--secret", "DEPLOY_PEM", "--",
                  "echo", "AAAAB3NzaC1yc2EAAAADAQABAAABAQ")
    assert "AAAAB3" not in out
    assert f"  run:     echo '{REDACTED}'\n" in out
    assert f"  env:     DEPLOY_PEM={REDACTED}\n" in out


def test_dry_run_exact_output_with_controls_escaped(capsys: pytest.CaptureFixture[str]) -> None:
    out = dry_run(capsys, "exec", "--hosts", "a", "-x", "MSG=one\rtwo\x1b[2J",
                  "-x", "PW_TOKEN=tok\rsecret", "-x", "ALSO=tok\rsecret", "--workdir", "/w",
                  "--", "printf", "%s\\n", "a\rb", "\u202eevil")
    lines = out.splitlines()
    assert lines[0].startswith("job ") and lines[0].endswith(": 1 node, one command each")
    job = lines[0].split()[1].rstrip(":")
    assert out == (
        f"job {job}: 1 node, one command each\n"
        "node 0: a\n"
        "  python:  python3\n"
        "  workdir: /w\n"
        "  run:     printf '%s\\n' $'a\\rb' $'\\u202eevil'\n"
        "  env:     MSG=$'one\\rtwo\\x1b[2J'\n"
        f"  env:     PW_TOKEN={REDACTED}\n"
        f"  env:     ALSO={REDACTED}\n"
        f"  env:     SSHRUN_JOB_ID={job}\n"
        "  env:     SSHRUN_NODE_RANK=0\n"
        "  env:     SSHRUN_NNODES=1\n"
        "  env:     SSHRUN_HOST=a\n"
        "  env:     SSHRUN_ATTEMPT=0\n"
    )
    assert "\r" not in out and "\x1b" not in out and "\u202e" not in out


@pytest.mark.parametrize("flag", [
    "HF_TOKEN =hf_secretvalue",  # a space before '='
    "HF-TOKEN=hf_secretvalue",  # not a name
    "HF_*=hf_secretvalue",  # a pattern with a value
])
def test_malformed_env_flag_names_the_flag_not_the_value(flag: str) -> None:
    result = sshrun("--dry-run", "--hosts", "a", "-x", flag, "t.py")
    assert result.returncode == 2
    assert "secretvalue" not in result.stdout + result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("sshrun: error: -x/--env '")
    assert "=...:" in lines[0] and "value is not shown" in lines[0]


def test_secret_flag_given_a_value_does_not_echo_it() -> None:
    result = sshrun("--dry-run", "--hosts", "a", "--secret", "HF_TOKEN=hf_secretvalue", "t.py")
    assert result.returncode == 2
    assert "secretvalue" not in result.stderr
    assert result.stderr.startswith("sshrun: error: --secret 'HF_TOKEN'=...: expected")


@pytest.mark.parametrize(("section", "shown"), [
    ("secret: ['HF_TOKEN=hf_secretvalue']", "in env.secret, got 'HF_TOKEN'=..."),
    ("forward: ['X=hf_secretvalue']", "in env.forward, got 'X'=..."),
    # Listed twice: the duplicate is found before the entry's form is checked.
    ("secret: ['HF_TOKEN=hf_secretvalue', 'HF_TOKEN=hf_secretvalue']",
     "c.yaml:3:39: 'HF_TOKEN'=... listed twice in env.secret (first at "),
])
def test_yaml_env_names_given_a_value_do_not_echo_it(tmp_path: Path, section: str,
                                                     shown: str) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(f"hosts: [a]\nenv:\n  {section}\n")
    result = sshrun("--dry-run", "-c", str(config), "t.py")
    assert result.returncode == 2
    assert "secretvalue" not in result.stderr
    assert shown in result.stderr, result.stderr
    assert len(result.stderr.splitlines()) == 1, result.stderr


@pytest.mark.parametrize("argv", [["--python=-c"], ["--python=-oProxyCommand=x"]])
@pytest.mark.parametrize("dry", [True, False])
def test_python_may_not_start_with_a_dash(argv: list[str], dry: bool) -> None:
    result = sshrun(*(["--dry-run"] if dry else []), "--hosts", "a.invalid", *argv, "t.py")
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith("sshrun: error: --python may not start with '-'")
