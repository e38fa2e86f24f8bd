"""Commands from the centre (docs/protocol.md §8): checked, run once, answered with a response.

Why this module exists: a verified `command` envelope on the station's command topic is
parsed (gateway/downlink/command_model.py), refused if it names another station or lies
outside its key's scope, remembered in the alert log before the time checks (so a replay is
never answered, even once expired), checked against the time floor — while the clock is
unsynced only a command newer than anything accepted so far may run — and then run:
`status`, `cancel_all`, `resend`, or `speaker_test`, whose response waits for the chime to
finish playing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from audio.broadcast_queue import BroadcastQueue
from audio.levels import Level
from gateway.clock import StationClock
from gateway.config.model import Config
from gateway.downlink.alert_ids import command_log_id, public_id
from gateway.downlink.alert_model import PayloadError, check_time, epoch_ms
from gateway.downlink.answered import AnsweredLog
from gateway.downlink.broadcasts import Broadcasts
from gateway.downlink.command_model import Command, parse_command
from gateway.downlink.envelope import Envelope
from gateway.downlink.rejections import Rejections
from gateway.downlink.scope import KeyScope, authorised
from gateway.downlink.time_floor import TimeFloor
from gateway.log_folding import LogFolder
from gateway.store.alert_records import AlertRecord
from gateway.store.outbox import Store

log = logging.getLogger(__name__)

SPEAKER_TEST_PREFIX = "speaker-test:"


class Commands:
    """Runs verified commands and publishes their responses."""

    def __init__(
        self,
        config: Config,
        store: Store,
        queue: BroadcastQueue,
        *,
        clock: StationClock,
        floor: TimeFloor,
        scopes: dict[str, KeyScope],
        answered: AnsweredLog,
        rejections: Rejections,
        broadcasts: Broadcasts,
        publish: Callable[[dict[str, Any]], None],
        resend: Callable[[int, int], tuple[int, int] | None],
        state: Callable[[], dict[str, Any]],
        last_readings: Callable[[], list[dict[str, Any]]],
    ) -> None:
        self.config = config
        self.store = store
        self.queue = queue
        self.clock = clock
        self.floor = floor
        self.scopes = scopes
        self.answered = answered
        self.rejections = rejections
        self.broadcasts = broadcasts
        self.publish = publish
        self.resend = resend
        self.state = state
        self.last_readings = last_readings
        self.log_folder = LogFolder(log)
        self._speaker_tests: dict[str, str] = {}  # broadcast id -> command id

    def handle(self, envelope: Envelope, topic: str, raw: bytes) -> None:
        """One verified `command` envelope that came on the station's command topic."""
        security = self.config.security
        try:
            command = parse_command(envelope.payload, security.max_command_lifetime_s)
        except PayloadError as exc:
            if exc.alert_id is None:
                self.rejections.reject(exc.reason, topic, envelope.key, raw, str(exc))
            else:
                log.warning("command %s refused (%s): %s", exc.alert_id, exc.reason, exc.detail)
                self.respond(exc.alert_id, error=exc.reason)
            return
        error = self._refusal(command, envelope.key)
        if error is not None:
            log.warning("command %s refused: %s", command.id, error)
            self.respond(command.id, error=error)
            return
        # Remembered before the time checks: a replay is never answered, even once expired (§8).
        entry = command_log_id(envelope.key, command.id)
        if not self.store.alerts.remember(entry, AlertRecord(kind="command")):
            self.log_folder.log(
                "repeats of answered commands",
                self.clock.now_ms(),
                logging.INFO,
                "command %s was answered before: ignored",
                command.id,
            )
            return
        self.store.alerts.set_state(entry, "done")
        synced = self.floor.synced()
        verdict = check_time(command, self.floor.now_ms(), synced, security.max_clock_skew_s)
        if verdict == "ok" and not synced and epoch_ms(command.sent) <= self.floor.floor_ms:
            # Unsynced, the clock cannot say how old it is: only one newer than anything
            # accepted so far (and than this release) may run (§8).
            verdict = "expired"
        if verdict != "ok":
            log.warning("command %s refused: %s", command.id, verdict)
            self.respond(command.id, error=verdict)
            return
        self.floor.accepted(epoch_ms(command.sent))
        log.info("command %s: %s %s (key %s)", command.id, command.cmd, command.args, envelope.key)
        self._run(command)

    def _refusal(self, command: Command, key: str) -> str | None:
        """Why a verified command may not run here: another station's, or outside its key."""
        if command.station != self.config.station.id:
            return "not_for_this_station"
        if not authorised(self.scopes[key], "command", [self.config.station.area]):
            return "not_authorised"
        return None

    def _run(self, command: Command) -> None:
        if command.cmd == "status":
            result = {
                **self.state(),
                "online": True,
                "last_readings": self.last_readings()[-20:],
                "queue": [
                    {**item, "id": public_id(str(item["id"]))} for item in self.queue.snapshot()
                ],
            }
            self.respond(command.id, result=result)
        elif command.cmd == "cancel_all":
            cancelled = [public_id(entry) for entry in self.queue.cancel_all()]
            self.respond(command.id, result={"cancelled": cancelled})
        elif command.cmd == "resend":
            span = self.resend(int(command.args["from_seq"]), int(command.args["to_seq"]))
            result = {"from_seq": span[0], "to_seq": span[1]} if span else {"from_seq": None}
            self.respond(command.id, result=result)
        elif command.cmd == "speaker_test":
            broadcast_id = f"{SPEAKER_TEST_PREFIX}{command.id}"
            self._speaker_tests[broadcast_id] = command.id
            volume = float(command.args["volume"])
            self.queue.submit(
                self.broadcasts.build(
                    broadcast_id,
                    Level.BLUE,
                    None,
                    central=True,
                    tone="chime",
                    repeat=1,
                    volume=volume,
                )
            )

    def speaker_test_status(self, broadcast_id: str, status: str, extra: dict[str, Any]) -> bool:
        """A speaker test's progress answers its command once it ends; False for any other id."""
        # By the ids of tests under way, not by prefix: an alert id may look alike.
        if broadcast_id not in self._speaker_tests:
            return False
        if status in ("queued", "playing", "interrupted"):
            return True
        command_id = self._speaker_tests.pop(broadcast_id)
        if status == "played":
            self.respond(command_id, result={"played": True, **extra})
        else:
            self.respond(command_id, error=str(extra.get("reason", status)))
        return True

    def respond(
        self, command_id: str, *, result: dict[str, Any] | None = None, error: str | None = None
    ) -> None:
        """Publish a command response (docs/protocol.md §8): a result, or an error code."""
        self.answered.note(command_id)
        response: dict[str, Any] = {"id": command_id, "ok": error is None}
        if error is None:
            response["result"] = result or {}
        else:
            response["error"] = error
        self.publish(response)
