"""The registry: every config type builds its driver, and keys match the config models exactly."""

from __future__ import annotations

import pytest
from pydantic_core import PydanticUndefined

from drivers.base import BOOLEAN_QUANTITIES, PHYSICAL_RANGE
from drivers.registry import REQUIRED, SENSOR_TYPES, DriverConfigError, create, parameters
from gateway.config.sensors import SENSOR_MODELS


def test_every_config_type_has_a_driver() -> None:
    assert set(SENSOR_TYPES) == set(SENSOR_MODELS)


@pytest.mark.parametrize("type_", sorted(SENSOR_TYPES))
def test_driver_keys_and_defaults_are_the_config_keys(type_: str) -> None:
    """The driver's keywords are exactly the config model's keys (minus name/type), same defaults."""
    fields = {
        f.alias or k: f.default
        for k, f in SENSOR_MODELS[type_].model_fields.items()
        if k not in ("name", "type")
    }
    params = parameters(type_)
    assert set(params) == set(fields)
    for key, default in fields.items():
        expected = REQUIRED if default is PydanticUndefined else default
        assert params[key] == expected, key


def test_create_builds_each_type_without_touching_hardware(tmp_path) -> None:
    from gpiozero.pins.mock import MockFactory

    emit = [].append
    required = {
        "ze07_co": {"port": str(tmp_path / "a")},
        "modbus_level": {"port": str(tmp_path / "b"), "register": 4},
        "gpio_contact": {"pin": 17},
        "gpio_pulse": {"pin": 22},
        "jsonl": {"port": str(tmp_path / "c")},
        "simulated": {"quantity": "co_ppm"},
    }
    for type_, params in required.items():
        driver = create(type_, f"s-{type_}", emit, pin_factory=MockFactory(), **params)
        assert isinstance(driver, SENSOR_TYPES[type_].driver)
        assert driver.name == f"s-{type_}"


@pytest.mark.parametrize(
    ("type_", "params", "match"),
    [
        ("ze07", {}, "unknown sensor type 'ze07'; known types: gpio_contact"),
        ("ze07_co", {"port": "/dev/x", "buad": 9600}, "unknown key.*buad.*allowed: baud"),
        ("modbus_level", {"port": "/dev/x"}, "missing key.*register"),
        ("ze07_co", {"port": "/dev/x", "mode": "push"}, 'sensor "s" \\(ze07_co\\): mode must be'),
        ("modbus_level", {"port": "/dev/x", "register": 4, "unit": 0}, "unit must be"),
        ("gpio_contact", {"pin": 17, "quantity": "co_ppm"}, "quantity of a contact"),
        ("simulated", {"quantity": "Bad Name"}, "quantity must look like"),
        ("simulated", {"quantity": "co_ppm", "pattern": "script"}, "values"),
        ("gpio_pulse", {"pin": 22, "per_pulse": 0}, "per_pulse"),
    ],
)
def test_bad_config_gets_a_clear_error(type_: str, params: dict, match: str) -> None:
    with pytest.raises(DriverConfigError, match=match):
        create(type_, "s", [].append, **params)


def test_vocabularies_do_not_overlap() -> None:
    assert not set(PHYSICAL_RANGE) & BOOLEAN_QUANTITIES
    assert all(low < high for low, high in PHYSICAL_RANGE.values())


def test_config_models_feed_the_registry() -> None:
    """What the config loader produces (`driver_params()`) is what `create()` takes."""
    samples = {
        "ze07_co": ({"port": "/dev/ttyUSB0", "mode": "qa"}, lambda d: d.mode == "qa"),
        "modbus_level": (
            {"port": "/dev/ttyAMA0", "register": 4, "decimals_register": 3},
            lambda d: (d.map.register, d.map.decimals_register) == (4, 3),
        ),
        "gpio_contact": (
            {"pin": 17, "quantity": "water_present"},
            lambda d: d.quantity == "water_present",
        ),
        "gpio_pulse": ({"pin": 22, "per_pulse": 0.5}, lambda d: d.per_pulse == 0.5),
        "jsonl": ({"port": "/dev/ttyUSB1"}, lambda d: d.baud == 115200),
        "simulated": (
            {"quantity": "smoke", "pattern": "script", "values": [False, True]},
            lambda d: d.pattern.values == [False, True],
        ),
    }
    for type_, (keys, check) in samples.items():
        model = SENSOR_MODELS[type_].model_validate({"name": "x", "type": type_, **keys})
        driver = create(type_, "x", [].append, **model.driver_params())
        assert check(driver), type_
