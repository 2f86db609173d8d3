"""Model and user text made safe for a terminal.

Rich's markup is never applied to data (it is wrapped in ``Text``), but ``Text`` passes
most control characters through: an ESC (``\\x1b``) in a model's output or a request could
clear the screen, retitle the window or write the clipboard when ``show`` prints it. Every
renderer that puts such text on a terminal passes it through ``literal`` (or ``safe_text``),
which spells each control character out as ``\\x1b`` and keeps newlines and tabs.

Not escaped: ``--json`` output (JSON escapes control characters itself) and an answer
printed to stdout when stdout is not a terminal (``foreman run ... | tool`` gets the answer
byte for byte; on a terminal the answer is shown in a panel, escaped).
"""

from __future__ import annotations

import re

from rich.text import Text

#: Control characters a terminal would obey (C0 but tab and newline, DEL, and C1), and the
#: bidirectional controls, which reorder what is shown: an argument a person approves must
#: read as the tool will receive it.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def literal(text: str) -> str:
    """``text`` with each control character shown as ``\\x1b`` (``\\u202e``); newlines and
    tabs kept."""
    return _CONTROL.sub(_spelled, text)


def _spelled(found: re.Match[str]) -> str:
    code = ord(found[0])
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def safe_text(text: str, style: str = "") -> Text:
    """Model or user text as a ``Text``: never markup, never a terminal control sequence."""
    return Text(literal(text), style=style)
