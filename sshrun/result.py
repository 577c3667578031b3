"""What a job did, as data: the answer to "what did rank i do?".

:class:`JobResult` is what :func:`sshrun.launcher.run_job` (and so
``sshrun.launch`` and ``Launcher.run``) returns: the exit status from
DESIGN.md's table, the first failure, every attempt with its hosts and its
ranks' exit statuses, the hosts left out, the elapsed time. Plain frozen
dataclasses, built by the launcher, read by the console report, the log
directory's summary and the API's callers.
"""

from __future__ import annotations

import contextlib
import signal
from dataclasses import field

from sshrun import errors
from sshrun.errors import SshrunError
from sshrun.failure import Failure
from sshrun.frozen_dataclass import frozen_dataclass
from sshrun.membership import LeftOut
from sshrun.outcome import Outcome


@frozen_dataclass
class RankExit:
    """What one rank did in one attempt."""

    rank: int  # global rank
    local_rank: int
    node: int  # node rank in that attempt
    host: str
    code: int | None  # shell-style exit status (128+N: killed by signal N); None: unknown

    @property
    def signal(self) -> str | None:
        """The signal's name when it was killed by one (``SIGKILL``), else None."""
        if self.code is not None and self.code > 128:
            with contextlib.suppress(ValueError):
                return signal.Signals(self.code - 128).name
        return None


@frozen_dataclass
class AttemptResult:
    """One attempt: its nodes, its ranks, how it ended."""

    number: int  # 0 for the first attempt
    exit_code: int
    first_failure: Failure | None
    hosts: tuple[str, ...]  # the nodes that ran it, by node rank
    ranks: tuple[RankExit, ...]  # by global rank, those that reported an exit
    left_out: tuple[tuple[str, str], ...]  # hosts it started without, and why
    interrupted: bool
    output_closed: bool
    elapsed: float
    outcome: Outcome = field(repr=False, compare=False)  # the supervisor's own record

    def rank(self, rank: int) -> RankExit | None:
        return next((r for r in self.ranks if r.rank == rank), None)


@frozen_dataclass
class JobResult:
    """Everything a job did, as data (``exit_code`` is the CLI's exit status)."""

    job_id: str
    exit_code: int
    first_failure: Failure | None  # of the last attempt: the one the exit status tells
    attempts: tuple[AttemptResult, ...]
    left_out: tuple[LeftOut, ...]  # every host left out, in order
    elapsed: float  # seconds, the whole job
    interrupted: bool = False  # Ctrl-C, SIGTERM or a cancelled task
    stopped_between_attempts: bool = False  # it ended while waiting to restart
    error: SshrunError | None = None  # the job could not start (it is raised, too)

    @property
    def ok(self) -> bool:
        return self.exit_code == errors.EXIT_OK

    def rank(self, rank: int, attempt: int = -1) -> RankExit | None:
        """What global rank ``rank`` did in ``attempt`` (default: the last one)."""
        if not self.attempts:
            return None
        return self.attempts[attempt].rank(rank)
