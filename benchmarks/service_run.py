"""The running service with ten sensors: CPU share, flash bytes, idle memory, and broker outages.

Why this module exists: four figures are about `cunxiang run` doing its everyday job — ten
simulated sensors reporting once a second each, the broker connected, nothing else happening:

* CPU share: the service's CPU time (all threads) over a window of wall time;
* bytes written per reading in that everyday case: the service's write_bytes over the window,
  divided by the readings it committed meanwhile (counted in its database);
* peak RSS idle: VmHWM of the service after start-up and the window (no backlog, no alert);
* broker back after an outage → backlog flowing again: the broker is stopped (SIGTERM) while
  the station is connected, stays down for the outage, and is started again on the same port;
  the figure is the time from the broker answering on its port to the first telemetry message
  at the centre's subscriber. The station uses the default back-off (``reconnect_min_s = 1``,
  ``reconnect_max_s = 60``), and before each outage it has been connected for longer than the
  10 s after which a connection counts as stable (which resets the back-off), as a station
  that has been running would be.

The load windows run one service at a time (they measure it); the outages run several
stations side by side, each with its own broker (they measure back-off timers, and a station
waiting for its broker does almost nothing).
"""

from __future__ import annotations

import contextlib
import random
import shutil
import statistics
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from benchmarks.rig import STATION_ID, Service, simulated_sensors, write_config
from harness.ledger import Ledger
from harness.mosquitto import Mosquitto
from harness.station_db import count_readings, stored_max_seq

#: After this long connected, a station's back-off starts from the beginning (gateway.uplink.supervisor).
STABLE_S = 10.5
#: Start-up transients (first state, `started` event, first commits) are left out of windows.
SETTLE_S = 3.0


def load_run(
    folder: Path, *, window_s: float, windows: int, settle_s: float = SETTLE_S
) -> dict[str, list[float]]:
    """One service process, connected, idle but for its sensors: `windows` load windows."""
    out: dict[str, list[float]] = {}
    with _station(folder) as (_broker, _centre, service, _connected):
        time.sleep(settle_s)
        for _ in range(windows):
            _window(service, folder / "station.db", window_s, out)
        idle = service.sample()
        out["rss_idle_mb"] = [idle.hwm_kb / 1024]
        out["rss_idle_now_mb"] = [idle.rss_kb / 1024]
    return out


def outage_run(
    folder: Path, *, outages: int, outage_s: float, stable_s: float = STABLE_S
) -> list[float]:
    """One service process through `outages` broker outages; seconds to telemetry after each."""
    recoveries: list[float] = []
    with _station(folder) as (broker, centre, _service, connected):
        for _ in range(outages):
            connected = _outage(broker, centre, connected, outage_s, stable_s, recoveries)
    return recoveries


def outage_runs(
    workdir: Path, *, stations: int, outages: int, outage_s: float, stable_s: float = STABLE_S
) -> list[float]:
    """`stations` stations side by side, each with its own broker, each through `outages`.

    The time to recover is mostly the back-off's random wait, so the median needs many
    outages; the stations are idle while their brokers are down, so they can share the time.
    """
    with ThreadPoolExecutor(max_workers=stations) as pool:
        futures = [
            pool.submit(
                outage_run,
                workdir / f"outage-{n}",
                outages=outages,
                outage_s=outage_s,
                stable_s=stable_s,
            )
            for n in range(stations)
        ]
        return [seconds for future in futures for seconds in future.result()]


@contextlib.contextmanager
def _station(folder: Path) -> Iterator[tuple[Mosquitto, Ledger, Service, float]]:
    """A broker, the centre, and the service with ten sensors, connected; stopped after."""
    folder.mkdir(parents=True)
    try:
        with Mosquitto() as broker:
            centre = Ledger(port=broker.port, station_id=STATION_ID, keep_readings=False)
            service = Service(write_config(folder, broker.port, body=simulated_sensors(10)))
            try:
                service.wait_ready()
                connected = centre.first_telemetry_after(0.0, 30)
                if connected is None:
                    raise TimeoutError(f"no telemetry from the service:\n{service.log()}")
                yield broker, centre, service, connected
                service.stop()
            finally:
                service.kill()
                centre.close()
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _window(service: Service, db: Path, seconds: float, out: dict[str, list[float]]) -> None:
    before, seq0 = service.sample(), stored_max_seq(db)
    time.sleep(seconds)
    after, seq1 = service.sample(), stored_max_seq(db)
    readings = count_readings(db, seq0, seq1)
    elapsed = after.t - before.t
    written = after.write_bytes - before.write_bytes
    out.setdefault("cpu_share_pct", []).append((after.cpu_s - before.cpu_s) / elapsed * 100)
    out.setdefault("bytes_per_reading_service", []).append(written / max(readings, 1))
    out.setdefault("service_bytes_per_s", []).append(written / elapsed)
    out.setdefault("service_readings_per_s", []).append(readings / elapsed)


def _outage(
    broker: Mosquitto,
    centre: Ledger,
    connected: float,
    outage_s: float,
    stable_s: float,
    recoveries: list[float],
) -> float:
    """Stop the broker for `outage_s`, start it again; returns when telemetry flows again."""
    time.sleep(max(0.0, connected + stable_s - time.monotonic()))
    # Stop right after a telemetry message has reached the centre: the station publishes once
    # per commit, so nothing of it is then left inside the broker to be delivered after the
    # restart and mistaken for the backlog flowing again.
    if centre.first_telemetry_after(time.monotonic(), 10) is None:
        raise TimeoutError("no telemetry before the outage")
    broker.stop()
    stopped = time.monotonic()
    time.sleep(outage_s)
    broker.start()  # returns once the port answers (polled every 10 ms)
    up = time.monotonic()
    # Nothing can arrive while the broker is down: the first telemetry after the stop is the
    # backlog flowing. A station that got in between the port opening and `up` counts as 0.
    flowing = centre.first_telemetry_after(stopped, 180)
    if flowing is None:
        raise TimeoutError("no telemetry within 180 s of the broker coming back")
    recoveries.append(max(0.0, flowing - up))
    return flowing


def schedule_median(outage_s: float, samples: int = 20_000) -> float:
    """The median recovery the back-off schedule alone predicts (gateway.uplink.supervisor.ReconnectBackoff, defaults).

    A reading to set the measured median against: each attempt is assumed to fail at once
    while the broker is down and to succeed at once when it is up.
    """
    from gateway.config.sections import MqttConfig
    from gateway.uplink.supervisor import ReconnectBackoff

    mqtt = MqttConfig()
    rng = random.Random(20_260_701)
    backoff = ReconnectBackoff(mqtt.reconnect_min_s, mqtt.reconnect_max_s, rng.random)
    waits = []
    for _ in range(samples):
        t, attempt = 0.0, 0
        while t < outage_s:
            t += backoff.delay(attempt)
            attempt += 1
        waits.append(t - outage_s)
    return statistics.median(waits)
