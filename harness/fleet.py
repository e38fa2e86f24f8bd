"""Many `cunxiang run` stations on one broker, and the county centre that watches them.

Why this module exists: what a county centre cares about is every village speaking at once,
and one broker restart bringing every station back at the same moment. `Fleet` starts N real
stations (``python -m gateway run``, null ALSA device, mock pins, their logs in files) in one
town, all trusting one centre key, on one private Mosquitto; the centre
(harness/fleet_centre.py) signs and publishes a town-wide alert and notes, per station, when
each receipt arrived and how much CPU the station had used by then. `reconnect_after_restart`
restarts the broker and times the stations' return from its stamped log (CONNECTs accepted, as
the broker saw them; ``Mosquitto(stamp_log=True)``).

The benchmark (benchmarks/fleet.py, 100 stations) and the regression tests
(tests/e2e/test_fleet.py, tests/e2e/test_fleet_reconnect.py, 20 stations) run this one fleet,
so they measure the same thing: the fleet figures of docs/performance.md.

    with Mosquitto(stamp_log=True) as broker, Fleet(tmp_path, broker, 20) as fleet:
        fleet.start()
        spread = fleet.reconnect_after_restart(timeout=30)
"""

from __future__ import annotations

import signal
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from harness.fleet_centre import Arrival, FleetCentre
from harness.mosquitto import Mosquitto
from harness.procstat import cpu_s, run_ns
from harness.station import AREA, StationProcess, service_env
from harness.stats import percentile

NULL_ALSA = "pcm.!default { type null }\n"
#: The window of the reconnect figure: the most CONNECTs the broker accepted within it.
WINDOW_MS = 100


def station_id(n: int) -> str:
    return f"fleet-{n:04d}"


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def busiest_window(times_ms: list[float], window_ms: float = WINDOW_MS) -> int:
    """The most of `times_ms` that fall within any `window_ms` (a sliding window)."""
    ordered = sorted(times_ms)
    best = start = 0
    for end, t in enumerate(ordered):
        while t - ordered[start] >= window_ms:
            start += 1
        best = max(best, end - start + 1)
    return best


def station_config(
    folder: Path, port: int, n: int, key: tuple[str, str], extra: str = "", capture: bool = False
) -> Path:
    """The config of fleet station `n`: defaults except loopback, no sensors, no TTS, no warm-up.

    `key` is the centre's (name, public key). Its sound goes to a null ALSA device; with
    `capture`, through ALSA's ``file`` plugin into ``sound.raw`` beside the config, so the
    first sound can be seen from outside.
    """
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "clips").mkdir(exist_ok=True)
    alsa = NULL_ALSA
    if capture:
        target = folder / "sound.raw"
        alsa = (
            "pcm.null { type null }\n"
            f'pcm.!default {{ type file slave.pcm "null" file "{target}" format "raw" }}\n'
        )
    (folder / "asound.conf").write_text(alsa)
    name, public_b64 = key
    text = f"""
[station]
id = "{station_id(n)}"
area = "{AREA}"
clock = "synced"

[mqtt]
host = "127.0.0.1"
port = {port}
allow_plaintext = true

[storage]
path = "station.db"

[security]
trusted_keys = {{ "{name}" = "{public_b64}" }}

[audio]
clips_dir = "clips"
tts = "none"
amp_warmup_s = 0
amp_release_s = 0
repeat_gap_s = 0.2
{extra}
"""
    path = folder / "gateway.toml"
    path.write_text(text, encoding="utf-8")
    return path


def fleet_station(config: Path) -> StationProcess:
    """One station of a fleet: `cunxiang run` as installed, logging at its default level."""
    return StationProcess(config, env=service_env(config.parent), log_level="info")


@dataclass
class AlertResult:
    """One town-wide alert across the fleet."""

    stations: int
    playing_ms: list[float]  # publish → `playing` at the centre, per station that played
    cpu_ms: list[float]  # station CPU (stat) from just before publish to its `playing`
    run_ms: list[float]  # the same from schedstat (ns, live threads)
    missing: list[str]  # stations that sent no `playing` in time
    sound_ms: list[float] = field(default_factory=list)  # publish → first bytes captured
    sound_cpu_ms: list[float] = field(default_factory=list)  # station CPU (stat) by then
    sound_run_ms: list[float] = field(default_factory=list)  # the same from schedstat


