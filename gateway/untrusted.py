"""Strings from outside made safe to log and store: control characters spelled out.

Why this module exists: a log line is one line. A string the station did not write — an
envelope's unverified ``key``, an alert's ``sender``, an exception text quoting a payload —
may carry a newline, a carriage return, an ANSI escape or a Unicode line separator, and
printed as it is it could forge a whole log line ("alert … accepted") or hide one from a
technician reading ``journalctl``. `escape_controls` spells every such character as a
backslash escape (``\\n``, ``\\x1b``, ``\\u2028``), so what the sender wrote stays readable
and can never end the line. The log handler applies it to every argument of every record
(gateway/logs.py); `untrusted_text` also caps the length for events and the store.
"""

from __future__ import annotations

import re

#: Longest untrusted string (an unknown key name) copied into an event or a log line.
MAX_UNTRUSTED_CHARS = 128

# C0 and C1 controls, DEL, and the characters that end or reorder a line on a terminal:
# line/paragraph separators, bidi embeddings/overrides/isolates, zero-width and BOM.
_CONTROLS = re.compile(
    "[\x00-\x1f\x7f-\x9f\u2028\u2029\u200b-\u200f\u202a-\u202e\u2066-\u2069\ufeff]"
)
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(match: re.Match[str]) -> str:
    char = match.group(0)
    named = _NAMED.get(char)
    if named is not None:
        return named
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def escape_controls(text: str) -> str:
    """`text` with every control or line-breaking character written as a backslash escape.

    Lone surrogates (JSON allows ``"\\ud800"``, no UTF-8 encoder does) are escaped too.
    """
    safe = _CONTROLS.sub(_escape, text)
    try:
        safe.encode("utf-8")
    except UnicodeEncodeError:
        safe = safe.encode("utf-8", "backslashreplace").decode("utf-8")
    return safe


def has_controls(text: str) -> bool:
    """True if `escape_controls` would change `text`."""
    return escape_controls(text) != text


def untrusted_text(text: str, limit: int = MAX_UNTRUSTED_CHARS) -> str:
    """A string from an unverified message made safe to store, log and publish; length capped."""
    safe = escape_controls(text)
    return safe if len(safe) <= limit else safe[:limit] + "…"
