"""Runs torchrun in process, so that its per-rank failures reach the agent as data.

The agent writes it as ``sshrun_torchrun.py`` with ``parent_death.py`` in
front (``die_with_parent`` comes from there on the node) and runs it as
``PYTHON sshrun_torchrun.py TORCHRUN_ARGS...`` with ``SSHRUN_FAILURES``
naming the file for torchrun's ``ChildFailedError`` records (rank ->
local_rank, pid, exitcode, timestamp: ``sshrun.node.protocol.RankFailure``).
torch is imported only when it runs, on the node: checks on the head read
it as text and mypy checks it without running it. Python 3.8.
"""

import contextlib
import json
import logging
import os
import signal
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # on the node, parent_death.py's source precedes this file's
    from sshrun.node.parent_death import die_with_parent


class _Quiet(logging.Filter):
    """Noise that hides what matters.

    "Received 15 death signal": the head already says it stops every node.
    "Error waiting on exit barrier" with a traceback, after a job that
    succeeded: node 0's torchrun, which hosts the store, passed the barrier
    and left before this one read the result (torch 2.13); the head knows
    from every node whether its ranks finished.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not ("death signal" in message or "Error waiting on exit barrier" in message)


def main() -> int:
    # The agent died: stop the workers the graceful way (torchrun handles SIGTERM).
    die_with_parent(signal.SIGTERM)
    failures_path = os.environ.pop("SSHRUN_FAILURES")
    # The head resolved torchrun's PET_* fallbacks into these arguments; the
    # node's own (its login environment's; the head's on --local-cluster) must
    # not add to them: PET_NO_PYTHON=1 would have torchrun exec the rank shim.
    for name in [n for n in os.environ if n.startswith("PET_")]:
        del os.environ[name]
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import main as torchrun

    logging.getLogger("torch.distributed.elastic.agent.server.api").addFilter(_Quiet())
    try:
        torchrun(sys.argv[1:])
    except SignalException as exc:
        # Stopped by the agent: the agent reports that, not a traceback.
        return 128 + int(exc.sigval)
    except ChildFailedError as exc:
        failures = {}
        for rank, failure in exc.failures.items():
            failures[str(rank)] = {
                "local_rank": failure.local_rank, "pid": failure.pid,
                "exitcode": failure.exitcode, "timestamp": failure.timestamp,
            }
        with open(failures_path, "w") as f:
            json.dump(failures, f)
        return 1
    return 0


def finish(code: int) -> None:
    """Exit without the interpreter's finalization.

    By the time torchrun returns or raises, it has stopped its workers and
    closed its store, and the failure records are written and closed; what
    finalization would still do is tear down torch's module graph: ~0.4 s
    (more on a loaded node) between the last rank's exit and this process's,
    which every job pays at its end and a failed one pays on every node
    before the head hears that the node is clean.
    """
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    os._exit(code)


if __name__ == "__main__":
    finish(main())
