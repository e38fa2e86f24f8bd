"""The uplink to the centre: links started, watched and replaced, and the station's state.

Why this module exists: the rest of the station sees "records committed to the store will
reach the centre" and "here is a downlink message" (docs/protocol.md §2–§5); `Uplink` is
what it holds to get that. It runs in the event loop and keeps one link
(gateway/uplink/link.py) at a time:

* it starts a link, publishes the retained state (§3) on connect, on `Uplink.state_changed`
  and every ``mqtt.heartbeat_s``, and after the link has ended reconnects after a back-off
  with full jitter (`ReconnectBackoff`; docs/storage-and-sync.md, "Reconnecting");
* it ends a link whose thread stopped looping, and says why a connection ended, with a hint
  for the technician (`explain`), in the log and in the store's status;
* it takes the service's commands for the centre — ``wake``, ``resend``,
  ``publish_response`` — and hands them to whichever link is up (gateway/uplink/answers.py);
  downlink goes the other way through gateway/uplink/delivery.py.

It waits on events, never on a fixed poll: a link says when it connected or ended through
``on_change`` (``call_soon_threadsafe``), and the supervisor sleeps until that or its next
deadline (heartbeat, stuck-thread check).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import ssl
import time
from collections.abc import Callable
from typing import Any

from drivers.base import now_ms
from gateway.config.model import Config
from gateway.store.outbox import Store
from gateway.uplink.answers import Answers
from gateway.uplink.delivery import Delivery
from gateway.uplink.link import SHUTDOWN_DRAIN_S, SHUTDOWN_OFFLINE_S, SHUTDOWN_SETTLE_S, Link
from gateway.uplink.settings import link_settings, with_security

log = logging.getLogger(__name__)

#: A connection that lasted this long resets the back-off to its start.
STABLE_S = 10.0
#: The back-off ceiling grows by this factor per failed attempt (2.0 would leave a station
#: ~13 s behind a broker that was down for 30 s; 1.5 keeps the median near 7 s).
BACKOFF_GROWTH = 1.5
#: The shortest span over which a fleet's first reconnect attempts are spread.
MIN_SPREAD_S = 2.0
#: The same connection failure is logged again only after this long (retries go on meanwhile).
REPEAT_LOG_S = 300.0


class ReconnectBackoff:
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
        self.config = config
        self.store = store
        self.settings = link_settings(
            config, connack_timeout_s=connack_timeout_s, ack_timeout_s=ack_timeout_s
        )
        s = self.settings
        #: A link thread that has not looped for this long is stuck (it may block in a TCP
        #: connect and a TLS handshake, then wait for CONNACK).
        self.hung_s = 2 * s.connect_timeout_s + s.connack_timeout_s + 30.0
        self._state = state
        self._loop = loop
        self._answers = Answers()
        self._delivery = Delivery(
            store.path.parent,
            on_downlink=on_downlink,
            on_rejected=on_rejected,
            post=self._post,
            max_packet_bytes=s.max_packet_bytes,
        )
        self._backoff = ReconnectBackoff(
            config.mqtt.reconnect_min_s, config.mqtt.reconnect_max_s, rng
        )
        self._link: Link | None = None
        self._links = 0
        self._stop_requested = False
        self._changed: asyncio.Event | None = None
        self._finished: asyncio.Event | None = None
        self._last_state = 0.0
        self._announced: Link | None = None
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
            self._answers.add_resend(span)
            self.wake()
        return span

    def publish_response(self, response: dict[str, object]) -> None:
        """Publish a command response (§8) on ``…/cmd/res`` (event-loop thread).

        It is kept until the broker has acknowledged it, and goes out again on the next
        connection if this one ends first (gateway/uplink/answers.py).
        """
        payload = json.dumps(response, ensure_ascii=False, separators=(",", ":"), default=str)
        self._answers.add_response(payload.encode())
        self.wake()

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
                link.shut_down(self._state_payload(online=False))
                limit = SHUTDOWN_DRAIN_S + SHUTDOWN_SETTLE_S + SHUTDOWN_OFFLINE_S + 0.3
            else:
                link.abort("stopping")
                limit = 0.5  # longer only while blocked in a TCP connect; then it is left behind
            if not await self._run_finishes(limit):
                link.abort("stopping")
        await self._run_finishes(0.5)
        self.store.remove_listener(self.wake)
        self._delivery.close()
        self.store.set_status(broker_connected=False, disconnected_ts=now_ms())

    # --- supervision (event-loop thread) ------------------------------------------------------

    def _start_link(self) -> Link | None:
        try:
            settings = with_security(self.settings, self.config.mqtt)
            hello = self._state_payload(online=True)
            will = self._state_payload(online=False)
        except (OSError, ssl.SSLError, ValueError) as exc:
            log.error("cannot prepare the MQTT connection: %s", exc)
            return None
        self._links += 1
        link = Link(
            self._links,
            settings,
            store=self.store,
            answers=self._answers,
            delivery=self._delivery,
            hello=hello,
            will=will,
            on_change=self._link_changed,
        )
        self._link = link
        link.start()
        return link

    async def _supervise(self, link: Link) -> float:
        """Watch `link` until it has ended; how long it was connected."""
        heartbeat_s = self.config.mqtt.heartbeat_s
        while not link.closed.is_set():
            now = time.monotonic()
            if link.connected:
                if self._announced is not link:
                    self._announce(link)
                elif now - self._last_state >= heartbeat_s:
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
            wake_at = link.last_loop + self.hung_s
            if link.connected:
                wake_at = min(wake_at, self._last_state + heartbeat_s)
            await self._wait_change(wake_at - time.monotonic())
        if self._announced is link:
            self.store.set_status(
                broker_connected=False, disconnected_ts=now_ms(), last_error=link.error
            )
        return time.monotonic() - link.connected_at if link.ever_connected else 0.0

    def _announce(self, link: Link) -> None:
        self._announced = link
        self._last_state = time.monotonic()
        s = link.settings
        log.info(
            "connected to the broker at %s:%d as %s over MQTT %s (session %s; CONNACK %s)",
            s.host,
            s.port,
            s.client_id,
            self.config.mqtt.protocol,
            "resumed" if link.session_present else "new",
            link.connack,
        )
        self.store.set_status(
            broker_connected=True,
            broker=f"{s.host}:{s.port}",
            connected_ts=now_ms(),
            last_error=None,
        )

    def _report_end(self, link: Link | None, delay: float) -> None:
        """Say why the connection ended; the same reason again is logged at most every 5 min."""
        if link is None:
            log.warning("retrying in %.1f s", delay)
            return
        where = f"{link.settings.host}:{link.settings.port}"
        reason = link.error or "connection closed"
        hint = explain(reason, link.settings.tls_context is not None)
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
        deadline = time.monotonic() + delay
        while not self._stop_requested:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            await self._wait_change(remaining)

    async def _wait_change(self, timeout: float) -> None:
        """Until a link connects or ends, `stop` is called, or `timeout` seconds have passed.

        Only `run` waits here (one waiter: clearing the event cannot lose another's wake-up).
        """
        assert self._changed is not None
        self._changed.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._changed.wait(), max(timeout, 0.0))

    async def _run_finishes(self, limit: float) -> bool:
        """Wait up to `limit` seconds for `run` to return; True if it has."""
        if self._finished is None:
            return True
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._finished.wait(), limit)
        return self._finished.is_set()

    def _kick(self) -> None:
        if self._changed is not None:
            self._changed.set()

    def _post(self, callback: Callable[..., Any], *args: Any) -> None:
        """Any thread: run `callback(*args)` in the event loop, unless it is gone."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(callback, *args)

    def _link_changed(self) -> None:
        """Any thread: a link connected or ended; let the supervisor look."""
        self._post(self._kick)

    def _publish_state(self, link: Link) -> None:
        self._last_state = time.monotonic()
        link.publish_state(self._state_payload(online=True))

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
