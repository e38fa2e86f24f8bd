"""Alert acceptance: a verified alert or CAP envelope is checked, logged, and queued — or answered.

Why this module exists: this is where a signed alert earns its sound. In the order of
docs/protocol.md §6.1, a payload is parsed (JSON or CAP, gateway/downlink/alert_model.py,
gateway/downlink/cap.py), refused if it uses the station's own ids, matched against the
station's area and id, checked against the key's scope (gateway/downlink/scope.py), looked
up in the alert log (a replay gets no new receipt, not even `expired`), checked for time
against the time floor (gateway/downlink/time_floor.py), and its clip or inline audio
decoded. Whatever fails is a `rejected` or `expired` receipt and never makes a sound.

An accepted alert is written to the alert log before the first receipt, in the same
transaction as its `received` receipt, so a restart resumes it (§9) and a replayed id never
plays twice; an update or cancel then stops the alerts it references, and plays at the
level of the alert it replaces.
"""

from __future__ import annotations

import logging

from audio.broadcast import Speech
from audio.broadcast_queue import BroadcastQueue
from audio.clips import BadAudio, UnknownClip
from audio.levels import Level
from gateway.clock import StationClock
from gateway.config.model import Config
from gateway.downlink.alert_ids import is_reserved, log_id, public_id, reachable
from gateway.downlink.alert_model import (
    Alert,
    PayloadError,
    check_time,
    effective_expiry_ms,
    epoch_ms,
    is_for_station,
    names_station,
    parse_alert_json,
)
from gateway.downlink.broadcasts import Broadcasts
from gateway.downlink.cap import parse_cap
from gateway.downlink.envelope import Envelope
from gateway.downlink.receipts import Receipts
from gateway.downlink.rejections import Rejections
from gateway.downlink.scope import KeyScope, authorised
from gateway.downlink.time_floor import TimeFloor
from gateway.log_folding import LogFolder
from gateway.store.alert_log import UNFINISHED_STATES
from gateway.store.alert_records import AlertRecord, LogEntry, summary
from gateway.store.outbox import Store
from gateway.untrusted import untrusted_text

log = logging.getLogger(__name__)


