"""What each trusted key may sign and for which areas (docs/protocol.md §6, "Key scope").

A valid signature only says who sent a message; the key's scope says whether
that sender may send it. `security.trusted_keys` names each key either by its
base64 public key alone (full scope: every area, the four envelope types, no
`override`) or by a table `{key, areas, may}`. `KeyScope.may` and
`KeyScope.covers` are the two questions every downlink handler asks (alerts,
commands, programmes), so they live here, apart from any one of them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, field_validator

from gateway.downlink.alert_model import ALL_AREAS, normalize_area
from gateway.downlink.keys import decode_public_key

Action = Literal["alert", "cap", "command", "programme", "override"]
#: What a key given as a bare base64 string may do (everything but `override`).
FULL_SCOPE: tuple[Action, ...] = ("alert", "cap", "command", "programme")


class TrustedKey(BaseModel):
    """A scoped trusted key, as written in the config: `{key, areas, may}`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    key: str = Field(description="Ed25519 public key, raw 32 bytes in base64 (a NAME.pub file)")
    areas: Annotated[list[str], Field(min_length=1)] = Field(
        default=[ALL_AREAS],
        description='area codes (2/4/6/9/12 digits) the key may address, or "all"',
    )
    may: Annotated[list[Action], Field(min_length=1)] = Field(
        default=list(FULL_SCOPE),
        description='envelope types the key may sign, and "override" to update or cancel '
        "other keys' alerts",
    )

    @field_validator("areas")
    @classmethod
    def _areas_canonical(cls, value: list[str]) -> list[str]:
        return list(dict.fromkeys(normalize_area(code) for code in value))

    @field_validator("key")
    @classmethod
    def _key_decodes(cls, value: str) -> str:
        decode_public_key(value)
        return value


#: Tags of the two forms of a `trusted_keys` value (config errors leave them out of key paths).
TRUSTED_KEY_FORMS: frozenset[str] = frozenset({"base64", "table"})


def _form(value: object) -> str:
    return "base64" if isinstance(value, str) else "table"


#: A `trusted_keys` value: a bare base64 public key, or a `{key, areas, may}` table.
TrustedKeyValue = Annotated[
    Annotated[str, Tag("base64")] | Annotated[TrustedKey, Tag("table")],
    Discriminator(_form),
]


@dataclass(frozen=True)
class KeyScope:
    """One trusted key: its raw public key, the areas it may address, what it may sign."""

    public_key: bytes
    areas: tuple[str, ...] = (ALL_AREAS,)
    actions: frozenset[str] = frozenset(FULL_SCOPE)

    def may(self, action: str) -> bool:
        """True when the key may sign envelopes of type `action` (or `override`)."""
        return action in self.actions

    def covers(self, areas: Iterable[str]) -> bool:
        """True when every code in `areas` is one of the key's areas or lies under one.

        `all` is covered only by a key whose areas include `all`. Codes are canonical
        (gateway/downlink/alert_model.py `normalize_area`), so "lies under" is a prefix test.
        """
        if ALL_AREAS in self.areas:
            return True
        return all(
            code != ALL_AREAS and any(code.startswith(own) for own in self.areas) for code in areas
        )


def authorised(scope: KeyScope, type_: str, areas: Iterable[str]) -> bool:
    """The scope check for any verified envelope: may the key sign `type_` for `areas`?

    Alerts pass their `areas`; commands the station's own area; programmes the
    schedule's `areas`. False means a `not_authorised` answer (docs/protocol.md §6).
    """
    return scope.may(type_) and scope.covers(areas)


def scope_of(value: str | TrustedKey) -> KeyScope:
    """The KeyScope of one `trusted_keys` value; ValueError if the key does not decode."""
    if isinstance(value, str):
        return KeyScope(decode_public_key(value))
    return KeyScope(decode_public_key(value.key), tuple(value.areas), frozenset(value.may))


def key_scopes(trusted: Mapping[str, str | TrustedKey]) -> dict[str, KeyScope]:
    """Key name to KeyScope for a whole `trusted_keys` table (validated at load)."""
    return {name: scope_of(value) for name, value in trusted.items()}
