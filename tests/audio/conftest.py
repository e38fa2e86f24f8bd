"""Fixtures for the audio tests: a captured ALSA output, mock GPIO pins, a queue rig.

Every test that plays sound writes through real PyAudio into an ALSA ``file``
PCM (harness/alsa_capture.py) and reads back the samples the amplifier
would have received. GPIO pins come from gpiozero's MockFactory.
"""

from __future__ import annotations

import array
import itertools
import math
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from gpiozero.pins.mock import MockFactory

from audio.amp import Amplifier
from audio.broadcast_queue import BroadcastQueue
from audio.player import Player
from harness.alsa_capture import AlsaCapture, alsa_capture

RATE = 16000
"""Player rate for the queue tests: lower than the service's 22,050 Hz to keep them light."""


def sine(freq: float, seconds: float, rate: int = RATE, amplitude: float = 0.5) -> bytes:
    """A sine as 16-bit mono PCM; its first sample is non-zero (phase offset) for clean runs."""
    n = round(seconds * rate)
    peak = amplitude * 32767
    samples = array.array(
        "h", (round(peak * math.sin(2 * math.pi * freq * i / rate + 0.5)) for i in range(n))
    )
    return samples.tobytes()


def pitch(samples: array.array[int], rate: int) -> float:
    """Frequency of a clean tone from its zero crossings."""
    crossings = sum(1 for a, b in itertools.pairwise(samples) if (a < 0) != (b < 0))
    return crossings / 2 / (len(samples) / rate)


@pytest.fixture
def capture(tmp_path: Path) -> Iterator[AlsaCapture]:
    with alsa_capture(tmp_path / "alsa") as cap:
        yield cap


@pytest.fixture
def pin_factory() -> Iterator[MockFactory]:
    factory = MockFactory()
    yield factory
    factory.reset()


@dataclass
class Recorder:
    """Collects the queue's callbacks and lets a test wait for one."""

    events: list[tuple[str, str, dict[str, object]]] = field(default_factory=list)
    faults: list[str] = field(default_factory=list)
    states: list[str] = field(default_factory=list)
    times: dict[tuple[str, str], float] = field(default_factory=dict)
    cond: threading.Condition = field(default_factory=threading.Condition)

    def on_status(self, broadcast_id: str, status: str, extra: dict[str, object]) -> None:
        with self.cond:
            self.events.append((broadcast_id, status, extra))
            self.times.setdefault((broadcast_id, status), time.monotonic())
            self.cond.notify_all()

    def on_fault(self, reason: str) -> None:
        with self.cond:
            self.faults.append(reason)
            self.cond.notify_all()

    def on_state(self, state: str) -> None:
        with self.cond:
            self.states.append(state)
            self.cond.notify_all()

    def statuses(self, broadcast_id: str) -> list[str]:
        with self.cond:
            return [status for bid, status, _ in self.events if bid == broadcast_id]

    def extra(self, broadcast_id: str, status: str) -> dict[str, object]:
        with self.cond:
            return next(e for bid, s, e in self.events if (bid, s) == (broadcast_id, status))

    def wait_for(self, broadcast_id: str, status: str, timeout: float = 10.0) -> dict[str, object]:
        """Block until ``broadcast_id`` reported ``status``; its extra fields."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for bid, s, extra in self.events:
                    if (bid, s) == (broadcast_id, status):
                        return extra
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"{broadcast_id} never reported {status}: {self.events}")
                self.cond.wait(left)


@dataclass
class Rig:
    """A BroadcastQueue over a real Player (captured) and an Amplifier on a mock pin."""

    capture: AlsaCapture
    player: Player
    amp: Amplifier
    queue: BroadcastQueue
    recorder: Recorder
    first_writes: list[tuple[float, float]]

    def close(self) -> None:
        self.queue.close()

    def wait_idle(self, timeout: float = 10.0) -> None:
        """Wait until nothing is queued or playing and the last sample has been heard."""
        deadline = time.monotonic() + timeout
        while self.queue.snapshot() or self.player.queued_s() > 0:
            assert time.monotonic() < deadline, "the queue did not go idle"
            time.sleep(0.01)


@pytest.fixture
def make_rig(capture: AlsaCapture, pin_factory: MockFactory) -> Iterator[Callable[..., Rig]]:
    rigs: list[Rig] = []

    def make(
        *,
        device: str | int = "default",
        amp_pin: int | None = 27,
        warmup_s: float = 0.0,
        release_s: float = 0.0,
        repeat_gap_s: float = 0.2,
        retries: int = 1,
        retry_delay_s: float = 0.05,
        time_ms: Callable[[], int] | None = None,
        on_status: Callable[[str, str, dict[str, object]], None] | None = None,
    ) -> Rig:
        recorder = Recorder()
        first_writes: list[tuple[float, float]] = []
        player = Player(
            device,
            rate=RATE,
            on_first_write=lambda queued: first_writes.append((time.monotonic(), queued)),
        )
        amp = Amplifier(amp_pin, warmup_s=warmup_s, release_s=release_s, pin_factory=pin_factory)
        extra = {} if time_ms is None else {"time_ms": time_ms}
        queue = BroadcastQueue(
            player,
            amp,
            repeat_gap_s=repeat_gap_s,
            retries=retries,
            retry_delay_s=retry_delay_s,
            on_status=on_status or recorder.on_status,
            on_fault=recorder.on_fault,
            on_state=recorder.on_state,
            **extra,
        )
        rig = Rig(capture, player, amp, queue, recorder, first_writes)
        rigs.append(rig)
        return rig

    yield make
    for rig in rigs:
        rig.close()
