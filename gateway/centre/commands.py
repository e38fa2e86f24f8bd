"""The county centre's side of docs/protocol.md §8: build, sign and send one command, await its answer.

What `cunxiang command send` runs, so that an operator never hand-crafts a
command: the payload always names its target `station`, carries a fresh `id`,
`sent` now and `expires` a few minutes later (at most the stations'
`security.max_command_lifetime_s`), and is signed as type `command`.
"""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.centre.alerts import CentreError, _CentreClient, parse_broker
from gateway.downlink.command_model import parse_command
from gateway.downlink.envelope import seal

#: Default `expires` − `sent`; stations refuse more than security.max_command_lifetime_s (600).
DEFAULT_COMMAND_EXPIRES_IN_S = 300
POLL_S = 0.05


@dataclass(frozen=True)
class CommandSpec:
    """What the operator asked for: which station, which command, its arguments."""

    station: str
    cmd: str
    args: dict[str, Any] = field(default_factory=dict)
    command_id: str | None = None
    expires_in_s: int = DEFAULT_COMMAND_EXPIRES_IN_S


def parse_args(values: tuple[str, ...]) -> dict[str, Any]:
    """Command arguments from the command line: one JSON object, or `name=value` words.

    A value is read as JSON when it is JSON (`volume=0.5`, `from_seq=10`), else as text.
    CentreError for anything else.
    """
    if len(values) == 1 and values[0].lstrip().startswith("{"):
        try:
            obj = json.loads(values[0])
        except ValueError as exc:
            raise CentreError(f"arguments: not a JSON object ({exc})") from None
        if not isinstance(obj, dict):
            raise CentreError("arguments: not a JSON object")
        return obj
    args: dict[str, Any] = {}
    for value in values:
        name, sep, text = value.partition("=")
        if not sep or not name:
            raise CentreError(f"argument {value!r}: write name=value, or one JSON object")
        try:
            args[name] = json.loads(text)
        except ValueError:
            args[name] = text
    return args


def build_command(spec: CommandSpec, now: datetime) -> bytes:
    """The §8 payload for `spec`, sent `now` (aware); PayloadError if a station would refuse it."""
    sent = now.replace(microsecond=0)
    body = {
        "id": spec.command_id or f"cmd-{sent.strftime('%Y%m%d%H%M%S')}-{secrets.token_hex(4)}",
        "station": spec.station,
        "sent": sent.isoformat(),
        "expires": (sent + timedelta(seconds=spec.expires_in_s)).isoformat(),
        "cmd": spec.cmd,
        "args": spec.args,
    }
    payload = json.dumps(body, ensure_ascii=False).encode("utf-8")
    parse_command(payload)  # the station's own check: fail here, not there
    return payload


def seal_command(payload: bytes, key_name: str, private_key: Ed25519PrivateKey) -> bytes:
    """The signed envelope (type `command`) carrying `payload`."""
    return seal(payload, "command", key_name, private_key)


def command_topic(prefix: str, station: str) -> str:
    return f"{prefix}/station/{station}/cmd"


def send_and_wait(
    broker: str, prefix: str, station: str, envelope: bytes, command_id: str, wait_s: float
) -> dict[str, Any] | None:
    """Publish `envelope` on the station's `cmd` topic; its response, or None after `wait_s`."""
    host, port = parse_broker(broker)
    client = _CentreClient(host, port)
    client.connect(f"{prefix}/station/{station}/cmd/res")
    try:
        client.publish(command_topic(prefix, station), envelope)
        deadline = time.monotonic() + max(wait_s, 0.0)
        while True:
            for _topic, raw in client.collected():
                try:
                    response = json.loads(raw)
                except (ValueError, UnicodeDecodeError):
                    continue
                if isinstance(response, dict) and response.get("id") == command_id:
                    return response
            if time.monotonic() >= deadline:
                return None
            time.sleep(POLL_S)
    finally:
        client.close()
