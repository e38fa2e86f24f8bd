"""The running station: the one object that wires store, sync, drivers, rules, alerts and audio.

Everything here happens on one asyncio event loop. Drivers, the audio worker and
paho run in their own threads and hand what they produce to the loop with
`call_soon_threadsafe`; the loop decides what becomes a record, an event, a
receipt or a broadcast. This is the only place with mutable state shared across
the service (the house style): every other module gets what it needs passed in.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
import uuid
from collections.abc import Callable
from typing import Any

from audio.amp import Amplifier, AmplifierError
from audio.broadcast_queue import BroadcastQueue
from audio.player import Player
from drivers.base import Health, Reading
from drivers.registry import create as create_driver
from gateway import __version__
from gateway.clock import StationClock
from gateway.config import Config
from gateway.downlink.intake import Intake
from gateway.memory import return_large_buffers
from gateway.notify import ProgressWatchdog, SystemdNotifier, run_watchdog
from gateway.programmes.wiring import start_programmes
from gateway.rules import RuleEngine, RuleEvent
from gateway.status.live import live_status
from gateway.status.model import protocol_state, status_json
from gateway.status.server import StatusServer, socket_path
from gateway.store.outbox import Store, Stored
from gateway.uplink.link import Uplink
from gateway.village_mic import VillageMicrophone

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
        self.clock = StationClock(config.station.clock)
        self.boot = uuid.uuid4().hex[:16]
        self.sensor_health: dict[str, str] = {s.name: "ok" for s in config.sensors}
        self._fault_reasons: dict[str, str] = {}
        self.last_readings: dict[str, dict[str, Any]] = {}
        self.on_record: Callable[[str, dict[str, Any]], None] | None = None
        self._stopping: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._rules_timer: asyncio.TimerHandle | None = None

    # -- life cycle ------------------------------------------------------------------------

    async def run(self) -> int:
        """Start everything, serve until asked to stop, shut down cleanly. Returns the exit code."""
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        notifier = SystemdNotifier()
        progress = ProgressWatchdog()
        self.store = Store(
            self.config.storage.path,
            station_id=self.config.station.id,
            max_mb=self.config.storage.max_mb,
            max_age_days=self.config.storage.max_age_days,
            commit_interval_s=self.config.storage.commit_interval_s,
        )
        self._record_event(
            "started", {"version": __version__, "config_hash": self.config.config_hash()}
        )
        self.rules = RuleEngine(self.config.rules)
        self._start_audio(progress)
        self.uplink = Uplink(
            self.config,
            self.store,
            on_downlink=self._on_downlink,
            on_rejected=lambda *why: self.intake.reject_unread(*why),
            state=self.state_fields,
            loop=self._loop,
        )
        self.intake = Intake(
            self.config,
            self.store,
            self.queue,
            clock=self.clock,
            uplink=self.uplink,
            state=self.state_fields,
            last_readings=lambda: list(self.last_readings.values()),
        )
        if self.on_record is not None:
            echo = self.on_record
            self.intake.on_receipt = lambda a, s, f: echo("receipt", {"alert": a, "status": s, **f})
        self.intake.resume()
        self.programmes = start_programmes(
            self.config, self.store, self.queue, self.intake, self.clock, self._loop
        )
        self.microphone = self._start_microphone()
        self.status_server = StatusServer(
            socket_path(self.config.storage.path), lambda: status_json(live_status(self))
        )
        await self.status_server.start()
        self.drivers = [self._make_driver(s) for s in self.config.sensors]
        for driver in self.drivers:
            driver.start()
        self._install_signals()
        uplink_task = asyncio.create_task(self.uplink.run(), name="uplink")
        beats = {
            "loop": progress.register("loop", 10.0),
            "uplink": progress.register("uplink", 30.0),
            "audio": progress.register("audio", AUDIO_MAX_SILENCE_S),
        }
        tasks = [
            uplink_task,
            asyncio.create_task(self._tick(beats, uplink_task), name="tick"),
            asyncio.create_task(
                run_watchdog(notifier, progress, self.status_line), name="watchdog"
            ),
        ]
        notifier.ready()
        log.info(
            "station %s running: %d sensors, %d rules, broker %s:%d",
            self.config.station.id,
            len(self.drivers),
            len(self.config.rules),
            self.config.mqtt.host,
            self.config.mqtt.port,
        )
        await self._stopping.wait()
        notifier.stopping()
        await self._shutdown(tasks)
        return 0

    def stop(self) -> None:
        """Ask the station to shut down (thread-safe)."""
        if self._loop is not None and self._stopping is not None:
            self._loop.call_soon_threadsafe(self._stopping.set)

    async def _shutdown(self, tasks: list[asyncio.Task[Any]]) -> None:
        log.info("stopping: flushing the store and telling the broker")
        for driver in self.drivers:
            driver.stop()
        self.store.flush()
        try:
            await asyncio.wait_for(self.uplink.stop(), timeout=3.0)
        except TimeoutError:
            log.warning("the broker did not acknowledge the shutdown in time")
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.status_server.close()
        self.programmes.close()
        if self.microphone is not None:
            self.microphone.close()
        self.queue.close()
        self.intake.tts.close()  # the spare speech engines (audio/engine_spares.py)
        self.amp.close()
        self.player.close()
        self.intake.stop()
        self.store.set_status(broker_connected=False, running=False)
        self.store.close()
        log.info("stopped")

    def _install_signals(self) -> None:
        assert self._loop is not None and self._stopping is not None
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                self._loop.add_signal_handler(sig, self._stopping.set)

    # -- wiring ----------------------------------------------------------------------------

    def _start_audio(self, progress: ProgressWatchdog) -> None:
        audio = self.config.audio
        self.player = Player(audio.device, volume=audio.volume)
        try:
            self.amp = Amplifier(
                audio.amp_pin,
                active_high=audio.amp_active_high,
                warmup_s=audio.amp_warmup_s,
                release_s=audio.amp_release_s,
                pin_factory=self.pin_factory,
            )
        except AmplifierError as exc:
            # Broadcast anyway: an amplifier that is always on still carries the sound.
            log.error("%s; broadcasting without switching the relay", exc)
            self._record_event("broadcast_fault", {"reason": f"amplifier: {exc}"})
            self.amp = Amplifier(None, warmup_s=0.0, release_s=0.0)
        self.queue = BroadcastQueue(
            self.player,
            self.amp,
            repeat_gap_s=audio.repeat_gap_s,
            retries=audio.retries,
            on_status=self._threadsafe(lambda *a: self.intake.on_broadcast_status(*a)),
            on_fault=self._threadsafe(self._on_broadcast_fault),
            time_ms=self.clock.now_ms,
            max_queue=audio.max_queue,
        )

    def _start_microphone(self) -> VillageMicrophone | None:
        if self.config.microphone is None:
            return None
        microphone = VillageMicrophone(
            self.config,
            self.config.microphone,
            store=self.store,
            queue=self.queue,
            clock=self.clock,
            rate=self.intake.rate,
            record_event=self._record_event,
            threadsafe=self._threadsafe,
            pin_factory=self.pin_factory,
        )
        microphone.start()
        return microphone

    def _make_driver(self, sensor: Any) -> Any:
        params = sensor.driver_params()
        if sensor.type in ("gpio_contact", "gpio_pulse"):
            params["pin_factory"] = self.pin_factory
        return create_driver(
            sensor.type, sensor.name, self._threadsafe(self._on_driver_item), **params
        )

    def _threadsafe(self, handler: Callable[..., None]) -> Callable[..., None]:
        """Wrap a loop-side handler so that any thread may call it."""
        loop = self._loop
        assert loop is not None

        def call(*args: Any) -> None:
            with contextlib.suppress(RuntimeError):  # the loop is closed: shutting down
                loop.call_soon_threadsafe(handler, *args)

        return call

    # -- what flows in ---------------------------------------------------------------------

    def _on_driver_item(self, item: Reading | Health) -> None:
        if isinstance(item, Reading):
            self._on_reading(item)
        else:
            self._on_health(item)
        for event in self.rules.feed(item):
            self._on_rule_event(event)
        self._arm_rules_timer()

    def _arm_rules_timer(self) -> None:
        """Wake exactly when a `for_s` wait ends, so an alarm never waits for a poll."""
        deadline = self.rules.next_deadline_ms()
        if self._rules_timer is not None:
            self._rules_timer.cancel()
            self._rules_timer = None
        if deadline is None or self._loop is None:
            return
        delay = max(0.0, (deadline - self.clock.now_ms()) / 1000)
        self._rules_timer = self._loop.call_later(delay, self._rules_due)

    def _rules_due(self) -> None:
        self._rules_timer = None
        for event in self.rules.tick(self.clock.now_ms()):
            self._on_rule_event(event)
        self._arm_rules_timer()

    def _on_reading(self, reading: Reading) -> None:
        flags = reading.flags
        if not self.clock.synced():
            flags = (*flags, "clock_unsynced")
        self.store.add_reading(reading.sensor, reading.quantity, reading.value, reading.ts, flags)
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
            self._record_event("sensor_ok", {"sensor": health.sensor}, health.ts)
        else:
            fields = {"sensor": health.sensor, "reason": reason}
            self._record_event("sensor_fault", fields, health.ts)
        self.uplink.state_changed()

    def _on_rule_event(self, event: RuleEvent) -> None:
        fields: dict[str, Any] = {"sensor": event.sensor, "rule": event.rule, "value": event.value}
        broadcast_id = None
        if event.kind == "alarm":
            fields["level"] = event.level
            if event.broadcast is not None:
                # Numbered by the alert log, not by the event's seq: on a full disk the
                # event has no seq yet, and the alarm must sound all the same.
                broadcast_id = fields["broadcast"] = self.intake.local_broadcast_id(event.rule)
        self._record_event(event.kind, fields, event.ts)
        if broadcast_id is not None:
            self.intake.local_broadcast(event, broadcast_id)

    def _on_downlink(self, topic: str, payload: bytes) -> None:
        self.intake.handle(topic, payload)

    def _on_broadcast_fault(self, reason: str) -> None:
        self._record_event("broadcast_fault", {"reason": reason})
        self.uplink.state_changed()

    def _record_event(self, type_: str, fields: dict[str, Any], ts: int | None = None) -> Stored:
        stored = self.store.add_event(type_, fields, ts)
        where = "held in memory: the disk is full" if stored.held else f"seq {stored.seq}"
        log.info("event %s %s (%s)", type_, fields, where)
        if self.on_record is not None:
            self.on_record(type_, {"seq": stored.seq, **fields})
        if hasattr(self, "uplink"):
            self.uplink.wake()
        return stored

    # -- what flows out --------------------------------------------------------------------

    def state_fields(self) -> dict[str, Any]:
        """The docs/protocol.md §3 state object (without `online`, which sync sets)."""
        return protocol_state(live_status(self, detail=False))

    def time_floor_ts(self) -> int | None:
        """The clock's time floor (docs/protocol.md §6.1, gateway/downlink/time_floor.py) for status."""
        return self.intake.floor.floor_ms

    def next_programmes(self, count: int = 5) -> list[dict[str, Any]]:
        """The next programme items, soonest first: {id, item, at (epoch ms), local}."""
        return self.programmes.upcoming(count) if hasattr(self, "programmes") else []

    def programme_state(self) -> dict[str, Any]:
        """`next_programme` of the §3 state, and `programme_state` saying whether they play (§10)."""
        upcoming = self.next_programmes(1)
        nxt = {k: upcoming[0][k] for k in ("id", "item", "at")} if upcoming else None
        paused = "clock_unsynced" if not self.clock.synced() else "ok"
        return {"next_programme": nxt, "programme_state": paused}

    def status_line(self) -> str:
        """One line for `systemctl status`."""
        backlog, _ = self.store.backlog()
        broker = "broker connected" if self.uplink.connected else "broker unreachable"
        faults = [name for name, state in self.sensor_health.items() if state != "ok"]
        sensors = f"sensor faults: {', '.join(faults)}" if faults else "sensors ok"
        return f"backlog {backlog:,}, {broker}, audio {self.queue.state}, {sensors}"

    def _beat_workers(
        self, beats: dict[str, Callable[[], None]], uplink_task: asyncio.Task[None]
    ) -> None:
        """Vouch for each worker that is making progress; a silent one stops systemd's pings."""
        beats["loop"]()
        if not uplink_task.done():
            beats["uplink"]()
        # A broadcast that has written no sound for this long is stuck in the device
        # (warm-up, repeat gaps and TTS waits are all far shorter).
        playing = self.queue.state == "playing"
        written_recently = self.player.audible_until() > time.monotonic() - AUDIO_MAX_SILENCE_S
        if self.queue.alive and (not playing or written_recently):
            beats["audio"]()

    async def _tick(
        self, beats: dict[str, Callable[[], None]], uplink_task: asyncio.Task[None]
    ) -> None:
        recorded: dict[str, Any] = {}
        recorded_at = 0
        recorded_programmes = self.programme_state()
        while True:
            self._beat_workers(beats, uplink_task)
            now = self.clock.now_ms()
            self.intake.tick(now)
            self.programmes.tick()
            programme_state = self.programme_state()
            if programme_state != recorded_programmes:  # a §3 field: publish it on change
                recorded_programmes = programme_state
                self.uplink.state_changed()
            status = {
                "running": True,
                "pid": os.getpid(),
                "boot": self.boot,
                "broker_connected": self.uplink.connected,
                "audio": self.queue.state,
                "clock_synced": self.clock.synced(),
                "sensors": dict(self.sensor_health),
                **programme_state,
            }
            # Flash wears with every write: record status when it changes, else once a minute.
            if status != recorded or now - recorded_at >= STATUS_REFRESH_MS:
                self.store.set_status(**status, updated_ts=now)
                recorded, recorded_at = status, now
            await asyncio.sleep(TICK_S)


def run_station(config: Config) -> int:
    """`cunxiang run`: the service in the foreground."""
    return_large_buffers()
    return asyncio.run(Station(config).run())
