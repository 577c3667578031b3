"""The launcher: one job across its attempts, for the CLI and the Python API alike.

:func:`run_job` takes a resolved :class:`sshrun.settings.Invocation` and owns
the job's life: each attempt is a fresh plan run by a
:class:`sshrun.supervisor.Supervisor` (the gang); between attempts the
restart policy decides (``--max-restarts``, back-off doubled up to its cap,
``--no-restart-on``), an elastic job's :class:`sshrun.membership.HostPool`
leaves failed hosts out for their cool-down, and a node that cannot be
reached at all counts as a failed attempt while restarts remain (a rebooting
node may answer next time; a key or login problem would not, and fails at
once). Ctrl-C and SIGTERM (``Runtime.handle_signals``), the closing of
stdout, and the cancelling of the task running the job all stop every node:
the first gracefully, a second one at once.

It renders nothing. What happens is told as typed events (sshrun.events)
to the readers in ``Runtime.on_event``; the console report
(sshrun.console_report) is the reader that prints sshrun's own lines, the
JSON event file (``--events``, sshrun.event_log) another, the log directory
(``--log-dir``, sshrun.log_dir) a third, which also hears every rank's
output ahead of the console; the start-up's live line and report
(sshrun.startup_console) a fourth, told each attempt's plan. The
ranks' output still goes through the supervisor's printer to the console
streams given in ``Runtime``. Time is read from ``Runtime.clock`` and waited
through ``Runtime.sleep``, so that tests of back-off and cool-downs need not
wait in real time.

The job's :class:`JobResult` answers "what happened": its exit status (the
CLI's, from DESIGN.md's table), the first failure, every attempt with what
each rank did, the hosts left out, the time it took.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from typing import BinaryIO

from sshrun import errors, fd_limit
from sshrun.console import ConsoleOutput
from sshrun.console_report import ConsoleReport
from sshrun.errors import ConfigError, ConnectError, SshrunError
from sshrun.event_log import EventLog, open_event_file
from sshrun.events import (
    AttemptFailed,
    Event,
    HostLeftOut,
    JobFinished,
    JobStarted,
    Notice,
    OnEvent,
    Restarting,
)
from sshrun.failure import Failure, FailureKind, exit_status
from sshrun.fold import LineFolder
from sshrun.frozen_dataclass import frozen_dataclass
from sshrun.gather import gathered_text
from sshrun.hostfile import HostSpec
from sshrun.log_dir import LogDir
from sshrun.membership import HostPool, LeftOut
from sshrun.outcome import Outcome
from sshrun.output import Printer
from sshrun.plan import JobConfig, plan_job
from sshrun.redact import Redactor
from sshrun.result import AttemptResult, JobResult, RankExit
from sshrun.settings import Invocation
from sshrun.startup_console import StartupConsole
from sshrun.styled import StyledConsole
from sshrun.supervisor import Supervisor
from sshrun.transport import SSHSettings

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]


@frozen_dataclass
class Runtime:
    """How a job meets the world: where output goes, who hears its events, time."""

    on_event: tuple[OnEvent, ...] = ()
    stdout: BinaryIO | None = None  # the ranks' stdout; None: sys.stdout, when the job starts
    stderr: BinaryIO | None = None  # their stderr and sshrun's lines; None: sys.stderr
    console_report: bool = True  # print sshrun's own lines (restarts, the final report)
    handle_signals: bool = False  # SIGINT and SIGTERM stop the job (the CLI asks)
    clock: Clock = time.monotonic
    sleep: Sleep = asyncio.sleep


async def run_job(inv: Invocation, runtime: Runtime = Runtime()) -> JobResult:
    """Run the job to its end; the result, or the :class:`SshrunError` that kept it
    from starting. Cancelling the task stops every node as Ctrl-C does, reports it
    to the readers, and then raises ``CancelledError``."""
    # Before any file or connection: N nodes that cannot fit are refused now.
    fd_limit.ensure(fd_limit.estimate(inv.config, log_dir=inv.log_dir is not None,
                                      filters=bool(inv.duplicate),
                                      local_cluster=inv.local_cluster is not None))
    # Opened before anything starts: a path that cannot be written is a usage error.
    event_file = open_event_file(inv.events) if inv.events not in (None, "-") else None
    out = ConsoleOutput(
        binary_stream(sys.stdout) if runtime.stdout is None else runtime.stdout,
        binary_stream(sys.stderr) if runtime.stderr is None else runtime.stderr)

    def warn(line: str) -> None:
        out.stderr.write(line.encode("utf-8", "replace") + b"\n")

    log_dir = None
    if inv.log_dir is not None:
        try:
            log_dir = LogDir.create(inv.log_dir, inv.job_id, inv.secret_values, warn,
                                    inv.duplicate)
        except ConfigError:
            if event_file is not None:
                event_file.close()
            raise
    interrupts = _Interrupts()
    readers: list[OnEvent] = []
    startup = None
    if runtime.console_report:
        # First: its live line goes before anything else is printed.
        startup = StartupConsole(out, inv.startup_report)
        readers.append(startup)
        console = StyledConsole(out.text(), force_terminal=inv.colour,
                                no_color=inv.colour is False)
        readers.append(ConsoleReport(console, Redactor(inv.secret_values)))
    if log_dir is not None:
        readers.append(log_dir)
    if inv.events is not None:
        readers.append(EventLog(event_file if event_file is not None else out.stdout,
                                Redactor(inv.secret_values), warn, inv.events))

    def emit(event: Event) -> None:
        for reader in readers:
            reader(event)
        for callback in runtime.on_event:
            callback(event)

    loop = asyncio.get_running_loop()
    signals = (signal.SIGINT, signal.SIGTERM) if runtime.handle_signals else ()
    # One handler for the whole run, so that no Ctrl-C ever falls between
    # two phases and becomes a KeyboardInterrupt traceback.
    for sig in signals:
        loop.add_signal_handler(sig, interrupts)
    job = _Job(inv, runtime, out, interrupts, emit, log_dir, startup)
    error: SshrunError | None = None
    try:
        try:
            result = await job.run()
        except SshrunError as exc:
            error = exc
            result = job.result(exc.exit_code, error=exc)
        if out.stdout.closed and result.exit_code == errors.EXIT_OK:
            # Part of the output never reached its reader.
            result = replace(result, exit_code=errors.EXIT_PIPE)
        emit(JobFinished(job=inv.job_id, attempt=max(len(result.attempts) - 1, 0),
                         exit_code=result.exit_code, elapsed=result.elapsed, result=result))
    finally:
        # The last output and the report reach a slow reader, however
        # slowly; a Ctrl-C meanwhile gives up on them.
        interrupts.pending = False
        complete = await out.finish(lambda: interrupts.pending)
        for sig in signals:
            loop.remove_signal_handler(sig)
        if event_file is not None:
            with contextlib.suppress(OSError):
                event_file.close()
    if not complete:
        result = replace(result, exit_code=errors.EXIT_INTERRUPTED, interrupted=True)
    if error is not None:
        raise error
    if job.cancelled:
        raise asyncio.CancelledError
    return result


class _Job:
    """One job's attempts (run_job's loop, with the state it keeps between them)."""

    def __init__(self, inv: Invocation, runtime: Runtime, out: ConsoleOutput,
                 interrupts: _Interrupts, emit: OnEvent, log_dir: LogDir | None = None,
                 startup: StartupConsole | None = None) -> None:
        self.inv = inv
        self.log_dir = log_dir
        self.startup = startup
        self.clock = runtime.clock
        self.sleep = runtime.sleep
        self.out = out
        self.interrupts = interrupts
        self.emit = emit
        self.attempts: list[AttemptResult] = []
        self.pool: HostPool | None = None
        self.cancelled = False  # the task running the job was cancelled
        self.started = self.clock()

    async def run(self) -> JobResult:
        from sshrun.local_cluster import local_cluster

        inv = self.inv
        config, ssh = inv.config, inv.ssh
        self.emit(JobStarted(job=inv.job_id, attempt=0, mode=config.mode,
                             hosts=tuple(h.label for h in config.hosts),
                             max_restarts=config.restarts.max_restarts))
        for notice in inv.notices:
            self.emit(Notice(job=inv.job_id, attempt=0, kind=notice.kind, text=notice.text))
        async with contextlib.AsyncExitStack() as stack:
            if inv.local_cluster is not None:
                cluster = await stack.enter_async_context(local_cluster(inv.local_cluster))
                # config.hosts already name these nodes (as --nnodes and --include chose).
                ssh = replace(ssh, config_paths=(cluster.ssh_config,),
                              known_hosts=(cluster.known_hosts,), host_key_policy="strict")
            pool = self.pool = (HostPool(config.hosts, config.membership)
                                if config.membership else None)
            policy = config.restarts
            attempt = 0
            while True:
                if self.interrupts.pending or self.cancelled:
                    return self.result(errors.EXIT_INTERRUPTED, between=True)
                if self.out.stdout.closed:
                    return self.result(errors.EXIT_PIPE, between=True)
                hosts = config.hosts if pool is None else pool.available(self.clock())
                try:
                    outcome = await self._attempt(replace(config, hosts=hosts), ssh, attempt)
                except ConnectError as exc:
                    # A node that is rebooting may answer by the next attempt; a
                    # key or login problem (AuthError, HostKeyError) would not.
                    if not policy.allows(attempt, errors.EXIT_SSH, FailureKind.UNREACHABLE):
                        raise
                    outcome = _unreachable(exc, hosts)
                self.attempts.append(_attempt_result(attempt, outcome))
                failure = outcome.first_failure
                stopped = outcome.interrupted or outcome.output_closed
                if outcome.exit_code != 0 and not stopped:
                    self.emit(AttemptFailed(job=inv.job_id, attempt=attempt,
                                            exit_code=outcome.exit_code, failure=failure))
                if (outcome.exit_code == 0 or stopped
                        or not policy.allows(attempt, outcome.exit_code,
                                             failure.reason if failure else None)):
                    break
                delay = policy.delay(attempt)
                needed = None
                if pool is not None:
                    wait = self._leave_out(pool, outcome, attempt)
                    if wait > delay:
                        delay, needed = wait, pool.membership.min_nodes
                self.emit(Restarting(job=inv.job_id, attempt=attempt, delay=delay,
                                     restart=attempt + 1, max_restarts=policy.max_restarts,
                                     nodes_needed=needed))
                if await self._wait(delay):
                    closed = self.out.stdout.closed
                    return self.result(errors.EXIT_PIPE if closed else errors.EXIT_INTERRUPTED,
                                       between=True)
                attempt += 1
        return self.result(self.attempts[-1].exit_code)

    def result(self, exit_code: int, between: bool = False,
               error: SshrunError | None = None) -> JobResult:
        last = self.attempts[-1] if self.attempts else None
        left = list(self.pool.history) if self.pool is not None else []
        if last is not None:
            # Those the last attempt started without (no cool-down follows it).
            left += [LeftOut(h, last.number, why, 0.0, at_start=True)
                     for h, why in last.left_out]
        return JobResult(
            job_id=self.inv.job_id, exit_code=exit_code,
            first_failure=last.first_failure if last is not None and error is None else None,
            attempts=tuple(self.attempts), left_out=tuple(left),
            elapsed=self.clock() - self.started,
            interrupted=exit_code == errors.EXIT_INTERRUPTED,
            stopped_between_attempts=between, error=error,
        )

    def _leave_out(self, pool: HostPool, outcome: Outcome, attempt: int) -> float:
        """Elastic: the attempt's failed hosts cool down; seconds until enough are back."""
        from sshrun import report

        now = self.clock()
        cooldown = pool.membership.cooldown
        for host, reason in outcome.left_out:
            pool.leave_out(host, attempt, reason, now, at_start=True)
            self.emit(HostLeftOut(job=self.inv.job_id, attempt=attempt, host=host,
                                  reason=reason, cooldown=cooldown, at_start=True))
        failure = outcome.first_failure
        if failure is not None:
            reason = report.describe(failure)
            pool.leave_out(failure.host, attempt, reason, now)
            self.emit(HostLeftOut(job=self.inv.job_id, attempt=attempt, host=failure.host,
                                  reason=reason, cooldown=cooldown))
        return pool.wait_needed(now)

    async def _attempt(self, config: JobConfig, ssh: SSHSettings, attempt: int) -> Outcome:
        inv, out = self.inv, self.out
        plan = plan_job(config, inv.job_id, attempt)
        # Folding: a torchrun job's console on a terminal, unless --fold/--no-fold said.
        fold = inv.fold if inv.fold is not None else (config.mode == "torchrun"
                                                      and out.stdout_isatty)
        printer = Printer(
            secrets=inv.secret_values,
            colour=inv.colour, host_width=max(len(n.host.label) for n in plan.nodes),
            rank_width=len(f"r{(plan.world_size or 1) - 1}"),
            launcher_label="torchrun" if config.mode == "torchrun" else "",
            # --events -: stdout is the events'; the ranks' lines all go to stderr.
            stdout=out.stderr if inv.events == "-" else out.stdout, stderr=out.stderr,
            shows=inv.console.for_plan(plan), timestamps=inv.timestamps,
            folder=LineFolder() if fold else None, gather=inv.gather,
        )
        logs = self.log_dir.attempt(attempt) if self.log_dir is not None else None
        supervisor = Supervisor(plan, ssh, printer, out, self.emit, logs)
        self.interrupts.target = supervisor.interrupt
        out.on_stdout_closed = supervisor.stdout_closed
        if out.stdout.closed:
            supervisor.stdout_closed()
        if self.startup is not None:
            self.startup.begin(plan)
        # Its own task: cancelling ours must not cancel it midway, but stop it.
        task = asyncio.ensure_future(supervisor.run())
        try:
            while not task.done():
                try:
                    await asyncio.wait({task})
                except asyncio.CancelledError:
                    # As Ctrl-C: the first stops every node, a second kills at once.
                    self.cancelled = True
                    supervisor.interrupt()
            outcome = task.result()
            if printer.gathered is not None:
                # exec --gather: each distinct output once, before the attempt's report.
                printer.stdout.write(gathered_text(outcome.nodes, printer.gathered).encode(
                    "utf-8", "replace"))
                printer.stdout.flush()
            return outcome
        finally:
            if self.startup is not None:
                self.startup.end()
            self.interrupts.target = None
            out.on_stdout_closed = None
            printer.close_folds()  # the supervisor printed them; its timer must not outlive it
            if not task.done():  # only on a bug of ours: never leave it running
                task.cancel()
            if logs is not None:
                logs.close()

    async def _wait(self, seconds: float) -> bool:
        """Sleep; True when Ctrl-C (or SIGTERM, or a cancel), or the closing of
        stdout, came first."""
        woken = asyncio.Event()
        self.interrupts.target = woken.set
        self.out.on_stdout_closed = woken.set
        sleeper = asyncio.ensure_future(self.sleep(seconds))
        waker = asyncio.ensure_future(woken.wait())
        try:
            try:
                await asyncio.wait({sleeper, waker}, return_when=asyncio.FIRST_COMPLETED)
            except asyncio.CancelledError:
                self.cancelled = True
                woken.set()
            if not woken.is_set() and sleeper.exception() is not None:
                raise sleeper.exception()  # type: ignore[misc]
            return woken.is_set()
        finally:
            self.interrupts.target = None
            self.out.on_stdout_closed = None
            for task in (sleeper, waker):
                task.cancel()
            await asyncio.gather(sleeper, waker, return_exceptions=True)


