"""sshrun.console on real pipes: writes never block, a full backlog holds, EPIPE closes."""

from __future__ import annotations

import asyncio
import os
import threading
from typing import BinaryIO, cast

from sshrun.console import ConsoleOutput


def pipe_files() -> tuple[int, BinaryIO]:
    """A pipe: its read end (an fd) and its write end as a binary file."""
    read_end, write_end = os.pipe()
    return read_end, cast(BinaryIO, os.fdopen(write_end, "wb", buffering=0))


def read_exactly(fd: int, size: int) -> bytes:
    data = bytearray()
    while len(data) < size:
        chunk = os.read(fd, size - len(data))
        assert chunk, f"EOF after {len(data)} of {size} bytes"
        data += chunk
    return bytes(data)


def test_a_stalled_reader_holds_output_back_and_loses_nothing() -> None:
    async def scenario() -> None:
        out_r, out_w = pipe_files()
        err_r, err_w = pipe_files()
        console = ConsoleOutput(out_w, err_w, high_water=1 << 20, low_water=256 << 10)
        block = bytes(range(256)) * 256  # 64 KiB
        total = 0
        # Nobody reads: every write still returns at once, until the backlog is held.
        while not console.is_held():
            assert console.stdout.write(block) == len(block)
            total += len(block)
            assert total < 4 << 20, "never held"
        assert total > 1 << 20
        resumed = asyncio.ensure_future(console.wait())
        await asyncio.sleep(0)
        assert not resumed.done()
        received: list[bytes] = []
        reader = threading.Thread(target=lambda: received.append(read_exactly(out_r, total)))
        reader.start()
        await asyncio.wait_for(resumed, 30)
        assert not console.is_held()
        assert console.held_seconds() > 0
        assert await console.finish(lambda: False)
        await asyncio.to_thread(reader.join, 30)
        assert received == [block * (total // len(block))]
        for fd in (out_r, err_r):
            os.close(fd)

    asyncio.run(scenario())


def test_a_closed_stdout_is_reported_once_and_drops_what_follows() -> None:
    async def scenario() -> None:
        out_r, out_w = pipe_files()
        err_r, err_w = pipe_files()
        os.close(out_r)  # the reader went away: EPIPE on the next write
        console = ConsoleOutput(out_w, err_w)
        closed = asyncio.Event()
        calls: list[int] = []

        def on_closed() -> None:
            calls.append(1)
            closed.set()

        console.on_stdout_closed = on_closed
        console.stdout.write(b"line\n")
        await asyncio.wait_for(closed.wait(), 30)
        assert console.stdout.closed
        assert isinstance(console.stdout.error, BrokenPipeError)
        console.stdout.write(b"more\n" * 1000)
        assert console.stdout.backlog == 0
        console.stderr.write(b"still fine\n")
        assert await console.finish(lambda: False)
        assert read_exactly(err_r, 11) == b"still fine\n"
        console.update()
        assert calls == [1]
        os.close(err_r)

    asyncio.run(scenario())


def test_finish_gives_up_when_asked() -> None:
    async def scenario() -> None:
        out_r, out_w = pipe_files()
        err_r, err_w = pipe_files()
        console = ConsoleOutput(out_w, err_w)
        console.stdout.write(b"x" * (1 << 20))  # more than the pipe takes, never read
        assert not await console.finish(lambda: True)
        for fd in (out_r, err_r):
            os.close(fd)  # the writer thread gets EPIPE and ends

    asyncio.run(scenario())


def test_a_live_line_is_cleared_in_the_stream_that_passes_it_and_drawn_again_below() -> None:
    """stderr on a real pty (stdout a pipe): a line written to stderr while the live
    line shows starts with the clear; the live line comes back after it, and
    ``remove`` leaves an empty row."""
    from sshrun.console import LiveLine

    async def scenario() -> bytes:
        main, tty = os.openpty()
        out_r, out_w = pipe_files()
        console = ConsoleOutput(out_w, cast(BinaryIO, os.fdopen(tty, "wb", buffering=0)))
        assert console.stderr_isatty and not console.stdout_isatty
        line = LiveLine(console)
        line.show("sshrun: starting: 0/2")
        await until(lambda: console.stderr.backlog == 0 and line._shown)
        console.stderr.write(b"node0 | hello\n")
        console.stdout.write(b"not on the terminal\n")  # a pipe: no clear goes there
        line.show("sshrun: starting: 1/2")
        await until(lambda: line._shown and console.stderr.backlog == 0)
        line.close()
        assert console.stderr.overlay is None
        await console.finish(lambda: False)
        assert os.read(out_r, 100) == b"not on the terminal\n"
        return read_pty(main)

    clear = b"\r\x1b[K"
    # The pty turns \n into \r\n.
    assert asyncio.run(scenario()) == (clear + b"sshrun: starting: 0/2" + clear
                                       + b"node0 | hello\r\n" + clear
                                       + b"sshrun: starting: 1/2" + clear)


async def until(predicate: object, timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():  # type: ignore[operator]
            await asyncio.sleep(0.01)


def read_pty(fd: int) -> bytes:
    import select

    data = b""
    while select.select([fd], [], [], 0.5)[0]:
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        data += chunk
    os.close(fd)
    return data
