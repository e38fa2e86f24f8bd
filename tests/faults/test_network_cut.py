"""Scenario 3: the link to the broker cut, then lossy (broker in its own network namespace).

The station reaches the broker over a veth pair between two namespaces made for the test
(harness/netns.py; addresses in 10.231.0.0/16 inside those namespaces only). The link is
taken down for 8 s (longer than the 5 s keepalive, so both sides notice) with an alert published
meanwhile, brought back, then 30 % of the packets in each direction are dropped by nftables for
8 s with another alert. Both alerts must play, readings must flow again after the cut, and
every committed record must reach the centre. Skipped, naming the reason, where the machine
does not allow namespaces.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.faults import network_cut
from harness.netns import NetnsLink
from tests.faults.conftest import report


def test_a_cut_and_a_lossy_link_lose_nothing_and_alerts_still_play(tmp_path: Path) -> None:
    reason = NetnsLink.available()
    if reason is not None:
        pytest.skip(f"network namespaces unavailable: {reason}")
    result = network_cut(tmp_path, cut_s=8, loss_s=8)
    text = report(result)
    assert result.lost == 0, text
    assert result.crashes == 0, text
    assert result.details["seq_conflicts"] == 0, text
    # The alert sent during the cut and the one sent during the loss were both heard.
    assert result.details["heard_in_full"] == 2, text
    assert result.details["packets_dropped_by_loss_rules"] > 0, text  # the loss was real
    assert result.details["readings_delivered_during_loss"] > 0, text
