"""A private Mosquitto broker for tests, and a subscriber that collects what it sees.

Per docs/testing.md: each broker gets a free 127.0.0.1 port, its own temp config
and data dir, persistence on (so `restart()` keeps sessions and queued QoS 1
messages), `max_queued_messages 0` (no loss to a slow subscriber) and
`user root` when running as root. Optional TLS: pass `cafile`, `certfile`,
`keyfile` (and `require_certificate=True` for client certificates).

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
    ) -> None:
        self.host = HOST
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="mosquitto-"))
        self.config_path = self.dir / "mosquitto.conf"
        self.log_path = self.dir / "mosquitto.log"
        self.tls = certfile is not None
        self._tls_lines = self._tls_config(cafile, certfile, keyfile, require_certificate)
        self._extra = list(extra_config)
        self._process: subprocess.Popen[bytes] | None = None

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

    def _write_config(self) -> None:
        lines = [
            f"listener {self.port} {HOST}",
            "allow_anonymous true",
            "persistence true",
            f"persistence_location {self.dir}/",
            "autosave_interval 1",
            f"log_dest file {self.log_path}",
            "log_type all",
            "max_queued_messages 0",
            *self._tls_lines,
            *self._extra,
        ]
        if os.geteuid() == 0:
            lines.append("user root")
        self.config_path.write_text("\n".join(lines) + "\n")

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> None:
        """Start the broker and wait until its port answers."""
        if self.running:
            return
        self._write_config()
        self._process = subprocess.Popen(
            ["mosquitto", "-c", str(self.config_path)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"mosquitto exited at start; see {self.log_path}")
            try:
                socket.create_connection((HOST, self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.01)
        self.kill()
        raise RuntimeError(f"mosquitto did not listen on {self.port} within {START_TIMEOUT_S} s")

    def _end(self, sig: signal.Signals) -> None:
        if self._process is None:
            return
        if self._process.poll() is None:
            self._process.send_signal(sig)
            self._process.wait(timeout=STOP_TIMEOUT_S)
        self._process = None

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

    def log(self) -> str:
        """The broker's log so far (for assertion messages)."""
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

    Also usable as a plain publisher in tests: `sub.client.publish(...)`.
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
