"""The level vocabulary: how urgent a broadcast is, from a red warning down to a programme.

Why this module exists: the levels were spelled out as strings in the config, the rules, the
alert model, the broadcast queue and the CLI, each with its own idea of their order. They are
defined here once, in audio/ because the broadcast queue orders by them and audio must not
import gateway (docs/decisions.md). The values are the strings of the wire and of the config
file (docs/protocol.md §6.1 and §9, docs/config.md), so JSON and TOML do not change.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Literal, get_args


class Level(StrEnum):
    """A broadcast's level, most urgent first; levels compare by urgency (``RED > BLUE``).

    The four warning levels are those of alerts and local alarms; ``MIC`` is the village
    microphone and ``ROUTINE`` the scheduled programmes (docs/protocol.md §9). A level equals
    its string (``Level.RED == "red"``), and its repr is that string's, so a message listing
    the allowed levels reads as a technician writes them: ``'red', 'orange'``.
    """

    RED = "red"
    ORANGE = "orange"
    YELLOW = "yellow"
    BLUE = "blue"
    MIC = "mic"
    ROUTINE = "routine"

    @property
    def rank(self) -> int:
        """Higher is more urgent: ``ROUTINE`` is 0, ``RED`` is 5."""
        return _RANKS[self]

    def __repr__(self) -> str:
        return repr(self.value)

    def __lt__(self, other: object) -> bool:
        return self.rank < _rank_of(other)

    def __le__(self, other: object) -> bool:
        return self.rank <= _rank_of(other)

    def __gt__(self, other: object) -> bool:
        return self.rank > _rank_of(other)

    def __ge__(self, other: object) -> bool:
        return self.rank >= _rank_of(other)


_RANKS: dict[Level, int] = {level: rank for rank, level in enumerate(reversed(Level))}
_VALUES = frozenset(level.value for level in Level)


def _rank_of(other: object) -> int:
    """The rank of a level or of a level's string; comparing with anything else is an error."""
    if isinstance(other, str) and other in _VALUES:
        return Level(other).rank
    raise TypeError(f"a level compares only with a level, not {other!r}")


WarningLevel = Literal[Level.RED, Level.ORANGE, Level.YELLOW, Level.BLUE]
"""The level of an alert or a local alarm (docs/protocol.md §6.1)."""
WARNING_LEVELS: tuple[WarningLevel, ...] = get_args(WarningLevel)
"""The warning levels, most urgent first."""
