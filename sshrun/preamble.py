"""What a node's login shell prints before the agent starts, kept apart.

A login shell may write to the session's stdout or stderr before it execs the
agent: a motd, an rc file's greeting, escapes, invalid UTF-8. On stdout that
would be read as protocol frames. So the head sends a fresh random token with
the agent's source, and the agent writes ``protocol.SYNC_PREFIX + token + b"\\n"`` to
its stdout and its stderr before anything else. ``Preamble`` (one per stream)
holds back everything before that marker and passes on only what follows.

What came before is kept bounded, its first and its last ``keep`` bytes and
how many in all, so that a login shell that prints megabytes costs no
memory: the head shows it once as a notice naming the host, sanitized; and
when the agent never starts (no interpreter), its last line says why.
Pure: no I/O.
"""

from __future__ import annotations

import secrets

from sshrun.node.protocol import SYNC_PREFIX
from sshrun.sanitize import sanitize

KEEP = 4096
NOTICE_LINES = 12


def new_token() -> str:
    return secrets.token_hex(16)


def marker(token: str) -> bytes:
    return SYNC_PREFIX + token.encode("ascii") + b"\n"


class Preamble:
    """Bytes in; what follows the marker out; what preceded it kept, bounded."""

    def __init__(self, token: str, keep: int = KEEP) -> None:
        self.marker = marker(token)
        self.keep = keep
        self.found = False
        self.total = 0  # bytes before the marker
        self.head = bytearray()  # the first ``keep`` of them
        self.tail = bytearray()  # the last ``keep`` of them
        self._window = b""  # a possible start of the marker, not yet judged

    def feed(self, data: bytes) -> bytes:
        """The bytes of ``data`` that follow the marker (none until it is seen)."""
        if self.found:
            return data
        buf = self._window + data
        at = buf.find(self.marker)
        if at >= 0:
            self._take(buf[:at])
            self.found = True
            self._window = b""
            return buf[at + len(self.marker):]
        # Only the last len(marker) - 1 bytes can still begin the marker.
        cut = max(0, len(buf) - len(self.marker) + 1)
        self._take(buf[:cut])
        self._window = buf[cut:]
        return b""

    def end(self) -> None:
        """The stream ended: whatever was held back belongs to the preamble."""
        if not self.found:
            self._take(self._window)
            self._window = b""

    def _take(self, chunk: bytes) -> None:
        if not chunk:
            return
        self.total += len(chunk)
        room = self.keep - len(self.head)
        if room > 0:
            self.head += chunk[:room]
        self.tail += chunk[-self.keep:]
        del self.tail[:-self.keep]

    def notice(self) -> list[str]:
        """The preamble's first lines, sanitized, and how much more there was; [] if none."""
        text = sanitize(bytes(self.head).decode("utf-8", "replace"), multiline=True)
        lines = [line for line in text.split("\n") if line.strip()]
        shown = lines[:NOTICE_LINES]
        if not shown and self.total == 0:
            return []
        hidden = self.total - len(self.head)
        if len(lines) > len(shown) or hidden > 0:
            shown.append(f"... ({self.total} bytes in all; not all shown)")
        return shown

    def last_line(self) -> str:
        """The last non-blank line before the marker, sanitized ("" if none)."""
        text = sanitize(bytes(self.tail).decode("utf-8", "replace"), multiline=True)
        lines = [line.strip() for line in text.split("\n") if line.strip()]
        return lines[-1] if lines else ""
