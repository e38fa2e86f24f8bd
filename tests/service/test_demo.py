"""`cunxiang demo`, the README's run command: a station that works with no set-up at all.

Run for 20 s in its own folder, as a person would start it, then look at what
it left: a database with readings, an alarm event and a played local broadcast,
and — on a machine without a sound card — the broadcast rendered to a WAV file.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import wave
from pathlib import Path

from gateway.config import load_config
from gateway.demo import has_sound_card
from gateway.store import Store

ROOT = Path(__file__).resolve().parents[2]


def test_demo_runs_trips_its_alarm_and_broadcasts(tmp_path: Path) -> None:
    folder = tmp_path / "demo"
    result = subprocess.run(
        [sys.executable, "-m", "gateway", "demo", "--dir", str(folder), "--seconds", "20"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "EVENT    alarm: " in out
    assert "reading  river" in out

    config = load_config(folder / "gateway.toml")
    store = Store(
        config.storage.path,
        station_id=config.station.id,
        max_mb=config.storage.max_mb,
        max_age_days=config.storage.max_age_days,
        commit_interval_s=1.0,
    )
    try:
        records = [r.as_dict() for r in store.records(1, store.last_seq)]
        broadcasts = store.recent_alerts(10)
    finally:
        store.close()
    readings = [r for r in records if "sensor" in r and "q" in r]
    assert len(readings) >= 30, f"only {len(readings)} readings in 20 s"
    alarms = [r for r in records if r.get("type") == "alarm"]
    assert [a["rule"] for a in alarms] == ["river-high"]
    receipts = [(r["alert"], r["status"]) for r in records if "alert" in r and "status" in r]
    local = [alert for alert, status in receipts if alert.startswith("local:river-high:")]
    assert local, receipts
    assert (local[0], "played") in receipts
    assert [b["state"] for b in broadcasts if b["id"] == local[0]] == ["played"]

    if not has_sound_card():
        assert "no sound card here" in out
        with wave.open(str(folder / "broadcast.wav"), "rb") as wav:
            frames = wav.readframes(wav.getnframes())
            seconds = wav.getnframes() / wav.getframerate()
        assert seconds > 3, "the siren alone lasts 3 s"
        assert any(frames), "the rendered broadcast is silent"

    # The database is a real SQLite file that passes its own integrity check.
    with sqlite3.connect(config.storage.path) as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
