"""`downlink_rejected` folding (docs/protocol.md §5) over a simulated minute."""

from __future__ import annotations

import hashlib

import pytest

from gateway.downlink.rejections import WINDOW_MS, RejectionFolder

T0 = 1_767_225_600_000


def sha(n: int) -> str:
    return hashlib.sha256(str(n).encode()).hexdigest()


def test_first_goes_out_at_once_the_rest_fold_into_one_at_the_minute_end() -> None:
    folder = RejectionFolder()
    first = folder.record("bad_signature", "cx/v1/alert/all", "k1", sha(0), T0)
    assert first == {
        "type": "downlink_rejected",
        "reason": "bad_signature",
        "topic": "cx/v1/alert/all",
        "key": "k1",
        "payload_sha256": sha(0),
        "count": 1,
    }
    for n in range(1, 6):
        folded = folder.record("bad_signature", f"cx/v1/alert/37{n}", "k1", sha(n), T0 + n * 9_000)
        assert folded is None
    assert folder.due(T0 + WINDOW_MS - 1) == []
    assert folder.due(T0 + WINDOW_MS) == [
        {
            "type": "downlink_rejected",
            "reason": "bad_signature",
            "topic": "cx/v1/alert/375",
            "key": "k1",
            "payload_sha256": sha(5),
            "count": 5,
        }
    ]
    assert folder.due(T0 + 2 * WINDOW_MS) == []


def test_after_a_quiet_minute_the_next_goes_out_at_once() -> None:
    folder = RejectionFolder()
    assert folder.record("too_large", "t", None, sha(0), T0) is not None
    assert folder.due(T0 + WINDOW_MS) == []  # nothing folded, nothing to send
    again = folder.record("too_large", "t", None, sha(1), T0 + WINDOW_MS + 1)
    assert again is not None and again["count"] == 1


def test_reasons_are_folded_separately() -> None:
    folder = RejectionFolder()
    assert folder.record("unknown_key", "t", "x", sha(0), T0) is not None
    assert folder.record("bad_envelope", "t", None, sha(1), T0 + 1) is not None
    assert folder.record("unknown_key", "t", "y", sha(2), T0 + 2) is None
    assert folder.record("bad_envelope", "t", None, sha(3), T0 + 3) is None
    events = folder.due(T0 + WINDOW_MS + 3)
    assert sorted((e["reason"], e["count"]) for e in events) == [
        ("bad_envelope", 1),
        ("unknown_key", 1),
    ]


def test_key_is_left_out_when_there_is_none() -> None:
    event = RejectionFolder().record("bad_envelope", "t", None, sha(0), T0)
    assert event is not None and "key" not in event


def test_a_flood_makes_bounded_events_and_state() -> None:
    """10 messages a second for 10 minutes: 2 events a minute at most, nothing lost in counts."""
    folder = RejectionFolder()
    published = []
    for n in range(6_000):
        now = T0 + n * 100
        immediate = folder.record("bad_signature", "t", "k", sha(n), now)
        if immediate:
            published.append(immediate)
        published.extend(folder.due(now))
        assert len(folder._windows) <= 1 and len(folder._ready) <= 1
    published.extend(folder.due(T0 + 6_000 * 100 + WINDOW_MS))
    assert sum(e["count"] for e in published) == 6_000
    assert len(published) <= 2 * 11
    assert published[-1]["payload_sha256"] == sha(5_999)


def test_a_late_due_call_loses_nothing() -> None:
    folder = RejectionFolder()
    folder.record("bad_signature", "t", "k", sha(0), T0)
    folder.record("bad_signature", "t", "k", sha(1), T0 + 1)
    assert folder.record("bad_signature", "t", "k", sha(2), T0 + WINDOW_MS + 5) is not None
    folder.record("bad_signature", "t", "k", sha(3), T0 + WINDOW_MS + 6)
    assert folder.record("bad_signature", "t", "k", sha(4), T0 + 3 * WINDOW_MS) is not None
    (event,) = folder.due(T0 + 3 * WINDOW_MS)
    assert (event["count"], event["payload_sha256"]) == (2, sha(3))


def test_next_due_ms() -> None:
    folder = RejectionFolder()
    assert folder.next_due_ms() is None
    folder.record("bad_signature", "t", "k", sha(0), T0)
    assert folder.next_due_ms() is None  # nothing folded yet
    folder.record("bad_signature", "t", "k", sha(1), T0 + 10)
    assert folder.next_due_ms() == T0 + WINDOW_MS


def test_unknown_reason_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="unknown rejection reason"):
        RejectionFolder().record("made_up", "t", None, sha(0), T0)
