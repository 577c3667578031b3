"""Secrets: which variables are secret, and the one redactor that hides them.

A variable is secret when it was named with ``--secret`` / ``env.secret`` or
its name looks like one (:data:`SECRET_NAME`: ``*_KEY``, ``*TOKEN*``,
``*PASSWORD*``, ...; :func:`is_secret_name`).

``Redactor(values)`` replaces every occurrence of each value with
``<redacted>``: in the lines ranks print, sshrun's own messages, the report
and the dry run; ``Redactor(values, names)`` also hides by name the value of
every secret variable in a list of pairs (:meth:`Redactor.env`, what the dry
run shows; :func:`redact_env` is that for names alone).

A multi-line value (a PEM key given with ``--secret``) is matched whole
and also line by line, since ranks' output reaches the head a line at a
time and a program may print one line of a key. Values (and lines
of values, stripped of surrounding blanks) shorter than
:data:`MIN_SECRET_LENGTH` are left alone in free text, where they would
match far too much; the dry run still hides them by name.

Where secrets overlap or one contains another, the whole stretch they
cover is replaced by one ``<redacted>``: no part of either is left.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Mapping

REDACTED = "<redacted>"
MIN_SECRET_LENGTH = 4

# Variable names whose values sshrun never prints (dry run, reports).
SECRET_NAME = re.compile(
    r"KEY|TOKEN|SECRET|PASSW(OR)?D|CREDENTIAL|AUTH|COOKIE|PRIVATE|SESSION"
    r"|(^|_)PASS($|_)|_PWD$",  # DB_PASS, MYSQL_PWD; not the shell's own PWD
    re.IGNORECASE,
)

_LINE_BREAK = re.compile(r"\r\n|[\r\n]")


def is_secret_name(name: str, secrets: Collection[str]) -> bool:
    """Named as a secret, or a name that looks secret (``*_KEY``, ``*TOKEN*``, ...)."""
    return name in secrets or SECRET_NAME.search(name) is not None


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
    """Replaces secret values in text; false when there is no value to look for.

    ``names`` are the variables named as secrets (``--secret``): with those
    whose names look secret, :meth:`env` hides their values whatever they are,
    short ones too.
    """

    def __init__(self, values: Iterable[str] = (), names: Collection[str] = ()) -> None:
        self._names = frozenset(names)
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

    def found(self, text: str) -> bool:
        """Whether any secret occurs in ``text``."""
        return self._pattern is not None and self._pattern.search(text) is not None

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

    def is_secret(self, name: str) -> bool:
        return is_secret_name(name, self._names)

    def env(
        self, pairs: Mapping[str, str] | Iterable[tuple[str, str]]
    ) -> list[tuple[str, str]]:
        """The same pairs, in order: a secret name's value shown as ``<redacted>``,
        every other value with the secret values redacted from it."""
        items = pairs.items() if isinstance(pairs, Mapping) else pairs
        return [(k, REDACTED if self.is_secret(k) else self.redact(v)) for k, v in items]


def redact_env(
    values: Mapping[str, str] | Iterable[tuple[str, str]], secrets: Collection[str]
) -> list[tuple[str, str]]:
    """The same pairs, in order, with every secret name's value shown as ``<redacted>``."""
    return Redactor(names=secrets).env(values)
