"""The uplink to the centre: the outbox drained over MQTT, station state, and the downlink.

Why this module exists: it is the only place that knows MQTT (the one module that imports paho,
as aiomqtt is a thin layer over it). The rest of the station sees "records committed to the
store will reach the centre" and "here is a downlink message". docs/protocol.md §2–§5 is the
contract; this is how it is kept:

* One paho client per connection attempt, run by a thread of our own (`_Link`) with its own
  ``select`` loop over paho's documented external-loop calls (``loop_read``, ``loop_write``,
  ``loop_misc``). Everything that touches the client happens in that thread; the asyncio side
  hands it commands through a queue and a wake-up socket. A client is never reused after its
  connection ends, so no state of a dead connection (paho's own resend queue, a half-read
  packet, a dead thread) can leak into the next one.
* The link thread reads unsent records from the store (`OutboxReader`, its own SQLite
  connection, committed records only), publishes them at QoS 1 in a bounded window
  (``sync.inflight_max`` messages) and marks them sent only in paho's ``on_publish``, i.e. on
  PUBACK. Events and receipts go first, each in its own message; then readings, in seq order,
  in batches of at most ``sync.batch_max`` readings and 256 KiB.
* A supervisor coroutine (`Uplink.run`) starts links, publishes the retained state (§3) on
  connect, on `Uplink.state_changed` and every ``mqtt.heartbeat_s``, and reconnects after a
  back-off with full jitter between ``reconnect_min_s`` and a ceiling that grows 1.5× per
  failed attempt up to ``reconnect_max_s``.
* Nothing is trusted to end by itself: no CONNACK within the connect timeout, no PUBACK for
  the ack timeout while messages are in flight, paho's keepalive, a link thread that died or
  stopped looping — each ends the link, and the next attempt builds a new client.
* Downlink messages (§2) are acknowledged only after `on_downlink` has run in the event loop
  (paho's manual ack), so an alert the service has logged is never lost to a crash in between.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import json
import logging
import random
import select
import socket
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from gateway.config import Config
from gateway.downlink.envelope import max_raw_size
from gateway.downlink.poison import PoisonGuard
from gateway.logs import register_secret
from gateway.store.outbox import OutboxReader, OutboxRecord, Store, now_ms
from gateway.uplink.mqtt_client import BoundedClient

log = logging.getLogger(__name__)

#: Largest telemetry payload (docs/protocol.md §4).
MAX_BATCH_BYTES = 256 * 1024
#: How long the link thread sleeps in select() when there is nothing to do.
POLL_S = 0.5
#: A connection that lasted this long resets the back-off to its start.
STABLE_S = 10.0
#: The back-off ceiling grows by this factor per failed attempt (2.0 would leave a station
#: ~13 s behind a broker that was down for 30 s; 1.5 keeps the median near 7 s).
BACKOFF_GROWTH = 1.5
#: The shortest span over which a fleet's first reconnect attempts are spread.
MIN_SPREAD_S = 2.0
#: On stop(): keep draining this long, then wait this long for the last PUBACKs, then publish
#: the offline state and wait this long for its PUBACK.
SHUTDOWN_DRAIN_S = 1.5
SHUTDOWN_SETTLE_S = 0.5
SHUTDOWN_OFFLINE_S = 0.5
#: Command responses kept until the broker acknowledges them (the newest are kept).
MAX_RESPONSES = 100
#: The poison guard's record, next to the database.
POISON_FILE = "downlink-handling.json"
#: The same connection failure is logged again only after this long (retries go on meanwhile).
REPEAT_LOG_S = 300.0
_SUCCESS = MQTTErrorCode.MQTT_ERR_SUCCESS
#: MQTT 5 Session Expiry Interval asked for in CONNECT: downlink queued for a station that is
#: away for up to a week still reaches it (docs/protocol.md §2).
SESSION_EXPIRY_S = 7 * 86_400
#: Room for the topic, properties and the envelope's own fields above the largest envelope.
PACKET_MARGIN_BYTES = 64 * 1024
#: Linux only; elsewhere acknowledgements keep the kernel's timing.
_TCP_QUICKACK: int | None = getattr(socket, "TCP_QUICKACK", None)


@dataclass(frozen=True)
class Topics:
    """The topics of one station (docs/protocol.md §2)."""

    state: str
    telemetry: str
    event: str
    receipt: str
    cmd_res: str
    downlink: tuple[str, ...]


def max_packet_bytes(max_payload_bytes: int) -> int:
    """The largest MQTT packet the station takes: the envelope of the largest payload + 64 KiB.

    The envelope carries the payload in base64 (docs/protocol.md §6), so it is 4/3 of
    ``security.max_payload_bytes`` plus its own fields; the margin covers topic and properties.
    """
    return max_raw_size(max_payload_bytes) + PACKET_MARGIN_BYTES


def reason_text(code: ReasonCode | int) -> str:
    """A reason code as a technician reads it in the log: its name and number."""
    if isinstance(code, ReasonCode):
        return f"{code} (0x{code.value:02x})"
    return str(code)


def area_path(area: str) -> list[str]:
    """The area codes an alert may address this station by (docs/protocol.md §1)."""
    return [area[:length] for length in (2, 4, 6, 9, 12)]


def topics_for(prefix: str, station_id: str, area: str) -> Topics:
    """All topics of station `station_id` in area `area` under `prefix`."""
    base = f"{prefix}/station/{station_id}"
    downlink = (
        f"{prefix}/alert/all",
        *(f"{prefix}/alert/{code}" for code in area_path(area)),
        f"{base}/alert",
        f"{base}/cmd",
        f"{prefix}/programme/all",
        *(f"{prefix}/programme/{code}" for code in area_path(area)),
        f"{base}/programme",
    )
    return Topics(
        state=f"{base}/state",
        telemetry=f"{base}/telemetry",
        event=f"{base}/event",
        receipt=f"{base}/receipt",
        cmd_res=f"{base}/cmd/res",
        downlink=downlink,
    )


class Backoff:
    """Reconnect delays with full jitter, so a county's stations do not reconnect in lock-step.

    Attempt n waits a uniformly random time between 0 and
    ``min(high, spread * BACKOFF_GROWTH ** n)``, where ``spread`` is
    ``max(2 * low, MIN_SPREAD_S)``: after a broker restart the first attempts of a fleet are
    spread evenly over ``spread`` seconds (no 100 ms window gets more than a twentieth of the
    fleet on average) and the median station is back after about ``low``
    (docs/storage-and-sync.md, "Reconnecting").
    """

    def __init__(self, low: float, high: float, rng: Callable[[], float] = random.random) -> None:
        self.low = low
        self.high = max(low, high)
        self.spread = max(2.0 * low, MIN_SPREAD_S)
        self._rng = rng

    def delay(self, attempt: int) -> float:
        """Seconds to wait before attempt number `attempt` (0 = the first retry)."""
        ceiling = min(self.high, self.spread * BACKOFF_GROWTH ** min(attempt, 64))
        return ceiling * self._rng()


def explain(error: str, tls: bool) -> str:
    """A hint for a technician, from what went wrong with a connection."""
    text = error.lower()
    if "certificate verify failed" in text:
        return (
            " — the broker's certificate is not signed by mqtt.ca_file, or does not name mqtt.host"
        )
    if "alert" in text and ("certificate" in text or "unknown ca" in text):
        return (
            " — the broker refused this station's client certificate "
            "(check mqtt.cert_file and mqtt.key_file, and that the broker trusts their CA)"
        )
    if tls and ("no connack" in text or "eof occurred" in text or "reset by peer" in text):
        return (
            " — the broker ended the TLS session without answering; under TLS 1.3 that is how "
            "it refuses a client certificate: check mqtt.cert_file and mqtt.key_file, and that "
            "the broker trusts their CA"
        )
    if "no connack" in text:
        return " — the broker accepted the TCP connection but never answered"
    if "not authori" in text or "bad user name or password" in text:
        return " — check mqtt.username and mqtt.password_file"
    if "connection refused" in text:
        return " — nothing listens there: the broker is down, or mqtt.host/mqtt.port is wrong"
    return ""


@dataclass
class _Shutdown:
    """The steps of a clean stop, run by the link thread."""

    offline: bytes
    drain_until: float
    settle_until: float
    offline_mid: int | None = None
    offline_until: float = 0.0


_NOT_TRACKED = object()


class _Link:
    """One paho client, one connection, one thread. Never reused once it has ended."""

    def __init__(self, uplink: Uplink, number: int, hello: bytes, will: bytes) -> None:
        self.uplink = uplink
        self.number = number
        self.hello = hello
        self.connected = False
        self.ever_connected = False
        self.clean_exit = False
        self.session_present = False
        self.connack = ""
        self.error: str | None = None
        self.refused: str | None = None
        self.started = time.monotonic()
        self.connected_at = 0.0
        self.last_loop = self.started
        self.connect_sent = self.started
        self.closed = threading.Event()
        self._abort: str | None = None
        self._paho_error: str | None = None
        self._commands: deque[Callable[[], None]] = deque()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._inflight: dict[int, list[tuple[int, int]] | None] = {}
        self._responses_out: set[int] = set()
        self._response_mids: dict[int, int] = {}
        self._last_progress = self.started
        self._ev_cursor = 0
        self._rd_cursor = 0
        self._reader: OutboxReader | None = None
        self._resend: tuple[int, int] | None = None
        self._shutdown: _Shutdown | None = None
        self.client = self._make_client(will)
        self.thread = threading.Thread(
            target=self._main, name=f"cunxiang-mqtt-{number}", daemon=True
        )

    # --- set-up (caller's thread) -------------------------------------------------------------

    def _make_client(self, will: bytes) -> mqtt.Client:
        up = self.uplink
        session: dict[str, Any] = {} if up.mqtt5 else {"clean_session": False}
        client = BoundedClient(
            CallbackAPIVersion.VERSION2,
            client_id=f"cx-{up.config.station.id}",
            protocol=MQTTProtocolVersion.MQTTv5 if up.mqtt5 else MQTTProtocolVersion.MQTTv311,
            manual_ack=True,
            limit=up.max_packet_bytes,
            on_oversized=up._oversized,
            **session,
        )
        client.suppress_exceptions = False
        client.max_inflight_messages_set(0)  # the window is ours (sync.inflight_max)
        client.max_queued_messages_set(0)
        client.connect_timeout = up.connect_timeout_s
        client.will_set(up.topics.state, will, qos=1, retain=True)
        if up.credentials is not None:
            client.username_pw_set(*up.credentials)
        if up.tls_context is not None:
            client.tls_set_context(up.tls_context)
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

    def begin_shutdown(self, offline: bytes) -> None:
        """Link thread: drain briefly, publish the offline state, DISCONNECT."""
        now = time.monotonic()
        self._shutdown = _Shutdown(
            offline, now + SHUTDOWN_DRAIN_S, now + SHUTDOWN_DRAIN_S + SHUTDOWN_SETTLE_S
        )

    # --- the thread ---------------------------------------------------------------------------

    def _main(self) -> None:
        try:
            self._reader = self.uplink.store.reader()
            up = self.uplink
            if up.mqtt5:
                properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
                properties.SessionExpiryInterval = SESSION_EXPIRY_S
                properties.MaximumPacketSize = up.max_packet_bytes
                self.client.connect(
                    up.host,
                    up.port,
                    keepalive=up.keepalive_s,
                    clean_start=False,
                    properties=properties,
                )
            else:
                self.client.connect(up.host, up.port, keepalive=up.keepalive_s)
            self.connect_sent = time.monotonic()  # TCP (and TLS) are up, CONNECT is out
            self._loop()
        except Exception as exc:  # the thread must end in order, whatever happened
            self.error = self.error or _describe(exc)
            if not isinstance(exc, OSError | ValueError):
                log.exception("MQTT link %d failed", self.number)
        finally:
            self._finish()

    def _finish(self) -> None:
        self.connected = False
        sock = self.client.socket()
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.close()
        if self._resend is not None:
            self.uplink._resend_queue.appendleft(self._resend)
        if self._reader is not None:
            self._reader.close()
        self._wake_r.close()
        self._wake_w.close()
        self.closed.set()
        self.uplink._link_changed()

    def _loop(self) -> None:
        client = self.client
        while self._abort is None:
            now = time.monotonic()
            self.last_loop = now
            self._run_commands()
            busy = False
            if self.connected and self._abort is None:
                if self._shutdown is not None:
                    if self._shutdown_step(now):
                        return
                    busy = True
                else:
                    self._pump()
            self._check_timeouts(now)
            sock = client.socket()
            if self._abort is not None or sock is None:
                break
            pending = _pending(sock)
            timeout = 0.0 if (self._commands or pending) else (0.02 if busy else POLL_S)
            writers = [sock] if client.want_write() else []
            readable, _, _ = select.select([sock, self._wake_r], writers, [], timeout)
            if self._wake_r in readable:
                with contextlib.suppress(OSError):
                    self._wake_r.recv(4096)
            if sock in readable or pending:
                if not self._ok(client.loop_read()):
                    break
                _ack_at_once(sock)
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
        up = self.uplink
        if not self.connected:
            if now - self.connect_sent > up.connack_timeout_s:
                self.abort(f"no CONNACK within {up.connack_timeout_s:g} s")
        elif self._inflight and now - self._last_progress > up.ack_timeout_s:
            self.abort(
                f"no PUBACK for {up.ack_timeout_s:g} s with {len(self._inflight)} messages in flight"
            )

    # --- publishing (link thread) -------------------------------------------------------------

    def _publish(
        self, topic: str, payload: bytes, runs: list[tuple[int, int]] | None, retain: bool = False
    ) -> int:
        if not self._inflight:
            self._last_progress = time.monotonic()
        info = self.client.publish(topic, payload, qos=1, retain=retain)
        self._inflight[info.mid] = runs
        return info.mid

    def publish_state(self, payload: bytes) -> None:
        """Link thread: publish the retained state (§3)."""
        if self.connected and self._shutdown is None:
            self._publish(self.uplink.topics.state, payload, None, retain=True)

    def _pump(self) -> bool:
        """Fill the window; True if it is full (more may be waiting), False if all is out."""
        self._send_responses()
        limit = self.uplink.inflight_max
        while len(self._inflight) < limit:
            if self._abort is not None:
                return False
            if self._send_records(limit - len(self._inflight)):
                continue
            if self._send_resend():
                continue
            if not self._send_readings():
                return False
        return True

    def _send_responses(self) -> None:
        """Publish the command responses this link has not published yet (before records)."""
        for token, payload in self.uplink._unsent_responses(self._responses_out):
            mid = self._publish(self.uplink.topics.cmd_res, payload, None)
            self._response_mids[mid] = token
            self._responses_out.add(token)

    def _send_records(self, room: int) -> bool:
        assert self._reader is not None
        store = self.uplink.store
        topics = self.uplink.topics
        while self._ev_cursor < store.last_record_seq:
            records, last = self._reader.unsent_records(self._ev_cursor, room)
            if last == self._ev_cursor:
                return False
            self._ev_cursor = last
            for rec in records:
                topic = topics.event if rec.kind == "event" else topics.receipt
                self._publish(topic, rec.json.encode(), [(rec.seq, rec.seq)])
            if records:
                return True
        return False

    def _send_readings(self) -> bool:
        assert self._reader is not None
        up = self.uplink
        batch = self._reader.unsent_readings(self._rd_cursor, up.batch_max, up.max_fragment_bytes)
        if batch is None:
            return False
        self._rd_cursor = batch.cursor
        payload = up.telemetry_prefix + ",".join(batch.fragments) + "]}"
        self._publish(up.topics.telemetry, payload.encode(), batch.runs)
        return True

    def _send_resend(self) -> bool:
        """Publish again records the centre asked for (§8 resend); they are not re-marked."""
        assert self._reader is not None
        if self._resend is None:
            try:
                self._resend = self.uplink._resend_queue.popleft()
            except IndexError:
                return False
        start, last = self._resend
        records = self._reader.records(start, last, self.uplink.batch_max)
        self._resend = (records[-1].seq + 1, last) if records and records[-1].seq < last else None
        readings: list[OutboxRecord] = []
        for rec in records:
            if rec.kind == "reading":
                readings.append(rec)
            else:
                topic = (
                    self.uplink.topics.event if rec.kind == "event" else self.uplink.topics.receipt
                )
                self._publish(topic, rec.json.encode(), None)
        for payload in self.uplink.telemetry_payloads([rec.json for rec in readings]):
            self._publish(self.uplink.topics.telemetry, payload, None)
        return True

    def _shutdown_step(self, now: float) -> bool:
        """One step of a clean stop; True when DISCONNECT has been sent."""
        stop = self._shutdown
        assert stop is not None
        if stop.offline_mid is None:
            if now < stop.drain_until and self._pump():
                return False
            if any(runs for runs in self._inflight.values()) and now < stop.settle_until:
                return False
            stop.offline_mid = self._publish(self.uplink.topics.state, stop.offline, None, True)
            stop.offline_until = now + SHUTDOWN_OFFLINE_S
            return False
        if stop.offline_mid in self._inflight and now < stop.offline_until:
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
        store = self.uplink.store
        span = store.unsent_span(0)
        start = span[0] - 1 if span else store.last_seq
        self._ev_cursor = self._rd_cursor = start
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
        self._last_progress = self.connected_at
        client.subscribe([(topic, 1) for topic in self.uplink.topics.downlink])
        self._publish(self.uplink.topics.state, self.hello, None, retain=True)
        self.uplink._link_changed()

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
        runs = self._inflight.pop(mid, _NOT_TRACKED)
        if runs is _NOT_TRACKED:
            return
        self._last_progress = time.monotonic()
        response = self._response_mids.pop(mid, None)
        if response is not None:  # answered, even by a refusal: sending it again cannot help
            self.uplink._response_acknowledged(response)
        if reason_code.is_failure:
            log.warning("the broker did not accept message %d: %s", mid, reason_text(reason_code))
            return
        if runs:
            assert isinstance(runs, list)
            self.uplink._acknowledged(runs)

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        self.uplink._received(self, message.topic, bytes(message.payload), message.mid, message.qos)

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
            for topic, code in zip(self.uplink.topics.downlink, reason_codes, strict=False)
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

    def ack(self, mid: int, qos: int) -> None:
        """Link thread: acknowledge a downlink message the service has handled."""
        if self.connected:
            self.client.ack(mid, qos)


def _ack_at_once(sock: Any) -> None:
    """Let the kernel acknowledge what the broker sent now, not up to 40 ms later.

    Mosquitto leaves Nagle's algorithm on by default (``set_tcp_nodelay false``): it holds a
    small packet for the station (an alert!) while its previous small packet (a PUBACK) is
    unacknowledged, and Linux delays that acknowledgement. Measured with
    benchmarks/alert_latency.py, this cut alert publish → first sound from 25 ms to 3 ms (p50).
    Linux drops out of quick-ack mode by itself, so it is set again after every read.
    """
    if _TCP_QUICKACK is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, _TCP_QUICKACK, 1)


def _pending(sock: Any) -> int:
    """Bytes already decrypted and buffered in an SSL socket (select() cannot see them)."""
    pending = getattr(sock, "pending", None)
    return int(pending()) if pending is not None else 0


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError | socket.timeout):
        return f"timed out ({exc})" if str(exc) else "timed out"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


class Uplink:
    """Drains the store to the centre's broker and hands downlink messages to the service."""

    def __init__(
        self,
        config: Config,
        store: Store,
        *,
        on_downlink: Callable[[str, bytes], None],
        state: Callable[[], dict[str, object]],
        on_rejected: Callable[[str, str, str, str], None] | None = None,
        loop: asyncio.AbstractEventLoop | None = None,
        connack_timeout_s: float | None = None,
        ack_timeout_s: float | None = None,
        rng: Callable[[], float] = random.random,
    ) -> None:
        mq = config.mqtt
        self.config = config
        self.store = store
        self.host = mq.host
        self.port = mq.port
        self.keepalive_s = mq.keepalive_s
        self.mqtt5 = mq.protocol == "5"
        self.max_packet_bytes = max_packet_bytes(config.security.max_payload_bytes)
        self.topics = topics_for(mq.topic_prefix, config.station.id, config.station.area)
        self.inflight_max = config.sync.inflight_max
        self.batch_max = config.sync.batch_max
        self.telemetry_prefix = f'{{"station":{json.dumps(config.station.id)},"readings":['
        self.max_fragment_bytes = MAX_BATCH_BYTES - len(self.telemetry_prefix) - len("]}")
        self.connect_timeout_s = min(10.0, float(mq.keepalive_s))
        self.connack_timeout_s = connack_timeout_s or max(10.0, float(mq.keepalive_s))
        self.ack_timeout_s = ack_timeout_s or max(30.0, 2.0 * mq.keepalive_s)
        self.hung_s = 2 * self.connect_timeout_s + self.connack_timeout_s + 30.0
        self.credentials: tuple[str, str | None] | None = None
        self.tls_context: ssl.SSLContext | None = None
        self._on_downlink = on_downlink
        self._on_rejected = on_rejected
        self._poison = PoisonGuard(store.path.parent / POISON_FILE)
        self._state = state
        self._loop = loop
        self._backoff = Backoff(mq.reconnect_min_s, mq.reconnect_max_s, rng)
        self._link: _Link | None = None
        self._links = 0
        self._resend_queue: deque[tuple[int, int]] = deque()
        self._responses: dict[int, bytes] = {}
        self._responses_lock = threading.Lock()
        self._response_tokens = 0
        self._stop_requested = False
        self._changed: asyncio.Event | None = None
        self._finished: asyncio.Event | None = None
        self._last_state = 0.0
        self._announced: _Link | None = None
        self._last_failure: str | None = None
        self._last_failure_logged = 0.0
        store.add_listener(self.wake)

    # --- public API ---------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        """True while a connection to the broker is up (CONNACK received)."""
        link = self._link
        return link is not None and link.connected and not link.closed.is_set()

    def wake(self) -> None:
        """New records are committed: send them now (thread-safe)."""
        link = self._link
        if link is not None:
            link.wake()

    def state_changed(self) -> None:
        """A state field changed: publish the retained state now (event-loop thread)."""
        link = self._link
        if link is not None and link.connected:
            self._publish_state(link)

    def resend(self, from_seq: int, to_seq: int) -> tuple[int, int] | None:
        """Queue the stored records in from_seq..to_seq for publishing again (§8 ``resend``).

        Returns the first and last seq still stored in the range, or None if none is.
        """
        span = self.store.stored_range(from_seq, to_seq)
        if span is not None:
            self._resend_queue.append(span)
            self.wake()
        return span

    def publish_response(self, response: dict[str, object]) -> None:
        """Publish a command response (§8) on ``…/cmd/res`` (event-loop thread).

        A response is kept in memory (the newest `MAX_RESPONSES`) until the broker has
        acknowledged it: one made while the broker is away, or published on a link that died
        before its PUBACK, goes out again on the next connection.
        """
        payload = json.dumps(response, ensure_ascii=False, separators=(",", ":"), default=str)
        with self._responses_lock:
            self._response_tokens += 1
            self._responses[self._response_tokens] = payload.encode()
            while len(self._responses) > MAX_RESPONSES:
                dropped = next(iter(self._responses))
                del self._responses[dropped]
                log.warning("command response dropped: more than %d unsent", MAX_RESPONSES)
        self.wake()

    def _unsent_responses(self, out: set[int]) -> list[tuple[int, bytes]]:
        """Link thread: responses not yet published on the link that has published `out`."""
        with self._responses_lock:
            return [(token, data) for token, data in self._responses.items() if token not in out]

    def _response_acknowledged(self, token: int) -> None:
        with self._responses_lock:
            self._responses.pop(token, None)

    async def run(self) -> None:
        """Connect, drain, publish state and reconnect, until `stop`."""
        self._loop = self._loop or asyncio.get_running_loop()
        self._changed = asyncio.Event()
        self._finished = asyncio.Event()
        attempt = 0
        try:
            while not self._stop_requested:
                link = self._start_link()
                uptime = await self._supervise(link) if link is not None else 0.0
                if self._stop_requested:
                    break
                attempt = 0 if uptime >= STABLE_S else attempt + 1
                delay = self._backoff.delay(attempt)
                self._report_end(link, delay)
                await self._sleep(delay)
        finally:
            self._finished.set()

    async def stop(self) -> None:
        """Drain what the broker acknowledges within ~2 s, publish offline state, disconnect."""
        self._stop_requested = True
        self._kick()
        link = self._link
        if link is not None and not link.closed.is_set():
            if link.connected:
                offline = self._state_payload(online=False)
                link.call(functools.partial(link.begin_shutdown, offline))
                limit = SHUTDOWN_DRAIN_S + SHUTDOWN_SETTLE_S + SHUTDOWN_OFFLINE_S + 0.3
            else:
                link.abort("stopping")
                limit = 0.5  # longer only while blocked in a TCP connect; then it is left behind
            await self._wait_closed(link, limit)
            if not link.closed.is_set():
                link.abort("stopping")
        if self._finished is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._finished.wait(), 0.5)
        self.store.remove_listener(self.wake)
        self._poison.close()
        self.store.set_status(broker_connected=False, disconnected_ts=now_ms())

    # --- supervision (event-loop thread) ------------------------------------------------------

    def _start_link(self) -> _Link | None:
        try:
            self._prepare_security()
            hello = self._state_payload(online=True)
            will = self._state_payload(online=False)
        except (OSError, ssl.SSLError, ValueError) as exc:
            log.error("cannot prepare the MQTT connection: %s", exc)
            return None
        self._links += 1
        link = _Link(self, self._links, hello, will)
        self._link = link
        link.start()
        return link

    def _prepare_security(self) -> None:
        """Read the password file and TLS files afresh for each connection (they may change)."""
        mq = self.config.mqtt
        password = None
        if mq.password_file is not None:
            password = Path(mq.password_file).read_text(encoding="utf-8").strip("\r\n")
            register_secret(password)
        if mq.username or password is not None:
            self.credentials = (mq.username, password)
        if mq.tls:
            context = ssl.create_default_context(
                ssl.Purpose.SERVER_AUTH, cafile=str(mq.ca_file) if mq.ca_file else None
            )
            if mq.cert_file is not None:
                key = str(mq.key_file) if mq.key_file is not None else None
                context.load_cert_chain(str(mq.cert_file), key)
            self.tls_context = context

    async def _supervise(self, link: _Link) -> float:
        assert self._changed is not None
        while not link.closed.is_set():
            self._changed.clear()
            now = time.monotonic()
            if link.connected:
                if self._announced is not link:
                    self._announce(link)
                elif now - self._last_state >= self.config.mqtt.heartbeat_s:
                    self._publish_state(link)
            if now - link.last_loop > self.hung_s or not link.thread.is_alive():
                log.error(
                    "the MQTT network thread has stopped working (%.0f s without a loop); "
                    "building a new client",
                    now - link.last_loop,
                )
                link.error = link.error or "network thread stuck"
                link.abort("network thread stuck")
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), 1.0)
        if self._announced is link:
            self.store.set_status(
                broker_connected=False, disconnected_ts=now_ms(), last_error=link.error
            )
        return time.monotonic() - link.connected_at if link.ever_connected else 0.0

    def _announce(self, link: _Link) -> None:
        self._announced = link
        self._last_state = time.monotonic()
        log.info(
            "connected to the broker at %s:%d as cx-%s over MQTT %s (session %s; CONNACK %s)",
            self.host,
            self.port,
            self.config.station.id,
            self.config.mqtt.protocol,
            "resumed" if link.session_present else "new",
            link.connack,
        )
        self.store.set_status(
            broker_connected=True,
            broker=f"{self.host}:{self.port}",
            connected_ts=now_ms(),
            last_error=None,
        )

    def _report_end(self, link: _Link | None, delay: float) -> None:
        """Say why the connection ended; the same reason again is logged at most every 5 min."""
        if link is None:
            log.warning("retrying in %.1f s", delay)
            return
        where = f"{self.host}:{self.port}"
        reason = link.error or "connection closed"
        hint = explain(reason, self.tls_context is not None)
        self.store.set_status(broker_connected=False, last_error=f"{reason}{hint}")
        now = time.monotonic()
        repeated = link.refused or reason
        if repeated == self._last_failure and now - self._last_failure_logged < REPEAT_LOG_S:
            log.debug("still cannot connect to %s: %s; retrying in %.1f s", where, reason, delay)
            return
        self._last_failure, self._last_failure_logged = repeated, now
        if link.refused is not None:
            log.error("the broker at %s refused the connection: %s%s", where, link.refused, hint)
        elif not link.ever_connected:
            log.warning(
                "cannot connect to the broker at %s: %s%s; retrying in %.1f s",
                where, reason, hint, delay,
            )  # fmt: skip
        else:
            self._last_failure = None
            log.warning(
                "lost the broker at %s: %s%s; reconnecting in %.1f s", where, reason, hint, delay
            )

    async def _sleep(self, delay: float) -> None:
        assert self._changed is not None
        deadline = time.monotonic() + delay
        while not self._stop_requested:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), remaining)

    async def _wait_closed(self, link: _Link, limit: float) -> None:
        deadline = time.monotonic() + limit
        while not link.closed.is_set() and time.monotonic() < deadline:
            await asyncio.sleep(0.02)

    def _kick(self) -> None:
        if self._changed is not None:
            self._changed.set()

    def _link_changed(self) -> None:
        """Any thread: a link connected or ended; let the supervisor look."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._kick)

    def _publish_state(self, link: _Link) -> None:
        self._last_state = time.monotonic()
        payload = self._state_payload(online=True)
        link.call(functools.partial(link.publish_state, payload))

    def _state_payload(self, *, online: bool) -> bytes:
        """The §3 state object: the service's fields plus the backlog from the store."""
        try:
            fields = dict(self._state())
        except Exception:
            log.exception("the state callback failed; publishing the store's fields only")
            fields = {}
        backlog, oldest = self.store.backlog()
        doc: dict[str, object] = {"online": online, "ts": now_ms()}
        doc.update(fields)
        doc["online"] = online
        doc.setdefault("area", self.config.station.area)
        doc["backlog"] = backlog
        doc["oldest_unsent_ts"] = oldest
        return json.dumps(doc, ensure_ascii=False, separators=(",", ":"), default=str).encode()

    def telemetry_payloads(self, fragments: list[str]) -> list[bytes]:
        """Reading objects as telemetry messages of at most batch_max readings and 256 KiB."""
        payloads: list[bytes] = []
        chunk: list[str] = []
        size = 0
        for fragment in fragments:
            if chunk and (
                len(chunk) >= self.batch_max or size + len(fragment) + 1 > self.max_fragment_bytes
            ):
                payloads.append((self.telemetry_prefix + ",".join(chunk) + "]}").encode())
                chunk, size = [], 0
            chunk.append(fragment)
            size += len(fragment) + 1
        if chunk:
            payloads.append((self.telemetry_prefix + ",".join(chunk) + "]}").encode())
        return payloads

    # --- from the link thread -----------------------------------------------------------------

    def _acknowledged(self, runs: list[tuple[int, int]]) -> None:
        self.store.mark_sent(runs)
        self.store.set_status(last_publish_ts=now_ms())

    def _oversized(self, topic: str, size: int, digest: str) -> None:
        """Link thread: a message over the packet limit was acknowledged and thrown away."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        detail = f"{size} bytes, over the limit of {self.max_packet_bytes}; acknowledged, dropped"
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(self._reject, "too_large", topic, digest, detail)

    def _reject(self, reason: str, topic: str, digest: str, detail: str) -> None:
        """Event loop: report a downlink message intake never saw (`downlink_rejected`)."""
        if self._on_rejected is None:
            log.warning(
                "downlink rejected (%s) on %s, sha256 %s: %s", reason, topic, digest, detail
            )
            return
        try:
            self._on_rejected(reason, topic, digest, detail)
        except Exception:
            log.exception("reporting a rejected downlink message failed")

    def _received(self, link: _Link, topic: str, payload: bytes, mid: int, qos: int) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(self._deliver, link, topic, payload, mid, qos)

    def _deliver(self, link: _Link, topic: str, payload: bytes, mid: int, qos: int) -> None:
        """Event loop: hand a downlink message to the service, then acknowledge it.

        The poison guard (gateway/downlink/poison.py) records the message first; one whose handling
        has already been cut short twice by the death of the process is dropped instead.
        """
        digest = hashlib.sha256(payload).hexdigest()
        if self._poison.is_poison(digest):
            self._reject(
                "poison",
                topic,
                digest,
                "this message was being handled when the service died twice; dropped",
            )
        else:
            self._poison.begin(digest)
            try:
                self._on_downlink(topic, payload)
            except Exception:
                log.exception("handling a downlink message on %s failed", topic)
        self._poison.finish(digest)
        if qos > 0 and not link.closed.is_set():
            link.call(functools.partial(link.ack, mid, qos))
