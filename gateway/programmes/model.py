"""A programme schedule and its items (docs/protocol.md §10): the wire form, parsed and checked.

A schedule arrives as the payload of a signed `programme` envelope; the village's own
`[[programmes]]` items come from the config file. Both end as `ProgrammeItem`s, so the
scheduler never knows which one it plays. A payload that is not a valid schedule raises
`PayloadError` with the docs/protocol.md §7 reason (`bad_payload`, `unknown_clip`,
`bad_audio`) and the schedule's id when it could be read, so a `rejected` receipt on
`prog:<id>` can name it. An unknown time zone, an impossible time of day or an unknown
day is `bad_payload`.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from gateway.downlink.alert_model import (
    CLIP_NAME,
    InlineAudio,
    PayloadError,
    describe,
    is_valid_id,
    normalize_area,
    parse_inline_audio,
    readable_id,
)

DAYS: tuple[str, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
ITEM_NAME = r"^[A-Za-z0-9_.-]{1,64}$"
TIME_OF_DAY = re.compile(r"([0-9]{2}):([0-9]{2})(?::([0-9]{2}))?")
DEFAULT_TIMEZONE = "Asia/Shanghai"
DEFAULT_MAX_LATE_S = 300
#: Most items one schedule may carry (a day has 1440 minutes; a schedule is not a playlist).
MAX_ITEMS = 200


def parse_time_of_day(value: object) -> dt.time:
    """`HH:MM` or `HH:MM:SS` (00:00 to 23:59:59); anything else raises ValueError."""
    if isinstance(value, dt.time):
        return value
    match = TIME_OF_DAY.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        raise ValueError(f"time {value!r} is not HH:MM or HH:MM:SS")
    hour, minute, second = (int(part or 0) for part in match.groups())
    if hour > 23 or minute > 59 or second > 59:
        raise ValueError(f"time {value!r} does not exist (00:00 to 23:59:59)")
    return dt.time(hour, minute, second)


def parse_timezone(value: object) -> str:
    """An IANA time zone name the station knows; anything else raises ValueError."""
    if not isinstance(value, str) or not value or len(value) > 64:
        raise ValueError("timezone must be an IANA name such as Asia/Shanghai")
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ValueError(f"unknown time zone {value!r}") from None
    return value


class QuietHours(BaseModel):
    """A daily span in which nothing routine plays; `from` later than `to` wraps midnight."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    start: dt.time = Field(alias="from")
    end: dt.time = Field(alias="to")

    @field_validator("start", "end", mode="before")
    @classmethod
    def _time(cls, value: object) -> dt.time:
        return parse_time_of_day(value)

    def contains(self, moment: dt.time) -> bool:
        """True when the local time of day `moment` lies in the span."""
        if self.start <= self.end:
            return self.start <= moment < self.end
        return moment >= self.start or moment < self.end


