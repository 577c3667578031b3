"""Fuzz the command line: argv drawn from sshrun's own option table, with hostile values.

The options come from ``cli.build_parser("run")`` and ``("exec")`` themselves,
so that an option added later is fuzzed without touching this file. Every
value is hostile (inf, nan, -0, huge and 5,000-digit numbers, empty strings,
leading dashes, control characters and escapes, surrogates, very long
strings, paths to a FIFO, /dev/zero, a directory, a missing file). Whatever
comes out, the exit status is in DESIGN.md's table, there is no traceback,
and stderr is one ``sshrun: error:`` line (after argparse's usage for its own
errors, after sshrun's warnings otherwise).

Network safety: ``--dry-run`` is always given (the dry run applies every check
of the real run and connects nowhere), and generated hosts are loopback
addresses or ``.invalid`` names.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sshrun import cli

REPO = Path(__file__).resolve().parent.parent
EXIT_CODES = {0, 1, 2, 130, 255}  # DESIGN.md; a dry run never gets as far as a rank's code
ERROR_LINE = re.compile(r"^sshrun(?: exec)?: error: ")
OTHER_LINE = re.compile(r"^sshrun: (?:warning: |no hosts given; )")


@pytest.fixture(scope="module")
def hostile_paths(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    base = tmp_path_factory.mktemp("fuzz")
    fifo = base / "fifo"
    os.mkfifo(fifo)
    garbage = base / "garbage"
    garbage.write_bytes(b"\xff\xfe\x00garbage\r\x1b[2J\n[[[\n")
    hosts = base / "hosts"
    hosts.write_text("127.0.0.2\n127.0.0.3 slots=2\n")
    return [str(fifo), "/dev/zero", str(base), str(base / "missing"), str(garbage), str(hosts)]


NUMBERS = ["inf", "-inf", "nan", "NaN", "-0", "0", "1", "1e309", "1e-400", "0x10", "1_000",
           "9" * 5000, "9" * 30, "-1", "+1", "٣", "1.5", "2:1", "1:" + "9" * 5000]
TEXTS = ["", " ", "-", "--", "-x", "--dry-run", "\x1b[2J\x1b]0;t\x07", "\r", "a\nb", "\t",
         "\u202e", "\udcff", "\ud800", "é", "a" * 70 + ".invalid", "x" * 20000, "$(id)", "'\"",
         "127.0.0.2", "nowhere.invalid", "[::1]:22", "a..b", "a@b:1,c", "h[1-99999]",
         "A=1", "NCCL_*", "k=v,k2=v", "all", "auto"]


def values(paths: list[str]) -> st.SearchStrategy[str]:
    return st.one_of(
        st.sampled_from(NUMBERS + TEXTS + paths),
        st.text(max_size=40),
        st.integers(-10**6, 10**40).map(str),
        st.floats().map(repr),
    )


def option_table(mode: str) -> list[argparse.Action]:
    parser = cli.build_parser(mode)
    return [a for a in parser._actions
            if a.option_strings and not isinstance(a, argparse._HelpAction)]


def argv_for(mode: str, paths: list[str]) -> st.SearchStrategy[list[str]]:
    actions = option_table(mode)

    @st.composite
    def draw(draw: st.DrawFn) -> list[str]:
        argv = ["exec"] if mode == "exec" else []
        argv.append("--dry-run")
        chosen = draw(st.lists(st.sampled_from(actions), max_size=6))
        if draw(st.booleans()):
            argv += ["--hosts", draw(st.sampled_from(["127.0.0.2", "127.0.0.2:2,127.0.0.3",
                                                      "nowhere.invalid"]))]
        for action in chosen:
            flag = draw(st.sampled_from(action.option_strings))
            if action.nargs == 0:
                argv.append(flag)
                continue
            if action.choices and draw(st.booleans()):
                value = draw(st.sampled_from(list(action.choices)))
            else:
                value = draw(values(paths))
            # Both spellings: "--flag=value" reaches values with a leading '-'.
            argv += [f"{flag}={value}"] if flag.startswith("--") and draw(st.booleans()) \
                else [flag, value]
        if mode == "exec":
            argv += ["--", draw(st.sampled_from(["true", "", "-c", "x" * 300]))]
        else:
            argv += draw(st.sampled_from([["t.py"], ["t.py", "--lr", "1"], ["-m"], [],
                                          ["exec"], ["", "a"]]))
        return argv

    return draw()


@contextlib.contextmanager
def captured() -> Iterator[tuple[io.StringIO, io.StringIO]]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        yield out, err


def check_outcome(code: object, stderr: str, argparse_exit: bool) -> None:
    assert code in EXIT_CODES, (code, stderr)
    assert "Traceback" not in stderr
    if code == 0:
        assert all(OTHER_LINE.match(line) for line in stderr.splitlines()), stderr
        return
    lines = stderr.splitlines()
    assert lines and ERROR_LINE.match(lines[-1]), stderr
    assert stderr.endswith("\n")
    if argparse_exit:
        assert lines[0].startswith(("usage: sshrun", "sshrun")), stderr
        return
    # sshrun's own errors: warnings may come first; the error is one line.
    assert all(OTHER_LINE.match(line) for line in lines[:-1]), stderr


def run_in_process(argv: list[str]) -> None:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    argparse_exit = False
    with captured() as (_, err), _environ(environ):
        try:
            code: object = cli.run(argv)
        except SystemExit as exc:
            code, argparse_exit = exc.code, True
    check_outcome(code, err.getvalue(), argparse_exit)


@contextlib.contextmanager
def _environ(environ: dict[str, str]) -> Iterator[None]:
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(environ)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


FUZZ = settings(max_examples=250, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])


@pytest.mark.parametrize("mode", ["run", "exec"])
def test_fuzz_command_line_in_process(mode: str, hostile_paths: list[str]) -> None:
    @FUZZ
    @given(argv_for(mode, hostile_paths))
    def check(argv: list[str]) -> None:
        run_in_process(argv)

    check()


def test_option_table_is_introspected() -> None:
    """New options are fuzzed without editing this file: the table is the parser's."""
    flags = {f for a in option_table("run") for f in a.option_strings}
    assert {"--grace-period", "--nnodes", "--include", "--ssh-config", "--local-cluster"} <= flags
    assert "--help" not in flags


