"""The start-up on the console: the live status line on a terminal, and the report lines.

A reader of the job's events (sshrun.events), as the console report is, fed
through :class:`sshrun.startup.StartupTracker`, which decides what to say.
The launcher calls ``begin`` with each attempt's plan and ``end`` when the
attempt is over. On a terminal (stderr) one :class:`sshrun.console.LiveLine`
shows ``sshrun: starting: connected k/N, agents up k/N, ranks started k/W``
until every rank runs or the attempt stops. Whether or not it is a terminal,
once start-up has taken ``--startup-report`` seconds, one line names who has
not started, and another whenever that changes (looked at once a second, so
at most a line a second), and a last one, at once, when every rank has
started::

    sshrun: start-up still going after 30s: 2 of 4 ranks not started: node1 r[2-3] (agent up)
    sshrun: every rank started after 41s

Everything goes through the console's stderr sink (sshrun.console), so
nothing here blocks the event loop; the timers are this object's and end
with ``end``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from sshrun.console import ConsoleOutput, LiveLine
from sshrun.events import Event
from sshrun.plan import JobPlan
from sshrun.startup import StartupTracker

# How often, past the threshold, who is missing is looked at again without an event.
TICK = 1.0


class StartupConsole:
    """``on_event`` for the start-up's lines; ``begin``/``end`` per attempt."""

    def __init__(self, out: ConsoleOutput, report_after: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.out = out
        self.report_after = report_after
        self.clock = clock
        self.live = out.stderr_isatty
        self.tracker: StartupTracker | None = None
        self._line: LiveLine | None = None
        self._timer: asyncio.TimerHandle | None = None

    def begin(self, plan: JobPlan) -> None:
        self.end()
        self.tracker = StartupTracker(plan, self.clock(), self.report_after)
        loop = asyncio.get_running_loop()
        if self.live:
            self._line = LiveLine(self.out, loop)
            self._line.show("sshrun: " + self.tracker.status())
        self._timer = loop.call_later(self.report_after, self._tick)

    def end(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._line is not None:
            self._line.close()
            self._line = None
        self.tracker = None

    def __call__(self, event: Event) -> None:
        tracker = self.tracker
        if tracker is None or not tracker.feed(event):
            return
        if self._line is not None:
            if tracker.over:
                self._line.close()
                self._line = None
            else:
                self._line.show("sshrun: " + tracker.status())
        if tracker.over:
            # That every rank started is said at once; who is still missing only
            # on the tick, so that a thousand ranks starting one by one are a
            # line a second, not a line each.
            self._report()

    def _tick(self) -> None:
        self._timer = None
        self._report()
        tracker = self.tracker
        if tracker is not None and not tracker.over:
            self._timer = asyncio.get_running_loop().call_later(TICK, self._tick)

    def _report(self) -> None:
        if self.tracker is None:
            return
        text = self.tracker.report(self.clock())
        if text is not None:
            # Host labels and numbers only: nothing a node wrote.
            self.out.stderr.write(f"sshrun: {text}\n".encode("utf-8", "replace"))
