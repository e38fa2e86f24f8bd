"""Fixtures for driver tests: a collector of what drivers emit, a fake clock, pty ports, pins."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from gpiozero.pins.mock import MockFactory

from drivers.base import Clock, Driver
from drivers.registry import create
from harness.serial_ports import PtyPort
from tests.drivers.devices import Collector, FakeClock


@pytest.fixture
def collector() -> Collector:
    return Collector()


@pytest.fixture
def fake_clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def started_drivers() -> Iterator[list[Driver]]:
    """Every driver a test started; stopped at teardown (also before a port goes away)."""
    made: list[Driver] = []
    yield made
    for driver in made:
        driver.stop()


@pytest.fixture
def pty_port(tmp_path: Path, started_drivers: list[Driver]) -> Iterator[PtyPort]:
    port = PtyPort(tmp_path / "ttyUSB0")
    yield port
    for driver in started_drivers:
        driver.stop()
    port.close()


@pytest.fixture
def pins() -> Iterator[MockFactory]:
    factory = MockFactory()
    yield factory
    factory.reset()


@pytest.fixture
def make_driver(collector: Collector, started_drivers: list[Driver]) -> Callable[..., Driver]:
    """Build and start a driver that emits into `collector` (stopped at teardown)."""

    def make(type_: str, name: str = "s1", *, clock: Clock | None = None, **params: Any) -> Driver:
        driver = create(type_, name, collector.emit, clock=clock, **params)
        started_drivers.append(driver)
        driver.start()
        return driver

    return make
