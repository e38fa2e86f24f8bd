"""A private Mosquitto whose log lines are time-stamped as they are written.

Why this module exists: the fleet's reconnect figure is "connections the broker accepted in its
busiest 100 ms window". Mosquitto stamps its log in whole seconds, so the log is read from a
pipe instead (line-buffered with ``stdbuf -oL``) and each line is stamped with
``time.monotonic()`` when it arrives. Otherwise the broker is set up as docs/testing.md's
private broker: a free loopback port, its own directory, persistence on, no queue limit.
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
from pathlib import Path
from types import TracebackType

HOST = "127.0.0.1"
#: What Mosquitto logs when a client's CONNECT has been accepted.
CONNECTED = "New client connected from "


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


class Broker:
    """One private broker: `start()`, `stop()` (SIGTERM), `restart()`; `lines` with arrival times."""

    def __init__(self, extra_config: tuple[str, ...] = ()) -> None:
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="fleet-broker-"))
        self._extra = extra_config
        self._process: subprocess.Popen[bytes] | None = None
        self._reader: threading.Thread | None = None
        self._lock = threading.Lock()
        self.lines: list[tuple[float, str]] = []  # (time.monotonic() on arrival, log line)

    def _config(self) -> Path:
        lines = [
            f"listener {self.port} {HOST}",
            "allow_anonymous true",
            "persistence true",
            f"persistence_location {self.dir}/",
            "log_dest stdout",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_type information",
            "max_queued_messages 0",
            "max_connections -1",
            *self._extra,
        ]
        if os.geteuid() == 0:
            lines.append("user root")
        path = self.dir / "mosquitto.conf"
        path.write_text("\n".join(lines) + "\n")
        return path

    def start(self, timeout: float = 10.0) -> None:
        """Start the broker and wait until its port answers."""
        if self._process is not None and self._process.poll() is None:
            return
        command = ["mosquitto", "-c", str(self._config())]
        if shutil.which("stdbuf"):
            command = ["stdbuf", "-oL", *command]
        self._process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
        self._reader = threading.Thread(target=self._read, args=(self._process,), daemon=True)
        self._reader.start()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"mosquitto exited at start:\n{self.log()}")
            try:
                socket.create_connection((HOST, self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.01)
        self.stop()
        raise RuntimeError(f"mosquitto did not listen on {self.port} within {timeout} s")

    def _read(self, process: subprocess.Popen[bytes]) -> None:
        assert process.stdout is not None
        for raw in process.stdout:
            now = time.monotonic()
            with self._lock:
                self.lines.append((now, raw.decode(errors="replace").rstrip("\n")))

    def stop(self) -> None:
        """SIGTERM: the broker saves its sessions and exits."""
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
        if self._reader is not None:
            self._reader.join(5)

    def restart(self) -> None:
        """Stop and start again on the same port with the same sessions."""
        self.stop()
        self.start()

    def connected_clients_since(self, t: float) -> list[tuple[float, str]]:
        """(arrival time, client id) of every CONNECT accepted after monotonic time `t`."""
        found = []
        with self._lock:
            for at, line in self.lines:
                if at >= t and CONNECTED in line:
                    client = line.split(" as ", 1)[-1].split(" ", 1)[0]
                    found.append((at, client))
        return found

    def log(self) -> str:
        with self._lock:
            return "\n".join(line for _, line in self.lines[-200:])

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> Broker:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def busiest_window(times: list[float], window_s: float = 0.1) -> int:
    """The most of `times` that fall in any one window of `window_s` seconds."""
    ordered = sorted(times)
    best = start = 0
    for end, t in enumerate(ordered):
        while t - ordered[start] >= window_s:
            start += 1
        best = max(best, end - start + 1)
    return best
