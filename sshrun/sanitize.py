"""One sanitizer for text that came from a node.

Everything sshrun shows that a node wrote (streamed lines, tracebacks, the
report's last lines, start-up errors, the agent's messages, what a login shell
printed) goes through :func:`sanitize` before it reaches a terminal, so that
a node cannot move the cursor, clear the screen, set the window title, write
the clipboard (OSC 52), hide or reorder text, or fake a line of sshrun's own.

What stays: printable text, tab, newline where the text is multi-line, and
colour (SGR, ``ESC [ digits ; : m``) where the path keeps colour. What goes:

- every other escape: CSI sequences that are not SGR (cursor moves, erase,
  modes; also ``ESC [ > ... m``, which is not colour), OSC strings (title,
  hyperlinks, clipboard), DCS / SOS / PM / APC strings, two- and three-byte
  escapes (``ESC c``, ``ESC 7``, ``ESC ( 0``) and a stray ESC;
- C0 controls but tab (and newline when multi-line), DEL, and the C1
  controls U+0080-U+009F (U+009B is an 8-bit CSI to some terminals);
- bidirectional controls, which reorder what is shown (Trojan Source):
  U+061C, U+200E, U+200F, U+202A-U+202E, U+2066-U+2069, and the deprecated
  format controls U+206A-U+206F (symmetric swapping, Arabic shaping and
  digit shapes), the same kind of invisible reordering switch. Zero-width
  joiners (U+200C, U+200D) stay, as emoji and several scripts need them, and
  so do the line and paragraph separators U+2028 and U+2029 (text, not
  terminal controls; lines are split on ``\\n`` only).

A lone surrogate (which JSON can carry) becomes U+FFFD. An escape string left
open (no BEL or ST) is dropped up to the end of the line. Pure functions,
idempotent: ``sanitize(sanitize(t)) == sanitize(t)``.

:func:`shown` is for values sshrun prints itself (the dry run): a value with
anything unsafe in it is written as a bash ``$'...'`` string, so that a CR or
an escape is seen as ``\\r`` or ``\\x1b``, never acted on.
"""

from __future__ import annotations

import re
import shlex

SGR = re.compile(r"\x1b\[[0-9;:]*m")

# The bidi controls (see the module docstring).
_BIDI = "\u061c\u200e\u200f\u202a-\u202e\u2066-\u206f"
_C0_BUT_TAB_LF = "\x00-\x08\x0b-\x1a\x1c-\x1f"
_C1_AND_DEL = "\x7f-\x9f"

# Every escape but SGR, in the order a terminal would read them. An OSC or
# other string ends at BEL or ST (ESC \); one left open ends at the end of
# the line here, and its body goes with it.
_ESCAPES = (
    r"\x1b\[[0-?]*[ -/]*[@-~]"  # CSI (not SGR: that alternative comes first)
    r"|\x1b\][^\x07\x1b\n]*(?:\x07|\x1b\\)?"  # OSC: title, hyperlink, clipboard
    r"|\x1b[PX^_][^\x1b\n]*(?:\x1b\\)?"  # DCS, SOS, PM, APC strings
    r"|\x1b[ -/]*[0-~]"  # ESC c, ESC 7, ESC ( 0, ...
    r"|\x1b"  # a stray ESC (end of text, or before a control)
)
_SURROGATE = "\ud800-\udfff"


_DROP = f"{_ESCAPES}|[{_C0_BUT_TAB_LF}\n{_C1_AND_DEL}{_BIDI}]"
# One pass per choice of colour. With colour an SGR is matched first and put
# back (group 1); everything else matched is dropped, but a lone surrogate
# (its own group) becomes U+FFFD.
_PASSES: dict[bool, re.Pattern[str]] = {
    True: re.compile(f"({SGR.pattern})|([{_SURROGATE}])|{_DROP}"),
    False: re.compile(f"([{_SURROGATE}])|{_DROP}"),
}
# Quick test: is there anything to do at all? (Most lines are plain.)
_SUSPECT = re.compile(f"[\x1b{_C0_BUT_TAB_LF}\n{_C1_AND_DEL}{_BIDI}{_SURROGATE}]")


