"""Rate-limited log lines for what hostile traffic can repeat at will.

Why this module exists: a replayed or forged message costs the sender nothing, and each one
used to write a warning. Three hundred replays made three hundred lines, and journald's rate
limit (by default 10,000 lines per 30 s per service, far less on a small card) then hid the
lines that mattered. Like the ``downlink_rejected`` events (gateway/downlink/rejections.py),
the first line of a kind is written at once; further ones within the next minute are only
counted (written at debug level only), and one summary line names how many there were and
the last of them.

Memory is bounded: one entry per kind, and the kinds are the program's own fixed words
(reason codes, "replay"), never text from a message.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

WINDOW_MS = 60_000


@dataclass
class _Window:
    """One kind's open minute: when it started and what was folded into it."""

    start_ms: int
    level: int
    count: int = 0
    last: str = ""
    args: tuple[object, ...] = field(default_factory=tuple)


class LogFolder:
    """Writes the first line of a kind at once and folds the rest of its minute into one."""

    def __init__(self, logger: logging.Logger) -> None:
        self._log = logger
        self._windows: dict[str, _Window] = {}

    def log(self, kind: str, now_ms: int, level: int, msg: str, *args: object) -> bool:
        """Log `msg % args` now if it is the first of `kind` this minute; True if written."""
        window = self._windows.get(kind)
        if window is not None and now_ms >= window.start_ms + WINDOW_MS:
            self._close(kind, window)
            window = None
        if window is None:
            self._windows[kind] = _Window(start_ms=now_ms, level=level)
            self._log.log(level, msg, *args)
            return True
        window.count += 1
        window.last, window.args = msg, args
        window.level = max(window.level, level)
        self._log.debug(msg, *args)  # each one still there for a technician at debug level
        return False

    def tick(self, now_ms: int) -> None:
        """Write the summary of every minute that has ended."""
        for kind, window in list(self._windows.items()):
            if now_ms >= window.start_ms + WINDOW_MS:
                self._close(kind, window)

    def _close(self, kind: str, window: _Window) -> None:
        del self._windows[kind]
        if window.count:
            self._log.log(
                window.level,
                f"%d more %s in the last minute; the last: {window.last}",
                window.count,
                kind,
                *window.args,
            )
