"""Sensor drivers: one module per device family, a registry keyed by config `type`, and a simulator.

Drivers turn a port or a pin into readings and health signals; they know nothing of MQTT or SQLite.
"""
