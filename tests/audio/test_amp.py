"""The amplifier relay on a gpiozero MockFactory pin."""

from __future__ import annotations

import threading
import time

import pytest

from audio.amp import Amplifier, AmplifierError


def history(pin) -> list[bool]:
    return [s.state for s in pin.states]


def wait_until(predicate, timeout: float = 2.0) -> float:
    start = time.monotonic()
    while not predicate():
        assert time.monotonic() - start < timeout, "condition never became true"
        time.sleep(0.005)
    return time.monotonic() - start


def test_acquire_switches_on_and_waits_out_the_warmup(pin_factory) -> None:
    amp = Amplifier(17, warmup_s=0.2, release_s=0.1, pin_factory=pin_factory)
    pin = pin_factory.pin(17)
    assert pin.state is False
    started = time.monotonic()
    assert amp.acquire() is True
    assert time.monotonic() - started >= 0.2
    assert pin.state is True
    started = time.monotonic()
    amp.acquire()  # already warm: no second wait
    assert time.monotonic() - started < 0.05
    amp.close()
    assert history(pin) == [False, True, False]


def test_release_switches_off_after_the_release_time(pin_factory) -> None:
    amp = Amplifier(17, warmup_s=0.0, release_s=0.2, pin_factory=pin_factory)
    pin = pin_factory.pin(17)
    amp.acquire()
    amp.release()
    assert pin.state is True
    assert 0.15 <= wait_until(lambda: not pin.state) <= 0.5
    amp.close()
    assert history(pin) == [False, True, False]


def test_acquire_during_release_keeps_it_on(pin_factory) -> None:
    amp = Amplifier(17, warmup_s=0.0, release_s=0.15, pin_factory=pin_factory)
    pin = pin_factory.pin(17)
    amp.acquire()
    amp.release()
    time.sleep(0.05)
    amp.acquire()  # a second message arrives before the relay drops
    time.sleep(0.25)
    assert pin.state is True
    amp.release()
    wait_until(lambda: not pin.state)
    amp.close()
    assert history(pin) == [False, True, False]


def test_warmup_wait_is_abortable(pin_factory) -> None:
    amp = Amplifier(17, warmup_s=5.0, pin_factory=pin_factory)
    abort = threading.Event()
    threading.Timer(0.1, abort.set).start()
    started = time.monotonic()
    assert amp.acquire(abort) is False
    assert time.monotonic() - started < 1.0
    amp.close()


def test_active_low_relay(pin_factory) -> None:
    amp = Amplifier(22, active_high=False, warmup_s=0.0, release_s=0.0, pin_factory=pin_factory)
    pin = pin_factory.pin(22)
    assert pin.state is True  # off = high on a low-triggered relay board
    amp.acquire()
    assert pin.state is False
    amp.release()
    assert pin.state is True
    amp.close()


def test_no_pin_means_no_relay_and_no_wait() -> None:
    amp = Amplifier(None, warmup_s=5.0)
    started = time.monotonic()
    assert amp.acquire() is True
    assert time.monotonic() - started < 0.05
    amp.release()
    amp.close()
    assert amp.is_on is False


def test_pin_in_use_is_an_amplifier_error(pin_factory) -> None:
    first = Amplifier(17, pin_factory=pin_factory)
    with pytest.raises(AmplifierError, match="GPIO 17"):
        Amplifier(17, pin_factory=pin_factory)
    first.close()