def _attempt_result(number: int, outcome: Outcome) -> AttemptResult:
    ranks = [RankExit(rank, local, node.index, node.host, code)
             for node in outcome.nodes for rank, (local, code) in node.rank_exits.items()]
    return AttemptResult(
        number=number, exit_code=outcome.exit_code, first_failure=outcome.first_failure,
        hosts=tuple(n.host for n in outcome.nodes),
        ranks=tuple(sorted(ranks, key=lambda r: r.rank)),
        left_out=tuple(outcome.left_out), interrupted=outcome.interrupted,
        output_closed=outcome.output_closed, elapsed=outcome.elapsed, outcome=outcome,
    )


def _unreachable(exc: ConnectError, hosts: Sequence[HostSpec]) -> Outcome:
    """An attempt that could not start because a node could not be reached."""
    labels = [h.label for h in hosts]
    node = labels.index(exc.host) if exc.host in labels else 0
    failure = Failure(node, exc.host, FailureKind.UNREACHABLE,
                      message=f"unreachable: {exc.message}")
    return Outcome(exit_status(failure), failure, (), interrupted=False, elapsed=0.0)


class _Interrupts:
    """Ctrl-C and SIGTERM go to whatever the run is doing at the moment."""

    def __init__(self) -> None:
        self.target: Callable[[], None] | None = None
        self.pending = False

    def __call__(self) -> None:
        if self.target is not None:
            self.target()
        else:
            self.pending = True


def binary_stream(stream: object) -> BinaryIO:
    """A binary file for the console: a text stream's buffer, or the text stream
    itself behind a UTF-8 decoder (io.StringIO, a notebook's output)."""
    if isinstance(stream, io.TextIOBase) or hasattr(stream, "encoding"):
        buffer = getattr(stream, "buffer", None)
        if buffer is not None:
            return buffer  # type: ignore[no-any-return]
        return _TextWriter(stream)  # type: ignore[return-value]
    return stream  # type: ignore[return-value]


class _TextWriter(io.RawIOBase):
    """Bytes in, text out to a text stream (no descriptor: the console sink writes)."""

    def __init__(self, stream: object) -> None:
        super().__init__()
        import codecs

        self._stream = stream
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")

    def writable(self) -> bool:
        return True

    def write(self, data: object) -> int:
        raw = bytes(data)  # type: ignore[call-overload]
        self._stream.write(self._decoder.decode(raw))  # type: ignore[attr-defined]
        return len(raw)

    def flush(self) -> None:
        flush = getattr(self._stream, "flush", None)
        if flush is not None:
            flush()
