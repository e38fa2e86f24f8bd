"""One message for the loudspeakers, as the gateway hands it to the broadcast queue.

Why this module exists: everything that makes sound — central alerts, local alarms, programme
items, the village microphone, the speaker test — is described by the same `Broadcast`, and
its rank is the one order of docs/protocol.md §9. The queue that orders and plays broadcasts is
audio/broadcast_queue.py.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from audio.levels import Level
from audio.speech import SpeechStream
from audio.tones import TONE_NAMES

StatusCallback = Callable[[str, str, dict[str, object]], None]
"""Told (broadcast id, status, extra fields) of each step: the receipts of docs/protocol.md §7."""
Speech = Callable[[], bytes] | SpeechStream
"""PCM rendered in one go (may raise), or text rendered piece by piece while it plays."""


@dataclass
class Broadcast:
    """One message for the loudspeakers, as the gateway hands it over."""

    id: str  # alert id, or "local:<rule>:<n>"
    level: Level  # red > orange > yellow > blue > mic > routine
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
    return (Level(b.level).rank, int(b.central))


def check(b: Broadcast) -> None:
    """ValueError if the queue cannot play `b` (an unknown level or tone, no repeat)."""
    if b.level not in set(Level):
        raise ValueError(f"broadcast {b.id}: unknown level {b.level!r}")
    if b.tone not in TONE_NAMES:
        raise ValueError(f"broadcast {b.id}: unknown tone {b.tone!r}")
    if b.repeat < 1:
        raise ValueError(f"broadcast {b.id}: repeat must be at least 1")
