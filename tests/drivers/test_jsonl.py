"""JSON-lines nodes: the line parser on good, bad and random input; the driver over a pty."""

from __future__ import annotations

import contextlib
import json
import math
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers.jsonl import MAX_LINE, JsonlParser, parse_line
from tests.drivers.devices import PeriodicWriter


@pytest.mark.parametrize(
    ("line", "quantity", "value", "flags"),
    [
        (b'{"q": "temperature_c", "v": 21.5}', "temperature_c", 21.5, ()),
        (b'{"q":"water_present","v":false}\r', "water_present", False, ()),
        (
            b'{"q": "battery_v", "v": 4, "flags": ["estimated"], "fw": "1.2"}',
            "battery_v",
            4.0,
            ("estimated",),
        ),
        (b'{"q": "pump_running", "v": true}', "pump_running", True, ()),
    ],
)
def test_good_lines(line: bytes, quantity: str, value: float | bool, flags: tuple) -> None:
    [got] = JsonlParser().feed(line + b"\n")
    assert (got.quantity, got.value, got.flags) == (quantity, value, flags)
    assert type(got.value) is type(value)


@pytest.mark.parametrize(
    "line",
    [
        b"not json",
        b"[1, 2]",
        b'{"v": 1}',
        b'{"q": "Temp", "v": 1}',
        b'{"q": "co_ppm", "v": "12"}',
        b'{"q": "co_ppm", "v": NaN}',
        b'{"q": "co_ppm", "v": 1e999}',
        b'{"q": "co_ppm", "v": true}',
        b'{"q": "smoke", "v": 1}',
        b'{"q": "co_ppm", "v": 1, "flags": ["out_of_range"]}',
        b'{"q": "co_ppm", "v": ' + b"9" * 400 + b"}",
        b"[" * 5000,
    ],
)
def test_bad_lines_are_counted_not_raised(line: bytes) -> None:
    parser = JsonlParser()
    assert parser.feed(line + b"\n") == []
    assert parser.bad_lines == 1
    assert parser.last_error


def test_garbage_glued_before_a_good_object_is_counted_and_the_object_still_read() -> None:
    parser = JsonlParser()
    got = parser.feed(b'\xff\xfe{"q": "co_ppm", "v": 1}\n{{junk {"q": "smoke", "v": true}\n')
    assert [(g.quantity, g.value) for g in got] == [("co_ppm", 1.0), ("smoke", True)]
    assert parser.bad_lines == 2


def test_blank_lines_are_ignored_and_long_lines_dropped_whole() -> None:
    parser = JsonlParser()
    long = b'{"q": "co_ppm", "v": 1, "pad": "' + b"x" * (MAX_LINE * 3) + b'"}'
    got = parser.feed(b"\n\r\n" + long[:1500])
    got += parser.feed(long[1500:] + b'\n{"q": "co_ppm", "v": 2}\n')
    assert [g.value for g in got] == [2.0]
    assert parser.bad_lines == 1


@given(st.lists(st.binary(max_size=80), max_size=20))
def test_random_bytes_never_raise_and_yield_only_complete_valid_lines(chunks: list[bytes]) -> None:
    parser = JsonlParser()
    stream = b"".join(chunks)
    got = [v for chunk in chunks for v in parser.feed(chunk)]
    lines = [line.rstrip(b"\r") for line in stream.split(b"\n")[:-1]]  # complete lines only
    # A reading is a whole line, or the part of one from a `{` on (garbage glued before it).
    valid = []
    for line in lines:
        starts = [0] + [i for i in range(1, len(line)) if line[i : i + 1] == b"{"]
        for start in starts:
            with contextlib.suppress(ValueError):
                valid.append(parse_line(line[start:]))
                break
    assert len(got) <= len(valid)
    assert all(g in valid for g in got)


readings = st.tuples(
    st.sampled_from(["temperature_c", "humidity_pct", "battery_v", "rain_mm"]),
    st.floats(-1e6, 1e6, allow_nan=False),
)


@given(st.lists(readings, max_size=15), st.integers(1, 50))
def test_every_good_line_is_found_in_any_chunking(items: list, chunk: int) -> None:
    stream = b"".join(json.dumps({"q": q, "v": v}).encode() + b"\n" for q, v in items)
    parser = JsonlParser()
    got = [g for i in range(0, len(stream), chunk) for g in parser.feed(stream[i : i + chunk])]
    assert [(g.quantity, g.value) for g in got] == [(q, float(v)) for q, v in items]
    assert all(math.isfinite(g.value) for g in got)


# -- the driver -----------------------------------------------------------------------------


def _wait_open(pty_port, driver) -> None:
    """pyserial flushes input on open, so write only once the driver has the port."""
    deadline = time.monotonic() + 3
    while not driver.stats.get("opens") and time.monotonic() < deadline:
        time.sleep(0.01)


def test_node_readings_faults_and_recovery(make_driver, pty_port, collector):
    driver = make_driver("jsonl", "node-3", port=pty_port.path, timeout_s=0.3)
    _wait_open(pty_port, driver)
    pty_port.write(
        b'{"q": "temperature_c", "v": 21.5}\n'
        b"garbage\n"
        b'{"q": "humidity_pct", "v": 140}\n'
        b'{"q": "water_present", "v": true}\n'
    )
    readings = collector.wait_readings(3)
    assert [(r.sensor, r.quantity, r.value, r.flags) for r in readings] == [
        ("node-3", "temperature_c", 21.5, ()),
        ("node-3", "humidity_pct", 140.0, ("out_of_range",)),
        ("node-3", "water_present", True, ()),
    ]
    assert [h.reason for h in collector.health()] == ["out_of_range", ""]
    assert driver.stats["bad_frames"] == 1
    collector.wait_health("no_data", timeout=2)
    pty_port.write(b"x\n" * 5)
    collector.wait_health("bad_frames", timeout=2)
    mark = collector.mark()
    pty_port.write(b'{"q": "battery_v", "v": 3.7}\n')
    collector.wait_health("", start=mark)
    assert collector.values(mark) == [3.7]
    assert [h.reason for h in collector.health()] == [
        "out_of_range",
        "",
        "no_data",
        "bad_frames",
        "",
    ]


def test_a_chatty_node_unplugged_and_replugged(make_driver, pty_port, collector):
    line = b'{"q": "battery_v", "v": 3.7}\n'
    writer = PeriodicWriter(pty_port, lambda: line, 0.02)
    try:
        driver = make_driver("jsonl", "node-3", port=pty_port.path, timeout_s=5)
        collector.wait_readings(3)
        pty_port.unplug()
        collector.wait_health("port_unavailable")
        mark = collector.mark()
        pty_port.plug()
        collector.wait_health("", start=mark, timeout=5)
        collector.wait_readings(2, start=mark)
    finally:
        writer.stop()
    assert set(collector.values()) == {3.7}
    assert driver.stats["reopen_count"] == 1