REAL = [
    ["--dry-run", "--hosts", "127.0.0.2", "--grace-period", "inf", "t.py"],
    ["--dry-run", "--hosts", "127.0.0.2", "--max-restarts", "9" * 5000, "t.py"],
    ["--dry-run", "--hosts", "a" * 64 + ".invalid", "t.py"],
    ["--dry-run", "--hosts", "127.0.0.2", "--env-file", "{fifo}", "t.py"],
    ["--dry-run", "-H", "/dev/zero", "t.py"],
    ["--dry-run", "--hosts", "127.0.0.2", "--ssh-config", "{dir}", "t.py"],
    ["exec", "--dry-run", "--hosts", "127.0.0.2", "--rdzv-id", "x", "--", "true"],
    ["--dry-run", "--hosts", "127.0.0.2", "--include", "@".join(["h[1-99999]"] * 80), "t.py"],
]


@pytest.mark.parametrize("argv", REAL)
def test_real_program_never_prints_a_traceback(argv: list[str],
                                               hostile_paths: list[str]) -> None:
    fifo, _, directory = hostile_paths[:3]
    argv = [a.replace("{fifo}", fifo).replace("{dir}", directory) for a in argv]
    result = subprocess.run([sys.executable, "-m", "sshrun", *argv], cwd=REPO,
                            capture_output=True, text=True, timeout=30,
                            stdin=subprocess.DEVNULL)
    assert result.stdout == ""
    check_outcome(result.returncode, result.stderr,
                  argparse_exit=result.stderr.startswith("usage:"))
    assert result.returncode == 2
