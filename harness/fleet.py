"""Many `cunxiang run` stations on one broker, and the county centre that watches them.

Why this module exists: what a county centre cares about is every village speaking at once.
`Fleet` starts N real stations (``python -m gateway run``, null ALSA device, mock pins, their
logs in files) in one town, all trusting one centre key, on one broker; the centre
(harness/centre.py) signs and publishes a town-wide alert and notes, per station, when each
receipt arrived and how much CPU the station had used by then. From those come the fleet figures of docs/performance.md: publish → `playing`
p50/p99/max, CPU per alert to first sound, and (with harness/broker.py) all online after a
broker restart and the busiest 100 ms window of reconnects.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from harness.broker import Broker, busiest_window
from harness.centre import AREA, KEY_NAME, PREFIX, Arrival, FleetCentre, cpu_s, run_ns

__all__ = ["AREA", "PREFIX", "Fleet", "FleetCentre", "FleetStation", "percentile"]

ROOT = Path(__file__).resolve().parents[1]
NULL_ALSA = "pcm.!default { type null }\n"


def station_id(n: int) -> str:
    return f"fleet-{n:04d}"


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0–100)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def station_config(
    folder: Path, port: int, n: int, public_b64: str, extra: str = "", capture: bool = False
) -> Path:
    """The config of fleet station `n`: defaults except loopback, no sensors, no TTS, no warm-up.

    Its sound goes to a null ALSA device; with `capture`, through ALSA's ``file`` plugin into
    ``sound.raw`` beside the config, so the first sound can be seen from outside.
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
trusted_keys = {{ "{KEY_NAME}" = "{public_b64}" }}

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


def station_env(folder: Path) -> dict[str, str]:
    """A station's environment: null sound, mock pins, no systemd socket, compiled bytecode."""
    env = dict(os.environ)
    env.update(
        ALSA_CONFIG_PATH=str(folder / "asound.conf"),
        GPIOZERO_PIN_FACTORY="mock",
        PYTHONUNBUFFERED="1",
        PYTHONPATH=str(ROOT),
    )
    for name in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "JOURNAL_STREAM"):
        env.pop(name, None)
    return env


class FleetStation:
    """One `python -m gateway run` process, its log in a file beside its config."""

    def __init__(self, n: int, config: Path) -> None:
        self.n = n
        self.id = station_id(n)
        self.config = config
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with (self.config.parent / "station.log").open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "gateway", "run", "-c", str(self.config)],
                cwd=ROOT,
                env=station_env(self.config.parent),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig: signal.Signals) -> None:
        if self.running():
            assert self.proc is not None
            self.proc.send_signal(sig)

    def wait(self, timeout: float) -> None:
        if self.proc is None:
            return
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)

    def log(self) -> str:
        path = self.config.parent / "station.log"
        return path.read_text(errors="replace") if path.exists() else ""


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


