"""The running station's parts, built in the order they need each other and closed in reverse.

Why this module exists: the service (gateway/service.py) builds, then runs. `build_parts` builds
every part — store, audio (player, amplifier, broadcast queue), intake, uplink, programmes,
village microphone, status socket, sensor drivers — and puts the way to close each one on the
caller's exit stack as soon as it exists. So when a part cannot be built (a sensor whose driver
refuses its settings, say), what was opened before it is closed again: the database's lock is
released, the audio threads end, the status socket file is removed, and the error reaches the
technician as it is. When the station stops, the same stack closes everything in reverse order:
the drivers first, then the status socket, the microphone and the programmes, then the uplink
(the last records and the "offline" state go out while the intake still answers), the intake,
the audio and last the store.

`build_parts` is a plain function on purpose: it cannot await, so nothing the parts hand to the
event loop (a broadcast's progress, a sensor's reading) runs before the station has its parts.
The uplink starts last, once every part exists: a station that cannot be built never connects.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from audio.amp import Amplifier, AmplifierError
from audio.broadcast_queue import BroadcastQueue
from audio.player import Player
from drivers.base import Driver, Health, Reading
from drivers.registry import create as create_driver
from gateway import __version__
from gateway.clock import StationClock
from gateway.config.model import Config
from gateway.downlink.intake import Intake
from gateway.events import Events, OnRecord
from gateway.programmes.scheduler import ProgrammeScheduler
from gateway.programmes.wiring import start_programmes
from gateway.rules import RuleEngine
from gateway.status.server import StatusServer, socket_path
from gateway.store.outbox import Store, open_store
from gateway.uplink.supervisor import Uplink
from gateway.village_mic import VillageMicrophone

log = logging.getLogger(__name__)

#: How long the uplink may take at a stop to drain, say "offline" and disconnect.
UPLINK_STOP_S = 3.0


class Hooks(Protocol):
    """What the parts call on the running station (gateway/service.py `Station`).

    Each is called on the event loop, and only once the station has its parts: by a worker
    thread through `threadsafe`, by the uplink once it runs, by the status socket once it listens.
    """

    def threadsafe(self, handler: Callable[..., None]) -> Callable[..., None]: ...
    def on_driver_item(self, item: Reading | Health) -> None: ...
    def on_downlink(self, topic: str, payload: bytes) -> None: ...
    def on_broadcast_status(
        self, broadcast_id: str, status: str, extra: dict[str, Any]
    ) -> None: ...
    def on_broadcast_fault(self, reason: str) -> None: ...
    def state_fields(self) -> dict[str, Any]: ...
    def latest_readings(self) -> list[dict[str, Any]]: ...
    def status_answer(self) -> dict[str, Any]: ...


@dataclass(frozen=True)
class Parts:
    """Every part of a running station."""

    clock: StationClock
    store: Store
    events: Events
    rules: RuleEngine
    player: Player
    amp: Amplifier
    queue: BroadcastQueue
    intake: Intake
    uplink: Uplink
    uplink_run: UplinkRun
    programmes: ProgrammeScheduler
    microphone: VillageMicrophone | None
    status_server: StatusServer
    drivers: list[Driver]


class UplinkPort:
    """The intake's way to the uplink (`gateway.downlink.intake.UplinkPort`), bound once built.

    The two need each other: the uplink hands the intake what it receives, the intake answers
    through the uplink. The intake is built first, so that it closes after the uplink has
    stopped (a message the uplink still delivers during its last drain is answered and
    remembered); it calls the uplink only in answer to a message or to a broadcast's progress,
    which come once the station runs.
    """

    def __init__(self) -> None:
        self._uplink: Uplink | None = None

    def bind(self, uplink: Uplink) -> None:
        self._uplink = uplink

    @property
    def uplink(self) -> Uplink:
        if self._uplink is None:
            raise RuntimeError("the uplink is not built yet")
        return self._uplink

    def wake(self) -> None:
        self.uplink.wake()

    def state_changed(self) -> None:
        self.uplink.state_changed()

    def publish_response(self, response: dict[str, Any]) -> None:
        self.uplink.publish_response(response)

    def resend(self, from_seq: int, to_seq: int) -> tuple[int, int] | None:
        return self.uplink.resend(from_seq, to_seq)


class UplinkRun:
    """The uplink's run on the event loop: started last, when every part exists; at a stop,
    what is buffered is committed, the broker takes it and hears "offline", then it ends."""

    def __init__(self, store: Store, uplink: Uplink) -> None:
        self._store = store
        self._uplink = uplink
        self._task: asyncio.Task[None] | None = None

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._task = loop.create_task(self._uplink.run(), name="uplink")

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def stop(self) -> None:
        self._store.flush()
        try:
            await asyncio.wait_for(self._uplink.stop(), timeout=UPLINK_STOP_S)
        except TimeoutError:
            log.warning("the broker did not acknowledge the shutdown in time")
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)


def build_parts(
    config: Config,
    hooks: Hooks,
    stack: contextlib.AsyncExitStack,
    *,
    loop: asyncio.AbstractEventLoop,
    pin_factory: Any = None,
    on_record: OnRecord | None = None,
) -> Parts:
    """Build and start every part; each one's closing goes on `stack` as soon as it exists."""
    clock = StationClock(config.station.clock)
    store = open_store(config)
    stack.callback(_close_store, store)
    events = Events(store, on_record)
    events.record("started", {"version": __version__, "config_hash": config.config_hash()})
    rules = RuleEngine(config.rules)

    player = Player(config.audio.device, volume=config.audio.volume)
    stack.callback(player.close)
    amp = _amplifier(config, events, pin_factory)
    stack.callback(amp.close)
    queue = BroadcastQueue(
        player,
        amp,
        repeat_gap_s=config.audio.repeat_gap_s,
        retries=config.audio.retries,
        on_status=hooks.threadsafe(hooks.on_broadcast_status),
        on_fault=hooks.threadsafe(hooks.on_broadcast_fault),
        time_ms=clock.now_ms,
        max_queue=config.audio.max_queue,
    )
    stack.callback(queue.close)

    port = UplinkPort()
    intake = Intake(
        config,
        store,
        queue,
        clock=clock,
        uplink=port,
        state=hooks.state_fields,
        last_readings=hooks.latest_readings,
    )
    stack.callback(_close_intake, intake)
    if on_record is not None:
        intake.on_receipt = _receipt_echo(on_record)
    uplink = Uplink(
        config,
        store,
        on_downlink=hooks.on_downlink,
        on_rejected=intake.reject_unread,
        state=hooks.state_fields,
        loop=loop,
    )
    port.bind(uplink)
    uplink_run = UplinkRun(store, uplink)
    stack.push_async_callback(uplink_run.stop)
    intake.resume()

    programmes = start_programmes(config, store, queue, intake, clock, loop)
    stack.callback(programmes.close)
    microphone = None
    if config.microphone is not None:
        microphone = VillageMicrophone(
            config,
            config.microphone,
            store=store,
            queue=queue,
            clock=clock,
            rate=intake.rate,
            record_event=events.record,
            threadsafe=hooks.threadsafe,
            pin_factory=pin_factory,
        )
        stack.callback(microphone.close)
        microphone.start()
    status_server = StatusServer(socket_path(config.storage.path), hooks.status_answer)
    stack.push_async_callback(status_server.close)

    drivers = [_driver(sensor, hooks, pin_factory) for sensor in config.sensors]
    for driver in drivers:
        stack.callback(driver.stop)
        driver.start()
    uplink_run.start(loop)
    return Parts(
        clock=clock,
        store=store,
        events=events,
        rules=rules,
        player=player,
        amp=amp,
        queue=queue,
        intake=intake,
        uplink=uplink,
        uplink_run=uplink_run,
        programmes=programmes,
        microphone=microphone,
        status_server=status_server,
        drivers=drivers,
    )


