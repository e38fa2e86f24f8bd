"""Downlink delivery: each message the broker sends goes to the service, then is acknowledged.

Why this module exists: a downlink message (docs/protocol.md §2) arrives in a link's thread
but is handled in the event loop, and it is acknowledged only after the handler has run
(paho's manual ack), so an alert the service has logged is never lost to a crash in between.
Before the handler runs, the poison guard (gateway/downlink/poison.py) records the message;
one whose handling has already been cut short twice by the death of the process is dropped
and reported instead. So is a message the link threw away unread for its size
(gateway/uplink/mqtt_client.py).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from pathlib import Path

from gateway.downlink.poison import PoisonGuard

log = logging.getLogger(__name__)

#: The poison guard's record, next to the database.
POISON_FILE = "downlink-handling.json"
#: on_downlink(topic, payload): the service's handler, run in the event loop.
DownlinkHandler = Callable[[str, bytes], None]
#: on_rejected(reason, topic, hex SHA-256, detail): reports a message intake never saw.
RejectHandler = Callable[[str, str, str, str], None]
#: post(callback, *args): run `callback(*args)` in the event loop, from any thread.
Post = Callable[..., None]


class Delivery:
    """Hands downlink messages from the link threads to the service, guarded against poison."""

    def __init__(
        self,
        data_dir: Path,
        *,
        on_downlink: DownlinkHandler,
        on_rejected: RejectHandler | None,
        post: Post,
        max_packet_bytes: int,
    ) -> None:
        self._poison = PoisonGuard(data_dir / POISON_FILE)
        self._on_downlink = on_downlink
        self._on_rejected = on_rejected
        self._post = post
        self._max_packet_bytes = max_packet_bytes

    def close(self) -> None:
        """Close the poison guard's record."""
        self._poison.close()

    # --- from a link thread -------------------------------------------------------------------

    def received(self, topic: str, payload: bytes, ack: Callable[[], None] | None) -> None:
        """A message has arrived; `ack` (None for QoS 0) acknowledges it once it is handled."""
        self._post(self._deliver, topic, payload, ack)

    def oversized(self, topic: str, size: int, digest: str) -> None:
        """A message over the packet limit was acknowledged and thrown away unread."""
        detail = f"{size} bytes, over the limit of {self._max_packet_bytes}; acknowledged, dropped"
        self._post(self._reject, "too_large", topic, digest, detail)

    # --- in the event loop --------------------------------------------------------------------

    def _deliver(self, topic: str, payload: bytes, ack: Callable[[], None] | None) -> None:
        """Hand a message to the service (unless it is poison), then acknowledge it."""
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
        if ack is not None:
            ack()

    def _reject(self, reason: str, topic: str, digest: str, detail: str) -> None:
        """Report a downlink message intake never saw (`downlink_rejected`, docs/protocol.md §7)."""
        if self._on_rejected is None:
            log.warning(
                "downlink rejected (%s) on %s, sha256 %s: %s", reason, topic, digest, detail
            )
            return
        try:
            self._on_rejected(reason, topic, digest, detail)
        except Exception:
            log.exception("reporting a rejected downlink message failed")
