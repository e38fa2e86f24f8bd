"""Commands from the centre (docs/protocol.md §8): the payload of a `command` envelope.

Commands get the same id and time checks as alerts (`check_time` in
gateway/downlink/alert_model.py works on both). Revision 2 binds each command to its
target (`station`, required) and caps its lifetime (`expires` − `sent` at most
`security.max_command_lifetime_s`, else `bad_payload`), so a captured command
can neither be replayed onto another station nor kept for later. Arguments
are checked here, per command, so the code that runs a command can trust them.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from gateway.downlink.alert_model import MessageId, PayloadError, describe, readable_id
from gateway.downlink.payload_limits import check_json_payload, check_seq

CommandName = Literal["status", "speaker_test", "cancel_all", "resend"]
DEFAULT_TEST_VOLUME = 0.3


class SpeakerTestArgs(BaseModel):
    """`speaker_test` arguments: the chime's volume, 0.0–1.0."""

    model_config = ConfigDict(strict=True, extra="ignore")

    volume: Annotated[float, Field(ge=0.0, le=1.0)] = DEFAULT_TEST_VOLUME


class ResendArgs(BaseModel):
    """`resend` arguments: the inclusive seq range the centre wants again."""

    model_config = ConfigDict(strict=True, extra="ignore")

    from_seq: int
    to_seq: int

    @field_validator("from_seq", "to_seq")
    @classmethod
    def _seq(cls, value: int, info: ValidationInfo) -> int:
        return check_seq(value, str(info.field_name))

    @model_validator(mode="after")
    def _ordered(self) -> ResendArgs:
        if self.from_seq > self.to_seq:
            raise ValueError("from_seq must not be greater than to_seq")
        return self


ARGS_MODELS: dict[str, type[BaseModel]] = {
    "speaker_test": SpeakerTestArgs,
    "resend": ResendArgs,
}


class Command(BaseModel):
    """One command; `args` holds the checked arguments, defaults filled in."""

    model_config = ConfigDict(strict=True, frozen=True, extra="ignore")

    id: MessageId
    station: Annotated[str, Field(min_length=1, max_length=64)]
    sent: AwareDatetime
    expires: AwareDatetime
    cmd: CommandName
    args: dict[str, Any] = {}

    @model_validator(mode="after")
    def _checked(self) -> Command:
        if self.expires <= self.sent:
            raise ValueError("expires must be later than sent")
        model = ARGS_MODELS.get(self.cmd)
        if model is not None:
            checked = model.model_validate(self.args).model_dump()
            self.args.clear()
            self.args.update(checked)
        return self


def parse_command(payload: bytes, max_lifetime_s: int | None = None) -> Command:
    """Parse a verified command payload (docs/protocol.md §8) or raise PayloadError.

    With `max_lifetime_s`, a command whose `expires` − `sent` exceeds it is `bad_payload`.
    """
    check_json_payload(payload)
    try:
        command = Command.model_validate_json(payload)
    except ValidationError as exc:
        detail = describe(exc, "command")
        raise PayloadError("bad_payload", detail, readable_id(payload)) from None
    lifetime = (command.expires - command.sent).total_seconds()
    if max_lifetime_s is not None and lifetime > max_lifetime_s:
        raise PayloadError(
            "bad_payload",
            f"expires - sent is {lifetime:g} s, more than the {max_lifetime_s} s allowed",
            command.id,
        )
    return command
