"""A TCP relay between a station and its broker that can lose the link at a chosen moment.

Why this module exists: some of the link's failures happen between two packets: a command
arrives, the station answers, and the connection dies before the answer reaches the broker. A
network namespace can cut a link, but not at that instant. This relay forwards bytes both ways
on 127.0.0.1; `blackhole_after(marker)` makes it, as soon as `marker` passes from the broker to
the station, silently drop everything the station sends from then on (the answer, its PUBACK),
and `cut()` then closes the connections, as a dead mobile link ends. New connections pass
normally.

    with LinkProxy(broker.port) as proxy:      # the station's mqtt.port = proxy.port
        proxy.blackhole_after(b"...")
        ...
        proxy.cut()
"""

from __future__ import annotations

import contextlib
import socket
import threading
from types import TracebackType

from harness.mosquitto import HOST

CHUNK = 65536


class LinkProxy:
    """Relays 127.0.0.1:`port` to the broker's port."""

    def __init__(self, broker_port: int) -> None:
        self.broker_port = broker_port
        self._listener = socket.create_server((HOST, 0))
        self.port = int(self._listener.getsockname()[1])
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._marker: bytes | None = None
        self._tail = b""
        self.blackholed = threading.Event()
        self.dropped_bytes = 0
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def blackhole_after(self, marker: bytes) -> None:
        """Drop what the station sends once `marker` has passed on its way to the station."""
        with self._lock:
            self._marker, self._tail = marker, b""
            self.blackholed.clear()

    def cut(self) -> None:
        """Close every relayed connection now; the blackhole ends with them."""
        with self._lock:
            sockets, self._sockets = self._sockets, []
            self._marker = None
            self.blackholed.clear()
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def close(self) -> None:
        self._closed = True
        self._listener.close()
        self.cut()

    def __enter__(self) -> LinkProxy:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _accept(self) -> None:
        while not self._closed:
            try:
                station, _ = self._listener.accept()
            except OSError:
                return
            try:
                broker = socket.create_connection((HOST, self.broker_port))
            except OSError:
                station.close()
                continue
            with self._lock:
                self._sockets += [station, broker]
            threading.Thread(target=self._relay, args=(broker, station, True), daemon=True).start()
            threading.Thread(target=self._relay, args=(station, broker, False), daemon=True).start()

    def _relay(self, source: socket.socket, sink: socket.socket, downstream: bool) -> None:
        try:
            while True:
                data = source.recv(CHUNK)
                if not data:
                    break
                with self._lock:
                    if downstream and self._marker is not None and not self.blackholed.is_set():
                        window = self._tail + data
                        if self._marker in window:
                            self.blackholed.set()
                        self._tail = window[-len(self._marker) :]
                    drop = not downstream and self.blackholed.is_set()
                    if drop:
                        self.dropped_bytes += len(data)
                if not drop:
                    sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
