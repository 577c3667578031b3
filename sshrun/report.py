"""The final report: what failed first, where, and how; and what every node did.

For a job that failed or was interrupted, one line after the first failure
says what became of each node, hostlists folded (``node_fates``)::

    sshrun: nodes: 1 failed (node2), 6 stopped (node[0-1,3-6]), 1 lost (node7)

A node *finished* when its job ended by itself with exit status 0, *failed*
when it holds the first failure or its job ended by itself otherwise,
was *stopped* when the stop (the head's, or its own agent's) ended it, is
*lost* when the head lost it, and *never started* when the stop came while it
was still connecting or starting.

Printed on stderr as :mod:`sshrun.styled` lines (rich's look, without
importing rich). Remote text (last lines, tracebacks, messages) is never read
as markup; it goes through :func:`sshrun.sanitize.sanitize` without colour (every
escape and bidi control removed, so that the report is plain in a log file
and cannot drive the terminal), and through the job's redactor.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from sshrun.failure import Failure, FailureKind
from sshrun.membership import LeftOut
from sshrun.nodeset import fold_hosts
from sshrun.outcome import NodeOutcome, NodeState, Outcome
from sshrun.sanitize import sanitize
from sshrun.styled import LinePrinter, Styled


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


# The fates, in the order the line gives them.
FATES = ("finished", "failed", "stopped", "lost", "never started")


def fate(node: NodeOutcome, first: Failure | None) -> str:
    """What became of one node (one of ``FATES``)."""
    if node.state == NodeState.LOST:
        return "lost"
    if node.state != NodeState.EXITED:
        return "never started"
    if first is not None and first.node == node.index:
        # Its own torchrun may have ended before the stop reached it, or not:
        # either way its failure is the job's.
        return "failed"
    if node.stopped:
        return "stopped"
    return "finished" if node.exit_code == 0 else "failed"


def node_fates(outcome: Outcome) -> str | None:
    """``nodes: 2 finished (node[0-1]), 1 lost (node2)``; None without nodes."""
    groups: dict[str, list[str]] = {name: [] for name in FATES}
    for node in outcome.nodes:
        groups[fate(node, outcome.first_failure)].append(node.host)
    parts = [f"{len(hosts)} {name} ({fold_hosts(hosts)})"
             for name, hosts in groups.items() if hosts]
    return "nodes: " + ", ".join(parts) if parts else None


def render(outcome: Outcome, console: LinePrinter, previous: Sequence[Outcome] = (),
           left_out: Sequence[LeftOut] = (),
           redact: Callable[[str], str] = _same) -> None:
    """The final report.

    ``previous`` are earlier attempts, each listed by its first failure;
    ``left_out`` the hosts an elastic job left out of a later attempt;
    ``redact`` the job's :class:`sshrun.redact.Redactor`.
    """
    for number, earlier in enumerate(previous):
        first = earlier.first_failure
        console.print(Styled(f"sshrun: attempt {number} failed: ", style="yellow") + Styled(
            redact(describe(first)) if first else f"exit status {earlier.exit_code}"))
    # Also those this (last) attempt started without.
    attempt = len(previous)
    for record in (*left_out, *(LeftOut(h, attempt, why, 0.0, at_start=True)
                                for h, why in outcome.left_out)):
        console.print(Styled("sshrun: left out ", style="yellow")
                      + Styled(redact(sanitize(record.describe()))))
    failure = outcome.first_failure
    if outcome.interrupted:
        console.print(Styled(f"sshrun: interrupted after {outcome.elapsed:.1f}s; "
                             "every node stopped", style="yellow"))
        _fates(outcome, console)
    if failure is None:
        if not outcome.interrupted and not outcome.output_closed:
            nodes = len(outcome.nodes)
            console.print(Styled(
                f"sshrun: job finished on {nodes} node{'s' * (nodes != 1)} "
                f"in {outcome.elapsed:.1f}s", style="green",
            ))
        _survivors(outcome, console)
        return
    console.print(Styled("sshrun: first failure: ", style="bold red")
                  + Styled(redact(describe(failure))))
    if failure.traceback:
        console.print(Styled("traceback:", style="bold"))
        text = redact(failure.traceback.rstrip())
        console.print(Styled(sanitize(text, multiline=True), style="dim"))
    elif failure.tail:
        console.print(Styled("last lines of its stderr:", style="bold"))
        for line in failure.tail:
            console.print(Styled("  " + sanitize(redact(line)), style="dim"))
    if not outcome.interrupted:
        _fates(outcome, console)
    _survivors(outcome, console)
    console.print(Styled(f"sshrun: exit status {outcome.exit_code}", style="bold"))


def _fates(outcome: Outcome, console: LinePrinter) -> None:
    line = node_fates(outcome)
    if line is not None:
        # Host labels are the user's own (hostfile), never a node's text.
        console.print(Styled(f"sshrun: {line}"))


def _survivors(outcome: Outcome, console: LinePrinter) -> None:
    for node in outcome.nodes:
        left = node.swept.get("left", 0)
        if left:
            console.print(Styled(
                f"sshrun: WARNING: {left} process(es) of the job could not be killed on "
                f"{node.host}", style="bold red",
            ))
