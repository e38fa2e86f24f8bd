"""Fixtures for the systemd tests: a notify socket standing in for systemd."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.systemd.notify_listener import NotifyListener


@pytest.fixture
def notify_listener() -> Iterator[NotifyListener]:
    listener = NotifyListener()
    try:
        yield listener
    finally:
        listener.close()
