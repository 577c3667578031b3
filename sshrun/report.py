"""The final report: what failed first, where, and how.

Rendered with rich on stderr. Remote text (last lines, tracebacks, messages)
goes in as ``rich.text.Text`` so that nothing a rank printed is read as
markup, through :func:`sshrun.sanitize.sanitize` without colour (every
escape and bidi control removed, so that the report is plain in a log file
and cannot drive the terminal), and through the job's redactor.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from rich.console import Console
from rich.text import Text

from sshrun.failure import Failure, FailureKind
from sshrun.membership import LeftOut
from sshrun.outcome import Outcome
from sshrun.sanitize import sanitize


def _same(text: str) -> str:
    return text


def describe(failure: Failure) -> str:
    """One line: host, node rank, rank, and how it ended."""
    parts = [f"{failure.host} (node {failure.node})"]
    kind = FailureKind(failure.reason)
    if failure.rank is not None and kind != FailureKind.LAUNCHER:
        parts.append(f"rank {failure.rank}")
        if failure.local_rank is not None:
            parts[-1] += f" (local rank {failure.local_rank})"
    if kind in (FailureKind.LOST, FailureKind.UNREACHABLE):
        how = failure.message or ("connection lost" if kind == FailureKind.LOST
                                  else "unreachable")
    elif kind == FailureKind.ERROR:
        how = failure.message
    elif failure.signal_name:
        how = f"killed by {failure.signal_name} (exit status {failure.code})"
    elif failure.code is not None:
        how = f"exited with code {failure.code}"
        if failure.message:
            how += f": {failure.message}"
    else:
        how = "died without an exit status"
    return sanitize(", ".join(parts) + ": " + how)


def render(outcome: Outcome, console: Console, previous: Sequence[Outcome] = (),
           left_out: Sequence[LeftOut] = (),
           redact: Callable[[str], str] = _same) -> None:
    """The final report.

    ``previous`` are earlier attempts, each listed by its first failure;
    ``left_out`` the hosts an elastic job left out of a later attempt;
    ``redact`` the job's :class:`sshrun.redact.Redactor`.
    """
    for number, earlier in enumerate(previous):
        first = earlier.first_failure
        console.print(Text(f"sshrun: attempt {number} failed: ", style="yellow") + Text(
            redact(describe(first)) if first else f"exit status {earlier.exit_code}"))
    # Also those this (last) attempt started without.
    attempt = len(previous)
    for record in (*left_out, *(LeftOut(h, attempt, why, 0.0, at_start=True)
                                for h, why in outcome.left_out)):
        console.print(Text("sshrun: left out ", style="yellow")
                      + Text(redact(sanitize(record.describe()))))
    failure = outcome.first_failure
    if outcome.interrupted:
        console.print(Text(f"sshrun: interrupted after {outcome.elapsed:.1f}s; every node stopped",
                           style="yellow"))
    if failure is None:
        if not outcome.interrupted and not outcome.output_closed:
            nodes = len(outcome.nodes)
            console.print(Text(
                f"sshrun: job finished on {nodes} node{'s' * (nodes != 1)} "
                f"in {outcome.elapsed:.1f}s", style="green",
            ))
        _survivors(outcome, console)
        return
    console.print(Text("sshrun: first failure: ", style="bold red")
                  + Text(redact(describe(failure))))
    if failure.traceback:
        console.print(Text("traceback:", style="bold"))
        text = redact(failure.traceback.rstrip())
        console.print(Text(sanitize(text, multiline=True), style="dim"))
    elif failure.tail:
        console.print(Text("last lines of its stderr:", style="bold"))
        for line in failure.tail:
            console.print(Text("  " + sanitize(redact(line)), style="dim"))
    _survivors(outcome, console)
    console.print(Text(f"sshrun: exit status {outcome.exit_code}", style="bold"))


def _survivors(outcome: Outcome, console: Console) -> None:
    for node in outcome.nodes:
        left = node.swept.get("left", 0)
        if left:
            console.print(Text(
                f"sshrun: WARNING: {left} process(es) of the job could not be killed on "
                f"{node.host}", style="bold red",
            ))
