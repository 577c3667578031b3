"""One redactor: secret values out of any text sshrun shows or writes.

``Redactor(values)`` replaces every occurrence of each value with
``<redacted>``: in the lines ranks print, sshrun's own messages, the report
and the dry run. A multi-line value (a PEM key given with ``--secret``) is
matched whole and also line by line, since ranks' output reaches the head a
line at a time and a program may print one line of a key. Values (and lines
of values, stripped of surrounding blanks) shorter than
:data:`MIN_SECRET_LENGTH` are left alone in free text, where they would
match far too much; the dry run still hides them by name.

Where secrets overlap or one contains another, the whole stretch they
cover is replaced by one ``<redacted>``: no part of either is left.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

REDACTED = "<redacted>"
MIN_SECRET_LENGTH = 4

_LINE_BREAK = re.compile(r"\r\n|[\r\n]")


def secret_pieces(values: Iterable[str]) -> set[str]:
    """What to look for: each value whole, and each line of a multi-line one."""
    pieces: set[str] = set()
    for value in values:
        if len(value) >= MIN_SECRET_LENGTH:
            pieces.add(value)
        if "\n" in value or "\r" in value:
            for line in _LINE_BREAK.split(value):
                line = line.strip()
                if len(line) >= MIN_SECRET_LENGTH:
                    pieces.add(line)
    return pieces


class Redactor:
    """Replaces secret values in text; false when there is nothing to redact."""

    def __init__(self, values: Iterable[str] = ()) -> None:
        pieces = sorted(secret_pieces(values), key=lambda v: (-len(v), v))
        alternatives = "|".join(map(re.escape, pieces))
        self._pattern = re.compile(alternatives) if pieces else None
        # At every position, the longest piece that starts there: overlapping
        # matches too, so that two secrets that overlap go as one span.
        self._starts = re.compile(f"(?=({alternatives}))") if pieces else None

    def __bool__(self) -> bool:
        return self._pattern is not None

    def __call__(self, text: str) -> str:
        return self.redact(text)

    def redact(self, text: str) -> str:
        if self._pattern is None or self._starts is None or not text:
            return text
        first = self._pattern.search(text)
        if first is None:
            return text
        spans: list[list[int]] = []
        for match in self._starts.finditer(text, first.start()):
            start, end = match.start(), match.start() + len(match.group(1))
            if spans and start < spans[-1][1]:
                spans[-1][1] = max(spans[-1][1], end)
            else:
                spans.append([start, end])
        out: list[str] = []
        pos = 0
        for start, end in spans:
            out.append(text[pos:start])
            out.append(REDACTED)
            pos = end
        out.append(text[pos:])
        return "".join(out)
