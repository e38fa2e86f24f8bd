"""Cunxiang station gateway: config, store, sync, rules, alerts, CLI and the service that wires them."""

__version__ = "0.1.0"
#: The day this version was released (UTC). A new database starts its time floor here
#: (docs/protocol.md §6.1): nothing signed before it can still be current.
__release_date__ = "2026-11-30"