@dataclass
class Reconnect:
    """A broker restart under the fleet, timed from the broker answering on its port."""

    stations: int
    back: int  # stations whose CONNECT the broker accepted after the restart
    busiest_window: int  # most station CONNECTs in any 100 ms window
    connects: int  # station CONNECTs accepted after the restart
    median_s: float | None  # from the broker answering to the median station's CONNECT
    last_s: float | None  # ... to the last one's (None: not every station came back)
    down_s: float  # from SIGTERM of the broker to its port answering again

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class Fleet:
    """N stations in one town on `broker`, in subfolders of `folder`, and the centre watching them."""

    def __init__(
        self,
        folder: Path,
        broker: Mosquitto,
        count: int,
        *,
        extra_config: str = "",
        capture: bool = False,
    ) -> None:
        self.folder = folder
        self.broker = broker
        self.capture = capture
        self.start_s = 0.0
        self.centre = FleetCentre(broker.port)
        key = (self.centre.signer.name, self.centre.signer.public_b64)
        self.stations = {
            station_id(n): fleet_station(
                station_config(folder / station_id(n), broker.port, n, key, extra_config, capture)
            )
            for n in range(count)
        }

    @property
    def ids(self) -> list[str]:
        return list(self.stations)

    def start(self, timeout: float = 300.0, stagger_s: float = 0.05) -> float:
        """Start every station and wait until all have said they are online; seconds taken."""
        began = time.monotonic()
        for station in self.stations.values():
            station.start()
            time.sleep(stagger_s)
        self.centre.pids.update({sid: s.pid for sid, s in self.stations.items()})

        def settled() -> bool:
            exited = any(not s.running() for s in self.stations.values())
            return self.centre.all_online(self.ids) or exited

        if not self.centre.wait(settled, timeout) or not self.centre.all_online(self.ids):
            raise RuntimeError(f"not all stations online within {timeout} s: {self._offline()}")
        self.start_s = time.monotonic() - began
        return self.start_s

    def _offline(self) -> str:
        down = [sid for sid in self.ids if not self.centre.online.get(sid)]
        dead = [sid for sid in down if not self.stations[sid].running()]
        text = f"{len(down)} offline, {len(dead)} exited"
        if down:
            text += f"; log of {down[0]}:\n{self.stations[down[0]].log()[-3000:]}"
        return text

    def settle(self, quiet_s: float = 2.0) -> None:
        """Let start-up work (first state saves, retained messages) finish."""
        time.sleep(quiet_s)

    def town_alert(self, timeout: float = 60.0, wait_played: bool = True) -> AlertResult:
        """One red siren alert to the whole town; per station publish → `playing` and CPU."""
        centre = self.centre
        alert_id, raw = centre.town_alert()
        sounds: dict[str, Arrival] = {}
        done = threading.Event()
        watcher = None
        if self.capture:
            watcher = threading.Thread(target=self._watch_sound, args=(sounds, done), daemon=True)
            watcher.start()
        tracked = centre.publish(raw, alert_id)
        n = len(self.stations)
        centre.wait(lambda: centre.count(tracked, "playing") >= n, timeout)
        if watcher is not None:
            deadline = time.monotonic() + 5.0
            while len(sounds) < n and time.monotonic() < deadline:
                time.sleep(0.01)
            done.set()
            watcher.join(5)
        if wait_played:
            centre.wait(lambda: centre.count(tracked, "played") >= n, timeout)
        arrivals = centre.arrivals(tracked, "playing")
        playing = [(a.at - tracked.published_at) * 1000 for a in arrivals.values()]
        cpu = [(a.cpu_s - tracked.cpu_before[s]) * 1000 for s, a in arrivals.items()]
        run = [(a.run_ns - tracked.ns_before[s]) / 1e6 for s, a in arrivals.items()]
        missing = [s for s in self.ids if s not in arrivals]
        result = AlertResult(n, playing, cpu, run, missing)
        for s, a in sounds.items():
            result.sound_ms.append((a.at - tracked.published_at) * 1000)
            result.sound_cpu_ms.append((a.cpu_s - tracked.cpu_before[s]) * 1000)
            result.sound_run_ms.append((a.run_ns - tracked.ns_before[s]) / 1e6)
        return result

    def _watch_sound(self, sounds: dict[str, Arrival], done: threading.Event) -> None:
        """Poll every station's capture file; note the time and its CPU when it first grows."""
        files = {sid: (s.config.parent / "sound.raw", s.pid) for sid, s in self.stations.items()}
        sizes = {sid: _size(path) for sid, (path, _) in files.items()}
        while not done.is_set() and len(sounds) < len(files):
            for sid, (path, pid) in files.items():
                if sid not in sounds and _size(path) > sizes[sid]:
                    sounds[sid] = Arrival(time.monotonic(), cpu_s(pid), run_ns(pid))
            time.sleep(0.0005)

    def idle_cpu_ms_per_s(self, seconds: float) -> float:
        """Mean CPU per station per second of wall time while nothing happens (ms/s)."""
        before = {sid: cpu_s(s.pid) for sid, s in self.stations.items()}
        start = time.monotonic()
        time.sleep(seconds)
        elapsed = time.monotonic() - start
        used = [cpu_s(s.pid) - before[sid] for sid, s in self.stations.items()]
        return sum(used) / len(used) / elapsed * 1000

    def reconnect_after_restart(self, timeout: float = 90.0) -> Reconnect:
        """SIGTERM the broker and start it again at once; time the stations' return."""
        ids = {f"cx-{sid}" for sid in self.ids}
        stopped = time.monotonic()
        self.broker.restart()
        up = time.monotonic()

        def first_connects() -> dict[str, float]:
            seen: dict[str, float] = {}
            for at, client in self.broker.connected_clients_since(up - 0.5):
                if client in ids and client not in seen:
                    seen[client] = at
            return seen

        deadline = up + timeout
        while time.monotonic() < deadline and len(first_connects()) < len(ids):
            time.sleep(0.1)
        time.sleep(1.0)  # late duplicates of a connect still count in the windows
        firsts = first_connects()
        every = [
            at for at, client in self.broker.connected_clients_since(up - 0.5) if client in ids
        ]
        back = sorted(max(0.0, at - up) for at in firsts.values())
        return Reconnect(
            stations=len(ids),
            back=len(back),
            busiest_window=busiest_window([at * 1000 for at in every]),
            connects=len(every),
            median_s=percentile(back, 50) if back else None,
            last_s=back[-1] if back and len(back) == len(ids) else None,
            down_s=up - stopped,
        )

    def stop(self) -> None:
        """SIGTERM every station, then wait for each (SIGKILL after 20 s)."""
        for station in self.stations.values():
            station.signal(signal.SIGTERM)
        for station in self.stations.values():
            station.wait(20)

    def close(self) -> None:
        try:
            self.stop()
        finally:
            self.centre.close()

    def __enter__(self) -> Fleet:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
