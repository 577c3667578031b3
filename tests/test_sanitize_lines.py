"""The streaming path's chunk-at-once cleaning gives exactly what line-by-line cleaning gives.

``sanitize_lines`` (one pass over many lines) against ``sanitize`` on each line, and the
framer's chunk path against the framer fed one byte at a time (which never has a whole
line inside one chunk, so it always takes the line-by-line path), on seeded random text
made of what matters: escapes and their pieces, C0 and C1 controls, bidi controls, CR,
LF, non-ASCII letters, and plain text.
"""

from __future__ import annotations

import random

import pytest

from sshrun.output import LineFramer, Printer
from sshrun.sanitize import sanitize, sanitize_lines

ALPHABET = ["a", "b", " ", "\n", "\n", "\x1b", "[", "]", "m", "1", ";", ":", "\x07", "\\",
            "P", "_", "^", "X", "(", "0", "c", "\t", "\r", "\x00", "\x1f", "\x7f", "\x9b",
            "\u202e", "\u2066", "\u200d", "é", "\ud800", ">", "?", "~"]


def random_text(rng: random.Random, size: int) -> str:
    return "".join(rng.choice(ALPHABET) for _ in range(size))


@pytest.mark.parametrize("colour", [True, False])
def test_sanitize_lines_is_sanitize_on_each_line(colour: bool) -> None:
    rng = random.Random(12)
    for _ in range(20_000):
        text = random_text(rng, rng.randint(0, 40))
        expected = "\n".join(sanitize(line, colour=colour) for line in text.split("\n"))
        assert sanitize_lines(text, colour=colour) == expected, repr(text)


def test_plain_ascii_is_returned_as_is() -> None:
    text = ("x" * 99 + "\n") * 655 + "tab\there"
    assert sanitize_lines(text, colour=True) is text


def test_framer_chunks_equal_byte_by_byte() -> None:
    rng = random.Random(7)
    for _ in range(300):
        data = random_text(rng, rng.randint(0, 400)).encode("utf-8", "surrogatepass")
        slow = LineFramer(max_line=rng.choice([8, 64, 1 << 20]))
        fast = LineFramer(max_line=slow._max)
        expected = [line for i in range(len(data)) for line in slow.feed(data[i:i + 1])]
        expected += slow.flush()
        got: list[str] = []
        pos = 0
        while pos < len(data):
            step = rng.randint(1, 120)
            got += fast.feed(data[pos:pos + step])
            pos += step
        got += fast.flush()
        assert got == expected, repr(data)
        assert [type(line) for line in got] == [type(line) for line in expected]


class Sink:
    def __init__(self) -> None:
        self.data = b""

    def write(self, data: bytes, /) -> int:
        self.data += data
        return len(data)

    def flush(self) -> None:
        pass


@pytest.mark.parametrize("colour", [True, False])
def test_printer_chunk_path_equals_line_by_line(colour: bool) -> None:
    """Prefixes, colours and redaction: a chunk of many lines printed as each line alone."""
    rng = random.Random(3)
    secret = "hunter22"
    lines = [random_text(rng, rng.randint(0, 30)).replace("\n", "").replace("\r", "")
             + (secret if rng.random() < 0.1 else "") for _ in range(500)]
    data = "".join(line + "\n" for line in lines).encode("utf-8", "surrogatepass")
    whole, single = Sink(), Sink()
    for out, step in ((whole, len(data)), (single, 1)):
        printer = Printer(stdout=out, stderr=Sink(), colour=colour, secrets=[secret])
        for pos in range(0, len(data), step):
            printer.feed(0, "node0", 3, 1, data[pos:pos + step])
        printer.flush_all()
    assert whole.data == single.data
    assert secret.encode() not in whole.data
    assert whole.data.count(b"\n") == len(lines)
