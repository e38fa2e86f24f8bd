"""Modbus RTU level transmitter: the driver against a real pymodbus server over a socat pty pair."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from drivers.base import Driver
from drivers.modbus_level import BAD_POLL_RUN, LevelMap, to_int16
from harness.serial_ports import SocatPair
from tests.drivers.devices import ModbusTransmitter
from tests.drivers.vectors import MODBUS_REQUEST_3_4, frame


class Bus:
    """A socat pair with a transmitter on its far end, which can be unplugged and replugged."""

    def __init__(self, folder: Path) -> None:
        self.pair = SocatPair(folder)
        self.device: ModbusTransmitter | None = None

    @property
    def port(self) -> str:
        return str(self.pair.client)

    def plug(self, registers: dict[int, int], unit: int = 1) -> ModbusTransmitter:
        self.pair.start()
        self.device = ModbusTransmitter(self.pair.server, unit, registers).start()
        return self.device

    def unplug(self) -> None:
        if self.device is not None:
            self.device.stop()
            self.device = None
        self.pair.stop()


@pytest.fixture
def bus(tmp_path: Path, started_drivers: list[Driver]) -> Iterator[Bus]:
    bus = Bus(tmp_path)
    yield bus
    for driver in started_drivers:
        driver.stop()
    bus.unplug()


@pytest.fixture
def level(make_driver, bus) -> Callable[..., Driver]:
    def start(**params) -> Driver:
        params = {"register": 4, "decimals_register": 3, "poll_s": 0.05, "timeout_s": 5} | params
        return make_driver("modbus_level", "river", port=bus.port, **params)

    return start


def test_value_with_decimals_register_in_one_request(bus, level, collector):
    device = bus.plug({3: 2, 4: 1234})
    level()
    [first] = collector.wait_readings(1)
    assert (first.sensor, first.quantity, first.value, first.flags) == (
        "river",
        "water_level_m",
        12.34,
        (),
    )
    assert device.requests[0] == frame(MODBUS_REQUEST_3_4)  # decimals and value read together
    mark = collector.mark()
    device.set_register(4, 1300)
    collector.wait_for(lambda items: 13.0 in collector.values(mark), what="the new level")


def test_negative_int16_scale_offset_and_separate_registers(bus, level, collector):
    device = bus.plug({0: 1, 4: to_int16(-25) & 0xFFFF, 10: 1})
    level(decimals_register=10, scale=0.01, offset=5.0)
    [first] = collector.wait_readings(1)
    assert first.value == pytest.approx(-2.5 * 0.01 + 5.0)
    assert {r[2:4] for r in device.requests} == {b"\x00\x04", b"\x00\x0a"}  # two requests


def test_no_decimals_register(bus, level, collector):
    bus.plug({4: 321})
    level(decimals_register=None)
    assert collector.wait_readings(1)[0].value == 321.0


def test_crc_errors_are_retried_and_counted(bus, level, collector):
    device = bus.plug({3: 1, 4: 55})
    device.corrupt_replies(2)
    driver = level(retries=2)
    [first] = collector.wait_readings(1)
    assert first.value == 5.5
    assert driver.stats["crc_errors"] == 2
    assert collector.health() == []  # two retried CRC errors are not a fault


def test_a_run_of_broken_replies_is_bad_frames_then_recovers(bus, level, collector):
    device = bus.plug({3: 1, 4: 55})
    device.corrupt_replies(10_000)
    driver = level(retries=1)
    fault = collector.wait_health("bad_frames")
    assert driver.stats["failed_polls"] >= BAD_POLL_RUN
    assert driver.stats["crc_errors"] >= 2 * BAD_POLL_RUN
    assert fault.ok is False
    device.corrupt_replies(0)
    collector.wait_health("")
    assert collector.values()[0] == 5.5


def test_silent_transmitter_is_no_data(bus, level, collector):
    bus.pair.start()  # the cable is there, the transmitter has no power
    started = time.monotonic()
    driver = level(retries=0, timeout_s=0.8)
    collector.wait_health("no_data")
    assert time.monotonic() - started >= 0.7
    assert driver.stats["no_reply"] >= 1
    assert collector.readings() == []


def test_exception_replies_are_a_device_error(bus, level, collector):
    bus.plug({3: 1, 4: 55})
    driver = level(register=200, decimals_register=None, retries=0, timeout_s=0.4)
    collector.wait_health("device_error")
    assert driver.stats["device_exceptions"] >= 1


def test_impossible_decimals_are_bad_frames(bus, level, collector):
    bus.plug({3: 40, 4: 55})
    driver = level(retries=0, timeout_s=0.5)
    collector.wait_health("bad_frames")
    assert driver.stats["bad_frames"] >= 1
    assert collector.readings() == []


def test_unplugged_adapter_is_retried_until_it_comes_back(bus, level, collector):
    bus.plug({3: 0, 4: 7})
    driver = level()
    collector.wait_readings(1)
    bus.unplug()
    collector.wait_health("port_unavailable")
    time.sleep(0.3)
    mark = collector.mark()
    bus.plug({3: 0, 4: 8})
    collector.wait_health("", start=mark, timeout=8)
    assert 8.0 in collector.values(mark)
    assert driver.stats["reopen_count"] >= 1


def test_level_map_merges_only_adjacent_registers() -> None:
    assert LevelMap(4, 3, 1.0, 0.0).block() == [(3, 2)]
    assert LevelMap(3, 4, 1.0, 0.0).block() == [(3, 2)]
    assert LevelMap(4, 9, 1.0, 0.0).block() == [(4, 1), (9, 1)]
    assert LevelMap(4, None, 1.0, 0.0).block() == [(4, 1)]
    assert LevelMap(4, 3, 2.0, -1.0).value({3: 3, 4: 0xFFFF}) == pytest.approx(-1.002)
