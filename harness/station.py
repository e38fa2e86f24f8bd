"""A whole station from outside: its config, the centre's signing key, `cunxiang run` in a process.

Why this module exists: the tests and benchmarks that matter most look at the station as the
centre does: through a private Mosquitto (harness/mosquitto.py), through the samples its
loudspeakers got (harness/alsa_capture.py), and through its exit code and its database.
`StationProcess` runs the real command line, so a test can SIGTERM it, SIGKILL it and start it
again on the same database; `StationThread` runs the service in-process for figures that need
to reach inside it. `Centre` is the county centre's key: it builds and seals alerts and
commands. GPIO pins come from gpiozero's mock factory (GPIOZERO_PIN_FACTORY=mock).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Self

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.config.model import Config
from gateway.downlink.alert_model import Alert, alert_to_json
from gateway.downlink.cap import build_cap
from gateway.downlink.envelope import seal
from gateway.downlink.keys import public_key_b64

ROOT = Path(__file__).resolve().parents[1]
STATION_ID = "t-371581001201-01"
AREA = "371581001201"
PREFIX = "cx/v1"
KEY_NAME = "centre-test"


@dataclass
class Centre:
    """The county centre's signing key and how it builds and seals alerts and commands."""

    key: Ed25519PrivateKey = field(default_factory=Ed25519PrivateKey.generate)
    name: str = KEY_NAME
    counter: int = 0

    @property
    def public_b64(self) -> str:
        return public_key_b64(self.key)

    def alert(self, **fields: Any) -> Alert:
        """A JSON alert for the station's town, sent now, expiring in an hour; override any field."""
        self.counter += 1
        now = datetime.now(UTC)
        base: dict[str, Any] = {
            "id": f"371581-test-{os.getpid()}-{self.counter}-{time.monotonic_ns()}",
            "sender": "临清市应急管理局",
            "sent": now,
            "expires": now + timedelta(hours=1),
            "msg_type": "alert",
            "status": "actual",
            "references": [],
            "level": "orange",
            "event": "flood",
            "areas": [AREA[:9]],
            "text": "",
            "tone": "none",
            "repeat": 1,
        }
        base.update(fields)
        return Alert.model_validate(base, strict=False)

    def seal_alert(self, alert: Alert, *, cap: bool = False) -> bytes:
        payload = build_cap(alert) if cap else alert_to_json(alert)
        return seal(payload, "cap" if cap else "alert", self.name, self.key)

    def seal_command(self, cmd: str, args: dict[str, Any] | None = None, **fields: Any) -> bytes:
        self.counter += 1
        now = datetime.now(UTC)
        body: dict[str, Any] = {
            "id": f"cmd-{os.getpid()}-{self.counter}-{time.monotonic_ns()}",
            "station": STATION_ID,
            "sent": now.isoformat(),
            "expires": (now + timedelta(minutes=5)).isoformat(),
            "cmd": cmd,
            "args": args or {},
        }
        body.update(fields)
        return seal(json.dumps(body).encode(), "command", self.name, self.key)


def topic(*parts: str) -> str:
    return "/".join((PREFIX, *parts))


def station_topic(kind: str) -> str:
    return topic("station", STATION_ID, kind)


def write_config(
    folder: Path,
    broker_port: int,
    centre: Centre | None = None,
    *,
    body: str = "",
    clock: str = "synced",
    audio: str = "",
    storage: str = "",
    mqtt: str = "",
    security: str = "",
    keys: dict[str, str] | None = None,
) -> Path:
    """A station config in `folder`; `body` adds [[sensors]] and [[rules]] tables.

    `keys` adds trusted keys: name -> TOML value (a quoted base64 key, or a scope table).
    """
    entries = {centre.name: f'"{centre.public_b64}"'} if centre else {}
    entries.update(keys or {})
    listed = ", ".join(f'"{name}" = {value}' for name, value in entries.items())
    keys_line = f"trusted_keys = {{ {listed} }}" if entries else ""
    if "allow_plaintext" not in mqtt and "tls = true" not in mqtt:
        mqtt = f"allow_plaintext = true\n{mqtt}"
    (folder / "clips").mkdir(exist_ok=True)
    text = f"""
[station]
id = "{STATION_ID}"
area = "{AREA}"
clock = "{clock}"

[mqtt]
host = "127.0.0.1"
port = {broker_port}
keepalive_s = 5
heartbeat_s = 5
reconnect_min_s = 0.2
reconnect_max_s = 1.0
{mqtt}

[storage]
path = "station.db"
commit_interval_s = 0.2
{storage}

[security]
{keys_line}
{security}

[audio]
clips_dir = "clips"
amp_warmup_s = 0
amp_release_s = 0.5
repeat_gap_s = 0.2
{audio}
{body}
"""
    path = folder / "gateway.toml"
    path.write_text(text, encoding="utf-8")
    return path


