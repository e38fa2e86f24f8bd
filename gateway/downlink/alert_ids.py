"""Alert-log ids: central ids are per key, station ids are reserved (docs/protocol.md §6, §6.1).

"Already accepted" means the same key and the same id, so another authority's
alert with the same (often predictable) id is a different alert and cannot
burn it. The alert log (gateway/store/outbox.py) is keyed by one string, so a central
alert is logged as ``<key>/<id>``: key names never hold ``/`` or ``:``
(gateway/downlink/keys.py), so this can neither be mistaken for another key's entry
nor for one of the station's own entries, which start with a reserved prefix
(``local:``, ``cmd:``, ``prog:``, ``mic:``). Receipts carry the alert's own id.
"""

from __future__ import annotations

from collections.abc import Iterable

#: Prefixes of the station's own broadcast ids; a central id or reference may not use them.
RESERVED_PREFIXES: tuple[str, ...] = ("local:", "cmd:", "prog:", "mic:")
KEY_SEPARATOR = "/"


def is_reserved(alert_id: str) -> bool:
    """True for an id the station gives its own broadcasts and commands."""
    return alert_id.startswith(RESERVED_PREFIXES)


def log_id(key: str, alert_id: str) -> str:
    """The alert-log id of central alert `alert_id` signed by `key`."""
    return f"{key}{KEY_SEPARATOR}{alert_id}"


def command_log_id(key: str, command_id: str) -> str:
    """The alert-log id of a command (de-duplicated per key, like alerts)."""
    return f"cmd:{log_id(key, command_id)}"


def public_id(entry_id: str) -> str:
    """The id receipts carry for an alert-log entry: the alert's own id for central alerts."""
    if is_reserved(entry_id) or KEY_SEPARATOR not in entry_id:
        return entry_id
    return entry_id.split(KEY_SEPARATOR, 1)[1]


def reachable(alert_id: str, key: str, keys: Iterable[str], override: bool) -> list[str]:
    """The log ids a reference from `key` may touch: its own, or every key's with `override`."""
    if not override:
        return [log_id(key, alert_id)]
    return [log_id(name, alert_id) for name in dict.fromkeys([key, *keys])]
