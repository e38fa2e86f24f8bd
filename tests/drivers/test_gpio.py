"""GPIO drivers on gpiozero's MockFactory: contacts with bounce, rain gauge pulses, lost pins."""

from __future__ import annotations

import threading
import time

import pytest
from gpiozero import DigitalInputDevice

from drivers.gpio_contact import GpioContactDriver
from drivers.gpio_input import MAX_WAIT_S

SETTLE = MAX_WAIT_S * 2  # real time for the worker to notice a fake clock jump (it polls)


def test_contact_reports_initial_state_then_every_change_at_once(make_driver, pins, collector):
    pin = pins.pin(17)
    make_driver("gpio_contact", "smoke-1", pin=17, pin_factory=pins)
    [first] = collector.wait_readings(1)
    assert (first.sensor, first.quantity, first.value) == ("smoke-1", "smoke", False)
    pin.drive_low()  # the detector's relay closes the contact to GND
    # reported synchronously in gpiozero's callback, before drive_low() returns
    assert collector.values() == [False, True]
    pin.drive_high()
    assert collector.values() == [False, True]  # still inside the debounce window
    collector.wait_readings(3, timeout=1)
    assert collector.values() == [False, True, False]  # the final level, once the window ends


def test_active_high_contact_and_other_quantity(make_driver, pins, collector):
    pin = pins.pin(5)
    make_driver("gpio_contact", pin=5, active_low=False, quantity="water_present", pin_factory=pins)
    collector.wait_readings(1)
    pin.drive_high()
    assert [(r.quantity, r.value) for r in collector.readings()] == [
        ("water_present", False),
        ("water_present", True),
    ]


def test_bounce_gives_one_change_per_press_and_release(make_driver, pins, collector, fake_clock):
    pin = pins.pin(17)
    make_driver("gpio_contact", pin=17, debounce_s=0.05, pin_factory=pins, clock=fake_clock)
    collector.wait_readings(1)

    def bounce(final_low: bool) -> None:
        for i in range(5):  # five edges 1 ms apart, ending on the final level
            low = (i % 2 == 0) == final_low
            pin.drive_low() if low else pin.drive_high()
            fake_clock.advance(0.001)

    bounce(final_low=True)
    fake_clock.advance(0.1)
    time.sleep(SETTLE)
    bounce(final_low=False)
    fake_clock.advance(0.1)
    time.sleep(SETTLE)
    assert collector.values() == [False, True, False]


def test_glitch_is_reported_and_settles_back(make_driver, pins, collector, fake_clock):
    pin = pins.pin(17)
    make_driver("gpio_contact", pin=17, debounce_s=0.05, pin_factory=pins, clock=fake_clock)
    collector.wait_readings(1)
    pin.drive_low()
    fake_clock.advance(0.002)
    pin.drive_high()
    assert collector.values() == [False, True]
    fake_clock.advance(0.05)
    collector.wait_readings(3, timeout=2)
    assert collector.values() == [False, True, False]


def test_current_state_is_reported_every_report_s(make_driver, pins, collector, fake_clock):
    pin = pins.pin(17)
    make_driver("gpio_contact", pin=17, report_s=60, pin_factory=pins, clock=fake_clock)
    collector.wait_readings(1)
    pin.drive_low()
    fake_clock.advance(59)
    time.sleep(SETTLE)
    assert collector.values() == [False, True]
    fake_clock.advance(1)
    collector.wait_readings(3, timeout=2)
    fake_clock.advance(60)
    readings = collector.wait_readings(4, timeout=2)
    assert [r.value for r in readings] == [False, True, True, True]
    assert readings[3].ts - readings[2].ts == 60_000


def test_pin_in_use_is_a_fault_until_it_is_freed(make_driver, pins, collector):
    blocker = DigitalInputDevice(17, pin_factory=pins)
    make_driver("gpio_contact", pin=17, pin_factory=pins)
    collector.wait_health("port_unavailable")
    blocker.close()
    collector.wait_health("", timeout=3)
    assert collector.values() == [False]


def test_contact_quantity_must_be_boolean(pins):
    with pytest.raises(ValueError, match="water_present"):
        GpioContactDriver("x", lambda item: None, pin=17, quantity="co_ppm", pin_factory=pins)


# -- rain gauge -------------------------------------------------------------------------------


def _tips(pin, clock, n: int, hz: float = 20.0, bounce: int = 3) -> None:
    """n tips at `hz`, each closing with `bounce` extra edges 1 ms apart and reopening likewise."""
    period = 1 / hz
    for _ in range(n):
        for i in range(2 * bounce + 1):
            pin.drive_low() if i % 2 == 0 else pin.drive_high()
            clock.advance(0.001)
        clock.advance(period / 2 - (2 * bounce + 1) * 0.001)
        for i in range(2 * bounce + 1):
            pin.drive_high() if i % 2 == 0 else pin.drive_low()
            clock.advance(0.001)
        clock.advance(period / 2 - (2 * bounce + 1) * 0.001)


def test_rain_gauge_counts_bouncy_tips_at_20_hz(make_driver, pins, collector, fake_clock):
    pin = pins.pin(22)
    make_driver(
        "gpio_pulse", "rain", pin=22, per_pulse=0.2, report_s=60, pin_factory=pins, clock=fake_clock
    )
    time.sleep(0.05)
    _tips(pin, fake_clock, 100)  # 5 s of tips at 20 Hz, every edge bouncing
    fake_clock.advance(60 - 5 + 0.01)  # (float steps add up to a hair under 5 s)
    [report] = collector.wait_readings(1, timeout=2)
    assert (report.sensor, report.quantity) == ("rain", "rain_mm")
    assert report.value == pytest.approx(100 * 0.2)
    fake_clock.advance(60)
    dry = collector.wait_readings(2, timeout=2)[1]
    assert dry.value == 0.0


def test_no_tip_is_lost_across_report_boundaries(make_driver, pins, collector):
    """Tips from another thread while the worker reports every 10 ms (real clock)."""
    pin = pins.pin(22)
    driver = make_driver(
        "gpio_pulse", pin=22, per_pulse=0.5, report_s=0.01, debounce_s=0, pin_factory=pins
    )
    time.sleep(0.05)
    tips = 3000

    def tipper() -> None:
        for _ in range(tips):
            pin.drive_low()
            pin.drive_high()

    thread = threading.Thread(target=tipper)
    thread.start()
    thread.join()
    driver.stop()  # reports what is left
    readings = collector.readings()
    assert len(readings) > 3  # the tips really did straddle several reports
    assert sum(r.value for r in readings) == tips * 0.5


def test_rain_gauge_on_a_busy_pin_recovers(make_driver, pins, collector):
    blocker = DigitalInputDevice(22, pin_factory=pins)
    make_driver("gpio_pulse", pin=22, report_s=0.05, pin_factory=pins)
    collector.wait_health("port_unavailable")
    blocker.close()
    collector.wait_health("", timeout=3)
    collector.wait_readings(1, timeout=2)