#: What systemd hands a service; a station started from a test or benchmark must not inherit it.
SYSTEMD_ENV = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "JOURNAL_STREAM")


def service_env(folder: Path) -> dict[str, str]:
    """A station's environment as the installed service's: the ALSA config `folder/asound.conf`
    (written by the caller), mock pins, no systemd socket, the working tree on the path."""
    env = {key: value for key, value in os.environ.items() if key not in SYSTEMD_ENV}
    env.update(
        ALSA_CONFIG_PATH=str(folder / "asound.conf"),
        GPIOZERO_PIN_FACTORY="mock",
        PYTHONUNBUFFERED="1",
        PYTHONPATH=str(ROOT),
    )
    return env


class StationProcess:
    """`python -m gateway run -c CONFIG` in a subprocess, with its output kept in a log file.

    Without `env` it inherits this process's environment less systemd's variables; a given
    `env` is used as it is (a test may hand it a NOTIFY_SOCKET of its own).
    """

    def __init__(
        self,
        config: Path,
        env: dict[str, str] | None = None,
        module: str = "gateway",
        log_level: str = "debug",
    ) -> None:
        self.config = config
        self.module = module  # or a wrapper of the real CLI that a test provides
        base = (
            env
            if env is not None
            else {key: value for key, value in os.environ.items() if key not in SYSTEMD_ENV}
        )
        self.env = {**base, "GPIOZERO_PIN_FACTORY": "mock", "PYTHONUNBUFFERED": "1"}
        self.log_level = log_level
        self.log_path = config.parent / "station.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def command_line(self) -> list[str]:
        """What `start()` runs."""
        args = ["run", "-c", str(self.config), "--log-level", self.log_level]
        return [sys.executable, "-m", self.module, *args]

    def start_env(self) -> dict[str, str]:
        """The environment of the next start."""
        return self.env

    def start(self) -> Self:
        """Start the process (again), its output appended to the log after a start marker."""
        self.starts += 1
        with self.log_path.open("ab") as log:
            log.write(f"--- start {self.starts} ---\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                self.command_line(),
                cwd=ROOT,
                env=self.start_env(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig: signal.Signals) -> None:
        """Send `sig` if the process is running."""
        if self.proc is not None and self.running():
            self.proc.send_signal(sig)

    def terminate(self, timeout: float = 8.0) -> int:
        """SIGTERM and wait; returns the exit code."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def wait(self, timeout: float) -> int | None:
        """Wait up to `timeout` s for the process to end, SIGKILL it if it has not; its exit code."""
        if self.proc is None:
            return None
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(10)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(5)

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def wait_log(self, text: str, timeout: float = 10.0) -> None:
        wait_until(lambda: text in self.log(), timeout, f"{text!r} in the station log")

    def close(self) -> None:
        if self.running():
            assert self.proc is not None
            self.proc.kill()
            self.proc.wait(5)


class StationThread:
    """`gateway.service.Station` on its own event loop in a thread of the test process.

    For tests and benchmarks that need to reach inside the running service: a
    gpiozero `MockFactory` for the amplifier pin, or the player's `on_first_write`
    hook (`station.parts.player`). Set `ALSA_CONFIG_PATH` (alsa_capture) before `start()`.
    Signal handlers are not installed off the main thread; `stop()` shuts down cleanly.
    """

    def __init__(self, config: Config, *, pin_factory: Any = None) -> None:
        from gateway.service import Station

        self.station = Station(config, pin_factory=pin_factory)
        self.exit_code: int | None = None
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name="station", daemon=True)

    def _main(self) -> None:
        try:
            self.exit_code = asyncio.run(self.station.run())
        except BaseException as exc:  # reported by start()/stop()
            self.error = exc

    def start(self, timeout: float = 15.0) -> Any:
        """Run the station; return it once it is connected to the broker and its audio is ready."""
        self._thread.start()

        def ready() -> bool:
            if self.error is not None:
                raise AssertionError(f"the station failed to start: {self.error!r}")
            station = self.station
            return (
                station.built
                and station.parts.uplink.connected
                and station.parts.queue.wait_ready(0)
            )

        wait_until(ready, timeout, "the in-process station to connect")
        return self.station

    def stop(self, timeout: float = 15.0) -> None:
        """Ask for a clean shutdown and wait for it."""
        self.station.stop()
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise AssertionError(f"the station did not stop within {timeout} s")
        if self.error is not None:
            raise AssertionError(f"the station failed: {self.error!r}")


def wait_until(check: Callable[[], Any], timeout: float, what: str) -> Any:
    """Poll `check` until it returns something truthy; fail the test naming `what`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def payloads(messages: list[Any]) -> list[dict[str, Any]]:
    """Decode the JSON payloads of captured messages."""
    return [json.loads(m.payload) for m in messages]
