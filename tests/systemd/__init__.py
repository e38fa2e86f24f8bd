"""Tests for the systemd side of the station: notify/watchdog, journald logs, unit, install."""
