"""A private Mosquitto broker, and a subscriber that collects what it sees.

Why this module exists: every test and benchmark that talks MQTT needs a broker of its own,
never a shared one. Per docs/testing.md each broker gets a free 127.0.0.1 port, its own temp
config and data dir, persistence on (so `restart()` keeps sessions and queued QoS 1 messages,
saved every second so a SIGKILL loses at most a second), `max_queued_messages 0` (no loss to a
slow subscriber) and `user root` when running as root. Optional TLS: pass `cafile`,
`certfile`, `keyfile` (and `require_certificate=True` for client certificates).

The log goes to a file, every packet in it (`log()` for assertion messages). With
`stamp_log=True` it comes on a pipe instead (line-buffered with ``stdbuf -oL``) and each line
is stamped with ``time.monotonic()`` on arrival, down to the information level: the fleet's
reconnect figure is "connections the broker accepted in its busiest 100 ms window", and
Mosquitto stamps its own log in whole seconds (`connected_clients_since`).

    with Mosquitto() as broker:
        sub = Subscriber(broker.port, ["cx/v1/#"])
        ...
        msg = sub.wait_for(lambda m: m.topic.endswith("/receipt"), timeout=5)
        sub.close()
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

HOST = "127.0.0.1"
START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 10.0
#: What Mosquitto logs when a client's CONNECT has been accepted.
CONNECTED = "New client connected from "
#: The stamped log's levels: enough for connections, not a line per packet.
STAMPED_LOG_TYPES = ("error", "warning", "notice", "information")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


class Mosquitto:
    """One private broker: `start()`, `stop()` (SIGTERM), `kill()` (SIGKILL), `restart()`."""

    def __init__(
        self,
        cafile: Path | None = None,
        certfile: Path | None = None,
        keyfile: Path | None = None,
        require_certificate: bool = False,
        extra_config: Iterable[str] = (),
        *,
        stamp_log: bool = False,
    ) -> None:
        self.host = HOST
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="mosquitto-"))
        self.config_path = self.dir / "mosquitto.conf"
        self.log_path = self.dir / "mosquitto.log"
        self.tls = certfile is not None
        self.stamp_log = stamp_log
        self.lines: list[tuple[float, str]] = []  # stamp_log: (time.monotonic(), log line)
        self._tls_lines = self._tls_config(cafile, certfile, keyfile, require_certificate)
        self._extra = list(extra_config)
        self._process: subprocess.Popen[bytes] | None = None
        self._reader: threading.Thread | None = None
        self._lock = threading.Lock()

    @staticmethod
    def _tls_config(
        cafile: Path | None, certfile: Path | None, keyfile: Path | None, require: bool
    ) -> list[str]:
        if certfile is None:
            return []
        lines = [f"certfile {certfile}", f"keyfile {keyfile}"]
        if cafile is not None:
            lines.append(f"cafile {cafile}")
        if require:
            lines += ["require_certificate true", "use_identity_as_username true"]
        return lines

    def listener_lines(self) -> list[str]:
        """Where the broker listens (a subclass may listen elsewhere)."""
        return [f"listener {self.port} {HOST}"]

    def _write_config(self) -> None:
        if self.stamp_log:
            log = ["log_dest stdout", *(f"log_type {kind}" for kind in STAMPED_LOG_TYPES)]
        else:
            log = [f"log_dest file {self.log_path}", "log_type all"]
        lines = [
            *self.listener_lines(),
            "allow_anonymous true",
            "persistence true",
            f"persistence_location {self.dir}/",
            "autosave_interval 1",
            *log,
            "max_queued_messages 0",
            "max_connections -1",
            *self._tls_lines,
            *self._extra,
        ]
        if os.geteuid() == 0:
            lines.append("user root")
        self.config_path.write_text("\n".join(lines) + "\n")

    def command(self) -> list[str]:
        """The broker's command line (a subclass may run it elsewhere)."""
        command = ["mosquitto", "-c", str(self.config_path)]
        if self.stamp_log and shutil.which("stdbuf"):
            command = ["stdbuf", "-oL", *command]
        return command

    def answers(self) -> bool:
        """True once the broker accepts connections."""
        try:
            socket.create_connection((HOST, self.port), timeout=0.2).close()
        except OSError:
            return False
        return True

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> None:
        """Start the broker and wait until it answers."""
        if self.running:
            return
        self._write_config()
        if self.stamp_log:
            self._process = subprocess.Popen(
                self.command(),
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
            self._reader = threading.Thread(target=self._read, args=(self._process,), daemon=True)
            self._reader.start()
        else:
            with (self.dir / "stdout.log").open("ab") as out:
                self._process = subprocess.Popen(
                    self.command(), stdout=out, stderr=subprocess.STDOUT
                )
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"mosquitto exited at start:\n{self._start_output()}")
            if self.answers():
                return
            time.sleep(0.01)
        self.kill()
        raise RuntimeError(f"mosquitto did not answer within {START_TIMEOUT_S} s")

    def _start_output(self) -> str:
        """What the broker said before it exited at start."""
        early = self.dir / "stdout.log"
        said = early.read_text(errors="replace") if early.exists() else ""
        return (said + self.log())[-3000:]

    def _read(self, process: subprocess.Popen[bytes]) -> None:
        assert process.stdout is not None
        for raw in process.stdout:
            now = time.monotonic()
            with self._lock:
                self.lines.append((now, raw.decode(errors="replace").rstrip("\n")))

    def _end(self, sig: signal.Signals) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(sig)
            try:
                process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
        if self._reader is not None:
            self._reader.join(5)
            self._reader = None

    def stop(self) -> None:
        """SIGTERM: the broker writes its persistence file and exits."""
        self._end(signal.SIGTERM)

    def kill(self) -> None:
        """SIGKILL: a crash; only what autosave wrote survives."""
        self._end(signal.SIGKILL)

    def restart(self) -> None:
        """Stop and start again on the same port with the same data dir."""
        self.stop()
        self.start()

    def connected_clients_since(self, t: float) -> list[tuple[float, str]]:
        """(arrival time, client id) of every CONNECT accepted after monotonic time `t`."""
        if not self.stamp_log:
            raise RuntimeError("connection times need Mosquitto(stamp_log=True)")
        found = []
        with self._lock:
            for at, line in self.lines:
                if at >= t and CONNECTED in line:
                    client = line.split(" as ", 1)[-1].split(" ", 1)[0]
                    found.append((at, client))
        return found

    def log(self) -> str:
        """The broker's log so far (for assertion messages)."""
        if self.stamp_log:
            with self._lock:
                return "\n".join(line for _, line in self.lines[-200:])
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def close(self) -> None:
        """Stop the broker and remove its directory."""
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> Mosquitto:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


