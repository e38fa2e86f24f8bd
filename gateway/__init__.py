"""Cunxiang station gateway: config, store, sync, rules, alerts, CLI and the service that wires them."""

__version__ = "0.1.0"
