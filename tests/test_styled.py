"""sshrun.styled prints what rich prints, byte for byte, without importing rich.

rich is the oracle: each line goes to a ``rich.console.Console`` set up as the
report's used to be (``highlight=False, soft_wrap=True``, the same
``force_terminal`` and ``no_color``, the same environment) and to a
``StyledConsole``, and the two outputs must be equal.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys

import pytest
from rich.console import Console

from sshrun.styled import Styled, StyledConsole

LINES = [
    Styled("sshrun: job finished on 2 nodes in 0.1s", style="green"),
    Styled("sshrun: first failure: ", style="bold red") + Styled("node1 (node 1): exited"),
    Styled("sshrun: attempt 0 failed: ", style="yellow") + Styled("exit status 3"),
    Styled("traceback:", style="bold"),
    Styled("Traceback (most recent call last):\n  File \"x.py\"\n\nValueError: é ✓",
           style="dim"),
    Styled("  col\tafter a tab\t|", style="dim"),
    Styled("a\tb ", style="yellow") + Styled("\tc") + Styled("", style="bold"),
    Styled(""),
    Styled("same ", style="yellow") + Styled("style", style="yellow") + Styled("\t", style="dim"),
    Styled("sshrun: nodes: 1 failed (node1), 1 stopped (node0)"),
]


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def _rich(line: Styled, file: io.StringIO, force: bool | None, no_color: bool | None,
          environ: dict[str, str]) -> str:
    console = Console(file=file, highlight=False, soft_wrap=True, force_terminal=force,
                      no_color=no_color, _environ=environ)
    console.print(line)
    return file.getvalue()


def _ours(line: Styled, file: io.StringIO, force: bool | None, no_color: bool | None,
          environ: dict[str, str]) -> str:
    StyledConsole(file, force_terminal=force, no_color=no_color, environ=environ).print(line)
    return file.getvalue()


CASES = [
    # (the file is a terminal, force_terminal, no_color, environment)
    (False, None, None, {}),
    (True, None, None, {"TERM": "xterm-256color"}),
    (True, None, None, {"TERM": "xterm", "COLORTERM": "truecolor"}),
    (True, None, None, {"TERM": "dumb"}),
    (True, None, None, {"TERM": "xterm", "NO_COLOR": "1"}),
    (True, None, None, {"TERM": "xterm", "NO_COLOR": ""}),
    (False, None, None, {"TERM": "xterm", "FORCE_COLOR": "1"}),
    (True, None, None, {"TERM": "xterm", "FORCE_COLOR": ""}),
    (True, None, None, {"TERM": "xterm", "TTY_COMPATIBLE": "0"}),
    (False, None, None, {"TERM": "xterm", "TTY_COMPATIBLE": "1"}),
    (False, True, None, {"TERM": "xterm"}),  # --color always
    (True, False, True, {"TERM": "xterm"}),  # --color never
    (False, True, None, {"TERM": "unknown"}),
    (True, True, True, {"TERM": "xterm"}),
]


@pytest.mark.parametrize("tty,force,no_color,environ", CASES)
@pytest.mark.parametrize("line", LINES, ids=lambda line: line.plain[:20])
def test_each_line_is_printed_as_rich_prints_it(line: Styled, tty: bool, force: bool | None,
                                               no_color: bool | None,
                                               environ: dict[str, str]) -> None:
    make = _Tty if tty else io.StringIO
    assert _ours(line, make(), force, no_color, environ) == \
        _rich(line, make(), force, no_color, environ)


def test_styles_are_the_sgr_sequences_a_terminal_gets() -> None:
    # Not only equal to rich's: what those are, so that both cannot drift together.
    out = _ours(LINES[1], _Tty(), None, None, {"TERM": "xterm"})
    assert out == "\x1b[1;31msshrun: first failure: \x1b[0mnode1 (node 1): exited\n"
    assert _ours(LINES[1], _Tty(), None, None, {"TERM": "xterm", "NO_COLOR": "1"}) == \
        "\x1b[1msshrun: first failure: \x1b[0mnode1 (node 1): exited\n"
    assert _ours(LINES[1], io.StringIO(), None, None, {}) == \
        "sshrun: first failure: node1 (node 1): exited\n"


def test_an_unknown_style_is_a_bug_caught_at_once() -> None:
    with pytest.raises(ValueError, match="blink"):
        _ours(Styled("x", style="bold blink"), _Tty(), True, None, {})


def test_a_rich_console_prints_a_styled_line_too() -> None:
    file = _Tty()
    Console(file=file, highlight=False, soft_wrap=True, _environ={"TERM": "xterm"}).print(
        Styled("ok", style="green") + Styled(" [bold]not markup[/bold]"))
    assert file.getvalue() == "\x1b[32mok\x1b[0m [bold]not markup[/bold]\n"


def test_a_job_imports_no_rich() -> None:
    # The point of the module: the CLI's whole job path, report included, without rich.
    code = ("import sys, sshrun.command, sshrun.cli, sshrun.launcher, sshrun.report, "
            "sshrun.log_dir, sshrun.console_report; "
            "print(sorted(m for m in sys.modules if m == 'rich' or m.startswith('rich.')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, env=dict(os.environ, PYTHONPATH=os.getcwd()))
    assert out.stdout.strip() == "[]"
