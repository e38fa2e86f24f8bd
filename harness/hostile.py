"""Hostile downlink: forged, replayed, malformed, oversized and misdirected messages, and what each must cause.

Why this module exists: someone will one day try to make a village's loudspeakers speak.
`HostileDownlink` builds a seeded stream of messages a station must refuse, each with what
docs/protocol.md §6–§8 prescribe for it, so a test can send thousands and check the station's
answers one by one:

* ``event:<reason>`` — fails as an envelope (§6): a ``downlink_rejected`` event of that reason
  (the first of a reason at once, the rest folded per minute), no receipt, no sound;
* ``receipt:<status>:<reason>`` — verified (signed by the trusted key) but wrong: one receipt
  with that status (``rejected`` with the reason, or ``expired``) for the message's id;
* ``response:<error>`` — a verified command that is wrong: a ``{"ok": false}`` response;
* ``silent`` — must cause nothing at all: a replay of an accepted alert or command (§6.1: no new
  receipt), an alert for another village on an area topic;
* ``unseen`` — published where the station does not subscribe (another station, another
  area): the broker never delivers it.

Families (`FAMILIES`): random bytes, random JSON, mutated envelopes (missing, extra, non-string
or duplicate fields, bad base64, unknown type or algorithm), forged signatures, bit-flipped
payloads, unknown keys, oversized messages and payloads, signed payloads that are not alerts,
XML attacks (billion laughs, external entities) signed and unsigned, bad statuses, times,
clips and audio, wrong topics, and replays.

Key names are untrusted text too: `untrusted_key_text` sends unknown keys that are lone UTF-16
surrogate escapes (``"\\ud800"``, which once broke the store: the event could not be encoded),
line breaks (a forged log line) and 5,000 characters; they must end as plain ``unknown_key``.
"""

from __future__ import annotations

import base64
import io
import json
import random
import wave
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.downlink.alert_model import InlineAudio, alert_to_json
from gateway.downlink.cap import build_cap
from gateway.downlink.envelope import max_raw_size, seal
from harness.cap_vectors import CAP_DIR
from harness.station import AREA, STATION_ID, Centre, station_topic, topic

TOWN_TOPIC = topic("alert", AREA[:9])
AREA_TOPICS = [topic("alert", "all"), *(topic("alert", AREA[:n]) for n in (2, 4, 6, 9, 12))]
STATION_ALERT = station_topic("alert")
STATION_CMD = station_topic("cmd")


def _packet_size(message: Hostile) -> int:
    """An upper bound of the MQTT 5 PUBLISH packet carrying `message` to the station."""
    return len(message.payload) + len(message.topic.encode()) + 16


def _unseen(message: Hostile) -> Hostile:
    return Hostile(message.family, message.topic, message.payload, "unseen", message.ident)


@dataclass(frozen=True)
class Hostile:
    """One message and what it must cause."""

    family: str
    topic: str
    payload: bytes
    expect: str
    ident: str | None = None  # the alert or command id a receipt or response names

    @property
    def reason(self) -> str:
        return self.expect.split(":")[-1]


