"""The bench: a private broker, the centre as a subscriber, and the real `cunxiang run` process.

Why this module exists: the figures that concern the running service (drain, broker outage,
CPU share, idle memory, flash bytes at 10 readings/s) are taken from outside, as the centre
and the operating system see the station: a private Mosquitto on loopback
(harness/mosquitto.py), a paho subscriber standing in for the county centre that counts
every seq it receives, and ``python -m gateway run`` (the code of the ``cunxiang`` console
script) started from the working tree, its figures read from /proc (harness/procstat.py).

The service gets a null ALSA device (no sound card here; nothing is written to a file), mock GPIO
pins, and its log on a pipe, as under systemd, so its own ``write_bytes`` are its database only.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from harness import procstat
from harness.fleet import NULL_ALSA
from harness.station import AREA, ROOT, service_env

STATION_ID = "bench-371581001201-01"


def simulated_sensors(count: int, interval_s: float = 1.0) -> str:
    """TOML for `count` simulated water-level sensors, one reading every `interval_s` each."""
    return "".join(
        f"""
[[sensors]]
name = "sim-{n}"
type = "simulated"
quantity = "water_level_m"
pattern = "sine"
period_s = {60 + n}
low = 0.5
high = 3.5
interval_s = {interval_s}
"""
        for n in range(count)
    )


def smoke_alarm(pin: int) -> str:
    """TOML for a smoke detector's dry contact on `pin` and its `active = true` alarm rule."""
    return f"""
[[sensors]]
name = "smoke-1"
type = "gpio_contact"
pin = {pin}
quantity = "smoke"

[[rules]]
name = "smoke-alarm"
sensor = "smoke-1"
active = true
level = "red"
"""


def write_config(
    folder: Path,
    port: int,
    *,
    body: str = "",
    mqtt_extra: str = "",
    storage_extra: str = "",
    db_name: str = "station.db",
) -> Path:
    """A station config in `folder` (database `db_name` beside it); `body` adds sensors/rules.

    Beside it, an ALSA config whose default device discards sound (PortAudio opens it like a
    card), for harness.station.service_env.
    """
    (folder / "clips").mkdir(parents=True, exist_ok=True)
    (folder / "asound.conf").write_text(NULL_ALSA)
    text = f"""
[station]
id = "{STATION_ID}"
area = "{AREA}"
clock = "synced"

[mqtt]
host = "127.0.0.1"
port = {port}
allow_plaintext = true
{mqtt_extra}

[storage]
path = "{db_name}"
{storage_extra}

[audio]
clips_dir = "clips"
tts = "none"
amp_warmup_s = 0
{body}
"""
    path = folder / "gateway.toml"
    path.write_text(text, encoding="utf-8")
    return path


class Service:
    """``python -m gateway run -c CONFIG`` (what `cunxiang run` runs), its log on a pipe."""

    def __init__(self, config: Path, log_level: str = "info") -> None:
        self.config = config
        self.log_path = config.parent / "service.log"
        self._ready = threading.Event()
        self._lines: list[str] = []
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gateway", "run", "-c", str(config), "--log-level", log_level],
            cwd=ROOT,
            env=service_env(config.parent),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        self._reader = threading.Thread(target=self._read_log, daemon=True)
        self._reader.start()

    def _read_log(self) -> None:
        assert self.proc.stderr is not None
        with self.log_path.open("ab") as out:
            for raw in self.proc.stderr:
                out.write(raw)
                line = raw.decode(errors="replace")
                self._lines.append(line)
                if " running: " in line:
                    self._ready.set()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log(self) -> str:
        """What the service has logged so far."""
        return "".join(self._lines)

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Until the service logs that it runs (store open, drivers started, uplink started)."""
        deadline = time.monotonic() + timeout
        while not self._ready.wait(0.05):
            if self.proc.poll() is not None:
                raise RuntimeError(f"the service exited ({self.proc.returncode}):\n{self.log()}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"the service did not start within {timeout} s:\n{self.log()}")

    def sample(self) -> procstat.Sample:
        """CPU, write_bytes and memory of the service now."""
        return procstat.sample(self.pid)

    def stop(self, timeout: float = 20.0) -> procstat.Exit:
        """SIGTERM, as systemd stops it; its totals after a clean shutdown."""
        self.proc.send_signal(signal.SIGTERM)
        result = procstat.wait_exit(self.proc, timeout)
        self._reader.join(5)
        if result.returncode != 0:
            raise RuntimeError(f"the service exited with {result.returncode}:\n{self.log()}")
        return result

    def kill(self) -> None:
        """End it at once (after a failure elsewhere)."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
