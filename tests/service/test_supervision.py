"""The service under systemd: READY, WATCHDOG while it makes progress, STATUS, STOPPING, clean exit.

systemd's side of the notify socket is played by a bound datagram socket
(tests/systemd/notify_listener.py). The wedged-worker test wedges the audio
thread for real: the ALSA file sink writes into a FIFO that nobody reads, so
`stream.write()` blocks once the pipe is full, exactly like a hung sound
driver; reading the FIFO again un-wedges it.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import signal
import struct
import threading
import time
import wave
from collections.abc import Iterator
from pathlib import Path

import pytest
from gpiozero.pins.mock import MockFactory

import gateway.service
from gateway.config.loader import load_config
from gateway.service import Station
from gateway.store.outbox import open_store
from harness.mosquitto import Mosquitto, Subscriber
from harness.station import (
    StationProcess,
    station_topic,
    wait_until,
    write_config,
)
from tests.systemd.notify_listener import NotifyListener


@pytest.fixture
def listener() -> Iterator[NotifyListener]:
    sock = NotifyListener()
    yield sock
    sock.close()


def test_ready_watchdog_status_stopping_and_clean_exit(
    tmp_path: Path, listener: NotifyListener
) -> None:
    with Mosquitto() as broker:
        config = write_config(tmp_path, broker.port)
        env = {**os.environ, **listener.env, "WATCHDOG_USEC": "1000000"}
        station = StationProcess(config, env=env).start()
        try:
            ready = listener.wait_for("READY", "1", timeout=10)
            status = listener.wait_for("STATUS", "backlog", timeout=5)
            assert "broker" in status.fields["STATUS"]
            time.sleep(2.2)
            pings = [n for n in listener.with_key("WATCHDOG") if n.at > ready.at]
            assert len(pings) >= 3, f"{len(pings)} watchdog pings in 2.2 s at WATCHDOG_USEC=1 s"
            started = time.monotonic()
            assert station.terminate(timeout=5) == 0
            assert time.monotonic() - started < 5
            listener.wait_for("STOPPING", "1", timeout=1)
        finally:
            station.close()


def write_clip(path: Path, seconds: float, rate: int = 22050) -> None:
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        frames = (
            struct.pack("<h", int(8000 * math.sin(2 * math.pi * 440 * i / rate)))
            for i in range(int(seconds * rate))
        )
        out.writeframes(b"".join(frames))


def test_watchdog_pings_stop_while_the_audio_thread_is_wedged(
    tmp_path: Path, listener: NotifyListener, monkeypatch: pytest.MonkeyPatch
) -> None:
    fifo = tmp_path / "speaker.fifo"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # opened, never read: the pipe fills
    asoundrc = tmp_path / "asound.conf"
    asoundrc.write_text(
        f'pcm.null {{ type null }}\npcm.!default {{ type file slave.pcm "null" file "{fifo}" format "raw" }}\n'
    )
    monkeypatch.setenv("ALSA_CONFIG_PATH", str(asoundrc))
    for key, value in {**listener.env, "WATCHDOG_USEC": "400000"}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(gateway.service, "AUDIO_MAX_SILENCE_S", 1.0)
    rules = """
[[sensors]]
name = "level"
type = "simulated"
quantity = "water_level_m"
pattern = "script"
values = [5.0]
interval_s = 0.2

[[rules]]
name = "high"
sensor = "level"
above = 3.0
level = "red"
broadcast = { clip = "long", repeat = 1 }
"""
    config_path = write_config(tmp_path, 1, body=rules)
    write_clip(tmp_path / "clips" / "long.wav", 20)
    config = load_config(config_path)
    station = Station(config, pin_factory=MockFactory())
    thread = threading.Thread(target=lambda: asyncio.run(station.run()), daemon=True)
    thread.start()
    try:
        listener.wait_for("READY", "1", timeout=10)
        wait_until(lambda: station.parts.queue.state == "playing", 10, "the broadcast to start")
        # The pipe (64 KiB, about 1.5 s of audio) fills; then stream.write() blocks for good,
        # and one second later (AUDIO_MAX_SILENCE_S here) the service stops vouching for it.
        stuck = listener.wait_for("STATUS", "STUCK", timeout=8)
        assert "audio" in stuck.fields["STATUS"]
        time.sleep(2.0)  # five ping intervals at WATCHDOG_USEC = 0.4 s
        pings = [n for n in listener.with_key("WATCHDOG") if n.at > stuck.at]
        assert pings == [], f"{len(pings)} pings while the audio thread was wedged"
        assert station.parts.queue.state == "playing"
        # Un-wedge: read the pipe; pings come back.
        drained_at = time.monotonic()
        drainer = threading.Thread(target=_drain, args=(reader, 3.0), daemon=True)
        drainer.start()
        wait_until(
            lambda: [n for n in listener.with_key("WATCHDOG") if n.at > drained_at],
            5,
            "watchdog pings after the audio thread recovered",
        )
        drainer.join()
    finally:
        station.stop()
        thread.join(10)
        os.close(reader)
    assert not thread.is_alive()


def _drain(fd: int, seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            os.read(fd, 65536)
        except BlockingIOError:
            time.sleep(0.005)


def test_sigterm_during_a_drain_exits_0_within_5_s_and_loses_nothing(tmp_path: Path) -> None:
    broker = Mosquitto()
    config_path = write_config(tmp_path, broker.port)
    config = load_config(config_path)
    store = open_store(config)
    base = int(time.time() * 1000)
    for i in range(200_000):
        store.add_reading("level", "water_level_m", 1.0 + (i % 100) / 100, base + i)
    store.flush()
    store.close()
    broker.start()
    sub = Subscriber(broker.port, [station_topic("telemetry"), station_topic("event")])
    station = StationProcess(config_path)

    def seen() -> set[int]:
        seqs: set[int] = set()
        for message in list(sub.messages):
            body = json.loads(message.payload)
            seqs.update(r["seq"] for r in body.get("readings", []))
            if "type" in body:
                seqs.add(body["seq"])
        return seqs

    try:
        station.start()
        sub.wait_for(lambda m: m.topic.endswith("telemetry"), timeout=15)
        started = time.monotonic()
        station.proc.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
        at_sigterm = len(seen())
        assert station.proc.wait(5) == 0  # type: ignore[union-attr]
        assert time.monotonic() - started < 5
        assert at_sigterm < 200_000, (
            "the drain had finished before SIGTERM; the test proves nothing"
        )
        reopened = open_store(config)
        last = reopened.last_seq
        reopened.close()
        station.start()
        wait_until(
            lambda: set(range(1, last + 1)) <= seen(), 30, f"every seq 1..{last} at the centre"
        )
    finally:
        station.close()
        sub.close()
        broker.close()