class HostileDownlink:
    """A seeded generator of `Hostile` messages against one station."""

    def __init__(self, centre: Centre, seed: int, max_payload_bytes: int) -> None:
        self.centre = centre
        self.rng = random.Random(seed)
        self.max_payload = max_payload_bytes
        self.forger = Ed25519PrivateKey.generate()
        self.accepted: list[bytes] = []  # raw alerts the station accepted: material for replays
        self.answered_commands: list[bytes] = []
        self._n = 0
        self.families: dict[str, Callable[[], Hostile]] = {
            "random_bytes": self._random_bytes,
            "random_json": self._random_json,
            "deep_json": self._deep_json,
            "huge_number": self._huge_number,
            "missing_field": self._missing_field,
            "extra_field": self._extra_field,
            "non_string_field": self._non_string_field,
            "duplicate_field": self._duplicate_field,
            "bad_base64": self._bad_base64,
            "unknown_type": self._unknown_type,
            "unknown_alg": self._unknown_alg,
            "forged_signature": self._forged_signature,
            "bit_flip": self._bit_flip,
            "unknown_key": self._unknown_key,
            "untrusted_key_text": self._untrusted_key_text,
            "too_large_raw": self._too_large_raw,
            "too_large_payload": self._too_large_payload,
            "command_on_alert_topic": self._command_on_alert_topic,
            "alert_on_command_topic": self._alert_on_command_topic,
            "other_station_topic": self._other_station_topic,
            "other_area_topic": self._other_area_topic,
            "signed_not_json": self._signed_not_json,
            "signed_bad_alert": self._signed_bad_alert,
            "signed_xml_bomb": self._signed_xml("billion-laughs.cap"),
            "signed_xxe": self._signed_xml("xee.cap"),
            "unsigned_xml_bomb": self._unsigned_xml,
            "unsupported_status": self._unsupported_status,
            "from_future": self._from_future,
            "expired": self._expired,
            "unknown_clip": self._unknown_clip,
            "bad_audio": self._bad_audio,
            "other_village_on_area_topic": self._other_village,
            "other_village_on_station_topic": self._other_village_direct,
            "expired_command": self._expired_command,
            "bad_command": self._bad_command,
            "replayed_alert": self._replayed_alert,
            "replayed_command": self._replayed_command,
            # Trust revision 2 (docs/protocol.md §6, §6.1, §8).
            "relabelled_type": self._relabelled_type,
            "command_for_other_station": self._command_for_other_station,
            "alert_for_other_station": self._alert_for_other_station,
            "reserved_reference": self._reserved_reference,
        }
        self.families.update(self._bounds_families())
        self._answered: list[Hostile] = []  # answered messages: material for replays

    # -- the stream ------------------------------------------------------------------------

    def messages(
        self,
        count: int,
        huge_every: int = 200,
        giants: int = 0,
        packet_limit: int | None = None,
        giant_mib: tuple[int, int] = (4, 8),
    ) -> list[Hostile]:
        """`count` messages, families in a seeded random order.

        Oversized ones (up to 3× the limit) come every `huge_every`; `giants` of them are
        `giant_mib` (low, high) MiB instead, at random places. With `packet_limit` (the Maximum Packet Size an
        MQTT 5 station declares, gateway.uplink.settings.max_packet_bytes) a message whose packet is
        larger never reaches the station: the broker drops it, so it must cause nothing.
        """
        out: list[Hostile] = []
        names = [n for n in self.families if not n.startswith("too_large")]
        for i in range(count):
            if i % huge_every == huge_every - 1:
                name = self.rng.choice([n for n in self.families if n.startswith("too_large")])
            else:
                name = self.rng.choice(names)
            out.append(self.families[name]())
            self._remember_answered(out[-1])
        for _ in range(min(giants, count)):
            size = self.rng.randint(*giant_mib) * 1024 * 1024
            giant = Hostile(
                "giant", self._area_topic(), b"[" + b"0," * (size // 2) + b"0]", "event:too_large"
            )
            out[self.rng.randrange(len(out))] = giant
        if packet_limit is not None:
            out = [m if _packet_size(m) <= packet_limit else _unseen(m) for m in out]
        return out

    # -- building blocks -------------------------------------------------------------------

    def _id(self, prefix: str) -> str:
        self._n += 1
        return f"{prefix}-{self._n}-{self.rng.randrange(1 << 30)}"

    def _alert(self, **fields: Any) -> tuple[str, bytes]:
        """A valid alert for this station (beep clip, red), as JSON bytes, with `fields` changed."""
        alert = self.centre.alert(clip="beep", level="red", tone="siren", id=self._id("hostile"))
        body: dict[str, Any] = json.loads(alert_to_json(alert))
        body.update(fields)
        return str(body["id"]), json.dumps(body, ensure_ascii=False).encode()

    def _envelope(self, payload: bytes, type_: str = "alert") -> dict[str, str]:
        return json.loads(seal(payload, type_, self.centre.name, self.centre.key))  # type: ignore[no-any-return]

    def _trusted(self, payload: bytes, type_: str = "alert") -> bytes:
        return seal(payload, type_, self.centre.name, self.centre.key)

    def _area_topic(self) -> str:
        return self.rng.choice([*AREA_TOPICS, STATION_ALERT])

    def _event(self, family: str, payload: bytes, reason: str, where: str | None = None) -> Hostile:
        return Hostile(family, where or self._area_topic(), payload, f"event:{reason}")

    # -- envelope failures -----------------------------------------------------------------

    def _random_bytes(self) -> Hostile:
        return self._event(
            "random_bytes", self.rng.randbytes(self.rng.randint(0, 2000)), "bad_envelope"
        )

    def _random_json(self) -> Hostile:
        def value(depth: int) -> Any:
            kind = self.rng.randrange(6 if depth < 4 else 3)
            if kind == 0:
                return self.rng.randint(-(10**12), 10**12)
            if kind == 1:
                return self.rng.choice([None, True, False, 1.5e300, "x" * self.rng.randint(0, 50)])
            if kind == 2:
                return "".join(
                    chr(self.rng.randint(32, 0x4DFF)) for _ in range(self.rng.randint(0, 20))
                )
            if kind == 3:
                return [value(depth + 1) for _ in range(self.rng.randint(0, 4))]
            keys = ["key", "type", "payload", "sig", "alg", "id", "zz"]
            return {self.rng.choice(keys): value(depth + 1) for _ in range(self.rng.randint(0, 5))}

        return self._event("random_json", json.dumps(value(0)).encode(), "bad_envelope")

    def _deep_json(self) -> Hostile:
        depth = self.rng.randint(2000, 20000)
        return self._event("deep_json", b"[" * depth + b"]" * depth, "bad_envelope")

    def _huge_number(self) -> Hostile:
        digits = "9" * self.rng.randint(5000, 20000)
        return self._event("huge_number", f'{{"key": {digits}}}'.encode(), "bad_envelope")

    def _valid_fields(self) -> dict[str, str]:
        return self._envelope(self._alert()[1])

    def _missing_field(self) -> Hostile:
        env = self._valid_fields()
        del env[self.rng.choice(["key", "type", "payload", "sig"])]
        return self._event("missing_field", json.dumps(env).encode(), "bad_envelope")

    def _extra_field(self) -> Hostile:
        env = self._valid_fields()
        env[self.rng.choice(["id", "payload2", "x", "KEY"])] = "1"
        return self._event("extra_field", json.dumps(env).encode(), "bad_envelope")

    def _non_string_field(self) -> Hostile:
        env: dict[str, Any] = dict(self._valid_fields())
        env[self.rng.choice(["type", "payload", "sig", "alg"])] = self.rng.choice([1, None, [], {}])
        return self._event("non_string_field", json.dumps(env).encode(), "bad_envelope")

    def _duplicate_field(self) -> Hostile:
        env = self._valid_fields()
        text = json.dumps(env)
        raw = text[:-1] + ', "type": "alert"}'
        return self._event("duplicate_field", raw.encode(), "bad_envelope")

    def _bad_base64(self) -> Hostile:
        env = self._valid_fields()
        field = self.rng.choice(["payload", "sig"])
        good = env[field]
        env[field] = self.rng.choice(
            [good + "=", good.rstrip("="), "!!" + good, good + "\n", good[:-1]]
        )
        if env[field] == good:  # stripping the padding of text that had none: spoil it for sure
            env[field] = "*" + good
        return self._event("bad_base64", json.dumps(env).encode(), "bad_envelope")

    def _unknown_type(self) -> Hostile:
        env = self._valid_fields()
        env["type"] = self.rng.choice(["Alert", "xml", "", "audio", "cmd"])
        return self._event("unknown_type", json.dumps(env).encode(), "bad_envelope")

    def _unknown_alg(self) -> Hostile:
        env = self._valid_fields()
        env["alg"] = self.rng.choice(["sm2-sm3", "rsa", "none", "ED25519", ""])
        return self._event("unknown_alg", json.dumps(env).encode(), "bad_envelope")

    def _forged_signature(self) -> Hostile:
        """The worst case: a red alert for this village, signed by the wrong key under the right name."""
        _, payload = self._alert()
        raw = seal(payload, "alert", self.centre.name, self.forger)
        return self._event("forged_signature", raw, "bad_signature")

    def _bit_flip(self) -> Hostile:
        env = self._valid_fields()
        data = bytearray(base64.b64decode(env["payload"]))
        data[self.rng.randrange(len(data))] ^= 1 << self.rng.randrange(8)
        env["payload"] = base64.b64encode(bytes(data)).decode()
        return self._event("bit_flip", json.dumps(env).encode(), "bad_signature")

    def _unknown_key(self) -> Hostile:
        _, payload = self._alert()
        name = self.rng.choice(
            ["attacker", "linqing-ema-2025", self.centre.name + " ", "中心", "k" * 200]
        )
        return self._event("unknown_key", seal(payload, "alert", name, self.forger), "unknown_key")

    def _untrusted_key_text(self) -> Hostile:
        key = self.rng.choice(["\\ud800", "x\\udfff\\ud800", "a\\nERROR forged line", "k" * 5000])
        return self._event("untrusted_key_text", surrogate_key_envelope(key), "unknown_key")

    def _too_large_raw(self) -> Hostile:
        size = max_raw_size(self.max_payload) + self.rng.randint(1, 3 * self.max_payload)
        return self._event("too_large_raw", b"{" + b" " * size + b"}", "too_large")

    def _too_large_payload(self) -> Hostile:
        payload = b"x" * (self.max_payload + self.rng.randint(1, 2000))
        return self._event("too_large_payload", self._trusted(payload), "too_large")

    def _command_on_alert_topic(self) -> Hostile:
        raw = self.centre.seal_command("cancel_all")
        return self._event("command_on_alert_topic", raw, "bad_envelope", self._area_topic())

    def _alert_on_command_topic(self) -> Hostile:
        _, payload = self._alert()
        return self._event(
            "alert_on_command_topic", self._trusted(payload), "bad_envelope", STATION_CMD
        )

    def _other_station_topic(self) -> Hostile:
        _, payload = self._alert()
        where = self.rng.choice(["alert", "cmd"])
        other = f"cx/v1/station/{STATION_ID[:-2]}99/{where}"
        return Hostile("other_station_topic", other, self._trusted(payload), "unseen")

    def _other_area_topic(self) -> Hostile:
        alert_id, payload = self._alert()
        where = topic("alert", self.rng.choice(["11", "1101", "371582", "371581002"]))
        return Hostile("other_area_topic", where, self._trusted(payload), "unseen", alert_id)

    def _unsigned_xml(self) -> Hostile:
        xml = (CAP_DIR / "billion-laughs.cap").read_bytes()
        return self._event(
            "unsigned_xml_bomb", seal(xml, "cap", self.centre.name, self.forger), "bad_signature"
        )

    # -- verified but wrong ----------------------------------------------------------------

    def _signed_not_json(self) -> Hostile:
        payload = self.rng.choice([b"", b"not json", self.rng.randbytes(64), b"[1,2,3]", b'"id"'])
        return self._event("signed_not_json", self._trusted(payload), "bad_payload")

    def _signed_bad_alert(self) -> Hostile:
        alert_id, payload = self._alert()
        body = json.loads(payload)
        spoil = self.rng.choice(["level", "areas", "sent", "repeat", "msg_type"])
        body[spoil] = {
            "level": "purple",
            "areas": ["12x"],
            "sent": "yesterday",
            "repeat": 99,
            "msg_type": "update",
        }[spoil]
        raw = self._trusted(json.dumps(body).encode())
        return Hostile(
            "signed_bad_alert", self._area_topic(), raw, "receipt:rejected:bad_payload", alert_id
        )

    def _signed_xml(self, name: str) -> Callable[[], Hostile]:
        def build() -> Hostile:
            raw = self._trusted((CAP_DIR / name).read_bytes(), "cap")
            family = "signed_xml_bomb" if "laughs" in name else "signed_xxe"
            return self._event(family, raw, "bad_payload")

        return build

    def _receipt(self, family: str, answer: str, reason: str, **fields: Any) -> Hostile:
        alert_id, payload = self._alert(**fields)
        expect = f"receipt:{answer}:{reason}"
        return Hostile(family, self._area_topic(), self._trusted(payload), expect, alert_id)

    def _unsupported_status(self) -> Hostile:
        status = self.rng.choice(["system", "draft", "Actual", ""])
        return self._receipt("unsupported_status", "rejected", "unsupported_status", status=status)

    def _from_future(self) -> Hostile:
        sent = datetime.now(UTC) + timedelta(hours=self.rng.randint(1, 48))
        expires = sent + timedelta(hours=1)
        return self._receipt(
            "from_future",
            "rejected",
            "from_future",
            sent=sent.isoformat(),
            expires=expires.isoformat(),
        )

    def _expired(self) -> Hostile:
        sent = datetime.now(UTC) - timedelta(hours=self.rng.randint(2, 48))
        return self._receipt(
            "expired",
            "expired",
            "",
            sent=sent.isoformat(),
            expires=(sent + timedelta(hours=1)).isoformat(),
        )

    def _unknown_clip(self) -> Hostile:
        clip = self.rng.choice(["no_such_clip", "../../etc/passwd", "Beep", "a" * 65, "beep.wav"])
        reason = "unknown_clip"
        return self._receipt("unknown_clip", "rejected", reason, clip=clip)

    def _bad_audio(self) -> Hostile:
        data = self.rng.choice([b"RIFF....WAVEfmt ", self.rng.randbytes(300), b""])
        audio = {"format": "wav", "data": base64.b64encode(data).decode()}
        return self._receipt("bad_audio", "rejected", "bad_audio", audio=audio)

    def _other_village(self) -> Hostile:
        alert_id, payload = self._alert(areas=["371581002"])
        # The county's topic: the station hears it, but the alert is for another village.
        where = topic("alert", AREA[:6])
        return Hostile(
            "other_village_on_area_topic", where, self._trusted(payload), "silent", alert_id
        )

    def _other_village_direct(self) -> Hostile:
        alert_id, payload = self._alert(areas=["110101"])
        expect = "receipt:rejected:not_for_this_area"
        return Hostile(
            "other_village_on_station_topic",
            STATION_ALERT,
            self._trusted(payload),
            expect,
            alert_id,
        )

    def _command(self, **fields: Any) -> tuple[str, bytes]:
        raw = self.centre.seal_command("status", **fields)
        command_id = json.loads(base64.b64decode(json.loads(raw)["payload"]))["id"]
        return command_id, raw

    def _expired_command(self) -> Hostile:
        sent = datetime.now(UTC) - timedelta(hours=3)
        command_id, raw = self._command(
            id=self._id("cmd"),
            sent=sent.isoformat(),
            expires=(sent + timedelta(minutes=5)).isoformat(),  # within the lifetime cap (§8)
        )
        return Hostile("expired_command", STATION_CMD, raw, "response:expired", command_id)

    def _bad_command(self) -> Hostile:
        body = {
            "id": self._id("cmd"),
            "sent": datetime.now(UTC).isoformat(),
            "expires": (datetime.now(UTC) + timedelta(minutes=5)).isoformat(),
            "cmd": self.rng.choice(["reboot", "shell", "resend"]),
            "args": {"from_seq": 5, "to_seq": 1},
        }
        raw = self._trusted(json.dumps(body).encode(), "command")
        return Hostile("bad_command", STATION_CMD, raw, "response:bad_payload", str(body["id"]))

    def _replayed_alert(self) -> Hostile:
        if not self.accepted:
            return self._forged_signature()
        return Hostile(
            "replayed_alert", self._area_topic(), self.rng.choice(self.accepted), "silent"
        )

    def _relabelled_type(self) -> Hostile:
        """A signed command's payload under the type `alert`: the signature covers the type."""
        env = json.loads(self.centre.seal_command("cancel_all"))
        env["type"] = "alert"
        return self._event("relabelled_type", json.dumps(env).encode(), "bad_signature")

    def _command_for_other_station(self) -> Hostile:
        """A command captured on another station's topic, replayed onto this one."""
        command_id, raw = self._command(id=self._id("cmd"), station=f"{STATION_ID[:-2]}99")
        return Hostile(
            "command_for_other_station",
            STATION_CMD,
            raw,
            "response:not_for_this_station",
            command_id,
        )

    def _alert_for_other_station(self) -> Hostile:
        alert_id, payload = self._alert(stations=[f"{STATION_ID[:-2]}99"])
        if self.rng.random() < 0.5:
            return Hostile(
                "alert_for_other_station",
                self.rng.choice(AREA_TOPICS),
                self._trusted(payload),
                "silent",
            )
        expect = "receipt:rejected:not_for_this_station"
        return Hostile(
            "alert_for_other_station", STATION_ALERT, self._trusted(payload), expect, alert_id
        )

    def _reserved_reference(self) -> Hostile:
        ref = self.rng.choice(["local:co-danger:1", "cmd:x", "prog:a:b:2026-07-01", "mic:3"])
        return self._receipt(
            "reserved_reference", "rejected", "bad_payload", msg_type="cancel", references=[ref]
        )

    def _replayed_command(self) -> Hostile:
        if not self.answered_commands:
            return self._forged_signature()
        return Hostile(
            "replayed_command", STATION_CMD, self.rng.choice(self.answered_commands), "silent"
        )

    # -- issue 12: bounded under hostile traffic -------------------------------------------

    def _bounds_families(self) -> dict[str, Callable[[], Hostile]]:
        """Replays of answered messages, oversize CAP audio, undecodable CAP encodings,
        duplicate payload keys, unbounded references and out-of-range resends."""
        return {
            "replayed_answer": self._replayed_answer,
            "too_large_cap_audio": self._oversize_cap_audio,  # with the oversized ones
            "bad_cap_encoding": self._bad_cap_encoding,
            "duplicate_payload_key": self._duplicate_payload_key,
            "too_many_references": self._too_many_references,
            "resend_out_of_range": self._resend_out_of_range,
        }

    def _remember_answered(self, message: Hostile) -> None:
        if message.expect.startswith(("receipt:", "response:")) and message.ident is not None:
            self._answered.append(message)

    def _replayed_answer(self) -> Hostile:
        """An identical copy of a message already answered: answered once (§6), so silent.

        Its original's check (exactly one receipt or response) fails if the copy got one.
        """
        if not self._answered:
            return self._expired()
        original = self.rng.choice(self._answered)
        return Hostile("replayed_answer", original.topic, original.payload, "silent")

    def _oversize_cap_audio(self) -> Hostile:
        """A signed CAP alert whose inline WAV takes it past ``security.max_payload_bytes``."""
        # 16-bit mono: 0.8 of the limit as WAV, a little past it once base64 in the CAP text
        # (the link's own families send the 40 MiB ones).
        frames = int(self.max_payload * 0.4)
        wav = io.BytesIO()
        with wave.open(wav, "wb") as out:
            out.setnchannels(1)
            out.setsampwidth(2)
            out.setframerate(22050)
            out.writeframes(self.rng.randbytes(2 * frames))
        alert = self.centre.alert(
            clip=None, audio=InlineAudio(data=wav.getvalue()), id=self._id("hostile")
        )
        return self._event(
            "oversize_cap_audio", self._trusted(build_cap(alert), "cap"), "too_large"
        )

    def _bad_cap_encoding(self) -> Hostile:
        """A signed CAP alert declaring an encoding outside the allow-list: bad_payload."""
        encoding = self.rng.choice(
            ["hex", "base64", "rot13", "punycode", "unicode_escape", "utf-7"]
        )
        alert = self.centre.alert(clip=None, text="测试", level="red", id=self._id("hostile"))
        document = build_cap(alert).replace(b"encoding='utf-8'", f"encoding='{encoding}'".encode())
        raw = self._trusted(document, "cap")
        expect = "receipt:rejected:bad_payload"
        return Hostile("bad_cap_encoding", self._area_topic(), raw, expect, alert.id)

    def _duplicate_payload_key(self) -> Hostile:
        alert_id, payload = self._alert()
        text = payload.decode()
        spoiled = text.replace('"level": "red"', '"level": "blue", "level": "red"', 1)
        expect = "receipt:rejected:bad_payload"
        raw = self._trusted(spoiled.encode())
        return Hostile("duplicate_payload_key", self._area_topic(), raw, expect, alert_id)

    def _too_many_references(self) -> Hostile:
        refs = [f"old-{n}" for n in range(self.rng.randint(101, 3000))]
        return self._receipt(
            "too_many_references", "rejected", "bad_payload", msg_type="update", references=refs
        )

    def _resend_out_of_range(self) -> Hostile:
        span = self.rng.choice([(1, 2**63), (2**64, 2**64 + 5), (-5, 3), (2**70, 2**70)])
        raw = self.centre.seal_command("resend", {"from_seq": span[0], "to_seq": span[1]})
        command_id = json.loads(base64.b64decode(json.loads(raw)["payload"]))["id"]
        return Hostile("resend_out_of_range", STATION_CMD, raw, "response:bad_payload", command_id)


def surrogate_key_envelope(key: str = "\\ud800") -> bytes:
    """An envelope whose key name is `key` as written in the JSON text: ``unknown_key``.

    The default is the JSON escape of a lone surrogate: `json.loads` turns it into U+D800, a
    string no UTF-8 encoder accepts.
    """
    payload = base64.b64encode(b"{}").decode()
    sig = base64.b64encode(b"\0" * 64).decode()
    return f'{{"key": "{key}", "type": "alert", "payload": "{payload}", "sig": "{sig}"}}'.encode()
