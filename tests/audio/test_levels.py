"""The level vocabulary: one ordered enum whose values are the wire and config strings."""

from __future__ import annotations

import json

import pytest

from audio.levels import WARNING_LEVELS, Level


def test_levels_are_ordered_by_urgency() -> None:
    assert sorted(Level, reverse=True) == list(Level)
    assert Level.RED > Level.ORANGE > Level.YELLOW > Level.BLUE > Level.MIC > Level.ROUTINE
    assert max([Level.BLUE, Level.ORANGE, Level.YELLOW]) is Level.ORANGE
    assert [level.rank for level in Level] == [5, 4, 3, 2, 1, 0]


def test_levels_are_their_strings_on_the_wire() -> None:
    assert Level.RED == "red" and Level("routine") is Level.ROUTINE
    assert json.dumps({"level": Level.YELLOW}) == '{"level": "yellow"}'
    assert f"{Level.BLUE}" == "blue" and repr(Level.BLUE) == "'blue'"
    assert {"red": 1}[Level.RED] == 1
    assert WARNING_LEVELS == ("red", "orange", "yellow", "blue")


def test_a_level_compares_with_a_level_string_by_urgency_and_with_nothing_else() -> None:
    assert Level.RED > "blue"  # not the alphabet's order
    assert sorted([Level.RED, "yellow"]) == ["yellow", "red"]
    with pytest.raises(TypeError):
        _ = Level.RED < "purple"
