"""`cunxiang demo`, the README's run command: a station that works with no set-up at all.

Run for 20 s in its own folder, as a person would start it, then look at what
it left: a database with readings, an alarm event and a played local broadcast,
and — on a machine without a sound card — the broadcast rendered to a WAV file.
"""

from __future__ import annotations

import re
import sqlite3
import subprocess
import sys
import time
import wave
from pathlib import Path

from gateway.config.loader import load_config
from gateway.demo import has_sound_card
from gateway.store.outbox import open_store
from harness.mosquitto import Mosquitto, Subscriber, free_port

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
    # Each thing once: the service's log goes to a file, not beside the screen's echo.
    assert out.count("EVENT    alarm: ") == 1, out
    assert "river-high" not in result.stderr
    assert "river-high" in (folder / "station.log").read_text(encoding="utf-8")

    config = load_config(folder / "gateway.toml")
    store = open_store(config)
    try:
        records = [r.as_dict() for r in store.records(1, store.last_seq)]
        broadcasts = store.alerts.recent(10)
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
    assert [b.state for b in broadcasts if b.id == local[0]] == ["played"]

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


def run_demo(folder: Path, seconds: int, broker: str) -> str:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "gateway",
            "demo",
            "--dir",
            str(folder),
            "--seconds",
            str(seconds),
            "--broker",
            broker,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=seconds + 60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def receipts_on_screen(out: str) -> dict[str, list[str]]:
    shown: dict[str, list[str]] = {}
    for match in re.finditer(r"^  RECEIPT  (\S+) (\S+)", out, re.MULTILINE):
        shown.setdefault(match.group(1), []).append(match.group(2))
    return shown


def test_demo_plays_the_centre_through_a_broker_a_programme_an_alert_and_the_local_alarm(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "demo"
    with Mosquitto() as broker:
        out = run_demo(folder, 35, f"127.0.0.1:{broker.port}")
        # The demo leaves no schedule retained on the broker for the next station.
        watcher = Subscriber(broker.port, ["cx/v1/programme/#"])
        time.sleep(0.5)
        retained = [m for m in watcher.messages if m.payload]
        watcher.close()
    assert not retained, retained

    assert "CENTRE   publishes programme schedule demo-day (retained)" in out
    assert "CENTRE   publishes town-wide yellow alert" in out
    shown = receipts_on_screen(out)
    items = [alert for alert in shown if alert.startswith("prog:demo-day:morning-notice:")]
    assert len(items) == 1, shown
    item = shown[items[0]]
    assert item[0] == "queued" and "interrupted" in item and item[-1] == "played", item
    central = [a for a in shown if not a.startswith(("prog:", "local:"))]
    assert len(central) == 1 and shown[central[0]][0] == "received", shown
    assert shown[central[0]][-1] == "played", shown
    local = [a for a in shown if a.startswith("local:river-high:")]
    assert len(local) == 1 and shown[local[0]][-1] == "played", shown
    assert out.count("EVENT    alarm: ") == 1

    key = folder / "demo-centre.key"
    assert key.exists()
    assert (
        f"cunxiang alert send --broker 127.0.0.1:{broker.port} --key {key} "
        "--key-name demo-centre --area 371581001" in out
    )
    assert (
        f"cunxiang programme send --broker 127.0.0.1:{broker.port} --key {key} "
        f"--key-name demo-centre --area 371581001 --file {folder / 'programme.json'}" in out
    )
    # The station trusts the demo key: its config names it.
    config = load_config(folder / "gateway.toml")
    assert "demo-centre" in config.security.trusted_keys


def test_demo_without_a_broker_says_what_it_would_have_shown_and_plays_the_local_alarm(
    tmp_path: Path,
) -> None:
    out = run_demo(tmp_path / "demo", 20, f"127.0.0.1:{free_port()}")
    assert "No broker answered" in out
    assert "CENTRE   publishes" not in out
    local = [a for a in receipts_on_screen(out) if a.startswith("local:river-high:")]
    assert local and receipts_on_screen(out)[local[0]][-1] == "played", out
