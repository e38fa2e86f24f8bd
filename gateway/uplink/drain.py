"""The publish window of one connection: what goes out next, what is in flight, what is sent.

Why this module exists: the order in which the outbox reaches the centre, and when a record
counts as sent, are rules of their own (docs/storage-and-sync.md, "Draining"). Command
responses go first, then events and receipts (each in its own message), then records the
centre asked for again (§8 ``resend``), then readings in seq order, in telemetry batches
(gateway/uplink/telemetry.py). At most ``sync.inflight_max`` messages are in flight at QoS 1,
and records are marked sent only on their PUBACK, for exactly the seqs the message carried.

A `Drain` lives in its link's thread (gateway/uplink/link.py) and reads through its own
`OutboxReader` (committed records only), so nothing reaches the broker before it is durable.
The link owns the client; the drain only hands it messages through ``send``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from drivers.base import now_ms
from gateway.store.outbox import Store
from gateway.store.records import OutboxRecord
from gateway.uplink.answers import Answers
from gateway.uplink.settings import LinkSettings

log = logging.getLogger(__name__)

#: Seq ranges (first, last) a message carries, marked sent on its PUBACK.
Runs = list[tuple[int, int]]
#: send(topic, payload, retain) publishes at QoS 1 and returns the message id.
Send = Callable[[str, bytes, bool], int]
_NOT_TRACKED = object()


class Drain:
    """The cursors of one connection over the outbox, and its window of unacknowledged messages."""

    def __init__(self, store: Store, answers: Answers, settings: LinkSettings, send: Send) -> None:
        self._store = store
        self._reader = store.reader()
        self._answers = answers
        self._topics = settings.topics
        self._telemetry = settings.telemetry
        self._limit = settings.inflight_max
        self._send = send
        self._inflight: dict[int, Runs | None] = {}
        #: When the window last moved (a PUBACK, or a message into an empty window).
        self.last_progress = time.monotonic()
        self._ev_cursor = 0
        self._rd_cursor = 0
        self._resend: tuple[int, int] | None = None
        self._responses_out: set[int] = set()
        self._response_mids: dict[int, int] = {}

    def start(self) -> None:
        """Connected: start from the first unsent record."""
        span = self._store.unsent_span(0)
        self._ev_cursor = self._rd_cursor = span[0] - 1 if span else self._store.last_seq
        self.last_progress = time.monotonic()

    def close(self) -> None:
        """The link has ended: hand an unfinished resend to the next one, close the reader."""
        if self._resend is not None:
            self._answers.put_back_resend(self._resend)
        self._reader.close()

    @property
    def in_flight(self) -> int:
        """Messages published and not yet acknowledged."""
        return len(self._inflight)

    def room(self) -> int:
        """How many more messages the window takes now."""
        return self._limit - len(self._inflight)

    def is_in_flight(self, mid: int) -> bool:
        """True until message `mid` is acknowledged."""
        return mid in self._inflight

    def records_in_flight(self) -> bool:
        """True while a message carrying records awaits its PUBACK."""
        return any(runs for runs in self._inflight.values())

    def publish(self, topic: str, payload: bytes, runs: Runs | None, retain: bool = False) -> int:
        """Publish a message into the window; its `runs` are marked sent on its PUBACK."""
        if not self._inflight:
            self.last_progress = time.monotonic()
        mid = self._send(topic, payload, retain)
        self._inflight[mid] = runs
        return mid

    def acknowledged(self, mid: int, refused: str | None) -> None:
        """The broker has acknowledged message `mid`, or `refused` it (the reason)."""
        runs = self._inflight.pop(mid, _NOT_TRACKED)
        if runs is _NOT_TRACKED:
            return
        self.last_progress = time.monotonic()
        token = self._response_mids.pop(mid, None)
        if token is not None:  # answered, even by a refusal: sending it again cannot help
            self._answers.response_acknowledged(token)
        if refused is not None:
            log.warning("the broker did not accept message %d: %s", mid, refused)
            return
        if runs:
            assert isinstance(runs, list)
            self._store.mark_sent(runs)
            self._store.set_status(last_publish_ts=now_ms())

    def responses(self) -> None:
        """Publish the command responses this link has not published yet (before records)."""
        for token, payload in self._answers.unsent_responses(self._responses_out):
            mid = self.publish(self._topics.cmd_res, payload, None)
            self._response_mids[mid] = token
            self._responses_out.add(token)

    def next(self) -> bool:
        """Publish the next message(s), as many as there is `room` for; False if none is due."""
        return self._records(self.room()) or self._resend_some() or self._readings()

    def _records(self, room: int) -> bool:
        store = self._store
        while self._ev_cursor < store.last_record_seq:
            records, last = self._reader.unsent_records(self._ev_cursor, room)
            if last == self._ev_cursor:
                return False
            self._ev_cursor = last
            for rec in records:
                self.publish(self._record_topic(rec), rec.json.encode(), [(rec.seq, rec.seq)])
            if records:
                return True
        return False

    def _readings(self) -> bool:
        telemetry = self._telemetry
        batch = self._reader.unsent_readings(
            self._rd_cursor, telemetry.batch_max, telemetry.max_fragment_bytes
        )
        if batch is None:
            return False
        self._rd_cursor = batch.cursor
        self.publish(self._topics.telemetry, telemetry.message(batch.fragments), batch.runs)
        return True

    def _resend_some(self) -> bool:
        """Publish again records the centre asked for (§8 resend); they are not re-marked."""
        if self._resend is None:
            self._resend = self._answers.next_resend()
            if self._resend is None:
                return False
        start, last = self._resend
        records = self._reader.records(start, last, self._telemetry.batch_max)
        self._resend = (records[-1].seq + 1, last) if records and records[-1].seq < last else None
        readings: list[str] = []
        for rec in records:
            if rec.kind == "reading":
                readings.append(rec.json)
            else:
                self.publish(self._record_topic(rec), rec.json.encode(), None)
        for payload in self._telemetry.messages(readings):
            self.publish(self._topics.telemetry, payload, None)
        return True

    def _record_topic(self, rec: OutboxRecord) -> str:
        return self._topics.event if rec.kind == "event" else self._topics.receipt
