"""The ``[[sensors]]`` tables: one model per sensor type of drivers/registry.py.

Why this module exists: each type's keys, limits and defaults are those of its driver
(a test compares the two); which types exist, and in which order the JSON Schema lists them,
is `drivers.registry.SENSOR_TYPES`. A model is found by its ``type``, so adding a sensor type
is a driver, its registry entry and its model here, and no list to extend.
"""

from __future__ import annotations

import functools
import operator
from typing import TYPE_CHECKING, Annotated, Any, Literal, get_args

from pydantic import ConfigDict, Field, model_validator

from drivers.registry import SENSOR_TYPES
from gateway.config.sections import NAME_PATTERN, BcmPin, Section


class SensorBase(Section):
    """What every ``[[sensors]]`` table has: a name, and the keys of its driver."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    name: str = Field(pattern=NAME_PATTERN)

    def driver_params(self) -> dict[str, Any]:
        """The keyword arguments of this sensor's driver: every key but name and type."""
        return self.model_dump(by_alias=True, exclude={"name", "type"})


class Ze07CoSensor(SensorBase):
    """Winsen ZE07-CO carbon monoxide module on a UART."""

    type: Literal["ze07_co"]
    port: str
    baud: int = 9600
    mode: Literal["active", "qa"] = "active"
    poll_s: float = Field(1.0, gt=0)
    timeout_s: float = Field(10.0, gt=0)


class ModbusLevelSensor(SensorBase):
    """RS-485 Modbus RTU level transmitter."""

    type: Literal["modbus_level"]
    port: str
    baud: int = 9600
    unit: int = Field(1, ge=1, le=247)
    # `register` would shadow BaseModel's ABC `register`, hence the alias.
    value_register: int = Field(alias="register", ge=0, le=65535)
    decimals_register: int | None = Field(None, ge=0, le=65535)
    scale: float = 1.0
    offset: float = 0.0
    poll_s: float = Field(5.0, gt=0)
    timeout_s: float = Field(30.0, gt=0)
    retries: int = Field(2, ge=0, le=10)


class GpioContactSensor(SensorBase):
    """A dry contact on a GPIO: smoke detector relay, float switch, door."""

    type: Literal["gpio_contact"]
    pin: BcmPin
    active_low: bool = True
    quantity: str = "smoke"
    debounce_s: float = Field(0.05, ge=0, le=10)
    report_s: float = Field(60.0, gt=0)


class GpioPulseSensor(SensorBase):
    """A tipping-bucket rain gauge counting pulses on a GPIO."""

    type: Literal["gpio_pulse"]
    pin: BcmPin
    per_pulse: float = Field(0.2, gt=0)
    report_s: float = Field(60.0, gt=0)
    debounce_s: float = Field(0.01, ge=0, le=10)


class JsonlSensor(SensorBase):
    """A microcontroller writing one JSON object per line."""

    type: Literal["jsonl"]
    port: str
    baud: int = 115200
    timeout_s: float = Field(30.0, gt=0)


class SimulatedSensor(SensorBase):
    """A simulated sensor for demos and tests."""

    type: Literal["simulated"]
    quantity: str
    pattern: Literal["sine", "steps", "random_walk", "script"] = "sine"
    period_s: float = Field(60.0, gt=0)
    low: float = 0.0
    high: float = 1.0
    interval_s: float = Field(1.0, gt=0)
    values: list[float | bool] | None = None
    seed: int | None = None

    @model_validator(mode="after")
    def _script_has_values(self) -> SimulatedSensor:
        if self.pattern == "script" and not self.values:
            raise ValueError('pattern = "script" needs values = [ ... ]')
        return self


def _models_by_type() -> dict[str, type[SensorBase]]:
    """Every sensor model, keyed by its ``type``, in the registry's order."""
    found = {get_args(m.model_fields["type"].annotation)[0]: m for m in SensorBase.__subclasses__()}
    if set(found) != set(SENSOR_TYPES):
        raise RuntimeError(
            f"sensor models not in drivers/registry.py: {sorted(set(found) - set(SENSOR_TYPES))}; "
            f"registered types without a model: {sorted(set(SENSOR_TYPES) - set(found))}"
        )
    return {type_: found[type_] for type_ in SENSOR_TYPES}


SENSOR_MODELS: dict[str, type[SensorBase]] = _models_by_type()

# A [[sensors]] table of any type, told apart by its `type` (mypy sees the base class).
if TYPE_CHECKING:
    SensorConfig = SensorBase
else:
    SensorConfig = Annotated[
        functools.reduce(operator.or_, SENSOR_MODELS.values()), Field(discriminator="type")
    ]


def sensor_quantity(sensor: SensorBase) -> str | None:
    """The quantity a sensor reports, or None when it reports several (jsonl)."""
    registered = SENSOR_TYPES.get(getattr(sensor, "type", ""))
    fixed = registered.quantity if registered is not None else None
    return fixed or getattr(sensor, "quantity", None)
