"""A fleet of stations on one broker: N real `cunxiang run` processes, each its own id and database.

What a county centre sees is many stations at once: one alert reaching every village, one
broker restart bringing every station back at the same moment. `Fleet` starts N stations
(ids ``f-371581001201-NN``, all in the same village area) against one private Mosquitto and
watches their retained state as the centre does (docs/protocol.md §3).

`reconnect_after_restart` restarts the broker and reports when each station came back: the
``ts`` of the first ``online: true`` state each publishes after the restart, which the station
builds just before its successful connection attempt (station-side wall clock; all processes
share the machine's). From those times: the busiest 100 ms window, the median and the last.

    with Mosquitto() as broker, Fleet(tmp_path, broker, 20) as fleet:
        fleet.wait_online(60)
        spread = fleet.reconnect_after_restart(timeout=30)

Used by tests/e2e/test_fleet_reconnect.py (20 stations, a regression guard) and by the fleet
benchmark (100 stations).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from tests.support.mosquitto import Mosquitto, Subscriber
from tests.support.station import PREFIX, ROOT, STATION_ID, Centre, wait_until, write_config

WINDOW_MS = 100


def station_id(number: int) -> str:
    return f"f-{STATION_ID.split('-')[1]}-{number:03d}"


@dataclass
class Spread:
    """When the stations of a fleet came back after a broker restart."""

    stations: int
    back: int
    busiest_window: int  # most attempts that succeeded within any 100 ms
    median_s: float  # from the broker being up again to the median station's attempt
    last_s: float  # ... to the last station's

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def busiest_window(times_ms: list[int], window_ms: int = WINDOW_MS) -> int:
    """The most of `times_ms` that fall within any `window_ms` (a sliding window)."""
    ordered = sorted(times_ms)
    best, start = 0, 0
    for end, t in enumerate(ordered):
        while t - ordered[start] >= window_ms:
            start += 1
        best = max(best, end - start + 1)
    return best


class Fleet:
    """N stations on `broker`, in subfolders of `folder`."""

    def __init__(
        self,
        folder: Path,
        broker: Mosquitto,
        count: int,
        *,
        centre: Centre | None = None,
        mqtt: str = "reconnect_min_s = 1.0\nreconnect_max_s = 60.0",
        root: Path = ROOT,
    ) -> None:
        self.folder = folder
        self.broker = broker
        self.count = count
        self.centre = centre or Centre()
        self.root = root
        self.ids = [station_id(n) for n in range(count)]
        self.procs: list[subprocess.Popen[bytes]] = []
        self._lock = threading.Lock()
        self._states: list[tuple[str, dict[str, Any]]] = []
        self.sub = Subscriber(broker.port, [f"{PREFIX}/station/+/state"])
        self.sub.client.on_message = self._on_state
        self.sub.client.reconnect_delay_set(0.02, 0.1)  # back before the first station
        self._mqtt = mqtt

    def _on_state(self, client: Any, userdata: Any, message: Any) -> None:
        try:
            doc = json.loads(message.payload)
        except ValueError:
            return
        if isinstance(doc, dict):
            with self._lock:
                self._states.append((message.topic.split("/")[-2], doc))

    def start(self) -> None:
        env = {**os.environ, "GPIOZERO_PIN_FACTORY": "mock", "PYTHONUNBUFFERED": "1"}
        env.pop("NOTIFY_SOCKET", None)
        for number, ident in enumerate(self.ids):
            home = self.folder / f"s{number:03d}"
            home.mkdir(parents=True, exist_ok=True)
            config = write_config(home, self.broker.port, self.centre)
            text = config.read_text(encoding="utf-8").replace(STATION_ID, ident)
            text = text.replace("reconnect_min_s = 0.2\nreconnect_max_s = 1.0", self._mqtt)
            config.write_text(text, encoding="utf-8")
            with (home / "station.log").open("ab") as log:
                self.procs.append(
                    subprocess.Popen(
                        [sys.executable, "-m", "gateway", "run", "-c", str(config)],
                        cwd=self.root,
                        env=env,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                    )
                )

    def online_since(self, since_ms: int) -> dict[str, int]:
        """Each station's first `online: true` state built at or after `since_ms`: its ts."""
        first: dict[str, int] = {}
        with self._lock:
            states = list(self._states)
        for ident, doc in states:
            ts = doc.get("ts")
            if doc.get("online") is True and isinstance(ts, int) and ts >= since_ms:
                first.setdefault(ident, ts)
        return first

    def wait_online(self, timeout: float, since_ms: int = 0) -> dict[str, int]:
        def all_online() -> dict[str, int] | None:
            for proc in self.procs:
                if proc.poll() is not None:
                    raise AssertionError(f"a station exited with {proc.returncode}")
            online = self.online_since(since_ms)
            return online if len(online) == self.count else None

        return wait_until(all_online, timeout, f"{self.count} stations online")  # type: ignore[no-any-return]

    def reconnect_after_restart(self, timeout: float = 30.0) -> Spread:
        """Restart the broker (SIGTERM, start) and measure how the fleet came back."""
        stopped_ms = int(time.time() * 1000)
        self.broker.restart()
        up_ms = int(time.time() * 1000)
        wait_until(self.sub.client.is_connected, 10, "the centre's subscriber to reconnect")
        deadline = time.monotonic() + timeout
        back = self.online_since(stopped_ms)
        while len(back) < self.count and time.monotonic() < deadline:
            time.sleep(0.05)
            back = self.online_since(stopped_ms)
        times = sorted(back.values())
        return Spread(
            stations=self.count,
            back=len(times),
            busiest_window=busiest_window(times),
            median_s=round((statistics.median(times) - up_ms) / 1000, 3) if times else -1.0,
            last_s=round((times[-1] - up_ms) / 1000, 3) if times else -1.0,
        )

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        self.sub.close()

    def __enter__(self) -> Fleet:
        self.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
