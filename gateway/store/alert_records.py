"""What the alert log keeps about each entry: a typed record, and its compact form.

Why this module exists: the intake, the programme scheduler and the village microphone log
what they accept (gateway/store/alert_log.py), and the intake, the scheduler and the status
read it back after a restart. An `AlertRecord` says what each of them may find there; it is
stored as JSON in the ``record`` column, in the form earlier releases wrote and read.

Kept as it arrived, one CAP alert with a few MiB of inline audio would be a few MiB of
database for ever, and the storage budget could only make room by deleting unsent readings.
So while an entry is unfinished its record holds the signed payload once (what a restart
needs to play it again) plus a small summary; when it reaches a final state (played, failed,
cancelled, ...) the record becomes compact — kind, key, level, times, payload SHA-256 — and
the payload (with its audio) is gone.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from audio.levels import Level

#: Log states after which a broadcast never plays again.
FINAL_STATES = frozenset(
    {"played", "failed", "cancelled", "expired", "superseded", "rejected", "done"}
)
#: Alert members kept in a record's summary (what `cunxiang status` shows).
SUMMARY_FIELDS = ("id", "sender", "sent", "expires", "msg_type", "status", "level", "event")
#: Characters of a local broadcast's text a compact record keeps.
COMPACT_TEXT = 200


def summary(alert: Mapping[str, Any]) -> dict[str, Any]:
    """The few alert fields a log entry keeps for `cunxiang status` (no text, no audio)."""
    return {name: alert[name] for name in SUMMARY_FIELDS if name in alert}


@dataclass(frozen=True, slots=True)
class AlertRecord:
    """What the log keeps about one accepted broadcast or command.

    ``kind`` says which members apply: ``central`` (an alert from the centre: format, key,
    payload, alert), ``local`` (a rule's alarm: rule, text, clip, repeat), ``programme`` (a
    routine item: key, schedule, item, day, at_ms), ``microphone`` (a village microphone use)
    or ``command`` (a command from the centre, logged so that it runs once).
    """

    kind: str
    #: How a central alert arrived ("cap", or its JSON form's name).
    format: str | None = None
    #: The signing key of a central alert; the schedule's key of a programme item.
    key: str | None = None
    #: The signed payload as received, while the entry is unfinished (a restart parses it).
    payload: bytes | None = None
    payload_sha256: str | None = None
    #: The alert's `summary` (entries of older releases hold the whole alert's JSON form).
    alert: dict[str, Any] | None = None
    level: Level | None = None
    rule: str | None = None
    text: str | None = None
    clip: str | None = None
    repeat: int | None = None
    schedule: str | None = None
    item: str | None = None
    #: The programme item's day (ISO date) and start (epoch ms).
    day: str | None = None
    at_ms: int | None = None
    #: When the broadcast may no longer start (epoch ms; 0: not applicable).
    expires_ms: int = 0
    silent: bool = False
    #: True once the record is compact (see the module docstring).
    compact: bool = False

    def __post_init__(self) -> None:
        if self.payload is not None and self.payload_sha256 is None:
            digest = hashlib.sha256(self.payload).hexdigest()
            object.__setattr__(self, "payload_sha256", digest)

    @property
    def sound_level(self) -> Level:
        """The level it plays at: every record has one but a command's."""
        if self.level is None:
            raise ValueError(f"a {self.kind} record without a level")
        return self.level

    def compacted(self) -> AlertRecord:
        """The record of a finished entry: no payload, no audio, no long text."""
        text = self.text[:COMPACT_TEXT] if self.kind == "local" and self.text is not None else None
        return dataclasses.replace(
            self,
            payload=None,
            alert=None if self.alert is None else summary(self.alert),
            text=text,
            schedule=None,
            item=None,
            day=None,
            at_ms=None,
            compact=True,
        )

    def to_json(self) -> str:
        """The ``record`` column: the members that are set; the payload as text when it is
        UTF-8, else as ``payload_b64``."""
        doc: dict[str, Any] = {}
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if field.name == "payload" and value is not None:
                try:
                    doc["payload"] = value.decode("utf-8")
                except UnicodeDecodeError:
                    doc["payload_b64"] = base64.b64encode(value).decode("ascii")
            elif field.name == "compact":
                if value:
                    doc["compact"] = True
            elif value is not None or field.name in ("expires_ms", "silent"):
                doc[field.name] = value
        return json.dumps(doc, ensure_ascii=False, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> AlertRecord:
        """A ``record`` column as this or an earlier release wrote it."""
        doc: dict[str, Any] = json.loads(text)
        payload = None
        if isinstance(doc.get("payload_b64"), str):
            payload = base64.b64decode(doc["payload_b64"])
        elif isinstance(doc.get("payload"), str):
            payload = str(doc["payload"]).encode("utf-8")
        known = {f.name for f in dataclasses.fields(cls)} - {"payload", "kind"}
        members = {name: value for name, value in doc.items() if name in known}
        members["expires_ms"] = int(members.get("expires_ms") or 0)
        members["silent"] = bool(members.get("silent"))
        members["compact"] = bool(members.get("compact"))
        if not isinstance(members.get("alert"), dict):
            members["alert"] = None
        if members.get("level") is not None:
            members["level"] = Level(members["level"])
        return cls(kind=str(doc.get("kind") or "central"), payload=payload, **members)


@dataclass(frozen=True, slots=True)
class LogEntry:
    """One entry of the alert log: its id, state and times, and its record."""

    id: str
    state: str
    received_ts: int
    updated_ts: int
    record: AlertRecord

    @classmethod
    def from_row(cls, row: tuple[Any, ...], pending: tuple[str, int] | None = None) -> LogEntry:
        """A row of table ``alerts`` (id, state, received_ts, updated_ts, record); with
        `pending`, the (state, updated_ts) that rides with the next commit."""
        alert_id, state, received_ts, updated_ts, record = row
        if pending is not None:
            state, updated_ts = pending
        return cls(
            id=str(alert_id),
            state=str(state),
            received_ts=int(received_ts),
            updated_ts=int(updated_ts),
            record=AlertRecord.from_json(str(record)),
        )
