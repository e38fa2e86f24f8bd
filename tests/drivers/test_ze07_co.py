"""ZE07-CO: the frame parser on datasheet vectors and random bytes, the driver over a real pty."""

from __future__ import annotations

import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers.serial_link import BAD_FRAME_RUN
from drivers.ze07_co import (
    FRAME_LEN,
    QUERY,
    SWITCH_TO_ACTIVE,
    SWITCH_TO_QA,
    Ze07Parser,
    active_frame,
    checksum,
    qa_reply,
)
from tests.drivers.devices import QaResponder
from tests.drivers.vectors import (
    ZE07_FRAMES,
    ZE07_QUERY,
    ZE07_SWITCH_ACTIVE,
    ZE07_SWITCH_QA,
    frame,
)

# -- the frame parser ---------------------------------------------------------------------------


@pytest.mark.parametrize("command", [ZE07_QUERY, ZE07_SWITCH_QA, ZE07_SWITCH_ACTIVE])
def test_checksum_reproduces_the_datasheet_commands(command: str) -> None:
    raw = frame(command)
    assert checksum(raw) == raw[8]


def test_command_constants_are_the_datasheet_bytes() -> None:
    assert (
        frame(ZE07_QUERY),
        frame(ZE07_SWITCH_QA),
        frame(ZE07_SWITCH_ACTIVE),
    ) == (QUERY, SWITCH_TO_QA, SWITCH_TO_ACTIVE)


@pytest.mark.parametrize(("text", "kind", "ppm"), ZE07_FRAMES)
def test_vectors_decode(text: str, kind: str, ppm: float) -> None:
    parser = Ze07Parser()
    [decoded] = parser.feed(frame(text))
    assert (decoded.kind, decoded.ppm) == (kind, ppm)
    assert (parser.bad_frames, parser.garbage_bytes) == (0, 0)


def test_resync_after_garbage_partial_frame_and_bad_checksum() -> None:
    good = active_frame(123)
    broken = good[:8] + bytes((good[8] ^ 1,))
    stream = b"\x00\x13\xfe" + good[:5] + broken + b"\xff\x01" + good + qa_reply(77)
    parser = Ze07Parser()
    frames = [f.ppm for f in parser.feed(stream)]
    assert frames == [12.3, 7.7]
    assert parser.bad_frames >= 2  # the partial frame and the broken checksum
    assert parser.garbage_bytes >= 3


def test_frame_split_across_reads_is_reassembled() -> None:
    parser = Ze07Parser()
    data = active_frame(4567)
    got = [
        f.ppm for chunk in (data[:1], data[1:4], data[4:8], data[8:]) for f in parser.feed(chunk)
    ]
    assert got == [456.7]


def _is_valid_frame(raw: bytes) -> bool:
    return (
        len(raw) == FRAME_LEN
        and checksum(raw) == raw[8]
        and (raw[:4] == b"\xff\x04\x03\x01" or raw[:2] == b"\xff\x86")
    )


@given(st.lists(st.binary(max_size=40), max_size=20))
def test_random_bytes_never_raise_and_yield_only_checked_frames(chunks: list[bytes]) -> None:
    parser = Ze07Parser()
    for chunk in chunks:
        for decoded in parser.feed(chunk):
            assert _is_valid_frame(decoded.raw)
            hi_lo = decoded.raw[4:6] if decoded.kind == "active" else decoded.raw[2:4]
            assert decoded.ppm == round(int.from_bytes(hi_lo, "big") * 0.1, 1)


no_ff = st.binary(max_size=30).map(lambda b: b.replace(b"\xff", b""))


@given(
    st.lists(st.tuples(no_ff, st.integers(0, 65535), st.booleans()), max_size=10),
    st.integers(1, 12),
)
def test_every_frame_between_garbage_is_found_in_any_chunking(
    parts: list[tuple[bytes, int, bool]], chunk: int
) -> None:
    """Garbage without a start byte never hides a frame, however the bytes are split."""
    stream = b"".join(g + (active_frame(v) if act else qa_reply(v)) for g, v, act in parts)
    parser = Ze07Parser()
    got = [f.ppm for i in range(0, len(stream), chunk) for f in parser.feed(stream[i : i + chunk])]
    assert got == [round(v * 0.1, 1) for _, v, _ in parts]
    assert parser.bad_frames == 0


# -- the driver on a pty ------------------------------------------------------------------------


@pytest.fixture
def ze07(make_driver, pty_port):
    """Start a driver and wait until it has opened the port (pyserial flushes input on open)."""

    def start(**params):
        driver = make_driver("ze07_co", port=pty_port.path, **params)
        assert pty_port.read(timeout=5, want=9) in (SWITCH_TO_ACTIVE, SWITCH_TO_QA)
        return driver

    return start


