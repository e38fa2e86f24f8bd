"""The broadcast queue: which message the loudspeakers say now, and what became of each.

Everything that makes sound goes through one ``BroadcastQueue`` — central
alerts, local alarms, the speaker test — so that nothing else can take the
loudspeakers and the order is always docs/protocol.md §9:

- priority ``red`` > ``orange`` > ``yellow`` > ``blue`` > ``mic`` (the village
  microphone) > ``routine`` (scheduled programmes); at equal level a central
  alert outranks a local alarm; then first come, first served;
- a broadcast of higher priority (level, then central over local) preempts
  the one playing within 200 ms (the player's abort); the preempted one is
  reported ``interrupted``, goes back in the queue and later plays again from
  the start, unless it expired or was cancelled meanwhile;
- expiry is checked before a broadcast starts or restarts, and so is a
  broadcast's ``gate`` (a programme item that can no longer start in its time
  is reported ``skipped`` with the gate's reason);
- a ``live`` broadcast (the microphone) plays what its source yields, as it
  comes, until the source ends;
- at most ``max_queue`` broadcasts wait; past that the lowest-priority one
  is refused (``rejected``, ``queue_full``). A broadcast's speech is rendered
  (decoded, synthesised) only when it starts playing and dropped when it
  stops, so only the playing one holds decoded audio; the rest wait as their
  source (a callable that decodes or synthesises on demand).

One worker thread plays. For each broadcast it starts rendering the speech
(TTS can take half a second) in a helper thread *before* anything else, then
switches the amplifier on (warm-up), plays the tone, and only then waits for
the speech, writing silence meanwhile — so the first sound never waits for
synthesis. The message (tone + speech) plays ``repeat`` times with
``repeat_gap_s`` of silence between. When the queue runs empty the worker
waits for the last sample to be heard, stops the stream and releases the
amplifier.

Device errors (missing device, write failure mid-play) are retried
``retries`` more times from the start, ``retry_delay_s`` apart, then the
broadcast is ``failed`` with ``audio_device``, ``on_fault("audio_device")`` is
called and ``state`` is ``fault`` until something plays again. Speech errors
fail the broadcast with ``unknown_clip``, ``bad_audio`` or ``tts_unavailable``
without retries (retrying would not change the file or the text).

Callbacks (``on_status``, ``on_fault``, ``on_state``) run on a notifier thread
of their own, in the order the events happened, so a slow receipt write
never delays a sound and an exception in a callback is logged, not fatal.
``submit``, ``cancel`` and ``cancel_all`` only take a lock: they return at once.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from audio.amp import Amplifier
from audio.clips import BadAudio, UnknownClip
from audio.player import AudioDeviceError, Player
from audio.speech import SpeechStream
from audio.tones import TONE_NAMES, render_tone
from audio.tts import TtsUnavailable

log = logging.getLogger(__name__)

LEVELS = ("red", "orange", "yellow", "blue", "mic", "routine")
"""Broadcast levels, highest first: the four warning levels, the microphone, programmes."""
DEFAULT_MAX_QUEUE = 32
"""Broadcasts that may wait at most (``audio.max_queue``, docs/protocol.md §9)."""

StatusCallback = Callable[[str, str, dict[str, object]], None]
Speech = Callable[[], bytes] | SpeechStream
"""PCM rendered in one go (may raise), or text rendered piece by piece while it plays."""


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass
class Broadcast:
    """One message for the loudspeakers, as the gateway hands it over."""

    id: str  # alert id, or "local:<rule>:<n>"
    level: str  # "red" > "orange" > "yellow" > "blue"
    central: bool  # at equal level a central alert outranks a local alarm, then FIFO
    tone: str  # "siren" | "chime" | "none", played first, each repeat
    speech: Speech | None  # 16-bit mono PCM at the player rate
    repeat: int = 1  # the whole message plays `repeat` times, repeat_gap_s between
    expires_ms: int | None = None
    silent: bool = False  # a test alert without sound: go through the states, write no audio
    volume: float | None = None
    # Asked before each start (True after a preemption): a reason to skip it instead, or None.
    gate: Callable[[bool], str | None] | None = None
    # A live source (the microphone): called at each start, after the amplifier's warm-up.
    live: Callable[[], Iterable[bytes]] | None = None


def priority(b: Broadcast) -> tuple[int, int]:
    """Sort key, higher first: (level rank, central over local)."""
    return (len(LEVELS) - LEVELS.index(b.level), int(b.central))


class _Speech:
    """The speech of one broadcast, rendered once (inline or in a helper thread).

    A render that fails sets ``abort``, so a tone playing meanwhile stops at
    once instead of announcing a message that cannot follow.
    """

    def __init__(self, render: Callable[[], bytes], abort: threading.Event) -> None:
        self._render = render
        self._abort = abort
        self._done = threading.Event()
        self._started = False
        self.pcm = b""
        self.error: BaseException | None = None
        self.voice_fallback = False

    def start(self, *, in_thread: bool) -> None:
        if self._started:
            return
        self._started = True
        if in_thread:
            threading.Thread(target=self._run, name="speech-render", daemon=True).start()
        else:
            self._run()

    def done(self) -> bool:
        return self._done.is_set()

    def wait(self, timeout: float) -> bool:
        return self._done.wait(timeout)

    def pieces(self, play: int, wait_s: float = 0.02) -> Iterator[bytes | None]:
        """The whole PCM once rendered (``None`` while waiting); raises the render's error."""
        del play
        while not self._done.wait(wait_s):
            yield None
        if self.error is not None:
            raise self.error
        yield self.pcm

    def _run(self) -> None:
        try:
            self.pcm = self._render()
        except BaseException as exc:
            self.error = exc
            self._abort.set()
        finally:
            self._done.set()


