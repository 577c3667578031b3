"""Turn the bytes that ranks write into prefixed lines on the head.

Each (node, rank, stream) has its own ``LineFramer``: an incremental UTF-8
decoder (invalid bytes become U+FFFD, a character split across chunks is
kept whole), lines split on ``\\n`` only, a carriage-return progress bar
collapsed to the state it showed last, and escape sequences other than
colours (SGR) removed so that a rank cannot move the cursor, retitle the
terminal or clear the screen. Lines are never cut; a last line without a
newline is flushed when the stream ends.

``Printer`` prefixes whole lines in chunks (``"node1 r3 | "``), one colour per
node on a terminal and plain text when piped, stderr lines to stderr, and
keeps each rank's last stderr lines for the final report.
"""

from __future__ import annotations

import codecs
import collections
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import BinaryIO

from sshrun.redact import MIN_SECRET_LENGTH as MIN_SECRET_LENGTH
from sshrun.redact import Redactor
from sshrun.sanitize import sanitize


def clean_line(line: str) -> str:
    """One raw line (no ``\\n``) as it should be shown (colours kept: see sshrun.sanitize)."""
    if "\r" in line:
        # A progress bar redraws with CR: show its last non-empty state.
        parts = [p for p in line.split("\r") if p]
        line = parts[-1] if parts else ""
    return sanitize(line, colour=True)


class LineFramer:
    """Bytes in, complete cleaned lines out."""

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._partial = ""

    def feed(self, data: bytes) -> list[str]:
        text = self._decoder.decode(data)
        if "\n" not in text:
            self._partial += text
            return []
        lines = text.split("\n")
        lines[0] = self._partial + lines[0]
        self._partial = lines.pop()
        return [clean_line(line) for line in lines]

    def flush(self) -> list[str]:
        """End of stream: the last line even without a newline."""
        text = self._partial + self._decoder.decode(b"", final=True)
        self._partial = ""
        return [clean_line(text)] if text else []

    @property
    def pending(self) -> bool:
        return bool(self._partial)


# Bright, distinguishable on dark and light backgrounds; cycled per node.
_COLOURS = (36, 33, 32, 35, 34, 91, 96, 93, 92, 95, 94, 31)


@dataclass
class Source:
    """One stream of one rank (or of the launcher) on one node."""

    node: int
    host: str
    rank: int  # global rank; -1 for torchrun or the exec'd command
    stream: int  # 1 stdout, 2 stderr
    framer: LineFramer = field(default_factory=LineFramer)


class Printer:
    """Writes prefixed lines; remembers each rank's last stderr lines."""

    def __init__(
        self,
        stdout: BinaryIO | None = None,
        stderr: BinaryIO | None = None,
        colour: bool | None = None,
        host_width: int = 0,
        rank_width: int = 0,
        keep_lines: int = 20,
        launcher_label: str = "torchrun",
        secrets: Iterable[str] = (),
    ) -> None:
        self.stdout = stdout if stdout is not None else sys.stdout.buffer
        self.stderr = stderr if stderr is not None else sys.stderr.buffer
        if colour is None:
            colour = sys.stdout.isatty()
        self.colour = colour
        self.host_width = host_width
        self.rank_width = rank_width
        self.launcher_label = launcher_label
        self.keep_lines = keep_lines
        self.tails: dict[tuple[int, int], collections.deque[str]] = {}
        self._sources: dict[tuple[int, int, int], Source] = {}
        self._prefixes: dict[tuple[int, int], str] = {}
        # Secret values never reach the console, even when a rank prints one.
        # Short values are left alone: redacting "1" would mangle everything.
        self.redactor = Redactor(secrets)
        self._secrets = self.redactor if self.redactor else None

    def redact(self, text: str) -> str:
        return self.redactor.redact(text)

    def prefix(self, node: int, host: str, rank: int) -> str:
        key = (node, rank)
        cached = self._prefixes.get(key)
        if cached is not None:
            return cached
        label = f"r{rank}" if rank >= 0 else self.launcher_label
        if label:
            text = f"{host:<{self.host_width}} {label:<{self.rank_width}} |"
        else:
            text = f"{host:<{self.host_width}} |"
        if self.colour:
            text = f"\x1b[{_COLOURS[node % len(_COLOURS)]}m{text}\x1b[0m"
        self._prefixes[key] = text + " "
        return self._prefixes[key]

    def feed(self, node: int, host: str, rank: int, stream: int, data: bytes) -> None:
        key = (node, rank, stream)
        source = self._sources.get(key)
        if source is None:
            source = self._sources[key] = Source(node, host, rank, stream)
        lines = source.framer.feed(data)
        if lines:
            self._emit(source, lines)

    def flush_node(self, node: int) -> None:
        """A node's streams ended: print every last partial line."""
        for key, source in list(self._sources.items()):
            if key[0] == node:
                lines = source.framer.flush()
                if lines:
                    self._emit(source, lines)

    def flush_all(self) -> None:
        for node in {key[0] for key in self._sources}:
            self.flush_node(node)

    def _emit(self, source: Source, lines: list[str]) -> None:
        if self._secrets is not None:
            lines = [self.redact(line) for line in lines]
        prefix = self.prefix(source.node, source.host, source.rank)
        # A rank's unterminated colour must not bleed into the next prefix.
        suffix = "\x1b[0m\n" if self.colour else "\n"
        text = "".join(prefix + line + suffix for line in lines)
        out = self.stderr if source.stream == 2 else self.stdout
        out.write(text.encode("utf-8", "replace"))
        out.flush()
        if source.stream == 2:
            tail = self.tails.get((source.node, source.rank))
            if tail is None:
                tail = self.tails[(source.node, source.rank)] = collections.deque(
                    maxlen=self.keep_lines
                )
            tail.extend(lines)

    def tail(self, node: int, rank: int) -> list[str]:
        return list(self.tails.get((node, rank), ()))

    def message(self, text: str, lines: Iterable[str] = ()) -> None:
        """sshrun's own notices, on stderr, never interleaved mid-line."""
        body = self.redact("".join(f"sshrun: {sanitize(t)}\n" for t in (text, *lines)))
        self.stderr.write(body.encode("utf-8", "replace"))
        self.stderr.flush()
