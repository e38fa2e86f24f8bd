"""What a connection to the broker needs to know, derived from the config.

Why this module exists: a link is handed everything it needs instead of reaching into the
supervisor. The timeouts follow from ``mqtt.keepalive_s`` (docs/storage-and-sync.md,
"Nothing stays silent forever"), the packet limit from ``security.max_payload_bytes``, and
the password and TLS files are read afresh for each connection attempt (a technician may
replace them while the station runs).
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass, replace
from pathlib import Path

from gateway.config.model import Config
from gateway.config.sections import MqttConfig
from gateway.downlink.envelope import max_raw_size
from gateway.logs import register_secret
from gateway.uplink.telemetry import Telemetry
from gateway.uplink.topics import Topics, topics_for

#: Room for the topic, properties and the envelope's own fields above the largest envelope.
PACKET_MARGIN_BYTES = 64 * 1024


def max_packet_bytes(max_payload_bytes: int) -> int:
    """The largest MQTT packet the station takes: the envelope of the largest payload + 64 KiB.

    The envelope carries the payload in base64 (docs/protocol.md §6), so it is 4/3 of
    ``security.max_payload_bytes`` plus its own fields; the margin covers topic and properties.
    """
    return max_raw_size(max_payload_bytes) + PACKET_MARGIN_BYTES


@dataclass(frozen=True)
class LinkSettings:
    """Everything one connection attempt needs to know."""

    client_id: str
    host: str
    port: int
    mqtt5: bool
    keepalive_s: int
    #: TCP connect and TLS handshake.
    connect_timeout_s: float
    #: From CONNECT sent to CONNACK.
    connack_timeout_s: float
    #: With messages in flight, the longest time without a PUBACK.
    ack_timeout_s: float
    max_packet_bytes: int
    inflight_max: int
    topics: Topics
    telemetry: Telemetry
    #: Set by `with_security`, for one attempt.
    credentials: tuple[str, str | None] | None = None
    tls_context: ssl.SSLContext | None = None


def link_settings(
    config: Config, *, connack_timeout_s: float | None = None, ack_timeout_s: float | None = None
) -> LinkSettings:
    """The settings of the station's links (timeouts may be shortened, for tests)."""
    mq = config.mqtt
    station = config.station
    return LinkSettings(
        client_id=f"cx-{station.id}",
        host=mq.host,
        port=mq.port,
        mqtt5=mq.protocol == "5",
        keepalive_s=mq.keepalive_s,
        connect_timeout_s=min(10.0, float(mq.keepalive_s)),
        connack_timeout_s=connack_timeout_s or max(10.0, float(mq.keepalive_s)),
        ack_timeout_s=ack_timeout_s or max(30.0, 2.0 * mq.keepalive_s),
        max_packet_bytes=max_packet_bytes(config.security.max_payload_bytes),
        inflight_max=config.sync.inflight_max,
        topics=topics_for(mq.topic_prefix, station.id, station.area),
        telemetry=Telemetry(station.id, config.sync.batch_max),
    )


def with_security(settings: LinkSettings, mq: MqttConfig) -> LinkSettings:
    """`settings` with the credentials and the TLS context read from their files now.

    Raises OSError, ssl.SSLError or ValueError if a file cannot be read or used.
    """
    password = None
    if mq.password_file is not None:
        password = Path(mq.password_file).read_text(encoding="utf-8").strip("\r\n")
        register_secret(password)
    credentials = (mq.username, password) if mq.username or password is not None else None
    context = None
    if mq.tls:
        context = ssl.create_default_context(
            ssl.Purpose.SERVER_AUTH, cafile=str(mq.ca_file) if mq.ca_file else None
        )
        if mq.cert_file is not None:
            key = str(mq.key_file) if mq.key_file is not None else None
            context.load_cert_chain(str(mq.cert_file), key)
    return replace(settings, credentials=credentials, tls_context=context)
