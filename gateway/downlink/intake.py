"""Downlink intake: what the centre sends becomes a broadcast, a receipt, a command reply, or nothing.

This is the only door to the loudspeakers from the network. Every message goes through
`open_envelope` (size, trust list, Ed25519 signature) before anything looks at its payload;
its envelope type must belong on its topic (gateway/downlink/router.py), and a message
answered before gets no new answer (gateway/downlink/answered.py). Only then is it handed to
its handler: alerts (gateway/downlink/alerts.py), commands (gateway/downlink/commands.py),
schedules (gateway/programmes/receiver.py). Whatever fails is answered as docs/protocol.md
§6–§8 prescribe — a `downlink_rejected` event for an envelope failure
(gateway/downlink/rejections.py), a `rejected`/`expired` receipt for a verified payload that
is wrong — and never makes a sound.

`Intake` builds the downlink's parts and is the service's one handle on them: messages in
(`handle`), the broadcast queue's progress in (`on_broadcast_status`), rule alarms in
(`local_broadcast`, gateway/downlink/local_alarms.py), the restart (`resume`,
gateway/downlink/resume.py), and the timers (`tick`, `stop`).
"""

from __future__ import annotations

import hashlib
import logging
import sqlite3
from collections.abc import Callable
from typing import Any, Protocol

from audio.broadcast_queue import BroadcastQueue
from audio.speech import Speaker
from audio.tts import Tts
from audio.voices import Voices
from gateway.clock import StationClock
from gateway.config.model import Config
from gateway.downlink.alerts import AlertIntake
from gateway.downlink.answered import AnsweredLog
from gateway.downlink.broadcasts import Broadcasts
from gateway.downlink.commands import Commands
from gateway.downlink.envelope import Envelope, EnvelopeError, open_envelope
from gateway.downlink.local_alarms import LocalAlarms
from gateway.downlink.receipts import ReceiptListener, Receipts
from gateway.downlink.rejections import Rejections
from gateway.downlink.resume import resume
from gateway.downlink.router import DownlinkTopics
from gateway.downlink.time_floor import TimeFloor
from gateway.log_folding import LogFolder
from gateway.rules import RuleEvent
from gateway.store import alert_log
from gateway.store.outbox import Store

log = logging.getLogger(__name__)


class UplinkPort(Protocol):
    """What intake needs of the uplink."""

    def state_changed(self) -> None: ...

    def publish_response(self, response: dict[str, Any]) -> None: ...

    def resend(self, from_seq: int, to_seq: int) -> tuple[int, int] | None: ...


