"""The poison-message guard: a downlink message that kills the service twice is dropped.

Why this module exists: downlink is acknowledged only after it has been handled (manual
acks), so a message whose handling kills the process — a parser bug, an allocation the
kernel answers with the OOM killer — is delivered again on every reconnect and crash-loops
the station for good. Before a message is handed to intake its SHA-256 is written here, and
it is cleared when handling has finished. An entry still present at the next delivery means
a life ended while handling it; the second such death makes it poison: the next delivery is
acknowledged and dropped, reported as a `downlink_rejected` event with reason `poison`
(docs/protocol.md §7).

The record is a small JSON file next to the database, overwritten in place (one ``pwrite``,
padded with spaces to its longest length) and never fsync'd: it must outlive the process,
which the page cache guarantees; a power cut is not something a message can cause. Replacing
it by rename instead made ext4 write it out at once (its replace-by-rename heuristic): 3.4 ms
per message here, a flash write before the first sound of every alert; ``pwrite`` costs
~0.1 ms. At most `MAX_ENTRIES` hashes are kept (the oldest go first).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)

#: Deaths during the handling of one message after which its next delivery is dropped.
DEATHS_TO_POISON = 2
#: Messages whose interrupted handling is remembered at most.
MAX_ENTRIES = 32


class PoisonGuard:
    """Remembers which downlink message was being handled, across deaths of the process."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._deaths: dict[str, int] = self._load()
        self._written = 0  # the longest record written so far: shorter ones are padded to it
        self._fd: int | None = None
        try:
            self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
            self._written = os.fstat(self._fd).st_size
        except OSError as exc:
            log.warning("cannot open %s: %s; poison messages will not be recognised", path, exc)
        if self._deaths:
            log.warning(
                "the last run ended while handling %d downlink message(s) %s",
                len(self._deaths),
                ", ".join(f"{sha[:16]}… ({n}×)" for sha, n in self._deaths.items()),
            )

    def _load(self) -> dict[str, int]:
        try:
            text = self.path.read_text(encoding="utf-8")
            data = json.loads(text) if text.strip() else {}
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            log.warning("%s is unreadable (%s); starting with no record", self.path, exc)
            return {}
        if not isinstance(data, dict):
            return {}
        return {
            str(sha): int(n)
            for sha, n in data.items()
            if isinstance(n, int) and not isinstance(n, bool) and n > 0
        }

    def is_poison(self, sha256: str) -> bool:
        """True if handling this message was interrupted by the process dying twice."""
        return self._deaths.get(sha256, 0) >= DEATHS_TO_POISON

    def begin(self, sha256: str) -> None:
        """About to hand this message to intake: count the attempt durably first."""
        deaths = self._deaths.pop(sha256, 0)
        while len(self._deaths) >= MAX_ENTRIES:
            del self._deaths[next(iter(self._deaths))]
        self._deaths[sha256] = deaths  # in memory: the deaths so far
        self._save({**self._deaths, sha256: deaths + 1})  # on disk: if this life ends now

    def finish(self, sha256: str) -> None:
        """Handling ended (well or with an error the service survived): forget the message."""
        self._deaths.pop(sha256, None)
        self._save(self._deaths)

    def _save(self, deaths: dict[str, int]) -> None:
        if self._fd is None:
            return
        data = json.dumps(deaths, separators=(",", ":")).encode().ljust(self._written)
        try:
            os.pwrite(self._fd, data, 0)
        except OSError as exc:
            log.warning("cannot record the downlink message being handled: %s", exc)
            return
        self._written = len(data)

    def close(self) -> None:
        """Close the record's file (the service does at stop; tests make many guards)."""
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None
