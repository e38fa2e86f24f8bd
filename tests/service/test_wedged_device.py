"""SIGTERM stops the service within 5 s even while the sound device is wedged (issue 12).

The bug this guards against: the player held its lock across a blocking ``stream.write()``
and ``close()`` waited for that lock, so with a hung sound driver the service never exited
and systemd had to SIGKILL it after its stop timeout. The device is wedged for real, as in
tests/service/test_supervision.py: the ALSA file sink writes into a FIFO that nobody reads,
so once the pipe is full ``stream.write()`` blocks for good.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from harness.mosquitto import Mosquitto
from harness.station import StationProcess, write_config
from tests.service.test_supervision import write_clip

RULES = """
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


def test_sigterm_exits_0_within_5_s_while_the_sound_device_is_wedged(tmp_path: Path) -> None:
    fifo = tmp_path / "speaker.fifo"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # opened, never read: the pipe fills
    asoundrc = tmp_path / "asound.conf"
    asoundrc.write_text(
        f'pcm.null {{ type null }}\npcm.!default {{ type file slave.pcm "null" file "{fifo}" format "raw" }}\n'
    )
    with Mosquitto() as broker:
        config = write_config(tmp_path, broker.port, body=RULES)
        write_clip(tmp_path / "clips" / "long.wav", 20)
        env = {**os.environ, "ALSA_CONFIG_PATH": str(asoundrc)}
        station = StationProcess(config, env=env).start()
        try:
            station.wait_log("receipt local:high:1 playing", 20)
            # The pipe holds 64 KiB, about 1.5 s of audio; after that every write blocks.
            time.sleep(3.0)
            assert station.running()
            started = time.monotonic()
            assert station.proc is not None
            station.proc.send_signal(signal.SIGTERM)
            try:
                code = station.proc.wait(10)
            finally:
                took = time.monotonic() - started
                print(f"SIGTERM to exit with the device wedged: {took:.2f} s")
            assert code == 0, station.log()[-3000:]
            assert took < 5.0, f"SIGTERM took {took:.1f} s with the device wedged"
        finally:
            station.close()
            os.close(reader)
