"""One connection to the broker: one paho client, driven by one thread of our own.

Why this module exists: a connection must be run somewhere, and nothing of it may outlive it
(docs/storage-and-sync.md, "One client per connection"). The thread runs its own ``select``
loop over paho's external-loop calls (``loop_read``, ``loop_write``, ``loop_misc``); all that
touches the client happens there, and other threads hand it commands (`Link.call`) through a
queue and a wake-up socket pair. A link is never reused, so no state of a dead connection
(paho's resend queue, a half-read packet, a dead thread) can reach the next one. What goes
out is the drain's business (gateway/uplink/drain.py); when to give up is this module's: no
CONNACK within the connect timeout, no PUBACK for the ack timeout while messages are in
flight, paho's keepalive. A link is handed what it needs (`LinkSettings`, the store,
`Answers`, `Delivery`) and reports through ``on_change``; the supervisor
(gateway/uplink/supervisor.py) then reads its public fields.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import select
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTErrorCode
from paho.mqtt.reasoncodes import ReasonCode

from gateway.store.outbox import Store
from gateway.uplink.answers import Answers
from gateway.uplink.delivery import Delivery
from gateway.uplink.drain import Drain
from gateway.uplink.mqtt_client import (
    SESSION_EXPIRY_S,
    BoundedClient,
    connect,
    error_text,
    new_client,
    reason_text,
)
from gateway.uplink.settings import LinkSettings

log = logging.getLogger(__name__)

#: How long the link thread sleeps in select() at most (paho's keepalive and our timeouts are
#: checked at least this often).
POLL_S = 0.5
#: On stop(): keep draining this long, then wait this long for the last PUBACKs, then publish
#: the offline state and wait this long for its PUBACK.
SHUTDOWN_DRAIN_S = 1.5
SHUTDOWN_SETTLE_S = 0.5
SHUTDOWN_OFFLINE_S = 0.5
_SUCCESS = MQTTErrorCode.MQTT_ERR_SUCCESS


@dataclass
class _Shutdown:
    """The steps of a clean stop, run by the link thread."""

    offline: bytes
    drain_until: float
    settle_until: float
    offline_mid: int | None = None
    offline_until: float = 0.0

    def next_deadline(self, now: float) -> float:
        """When the current step ends by itself."""
        if self.offline_mid is not None:
            return self.offline_until
        return self.drain_until if now < self.drain_until else self.settle_until


class Link:
    """One paho client, one connection, one thread. Never reused once it has ended."""

    def __init__(
        self,
        number: int,
        settings: LinkSettings,
        *,
        store: Store,
        answers: Answers,
        delivery: Delivery,
        hello: bytes,
        will: bytes,
        on_change: Callable[[], None],
    ) -> None:
        self.number = number
        self.settings = settings
        self.store = store
        self.answers = answers
        self.delivery = delivery
        self.hello = hello
        self.on_change = on_change
        self.connected = False
        self.ever_connected = False
        self.clean_exit = False
        self.session_present = False
        self.connack = ""
        self.error: str | None = None
        self.refused: str | None = None
        self.connected_at = 0.0
        self.last_loop = self.connect_sent = time.monotonic()
        self.closed = threading.Event()
        self._abort: str | None = None
        self._paho_error: str | None = None
        self._commands: deque[Callable[[], None]] = deque()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._drain: Drain | None = None
        self._shutdown: _Shutdown | None = None
        self.client = self._make_client(will)
        self.thread = threading.Thread(
            target=self._main, name=f"cunxiang-mqtt-{number}", daemon=True
        )

    # --- set-up (caller's thread) -------------------------------------------------------------

    def _make_client(self, will: bytes) -> BoundedClient:
        client = new_client(self.settings, will, self.delivery.oversized)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_message = self._on_message
        client.on_subscribe = self._on_subscribe
        client.on_log = self._on_log
        return client

    def start(self) -> None:
        """Connect and run, in the link's own thread."""
        self.thread.start()

    def call(self, command: Callable[[], None]) -> None:
        """Run `command` in the link thread (thread-safe)."""
        self._commands.append(command)
        self.wake()

    def wake(self) -> None:
        """Make the link thread look for work now (thread-safe, never blocks)."""
        with contextlib.suppress(OSError):
            self._wake_w.send(b"\0")

    def abort(self, reason: str) -> None:
        """End the connection without DISCONNECT (the broker then publishes the Last Will)."""
        if self._abort is None:
            self._abort = reason
        self.wake()

    def publish_state(self, payload: bytes) -> None:
        """Publish the retained state (§3) (thread-safe)."""
        self.call(functools.partial(self._publish_state, payload))

    def shut_down(self, offline: bytes) -> None:
        """Drain briefly, publish the offline state, DISCONNECT (thread-safe)."""
        self.call(functools.partial(self._begin_shutdown, offline))

    # --- the thread ---------------------------------------------------------------------------

    def _main(self) -> None:
        s = self.settings
        try:
            self._drain = Drain(self.store, self.answers, s, self._send)
            connect(self.client, s)
            self.connect_sent = time.monotonic()  # TCP (and TLS) are up, CONNECT is out
            self._loop()
        except Exception as exc:  # the thread must end in order, whatever happened
            self.error = self.error or error_text(exc)
            if not isinstance(exc, OSError | ValueError):
                log.exception("MQTT link %d failed", self.number)
        finally:
            self._finish()

    def _finish(self) -> None:
        self.connected = False
        try:
            sock = self.client.socket()
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.close()
            if self._drain is not None:
                self._drain.close()
            self._wake_r.close()
            self._wake_w.close()
        finally:  # the supervisor waits for this, not for a poll
            self.closed.set()
            self.on_change()

    def _loop(self) -> None:
        client = self.client
        while self._abort is None:
            now = time.monotonic()
            self.last_loop = now
            self._run_commands()
            timeout = POLL_S
            if self.connected and self._abort is None:
                if self._shutdown is not None:
                    if self._shutdown_step(now):
                        return
                    timeout = min(POLL_S, max(0.0, self._shutdown.next_deadline(now) - now))
                else:
                    self._pump()
            self._check_timeouts(now)
            sock = client.socket()
            if self._abort is not None or sock is None:
                break
            pending = client.pending()
            if self._commands or pending:
                timeout = 0.0
            writers = [sock] if client.want_write() else []
            readable, _, _ = select.select([sock, self._wake_r], writers, [], timeout)
            if self._wake_r in readable:
                with contextlib.suppress(OSError):
                    self._wake_r.recv(4096)
            if (sock in readable or pending) and not self._ok(client.loop_read()):
                break
            if client.want_write() and not self._ok(client.loop_write()):
                break
            if not self._ok(client.loop_misc()):
                break
        if self._abort is not None and not self.error:
            self.error = self._abort

    def _ok(self, rc: MQTTErrorCode) -> bool:
        if rc == _SUCCESS:
            return True
        if not self.error:
            detail = f": {self._paho_error}" if self._paho_error else ""
            self.error = f"{mqtt.error_string(rc)}{detail}"
        return False

    def _run_commands(self) -> None:
        while self._commands:
            command = self._commands.popleft()
            command()

    def _check_timeouts(self, now: float) -> None:
        s = self.settings
        if not self.connected:
            if now - self.connect_sent > s.connack_timeout_s:
                self.abort(f"no CONNACK within {s.connack_timeout_s:g} s")
            return
        drain = self._window
        if drain.in_flight and now - drain.last_progress > s.ack_timeout_s:
            self.abort(
                f"no PUBACK for {s.ack_timeout_s:g} s with {drain.in_flight} messages in flight"
            )

    # --- publishing (link thread) -------------------------------------------------------------

    @property
    def _window(self) -> Drain:
        assert self._drain is not None  # made before the connection
        return self._drain

    def _send(self, topic: str, payload: bytes, retain: bool) -> int:
        return self.client.publish(topic, payload, qos=1, retain=retain).mid

    def _publish_state(self, payload: bytes) -> None:
        if self.connected and self._shutdown is None:
            self._window.publish(self.settings.topics.state, payload, None, retain=True)

    def _pump(self) -> bool:
        """Fill the window; True if it is full (more may be waiting), False if all is out."""
        drain = self._window
        drain.responses()
        while drain.room() > 0:
            if self._abort is not None or not drain.next():
                return False
        return True

    def _begin_shutdown(self, offline: bytes) -> None:
        now = time.monotonic()
        self._shutdown = _Shutdown(
            offline, now + SHUTDOWN_DRAIN_S, now + SHUTDOWN_DRAIN_S + SHUTDOWN_SETTLE_S
        )

    def _shutdown_step(self, now: float) -> bool:
        """One step of a clean stop; True when DISCONNECT has been sent."""
        stop, drain = self._shutdown, self._window
        assert stop is not None
        if stop.offline_mid is None:
            if now < stop.drain_until and self._pump():
                return False
            if drain.records_in_flight() and now < stop.settle_until:
                return False
            stop.offline_mid = drain.publish(self.settings.topics.state, stop.offline, None, True)
            stop.offline_until = now + SHUTDOWN_OFFLINE_S
            return False
        if drain.is_in_flight(stop.offline_mid) and now < stop.offline_until:
            return False
        self.client.disconnect()
        if self.client.want_write():
            self.client.loop_write()
        self.clean_exit = True
        return True

    # --- paho callbacks (link thread) ---------------------------------------------------------

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.ConnectFlags,
        reason_code: ReasonCode,
        properties: Any,
    ) -> None:
        if reason_code.is_failure:
            self.refused = reason_text(reason_code)
            self.error = f"the broker refused the connection: {reason_code}"
            self.abort(self.error)
            return
        self._window.start()
        self.session_present = bool(flags.session_present)
        self.connack = reason_text(reason_code)
        expiry = getattr(properties, "SessionExpiryInterval", None)
        if expiry is not None and expiry < SESSION_EXPIRY_S:
            log.warning(
                "the broker keeps this station's session only %d s after a disconnect "
                "(asked for %d s): alerts sent while it is away longer are lost",
                expiry,
                SESSION_EXPIRY_S,
            )
        self.connected = True
        self.ever_connected = True
        self.connected_at = time.monotonic()
        topics = self.settings.topics
        client.subscribe([(topic, 1) for topic in topics.downlink])
        self._window.publish(topics.state, self.hello, None, retain=True)
        self.on_change()

    def _on_disconnect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.DisconnectFlags,
        reason_code: ReasonCode,
        properties: Any,
    ) -> None:
        self.connected = False
        if not self.error and not self.clean_exit:
            detail = f" ({self._paho_error})" if self._paho_error else ""
            self.error = f"disconnected: {reason_text(reason_code)}{detail}"

    def _on_publish(
        self,
        client: mqtt.Client,
        userdata: Any,
        mid: int,
        reason_code: ReasonCode,
        properties: Any,
    ) -> None:
        refused = reason_text(reason_code) if reason_code.is_failure else None
        self._window.acknowledged(mid, refused)

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        ack = functools.partial(self._ack, message.mid, message.qos) if message.qos else None
        self.delivery.received(message.topic, bytes(message.payload), ack)

    def _ack(self, mid: int, qos: int) -> None:
        """Event loop: the service has handled downlink message `mid`; acknowledge it."""
        if not self.closed.is_set():
            self.call(functools.partial(self._send_ack, mid, qos))

    def _send_ack(self, mid: int, qos: int) -> None:
        if self.connected:
            self.client.ack(mid, qos)

    def _on_subscribe(
        self,
        client: mqtt.Client,
        userdata: Any,
        mid: int,
        reason_codes: list[ReasonCode],
        properties: Any,
    ) -> None:
        refused = [
            topic
            for topic, code in zip(self.settings.topics.downlink, reason_codes, strict=False)
            if code.is_failure
        ]
        if refused:
            log.error(
                "the broker refused the subscriptions %s: no alerts will arrive there", refused
            )

    def _on_log(self, client: mqtt.Client, userdata: Any, level: int, text: str) -> None:
        if level == mqtt.MQTT_LOG_ERR:
            self._paho_error = text
        log.debug("paho[%d]: %s", self.number, text)
