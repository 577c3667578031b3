"""sshrun's own lines on stderr, in colour where rich would colour them, without rich.

The report and the notices between attempts are a handful of lines in five
styles (``green``, ``yellow``, ``bold``, ``dim``, ``bold red``). Printing
them through rich cost every job ~30 ms of the head's CPU, importing rich
and its first render (docs/benchmarks.md, "The head's fixed cost"), more
than the rest of the report's work by far. ``StyledConsole`` prints a
``Styled`` line as ``rich.console.Console(highlight=False, soft_wrap=True)``
prints the same ``rich.text.Text``, byte for byte (tests/test_styled.py
holds it to rich's output): the same choice of terminal (``force_terminal``,
``TTY_COMPATIBLE``, ``FORCE_COLOR``, ``isatty``; ``TERM=dumb`` styles
nothing), ``NO_COLOR`` (colours dropped, bold and dim kept), the same SGR
sequences, and tabs expanded to 8 columns (counted in characters where rich
counts terminal cells: the two differ only after a wide character).

A ``Styled`` also renders through a rich console (``__rich__``): the report
can still be printed there (tests do).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Protocol, TextIO

if TYPE_CHECKING:
    from rich.text import Text

# Rich's SGR parameters: attributes first, then the colour (standard colours).
_ATTRIBUTES = {"bold": "1", "dim": "2"}
_COLOURS = {"red": "31", "green": "32", "yellow": "33"}


def _sgr(style: str, no_color: bool) -> str:
    codes = []
    colours = []
    for word in style.split():
        if word in _ATTRIBUTES:
            codes.append(_ATTRIBUTES[word])
        elif word in _COLOURS:
            colours.append(_COLOURS[word])
        else:
            raise ValueError(f"unknown style {word!r} in {style!r}")
    if not no_color:
        codes += colours
    return f"\x1b[{';'.join(codes)}m" if codes else ""


class Styled:
    """Text in pieces, each in one style (``""``: none); ``+`` joins two."""

    __slots__ = ("pieces",)

    def __init__(self, text: str = "", style: str = "") -> None:
        self.pieces: tuple[tuple[str, str], ...] = ((text, style),) if text else ()

    def __add__(self, other: Styled) -> Styled:
        joined = Styled()
        joined.pieces = self.pieces + other.pieces
        return joined

    def __repr__(self) -> str:
        return f"Styled({self.pieces!r})"

    @property
    def plain(self) -> str:
        return "".join(text for text, _ in self.pieces)

    def render(self, styles: bool, no_color: bool = False) -> str:
        """The lines, each ended by ``\\n``, with SGR sequences when ``styles``."""
        lines: list[list[tuple[str, str]]] = [[]]
        for text, style in self.pieces:
            first, *rest = text.split("\n")
            lines[-1].append((first, style))
            lines.extend([(part, style)] for part in rest)
        out = []
        for line in lines:
            column = 0
            for text, style in line:
                sgr = _sgr(style, no_color) if styles and style else ""
                # As rich does, a tab ends a run of the style: each run is its own sequence.
                for run in _expand_tabs(text, column):
                    column += len(run)
                    out.append(f"{sgr}{run}\x1b[0m" if sgr else run)
            out.append("\n")
        return "".join(out)

    def __rich__(self) -> Text:
        from rich.text import Text

        text = Text()
        for piece, style in self.pieces:
            text.append(piece, style=style or None)
        return text


def _expand_tabs(text: str, column: int) -> list[str]:
    """The runs of ``text`` up to and with each tab, the tab as spaces up to the next
    multiple of 8 (counting from ``column``); no empty run."""
    runs = []
    *ended, last = text.split("\t")
    for run in ended:
        column += len(run)
        spaces = 8 - column % 8
        runs.append(run + " " * spaces)
        column += spaces
    if last:
        runs.append(last)
    return runs


class LinePrinter(Protocol):
    """What prints sshrun's lines: a ``StyledConsole``, or a rich ``Console``."""

    @property
    def file(self) -> TextIO: ...

    def print(self, line: Styled, /) -> None: ...


class StyledConsole:
    """Prints ``Styled`` lines to ``file``; see the module docstring."""

    def __init__(self, file: TextIO, force_terminal: bool | None = None,
                 no_color: bool | None = None,
                 environ: Mapping[str, str] = os.environ) -> None:
        self.file = file
        terminal = _is_terminal(file, force_terminal, environ)
        self.styles = terminal and environ.get("TERM", "").lower() not in ("dumb", "unknown")
        self.no_color = (no_color if no_color is not None
                         else environ.get("NO_COLOR", "") != "")

    def print(self, line: Styled, /) -> None:
        self.file.write(line.render(self.styles, self.no_color))
        self.file.flush()


def _is_terminal(file: TextIO, force: bool | None, environ: Mapping[str, str]) -> bool:
    if force is not None:
        return force
    compatible = environ.get("TTY_COMPATIBLE", "")
    if compatible in ("0", "1"):
        return compatible == "1"
    forced = environ.get("FORCE_COLOR")
    if forced is not None:
        return forced != ""
    try:
        return file.isatty()
    except ValueError:  # closed
        return False
