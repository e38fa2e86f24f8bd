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

The parts: the `Broadcast` and its rank (audio/broadcast.py), the waiting and
playing broadcasts under one lock (audio/broadcast_lineup.py), the worker
thread (audio/broadcast_worker.py), the speech as the worker plays it
(audio/broadcast_speech.py) and the notifier thread
(audio/broadcast_reports.py). This module puts them together behind the one
interface the gateway uses.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from audio.amp import Amplifier
from audio.broadcast import Broadcast, StatusCallback
from audio.broadcast_lineup import Lineup
from audio.broadcast_reports import Reports
from audio.broadcast_worker import BroadcastWorker
from audio.player import Player
from drivers.base import now_ms

log = logging.getLogger(__name__)

DEFAULT_MAX_QUEUE = 32
"""Broadcasts that may wait at most (``audio.max_queue``, docs/protocol.md §9)."""


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
        time_ms: Callable[[], int] = now_ms,
        retry_delay_s: float = 1.0,
        on_state: Callable[[str], None] | None = None,
        max_queue: int = DEFAULT_MAX_QUEUE,
    ) -> None:
        self._player = player
        self._amp = amp
        self._reports = Reports(on_status, on_fault, on_state)
        self._lineup = Lineup(self._reports, max_queue=max_queue, time_ms=time_ms)
        self._worker = BroadcastWorker(
            self._lineup,
            player,
            amp,
            repeat_gap_s=repeat_gap_s,
            retries=retries,
            retry_delay_s=retry_delay_s,
        )
        self._worker.start()

    def submit(self, b: Broadcast) -> None:
        """Queue ``b`` (reported ``queued``); preempts a lower-priority broadcast playing."""
        self._lineup.submit(b)

    def cancel(self, broadcast_id: str) -> bool:
        """Drop a queued broadcast or stop the playing one; False if there is no such id."""
        return self._lineup.cancel(broadcast_id)

    def cancel_all(self) -> list[str]:
        """Cancel everything queued and playing; returns the ids cancelled."""
        return self._lineup.cancel_all()

    def snapshot(self) -> list[dict[str, object]]:
        """The playing broadcast (if any) and the queue in play order, for status reports."""
        return self._lineup.snapshot()

    def wait_ready(self, timeout: float | None = None) -> bool:
        """Wait until the worker has rendered the tones and tried to open the device.

        Submitting earlier is fine; the first broadcast just starts ~0.1 s later.
        """
        return self._worker.ready.wait(timeout)

    @property
    def alive(self) -> bool:
        """True while the worker thread runs (for the service's watchdog)."""
        return self._worker.alive and not self._lineup.closed

    @property
    def state(self) -> str:
        """``"fault"`` after a device failure until something plays, else playing/idle."""
        return self._lineup.state

    def close(self, timeout_s: float = 5.0, worker_s: float = 1.0) -> None:
        """Stop playing (unfinished broadcasts are not reported), close the player and amplifier.

        The worker stops within ~200 ms of an abort; one still busy after `worker_s` is stuck
        in a wedged device and is left behind (a daemon thread), so a stop never hangs.
        """
        if not self._lineup.close():
            return
        if not self._worker.join(min(timeout_s, worker_s)):
            log.error("the audio worker is stuck in the sound device; stopping without it")
        self._player.close()
        self._amp.close()
        self._reports.close(timeout_s)
