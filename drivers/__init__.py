"""Sensor drivers: one module per device family, a registry keyed by config `type`, and a simulator.

Drivers turn a port or a pin into readings and health signals; they know nothing of MQTT or SQLite.

- `drivers.base`: `Reading`, `Health`, `Clock`, the `Driver` base class, `PHYSICAL_RANGE` and
  `BOOLEAN_QUANTITIES`;
- `drivers.registry`: `SENSOR_TYPES` (every config `type`, its driver and fixed quantity) and
  `create(type_, name, emit, **params)`;
- device modules: `ze07_co`, `modbus_level`, `gpio_contact`, `gpio_pulse`, `jsonl`, `simulated`;
- shared machinery: `serial_link` (UART ports, back-off, watchdog), `gpio_input` and `debounce`.

docs/devices.md describes every device, its wiring, frames and config keys.
"""
