"""The worker thread that plays broadcasts: amplifier, tone, speech, repeats, retries.

Why this module exists: playing is the slow, blocking part of a broadcast, and the only part
that touches the sound device and the amplifier relay. One thread does it, taking broadcasts
from the lineup (audio/broadcast_lineup.py) in priority order. For each one it starts rendering
the speech (TTS can take half a second) *before* anything else, switches the amplifier on
(warm-up), plays the tone, and only then waits for the speech, writing silence meanwhile — so
the first sound never waits for synthesis. The message (tone + speech) plays ``repeat`` times
with ``repeat_gap_s`` of silence between. An abort (preemption, cancel, close) stops it within
the player's 200 ms. When the queue runs empty the worker waits for the last sample to be heard,
stops the stream and releases the amplifier.

Device errors are retried ``retries`` more times from the start, ``retry_delay_s`` apart, then
the broadcast fails with ``audio_device`` and the queue's state is ``fault`` until something
plays again; speech errors fail it at once (audio/broadcast_speech.py).
"""

from __future__ import annotations

import logging
import threading
import time

from audio.amp import Amplifier
from audio.broadcast_lineup import Entry, Lineup
from audio.broadcast_speech import BroadcastFailed, speech_failure, wait_rendered
from audio.player import AudioDeviceError, Player
from audio.speech import SpeechStream
from audio.tones import TONE_NAMES, render_tone

log = logging.getLogger(__name__)