class Fleet:
    """N stations in one town on the broker at `port`, and the centre watching them."""

    def __init__(
        self, folder: Path, port: int, count: int, extra_config: str = "", capture: bool = False
    ) -> None:
        self.folder = folder
        self.capture = capture
        self.port = port
        self.stations: list[FleetStation] = []
        self.start_s = 0.0
        self.centre = FleetCentre(port)
        for n in range(count):
            config = station_config(
                folder / station_id(n), port, n, self.centre.public_b64, extra_config, capture
            )
            self.stations.append(FleetStation(n, config))

    @property
    def ids(self) -> list[str]:
        return [s.id for s in self.stations]

    def start(self, timeout: float = 300.0, stagger_s: float = 0.05) -> float:
        """Start every station and wait until all have said they are online; seconds taken."""
        began = time.monotonic()
        for station in self.stations:
            station.start()
            time.sleep(stagger_s)
        self.centre.pids.update({s.id: s.pid for s in self.stations})

        def settled() -> bool:
            return self.centre.all_online(self.ids) or any(not s.running() for s in self.stations)

        if not self.centre.wait(settled, timeout) or not self.centre.all_online(self.ids):
            raise RuntimeError(f"not all stations online within {timeout} s: {self._offline()}")
        self.start_s = time.monotonic() - began
        return self.start_s

    def _offline(self) -> str:
        down = [s for s in self.stations if not self.centre.online.get(s.id)]
        dead = [s.id for s in down if not s.running()]
        text = f"{len(down)} offline, {len(dead)} exited"
        if down:
            text += f"; log of {down[0].id}:\n{down[0].log()[-3000:]}"
        return text

    def settle(self, quiet_s: float = 2.0) -> None:
        """Let start-up work (first state saves, retained messages) finish."""
        time.sleep(quiet_s)

    def town_alert(self, timeout: float = 60.0, wait_played: bool = True) -> AlertResult:
        """One red siren alert to the whole town; per station publish → `playing` and CPU."""
        centre = self.centre
        raw = centre.alert()
        sounds: dict[str, Arrival] = {}
        done = threading.Event()
        watcher = None
        if self.capture:
            watcher = threading.Thread(target=self._watch_sound, args=(sounds, done), daemon=True)
            watcher.start()
        tracked = centre.publish(raw, centre.last_id)
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
        with centre._cond:
            arrivals = {s: a for (s, status), a in tracked.receipts.items() if status == "playing"}
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
        files = {s.id: (s.config.parent / "sound.raw", s.pid) for s in self.stations}
        sizes = {sid: _size(path) for sid, (path, _) in files.items()}
        while not done.is_set() and len(sounds) < len(files):
            for sid, (path, pid) in files.items():
                if sid not in sounds and _size(path) > sizes[sid]:
                    sounds[sid] = Arrival(time.monotonic(), cpu_s(pid), run_ns(pid))
            time.sleep(0.0005)

    def idle_cpu_ms_per_s(self, seconds: float) -> float:
        """Mean CPU per station per second of wall time while nothing happens (ms/s)."""
        before = {s.id: cpu_s(s.pid) for s in self.stations}
        start = time.monotonic()
        time.sleep(seconds)
        elapsed = time.monotonic() - start
        used = [cpu_s(s.pid) - before[s.id] for s in self.stations]
        return sum(used) / len(used) / elapsed * 1000

    def stop(self) -> None:
        """SIGTERM every station, then wait for each (SIGKILL after 20 s)."""
        for station in self.stations:
            station.signal(signal.SIGTERM)
        for station in self.stations:
            station.wait(20)

    def close(self) -> None:
        try:
            self.stop()
        finally:
            self.centre.close()


@dataclass
class ReconnectResult:
    """A broker restart under the fleet, timed from the broker answering on its port."""

    all_back_s: float | None  # the last station's CONNECT accepted (None: not all came back)
    median_back_s: float | None
    busiest_100ms: int  # most station CONNECTs in any 100 ms window
    connects: int  # station CONNECTs accepted after the restart
    down_s: float  # from SIGTERM of the broker to its port answering again


def restart_broker(fleet: Fleet, broker: Broker, timeout: float = 90.0) -> ReconnectResult:
    """SIGTERM the broker and start it again at once; time the stations' return."""
    ids = {f"cx-{s}" for s in fleet.ids}
    stopped = time.monotonic()
    broker.restart()
    up = time.monotonic()

    def first_connects() -> dict[str, float]:
        seen: dict[str, float] = {}
        for at, client in broker.connected_clients_since(up - 0.5):
            if client in ids and client not in seen:
                seen[client] = at
        return seen

    deadline = up + timeout
    while time.monotonic() < deadline and len(first_connects()) < len(ids):
        time.sleep(0.1)
    time.sleep(1.0)  # late duplicates of a connect still count in the windows
    firsts = first_connects()
    every = [at for at, client in broker.connected_clients_since(up - 0.5) if client in ids]
    back = sorted(max(0.0, at - up) for at in firsts.values())
    complete = len(firsts) == len(ids)
    return ReconnectResult(
        all_back_s=back[-1] if complete and back else None,
        median_back_s=percentile(back, 50) if back else None,
        busiest_100ms=busiest_window(every),
        connects=len(every),
        down_s=up - stopped,
    )
