"""1,000 random envelopes at the running station: no crash, no sound, still answering.

The generator is seeded (the seed is in the test id, so a failure can be
replayed) and mixes what a broken or hostile network delivers: random bytes,
random JSON, envelope-shaped objects with wrong fields, valid envelopes with a
flipped byte, unknown keys, and — signed by the trusted key — payloads that are
broken alerts, broken CAP and broken commands (a centre with a bug). Nothing in
the mix is a valid alert or command, so nothing may sound. Envelope failures
are rate-limited, so the whole flood yields at most one immediate
`downlink_rejected` event per reason.
"""

from __future__ import annotations

import base64
import json
import random
import string
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.downlink.cap import build_cap
from gateway.downlink.envelope import seal
from gateway.downlink.rejections import REASONS
from harness.station import topic
from tests.e2e.conftest import (
    CMD_TOPIC,
    RECEIPT_TOPIC,
    STATION_ALERT_TOPIC,
    TOWN_TOPIC,
    Rig,
    running_station,
)

SEED = 20260701
COUNT = 1000
TOPICS = (TOWN_TOPIC, topic("alert", "all"), topic("alert", "37"), STATION_ALERT_TOPIC, CMD_TOPIC)
ALERT_FIELDS = ("id", "sender", "sent", "expires", "msg_type", "status", "level", "event", "areas")
COMMAND_FIELDS = ("id", "sent", "expires", "cmd")
#: Wrong for every field above: none of them takes a non-string (areas: a list of codes).
WRONG_VALUES: tuple[Any, ...] = (None, 12345, -1.5, {}, True, 2**80)


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    with running_station(tmp_path_factory.mktemp("fuzz")) as station:
        yield station


