"""Many `cunxiang run` stations on one broker, and the county centre that watches them.

Why this module exists: what a county centre cares about is every village speaking at once.
`Fleet` starts N real stations (``python -m gateway run``, null ALSA device, mock pins, their
logs in files) in one town, all trusting one centre key, on one broker; `FleetCentre` is the
centre: it signs and publishes a town-wide alert and notes, per station, when each receipt
arrived and how much CPU the station had used by then (``utime + stime`` of /proc/<pid>/stat,
all threads). From those come the fleet figures of docs/performance.md: publish → `playing`
p50/p99/max, CPU per alert to first sound, and (with harness/broker.py) all online after a
broker restart and the busiest 100 ms window of reconnects.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from paho.mqtt.enums import CallbackAPIVersion

from gateway.alert_model import Alert, alert_to_json
from gateway.envelope import seal
from gateway.keys import public_key_b64
from harness.broker import Broker, busiest_window

ROOT = Path(__file__).resolve().parents[1]
AREA = "371581001201"
PREFIX = "cx/v1"
KEY_NAME = "fleet-centre"
TICKS = os.sysconf("SC_CLK_TCK")
NULL_ALSA = "pcm.!default { type null }\n"


def station_id(n: int) -> str:
    return f"fleet-{n:04d}"


def cpu_s(pid: int) -> float:
    """User + system CPU time of `pid`, all its threads (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICKS


def run_ns(pid: int) -> int:
    """Nanoseconds on a CPU of `pid`'s live threads (/proc/<pid>/task/*/schedstat)."""
    total = 0
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return 0
    for task in tasks:
        try:
            total += int(Path(f"/proc/{pid}/task/{task}/schedstat").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            continue
    return total


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0–100)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def station_config(folder: Path, port: int, n: int, public_b64: str, extra: str = "") -> Path:
    """The config of fleet station `n`: defaults except loopback, no sensors, no TTS, no warm-up."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "clips").mkdir(exist_ok=True)
    (folder / "asound.conf").write_text(NULL_ALSA)
    text = f"""
[station]
id = "{station_id(n)}"
area = "{AREA}"
clock = "synced"

[mqtt]
host = "127.0.0.1"
port = {port}

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
class Arrival:
    """A receipt at the centre: when it came and the station's CPU time then."""

    at: float
    cpu_s: float
    run_ns: int


@dataclass
class Tracked:
    """An alert the centre published: when, and the CPU of every station just before."""

    id: str
    published_at: float
    cpu_before: dict[str, float] = field(default_factory=dict)
    ns_before: dict[str, int] = field(default_factory=dict)
    receipts: dict[tuple[str, str], Arrival] = field(default_factory=dict)  # (station, status)


class FleetCentre:
    """The county centre: signs and publishes alerts, collects receipts and station states."""

    def __init__(self, port: int, pids: dict[str, int] | None = None) -> None:
        self.key = Ed25519PrivateKey.generate()
        self.pids = pids if pids is not None else {}
        self._cond = threading.Condition()
        self.alerts: dict[str, Tracked] = {}
        self.online: dict[str, bool] = {}
        self.online_at: dict[str, float] = {}
        self._subscribed = threading.Event()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"centre-{uuid.uuid4().hex[:8]}",
            clean_session=False,
        )
        self.client.reconnect_delay_set(min_delay=0.01, max_delay=0.05)  # type: ignore[arg-type]
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = lambda *_: self._subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        if not self._subscribed.wait(10):
            self.close()
            raise TimeoutError(f"the centre could not subscribe on port {port}")

    @property
    def public_b64(self) -> str:
        return public_key_b64(self.key)

    def _on_connect(self, client: mqtt.Client, *_: Any) -> None:
        client.subscribe([(f"{PREFIX}/station/+/receipt", 1), (f"{PREFIX}/station/+/state", 1)])

    def _on_message(self, _c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        now = time.monotonic()
        station = msg.topic.split("/")[-2]
        try:
            doc = json.loads(msg.payload)
        except ValueError:
            return
        with self._cond:
            if msg.topic.endswith("/state"):
                online = bool(doc.get("online"))
                if online and not self.online.get(station):
                    self.online_at[station] = now
                self.online[station] = online
            else:
                tracked = self.alerts.get(str(doc.get("alert")))
                key = (station, str(doc.get("status")))
                if tracked is not None and key not in tracked.receipts:
                    pid = self.pids.get(station)
                    cpu, ns = (cpu_s(pid), run_ns(pid)) if pid else (0.0, 0)
                    tracked.receipts[key] = Arrival(now, cpu, ns)
            self._cond.notify_all()

    def alert(self, *, level: str = "red", tone: str = "siren", **fields: Any) -> bytes:
        """A sealed town-wide alert, sent now, expiring in an hour; its id is in `last_id`."""
        now = datetime.now(UTC)
        base: dict[str, Any] = {
            "id": f"fleet-{uuid.uuid4().hex[:12]}",
            "sender": "临清市应急管理局",
            "sent": now,
            "expires": now + timedelta(hours=1),
            "msg_type": "alert",
            "status": "actual",
            "references": [],
            "level": level,
            "event": "flood",
            "areas": [AREA[:9]],
            "text": "",
            "tone": tone,
            "repeat": 1,
        }
        base.update(fields)
        alert = Alert.model_validate(base, strict=False)
        self.last_id = alert.id
        return seal(alert_to_json(alert), "alert", KEY_NAME, self.key)

    def publish(self, raw: bytes, alert_id: str) -> Tracked:
        """Publish a sealed alert to the town's topic; CPU of every station read just before."""
        tracked = Tracked(alert_id, 0.0)
        for station, pid in self.pids.items():
            tracked.cpu_before[station] = cpu_s(pid)
            tracked.ns_before[station] = run_ns(pid)
        with self._cond:
            self.alerts[alert_id] = tracked
        tracked.published_at = time.monotonic()
        self.client.publish(f"{PREFIX}/alert/{AREA[:9]}", raw, qos=1)
        return tracked

    def wait(self, check: Any, timeout: float) -> bool:
        """Until `check()` (called under the lock) is true or `timeout` s passed."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not check():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(min(remaining, 0.5))
        return True

    def count(self, tracked: Tracked, status: str) -> int:
        return sum(1 for _, s in tracked.receipts if s == status)

    def all_online(self, stations: list[str]) -> bool:
        return all(self.online.get(s) for s in stations)

    def close(self) -> None:
        try:
            self.client.disconnect()
        finally:
            self.client.loop_stop()


@dataclass
class AlertResult:
    """One town-wide alert across the fleet."""

    stations: int
    playing_ms: list[float]  # publish → `playing` at the centre, per station that played
    cpu_ms: list[float]  # station CPU (stat) from just before publish to its `playing`
    run_ms: list[float]  # the same from schedstat (ns, live threads)
    missing: list[str]  # stations that sent no `playing` in time


class Fleet:
    """N stations in one town on the broker at `port`, and the centre watching them."""

    def __init__(self, folder: Path, port: int, count: int, extra_config: str = "") -> None:
        self.folder = folder
        self.port = port
        self.stations: list[FleetStation] = []
        self.start_s = 0.0
        self.centre = FleetCentre(port)
        for n in range(count):
            config = station_config(
                folder / station_id(n), port, n, self.centre.public_b64, extra_config
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
        if not self.centre.wait(lambda: self.centre.all_online(self.ids), timeout):
            raise TimeoutError(f"not all stations online within {timeout} s: {self._offline()}")
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
        tracked = centre.publish(raw, centre.last_id)
        n = len(self.stations)
        centre.wait(lambda: centre.count(tracked, "playing") >= n, timeout)
        if wait_played:
            centre.wait(lambda: centre.count(tracked, "played") >= n, timeout)
        with centre._cond:
            arrivals = {s: a for (s, status), a in tracked.receipts.items() if status == "playing"}
        playing = [(a.at - tracked.published_at) * 1000 for a in arrivals.values()]
        cpu = [(a.cpu_s - tracked.cpu_before[s]) * 1000 for s, a in arrivals.items()]
        run = [(a.run_ns - tracked.ns_before[s]) / 1e6 for s, a in arrivals.items()]
        missing = [s for s in self.ids if s not in arrivals]
        return AlertResult(n, playing, cpu, run, missing)

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
