"""The alert a station acts on (docs/protocol.md §6.1), its JSON form, areas and time checks.

Both wire forms of an alert — the JSON of §6.1 and CAP (gateway/downlink/cap.py) — end
as one `Alert`, so the broadcast side never knows which one arrived. A payload
that is not a valid alert raises `PayloadError` with the §7 reason code and, if
it could be read, the alert's id (so a `rejected` receipt can name it).
"""

from __future__ import annotations

import base64
import io
import json
import re
import struct
import wave
from datetime import datetime
from typing import Annotated, Any, Literal, Protocol

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_serializer,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from audio.levels import WarningLevel

MsgType = Literal["alert", "update", "cancel"]
Status = Literal["actual", "exercise", "test"]
Tone = Literal["siren", "chime", "none"]
TimeCheck = Literal["ok", "expired", "from_future"]

STATUSES: frozenset[str] = frozenset({"actual", "exercise", "test"})
CLIP_NAME = re.compile(r"[a-z0-9_-]{1,64}")
AREA_LENGTHS: tuple[int, ...] = (2, 4, 6, 9, 12)
ALL_AREAS = "all"
ID_MAX_CHARS = 128
#: The language of `text` (BCP 47, docs/protocol.md §6.1): picks the speech voice.
DEFAULT_LANGUAGE = "zh-CN"
LANGUAGE_TAG = r"^[A-Za-z]{2,8}(-[A-Za-z0-9]{1,8}){0,8}$"

# Reason codes a payload can fail with (docs/protocol.md §7), most general first.
PAYLOAD_REASONS: tuple[str, ...] = (
    "bad_payload",
    "unsupported_status",
    "unknown_clip",
    "bad_audio",
)

# Bounds on inline WAV audio the player can be asked to play.
WAV_CHANNELS = (1, 2)
WAV_SAMPLE_WIDTHS = (1, 2, 3, 4)
WAV_MIN_RATE = 8_000
WAV_MAX_RATE = 192_000


class PayloadError(Exception):
    """A verified payload that is not a valid alert or command.

    `reason` is a docs/protocol.md §7 reason code; `alert_id` is the message's id
    when it could be read (send a `rejected` receipt), else None (send a
    `downlink_rejected` event).
    """

    def __init__(self, reason: str, detail: str, alert_id: str | None = None) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail
        self.alert_id = alert_id


def is_valid_id(value: object) -> bool:
    """True for 1–128 printable characters (docs/protocol.md §6.1)."""
    return isinstance(value, str) and 0 < len(value) <= ID_MAX_CHARS and value.isprintable()


def _printable_id(value: str) -> str:
    if not is_valid_id(value):
        raise ValueError("id must be 1-128 printable characters")
    return value


#: The `id` of an alert or a command (docs/protocol.md §6.1, §8).
MessageId = Annotated[str, AfterValidator(_printable_id)]


def normalize_area(code: str) -> str:
    """Return the canonical form of an area code, or raise ValueError.

    Codes are `all` or 2, 4, 6, 9 or 12 digits. Zero padding, as in GB/T 2260
    (`370000` is the province `37`, `371500` the city `3715`) and in 12-digit
    codes (`371581001000` is the town `371581001`), is removed so the code can
    be matched against an area path.
    """
    text = code.strip()
    if text.casefold() == ALL_AREAS:
        return ALL_AREAS
    if not (text.isascii() and text.isdigit() and len(text) in AREA_LENGTHS):
        raise ValueError(f"area {code!r} is not 'all' or a 2/4/6/9/12-digit division code")
    while len(text) > AREA_LENGTHS[0]:
        shorter = AREA_LENGTHS[AREA_LENGTHS.index(len(text)) - 1]
        if set(text[shorter:]) != {"0"}:
            break
        text = text[:shorter]
    return text


def area_path(area12: str) -> list[str]:
    """The prefixes of a 12-digit village code: province, city, county, town, village."""
    if not (len(area12) == 12 and area12.isascii() and area12.isdigit()):
        raise ValueError(f"station area must be a 12-digit division code, not {area12!r}")
    return [area12[:n] for n in AREA_LENGTHS]


class InlineAudio(BaseModel):
    """Inline audio of an alert: checked WAV bytes (sent as base64 on the wire)."""

    model_config = ConfigDict(frozen=True)

    format: Literal["wav"] = "wav"
    data: bytes

    @field_serializer("data")
    def _data_as_base64(self, data: bytes) -> str:
        return base64.b64encode(data).decode("ascii")


