"""Downlink intake: what the centre sends becomes a broadcast, a receipt, a command reply, or nothing.

This is the only door to the loudspeakers from the network. Every message goes
through `open_envelope` (size, trust list, Ed25519 signature) before anything
looks at its payload; only then is it parsed, matched against the station's
area, checked for time and replay, and handed to the broadcast queue. Whatever
fails is answered as docs/protocol.md §6–§8 prescribe — a `downlink_rejected` event
for an envelope failure, a `rejected`/`expired` receipt for a verified payload
that is wrong — and never makes a sound.

Accepted alerts are written to the alert log before the first receipt, so a
restart resumes them (§9) and a replayed id never plays twice (§6.1). Revision 2
checks, besides the signature, that the key may send what it sent where it sent
it (gateway/downlink/scope.py), that the message names this station, and its times
against the persisted time floor (gateway/downlink/time_floor.py); ids are per key
(gateway/downlink/alert_ids.py).
"""

from __future__ import annotations

import hashlib
import json
import logging
import sqlite3
from collections.abc import Callable
from typing import Any, Protocol

from audio.broadcast import Broadcast, Speech
from audio.broadcast_queue import BroadcastQueue
from audio.clips import BadAudio, UnknownClip, decode_wav, load_clip
from audio.speech import Speaker, SpeechText
from audio.tts import Tts, TtsUnavailable
from audio.voices import Voices
from gateway.clock import StationClock
from gateway.config import Config
from gateway.downlink.alert_ids import command_log_id, is_reserved, log_id, public_id, reachable
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
from gateway.downlink.answered import AnsweredLog
from gateway.downlink.cap import parse_cap, speech_parts
from gateway.downlink.command_model import Command, parse_command
from gateway.downlink.envelope import Envelope, EnvelopeError, open_envelope
from gateway.downlink.rejections import RejectionFolder
from gateway.downlink.scope import authorised
from gateway.downlink.time_floor import TimeFloor
from gateway.log_folding import LogFolder
from gateway.rules import RuleEvent
from gateway.store import alert_log
from gateway.store.outbox import Store
from gateway.untrusted import untrusted_text

log = logging.getLogger(__name__)

#: States of an alert in the log that mean "not finished: play it (again) after a restart".
UNFINISHED = ("received", "queued", "playing", "interrupted")
#: How long a local alarm broadcast stays worth playing after a restart.
LOCAL_BROADCAST_TTL_MS = 30 * 60 * 1000
SPEAKER_TEST_PREFIX = "speaker-test:"


def programme_topics(prefix: str, station_id: str, area: str) -> frozenset[str]:
    """The retained topics schedules come on (docs/protocol.md §2); `prefix` ends with /."""
    codes = ("all", *(area[:n] for n in (2, 4, 6, 9, 12)))
    return frozenset(
        {
            *(f"{prefix}programme/{code}" for code in codes),
            f"{prefix}station/{station_id}/programme",
        }
    )