@dataclass
class _Entry:
    """A broadcast in the queue, with what the worker needs to stop and restart it."""

    b: Broadcast
    order: int
    speech: _Speech | SpeechStream | None
    state: str = "queued"  # "queued" | "playing"
    stop: str | None = None  # why the worker should stop: "preempted" | "cancelled" | "closed"
    announced: bool = False  # "playing" was reported for the current run
    preempted: bool = False  # it was stopped by a higher priority at least once
    abort: threading.Event = field(default_factory=threading.Event)

    def key(self) -> tuple[int, int, int]:
        level, central = priority(self.b)
        return (-level, -central, self.order)


class _Failed(Exception):
    """A broadcast cannot play; ``reason`` is the receipt's reason code."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


_SPEECH_ERRORS: dict[type[BaseException], str] = {
    UnknownClip: "unknown_clip",
    BadAudio: "bad_audio",
    TtsUnavailable: "tts_unavailable",
}


class BroadcastQueue:
    """Orders, plays, preempts and reports broadcasts (see the module docstring)."""

    def __init__(
        self,
        player: Player,
        amp: Amplifier,
        *,
        repeat_gap_s: float,
        retries: int,
        on_status: StatusCallback,
        on_fault: Callable[[str], None],
        time_ms: Callable[[], int] = _now_ms,
        retry_delay_s: float = 1.0,
        on_state: Callable[[str], None] | None = None,
        max_queue: int = DEFAULT_MAX_QUEUE,
    ) -> None:
        self._player = player
        self._amp = amp
        self._repeat_gap_s = repeat_gap_s
        self._retries = max(0, retries)
        self._retry_delay_s = retry_delay_s
        self._max_queue = max(1, max_queue)
        self._time_ms = time_ms
        self._on_status = on_status
        self._on_fault = on_fault
        self._on_state = on_state
        self._cond = threading.Condition()
        self._pending: list[_Entry] = []
        self._current: _Entry | None = None
        self._order = 0
        self._closed = False
        self._fault = False
        self._sounding = False  # audio or amplifier in use since the queue was last idle
        self._last_state = "idle"
        self._ready = threading.Event()
        self._events: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._notifier = threading.Thread(
            target=self._notify_loop, name="broadcast-notify", daemon=True
        )
        self._worker = threading.Thread(
            target=self._work_loop, name="broadcast-worker", daemon=True
        )
        self._notifier.start()
        self._worker.start()

    # -- the gateway's side ----------------------------------------------

    def submit(self, b: Broadcast) -> None:
        """Queue ``b`` (reported ``queued``); preempts a lower-priority broadcast playing."""
        _check(b)
        with self._cond:
            if self._closed:
                log.warning("broadcast %s submitted after close; ignored", b.id)
                return
            if self._find(b.id) is not None:
                log.warning("broadcast %s is already queued or playing; ignored", b.id)
                return
            self._order += 1
            abort = threading.Event()
            speech = _speech_of(b, abort)
            entry = _Entry(b, self._order, speech, abort=abort)
            if not self._make_room(entry):
                return
            self._emit(b.id, "queued", {})
            self._pending.append(entry)
            current = self._current
            if current is not None and current.stop is None and priority(b) > priority(current.b):
                self._stop(current, "preempted")
            self._cond.notify_all()

    def cancel(self, broadcast_id: str) -> bool:
        """Drop a queued broadcast or stop the playing one; False if there is no such id."""
        with self._cond:
            return self._cancel_locked(broadcast_id)

    def cancel_all(self) -> list[str]:
        """Cancel everything queued and playing; returns the ids cancelled."""
        with self._cond:
            ids = [e.b.id for e in self._entries()]
            for broadcast_id in ids:
                self._cancel_locked(broadcast_id)
            return ids

    def snapshot(self) -> list[dict[str, object]]:
        """The playing broadcast (if any) and the queue in play order, for status reports."""
        with self._cond:
            return [
                {
                    "id": e.b.id,
                    "state": e.state,
                    "level": e.b.level,
                    "central": e.b.central,
                    "tone": e.b.tone,
                    "repeat": e.b.repeat,
                    "expires_ms": e.b.expires_ms,
                    "silent": e.b.silent,
                }
                for e in self._entries()
            ]

    def wait_ready(self, timeout: float | None = None) -> bool:
        """Wait until the worker has rendered the tones and tried to open the device.

        Submitting earlier is fine; the first broadcast just starts ~0.1 s later.
        """
        return self._ready.wait(timeout)

    @property
    def alive(self) -> bool:
        """True while the worker thread runs (for the service's watchdog)."""
        return self._worker.is_alive() and not self._closed

    @property
    def state(self) -> str:
        """``"fault"`` after a device failure until something plays, else playing/idle."""
        with self._cond:
            return self._state_locked()

    def close(self, timeout_s: float = 5.0, worker_s: float = 1.0) -> None:
        """Stop playing (unfinished broadcasts are not reported), close the player and amplifier.

        The worker stops within ~200 ms of an abort; one still busy after `worker_s` is stuck
        in a wedged device and is left behind (a daemon thread), so a stop never hangs.
        """
        with self._cond:
            if self._closed:
                return
            self._closed = True
            if self._current is not None:
                self._stop(self._current, "closed")
            self._cond.notify_all()
        self._worker.join(min(timeout_s, worker_s))
        if self._worker.is_alive():
            log.error("the audio worker is stuck in the sound device; stopping without it")
        self._player.close()
        self._amp.close()
        self._events.put(None)
        self._notifier.join(timeout_s)

    # -- bookkeeping under the lock ---------------------------------------

    def _entries(self) -> list[_Entry]:
        running = [self._current] if self._current is not None else []
        return running + sorted(self._pending, key=_Entry.key)

    def _find(self, broadcast_id: str) -> _Entry | None:
        return next((e for e in self._entries() if e.b.id == broadcast_id), None)

    def _make_room(self, entry: _Entry) -> bool:
        """At most ``max_queue`` wait (docs/protocol.md §9): past that the lowest-priority one of
        them and `entry` is refused, ``rejected`` with ``queue_full``. False if it is `entry`."""
        if len(self._pending) < self._max_queue:
            return True
        lowest = max([*self._pending, entry], key=_Entry.key)
        log.warning("broadcast queue full (%d waiting): %s refused", self._max_queue, lowest.b.id)
        self._emit(lowest.b.id, "rejected", {"reason": "queue_full"})
        if lowest is entry:
            return False
        self._pending.remove(lowest)
        return True

    def _cancel_locked(self, broadcast_id: str) -> bool:
        entry = self._find(broadcast_id)
        if entry is None:
            return False
        if entry is self._current:
            self._stop(entry, "cancelled")
        else:
            self._pending.remove(entry)
            self._emit(broadcast_id, "cancelled", {})
        return True

    def _stop(self, entry: _Entry, why: str) -> None:
        if entry.stop != "cancelled":
            entry.stop = why
        entry.abort.set()

    def _state_locked(self) -> str:
        if self._fault:
            return "fault"
        return "playing" if self._current is not None else "idle"

    def _state_changed(self) -> None:
        """Report a change of ``state`` (the caller holds the lock)."""
        state = self._state_locked()
        if state != self._last_state:
            self._last_state = state
            if self._on_state is not None:
                callback = self._on_state
                self._events.put(lambda: callback(state))

    def _emit(self, broadcast_id: str, status: str, extra: dict[str, object]) -> None:
        callback = self._on_status
        self._events.put(lambda: callback(broadcast_id, status, extra))

    def _fault_now(self, reason: str) -> None:
        callback = self._on_fault
        self._events.put(lambda: callback(reason))

    def _notify_loop(self) -> None:
        while (event := self._events.get()) is not None:
            try:
                event()
            except Exception:
                log.exception("a broadcast status callback failed")

    # -- the worker ---------------------------------------------------------

    def _work_loop(self) -> None:
        self._warm_up()
        while (entry := self._next()) is not None:
            try:
                self._run(entry)
            except Exception:
                log.exception("broadcast %s crashed the player; dropped", entry.b.id)
                self._emit(entry.b.id, "failed", {"reason": "audio_device"})
            with self._cond:
                self._current = None
                self._state_changed()
                finished = entry not in self._pending
            if finished and isinstance(entry.speech, SpeechStream):
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
            with self._cond:
                self._fault = True
                self._state_changed()
            self._fault_now("audio_device")
        finally:
            self._ready.set()

    def _next(self) -> _Entry | None:
        """Block for the next broadcast to play; go idle when the queue stays empty."""
        while True:
            with self._cond:
                if self._closed:
                    return None
                entry = self._pop_unexpired()
                if entry is not None:
                    return entry
                if not self._sounding:
                    self._cond.wait()
                    continue
                still_audible = self._player.queued_s()
                if still_audible > 0:
                    self._cond.wait(still_audible)
                    continue
                self._sounding = False
            self._player.standby()
            self._release_amp()

    def _pop_unexpired(self) -> _Entry | None:
        while self._pending:
            entry = min(self._pending, key=_Entry.key)
            self._pending.remove(entry)
            expires = entry.b.expires_ms
            if expires is not None and self._time_ms() >= expires:
                self._emit(entry.b.id, "expired", {})
                continue
            skip = self._gate(entry)
            if skip is not None:
                self._emit(entry.b.id, "skipped", {"reason": skip})
                continue
            entry.state, entry.stop, entry.announced = "playing", None, False
            entry.abort.clear()
            self._current = entry
            self._state_changed()
            return entry
        return None

    def _gate(self, entry: _Entry) -> str | None:
        gate = entry.b.gate
        if gate is None:
            return None
        try:
            return gate(entry.preempted)
        except Exception:
            log.exception("the start check of broadcast %s failed; it plays", entry.b.id)
            return None

    def _run(self, entry: _Entry) -> None:
        if entry.b.silent:
            self._run_silent(entry)
            return
        try:
            started = self._play_with_retries(entry)
        except _Failed as failure:
            log.warning("broadcast %s failed: %s (%s)", entry.b.id, failure.reason, failure)
            self._emit(entry.b.id, "failed", {"reason": failure.reason})
            return
        if started is not None:
            duration = round(self._player.audible_until() - started, 3)
            with self._cond:
                self._fault = False
                self._state_changed()
            played: dict[str, object] = {"duration_s": duration}
            if entry.speech is not None and entry.speech.voice_fallback:
                played["voice_fallback"] = True
            self._emit(entry.b.id, "played", played)
            return
        self._after_abort(entry)

    def _run_silent(self, entry: _Entry) -> None:
        """A test without sound: the same states and the speech rendered, no audio, no amp."""
        start = time.monotonic()
        self._emit(entry.b.id, "playing", {})
        if entry.speech is not None:
            entry.speech.start(in_thread=False)
            try:
                self._speech_pcm(entry.speech)
            except _Failed as failure:
                self._emit(entry.b.id, "failed", {"reason": failure.reason})
                return
        duration = round(time.monotonic() - start, 3)
        self._emit(entry.b.id, "played", {"duration_s": duration, "silent": True})

    def _after_abort(self, entry: _Entry) -> None:
        """Report a stopped broadcast; a preempted one goes back in the queue."""
        with self._cond:
            why = entry.stop
            if why == "preempted":
                entry.state = "queued"
                entry.preempted = True
                # Waiting again: it waits as its source, not as decoded audio (§9).
                if isinstance(entry.speech, SpeechStream):
                    entry.speech.stop()  # rendered again (from the cache) when it replays
                    entry.speech = entry.speech.fresh()
                    entry.speech.attach_abort(entry.abort)
                elif entry.speech is not None and callable(entry.b.speech):
                    entry.speech = _Speech(entry.b.speech, entry.abort)
                self._pending.append(entry)
        if why == "preempted" and entry.announced:
            self._emit(entry.b.id, "interrupted", {})
        elif why == "cancelled":
            self._emit(entry.b.id, "cancelled", {})

    def _play_with_retries(self, entry: _Entry) -> float | None:
        """Play the whole message; its start time, or None if aborted. Raises _Failed."""
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
        with self._cond:
            self._fault = True
            self._state_changed()
        self._fault_now("audio_device")
        raise _Failed("audio_device", "the audio device failed on every try")

    def _start_speech(self, entry: _Entry) -> None:
        """Render in parallel when there is a tone or a warm-up to overlap, else inline."""
        if entry.speech is None:
            return
        overlap = entry.b.tone != "none" or (self._amp.warmup_s > 0 and not self._amp.is_on)
        # Text always renders beside the player: its first piece plays while the rest renders.
        entry.speech.start(in_thread=overlap or isinstance(entry.speech, SpeechStream))

    def _play_once(self, entry: _Entry) -> float | None:
        b, player = entry.b, self._player
        if entry.speech is not None and entry.speech.done():
            self._speech_pcm(entry.speech)  # fail before "playing" if it failed already
        player.open()
        if not self._acquire_amp(entry.abort):
            self._raise_if_speech_failed(entry)
            return None
        tone = render_tone(b.tone, player.rate)
        start = time.monotonic() + player.queued_s()
        if not entry.announced:
            entry.announced = True
            self._emit(b.id, "playing", {})
        for index in range(b.repeat):
            if not self._play_round(entry, tone, index):
                self._raise_if_speech_failed(entry)
                return None
        return start

    def _play_round(self, entry: _Entry, tone: bytes, index: int) -> bool:
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

    def _raise_if_speech_failed(self, entry: _Entry) -> None:
        """After an abort: _Failed if it was the speech failing (not a preempt or cancel)."""
        if entry.speech is not None and entry.speech.error is not None:
            self._speech_pcm(entry.speech)

    def _play_speech(self, entry: _Entry, play: int, sounding: bool) -> bool:
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
                raise _speech_failure(exc) from exc
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

    def _speech_pcm(self, speech: _Speech | SpeechStream) -> None:
        """Wait for the speech; _Failed with the receipt reason if rendering failed."""
        speech.wait(timeout=3600)
        if speech.error is not None:
            raise _speech_failure(speech.error)

    def _acquire_amp(self, abort: threading.Event) -> bool:
        with self._cond:
            self._sounding = True
        try:
            return self._amp.acquire(abort)
        except Exception as exc:
            log.error("amplifier relay failed: %s; playing anyway", exc)
            self._fault_now("amplifier")
            return not abort.is_set()

    def _release_amp(self) -> None:
        try:
            self._amp.release()
        except Exception as exc:
            log.error("amplifier relay failed to release: %s", exc)
            self._fault_now("amplifier")


def _check(b: Broadcast) -> None:
    if b.level not in LEVELS:
        raise ValueError(f"broadcast {b.id}: unknown level {b.level!r}")
    if b.tone not in TONE_NAMES:
        raise ValueError(f"broadcast {b.id}: unknown tone {b.tone!r}")
    if b.repeat < 1:
        raise ValueError(f"broadcast {b.id}: repeat must be at least 1")


def _speech_failure(error: BaseException) -> _Failed:
    """The receipt reason for a speech error."""
    for kind, reason in _SPEECH_ERRORS.items():
        if isinstance(error, kind):
            return _Failed(reason, str(error))
    log.error("speech rendering raised %r", error)
    return _Failed("bad_audio", repr(error))


def _speech_of(b: Broadcast, abort: threading.Event) -> _Speech | SpeechStream | None:
    """What plays the broadcast's speech: a text stream as it is, PCM through _Speech."""
    if isinstance(b.speech, SpeechStream):
        b.speech.attach_abort(abort)
        return b.speech
    return _Speech(b.speech, abort) if b.speech is not None else None