class ItemBase(BaseModel):
    """One routine item: what plays, at what local time, on which days."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(pattern=ITEM_NAME)
    at: dt.time
    days: Literal["daily"] | list[str] = "daily"
    text: str | None = Field(None, min_length=1, max_length=4000)
    clip: str | None = None
    tone: Literal["siren", "chime", "none"] = "chime"
    repeat: Annotated[int, Field(ge=1, le=10)] = 1
    volume: Annotated[float, Field(ge=0.0, le=1.0)] | None = None
    max_late_s: Annotated[int, Field(ge=0, le=86_400)] = DEFAULT_MAX_LATE_S

    @field_validator("at", mode="before")
    @classmethod
    def _at(cls, value: object) -> dt.time:
        return parse_time_of_day(value)

    @field_validator("days", mode="before")
    @classmethod
    def _days(cls, value: object) -> object:
        if value == "daily":
            return value
        if not isinstance(value, list) or not value:
            raise ValueError('days must be "daily" or a list of mon, tue, wed, thu, fri, sat, sun')
        unknown = [day for day in value if day not in DAYS]
        if unknown:
            raise ValueError(f"unknown day(s) {unknown}; use mon, tue, wed, thu, fri, sat, sun")
        return list(dict.fromkeys(value))

    @field_validator("clip", mode="before")
    @classmethod
    def _clip(cls, value: object) -> object:
        if isinstance(value, str) and not CLIP_NAME.fullmatch(value):
            raise PydanticCustomError(
                "unknown_clip", "clip name {clip} is not 1-64 of a-z, 0-9, _ and -", {"clip": value}
            )
        return value

    @model_validator(mode="after")
    def _audible(self) -> ItemBase:
        audio = getattr(self, "audio", None)
        if self.text is None and self.clip is None and audio is None and self.tone == "none":
            raise ValueError("an item needs text, clip or audio (or a tone)")
        return self

    def on_day(self, day: dt.date) -> bool:
        """True when the item plays on `day` (a local date)."""
        return self.days == "daily" or DAYS[day.weekday()] in self.days

    def inline_audio(self) -> InlineAudio | None:
        """Inline WAV audio, which only a central item can carry."""
        return None


class ProgrammeItem(ItemBase):
    """An item of a central schedule: may carry inline audio, as an alert may."""

    audio: InlineAudio | None = None

    @field_validator("audio", mode="before")
    @classmethod
    def _audio(cls, value: object) -> object:
        if value is None:
            return None
        try:
            return parse_inline_audio(value)
        except ValueError as exc:
            raise PydanticCustomError("bad_audio", "{detail}", {"detail": str(exc)}) from None

    def inline_audio(self) -> InlineAudio | None:
        return self.audio


class LocalProgramme(ItemBase):
    """A `[[programmes]]` item of the config file: the village's own routine item."""

    timezone: str = DEFAULT_TIMEZONE

    @field_validator("timezone", mode="before")
    @classmethod
    def _tz(cls, value: object) -> str:
        return parse_timezone(value)


class Schedule(BaseModel):
    """A programme schedule as the centre sends it (docs/protocol.md §10)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    id: str
    version: Annotated[int, Field(ge=0)]
    sent: AwareDatetime
    valid_from: dt.date | None = None
    valid_until: dt.date | None = None
    areas: list[str] = Field(min_length=1)
    timezone: str = DEFAULT_TIMEZONE
    quiet_hours: QuietHours | None = None
    items: list[ProgrammeItem] = Field(default_factory=list, max_length=MAX_ITEMS)

    @field_validator("id")
    @classmethod
    def _id(cls, value: str) -> str:
        if not is_valid_id(value):
            raise ValueError("id must be 1-128 printable characters")
        return value

    @field_validator("timezone", mode="before")
    @classmethod
    def _tz(cls, value: object) -> str:
        return parse_timezone(value)

    @field_validator("areas")
    @classmethod
    def _areas(cls, value: list[str]) -> list[str]:
        return list(dict.fromkeys(normalize_area(code) for code in value))

    @model_validator(mode="after")
    def _consistent(self) -> Schedule:
        if self.valid_from and self.valid_until and self.valid_until < self.valid_from:
            raise ValueError("valid_until is before valid_from")
        names = [item.name for item in self.items]
        if len(set(names)) != len(names):
            raise ValueError("item names must be unique within a schedule")
        return self

    @property
    def withdrawn(self) -> bool:
        """An empty `items` list withdraws the schedule."""
        return not self.items

    def valid_on(self, day: dt.date) -> bool:
        """True when `day` (local) lies within valid_from..valid_until (both inclusive)."""
        if self.valid_from is not None and day < self.valid_from:
            return False
        return self.valid_until is None or day <= self.valid_until

    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


def _reason(exc: ValidationError) -> str:
    types = {str(err["type"]) for err in exc.errors()}
    for special in ("unknown_clip", "bad_audio"):
        if types == {special}:
            return special
    return "bad_payload"


def parse_schedule(payload: bytes) -> Schedule:
    """Parse a verified `programme` payload or raise PayloadError (id = the schedule's id)."""
    try:
        return Schedule.model_validate_json(payload)
    except ValidationError as exc:
        raise PayloadError(_reason(exc), describe(exc, "schedule"), readable_id(payload)) from None


def schedule_fields(schedule: Schedule) -> dict[str, Any]:
    """The JSON form of a schedule (as the centre would send it)."""
    fields = schedule.model_dump(mode="json", by_alias=True, exclude_none=True)
    return fields
