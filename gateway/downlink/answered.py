"""Answered once (docs/protocol.md §6): a verified message already answered gets no new answer.

Why this module exists: every verified message that is wrong — expired, for another area,
from the future, naming an unknown clip — is answered with a receipt, and receipts are
fsync'd records the centre must receive. Replaying one captured message a thousand times
would cost the station a thousand receipts (and the county's uplink a thousand messages)
though nobody forged anything. So the station remembers, per signing key, the SHA-256 of
every payload it answered and the id the answer named; an identical message afterwards costs
one indexed lookup and nothing else, whatever the first answer was.

It is kept in the station's database (table ``answered``, gateway/store/schema.py), so a
restart does not reopen it, and bounded: at least the newest `KEEP_ANSWERS` answers and at
least those of the last `KEEP_MS` are kept, older ones are deleted every `TRIM_EVERY`
answers and by the storage budget. New answers are written once a second in one transaction
(`flush`); meanwhile, and while the disk is full, they wait in a bounded memory table that
the lookup consults first.

While a message is being handled (`handling`), the first receipt or command response naming
an id (`note`) is the answer remembered for it, once the handler is done (`handled`): after
the broadcast is queued, off the way to the first sound.
"""

from __future__ import annotations

import logging
import sqlite3
from collections import OrderedDict

from drivers.base import now_ms
from gateway.store.outbox import Store

log = logging.getLogger(__name__)

#: docs/protocol.md §6: at least the last 10,000 answers and at least those of the last 24 h.
KEEP_ANSWERS = 10_000
KEEP_MS = 24 * 3_600_000
#: Answers added between two trims of the table.
TRIM_EVERY = 500
#: Answers held in memory at most while they cannot be written (a full disk).
MAX_UNSAVED = KEEP_ANSWERS


class AnsweredLog:
    """Which (key, payload SHA-256) the station has answered, and with which id."""

    def __init__(self, store: Store, *, keep: int = KEEP_ANSWERS, keep_ms: int = KEEP_MS) -> None:
        self._store = store
        self._keep = keep
        self._keep_ms = keep_ms
        self._unsaved: OrderedDict[tuple[str, bytes], tuple[str, int]] = OrderedDict()
        self._added = 0
        self._handling: tuple[str, bytes] | None = None
        self._answer: tuple[str, bytes, str] | None = None
        store.budget.add_trimmer(self._trim)

    def answered(self, key: str, sha256: bytes) -> str | None:
        """The id named in the answer to this exact message, or None if it was never answered."""
        unsaved = self._unsaved.get((key, sha256))
        if unsaved is not None:
            return unsaved[0]
        try:
            row = self._store.run_write(
                lambda db: db.execute(
                    "SELECT id FROM answered WHERE key = ? AND sha256 = ?", (key, sha256)
                ).fetchone()
            )
        except sqlite3.Error as exc:
            log.error("cannot look up answered messages: %s", exc)
            return None
        return None if row is None else str(row[0])

    def handling(self, key: str, sha256: bytes) -> None:
        """A message never answered is being handled: its first answer is to be remembered."""
        self._handling = (key, sha256)

    def note(self, message_id: str) -> None:
        """An answer naming `message_id` was written: the first one answers the message handled."""
        if self._handling is not None:
            key, sha256 = self._handling
            self._handling = None
            self._answer = (key, sha256, message_id)

    def handled(self) -> None:
        """The message's handler is done: remember its answer, if it had one."""
        self._handling = None
        answer, self._answer = self._answer, None
        if answer is not None:
            self.add(*answer)

    def add(self, key: str, sha256: bytes, message_id: str) -> None:
        """Remember that this message was answered (naming `message_id`).

        Held in memory until the next `flush` (the service calls it every second): one
        write for a burst of answers, not one fsync each. A crash loses at most that
        second, which costs one more receipt if exactly those messages are replayed.
        """
        self._unsaved[(key, sha256)] = (message_id, now_ms())
        self._unsaved.move_to_end((key, sha256))
        while len(self._unsaved) > MAX_UNSAVED:
            self._unsaved.popitem(last=False)

    def flush(self) -> None:
        """Write the answers held in memory (kept there if the disk is full)."""
        if not self._unsaved:
            return
        rows = [(key, sha, mid, ts) for (key, sha), (mid, ts) in self._unsaved.items()]

        def write(db: sqlite3.Connection) -> None:
            db.execute("BEGIN IMMEDIATE")
            try:
                db.executemany("INSERT OR REPLACE INTO answered VALUES (?, ?, ?, ?)", rows)
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise

        try:
            self._store.run_write(write)
        except sqlite3.Error as exc:
            log.debug("answered messages kept in memory for now: %s", exc)
            return
        self._unsaved.clear()
        self._added += len(rows)
        if self._added >= TRIM_EVERY:
            self._added = 0
            try:
                self._store.run_write(self._trim)
            except sqlite3.Error as exc:
                log.debug("trimming answered messages failed: %s", exc)

    def _trim(self, db: sqlite3.Connection) -> int:
        """Delete answers older than `keep_ms` beyond the newest `keep`; the number deleted."""
        row = db.execute(
            "SELECT ts FROM answered ORDER BY ts DESC LIMIT 1 OFFSET ?", (self._keep - 1,)
        ).fetchone()
        if row is None:
            return 0
        cutoff = min(int(row[0]), now_ms() - self._keep_ms)
        return int(db.execute("DELETE FROM answered WHERE ts < ?", (cutoff,)).rowcount)
