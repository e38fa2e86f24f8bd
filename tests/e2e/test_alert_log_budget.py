"""The alert log stays within the storage budget, and the budget never costs an unsent record.

Before (issue 12): every accepted alert kept its raw payload and its parsed form, so one CAP
alert with 1 MiB of inline audio was nearly 3 MB of database for ever; the budget could only
delete outbox rows, so the file passed ``storage.max_mb`` and kept growing. Now a finished
alert keeps a compact record and the budget counts the whole file. 200 CAP alerts with 1 MiB
of inline audio each go through a station whose budget is 24 MiB (test alerts, which run the
whole pipeline silently, so that 200 of them take seconds and not hours of sound).
"""

from __future__ import annotations

import array
import io
import json
import math
import sqlite3
import threading
import time
import wave
from pathlib import Path

import pytest

from gateway.downlink.alert_model import InlineAudio
from harness.alsa_capture import write_alsa_config
from harness.mosquitto import Mosquitto
from harness.sounds import sine_pcm, write_clip
from harness.station import Centre, write_config
from tests.e2e.conftest import BEEP, RECEIPT_TOPIC, Rig

MAX_MB = 24
ALERTS = 200
IN_FLIGHT = 4
SENSOR = """
[[sensors]]
name = "river"
type = "simulated"
quantity = "water_level_m"
pattern = "sine"
interval_s = 0.5
"""


def wav_of_one_mib() -> bytes:
    """1 MiB of 22,050 Hz 16-bit mono WAV (23.8 s of a tone)."""
    rate, frames = 22050, (1024 * 1024) // 2
    period = [int(3000 * math.sin(2 * math.pi * i / 49)) for i in range(49)]  # 450 Hz
    body = array.array("h", (period * (frames // 49 + 1))[:frames]).tobytes()
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(body)
    return buffer.getvalue()


class Played:
    """Which alerts have a `played` receipt, reading only the messages new since last time
    (the rig's helpers parse every message on each poll: too slow for 800 receipts)."""

    def __init__(self, rig: Rig) -> None:
        self.rig = rig
        self.seen = 0
        self.ids: set[str] = set()

    def wait(self, alert_id: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while alert_id not in self.ids:
            messages = self.rig.sub.messages[self.seen :]
            self.seen += len(messages)
            for message in messages:
                if message.topic == RECEIPT_TOPIC and b'"status":"played"' in message.payload:
                    self.ids.add(json.loads(message.payload)["alert"])
            if alert_id in self.ids:
                return
            assert time.monotonic() < deadline, f"no played receipt for {alert_id}"
            time.sleep(0.02)


class FileWatch:
    """Samples the database file's size while the test runs; keeps the largest."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.largest = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            if self.path.exists():
                self.largest = max(self.largest, self.path.stat().st_size)

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.largest


@pytest.mark.slow
@pytest.mark.timeout(900)  # ~1 min on an idle machine; five times that on a loaded one
def test_two_hundred_big_cap_alerts_keep_the_database_under_max_mb(tmp_path: Path) -> None:
    with Mosquitto() as broker:
        centre = Centre()
        write_config(
            tmp_path,
            broker.port,
            centre,
            body=SENSOR,
            storage=f"max_mb = {MAX_MB}",
            security="max_payload_bytes = 2097152",
        )
        write_clip(tmp_path / "clips", BEEP, sine_pcm(1000, 0.15))
        rig = Rig(tmp_path, broker, centre, write_alsa_config(tmp_path / "alsa"))
        watch = FileWatch(tmp_path / "station.db")
        try:
            rig.start()
            sent = []
            played = Played(rig)
            audio = InlineAudio(data=wav_of_one_mib())
            started = time.monotonic()
            for n in range(ALERTS):
                alert = rig.alert(clip=None, audio=audio, status="test", level="blue")
                rig.send(alert, cap=True)
                sent.append(alert.id)
                if n >= IN_FLIGHT:
                    played.wait(sent[n - IN_FLIGHT], timeout=60)
            for alert_id in sent[-IN_FLIGHT:]:
                played.wait(alert_id, timeout=60)
            rig.barrier()
            print(f"{ALERTS} alerts handled in {time.monotonic() - started:.0f} s")
            time.sleep(2.0)  # a few budget runs
            largest_mib = watch.stop() / 2**20
            assert rig.station.terminate() == 0
        finally:
            watch.stop()
            rig.close()
        print(f"largest database file: {largest_mib:.1f} MiB (max_mb = {MAX_MB})")
        # Every receipt reached the centre, and nothing unsent was dropped.
        for alert_id in sent:
            assert rig.statuses(alert_id) == ["received", "queued", "playing", "played"]
        assert rig.events("data_dropped") == []
        assert largest_mib <= MAX_MB, f"{largest_mib:.1f} MiB > max_mb {MAX_MB}"
        db = sqlite3.connect(f"file:{tmp_path / 'station.db'}?mode=ro", uri=True)
        try:
            count, longest = db.execute(
                "SELECT count(*), max(length(record)) FROM alerts WHERE state = 'played'"
            ).fetchone()
        finally:
            db.close()
        assert count == ALERTS
        assert longest < 2000, f"a finished alert still holds {longest} bytes"
