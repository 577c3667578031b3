"""What went wrong first, its kind, and the exit status that means: one place for each.

``FailureKind`` names every way a job fails; the supervisor records one
``Failure``, the report describes it (``sshrun.report.describe``), the
restart policy asks its kind, and ``exit_status`` turns it into sshrun's
exit status (DESIGN.md's table). Pure: no I/O.

The kinds are strings (``StrEnum``): ``failure.reason == "lost"`` holds for
``FailureKind.LOST``, and events and logs show the plain word.
"""

from __future__ import annotations

import enum
import signal
from dataclasses import dataclass, field

from sshrun import errors


class FailureKind(enum.StrEnum):
    EXIT = "exit"  # a rank (or the exec command) exited non-zero
    SIGNAL = "signal"  # a rank died without an exit status of its own
    LOST = "lost"  # a node went silent, its connection broke, or its agent stopped alone
    ERROR = "error"  # the node cannot run the job as configured
    LAUNCHER = "launcher"  # torchrun failed before or outside the ranks
    UNREACHABLE = "unreachable"  # an attempt could not start: a node could not be reached


@dataclass
class Failure:
    """The first thing that went wrong, as the report shows it."""

    node: int
    host: str
    reason: FailureKind
    rank: int | None = None
    local_rank: int | None = None
    code: int | None = None  # shell-style status (128+N for a signal)
    message: str = ""
    traceback: str | None = None
    tail: list[str] = field(default_factory=list)

    @property
    def signal_name(self) -> str | None:
        if self.code is not None and self.code > 128:
            try:
                return signal.Signals(self.code - 128).name
            except ValueError:
                return None
        return None


def exit_status(failure: Failure | None, *, interrupted: bool = False,
                output_closed: bool = False) -> int:
    """sshrun's exit status for an attempt that ended this way (DESIGN.md §3)."""
    if interrupted:
        return errors.EXIT_INTERRUPTED
    if failure is None:
        return errors.EXIT_PIPE if output_closed else errors.EXIT_OK
    kind = FailureKind(failure.reason)
    if kind in (FailureKind.LOST, FailureKind.UNREACHABLE):
        return errors.EXIT_SSH
    if kind == FailureKind.ERROR:
        return errors.EXIT_USAGE
    # EXIT, SIGNAL, LAUNCHER: the status itself; one without a status is a failure still.
    return failure.code if failure.code else errors.EXIT_FAILURE
