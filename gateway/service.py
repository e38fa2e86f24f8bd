"""The running station: what flows in from the parts, the ticks, and the wait for a stop.

Everything here happens on one asyncio event loop. Drivers, the audio worker and
paho run in their own threads and hand what they produce to the loop with
`call_soon_threadsafe`; the loop decides what becomes a record, an event, a
receipt or a broadcast. This is the only place with mutable state shared across
the service (the house style): every other module gets what it needs passed in.

`Station.run` builds the parts (gateway/parts.py), which closes whatever it opened if a part
cannot be built, then only runs: it answers status requests, ticks, pings systemd, and waits
for SIGTERM/SIGINT or `stop()`; leaving it closes the parts in reverse order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
import uuid
from collections.abc import Callable
from typing import Any

from drivers.base import Health, Reading
from gateway.config.model import Config
from gateway.events import OnRecord
from gateway.memory import return_large_buffers
from gateway.notify import ProgressWatchdog, SystemdNotifier, run_watchdog
from gateway.parts import Parts, build_parts
from gateway.rules import RuleEvent
from gateway.status.live import live_status, programme_fields
from gateway.status.model import protocol_state, recorded_status, status_json

log = logging.getLogger(__name__)

#: How often the loop records status for `cunxiang status` and checks timers.
TICK_S = 1.0
#: How often unchanged status is written anyway, so `cunxiang status` can tell a dead service.
STATUS_REFRESH_MS = 60_000
#: A playing broadcast that writes no sound for this long is taken as a wedged audio thread.
AUDIO_MAX_SILENCE_S = 60.0


class Station:
    """A configured station; `await run()` until SIGTERM/SIGINT or `stop()`."""

    def __init__(self, config: Config, *, pin_factory: Any = None) -> None:
        self.config = config
        self.pin_factory = pin_factory
        self.boot = uuid.uuid4().hex[:16]
        self.sensor_health: dict[str, str] = {s.name: "ok" for s in config.sensors}
        self._fault_reasons: dict[str, str] = {}
        self.last_readings: dict[str, dict[str, Any]] = {}
        #: Told of every reading, event and receipt as it is recorded (the demo's screen).
        self.on_record: OnRecord | None = None
        self._parts: Parts | None = None
        self._stopping: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._rules_timer: asyncio.TimerHandle | None = None

    @property
    def built(self) -> bool:
        """True once `run` has built the parts (and after they are closed)."""
        return self._parts is not None

    @property
    def parts(self) -> Parts:
        """The station's parts, once `run` has built them."""
        if self._parts is None:
            raise RuntimeError("the station has no parts until run() builds them")
        return self._parts

    # -- life cycle ------------------------------------------------------------------------

    async def run(self) -> int:
        """Build the parts, serve until asked to stop, close them. Returns the exit code."""
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        async with contextlib.AsyncExitStack() as stack:
            self._parts = build_parts(
                self.config,
                self,
                stack,
                loop=self._loop,
                pin_factory=self.pin_factory,
                on_record=self.on_record,
            )
            await self._serve(self._parts, self._stopping)
        log.info("stopped")
        return 0

    def stop(self) -> None:
        """Ask the station to shut down (thread-safe)."""
        if self._loop is not None and self._stopping is not None:
            self._loop.call_soon_threadsafe(self._stopping.set)

    async def _serve(self, parts: Parts, stopping: asyncio.Event) -> None:
        notifier = SystemdNotifier()
        progress = ProgressWatchdog()
        await parts.status_server.start()
        self._install_signals(stopping)
        beats = {
            "loop": progress.register("loop", 10.0),
            "uplink": progress.register("uplink", 30.0),
            "audio": progress.register("audio", AUDIO_MAX_SILENCE_S),
        }
        tasks = [
            asyncio.create_task(self._tick(parts, beats), name="tick"),
            asyncio.create_task(
                run_watchdog(notifier, progress, self.status_line), name="watchdog"
            ),
        ]
        notifier.ready()
        log.info(
            "station %s running: %d sensors, %d rules, broker %s:%d",
            self.config.station.id,
            len(parts.drivers),
            len(self.config.rules),
            self.config.mqtt.host,
            self.config.mqtt.port,
        )
        try:
            await stopping.wait()
        finally:
            notifier.stopping()
            log.info("stopping: flushing the store and telling the broker")
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            notifier.close()

    def _install_signals(self, stopping: asyncio.Event) -> None:
        assert self._loop is not None
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                self._loop.add_signal_handler(sig, stopping.set)

    # -- what the parts call (gateway/parts.py `Hooks`) --------------------------------------

    def threadsafe(self, handler: Callable[..., None]) -> Callable[..., None]:
        """Wrap a loop-side handler so that any thread may call it.

        The call runs on the loop, where the station always has its parts: `build_parts` cannot
        await. A call left over from a build that failed finds none and is dropped.
        """
        loop = self._loop
        assert loop is not None

        def call(*args: Any) -> None:
            with contextlib.suppress(RuntimeError):  # the loop is closed: shutting down
                loop.call_soon_threadsafe(self._deliver, handler, args)

        return call

    def _deliver(self, handler: Callable[..., None], args: tuple[Any, ...]) -> None:
        if self._parts is not None:
            handler(*args)

    def on_driver_item(self, item: Reading | Health) -> None:
        if isinstance(item, Reading):
            self._on_reading(item)
        else:
            self._on_health(item)
        for event in self.parts.rules.feed(item):
            self._on_rule_event(event)
        self._arm_rules_timer()

    def on_downlink(self, topic: str, payload: bytes) -> None:
        """Every message from the centre, on its way to the intake (gateway/downlink/)."""
        self.parts.intake.handle(topic, payload)

    def on_broadcast_status(self, broadcast_id: str, status: str, extra: dict[str, Any]) -> None:
        self.parts.intake.on_broadcast_status(broadcast_id, status, extra)

    def on_broadcast_fault(self, reason: str) -> None:
        self.parts.events.record("broadcast_fault", {"reason": reason})
        self.parts.uplink.state_changed()

    def state_fields(self) -> dict[str, Any]:
        """The docs/protocol.md §3 state object (without `online`, which the uplink sets)."""
        return protocol_state(live_status(self, detail=False))

    def latest_readings(self) -> list[dict[str, Any]]:
        """The last value of every sensor's quantities, as the §8 ``status`` command lists them."""
        return list(self.last_readings.values())

    def status_answer(self) -> dict[str, Any]:
        """The status socket's answer (gateway/status/server.py): everything, live."""
        return status_json(live_status(self))

    def status_line(self) -> str:
        """One line for `systemctl status`."""
        status = live_status(self, detail=False)
        broker = "broker connected" if status.broker_connected else "broker unreachable"
        faults = [name for name, state in status.sensors.items() if state != "ok"]
        sensors = f"sensor faults: {', '.join(faults)}" if faults else "sensors ok"
        return f"backlog {status.backlog:,}, {broker}, audio {status.audio}, {sensors}"

    # -- what flows in from the sensors ------------------------------------------------------

    def _arm_rules_timer(self) -> None:
        """Wake exactly when a `for_s` wait ends, so an alarm never waits for a poll."""
        deadline = self.parts.rules.next_deadline_ms()
        if self._rules_timer is not None:
            self._rules_timer.cancel()
            self._rules_timer = None
        if deadline is None or self._loop is None:
            return
        delay = max(0.0, (deadline - self.parts.clock.now_ms()) / 1000)
        self._rules_timer = self._loop.call_later(delay, self._rules_due)

    def _rules_due(self) -> None:
        self._rules_timer = None
        for event in self.parts.rules.tick(self.parts.clock.now_ms()):
            self._on_rule_event(event)
        self._arm_rules_timer()

    def _on_reading(self, reading: Reading) -> None:
        flags = reading.flags
        if not self.parts.clock.synced():
            flags = (*flags, "clock_unsynced")
        self.parts.store.add_reading(
            reading.sensor, reading.quantity, reading.value, reading.ts, flags
        )
        record: dict[str, Any] = {
            "ts": reading.ts,
            "sensor": reading.sensor,
            "q": reading.quantity,
            "v": reading.value,
        }
        if flags:
            record["flags"] = list(flags)
        self.last_readings[f"{reading.sensor}/{reading.quantity}"] = record
        if self.on_record is not None:
            self.on_record("reading", record)

    def _on_health(self, health: Health) -> None:
        """A fault, a change of its reason (bad frames, then unplugged), or its end."""
        state = "ok" if health.ok else "fault"
        reason = "" if health.ok else health.reason
        if self._fault_reasons.get(health.sensor, "") == reason and (
            self.sensor_health.get(health.sensor) == state
        ):
            return
        self.sensor_health[health.sensor] = state
        self._fault_reasons[health.sensor] = reason
        if health.ok:
            self.parts.events.record("sensor_ok", {"sensor": health.sensor}, health.ts)
        else:
            fields = {"sensor": health.sensor, "reason": reason}
            self.parts.events.record("sensor_fault", fields, health.ts)
        self.parts.uplink.state_changed()

    def _on_rule_event(self, event: RuleEvent) -> None:
        intake = self.parts.intake
        fields: dict[str, Any] = {"sensor": event.sensor, "rule": event.rule, "value": event.value}
        broadcast_id = None
        if event.kind == "alarm":
            fields["level"] = event.level
            if event.broadcast is not None:
                # Numbered by the alert log, not by the event's seq: on a full disk the
                # event has no seq yet, and the alarm must sound all the same.
                broadcast_id = fields["broadcast"] = intake.local_broadcast_id(event.rule)
        self.parts.events.record(event.kind, fields, event.ts)
        if broadcast_id is not None:
            intake.local_broadcast(event, broadcast_id)

    # -- the tick --------------------------------------------------------------------------

    def _beat_workers(self, parts: Parts, beats: dict[str, Callable[[], None]]) -> None:
        """Vouch for each worker that is making progress; a silent one stops systemd's pings."""
        beats["loop"]()
        if parts.uplink_run.running:
            beats["uplink"]()
        # A broadcast that has written no sound for this long is stuck in the device
        # (warm-up, repeat gaps and TTS waits are all far shorter).
        playing = parts.queue.state == "playing"
        written_recently = parts.player.audible_until() > time.monotonic() - AUDIO_MAX_SILENCE_S
        if parts.queue.alive and (not playing or written_recently):
            beats["audio"]()

    async def _tick(self, parts: Parts, beats: dict[str, Callable[[], None]]) -> None:
        recorded: dict[str, Any] = {}
        recorded_at = 0
        programme: tuple[dict[str, Any] | None, str | None] = programme_fields(parts)
        while True:
            self._beat_workers(parts, beats)
            now = parts.clock.now_ms()
            parts.intake.tick(now)
            parts.programmes.tick()
            status = live_status(self, detail=False)
            if (status.next_programme, status.programme_state) != programme:
                programme = (status.next_programme, status.programme_state)
                parts.uplink.state_changed()  # a §3 field: publish it on change
            fields = recorded_status(status)
            # Flash wears with every write: record status when it changes, else once a minute.
            if fields != recorded or now - recorded_at >= STATUS_REFRESH_MS:
                parts.store.set_status(**fields, updated_ts=now)
                recorded, recorded_at = fields, now
            await asyncio.sleep(TICK_S)


def run_station(config: Config) -> int:
    """`cunxiang run`: the service in the foreground."""
    return_large_buffers()
    return asyncio.run(Station(config).run())
