"""The one list of drivers, keyed by the config ``type`` of a ``[[sensors]]`` table.

`create()` builds a driver from a sensor's config keys (minus ``name`` and ``type``) and turns
a wrong key or value into a `DriverConfigError` that names the sensor and what is allowed, so a
caller never has to read a Python traceback to find a typo.
"""

from __future__ import annotations

import inspect
from typing import Any

from drivers.base import Clock, Driver, Emit
from drivers.gpio_contact import GpioContactDriver
from drivers.gpio_pulse import GpioPulseDriver
from drivers.jsonl import JsonlDriver
from drivers.modbus_level import ModbusLevelDriver
from drivers.simulated import SimulatedDriver
from drivers.ze07_co import Ze07CoDriver

DRIVERS: dict[str, type[Driver]] = {
    "ze07_co": Ze07CoDriver,
    "modbus_level": ModbusLevelDriver,
    "gpio_contact": GpioContactDriver,
    "gpio_pulse": GpioPulseDriver,
    "jsonl": JsonlDriver,
    "simulated": SimulatedDriver,
}

#: Constructor keywords that are not config keys.
_RUNTIME_KEYS = frozenset({"name", "emit", "clock", "pin_factory"})
REQUIRED = inspect.Parameter.empty


class DriverConfigError(ValueError):
    """A sensor's type, keys or values cannot make a driver."""


def parameters(type_: str) -> dict[str, Any]:
    """The config keys of a sensor type and their defaults (`REQUIRED` when there is none)."""
    cls = _driver_class(type_)
    params = inspect.signature(cls.__init__).parameters
    return {
        key: p.default
        for key, p in params.items()
        if key != "self" and key not in _RUNTIME_KEYS and p.kind is p.KEYWORD_ONLY
    }


def create(
    type_: str,
    name: str,
    emit: Emit,
    *,
    clock: Clock | None = None,
    pin_factory: Any = None,
    **params: Any,
) -> Driver:
    """A driver for sensor `name` of config type `type_`, not yet started.

    `params` are the sensor's config keys; `pin_factory` goes to the GPIO drivers only (None:
    gpiozero's default). Raises `DriverConfigError` for an unknown type, an unknown or missing
    key, or a value the driver refuses.
    """
    cls = _driver_class(type_)
    allowed = parameters(type_)
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        raise DriverConfigError(
            f'sensor "{name}" ({type_}): unknown key(s) {", ".join(unknown)}; '
            f"allowed: {', '.join(sorted(allowed))}"
        )
    missing = sorted(k for k, v in allowed.items() if v is REQUIRED and k not in params)
    if missing:
        raise DriverConfigError(f'sensor "{name}" ({type_}): missing key(s) {", ".join(missing)}')
    extra: dict[str, Any] = {"clock": clock}
    if "pin_factory" in inspect.signature(cls.__init__).parameters:
        extra["pin_factory"] = pin_factory
    try:
        return cls(name, emit, **params, **extra)
    except (ValueError, TypeError) as exc:
        raise DriverConfigError(f'sensor "{name}" ({type_}): {exc}') from exc


def _driver_class(type_: str) -> type[Driver]:
    try:
        return DRIVERS[type_]
    except KeyError:
        known = ", ".join(sorted(DRIVERS))
        raise DriverConfigError(f"unknown sensor type {type_!r}; known types: {known}") from None
