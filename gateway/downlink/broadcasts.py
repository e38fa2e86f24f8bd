"""What the station hands the broadcast queue: every `Broadcast` built here, with its speech.

Why this module exists: a central alert (accepted or resumed), a local alarm (sounded or
resumed) and a speaker test all become a `Broadcast` (audio/broadcast_queue.py). The rules
they share live in `Broadcasts.build`, the one place one is made: a level's tone and repeat
unless the message sets its own (docs/config.md, `audio.default_tone` and
`audio.default_repeat`), and no expiry while the clock is unsynced (docs/protocol.md §6.1).

What a broadcast says is chosen here too (docs/protocol.md §6.1, §9): inline audio, else a
clip, else text through TTS. Clips and inline audio are decoded at acceptance, so that a bad
one is `rejected` before anything plays, and the result dropped: a queued broadcast waits as
its source (the inline bytes in the alert log, a clip on disk, text as text) and is decoded
again when it starts playing, so 32 queued alerts do not hold 32 decoded sounds. Text is
rendered later, in parallel with the pre-tone.
"""

from __future__ import annotations

import json

from audio.broadcast import Broadcast, Speech
from audio.clips import BadAudio, decode_wav, load_clip
from audio.levels import Level
from audio.speech import Speaker, SpeechText
from audio.tts import TtsUnavailable
from gateway.clock import StationClock
from gateway.config.sections import AudioConfig
from gateway.downlink.alert_model import DEFAULT_LANGUAGE, Alert, parse_alert_json
from gateway.downlink.cap import parse_cap, speech_parts
from gateway.store.alert_records import AlertRecord
from gateway.store.outbox import Store


def stored_alert(record: AlertRecord) -> Alert:
    """The alert of an unfinished log entry, parsed from the payload it arrived as."""
    payload = record.payload
    if payload is None:  # an entry of an older release: the alert's JSON form
        return parse_alert_json(json.dumps(record.alert).encode())
    return parse_cap(payload) if record.format == "cap" else parse_alert_json(payload)


class Broadcasts:
    """Builds the broadcasts of alerts, local alarms and speaker tests, and their speech."""

    def __init__(
        self, audio: AudioConfig, store: Store, clock: StationClock, speaker: Speaker, rate: int
    ) -> None:
        self.audio = audio
        self.store = store
        self.clock = clock
        self.speaker = speaker
        self.rate = rate

    def build(
        self,
        broadcast_id: str,
        level: Level,
        speech: Speech | None,
        *,
        central: bool,
        tone: str | None = None,
        repeat: int | None = None,
        expires_ms: int | None = None,
        silent: bool = False,
        volume: float | None = None,
    ) -> Broadcast:
        """A broadcast: the level's tone and repeat unless given; no expiry while unsynced.

        The queue compares the expiry with the wall clock, which is not to be trusted while
        unsynced; and when NTP later corrects it, a broadcast queued meanwhile must not vanish.
        """
        return Broadcast(
            id=broadcast_id,
            level=level,
            central=central,
            tone=tone or self.audio.default_tone[level],  # type: ignore[index]
            speech=speech,
            repeat=repeat or self.audio.default_repeat[level],  # type: ignore[index]
            expires_ms=expires_ms if self.clock.synced() else None,
            silent=silent,
            volume=volume,
        )

    def alert(
        self, entry: str, alert: Alert, level: Level, record: AlertRecord, speech: Speech | None
    ) -> Broadcast:
        """The broadcast of an accepted central alert (its alert-log `record`)."""
        return self.build(
            entry,
            level,
            speech,
            central=True,
            tone=alert.tone,
            # A cancel says its text once unless it asks for more.
            repeat=alert.repeat or (1 if alert.msg_type == "cancel" else None),
            expires_ms=record.expires_ms,
            silent=record.silent,
        )

    def local(self, broadcast_id: str, record: AlertRecord) -> Broadcast:
        """The broadcast of a local alarm; UnknownClip or BadAudio if its clip is missing or bad."""
        # A clip is refused now if it is missing or bad.
        speech = self.clip(record.clip) if record.clip else self.tts(str(record.text))
        return self.build(
            broadcast_id,
            record.sound_level,
            speech,
            central=False,
            repeat=record.repeat,
            expires_ms=record.expires_ms,
        )

    # -- speech ------------------------------------------------------------------------------

    def speech(
        self, alert: Alert, entry: str, *, check: bool = True, cap_payload: bytes | None = None
    ) -> Speech | None:
        """What an alert says: inline audio, else a clip, else text; `check` decodes it now."""
        if alert.audio is not None:
            rate = self.rate
            if check:
                decode_wav(alert.audio.data, rate)
            return lambda: decode_wav(self._inline_audio(entry), rate)
        if alert.clip is not None:
            return self.clip(alert.clip, check=check)
        if not alert.text.strip():
            return None
        parts = speech_parts(cap_payload) if cap_payload is not None else None
        return self.tts(alert.text, alert.language, parts)

    def clip(self, name: str, *, check: bool = True) -> Speech:
        """A clip of `audio.clips_dir`, loaded when it plays; `check` loads it once now."""
        clips, rate = self.audio.clips_dir, self.rate
        if check:
            load_clip(clips, name, rate)
        return lambda: load_clip(clips, name, rate)

    def tts(
        self, text: str, language: str = DEFAULT_LANGUAGE, parts: tuple[str, str, str] | None = None
    ) -> Speech:
        """Text through TTS, rendered when it plays (audio/speech.py)."""
        if self.audio.tts == "none":

            def unavailable() -> bytes:
                raise TtsUnavailable('audio.tts = "none": the station cannot speak text')

            return unavailable
        return self.speaker.stream(SpeechText(text, language, parts))

    def _inline_audio(self, entry: str) -> bytes:
        """The inline WAV of an accepted alert, read back from its alert-log entry."""
        found = self.store.alerts.entry(entry)
        alert = None if found is None else stored_alert(found.record)
        if alert is None or alert.audio is None:
            raise BadAudio(f"the inline audio of {entry} is no longer in the alert log")
        return alert.audio.data
