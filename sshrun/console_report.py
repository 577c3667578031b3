"""The console's reader of the job's events: sshrun's own lines between attempts,
its notices (an interrupt, a host left out, ...) and the final report, on
stderr, exactly as the command line has always printed them.

One reader among others (sshrun.events): it keeps only what it needs to
word a line (the failure that a restart follows) and prints :mod:`sshrun.styled` lines, in
the job's colours; remote text goes through the job's redactor and
:mod:`sshrun.report` (sanitized, never read as markup).
"""

from __future__ import annotations

from collections.abc import Callable

from sshrun import errors, report
from sshrun.events import AttemptFailed, Event, HostLeftOut, JobFinished, Notice, Restarting
from sshrun.styled import LinePrinter, Styled


class ConsoleReport:
    """``on_event`` for the console: print what the events say, as lines."""

    def __init__(self, console: LinePrinter, redact: Callable[[str], str]) -> None:
        self.console = console
        self.redact = redact
        self._failed: AttemptFailed | None = None

    def __call__(self, event: Event) -> None:
        if isinstance(event, AttemptFailed):
            self._failed = event
        elif isinstance(event, HostLeftOut):
            # Those left out at an attempt's start were named as it started.
            if not event.at_start:
                self.console.print(Styled(f"sshrun: leaving {event.host} out for "
                                        f"{event.cooldown:g}s", style="yellow"))
        elif isinstance(event, Notice):
            self._notice(event)
        elif isinstance(event, Restarting):
            self._restarting(event)
        elif isinstance(event, JobFinished):
            self._finished(event)

    def _notice(self, event: Notice) -> None:
        # Written as one piece, straight to the file: a notice is never
        # interleaved mid-line with a rank's output, nor re-wrapped.
        # Its text is sanitized where it was made (the supervisor).
        body = "".join(f"sshrun: {line}\n" for line in (event.text, *event.lines))
        self.console.file.write(self.redact(body))
        self.console.file.flush()

    def _restarting(self, event: Restarting) -> None:
        failed = self._failed
        failure = failed.failure if failed is not None else None
        if failure is not None:
            described = self.redact(report.describe(failure))
            head = f"sshrun: attempt {event.attempt} failed ({described}"
        else:
            code = failed.exit_code if failed is not None else "unknown"
            head = f"sshrun: attempt {event.attempt} failed (exit status {code}"
        why = (f"; waiting for cool-downs to end: {event.nodes_needed} nodes are needed"
               if event.nodes_needed is not None else "")
        self.console.print(Styled(head) + Styled(
            f"); restarting every node in {event.delay:.1f}s "
            f"(restart {event.restart} of {event.max_restarts}{why})", style="yellow"))

    def _finished(self, event: JobFinished) -> None:
        result = event.result
        if result.error is not None:
            return  # the job never ran: the error itself is the message
        if result.stopped_between_attempts:
            if result.exit_code == errors.EXIT_INTERRUPTED and result.attempts:
                self.console.print(Styled("sshrun: interrupted while waiting to restart"))
            return
        last = result.attempts[-1]
        # The last attempt's own left-out hosts are the report's to add.
        earlier_left = result.left_out[:len(result.left_out) - len(last.left_out)]
        report.render(last.outcome, self.console,
                      previous=[a.outcome for a in result.attempts[:-1]],
                      left_out=earlier_left, redact=self.redact)