def _amplifier(config: Config, events: Events, pin_factory: Any) -> Amplifier:
    audio = config.audio
    try:
        return Amplifier(
            audio.amp_pin,
            active_high=audio.amp_active_high,
            warmup_s=audio.amp_warmup_s,
            release_s=audio.amp_release_s,
            pin_factory=pin_factory,
        )
    except AmplifierError as exc:
        # Broadcast anyway: an amplifier that is always on still carries the sound.
        log.error("%s; broadcasting without switching the relay", exc)
        events.record("broadcast_fault", {"reason": f"amplifier: {exc}"})
        return Amplifier(None, warmup_s=0.0, release_s=0.0)


def _driver(sensor: Any, hooks: Hooks, pin_factory: Any) -> Driver:
    """The sensor's driver, not started; DriverConfigError if it refuses the sensor's settings."""
    params = sensor.driver_params()
    if sensor.type in ("gpio_contact", "gpio_pulse"):
        params["pin_factory"] = pin_factory
    return create_driver(sensor.type, sensor.name, hooks.threadsafe(hooks.on_driver_item), **params)


def _receipt_echo(on_record: OnRecord) -> Callable[[str, str, dict[str, Any]], None]:
    def echo(alert: str, status: str, fields: dict[str, Any]) -> None:
        on_record("receipt", {"alert": alert, "status": status, **fields})

    return echo


def _close_intake(intake: Intake) -> None:
    """Save the time floor and the answers not yet written; end the spare speech engines."""
    intake.stop()
    intake.tts.close()  # the spare speech engines (audio/engine_spares.py)


def _close_store(store: Store) -> None:
    store.set_status(broker_connected=False, running=False)
    store.close()
