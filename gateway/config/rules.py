"""The ``[[rules]]`` tables: local alarms, a sensor's condition and what the loudspeakers say.

Why this module exists: a rule is checked on its own here (one condition, hysteresis the right
way round); the checks against the sensors and the clips are the loader's, and the engine that
runs rules is gateway/rules.py (docs/protocol.md §9).
"""

from __future__ import annotations

from pydantic import Field, model_validator

from audio.levels import Level, WarningLevel
from gateway.config.sections import CLIP_PATTERN, NAME_PATTERN, Section


class RuleBroadcast(Section):
    """What a local alarm says over the loudspeakers."""

    text: str | None = Field(None, min_length=1, max_length=2000)
    clip: str | None = Field(None, pattern=CLIP_PATTERN)
    repeat: int | None = Field(None, ge=1, le=10)
    level: WarningLevel | None = None

    @model_validator(mode="after")
    def _one_source(self) -> RuleBroadcast:
        if (self.text is None) == (self.clip is None):
            raise ValueError("a broadcast needs exactly one of text = ... or clip = ...")
        return self


class RuleConfig(Section):
    """A local alarm rule (docs/protocol.md §9)."""

    name: str = Field(pattern=NAME_PATTERN)
    sensor: str
    quantity: str | None = None
    above: float | None = None
    below: float | None = None
    active: bool | None = None
    clear_below: float | None = None
    clear_above: float | None = None
    for_s: float = Field(0.0, ge=0)
    level: WarningLevel = Level.ORANGE
    broadcast: RuleBroadcast | None = None

    @model_validator(mode="after")
    def _one_condition(self) -> RuleConfig:
        given = [k for k in ("above", "below", "active") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(
                "a rule needs exactly one of above = ..., below = ... or active = true"
            )
        if self.clear_below is not None and self.above is None:
            raise ValueError("clear_below goes with above")
        if self.clear_above is not None and self.below is None:
            raise ValueError("clear_above goes with below")
        if (
            self.above is not None
            and self.clear_below is not None
            and self.clear_below > self.above
        ):
            raise ValueError(
                f"clear_below ({self.clear_below}) must not exceed above ({self.above})"
            )
        if (
            self.below is not None
            and self.clear_above is not None
            and self.clear_above < self.below
        ):
            raise ValueError(
                f"clear_above ({self.clear_above}) must not be under below ({self.below})"
            )
        return self
