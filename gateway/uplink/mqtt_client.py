"""The paho client of one connection: built as the settings say, bounded in what it holds.

Why this module exists: it is where paho is configured — protocol version, persistent
session, manual acks, the Will, credentials and TLS (docs/protocol.md §2) — and where its
read path is bounded. paho reads a whole packet into memory before anyone can look at it,
and it asks the socket for the whole remaining length at once. Under MQTT 5 the station
declares a Maximum Packet Size in CONNECT and a conforming broker never sends more
(docs/protocol.md §2), but under MQTT 3.1.1 nothing stops a broker from delivering a 60 MiB
publish, which cost a station 184 MB and was redelivered on every reconnect. `BoundedClient`
looks at each PUBLISH's fixed header: one longer than `limit` is read in small chunks and
thrown away (only its topic, packet id and the SHA-256 of its payload are kept), acknowledged
so the broker does not deliver it again, and reported through `on_oversized`. Every socket
read is also capped at `READ_CHUNK` bytes, so even an accepted message is never read with a
buffer of its full size.

It relies on paho's private read path (``_packet_read``, ``_sock_recv``, ``_in_packet``,
``_send_puback``), stable through paho-mqtt 2.x; tests/e2e/test_hostile_link.py sends a real
40 MiB message through a real broker under both protocol versions, so a paho release that
changes this path fails there, not in a village.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import socket
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from gateway.uplink.settings import LinkSettings

log = logging.getLogger(__name__)

#: The most bytes asked of the socket in one read.
READ_CHUNK = 64 * 1024
#: Reads of a discarded message per call before other work gets a turn.
DISCARD_READS_PER_CALL = 64
#: MQTT 5 Session Expiry Interval asked for in CONNECT: downlink queued for a station that is
#: away for up to a week still reaches it (docs/protocol.md §2).
SESSION_EXPIRY_S = 7 * 86_400
#: Linux only; elsewhere acknowledgements keep the kernel's timing.
_TCP_QUICKACK: int | None = getattr(socket, "TCP_QUICKACK", None)
#: MQTT control packet type PUBLISH (high nibble of the first byte).
_PUBLISH = 0x30

#: on_oversized(topic, size in bytes, hex SHA-256 of the application payload)
OversizedHandler = Callable[[str, int, str], None]


class _Discard:
    """What is known of a PUBLISH being thrown away while its bytes stream past."""

    def __init__(self, command: int, remaining: int, mqtt5: bool) -> None:
        self.qos = (command >> 1) & 0x03
        self.remaining = remaining
        self.size = remaining
        self.mqtt5 = mqtt5
        self.head = bytearray()  # topic length, topic, packet id, properties length
        self.skip = 0  # property bytes still to skip
        self.topic = ""
        self.mid = 0
        self.header_done = False
        self.sha = hashlib.sha256()

    def feed(self, data: bytes) -> None:
        self.remaining -= len(data)
        view = memoryview(data)
        if not self.header_done:
            need = 65535 + 2 + 2 + 4  # longest topic, its length, packet id, properties length
            take = min(len(view), need - len(self.head))
            self.head += view[:take]
            view = view[take:]
            parsed = self._parse_head()
            if parsed is None and len(self.head) < need and self.remaining > 0:
                return
            rest = bytes(self.head[parsed or len(self.head) :])
            self.head = bytearray()
            self.header_done = True
            view = memoryview(rest + bytes(view))
        if self.skip:
            step = min(self.skip, len(view))
            self.skip -= step
            view = view[step:]
        self.sha.update(view)

    def _parse_head(self) -> int | None:
        """Bytes of variable header once topic, packet id and properties length are in."""
        head = self.head
        if len(head) < 2:
            return None
        length = int.from_bytes(head[:2], "big")
        pos = 2 + length
        if self.qos:
            pos += 2
        if len(head) < pos:
            return None
        self.topic = bytes(head[2 : 2 + length]).decode("utf-8", "replace")
        if self.qos:
            self.mid = int.from_bytes(head[pos - 2 : pos], "big")
        if not self.mqtt5:
            return pos
        props, mult = 0, 1
        for index in range(4):
            if len(head) <= pos + index:
                return None
            byte = head[pos + index]
            props += (byte & 0x7F) * mult
            mult *= 128
            if not byte & 0x80:
                self.skip = props
                return pos + index + 1
        return pos + 4  # malformed; the rest is hashed as payload


class BoundedClient(mqtt.Client):
    """paho's Client with an upper bound on the PUBLISH packets it will hold in memory."""

    def __init__(self, *args: Any, limit: int, on_oversized: OversizedHandler, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.limit = limit
        self.on_oversized = on_oversized
        self._discard: _Discard | None = None

    def pending(self) -> int:
        """Bytes already decrypted and buffered in the TLS socket (select() cannot see them)."""
        pending = getattr(self.socket(), "pending", None)
        return int(pending()) if pending is not None else 0

    def loop_read(self, max_packets: int = 1) -> MQTTErrorCode:
        """paho's loop_read, then let the kernel acknowledge what the broker sent at once.

        Mosquitto leaves Nagle's algorithm on by default (``set_tcp_nodelay false``): it holds
        a small packet for the station (an alert!) while its previous small packet (a PUBACK)
        is unacknowledged, and Linux delays that acknowledgement. Measured with
        benchmarks/alert_latency.py, quick-ack cut alert publish → first sound from 25 ms to
        3 ms (p50). Linux drops out of quick-ack mode by itself, so it is set after every read.
        """
        rc = super().loop_read(max_packets)
        sock: Any = self.socket()  # a socket, or an ssl.SSLSocket
        if rc == MQTTErrorCode.MQTT_ERR_SUCCESS and sock is not None and _TCP_QUICKACK is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, _TCP_QUICKACK, 1)
        return rc

    def _too_large(self) -> bool:
        packet = self._in_packet
        return bool(
            packet["have_remaining"]
            and (packet["command"] & 0xF0) == _PUBLISH
            and packet["remaining_length"] > self.limit
        )

    def _sock_recv(self, bufsize: int) -> bytes:
        if self._discard is None and self._too_large():
            # paho has just read the fixed header of a packet over the limit: stop it before it
            # reads the body; _packet_read takes over.
            raise BlockingIOError
        return super()._sock_recv(min(bufsize, READ_CHUNK))

    def _packet_read(self) -> MQTTErrorCode:
        if self._discard is None:
            rc = super()._packet_read()
            if not self._too_large():
                return rc
            packet = self._in_packet
            self._discard = _Discard(
                packet["command"],
                packet["remaining_length"],
                self.protocol == mqtt.MQTTv5,
            )
        return self._discard_some()

    def _discard_some(self) -> MQTTErrorCode:
        discard = self._discard
        assert discard is not None
        for _ in range(DISCARD_READS_PER_CALL):
            if discard.remaining <= 0:
                break
            try:
                data = super()._sock_recv(min(discard.remaining, READ_CHUNK))
            except BlockingIOError:
                return MQTTErrorCode.MQTT_ERR_AGAIN
            except OSError:
                return MQTTErrorCode.MQTT_ERR_CONN_LOST
            if not data:
                return MQTTErrorCode.MQTT_ERR_CONN_LOST
            discard.feed(data)
        if discard.remaining > 0:
            return MQTTErrorCode.MQTT_ERR_AGAIN
        self._discard = None
        self._in_packet = {
            "command": 0,
            "have_remaining": 0,
            "remaining_count": [],
            "remaining_mult": 1,
            "remaining_length": 0,
            "packet": bytearray(b""),
            "to_process": 0,
            "pos": 0,
        }
        rc = MQTTErrorCode.MQTT_ERR_SUCCESS
        if discard.qos == 1:
            rc = self._send_puback(discard.mid)
        elif discard.qos == 2:
            # Never subscribed above QoS 1; a broker that sends QoS 2 anyway gets no PUBREC,
            # so the exchange stays open rather than the message being taken.
            log.warning("a QoS 2 message over the size limit on %s was dropped", discard.topic)
        try:
            self.on_oversized(discard.topic, discard.size, discard.sha.hexdigest())
        except Exception:
            log.exception("reporting an oversized message failed")
        return rc


