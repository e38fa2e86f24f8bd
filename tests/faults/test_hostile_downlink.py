"""Scenario 6: hostile downlink at the running station — nothing speaks, everything is answered right.

2,000 messages from harness/hostile.py (random bytes and JSON, mutated envelopes, forged
signatures, bit flips, unknown keys, oversized messages, signed XML bombs and external entities,
bad statuses, times, clips and audio, wrong topics, replays of an accepted alert and an answered
command) and one 5 MiB message. A control alert plays before the flood and another after it;
the loudspeakers must get those two and nothing else. Each message must get what docs/protocol.md
§6–§8 prescribe: the ``downlink_rejected`` counts per reason must add up to the envelope
failures sent (the first of a reason at once with count 1, the rest folded — the fold window is
shortened to 5 s here; `benchmarks/chaos.py` keeps the minute), every verified-but-wrong alert
its one receipt, every wrong command its error response, replays and other villages' alerts
nothing. The service must not crash, log no unexpected handler error, and give back the memory
the flood took.

The last two tests send an envelope whose key name is a lone UTF-16 surrogate escape: it once
broke the store for good (the event could not be encoded, the transaction that carried the
buffered readings aborted, and the uplink never drained again).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.faults import ScenarioResult, hostile_downlink, surrogate_key
from tests.faults.conftest import report

MESSAGES = 2000
#: What the service may keep of the flood once it is over: caches and allocator slack.
MAX_RSS_KEPT_KIB = 16 * 1024


def test_hostile_downlink_makes_no_sound_and_gets_the_prescribed_answers(
    tmp_path: Path, seed: int
) -> None:
    result = hostile_downlink(tmp_path, messages=MESSAGES, seed=seed, window_s=5.0, giants=1)
    text = report(result)
    details = result.details
    assert result.sounded == 0, text
    assert details["mismatch_count"] == 0, text
    assert result.crashes == 0, text
    assert details["handler_errors_in_log"] == 0, text
    # Folding really happened: fewer events than envelope failures.
    assert details["downlink_rejected_events"] < sum(
        details["envelope_failures_by_reason"].values()
    ), text
    assert details["rss_kib_after"] - details["rss_kib_before"] < MAX_RSS_KEPT_KIB, text
    # A leak is growth above 0; a transient descriptor open early in the flood (a spare speech
    # engine's pipe, a batch write) and closed by the end reads as -1, which is no leak.
    assert details["fds"]["growth"] <= 0, text


@pytest.fixture(scope="module")
def surrogate(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ScenarioResult]:
    result = surrogate_key(tmp_path_factory.mktemp("surrogate"))
    report(result)
    yield result


def test_an_envelope_key_with_a_lone_surrogate_is_rejected_and_loses_no_reading(
    surrogate: ScenarioResult,
) -> None:
    details = surrogate.details
    assert details["downlink_rejected_unknown_key"] == 1, details
    assert details["silently_lost_readings"] == 0, details


def test_after_an_envelope_key_with_a_lone_surrogate_the_backlog_still_drains(
    surrogate: ScenarioResult,
) -> None:
    assert surrogate.details["committed_missing_at_centre"] == 0, surrogate.details
    assert surrogate.details["key_errors_in_log"] == 0, surrogate.details
