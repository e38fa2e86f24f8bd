"""At most ``audio.max_queue`` broadcasts wait, and waiting ones hold no decoded audio (issue 12).

Before: inline audio and clips were decoded when accepted and every queued broadcast kept its
PCM (an 8 kHz 8-bit WAV becomes 5.5 times its size at the player's 22,050 Hz, 16 bits), so a
few dozen queued voice alerts took the service past its 256 MB memory limit. Now the queue
refuses the lowest-priority one past ``max_queue`` (``rejected``, ``queue_full``) and a
waiting broadcast waits as its source. Seen from outside: the receipts the centre gets, and
the peak resident memory (VmHWM) of the real `cunxiang run`.
"""

from __future__ import annotations

import io
import math
import wave
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.downlink.alert_model import InlineAudio
from tests.e2e.conftest import Rig, running_station

WAV_SECONDS = 75  # 8 kHz, 8 bits: 600 KB of WAV, 3.3 MB once decoded for the player
QUEUED = 40
MAX_QUEUE = 32


def voice_wav(seconds: int, tone: int) -> bytes:
    """A long 8 kHz 8-bit mono WAV, as a county centre's recorded announcement might be."""
    rate = 8000
    frames = bytes(
        128 + int(60 * math.sin(2 * math.pi * (200 + tone) * i / rate))
        for i in range(seconds * rate)
    )
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(1)
        out.setframerate(rate)
        out.writeframes(frames)
    return buffer.getvalue()


def peak_rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM in /proc/PID/status")


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    with running_station(
        tmp_path_factory.mktemp("queue"),
        security="max_payload_bytes = 1048576",
        audio=f"max_queue = {MAX_QUEUE}",
    ) as station:
        yield station


def test_forty_queued_voice_alerts_queue_full_and_bounded_memory(rig: Rig) -> None:
    wav = voice_wav(WAV_SECONDS, 0)
    before = peak_rss_kib(rig.station.pid)
    first = rig.alert(clip=None, audio=InlineAudio(data=wav), level="red", repeat=1)
    rig.send(first)
    rig.wait_status(first.id, "playing", timeout=20)
    alerts = []
    for _ in range(QUEUED - 1):
        alert = rig.alert(clip=None, audio=InlineAudio(data=wav), level="orange", repeat=1)
        rig.send(alert)
        # One at a time, as a centre sends them: what is measured is what the station
        # holds, not the broker's burst waiting in the MQTT client's buffers.
        rig.wait_status(alert.id, "received", timeout=20)
        alerts.append(alert)
    rig.barrier()
    for alert in alerts[:MAX_QUEUE]:
        rig.wait_status(alert.id, "queued", timeout=30)
    refused = [rig.wait_status(a.id, "rejected", timeout=30) for a in alerts[MAX_QUEUE:]]
    assert {r["reason"] for r in refused} == {"queue_full"}
    assert [rig.statuses(a.id) for a in alerts[MAX_QUEUE:]] == [["received", "rejected"]] * (
        QUEUED - 1 - MAX_QUEUE
    )
    status = rig.barrier()
    assert len(status["queue"]) == MAX_QUEUE + 1  # the playing one and 32 waiting
    grown_mib = (peak_rss_kib(rig.station.pid) - before) / 1024
    print(f"peak RSS grew by {grown_mib:.1f} MiB with {QUEUED} voice alerts sent")
    # Decoded, the 33 broadcasts held would be 33 x 3.3 MB = 109 MB (before: +141 MiB).
    assert grown_mib < 40, f"peak RSS grew by {grown_mib:.1f} MiB"
    # A red alert still gets in, ahead of them all: the lowest-priority waiting one goes.
    red = rig.alert(clip=None, audio=InlineAudio(data=wav), level="red", repeat=1)
    rig.send(red)
    rig.wait_status(red.id, "queued", timeout=20)
    evicted = rig.wait_status(alerts[MAX_QUEUE - 1].id, "rejected", timeout=20)
    assert evicted["reason"] == "queue_full"
    assert rig.command("cancel_all")["ok"]