@dataclass(frozen=True)
class Message:
    """One message a Subscriber received."""

    topic: str
    payload: bytes
    qos: int
    retain: bool


class Subscriber:
    """A paho client on `port` that subscribes to `topics` (QoS 1) and keeps every message.

    Also usable as a plain publisher: `sub.client.publish(...)`.
    """

    def __init__(
        self,
        port: int,
        topics: Iterable[str],
        host: str = HOST,
        cafile: Path | None = None,
        certfile: Path | None = None,
        keyfile: Path | None = None,
        timeout: float = START_TIMEOUT_S,
    ) -> None:
        """Connect and subscribe within `timeout` s; with `cafile`, over TLS."""
        self.messages: list[Message] = []
        self._cond = threading.Condition()
        self._subscribed = threading.Event()
        self._topics = list(topics)
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=f"test-sub-{uuid.uuid4().hex[:8]}"
        )
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message
        if cafile is not None:
            self.client.tls_set(
                ca_certs=str(cafile),
                certfile=None if certfile is None else str(certfile),
                keyfile=None if keyfile is None else str(keyfile),
            )
        self.client.connect(host, port)
        self.client.loop_start()
        if not self._subscribed.wait(timeout):
            self.close()
            raise TimeoutError(f"could not subscribe to {self._topics} on port {port}")

    def _on_connect(self, client: mqtt.Client, *_: Any) -> None:
        client.subscribe([(topic, 1) for topic in self._topics])

    def _on_subscribe(self, *_: Any) -> None:
        self._subscribed.set()

    def _on_message(self, _client: mqtt.Client, _userdata: Any, msg: mqtt.MQTTMessage) -> None:
        with self._cond:
            self.messages.append(Message(msg.topic, bytes(msg.payload), msg.qos, msg.retain))
            self._cond.notify_all()

    def on(self, topic: str) -> list[Message]:
        """Messages received so far on exactly `topic`."""
        with self._cond:
            return [m for m in self.messages if m.topic == topic]

    def wait_for(self, predicate: Callable[[Message], bool], timeout: float = 5.0) -> Message:
        """The first message matching `predicate`, waiting up to `timeout` s (TimeoutError)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for message in self.messages:
                    if predicate(message):
                        return message
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"no matching message within {timeout} s")
                self._cond.wait(remaining)

    def wait_count(
        self, predicate: Callable[[Message], bool], count: int, timeout: float = 5.0
    ) -> list[Message]:
        """The first `count` messages matching `predicate`, waiting up to `timeout` s."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                found = [m for m in self.messages if predicate(m)]
                if len(found) >= count:
                    return found[:count]
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"{len(found)} of {count} messages within {timeout} s")
                self._cond.wait(remaining)

    def close(self) -> None:
        """Disconnect and stop the network thread."""
        self.client.disconnect()
        self.client.loop_stop()
