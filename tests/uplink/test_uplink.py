"""The uplink against a real Mosquitto, judged by what the centre's subscriber receives."""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import time
from pathlib import Path

import pytest

from gateway.downlink.alert_model import area_path
from gateway.uplink.supervisor import ReconnectBackoff
from gateway.uplink.topics import topics_for
from harness.mosquitto import Mosquitto
from tests.uplink.conftest import (
    AREA,
    PREFIX,
    STATION_ID,
    STATION_TOPIC,
    Centre,
    add_readings,
    contiguous,
    make_config,
    retained_state,
    running,
)


def test_ten_thousand_readings_taken_while_the_broker_is_down_all_arrive(tmp_path: Path) -> None:
    broker = Mosquitto()
    broker.start()
    centre = Centre(broker.port)
    broker.stop()  # the centre's persistent session survives in the broker's persistence file
    config = make_config(tmp_path, broker.port, sync={"batch_max": 500, "inflight_max": 20})

    async def scenario() -> None:
        async with running(config) as station:
            add_readings(station.store, 6_000)
            fault = station.store.add_event(
                "sensor_fault", {"sensor": "river", "reason": "no_data"}
            ).seq
            add_readings(station.store, 4_000, start_value=6)
            station.store.flush()
            await asyncio.sleep(0.5)
            assert not station.uplink.connected
            assert station.store.backlog()[0] == 10_001
            broker.start()
            await station.until(lambda: station.store.backlog()[0] == 0, 20, "an empty backlog")
            await centre.until(lambda c: len(c.seqs()) == 10_001, 20, "10,001 records")
            assert fault == 6_001

    try:
        asyncio.run(scenario())
        seqs = centre.seqs()
        assert contiguous(seqs) and max(seqs) == 10_001
        # no reconnect happened during the drain, so QoS 1 cannot explain any duplicate
        assert centre.duplicates() == 0
        data = [kind for kind in centre.order if kind != "state"]
        assert data[0] == "event", "after a reconnect pending events go before the backlog"
        assert all(n <= 500 and size <= 256 * 1024 for n, size in centre.batch_sizes)
        readings = [r["seq"] for r in centre.readings]
        assert readings == sorted(readings), "readings arrive in seq order"
    finally:
        centre.close()
        broker.close()


def test_broker_restarted_five_times_during_a_drain_leaves_no_gap(tmp_path: Path) -> None:
    broker = Mosquitto()
    broker.start()
    centre = Centre(broker.port)
    config = make_config(tmp_path, broker.port, sync={"batch_max": 100, "inflight_max": 5})

    async def scenario() -> int:
        async with running(config) as station:
            add_readings(station.store, 30_000)
            store = station.store
            for restart in range(5):
                await station.until(lambda: station.uplink.connected, 10, "a connection")
                await asyncio.sleep(0.15)
                add_readings(store, 2_000, start_value=100 + restart)
                store.add_event("sensor_ok", {"sensor": f"s{restart}"})
                assert store.backlog()[0] > 0, "the restart must fall in the middle of a drain"
                broker.restart()  # SIGTERM: Mosquitto saves sessions and queued messages
            await station.until(lambda: store.backlog()[0] == 0, 30, "an empty backlog")
            return store.last_seq

    try:
        last = asyncio.run(scenario())
        centre.wait(lambda c: len(c.seqs()) == last, 30, f"all {last} records")
        assert contiguous(centre.seqs())
        # QoS 1 redelivery can repeat at most what was in flight when each connection ended
        assert centre.duplicates() <= 5 * 5 * 100
    finally:
        centre.close()
        broker.close()


def test_broker_killed_five_times_loses_only_what_resend_repairs(tmp_path: Path) -> None:
    broker = Mosquitto()
    broker.start()
    centre = Centre(broker.port)
    config = make_config(tmp_path, broker.port, sync={"batch_max": 100, "inflight_max": 5})

    async def scenario() -> None:
        async with running(config) as station:
            store = station.store
            add_readings(store, 20_000)
            for crash in range(5):
                await station.until(lambda: station.uplink.connected, 10, "a connection")
                await asyncio.sleep(0.1)
                add_readings(store, 2_000, start_value=100 + crash)
                store.flush()
                broker.kill()  # SIGKILL: what Mosquitto acknowledged since its last save is gone
                broker.start()
            await station.until(lambda: store.backlog()[0] == 0, 30, "an empty backlog")
            await asyncio.sleep(1.5)  # the centre reconnects after about a second
            # the centre finds the gaps the broker lost and asks for them again (§8 resend)
            missing = sorted(set(range(1, store.last_seq + 1)) - centre.seqs())
            for lo, hi in runs(missing):
                assert station.uplink.resend(lo, hi) == (lo, hi)
            await centre.until(
                lambda c: len(c.seqs()) == store.last_seq, 20, "every seq after the resend"
            )

    try:
        asyncio.run(scenario())
        assert contiguous(centre.seqs())
    finally:
        centre.close()
        broker.close()


