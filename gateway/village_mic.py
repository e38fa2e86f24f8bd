"""The village microphone in the running station (docs/protocol.md §11).

A press of the push-to-talk button becomes a live broadcast `mic:<n>` at
`audio.microphone_level` (by default between `blue` and `routine`: it preempts
programmes and is preempted by every alert and local alarm), with receipts as for
any broadcast. The release ends it: the broadcast `played` (or `cancelled`, if an
alert was still holding the loudspeakers), a `microphone` event with `started_ts`
and `duration_s`, and with `microphone.record = true` a WAV of what was said,
kept under the data folder within a tenth of the storage budget (oldest first out).

A missing input device is reported once at start (a log line that says what to check
and a `broadcast_fault` event); the rest of the station works as before and a press
of the button is logged and ignored.
"""

from __future__ import annotations

import logging
import time
import wave
from collections.abc import Callable
from pathlib import Path
from typing import Any

from audio.broadcast import Broadcast
from audio.broadcast_queue import BroadcastQueue
from audio.microphone import MicInput, MicrophoneError, Talk
from audio.ptt import PushToTalk
from gateway.clock import StationClock
from gateway.config.model import Config
from gateway.config.sections import MicrophoneConfig
from gateway.store.alert_records import AlertRecord
from gateway.store.outbox import Store

log = logging.getLogger(__name__)

#: Share of `storage.max_mb` the recordings may take.
RECORDING_SHARE = 0.1

Receipt = Callable[[str, str, dict[str, Any]], None]
RecordEvent = Callable[[str, dict[str, Any]], object]


class VillageMicrophone:
    """Button, input and broadcast of the village microphone (see the module docstring)."""

    def __init__(
        self,
        config: Config,
        mic_config: MicrophoneConfig,
        *,
        store: Store,
        queue: BroadcastQueue,
        clock: StationClock,
        rate: int,
        record_event: RecordEvent,
        threadsafe: Callable[[Callable[..., None]], Callable[..., None]],
        pin_factory: Any = None,
    ) -> None:
        self.config = mic_config
        self.level = config.audio.microphone_level
        self._store = store
        self._queue = queue
        self._clock = clock
        self._record_event = record_event
        self._recordings = config.storage.path.parent / "microphone"
        self._budget = int(config.storage.max_mb * 1024 * 1024 * RECORDING_SHARE)
        self.input = MicInput(mic_config.device, rate, gain=mic_config.gain)
        self.available = False
        self.talk: Talk | None = None
        self._talk_id: str | None = None
        self._started_ts = 0
        self.button = PushToTalk(
            mic_config.ptt_pin,
            threadsafe(self._on_button),
            debounce_s=mic_config.debounce_s,
            on_fault=threadsafe(self._on_button_fault),
            pin_factory=pin_factory,
        )
        self._fault_threadsafe = threadsafe(self._fault)

    def start(self) -> None:
        try:
            self.input.open()
            self.available = True
        except MicrophoneError as exc:
            log.error(
                "village microphone unavailable: %s. Check that the USB sound card is plugged "
                "in and that [microphone] device names it (`arecord -l` lists the inputs); "
                "alerts, programmes and local alarms work without it",
                exc,
            )
            self._fault(f"microphone: {exc}")
        self.button.start()

    def close(self) -> None:
        self.button.stop()
        if self.talk is not None:
            self._release()
        self.input.close()

    # -- the button (on the event loop) ------------------------------------------------------

    def _on_button(self, pressed: bool) -> None:
        if pressed:
            self._press()
        elif self.talk is not None:
            self._release()

    def _on_button_fault(self, reason: str) -> None:
        self._fault(f"microphone button: {reason}")

    def _fault(self, reason: str) -> None:
        self._record_event("broadcast_fault", {"reason": reason})

    def _press(self) -> None:
        if self.talk is not None:
            return
        if not self.available:
            log.warning("push-to-talk pressed, but the microphone input is unavailable")
            return
        broadcast_id = self._new_id()
        self._started_ts = self._clock.now_ms()
        talk = Talk(self.input, record=self.config.record, on_error=self._fault_threadsafe)
        self.talk, self._talk_id = talk, broadcast_id
        talk.start()
        log.info("village microphone on (%s)", broadcast_id)
        self._queue.submit(
            Broadcast(
                id=broadcast_id,
                level=self.level,
                central=False,
                tone="none",
                speech=None,
                repeat=1,
                live=talk.source,
            )
        )

    def _new_id(self) -> str:
        n = self._store.last_seq + 1
        record = AlertRecord(kind="microphone", level=self.level)
        while not self._store.alerts.remember(f"mic:{n}", record):
            n += 1
        return f"mic:{n}"

    def _release(self) -> None:
        talk, broadcast_id = self.talk, self._talk_id
        assert talk is not None and broadcast_id is not None
        self.talk = self._talk_id = None
        talk.finish()
        queued = any(
            e["id"] == broadcast_id and e["state"] == "queued" for e in self._queue.snapshot()
        )
        if queued:  # an alert still holds the loudspeakers: this use is over unheard
            self._queue.cancel(broadcast_id)
        duration = round(time.monotonic() - talk.started, 3)
        fields: dict[str, Any] = {"started_ts": self._started_ts, "duration_s": duration}
        if talk.latencies_s:
            fields["max_latency_ms"] = round(max(talk.latencies_s) * 1000, 1)
        if self.config.record and talk.recorded:
            fields["recording"] = self._save(broadcast_id, bytes(talk.recorded))
        log.info("village microphone off (%s): %s", broadcast_id, fields)
        self._record_event("microphone", fields)

    # -- recordings ---------------------------------------------------------------------------

    def _save(self, broadcast_id: str, pcm: bytes) -> str:
        """Write the use as a WAV file, then trim old ones to the budget; returns its name."""
        self._recordings.mkdir(parents=True, exist_ok=True)
        name = f"{broadcast_id.replace(':', '-')}-{self._started_ts}.wav"
        path = self._recordings / name
        try:
            with wave.open(str(path), "wb") as out:
                out.setnchannels(1)
                out.setsampwidth(2)
                out.setframerate(self.input.rate)
                out.writeframes(pcm)
        except OSError as exc:
            log.error("cannot keep the microphone recording %s: %s", path, exc)
            return ""
        trim(self._recordings, self._budget)
        return name


def trim(folder: Path, budget: int) -> None:
    """Delete the oldest WAV files in `folder` until they fit in `budget` bytes."""
    files = sorted(folder.glob("*.wav"), key=lambda p: p.stat().st_mtime)
    total = sum(p.stat().st_size for p in files)
    for path in files[:-1]:  # the newest one stays, whatever its size
        if total <= budget:
            break
        total -= path.stat().st_size
        path.unlink(missing_ok=True)