def test_active_mode_reports_ppm_and_sends_the_mode_switch(make_driver, pty_port, collector):
    driver = make_driver("ze07_co", "co-1", port=pty_port.path, timeout_s=5)
    assert pty_port.read(timeout=5, want=9) == SWITCH_TO_ACTIVE  # sent once, on opening
    pty_port.write(active_frame(123) + active_frame(40))
    readings = collector.wait_readings(2)
    assert [(r.sensor, r.quantity, r.value, r.flags) for r in readings] == [
        ("co-1", "co_ppm", 12.3, ()),
        ("co-1", "co_ppm", 4.0, ()),
    ]
    assert abs(readings[0].ts - time.time() * 1000) < 5000
    assert collector.health() == []
    assert driver.stats["frames_ok"] == 2


def test_qa_mode_switches_mode_then_polls(make_driver, pty_port, collector):
    assert pty_port.read(timeout=0.05) == b""
    make_driver("ze07_co", port=pty_port.path, mode="qa", poll_s=0.05, timeout_s=5)
    assert pty_port.read(timeout=5, want=9) == SWITCH_TO_QA  # slow start under load
    responder = QaResponder(pty_port, tenths=355)
    try:
        readings = collector.wait_readings(3)
    finally:
        responder.stop()
    assert {r.value for r in readings} == {35.5}
    assert responder.queries >= 3


def test_garbage_partial_frames_and_bad_checksums_are_skipped(ze07, pty_port, collector):
    driver = ze07(timeout_s=5)
    good = active_frame(250)
    pty_port.write(b"\x01\x02\xff\xff" + good[:6])
    time.sleep(0.15)  # a partial frame, then the rest arrives in a later read
    pty_port.write(good[:8] + b"\x00" + good + b"garbage\r\n" + active_frame(260))
    readings = collector.wait_readings(2)
    assert [r.value for r in readings] == [25.0, 26.0]
    stats = driver.stats
    assert stats["bad_frames"] >= 1
    assert stats["garbage_bytes"] >= 9
    assert collector.health() == []  # a few bad frames between good ones are not a fault


def test_run_of_bad_frames_is_a_fault_and_a_good_frame_ends_it(ze07, pty_port, collector):
    ze07(timeout_s=5)
    good = active_frame(100)
    broken = good[:8] + bytes(((good[8] + 1) & 0xFF,))
    pty_port.write(broken * BAD_FRAME_RUN)
    fault = collector.wait_health("bad_frames")
    assert not fault.ok
    pty_port.write(good)
    ok = collector.wait_health("")
    assert ok.ok
    assert collector.values() == [10.0]


def test_silence_is_no_data_then_recovery(ze07, pty_port, collector):
    ze07(timeout_s=0.3)
    pty_port.write(active_frame(10))
    collector.wait_readings(1)
    started = time.monotonic()
    fault = collector.wait_health("no_data")
    assert time.monotonic() - started >= 0.2
    assert fault.sensor == "s1"
    pty_port.write(active_frame(11))
    collector.wait_health("")
    assert collector.values() == [1.0, 1.1]
    assert [h.reason for h in collector.health()] == ["no_data", ""]


def test_wrong_baud_noise_is_reported_as_bad_frames(ze07, pty_port, collector):
    ze07(timeout_s=0.3)
    for _ in range(6):
        pty_port.write(bytes(range(0, 0xFE, 7)))  # bytes, but never a start byte
        time.sleep(0.06)
    assert collector.wait_health("bad_frames").ok is False


def test_unplugged_port_is_retried_until_it_comes_back(ze07, pty_port, collector):
    driver = ze07(timeout_s=5)
    pty_port.write(active_frame(50))
    collector.wait_readings(1)
    pty_port.unplug()
    collector.wait_health("port_unavailable")
    time.sleep(0.6)  # at least one failed reopen
    pty_port.plug()
    assert pty_port.read(timeout=3, want=9) == SWITCH_TO_ACTIVE  # the driver opened it again
    pty_port.write(active_frame(51))
    collector.wait_health("")
    assert collector.values() == [5.0, 5.1]
    assert [h.reason for h in collector.health()] == ["port_unavailable", ""]
    stats = driver.stats
    assert stats["reopen_count"] == 1
    assert stats["open_failures"] >= 1


def test_port_missing_at_start_is_a_fault_with_the_cause_logged(
    make_driver, tmp_path, collector, caplog
):
    make_driver("ze07_co", port=str(tmp_path / "nothing-here"), timeout_s=5)
    assert collector.wait_health("port_unavailable").ok is False
    [warning] = [r for r in caplog.records if "cannot open" in r.getMessage()]
    assert "nothing-here" in warning.getMessage()
    assert "No such file" in warning.getMessage()


def test_out_of_range_value_is_flagged_and_faulted(ze07, pty_port, collector):
    ze07(timeout_s=5)
    pty_port.write(active_frame(20000) + active_frame(30))
    readings = collector.wait_readings(2)
    assert [(r.value, r.flags) for r in readings] == [(2000.0, ("out_of_range",)), (3.0, ())]
    assert [h.reason for h in collector.health()] == ["out_of_range", ""]


def test_stop_joins_quickly(make_driver, pty_port):
    driver = make_driver("ze07_co", port=pty_port.path)
    time.sleep(0.05)
    started = time.monotonic()
    driver.stop()
    assert time.monotonic() - started < 1.0
    assert driver._thread is not None and not driver._thread.is_alive()