def new_client(
    settings: LinkSettings, will: bytes, on_oversized: OversizedHandler
) -> BoundedClient:
    """A client for one connection attempt; the caller sets the callbacks and runs its loop."""
    session: dict[str, Any] = {} if settings.mqtt5 else {"clean_session": False}
    client = BoundedClient(
        CallbackAPIVersion.VERSION2,
        client_id=settings.client_id,
        protocol=MQTTProtocolVersion.MQTTv5 if settings.mqtt5 else MQTTProtocolVersion.MQTTv311,
        manual_ack=True,
        limit=settings.max_packet_bytes,
        on_oversized=on_oversized,
        **session,
    )
    client.suppress_exceptions = False
    client.max_inflight_messages_set(0)  # the window is the link's (sync.inflight_max)
    client.max_queued_messages_set(0)
    client.connect_timeout = settings.connect_timeout_s
    client.will_set(settings.topics.state, will, qos=1, retain=True)
    if settings.credentials is not None:
        client.username_pw_set(*settings.credentials)
    if settings.tls_context is not None:
        client.tls_set_context(settings.tls_context)
    return client


def connect(client: mqtt.Client, settings: LinkSettings) -> None:
    """Open TCP (and TLS) and send CONNECT; blocks up to ``connect_timeout_s``."""
    if not settings.mqtt5:
        client.connect(settings.host, settings.port, keepalive=settings.keepalive_s)
        return
    properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    properties.SessionExpiryInterval = SESSION_EXPIRY_S
    properties.MaximumPacketSize = settings.max_packet_bytes
    client.connect(
        settings.host,
        settings.port,
        keepalive=settings.keepalive_s,
        clean_start=False,
        properties=properties,
    )


def reason_text(code: ReasonCode | int) -> str:
    """A reason code as a technician reads it in the log: its name and number."""
    if isinstance(code, ReasonCode):
        return f"{code} (0x{code.value:02x})"
    return str(code)


def error_text(exc: BaseException) -> str:
    """An exception that ended a connection, as a technician reads it in the log."""
    if isinstance(exc, TimeoutError | socket.timeout):
        return f"timed out ({exc})" if str(exc) else "timed out"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