class BroadcastWorker:
    """Plays what the lineup hands it, on a thread of its own (see the module docstring)."""

    def __init__(
        self,
        lineup: Lineup,
        player: Player,
        amp: Amplifier,
        *,
        repeat_gap_s: float,
        retries: int,
        retry_delay_s: float,
    ) -> None:
        self._lineup = lineup
        self._reports = lineup.reports
        self._player = player
        self._amp = amp
        self._repeat_gap_s = repeat_gap_s
        self._retries = max(0, retries)
        self._retry_delay_s = retry_delay_s
        self._sounding = False  # audio or amplifier in use since the queue was last idle
        self.ready = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="broadcast-worker", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def join(self, timeout_s: float) -> bool:
        """Wait for the thread to end; False if it is still busy (stuck in the device)."""
        self._thread.join(timeout_s)
        return not self._thread.is_alive()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    # -- the loop -----------------------------------------------------------

    def _loop(self) -> None:
        self._warm_up()
        while (entry := self._next()) is not None:
            try:
                self._run(entry)
            except Exception:
                log.exception("broadcast %s crashed the player; dropped", entry.b.id)
                self._reports.status(entry.b.id, "failed", {"reason": "audio_device"})
            if self._lineup.finished(entry) and isinstance(entry.speech, SpeechStream):
                entry.speech.stop()  # played, cancelled or failed: render no more of it

    def _warm_up(self) -> None:
        """Render the tones and open the device now, so the first alert starts fast."""
        for name in TONE_NAMES:
            render_tone(name, self._player.rate)
        try:
            self._player.open()
            self._player.standby()
        except AudioDeviceError as exc:
            log.error("audio output unavailable: %s", exc)
            self._lineup.set_fault(True)
            self._reports.fault("audio_device")
        finally:
            self.ready.set()

    def _next(self) -> Entry | None:
        """Block for the next broadcast to play; go idle when the queue stays empty."""
        while True:
            # While sounding, wake when the last sample has been heard, to go idle.
            entry = self._lineup.take(self._player.queued_s() if self._sounding else None)
            if entry is not None:
                return entry
            if self._lineup.closed:
                return None
            if self._sounding and self._player.queued_s() <= 0:
                self._sounding = False
                self._player.standby()
                self._release_amp()

    # -- one broadcast --------------------------------------------------------

    def _run(self, entry: Entry) -> None:
        if entry.b.silent:
            self._run_silent(entry)
            return
        try:
            started = self._play_with_retries(entry)
        except BroadcastFailed as failure:
            log.warning("broadcast %s failed: %s (%s)", entry.b.id, failure.reason, failure)
            self._reports.status(entry.b.id, "failed", {"reason": failure.reason})
            return
        if started is not None:
            duration = round(self._player.audible_until() - started, 3)
            self._lineup.set_fault(False)
            played: dict[str, object] = {"duration_s": duration}
            if entry.speech is not None and entry.speech.voice_fallback:
                played["voice_fallback"] = True
            self._reports.status(entry.b.id, "played", played)
            return
        self._lineup.after_abort(entry)

    def _run_silent(self, entry: Entry) -> None:
        """A test without sound: the same states and the speech rendered, no audio, no amp."""
        start = time.monotonic()
        self._reports.status(entry.b.id, "playing", {})
        if entry.speech is not None:
            entry.speech.start(in_thread=False)
            try:
                wait_rendered(entry.speech)
            except BroadcastFailed as failure:
                self._reports.status(entry.b.id, "failed", {"reason": failure.reason})
                return
        duration = round(time.monotonic() - start, 3)
        self._reports.status(entry.b.id, "played", {"duration_s": duration, "silent": True})

    def _play_with_retries(self, entry: Entry) -> float | None:
        """Play the whole message; its start time, or None if aborted. Raises BroadcastFailed."""
        self._start_speech(entry)
        for attempt in range(self._retries + 1):
            try:
                return self._play_once(entry)
            except AudioDeviceError as exc:
                log.warning(
                    "audio device error on %s (attempt %d of %d): %s",
                    entry.b.id,
                    attempt + 1,
                    self._retries + 1,
                    exc,
                )
                self._player.close()
                if attempt == self._retries or entry.abort.wait(self._retry_delay_s):
                    break
        if entry.abort.is_set():
            self._raise_if_speech_failed(entry)
            return None
        self._lineup.set_fault(True)
        self._reports.fault("audio_device")
        raise BroadcastFailed("audio_device", "the audio device failed on every try")

    def _start_speech(self, entry: Entry) -> None:
        """Render in parallel when there is a tone or a warm-up to overlap, else inline."""
        if entry.speech is None:
            return
        overlap = entry.b.tone != "none" or (self._amp.warmup_s > 0 and not self._amp.is_on)
        # Text always renders beside the player: its first piece plays while the rest renders.
        entry.speech.start(in_thread=overlap or isinstance(entry.speech, SpeechStream))

    def _play_once(self, entry: Entry) -> float | None:
        b, player = entry.b, self._player
        if entry.speech is not None and entry.speech.done():
            wait_rendered(entry.speech)  # fail before "playing" if it failed already
        player.open()
        if not self._acquire_amp(entry.abort):
            self._raise_if_speech_failed(entry)
            return None
        tone = render_tone(b.tone, player.rate)
        start = time.monotonic() + player.queued_s()
        if not entry.announced:
            entry.announced = True
            self._reports.status(b.id, "playing", {})
        for index in range(b.repeat):
            if not self._play_round(entry, tone, index):
                self._raise_if_speech_failed(entry)
                return None
        return start

    def _play_round(self, entry: Entry, tone: bytes, index: int) -> bool:
        """One repeat: [gap], tone, speech. False if aborted."""
        player, abort = self._player, entry.abort
        if index > 0 and not player.silence(self._repeat_gap_s, abort):
            return False
        if tone and not player.play([tone], abort, entry.b.volume):
            return False
        if entry.b.live is not None:
            return player.play(entry.b.live(), abort, entry.b.volume)
        sounding = index > 0 or bool(tone)
        return entry.speech is None or self._play_speech(entry, index, sounding)

    def _raise_if_speech_failed(self, entry: Entry) -> None:
        """After an abort: BroadcastFailed if it was the speech failing (not a preempt or cancel)."""
        if entry.speech is not None and entry.speech.error is not None:
            wait_rendered(entry.speech)

    def _play_speech(self, entry: Entry, play: int, sounding: bool) -> bool:
        """Each piece of the speech as soon as it is rendered; silence while one is late."""
        speech, abort, player = entry.speech, entry.abort, self._player
        assert speech is not None
        pieces = speech.pieces(play)
        # Once this broadcast is sounding (a tone, a gap, a piece), a late piece is waited
        # for with silence, so the stream never runs dry; before its first sound, silently.
        while not abort.is_set():
            try:
                pcm = next(pieces, b"")
            except Exception as exc:
                raise speech_failure(exc) from exc
            if pcm == b"":
                return True
            if pcm is None:
                if sounding and not player.silence(player.chunk_s, abort):
                    return False
            elif not player.play([pcm], abort, entry.b.volume):
                return False
            else:
                sounding = True
        return False

    # -- the amplifier --------------------------------------------------------

    def _acquire_amp(self, abort: threading.Event) -> bool:
        self._sounding = True
        try:
            return self._amp.acquire(abort)
        except Exception as exc:
            log.error("amplifier relay failed: %s; playing anyway", exc)
            self._reports.fault("amplifier")
            return not abort.is_set()

    def _release_amp(self) -> None:
        try:
            self._amp.release()
        except Exception as exc:
            log.error("amplifier relay failed to release: %s", exc)
            self._reports.fault("amplifier")