def _check_wav(data: bytes) -> None:
    """Raise ValueError unless `data` is a complete PCM WAV file the player can use."""
    try:
        with wave.open(io.BytesIO(data), "rb") as wav:
            channels, width, rate, frames = (
                wav.getnchannels(),
                wav.getsampwidth(),
                wav.getframerate(),
                wav.getnframes(),
            )
            body = wav.readframes(frames)
    except (wave.Error, EOFError, struct.error, ValueError, OverflowError) as exc:
        raise ValueError(f"not a PCM WAV file ({exc})") from None
    if channels not in WAV_CHANNELS or width not in WAV_SAMPLE_WIDTHS:
        raise ValueError(f"unsupported WAV layout: {channels} channels, {width}-byte samples")
    if not WAV_MIN_RATE <= rate <= WAV_MAX_RATE:
        raise ValueError(f"unsupported WAV rate {rate}")
    if frames == 0 or len(body) != frames * channels * width:
        raise ValueError("WAV data is empty or truncated")


def parse_inline_audio(value: object) -> InlineAudio:
    """Turn the wire form `{"format": "wav", "data": base64}` into InlineAudio."""
    if isinstance(value, InlineAudio):
        return value
    if not isinstance(value, dict) or set(value) != {"format", "data"}:
        raise ValueError('audio must be {"format": "wav", "data": "<base64>"}')
    if value["format"] != "wav" or not isinstance(value["data"], str):
        raise ValueError('audio must be {"format": "wav", "data": "<base64>"}')
    try:
        data = base64.b64decode(value["data"].encode("ascii"), validate=True)
    except (UnicodeEncodeError, ValueError) as exc:
        raise ValueError(f"audio data is not base64 ({exc})") from None
    _check_wav(data)
    return InlineAudio(data=data)


class Alert(BaseModel):
    """One alert, whichever wire form it came in (docs/protocol.md §6.1)."""

    model_config = ConfigDict(strict=True, frozen=True, extra="ignore")

    id: MessageId
    sender: Annotated[str, Field(min_length=1)]
    sent: AwareDatetime
    expires: AwareDatetime
    msg_type: MsgType
    status: Status
    references: list[Annotated[str, Field(min_length=1)]] = []
    level: WarningLevel
    event: str
    areas: list[str]
    stations: list[Annotated[str, Field(min_length=1, max_length=64)]] | None = None
    text: str = ""
    clip: str | None = None
    audio: InlineAudio | None = None
    tone: Tone | None = None
    repeat: Annotated[int, Field(ge=1, le=10)] | None = None
    language: Annotated[str, Field(pattern=LANGUAGE_TAG)] = DEFAULT_LANGUAGE

    @field_validator("status", mode="before")
    @classmethod
    def _status_supported(cls, value: object) -> object:
        if isinstance(value, str) and value not in STATUSES:
            raise PydanticCustomError(
                "unsupported_status", "unsupported status {status}", {"status": value}
            )
        return value

    @field_validator("clip", mode="before")
    @classmethod
    def _clip_name(cls, value: object) -> object:
        if isinstance(value, str) and not CLIP_NAME.fullmatch(value):
            raise PydanticCustomError(
                "unknown_clip", "clip name {clip} is not 1-64 of a-z, 0-9, _ and -", {"clip": value}
            )
        return value

    @field_validator("audio", mode="before")
    @classmethod
    def _audio_wav(cls, value: object) -> object:
        if value is None:
            return None
        try:
            return parse_inline_audio(value)
        except ValueError as exc:
            raise PydanticCustomError("bad_audio", "{detail}", {"detail": str(exc)}) from None

    @field_validator("language", mode="before")
    @classmethod
    def _language_null_is_default(cls, value: object) -> object:
        return DEFAULT_LANGUAGE if value is None else value

    @field_validator("text", mode="before")
    @classmethod
    def _text_null_is_empty(cls, value: object) -> object:
        return "" if value is None else value

    @field_validator("areas")
    @classmethod
    def _areas_canonical(cls, value: list[str]) -> list[str]:
        return list(dict.fromkeys(normalize_area(code) for code in value))

    @model_validator(mode="after")
    def _consistent(self) -> Alert:
        if self.expires <= self.sent:
            raise ValueError("expires must be later than sent")
        if self.msg_type != "alert" and not self.references:
            raise ValueError(f"a {self.msg_type} needs references")
        if self.msg_type == "alert" and not self.has_speech() and self.tone == "none":
            raise ValueError("an alert with nothing to say and tone 'none' would be silent")
        return self

    def has_speech(self) -> bool:
        """True when the alert carries something to say (audio, clip or text)."""
        return self.audio is not None or self.clip is not None or bool(self.text.strip())