class Garbage:
    """Random downlink messages, none of which is a valid alert or command."""

    def __init__(self, rig: Rig, seed: int) -> None:
        self.rig = rig
        self.rng = random.Random(seed)
        self.forger = Ed25519PrivateKey.generate()
        self.kinds: list[Callable[[], bytes]] = [
            self.random_bytes,
            self.random_json,
            self.envelope_shaped,
            self.flipped_byte,
            self.resigned_by_forger,
            self.unknown_key,
            self.broken_alert,
            self.broken_cap,
            self.broken_command,
            self.signed_noise,
        ]

    def message(self) -> tuple[str, bytes]:
        return self.rng.choice(TOPICS), self.rng.choice(self.kinds)()

    # -- not even an envelope --------------------------------------------------------------

    def random_bytes(self) -> bytes:
        return self.rng.randbytes(self.rng.randrange(0, 400))

    def random_value(self, depth: int = 0) -> Any:
        choice = self.rng.randrange(7 if depth < 3 else 4)
        if choice == 0:
            return None
        if choice == 1:
            return self.rng.choice([True, False, 0, -1, 2**70, 1e308])
        if choice == 2:
            return self.text()
        if choice == 3:
            return self.rng.uniform(-1e6, 1e6)
        if choice in (4, 5):
            return {self.text(): self.random_value(depth + 1) for _ in range(self.rng.randrange(5))}
        return [self.random_value(depth + 1) for _ in range(self.rng.randrange(5))]

    def text(self) -> str:
        alphabet = string.printable + "警报撤离洪水\u202e\ud7ff"
        return "".join(self.rng.choice(alphabet) for _ in range(self.rng.randrange(0, 30)))

    def random_json(self) -> bytes:
        return json.dumps(self.random_value()).encode()

    def envelope_shaped(self) -> bytes:
        envelope: dict[str, Any] = {
            "key": self.rng.choice([self.rig.centre.name, self.text()]),
            "type": self.rng.choice(["alert", "cap", "command", "ALERT", self.text()]),
            "payload": base64.b64encode(self.rng.randbytes(40)).decode(),
            "sig": base64.b64encode(self.rng.randbytes(64)).decode(),
        }
        for _ in range(self.rng.randrange(3)):
            name = self.rng.choice([*envelope, "alg", self.text()])
            if self.rng.random() < 0.5:
                envelope.pop(name, None)
            else:
                envelope[name] = self.random_value()
        return json.dumps(envelope).encode()

    # -- valid envelopes, spoiled ------------------------------------------------------------

    def valid(self) -> bytes:
        alert = self.rig.alert(level=self.rng.choice(["red", "blue"]))
        return self.rig.centre.seal_alert(alert, cap=self.rng.random() < 0.3)

    def flipped_byte(self) -> bytes:
        raw = bytearray(self.valid())
        index = self.rng.randrange(len(raw))
        raw[index] ^= 1 << self.rng.randrange(8)
        return bytes(raw)

    def resigned_by_forger(self) -> bytes:
        envelope = json.loads(self.valid())
        payload = base64.b64decode(envelope["payload"])
        return seal(payload, envelope["type"], self.rig.centre.name, self.forger)

    def unknown_key(self) -> bytes:
        envelope = json.loads(self.valid())
        payload = base64.b64decode(envelope["payload"])
        return seal(payload, envelope["type"], "k-" + self.text()[:10], self.forger)

    # -- signed by the trusted key, but broken inside ------------------------------------------

    def spoil(self, fields: dict[str, Any], required: tuple[str, ...]) -> dict[str, Any]:
        for name in self.rng.sample(required, self.rng.randrange(1, 3)):
            if self.rng.random() < 0.4:
                del fields[name]
            else:
                fields[name] = self.rng.choice(WRONG_VALUES)
        return fields

    def broken_alert(self) -> bytes:
        fields = self.spoil(self.rig.alert_fields(level="red"), ALERT_FIELDS)
        return self.rig.sealed_fields(fields)

    def broken_cap(self) -> bytes:
        document = build_cap(self.rig.alert(level="red")).decode()
        for element in self.rng.sample(["identifier", "sent", "msgType", "info", "status"], 2):
            document = document.replace(f"<{element}>", f"<x{element}>", 1).replace(
                f"</{element}>", f"</x{element}>", 1
            )
        if self.rng.random() < 0.3:
            document = document[: self.rng.randrange(len(document))]
        return seal(document.encode(), "cap", self.rig.centre.name, self.rig.centre.key)

    def broken_command(self) -> bytes:
        body = json.loads(
            base64.b64decode(json.loads(self.rig.centre.seal_command("status"))["payload"])
        )
        if self.rng.random() < 0.5:
            body = self.spoil(body, COMMAND_FIELDS)
        else:
            body["cmd"] = self.rng.choice(["reboot", "play", "shell", "speaker-test", ""])
        return self.rig.sealed_fields(body, "command")

    def signed_noise(self) -> bytes:
        payload = self.rng.choice([self.random_bytes(), self.random_json()])
        type_ = self.rng.choice(["alert", "cap", "command"])
        return seal(payload, type_, self.rig.centre.name, self.rig.centre.key)


@pytest.mark.parametrize("seed", [SEED])
def test_thousand_random_envelopes_make_no_sound_and_no_crash(rig: Rig, seed: int) -> None:
    garbage = Garbage(rig, seed)
    mark = rig.mark()
    infos = []
    for _ in range(COUNT):
        topic_, raw = garbage.message()
        infos.append(rig.sub.client.publish(topic_, raw, qos=1))
    for info in infos:
        info.wait_for_publish(10)

    status = rig.barrier()  # handled every one of them, and still answers
    assert rig.station.running()
    assert status["queue"] == [] and status["audio"] == "idle"
    rig.settle()
    assert rig.silent_since(mark)
    receipts = rig.on(RECEIPT_TOPIC, mark)
    assert {r["status"] for r in receipts} <= {"rejected", "expired"}
    events = rig.events("downlink_rejected", mark)
    reasons = [e["reason"] for e in events]
    assert len(reasons) == len(set(reasons)) and set(reasons) <= REASONS
    log = rig.log()
    assert "Traceback" not in log and "unexpected error" not in log
