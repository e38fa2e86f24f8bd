"""Fixtures for the fault suite: the seed, and a note of what each scenario counted.

The scenarios themselves live in harness/faults/, shared with the long soak
`benchmarks/chaos.py`; these tests run them small. Every random choice comes from one seed,
fixed by default so CI is repeatable; set ``CUNXIANG_FAULT_SEED`` to try others. Each test
prints its scenario's counts (``pytest -s`` shows them) and puts them in its failure message.
"""

from __future__ import annotations

import os
import shutil

import pytest

from harness.faults import ScenarioResult


@pytest.fixture
def seed() -> int:
    return int(os.environ.get("CUNXIANG_FAULT_SEED", "20260701"))


@pytest.fixture(autouse=True)
def _needs_mosquitto() -> None:
    if shutil.which("mosquitto") is None:
        pytest.skip("mosquitto is not installed (apt mosquitto)")


def report(result: ScenarioResult) -> str:
    """Print the scenario's counts and return them for assertion messages."""
    text = f"{result.headline()}\n{result.details}\n" + "\n".join(result.notes)
    print(text)
    return text
