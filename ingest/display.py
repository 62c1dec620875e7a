"""One way to show untrusted text (file names, error messages that quote them) on a terminal.

A file name may hold bytes that are not UTF-8, a newline (which breaks a table) or terminal escape
codes (which recolour, move the cursor or retitle the window when printed raw). `shown` makes any of
these visible instead: undecodable bytes as `\\xNN` (as the store records them), control characters,
line separators and bidirectional overrides as `\\n`, `\\x1b`, `\\u202e`. Everything the command line
prints about a file goes through it; JSON output needs only `storable_text` (JSON escapes controls).
"""

from __future__ import annotations

import re

from store.text import storable_text

_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
# C0 and C1 controls (ESC starts a terminal escape, 0x9b is a one-byte CSI), DEL, line and paragraph
# separators, and the bidirectional marks and overrides that make text read in another order than it is.
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def _escape(match: re.Match) -> str:
    char = match.group()
    if char in _NAMED:
        return _NAMED[char]
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def shown(text: object) -> str:
    """`text` (a str, or a path) safe to print on one terminal line."""
    return _UNSAFE.sub(_escape, storable_text(str(text)))