class UplinkPort(Protocol):
    """What intake needs of the uplink."""

    def wake(self) -> None: ...

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
        self.state = state
        self.last_readings = last_readings
        self.rate = rate
        self.scopes = config.security.key_scopes()
        self.trusted = {name: scope.public_key for name, scope in self.scopes.items()}
        self.floor = TimeFloor(store, clock)
        self.rejections = RejectionFolder()
        self.answered = AnsweredLog(store)
        store.add_trimmer(self._prune_alert_log)
        self.log_folder = LogFolder(log)
        self._answering: tuple[str, bytes] | None = None
        self._answer: tuple[str, bytes, str] | None = None
        self.tts = Tts(
            config.storage.path.parent / "tts-cache",
            voice=config.audio.tts_voice,
            rate=rate,
            spares=True,
        )
        self.speaker = Speaker(
            self.tts,
            Voices(self.tts, config.audio.tts_voices),
            repeat_full_max_s=config.audio.repeat_full_max_s,
        )
        self._unsynced_alerts: set[str] = set()
        self._speaker_tests: dict[str, str] = {}
        # References an update/cancel stopped: the queue reports them `cancelled`, but the
        # receipt intake already wrote (`superseded` or `cancelled`) is the one that counts.
        self._replaced: set[str] = set()
        # Read once at start, while the file is surely readable; counted in memory after.
        self._local_n = store.run_write(alert_log.highest_local_number)
        prefix = f"{config.mqtt.topic_prefix}/"
        self._station_alert = f"{prefix}station/{config.station.id}/alert"
        self._station_cmd = f"{prefix}station/{config.station.id}/cmd"
        self._area_prefix = f"{prefix}alert/"
        self.programme_topics = programme_topics(prefix, config.station.id, config.station.area)
        #: Where verified `programme` envelopes go (gateway/programmes/receiver.py).
        self.on_programme: Callable[[Envelope, str, bytes], None] | None = None
        #: Told of every receipt as it is stored (the demo's screen).
        self.on_receipt: Callable[[str, str, dict[str, Any]], None] | None = None

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
            self._reject_downlink(exc.reason, topic, exc.key, payload, str(exc))
            return
        on_cmd_topic = topic == self._station_cmd
        on_alert_topic = topic == self._station_alert or topic.startswith(self._area_prefix)
        on_programme_topic = topic in self.programme_topics
        if envelope.type == "command" and on_cmd_topic:
            handler = self._command
        elif envelope.type in ("alert", "cap") and on_alert_topic:
            handler = self._alert
        elif envelope.type == "programme" and on_programme_topic:
            # Retained schedules come again on every connect by design: the programme book
            # keeps the highest version, so answered-once does not apply (§10).
            if self.on_programme is not None:
                self.on_programme(envelope, topic, payload)
            return
        else:
            # A type on the wrong topic (§6): a command relabelled for an alert topic, a
            # programme anywhere but a programme topic, ...
            detail = f"a {envelope.type} envelope does not belong on {topic}"
            self._reject_downlink("bad_envelope", topic, envelope.key, payload, detail)
            return
        if self._answered_before(envelope):
            return
        try:
            handler(envelope, topic, payload)
        finally:
            self._answering = None
            answer, self._answer = self._answer, None
            if answer is not None:  # noted after the broadcast is queued: off the sound path
                self.answered.add(*answer)

    def _answered_before(self, envelope: Envelope) -> bool:
        """Answered once (docs/protocol.md §6): an identical verified message gets no new answer."""
        digest = hashlib.sha256(envelope.payload).digest()
        earlier = self.answered.answered(envelope.key, digest)
        if earlier is None:
            self._answering = (envelope.key, digest)
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

    def _note_answer(self, message_id: str) -> None:
        """The first answer to the message being handled: remember it (gateway/downlink/answered.py)."""
        if self._answering is not None:
            key, digest = self._answering
            self._answering = None
            self._answer = (key, digest, message_id)

    def _reject_downlink(
        self, reason: str, topic: str, key: str | None, payload: bytes, detail: str
    ) -> None:
        digest = hashlib.sha256(payload).hexdigest()
        key = None if key is None else untrusted_text(key)
        detail = untrusted_text(detail, 500)
        self.log_folder.log(
            f"downlink rejected ({reason})",
            self.clock.now_ms(),
            logging.WARNING,
            "downlink rejected (%s) on %s, key %s, sha256 %s: %s",
            reason,
            topic,
            key,
            digest,
            detail,
        )
        event = self.rejections.record(reason, topic, key, digest, self.clock.now_ms())
        if event is not None:
            self._event(event)

    def reject_unread(self, reason: str, topic: str, sha256: str, detail: str) -> None:
        """A downlink message the link dropped before intake saw it (`too_large`, `poison`).

        Reported like any envelope failure: a log line and a folded `downlink_rejected` event.
        """
        log.warning("downlink rejected (%s) on %s, sha256 %s: %s", reason, topic, sha256, detail)
        event = self.rejections.record(reason, topic, None, sha256, self.clock.now_ms())
        if event is not None:
            self._event(event)

    def _event(self, event: dict[str, Any]) -> None:
        fields = dict(event)
        type_ = str(fields.pop("type", "downlink_rejected"))
        self.store.add_event(type_, fields)

    # -- alerts ------------------------------------------------------------------------------

    def _alert(self, envelope: Envelope, topic: str, raw: bytes) -> None:
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
            self._receipt(alert.id, "rejected", {"reason": "bad_payload"})
            return
        for_area = is_for_station(alert, self.config.station.area)
        if not for_area or not names_station(alert, self.config.station.id):
            reason = "not_for_this_area" if not for_area else "not_for_this_station"
            if topic == self._station_alert:
                self._receipt(alert.id, "rejected", {"reason": reason})
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
            self._receipt(alert.id, "rejected", {"reason": "not_authorised"})
            return
        if self.store.alert_record(log_id(envelope.key, alert.id)) is not None:
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
            self._receipt(alert.id, "expired", {} if synced else {"clock_unsynced": True})
            return
        if verdict == "from_future":
            self._receipt(alert.id, "rejected", {"reason": "from_future"})
            return
        try:
            cap = envelope.payload if envelope.type == "cap" else None
            speech = self._speech(alert, log_id(envelope.key, alert.id), cap_payload=cap)
        except (UnknownClip, BadAudio) as exc:
            reason = "unknown_clip" if isinstance(exc, UnknownClip) else "bad_audio"
            self._receipt(alert.id, "rejected", {"reason": reason})
            return
        self._accept(alert, envelope, synced, speech)

    def _payload_error(self, exc: PayloadError, topic: str, key: str, raw: bytes) -> None:
        if exc.alert_id is None:
            self._reject_downlink(exc.reason, topic, key, raw, str(exc))
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
        self._receipt(exc.alert_id, "rejected", {"reason": exc.reason})

    def _accept(
        self,
        alert: Alert,
        envelope: Envelope,
        synced: bool,
        speech: Speech | None,
    ) -> None:
        entry = log_id(envelope.key, alert.id)
        level = self._level_of(alert, envelope.key)
        record = {
            "kind": "central",
            "format": envelope.type,
            "key": envelope.key,
            # The payload once (a restart parses it again), not the audio a second time.
            **alert_log.payload_fields(envelope.payload),
            "alert": alert_log.summary(alert.model_dump(mode="json", exclude={"audio"})),
            "level": level,
            "expires_ms": effective_expiry_ms(alert, self.config.security.max_alert_lifetime_s),
            "silent": alert.status == "test" and not self.config.security.allow_test_sound,
        }
        # The log entry is durable before the sound (a restart resumes it, a replay finds it);
        # its `received` receipt shares the entry's transaction (docs/performance.md).
        received = {} if synced else {"clock_unsynced": True}
        if not self.store.remember_alert(
            entry, record, received=received, receipt_id=public_id(entry)
        ):
            log.info("alert %s was accepted before: not played again, no new receipt", alert.id)
            return
        self.floor.accepted(epoch_ms(alert.sent))
        if not synced:
            self._unsynced_alerts.add(entry)
        log.info(
            "alert %s accepted: %s %s %s from %s (key %s)",
            alert.id,
            alert.msg_type,
            level,
            alert.event,
            alert.sender,
            envelope.key,
        )
        self._note_answer(public_id(entry))
        self._stored(public_id(entry), "received", received)
        self._apply_references(alert, envelope.key)
        if alert.msg_type != "alert" and speech is None:
            self.store.set_alert_state(entry, "played")
            return
        self.queue.submit(self._broadcast(entry, alert, level, record, speech))

    def _referenced(self, alert: Alert, key: str) -> list[tuple[str, dict[str, Any]]]:
        """Log entries the references reach: the key's own alerts, any key's with `override`."""
        override = self.scopes[key].may("override")
        found = []
        for ref in alert.references:
            for entry in reachable(ref, key, self.scopes, override):
                record = self.store.alert_record(entry)
                if record is not None:
                    found.append((entry, record))
        return found

    def _level_of(self, alert: Alert, key: str) -> str:
        """An update or cancel plays at the level of the alert it replaces (docs/protocol.md §6.1)."""
        if alert.msg_type == "alert":
            return alert.level
        levels = [str(record["level"]) for _, record in self._referenced(alert, key)]
        return min(levels, key=LEVEL_RANK.__getitem__, default=alert.level)

    def _apply_references(self, alert: Alert, key: str) -> None:
        if alert.msg_type == "alert":
            return
        status = "cancelled" if alert.msg_type == "cancel" else "superseded"
        for entry, record in self._referenced(alert, key):
            if record.get("state") not in UNFINISHED:
                continue
            if self.queue.cancel(entry):
                self._replaced.add(entry)
            self.store.set_alert_state(entry, status)
            self._entry_receipt(entry, status, {"by": alert.id})

    def _broadcast(
        self,
        broadcast_id: str,
        alert: Alert,
        level: str,
        record: dict[str, Any],
        speech: Speech | None,
    ) -> Broadcast:
        audio = self.config.audio
        tone = alert.tone or audio.default_tone[level]  # type: ignore[index]
        repeat = alert.repeat or audio.default_repeat[level]  # type: ignore[index]
        if alert.msg_type == "cancel":
            repeat = alert.repeat or 1
        return Broadcast(
            id=broadcast_id,
            level=level,
            central=True,
            tone=tone,
            speech=speech,
            repeat=repeat,
            expires_ms=self._queue_expiry(int(record["expires_ms"])),
            silent=bool(record["silent"]),
        )

    def _queue_expiry(self, expires_ms: int) -> int | None:
        """When the queue may drop a broadcast: never while the clock is unsynced (§6.1).

        The queue compares with the wall clock, which is not to be trusted then; and
        when NTP later corrects it, a broadcast queued meanwhile must not vanish.
        """
        return expires_ms if self.clock.synced() else None

    def _speech(
        self, alert: Alert, entry: str, *, check: bool = True, cap_payload: bytes | None = None
    ) -> Speech | None:
        """What to say: inline audio, else a clip, else text through TTS (docs/protocol.md §6.1).

        Clips and inline audio are decoded now (`check`), so that a bad one is `rejected`
        before anything plays, and the result dropped: a queued broadcast waits as its
        source (the inline bytes stay in the alert log, a clip on disk, text as text) and is
        decoded again when it starts playing (§9), so 32 queued alerts do not hold 32
        decoded sounds. Text is rendered later, in parallel with the pre-tone.
        """
        rate, clips = self.rate, self.config.audio.clips_dir
        if alert.audio is not None:
            if check:
                decode_wav(alert.audio.data, rate)
            return lambda: decode_wav(self._inline_audio(entry), rate)
        if alert.clip is not None:
            if check:
                load_clip(clips, alert.clip, rate)
            clip = alert.clip
            return lambda: load_clip(clips, clip, rate)
        if not alert.text.strip():
            return None
        parts = speech_parts(cap_payload) if cap_payload is not None else None
        return self._tts(alert.text, alert.language, parts)

    def _inline_audio(self, entry: str) -> bytes:
        """The inline WAV of an accepted alert, read back from its alert-log entry."""
        record = self.store.alert_record(entry)
        alert = None if record is None else self._stored_alert(record)
        if alert is None or alert.audio is None:
            raise BadAudio(f"the inline audio of {entry} is no longer in the alert log")
        return alert.audio.data

    def _tts(
        self, text: str, language: str = "zh-CN", parts: tuple[str, str, str] | None = None
    ) -> Speech:
        if self.config.audio.tts == "none":

            def unavailable() -> bytes:
                raise TtsUnavailable('audio.tts = "none": the station cannot speak text')

            return unavailable
        return self.speaker.stream(SpeechText(text, language, parts))

    # -- local alarms ------------------------------------------------------------------------

    def _prune_alert_log(self, db: sqlite3.Connection) -> int:
        """For the storage budget: entries only an `expired` could answer now may go."""
        lifetime = self.config.security.max_alert_lifetime_s
        return alert_log.prune(db, self.floor.floor_ms, lifetime)

    def local_broadcast_id(self, rule: str) -> str:
        """A new ``local:<rule>:<n>`` id: n counts up from the highest the log holds.

        Never from the alarm event's seq: on a full disk the event has none yet.
        """
        self._local_n += 1
        return f"local:{rule}:{self._local_n}"

    def local_broadcast(self, event: RuleEvent, broadcast_id: str) -> None:
        """A rule's alarm plays its broadcast (docs/protocol.md §9), network or not."""
        spec = event.broadcast
        if spec is None:
            return
        level = getattr(spec, "level", None) or event.level
        record = {
            "kind": "local",
            "level": level,
            "rule": event.rule,
            "text": getattr(spec, "text", None),
            "clip": getattr(spec, "clip", None),
            "repeat": getattr(spec, "repeat", None),
            "expires_ms": self.floor.now_ms() + LOCAL_BROADCAST_TTL_MS,
            "silent": False,
        }
        if not self.store.remember_alert(broadcast_id, record):
            return
        self._receipt(broadcast_id, "received", {})
        self._submit_local(broadcast_id, record)

    def _submit_local(self, broadcast_id: str, record: dict[str, Any]) -> None:
        level = str(record["level"])
        try:
            if record.get("clip"):
                clips, clip, rate = self.config.audio.clips_dir, str(record["clip"]), self.rate
                load_clip(clips, clip, rate)  # refused now if it is missing or bad
                speech: Speech | None = lambda: load_clip(clips, clip, rate)  # noqa: E731
            else:
                speech = self._tts(str(record["text"]))
        except (UnknownClip, BadAudio) as exc:
            reason = "unknown_clip" if isinstance(exc, UnknownClip) else "bad_audio"
            self.store.set_alert_state(broadcast_id, "failed")
            self._receipt(broadcast_id, "failed", {"reason": reason})
            return
        self.queue.submit(
            Broadcast(
                id=broadcast_id,
                level=level,
                central=False,
                tone=self.config.audio.default_tone[level],  # type: ignore[index]
                speech=speech,
                repeat=int(record.get("repeat") or self.config.audio.default_repeat[level]),  # type: ignore[index]
                expires_ms=self._queue_expiry(int(record["expires_ms"])),
            )
        )

    # -- restart -----------------------------------------------------------------------------

    def resume(self) -> None:
        """After a crash or power cut, unfinished unexpired broadcasts play again from the start."""
        for record in self.store.unfinished_alerts():
            broadcast_id = str(record["id"])
            if record.get("kind") in ("programme", "microphone"):
                continue  # the scheduler resumes programmes; a microphone use ended with the process
            if record.get("kind") == "command":
                # Crashed between logging a command and answering it: the centre sees no
                # answer and may send a new command; running it twice is worse.
                self.store.set_alert_state(broadcast_id, "done")
                continue
            if int(record["expires_ms"]) <= self.floor.now_ms():
                self.store.set_alert_state(broadcast_id, "expired")
                self._entry_receipt(broadcast_id, "expired", {})
                continue
            log.info("resuming broadcast %s after a restart", broadcast_id)
            if record.get("kind") == "local":
                self._submit_local(broadcast_id, record)
                continue
            try:
                alert = self._stored_alert(record)
                cap = alert_log.stored_payload(record) if record.get("format") == "cap" else None
                speech = self._speech(alert, broadcast_id, check=False, cap_payload=cap)
            except Exception as exc:  # the stored alert was valid when accepted
                log.error("cannot resume %s: %s", broadcast_id, exc)
                self.store.set_alert_state(broadcast_id, "failed")
                self._entry_receipt(broadcast_id, "failed", {"reason": "bad_payload"})
                continue
            self.queue.submit(
                self._broadcast(broadcast_id, alert, str(record["level"]), record, speech)
            )

    @staticmethod
    def _stored_alert(record: dict[str, Any]) -> Alert:
        """The alert of an unfinished log entry, parsed from the payload it arrived as."""
        payload = alert_log.stored_payload(record)
        if payload is None:  # an entry of an older release: the alert's JSON form
            return parse_alert_json(json.dumps(record["alert"]).encode())
        return parse_cap(payload) if record.get("format") == "cap" else parse_alert_json(payload)

    # -- progress from the broadcast queue ---------------------------------------------------

    def on_broadcast_status(self, broadcast_id: str, status: str, extra: dict[str, Any]) -> None:
        """A receipt for every step (docs/protocol.md §7); speaker tests answer their command."""
        if broadcast_id in self._speaker_tests:  # not by prefix: an alert id may look alike
            self._speaker_test_done(broadcast_id, status, extra)
            return
        if broadcast_id in self._replaced and status == "cancelled":
            self._replaced.discard(broadcast_id)
            return
        self.store.set_alert_state(broadcast_id, status)
        # `queued` rides with the next commit, normally `playing` a moment later: one fsync
        # less before the first sound (docs/performance.md).
        self._entry_receipt(broadcast_id, status, dict(extra), defer=status == "queued")
        if status in ("playing", "played", "failed", "interrupted", "cancelled"):
            self.uplink.state_changed()

    def _entry_receipt(
        self, entry: str, status: str, fields: dict[str, Any], *, defer: bool = False
    ) -> None:
        """A receipt about an alert-log entry (it names the alert's own id, not the key's)."""
        if entry in self._unsynced_alerts:
            fields["clock_unsynced"] = True
        self._receipt(public_id(entry), status, fields, defer=defer)

    def _receipt(
        self, alert_id: str, status: str, fields: dict[str, Any], *, defer: bool = False
    ) -> None:
        self._note_answer(alert_id)
        self.store.add_receipt(alert_id, status, fields, defer=defer)  # the store wakes the uplink
        self._stored(alert_id, status, fields)

    def _stored(self, alert_id: str, status: str, fields: dict[str, Any]) -> None:
        """Say that a receipt is stored: in the log, and to `on_receipt`."""
        log.info("receipt %s %s %s", alert_id, status, fields or "")
        if self.on_receipt is not None:
            self.on_receipt(alert_id, status, fields)

    # -- commands ----------------------------------------------------------------------------

    def _command(self, envelope: Envelope, topic: str, raw: bytes) -> None:
        security = self.config.security
        try:
            command = parse_command(envelope.payload, security.max_command_lifetime_s)
        except PayloadError as exc:
            if exc.alert_id is None:
                self._reject_downlink(exc.reason, topic, envelope.key, raw, str(exc))
            else:
                log.warning("command %s refused (%s): %s", exc.alert_id, exc.reason, exc.detail)
                self._respond(exc.alert_id, error=exc.reason)
            return
        error = self._command_refusal(command, envelope.key)
        if error is not None:
            log.warning("command %s refused: %s", command.id, error)
            self._respond(command.id, error=error)
            return
        # Remembered before the time checks: a replay is never answered, even once expired (§8).
        entry = command_log_id(envelope.key, command.id)
        if not self.store.remember_alert(entry, {"kind": "command", "expires_ms": 0}):
            self.log_folder.log(
                "repeats of answered commands",
                self.clock.now_ms(),
                logging.INFO,
                "command %s was answered before: ignored",
                command.id,
            )
            return
        self.store.set_alert_state(entry, "done")
        synced = self.floor.synced()
        verdict = check_time(command, self.floor.now_ms(), synced, security.max_clock_skew_s)
        if verdict == "ok" and not synced and epoch_ms(command.sent) <= self.floor.floor_ms:
            # Unsynced, the clock cannot say how old it is: only one newer than anything
            # accepted so far (and than this release) may run (§8).
            verdict = "expired"
        if verdict != "ok":
            log.warning("command %s refused: %s", command.id, verdict)
            self._respond(command.id, error=verdict)
            return
        self.floor.accepted(epoch_ms(command.sent))
        log.info("command %s: %s %s (key %s)", command.id, command.cmd, command.args, envelope.key)
        self._run_command(command)

    def _command_refusal(self, command: Command, key: str) -> str | None:
        """Why a verified command may not run here: another station's, or outside its key."""
        if command.station != self.config.station.id:
            return "not_for_this_station"
        if not authorised(self.scopes[key], "command", [self.config.station.area]):
            return "not_authorised"
        return None

    def _run_command(self, command: Command) -> None:
        if command.cmd == "status":
            result = {
                **self.state(),
                "online": True,
                "last_readings": self.last_readings()[-20:],
                "queue": [
                    {**item, "id": public_id(str(item["id"]))} for item in self.queue.snapshot()
                ],
            }
            self._respond(command.id, result=result)
        elif command.cmd == "cancel_all":
            cancelled = [public_id(entry) for entry in self.queue.cancel_all()]
            self._respond(command.id, result={"cancelled": cancelled})
        elif command.cmd == "resend":
            span = self.uplink.resend(int(command.args["from_seq"]), int(command.args["to_seq"]))
            result = {"from_seq": span[0], "to_seq": span[1]} if span else {"from_seq": None}
            self._respond(command.id, result=result)
        elif command.cmd == "speaker_test":
            broadcast_id = f"{SPEAKER_TEST_PREFIX}{command.id}"
            self._speaker_tests[broadcast_id] = command.id
            self.queue.submit(
                Broadcast(
                    id=broadcast_id,
                    level="blue",
                    central=True,
                    tone="chime",
                    speech=None,
                    repeat=1,
                    volume=float(command.args["volume"]),
                )
            )

    def _speaker_test_done(self, broadcast_id: str, status: str, extra: dict[str, Any]) -> None:
        if status in ("queued", "playing", "interrupted"):
            return
        command_id = self._speaker_tests.pop(broadcast_id)
        if status == "played":
            self._respond(command_id, result={"played": True, **extra})
        else:
            self._respond(command_id, error=str(extra.get("reason", status)))

    def _respond(
        self, command_id: str, *, result: dict[str, Any] | None = None, error: str | None = None
    ) -> None:
        self._note_answer(command_id)
        response: dict[str, Any] = {"id": command_id, "ok": error is None}
        if error is None:
            response["result"] = result or {}
        else:
            response["error"] = error
        self.uplink.publish_response(response)

    # -- timers ------------------------------------------------------------------------------

    def tick(self, now_ms: int) -> None:
        """Publish folded `downlink_rejected` events whose minute has ended; keep the floor."""
        for event in self.rejections.due(now_ms):
            self._event(event)
        self.log_folder.tick(now_ms)
        self.answered.flush()
        self.floor.tick()

    def stop(self) -> None:
        """At a clean stop: save the time floor (§6.1) and the answers not yet written."""
        self.floor.tick(force=True)
        self.answered.flush()


LEVEL_RANK = {"red": 0, "orange": 1, "yellow": 2, "blue": 3}