def _repl_sgr(match: re.Match[str]) -> str:
    if match.group(1) is not None:
        return match.group(1)
    return "\ufffd" if match.group(2) is not None else ""


def _repl(match: re.Match[str]) -> str:
    return "\ufffd" if match.group(1) is not None else ""


# The same passes with newlines left alone: no escape matched above can span
# a newline (none of its character classes holds one, and an open string ends
# at one), so one pass over many lines equals one pass over each line.
_LINES_PASSES: dict[bool, re.Pattern[str]] = {
    True: re.compile(f"({SGR.pattern})|([{_SURROGATE}])|{_ESCAPES}"
                     f"|[{_C0_BUT_TAB_LF}{_C1_AND_DEL}{_BIDI}]"),
    False: re.compile(f"([{_SURROGATE}])|{_ESCAPES}|[{_C0_BUT_TAB_LF}{_C1_AND_DEL}{_BIDI}]"),
}
_SUSPECT_BUT_LF = re.compile(f"[\x1b{_C0_BUT_TAB_LF}{_C1_AND_DEL}{_BIDI}{_SURROGATE}]")
# What of _SUSPECT_BUT_LF is ASCII: for ASCII text a deleting bytes.translate
# answers the same question about five times faster than the search.
_ASCII_SUSPECT = bytes([*range(0x00, 0x09), *range(0x0b, 0x20), 0x7f])


def sanitize_lines(text: str, *, colour: bool = False) -> str:
    """Many lines at once, each as :func:`sanitize` cleans a line, the newlines kept.

    The streaming path's: one search over a whole chunk of lines, and nothing
    more for a chunk of plain text. ``sanitize_lines(a + "\n" + b) ==
    sanitize(a) + "\n" + sanitize(b)``.
    """
    if text.isascii():  # a flag of the string: free
        raw = text.encode("ascii")
        if len(raw.translate(None, _ASCII_SUSPECT)) == len(raw):
            return text
    elif not _SUSPECT_BUT_LF.search(text):
        return text
    return _LINES_PASSES[colour].sub(_repl_sgr if colour else _repl, text)


def sanitize(text: str, *, colour: bool = False, multiline: bool = False) -> str:
    """``text`` as it may be shown: see the module docstring.

    ``colour`` keeps SGR sequences (streamed lines on a terminal); without it
    they are removed too. ``multiline`` keeps newlines (a traceback); without
    it each newline becomes a space, so that the result is one line. A CR is
    always dropped (a CRLF line end becomes LF).
    """
    if not _SUSPECT.search(text):
        return text
    # Escapes never span lines: each line is cleaned on its own.
    pass_ = _PASSES[colour]
    repl = _repl_sgr if colour else _repl
    return ("\n" if multiline else " ").join(pass_.sub(repl, line) for line in text.split("\n"))


# --- values sshrun prints itself ---------------------------------------------------------

_UNSAFE = re.compile(f"[\x00-\x1f{_C1_AND_DEL}{_BIDI}{_SURROGATE}]")
_NAMED = {"\\": "\\\\", "'": "\\'", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\x1b": "\\x1b"}


def _escape_char(ch: str) -> str:
    named = _NAMED.get(ch)
    if named is not None:
        return named
    if not _UNSAFE.match(ch):
        return ch
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x80 else f"\\u{code:04x}"


def has_unsafe(value: str) -> bool:
    """Whether ``value`` holds a control, an escape or a bidi control."""
    return _UNSAFE.search(value) is not None


def shown(value: str) -> str:
    """A shell word for ``value``: ``shlex.quote``, or ``$'...'`` when it holds a control."""
    if not has_unsafe(value):
        return shlex.quote(value)
    return "$'" + "".join(map(_escape_char, value)) + "'"


def shown_plain(value: str) -> str:
    """``value`` as written when it is safe; else its ``$'...'`` form (an env value)."""
    return shown(value) if has_unsafe(value) else value
