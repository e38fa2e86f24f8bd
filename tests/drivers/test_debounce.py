"""The debouncer on its own: fixed bounce scenarios and properties over random edge timings."""

from __future__ import annotations

import itertools

from hypothesis import given
from hypothesis import strategies as st

from drivers.debounce import Debouncer


def test_first_edge_is_reported_at_once_and_bounce_is_ignored() -> None:
    d = Debouncer(0.05, False)
    assert d.edge(True, 10.000) == [True]
    assert d.edge(False, 10.001) == []
    assert d.edge(True, 10.002) == []
    assert d.settle(True, 10.050) == []
    assert d.state is True


def test_glitch_shorter_than_the_window_settles_back() -> None:
    d = Debouncer(0.05, False)
    assert d.edge(True, 1.0) == [True]
    assert d.edge(False, 1.001) == []
    assert d.deadline() == 1.05
    assert d.settle(False, 1.02) == []  # not yet
    assert d.settle(False, 1.05) == [False]
    assert d.deadline() is None


def test_a_late_edge_settles_the_pending_window_first() -> None:
    """Without a settle call between them, the missed change is not lost."""
    d = Debouncer(0.01, False)
    assert d.edge(True, 0.0) == [True]
    assert d.edge(False, 0.001) == []
    assert d.edge(True, 0.5) == [False, True]


def test_level_read_before_its_edge_callback_opens_a_fresh_window() -> None:
    """The worker may read the pin just after an edge whose callback is still queued."""
    d = Debouncer(0.01, False)
    assert d.edge(True, 0.000) == [True]  # a tip closes the reed switch ...
    assert d.edge(False, 0.001) == []  # ... bouncing
    assert d.edge(True, 0.002) == []
    assert d.settle(False, 0.025) == [False]  # it reopened at 0.025; its callback comes next
    assert d.edge(False, 0.025) == []
    assert d.edge(True, 0.026) == []  # the reopening bounces: not a new tip
    assert d.edge(False, 0.027) == []
    assert d.settle(False, 0.040) == []
    assert d.state is False


def test_zero_window_passes_every_change() -> None:
    d = Debouncer(0.0, False)
    assert [d.edge(s, t * 1e-6) for t, s in enumerate([True, False, True])] == [
        [True],
        [False],
        [True],
    ]


edges = st.lists(st.tuples(st.floats(0.0, 0.2), st.booleans()), max_size=60)


@given(st.floats(0.0, 0.1), st.booleans(), edges)
def test_properties_over_random_edges(window: float, start: bool, steps: list) -> None:
    d = Debouncer(window, start)
    now, level, accepted = 0.0, start, []
    for gap, raw in steps:
        now += gap
        level = raw
        accepted += [(now, s) for s in d.edge(raw, now)]
    now += window + 0.001
    accepted += [(now, s) for s in d.settle(level, now)]
    states = [start] + [s for _, s in accepted]
    assert all(a != b for a, b in itertools.pairwise(states))  # real changes only
    assert d.state == level  # the final level is never lost
    assert d.deadline() is None