class Intake:
    """Turns verified downlink into broadcasts and answers, and broadcast progress into receipts."""

    def __init__(
        self,
        config: Config,
        store: Store,
        queue: BroadcastQueue,
        *,
        clock: StationClock,
        uplink: UplinkPort,
        state: Callable[[], dict[str, Any]],
        last_readings: Callable[[], list[dict[str, Any]]],
        rate: int = 22050,
    ) -> None:
        self.config = config
        self.store = store
        self.queue = queue
        self.clock = clock
        self.uplink = uplink
        self.rate = rate
        self.scopes = config.security.key_scopes()
        self.trusted = {name: scope.public_key for name, scope in self.scopes.items()}
        self.topics = DownlinkTopics.of(config)
        self.floor = TimeFloor(store, clock)
        self.answered = AnsweredLog(store)
        store.budget.add_trimmer(self._prune_alert_log)
        self.rejections = Rejections(store, clock)
        self.receipts = Receipts(store, self.answered, self._told)
        self.log_folder = LogFolder(log)
        self.tts = Tts(
            config.storage.path.parent / "tts-cache",
            voice=config.audio.tts_voice,
            rate=rate,
            spares=True,
        )
        speaker = Speaker(
            self.tts,
            Voices(self.tts, config.audio.tts_voices),
            repeat_full_max_s=config.audio.repeat_full_max_s,
        )
        self.broadcasts = Broadcasts(config.audio, store, clock, speaker, rate)
        self.alerts = AlertIntake(
            config,
            store,
            queue,
            clock=clock,
            floor=self.floor,
            scopes=self.scopes,
            receipts=self.receipts,
            rejections=self.rejections,
            broadcasts=self.broadcasts,
            station_topic=self.topics.station_alert,
        )
        self.commands = Commands(
            config,
            store,
            queue,
            clock=clock,
            floor=self.floor,
            scopes=self.scopes,
            answered=self.answered,
            rejections=self.rejections,
            broadcasts=self.broadcasts,
            publish=uplink.publish_response,
            resend=uplink.resend,
            state=state,
            last_readings=last_readings,
        )
        self.local_alarms = LocalAlarms(
            store, queue, floor=self.floor, receipts=self.receipts, broadcasts=self.broadcasts
        )
        #: Where verified `programme` envelopes go (gateway/programmes/receiver.py).
        self.on_programme: Callable[[Envelope, str, bytes], None] | None = None
        #: Told of every receipt as it is stored (the demo's screen).
        self.on_receipt: ReceiptListener | None = None

    # -- the door ----------------------------------------------------------------------------

    def handle(self, topic: str, payload: bytes) -> None:
        """One downlink message. Never raises: a bug here must not take the station down."""
        try:
            self._handle(topic, payload)
        except Exception:
            log.exception("downlink on %s: unexpected error; the message was dropped", topic)

    def _handle(self, topic: str, payload: bytes) -> None:
        try:
            envelope = open_envelope(payload, self.trusted, self.config.security.max_payload_bytes)
        except EnvelopeError as exc:
            self.rejections.reject(exc.reason, topic, exc.key, payload, str(exc))
            return
        route = self.topics.route(envelope.type, topic)
        if route == "programme":
            # Retained schedules come again on every connect by design: the programme book
            # keeps the highest version, so answered-once does not apply (§10).
            if self.on_programme is not None:
                self.on_programme(envelope, topic, payload)
            return
        if route is None:
            # A type on the wrong topic (§6): a command relabelled for an alert topic, a
            # programme anywhere but a programme topic, ...
            detail = f"a {envelope.type} envelope does not belong on {topic}"
            self.rejections.reject("bad_envelope", topic, envelope.key, payload, detail)
            return
        if self._answered_before(envelope):
            return
        handler = self.commands.handle if route == "command" else self.alerts.handle
        try:
            handler(envelope, topic, payload)
        finally:
            self.answered.handled()  # noted after the broadcast is queued: off the sound path

    def _answered_before(self, envelope: Envelope) -> bool:
        """Answered once (docs/protocol.md §6): an identical verified message gets no new answer."""
        digest = hashlib.sha256(envelope.payload).digest()
        earlier = self.answered.answered(envelope.key, digest)
        if earlier is None:
            self.answered.handling(envelope.key, digest)
            return False
        self.log_folder.log(
            "replays of answered messages",
            self.clock.now_ms(),
            logging.INFO,
            "%s %s (key %s) was answered before: no new answer",
            envelope.type,
            earlier,
            envelope.key,
        )
        return True

    def reject_unread(self, reason: str, topic: str, sha256: str, detail: str) -> None:
        """A downlink message the link dropped before intake saw it (`too_large`, `poison`)."""
        self.rejections.reject_unread(reason, topic, sha256, detail)

    # -- the station's own broadcasts --------------------------------------------------------

    def local_broadcast_id(self, rule: str) -> str:
        """A new ``local:<rule>:<n>`` id for a rule's alarm (gateway/downlink/local_alarms.py)."""
        return self.local_alarms.next_id(rule)

    def local_broadcast(self, event: RuleEvent, broadcast_id: str) -> None:
        """A rule's alarm plays its broadcast (docs/protocol.md §9), network or not."""
        self.local_alarms.sound(event, broadcast_id)

    def resume(self) -> None:
        """After a crash or power cut, unfinished unexpired broadcasts play again from the start."""
        resume(
            self.store,
            self.queue,
            floor=self.floor,
            receipts=self.receipts,
            broadcasts=self.broadcasts,
            local_alarms=self.local_alarms,
        )

    def on_broadcast_status(self, broadcast_id: str, status: str, extra: dict[str, Any]) -> None:
        """A receipt for every step (docs/protocol.md §7); speaker tests answer their command."""
        if self.commands.speaker_test_status(broadcast_id, status, extra):
            return
        if not self.receipts.progress(broadcast_id, status, extra):
            return
        if status in ("playing", "played", "failed", "interrupted", "cancelled"):
            self.uplink.state_changed()

    def _told(self, alert_id: str, status: str, fields: dict[str, Any]) -> None:
        if self.on_receipt is not None:
            self.on_receipt(alert_id, status, fields)

    def _prune_alert_log(self, db: sqlite3.Connection) -> int:
        """For the storage budget: entries only an `expired` could answer now may go."""
        lifetime = self.config.security.max_alert_lifetime_s
        return alert_log.prune(db, self.floor.floor_ms, lifetime)

    # -- timers ------------------------------------------------------------------------------

    def tick(self, now_ms: int) -> None:
        """Publish folded `downlink_rejected` events whose minute has ended; keep the floor."""
        self.rejections.tick(now_ms)
        for folder in (self.log_folder, self.alerts.log_folder, self.commands.log_folder):
            folder.tick(now_ms)
        self.answered.flush()
        self.floor.tick()

    def stop(self) -> None:
        """At a clean stop: save the time floor (§6.1) and the answers not yet written."""
        self.floor.tick(force=True)
        self.answered.flush()
