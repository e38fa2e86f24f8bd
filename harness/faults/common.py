"""What every fault scenario shares: the result it returns and a few building blocks.

Why this module exists: `ScenarioResult` carries the four counts issue 7 asks for — records lost
after commit, duplicates, forged or replayed messages that made sound, crashes — plus the
scenario's own figures. The scenarios are in harness/faults/*.py and listed in
harness/faults/__init__.py.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from gateway.downlink.alert_model import InlineAudio
from harness.sounds import sine_pcm, wav_bytes
from harness.station import AREA, Centre, topic

TOWN_TOPIC = topic("alert", AREA[:9])


@dataclass
class ScenarioResult:
    """What one scenario counted; the four headline counts first."""

    name: str
    lost: int = 0
    duplicates: int = 0
    sounded: int = 0
    crashes: int = 0
    skipped: str | None = None
    details: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def headline(self) -> str:
        if self.skipped:
            return f"{self.name}: SKIPPED ({self.skipped})"
        return (
            f"{self.name}: lost after commit {self.lost}, duplicates {self.duplicates}, "
            f"forged/replayed that made sound {self.sounded}, crashes {self.crashes}"
        )

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "lost": self.lost,
            "duplicates": self.duplicates,
            "sounded": self.sounded,
            "crashes": self.crashes,
            "skipped": self.skipped,
            "details": self.details,
            "notes": self.notes,
        }


def simulated_sensors(count: int, interval_s: float, prefix: str = "sim") -> str:
    """`count` simulated water-level sensors as [[sensors]] tables."""
    tables = []
    for i in range(count):
        tables.append(
            f"""
[[sensors]]
name = "{prefix}-{i}"
type = "simulated"
quantity = "water_level_m"
pattern = "random_walk"
low = 0.5
high = 3.5
interval_s = {interval_s}
"""
        )
    return "".join(tables)


def inline_alert(
    centre: Centre, freq: float, seconds: float, **fields: Any
) -> tuple[str, bytes, bytes]:
    """A sealed alert carrying its own audio (a sine at `freq`): (id, pcm, raw message)."""
    pcm = sine_pcm(freq, seconds)
    audio = InlineAudio(data=wav_bytes(pcm))
    alert = centre.alert(audio=audio, tone="none", repeat=1, **fields)
    return alert.id, pcm, centre.seal_alert(alert)


def wait_for(check: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return False