class AlertIntake:
    """Accepts verified alerts (JSON or CAP) for the loudspeakers, or answers why not."""

    def __init__(
        self,
        config: Config,
        store: Store,
        queue: BroadcastQueue,
        *,
        clock: StationClock,
        floor: TimeFloor,
        scopes: dict[str, KeyScope],
        receipts: Receipts,
        rejections: Rejections,
        broadcasts: Broadcasts,
        station_topic: str,
    ) -> None:
        self.config = config
        self.store = store
        self.queue = queue
        self.clock = clock
        self.floor = floor
        self.scopes = scopes
        self.receipts = receipts
        self.rejections = rejections
        self.broadcasts = broadcasts
        #: Alerts on this topic name the station itself: one for elsewhere gets an answer.
        self.station_topic = station_topic
        self.log_folder = LogFolder(log)

    def handle(self, envelope: Envelope, topic: str, raw: bytes) -> None:
        """One verified `alert` or `cap` envelope that came on an alert topic."""
        try:
            alert = (
                parse_cap(envelope.payload)
                if envelope.type == "cap"
                else parse_alert_json(envelope.payload)
            )
        except PayloadError as exc:
            self._payload_error(exc, topic, envelope.key, raw)
            return
        if is_reserved(alert.id) or any(is_reserved(ref) for ref in alert.references):
            # The station's own ids (local broadcasts, commands, programmes, the microphone):
            # the centre stops a local broadcast with `cancel_all` (§6.1).
            self.receipts.receipt(alert.id, "rejected", {"reason": "bad_payload"})
            return
        for_area = is_for_station(alert, self.config.station.area)
        if not for_area or not names_station(alert, self.config.station.id):
            reason = "not_for_this_area" if not for_area else "not_for_this_station"
            if topic == self.station_topic:
                self.receipts.receipt(alert.id, "rejected", {"reason": reason})
            else:
                log.debug(
                    "alert %s is for %s / %s, not this station",
                    alert.id,
                    alert.areas,
                    alert.stations,
                )
            return
        if not authorised(self.scopes[envelope.key], envelope.type, alert.areas):
            log.warning(
                "alert %s: key %s may not send it (%s to %s)",
                alert.id,
                envelope.key,
                envelope.type,
                alert.areas,
            )
            self.receipts.receipt(alert.id, "rejected", {"reason": "not_authorised"})
            return
        if self.store.alerts.entry(log_id(envelope.key, alert.id)) is not None:
            # Before the time checks: a replay gets no new receipt, not even `expired` (§6.1).
            self.log_folder.log(
                "repeats of accepted alerts",
                self.clock.now_ms(),
                logging.INFO,
                "alert %s was accepted before: not played again, no new receipt",
                alert.id,
            )
            return
        synced = self.floor.synced()
        verdict = check_time(
            alert,
            self.floor.now_ms(),
            synced,
            self.config.security.max_clock_skew_s,
            self.config.security.max_alert_lifetime_s,
        )
        if verdict == "expired":
            self.receipts.receipt(alert.id, "expired", {} if synced else {"clock_unsynced": True})
            return
        if verdict == "from_future":
            self.receipts.receipt(alert.id, "rejected", {"reason": "from_future"})
            return
        try:
            cap = envelope.payload if envelope.type == "cap" else None
            speech = self.broadcasts.speech(alert, log_id(envelope.key, alert.id), cap_payload=cap)
        except (UnknownClip, BadAudio) as exc:
            reason = "unknown_clip" if isinstance(exc, UnknownClip) else "bad_audio"
            self.receipts.receipt(alert.id, "rejected", {"reason": reason})
            return
        self._accept(alert, envelope, synced, speech)

    def _payload_error(self, exc: PayloadError, topic: str, key: str, raw: bytes) -> None:
        if exc.alert_id is None:
            self.rejections.reject(exc.reason, topic, key, raw, str(exc))
            return
        self.log_folder.log(
            f"alerts rejected ({exc.reason})",
            self.clock.now_ms(),
            logging.WARNING,
            "alert %s rejected (%s): %s",
            exc.alert_id,
            exc.reason,
            untrusted_text(str(exc), 500),
        )
        self.receipts.receipt(exc.alert_id, "rejected", {"reason": exc.reason})

    def _accept(
        self,
        alert: Alert,
        envelope: Envelope,
        synced: bool,
        speech: Speech | None,
    ) -> None:
        entry = log_id(envelope.key, alert.id)
        level = self._level_of(alert, envelope.key)
        record = AlertRecord(
            kind="central",
            format=envelope.type,
            key=envelope.key,
            # The payload once (a restart parses it again), not the audio a second time.
            payload=envelope.payload,
            alert=summary(alert.model_dump(mode="json", exclude={"audio"})),
            level=level,
            expires_ms=effective_expiry_ms(alert, self.config.security.max_alert_lifetime_s),
            silent=alert.status == "test" and not self.config.security.allow_test_sound,
        )
        # The log entry is durable before the sound (a restart resumes it, a replay finds it);
        # its `received` receipt shares the entry's transaction (docs/performance.md).
        received = {} if synced else {"clock_unsynced": True}
        if not self.store.alerts.remember(
            entry, record, received=received, receipt_id=public_id(entry)
        ):
            log.info("alert %s was accepted before: not played again, no new receipt", alert.id)
            return
        self.floor.accepted(epoch_ms(alert.sent))
        if not synced:
            self.receipts.unsynced.add(entry)
        log.info(
            "alert %s accepted: %s %s %s from %s (key %s)",
            alert.id,
            alert.msg_type,
            level,
            alert.event,
            alert.sender,
            envelope.key,
        )
        self.receipts.received(public_id(entry), received)
        self._apply_references(alert, envelope.key)
        if alert.msg_type != "alert" and speech is None:
            self.store.alerts.set_state(entry, "played")
            return
        self.queue.submit(self.broadcasts.alert(entry, alert, level, record, speech))

    def _referenced(self, alert: Alert, key: str) -> list[LogEntry]:
        """Log entries the references reach: the key's own alerts, any key's with `override`."""
        override = self.scopes[key].may("override")
        found = []
        for ref in alert.references:
            for entry_id in reachable(ref, key, self.scopes, override):
                entry = self.store.alerts.entry(entry_id)
                if entry is not None:
                    found.append(entry)
        return found

    def _level_of(self, alert: Alert, key: str) -> Level:
        """An update or cancel plays at the level of the alert it replaces (docs/protocol.md §6.1)."""
        if alert.msg_type == "alert":
            return alert.level
        levels = [entry.record.sound_level for entry in self._referenced(alert, key)]
        return max(levels, default=alert.level)

    def _apply_references(self, alert: Alert, key: str) -> None:
        if alert.msg_type == "alert":
            return
        status = "cancelled" if alert.msg_type == "cancel" else "superseded"
        for entry in self._referenced(alert, key):
            if entry.state not in UNFINISHED_STATES:
                continue
            if self.queue.cancel(entry.id):
                self.receipts.replaced.add(entry.id)
            self.store.alerts.set_state(entry.id, status)
            self.receipts.entry_receipt(entry.id, status, {"by": alert.id})
