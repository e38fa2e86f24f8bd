"""The one list of sensor types: the config ``type`` of a ``[[sensors]]`` table, its driver.

Why this module exists: a sensor type is added here and nowhere else in a list; the config's
union of sensor tables (gateway/config/sensors.py) is built from `SENSOR_TYPES`, in its order.
`create()` builds a driver from a sensor's config keys (minus ``name`` and ``type``) and turns
a wrong key or value into a `DriverConfigError` that names the sensor and what is allowed, so a
caller never has to read a Python traceback to find a typo.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any

from drivers import gpio_contact, gpio_pulse, jsonl, modbus_level, simulated, ze07_co
from drivers.base import Clock, Driver, Emit


@dataclass(frozen=True)
class SensorType:
    """What a sensor type is: its driver, and the quantity it always reports."""

    driver: type[Driver]
    quantity: str | None = None
    """None when the config names it (``quantity``) or the device reports several (jsonl)."""


SENSOR_TYPES: dict[str, SensorType] = {
    "ze07_co": SensorType(ze07_co.Ze07CoDriver, ze07_co.QUANTITY),
    "modbus_level": SensorType(modbus_level.ModbusLevelDriver, modbus_level.QUANTITY),
    "gpio_contact": SensorType(gpio_contact.GpioContactDriver),
    "gpio_pulse": SensorType(gpio_pulse.GpioPulseDriver, gpio_pulse.QUANTITY),
    "jsonl": SensorType(jsonl.JsonlDriver),
    "simulated": SensorType(simulated.SimulatedDriver),
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
        return SENSOR_TYPES[type_].driver
    except KeyError:
        known = ", ".join(sorted(SENSOR_TYPES))
        raise DriverConfigError(f"unknown sensor type {type_!r}; known types: {known}") from None