def _reason_of(exc: ValidationError) -> str:
    types = {str(err["type"]) for err in exc.errors()}
    special = [reason for reason in PAYLOAD_REASONS[1:] if reason in types]
    if not special or types - set(special):
        return "bad_payload"
    return special[0]


def describe(exc: ValidationError, what: str = "alert") -> str:
    """The first five errors of a payload, where and what, for the log."""
    parts = []
    for err in exc.errors()[:5]:
        where = ".".join(str(p) for p in err["loc"]) or what
        parts.append(f"{where}: {err['msg']}")
    return "; ".join(parts)


def alert_from_fields(fields: dict[str, Any]) -> Alert:
    """Validate already-decoded alert fields (used by the CAP parser)."""
    alert_id = fields.get("id") if is_valid_id(fields.get("id")) else None
    try:
        return Alert.model_validate(fields)
    except ValidationError as exc:
        raise PayloadError(_reason_of(exc), describe(exc), alert_id) from None


def readable_id(payload: bytes) -> str | None:
    """The `id` of a JSON payload if one can be read, for a `rejected` receipt."""
    try:
        obj = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None
    value = obj.get("id") if isinstance(obj, dict) else None
    return value if is_valid_id(value) else None


def parse_alert_json(payload: bytes) -> Alert:
    """Parse a verified JSON alert payload (docs/protocol.md §6.1) or raise PayloadError."""
    from gateway.downlink.payload_limits import check_json_payload  # it builds on this module

    check_json_payload(payload)
    try:
        return Alert.model_validate_json(payload)
    except ValidationError as exc:
        raise PayloadError(_reason_of(exc), describe(exc), readable_id(payload)) from None


def alert_to_json(alert: Alert) -> bytes:
    """The §6.1 JSON form of an alert, UTF-8 encoded."""
    fields = alert.model_dump(mode="json")
    return json.dumps(fields, ensure_ascii=False).encode("utf-8")


def is_for_station(alert: Alert, station_area: str) -> bool:
    """True when one of the alert's areas is `all` or on the station's area path.

    A `cancel` with no areas at all is for every station: it can only act on
    alerts a station already holds (see docs/protocol/decisions.md).
    """
    if alert.msg_type == "cancel" and not alert.areas:
        return True
    path = set(area_path(station_area))
    return any(code == ALL_AREAS or code in path for code in alert.areas)


def names_station(alert: Alert, station_id: str) -> bool:
    """True unless the alert's `stations` list is present and leaves this station out (§6.1)."""
    return alert.stations is None or station_id in alert.stations


class Timed(Protocol):
    """Anything with the §6.1 `sent` and `expires` times: alerts and commands."""

    @property
    def sent(self) -> datetime: ...

    @property
    def expires(self) -> datetime: ...


def epoch_ms(moment: datetime) -> int:
    """An aware datetime as integer epoch milliseconds UTC."""
    return round(moment.timestamp() * 1000)


def effective_expiry_ms(item: Timed, max_lifetime_s: int | None = None) -> int:
    """The earlier of `expires` and `sent` + the lifetime cap (docs/protocol.md §6.1)."""
    expires = epoch_ms(item.expires)
    if max_lifetime_s is None:
        return expires
    return min(expires, epoch_ms(item.sent) + max_lifetime_s * 1000)


def check_time(
    item: Timed,
    now_ms: int,
    clock_synced: bool,
    max_skew_s: int,
    max_lifetime_s: int | None = None,
) -> TimeCheck:
    """docs/protocol.md §6.1 time checks against `now_ms`.

    `now_ms` is the time floor's now (gateway/downlink/time_floor.py): the clock while it is
    synced, else the later of the clock and the floor. Expiry is checked either way;
    `from_future` only while the clock is synced.
    """
    if effective_expiry_ms(item, max_lifetime_s) <= now_ms:
        return "expired"
    if clock_synced and epoch_ms(item.sent) > now_ms + max_skew_s * 1000:
        return "from_future"
    return "ok"