def runs(seqs: list[int]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for seq in seqs:
        if out and out[-1][1] == seq - 1:
            out[-1] = (out[-1][0], seq)
        else:
            out.append((seq, seq))
    return out


def test_retained_state_on_connect_and_offline_state_on_clean_stop(
    tmp_path: Path, broker: Mosquitto
) -> None:
    centre = Centre(broker.port)
    config = make_config(tmp_path, broker.port)

    async def scenario() -> None:
        async with running(config) as station:
            await centre.until(lambda c: any(s["online"] for s, _ in c.states), 10, "online")
            station.fields["audio"] = "playing"
            station.uplink.state_changed()
            await centre.until(lambda c: c.states[-1][0].get("audio") == "playing", 5, "change")
            assert (await asyncio.to_thread(retained_state, broker.port))["audio"] == "playing"

    try:
        asyncio.run(scenario())
        centre.wait(lambda c: c.states[-1][0]["online"] is False, 5, "offline state")
        online = centre.states[0][0]
        for key in (
            "online",
            "ts",
            "version",
            "boot",
            "area",
            "backlog",
            "oldest_unsent_ts",
            "clock_synced",
            "audio",
            "sensors",
        ):
            assert key in online
        assert online["area"] == AREA and online["backlog"] == 0
        assert retained_state(broker.port)["online"] is False
    finally:
        centre.close()


def test_downlink_is_delivered_after_an_outage_through_the_persistent_session(
    tmp_path: Path, broker: Mosquitto
) -> None:
    config = make_config(tmp_path, broker.port)
    centre = Centre(broker.port)
    topics = topics_for(PREFIX, STATION_ID, AREA)
    assert set(topics.downlink) == {
        f"{PREFIX}/alert/all",
        *(f"{PREFIX}/alert/{code}" for code in area_path(AREA)),
        f"{STATION_TOPIC}/alert",
        f"{STATION_TOPIC}/cmd",
        f"{PREFIX}/programme/all",
        *(f"{PREFIX}/programme/{code}" for code in area_path(AREA)),
        f"{STATION_TOPIC}/programme",
    }

    async def scenario() -> None:
        async with running(config) as station:
            await station.until(lambda: station.uplink.connected, 10, "a connection")
            await asyncio.sleep(0.2)
        # the station is off; the centre sends to every downlink topic meanwhile
        for n, topic in enumerate(topics.downlink):
            centre.publish(topic, json.dumps({"n": n}).encode())
        centre.publish(f"{PREFIX}/alert/37158100", b"{}")  # another town's code: not ours
        async with running(config) as station:
            await station.until(
                lambda: len(station.downlinks) == len(topics.downlink), 10, "all downlink"
            )
            await asyncio.sleep(0.3)
            assert sorted(station.downlinks) == sorted(
                (topic, json.dumps({"n": n}).encode()) for n, topic in enumerate(topics.downlink)
            )

    try:
        asyncio.run(scenario())
    finally:
        centre.close()


def test_resend_publishes_stored_records_again(tmp_path: Path, broker: Mosquitto) -> None:
    centre = Centre(broker.port)
    config = make_config(tmp_path, broker.port)

    async def scenario() -> None:
        async with running(config) as station:
            add_readings(station.store, 50)
            station.store.add_event("sensor_ok", {"sensor": "river"})
            await station.until(lambda: station.store.backlog()[0] == 0, 10, "an empty backlog")
            await centre.until(lambda c: len(c.seqs()) == 51, 5, "51 records")
            assert station.uplink.resend(45, 1000) == (45, 51)
            assert station.uplink.resend(900, 1000) is None
            await centre.until(lambda c: c.duplicates() == 7, 5, "seq 45..51 again")

    try:
        asyncio.run(scenario())
        again = sorted(
            s for s, n in (centre.reading_counts + centre.record_counts).items() if n > 1
        )
        assert again == list(range(45, 52))
    finally:
        centre.close()


def test_storage_budget_forced_small_reports_exactly_what_was_deleted(tmp_path: Path) -> None:
    broker = Mosquitto()
    broker.start()
    centre = Centre(broker.port)
    config = make_config(tmp_path, broker.port, storage={"max_mb": 1})

    async def scenario() -> int:
        async with running(config) as station:
            store = station.store
            add_readings(store, 10_000)
            await station.until(lambda: store.backlog()[0] == 0, 10, "the first part sent")
            broker.stop()
            await station.until(lambda: not station.uplink.connected, 10, "the outage")
            store.add_event("sensor_fault", {"sensor": "river", "reason": "no_data"})
            for part in range(8):
                add_readings(store, 10_000, start_value=part + 1)
                store.flush()
                store.budget.enforce()
            assert store.budget.used_bytes() <= 1024 * 1024
            broker.start()
            await station.until(lambda: store.backlog()[0] == 0, 20, "an empty backlog")
            return store.last_seq

    try:
        last = asyncio.run(scenario())
        centre.wait(lambda c: max(c.seqs(), default=0) == last, 20, "the last record")
        time.sleep(0.2)
        seen = centre.seqs()
        drops = centre.events_of("data_dropped")
        assert drops, "unsent readings had to go, and the centre must be told"
        reported: set[int] = set()
        for drop in drops:
            missing = {s for s in range(drop["from_seq"], drop["to_seq"] + 1) if s not in seen}
            assert len(missing) == drop["count"] and drop["reason"] == "max_mb"
            assert drop["from_seq"] > 10_000, "readings sent before the outage never count"
            reported |= missing
        assert set(range(1, last + 1)) - seen == reported, "every gap is reported, no more"
        assert centre.events_of("sensor_fault"), "the unsent event survived the budget"
    finally:
        centre.close()
        broker.close()


def test_an_unclean_exit_leaves_the_last_will_as_retained_state(
    tmp_path: Path, broker: Mosquitto
) -> None:
    import subprocess
    import sys

    from tests.uplink.conftest import config_data, write_config

    centre = Centre(broker.port)
    config_file = write_config(tmp_path / "gateway.toml", config_data(tmp_path, broker.port))
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.uplink.station_process", str(config_file), "0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        centre.wait(lambda c: any(s["online"] for s, _ in c.states), 15, "online state")
        proc.kill()
        proc.wait(5)
        centre.wait(lambda c: c.states[-1][0]["online"] is False, 10, "the Last Will")
        will = retained_state(broker.port)
        assert will["online"] is False and will["area"] == AREA
    finally:
        proc.kill()
        centre.close()


def test_a_broker_that_accepts_tcp_and_never_answers_is_given_up_and_retried(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import socket

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    port = server.getsockname()[1]
    accepted: list[tuple[float, socket.socket]] = []
    config = make_config(tmp_path, port, mqtt={"reconnect_min_s": 0.1, "reconnect_max_s": 0.2})

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        server.setblocking(False)
        async with running(config, connack_timeout_s=0.5) as station:
            while len(accepted) < 3:
                conn, _ = await asyncio.wait_for(loop.sock_accept(server), 5)
                accepted.append((time.monotonic(), conn))
            assert not station.uplink.connected

    caplog.set_level(logging.WARNING, logger="gateway.uplink")
    try:
        asyncio.run(scenario())
    finally:
        for _, conn in accepted:
            conn.close()
        server.close()
    gaps = [b[0] - a[0] for a, b in itertools.pairwise(accepted)]
    # Each gap is the 0.5 s CONNACK timeout plus a back-off of 0–0.2 s (full jitter since
    # issue 17; it was 0.1–0.2 s, which also absorbed the test's own accept latency). 0.1 s
    # is left for that latency; without the CONNACK wait the gaps would be at most 0.2 s.
    assert all(gap >= 0.4 for gap in gaps), f"each attempt waited for its CONNACK first: {gaps}"
    assert "no CONNACK within 0.5 s" in caplog.text


def test_a_broker_that_stops_answering_mid_drain_is_detected_and_left(
    tmp_path: Path, broker: Mosquitto, caplog: pytest.LogCaptureFixture
) -> None:
    import signal

    centre = Centre(broker.port)
    config = make_config(tmp_path, broker.port, sync={"batch_max": 50, "inflight_max": 4})
    assert broker._process is not None
    pid = broker._process.pid

    async def scenario() -> None:
        async with running(config, ack_timeout_s=1.0, connack_timeout_s=1.0) as station:
            await station.until(lambda: station.uplink.connected, 10, "a connection")
            import os

            os.kill(pid, signal.SIGSTOP)  # TCP stays open, nothing answers
            try:
                add_readings(station.store, 5_000)
                await station.until(lambda: not station.uplink.connected, 10, "giving up")
            finally:
                os.kill(pid, signal.SIGCONT)
            await station.until(lambda: station.store.backlog()[0] == 0, 20, "the drain")

    caplog.set_level(logging.WARNING, logger="gateway.uplink")
    try:
        asyncio.run(scenario())
        centre.wait(lambda c: len(c.seqs()) == 5_000, 10, "all readings")
        assert contiguous(centre.seqs())
        assert "no PUBACK for 1 s" in caplog.text
    finally:
        centre.close()


def test_a_dead_network_thread_is_replaced(
    tmp_path: Path, broker: Mosquitto, mocker: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import paho.mqtt.client as mqtt

    from gateway.uplink.mqtt_client import BoundedClient

    centre = Centre(broker.port)
    config = make_config(tmp_path, broker.port)
    real = BoundedClient.loop_read
    calls = {"n": 0}

    def dies_once(self: mqtt.Client, max_packets: int = 1) -> mqtt.MQTTErrorCode:
        calls["n"] += 1
        if calls["n"] == 3:  # a bug deep in the network code kills the thread
            raise RuntimeError("simulated crash in the network thread")
        return real(self, max_packets)

    # paho's network thread cannot be made to die for real, so the fault is injected, into the
    # station's client only (patched on paho's Client, the third read was at times the centre's)
    mocker.patch.object(BoundedClient, "loop_read", dies_once)

    async def scenario() -> None:
        async with running(config) as station:
            await station.until(lambda: calls["n"] >= 3, 10, "the crash")
            add_readings(station.store, 1_000)
            await station.until(lambda: station.store.backlog()[0] == 0, 10, "the drain")

    caplog.set_level(logging.WARNING, logger="gateway.uplink")
    try:
        asyncio.run(scenario())
        centre.wait(lambda c: len(c.seqs()) == 1_000, 10, "all readings")
        assert "simulated crash" in caplog.text
    finally:
        centre.close()


def test_backoff_has_full_jitter_within_the_configured_bounds() -> None:
    delays = [
        ReconnectBackoff(1.0, 60.0).delay(attempt) for attempt in range(40) for _ in range(50)
    ]
    assert min(delays) >= 0.0 and max(delays) <= 60.0
    assert len({round(d, 6) for d in delays}) > 1000, "stations must not retry in lock-step"
    low, high = (
        ReconnectBackoff(1.0, 60.0, rng=lambda: 0.0),
        ReconnectBackoff(1.0, 60.0, rng=lambda: 1.0),
    )
    assert [low.delay(n) for n in range(3)] == [0.0, 0.0, 0.0]
    # The first attempt is spread over max(2 × reconnect_min_s, 2 s); the ceiling grows 1.5×.
    assert [round(high.delay(n), 3) for n in (0, 1, 2, 20)] == [2.0, 3.0, 4.5, 60.0]
    # never above reconnect_max_s
    assert ReconnectBackoff(0.2, 1.0, rng=lambda: 1.0).delay(0) == 1.0
    assert ReconnectBackoff(5.0, 60.0, rng=lambda: 1.0).delay(0) == 10.0


def test_a_fleet_first_attempts_leave_no_100ms_window_with_a_quarter_of_it() -> None:
    """10,000 stations' first attempts after a broker restart, binned by 100 ms."""
    import random

    rng = random.Random(17)
    backoff = ReconnectBackoff(1.0, 60.0, rng=rng.random)
    first = sorted(backoff.delay(0) for _ in range(10_000))
    bins: dict[int, int] = {}
    for delay in first:
        bins[int(delay * 10)] = bins.get(int(delay * 10), 0) + 1
    assert max(bins.values()) <= 10_000 // 15  # a twentieth on average; well under a quarter
    assert 0.8 <= first[len(first) // 2] <= 1.2  # the median is back after ~reconnect_min_s
