"""Plays systemd's side of the sd_notify protocol in tests.

Why this module exists: the service tells systemd READY/WATCHDOG/STATUS/
STOPPING through a datagram socket named by NOTIFY_SOCKET. A test binds such a
socket itself, hands its path to the code (or to a child process) in the
environment, and asserts on the datagrams that arrive, with their arrival
times. Reusable by any test that starts the service (import
``tests.systemd.notify_listener``).
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Notification:
    """One datagram: when it arrived (time.monotonic) and its KEY=VALUE fields."""

    at: float
    fields: dict[str, str]

    @property
    def raw(self) -> str:
        return "\n".join(f"{k}={v}" for k, v in self.fields.items())


def _parse(data: bytes) -> dict[str, str]:
    fields: dict[str, str] = {}
    for line in data.decode().splitlines():
        key, _, value = line.partition("=")
        fields[key] = value
    return fields


class NotifyListener:
    """A bound AF_UNIX datagram socket and a thread that records what arrives.

    ``abstract=True`` binds in the Linux abstract namespace and gives the
    ``@name`` form of NOTIFY_SOCKET, as systemd itself sometimes does.
    """

    def __init__(self, *, abstract: bool = False) -> None:
        # AF_UNIX paths are limited to 108 bytes: a short private folder, not tmp_path.
        self._dir = tempfile.mkdtemp(prefix="cxn-")
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        if abstract:
            name = f"cunxiang-test-{os.getpid()}-{id(self)}"
            self._sock.bind(b"\0" + name.encode())
            self.address = "@" + name
        else:
            path = Path(self._dir) / "notify"
            self._sock.bind(str(path))
            self.address = str(path)
        self._received: list[Notification] = []
        self._cond = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._receive, daemon=True)
        self._thread.start()

    @property
    def env(self) -> dict[str, str]:
        return {"NOTIFY_SOCKET": self.address}

    def _receive(self) -> None:
        self._sock.settimeout(0.05)  # to notice close()
        while not self._closed:
            try:
                data = self._sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            with self._cond:
                self._received.append(Notification(time.monotonic(), _parse(data)))
                self._cond.notify_all()

    def all(self) -> list[Notification]:
        with self._cond:
            return list(self._received)

    def with_key(self, key: str) -> list[Notification]:
        return [n for n in self.all() if key in n.fields]

    def wait_for(self, key: str, value: str | None = None, *, timeout: float = 5.0) -> Notification:
        """The first notification with ``key`` (and ``value``), waiting up to ``timeout``."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for n in self._received:
                    if key in n.fields and (value is None or value in n.fields[key]):
                        return n
                left = deadline - time.monotonic()
                if left <= 0:
                    seen = [n.raw for n in self._received]
                    raise AssertionError(f"no {key}={value or '*'} within {timeout} s; got {seen}")
                self._cond.wait(left)

    def close(self) -> None:
        self._closed = True
        self._thread.join(timeout=2)
        self._sock.close()
        shutil.rmtree(self._dir, ignore_errors=True)
