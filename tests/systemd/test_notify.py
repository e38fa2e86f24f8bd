"""sd_notify and the progress watchdog, checked from systemd's side of the socket."""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import signal
import statistics
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from gateway.notify import ProgressWatchdog, SystemdNotifier, run_watchdog
from tests.systemd.notify_listener import NotifyListener

PROJECT = Path(__file__).resolve().parents[2]


def test_notifier_sends_each_message_to_the_socket(notify_listener: NotifyListener) -> None:
    notifier = SystemdNotifier(notify_listener.env)
    notifier.ready()
    notifier.status("backlog 1,203, broker connected,\naudio idle")
    notifier.watchdog()
    notifier.stopping()
    notify_listener.wait_for("STOPPING")
    notifier.close()

    got = [n.raw for n in notify_listener.all()]
    assert got == [
        "READY=1",
        "STATUS=backlog 1,203, broker connected, audio idle",
        "WATCHDOG=1",
        "STOPPING=1",
    ]


def test_abstract_namespace_socket() -> None:
    listener = NotifyListener(abstract=True)
    try:
        assert listener.address.startswith("@")
        SystemdNotifier(listener.env).ready()
        assert listener.wait_for("READY").fields["READY"] == "1"
    finally:
        listener.close()


def test_without_notify_socket_nothing_is_sent(notify_listener: NotifyListener) -> None:
    notifier = SystemdNotifier({})
    assert not notifier.enabled
    notifier.ready()
    notifier.watchdog()
    notifier.status("x")
    notifier.stopping()
    # The listener exists but was never named: it must have received nothing.
    time.sleep(0.1)
    assert notify_listener.all() == []
    assert notifier.watchdog_interval_s() is None


def test_a_vanished_socket_is_logged_once_and_never_raises(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    notifier = SystemdNotifier({"NOTIFY_SOCKET": str(tmp_path / "gone")})
    with caplog.at_level(logging.WARNING, logger="gateway.notify"):
        for _ in range(3):
            notifier.watchdog()
    warnings = [r for r in caplog.records if "cannot notify systemd" in r.getMessage()]
    assert len(warnings) == 1


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"WATCHDOG_USEC": "30000000"}, 15.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())}, 15.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}, None),
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "soon"}, None),
        ({}, None),
    ],
)
def test_watchdog_interval_is_half_of_watchdog_sec(
    env: dict[str, str], expected: float | None
) -> None:
    assert SystemdNotifier(env).watchdog_interval_s() == expected


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_progress_watchdog_names_the_silent_worker() -> None:
    clock = FakeClock()
    progress = ProgressWatchdog(clock)
    beat_sensor = progress.register("sensor:river", 30)
    beat_audio = progress.register("audio", 5)
    assert progress.healthy() == (True, [])

    clock.now += 6
    beat_sensor()
    assert progress.healthy() == (False, ["audio"])
    beat_audio()
    assert progress.healthy() == (True, [])
    clock.now += 31
    assert progress.healthy() == (False, ["audio", "sensor:river"])
    assert progress.healthy(now=clock.now - 31) == (True, [])
    progress.unregister("audio")
    progress.unregister("audio")
    assert progress.healthy() == (False, ["sensor:river"])


def test_progress_watchdog_rejects_bad_registrations() -> None:
    progress = ProgressWatchdog()
    progress.register("sync", 10)
    with pytest.raises(ValueError, match="already registered"):
        progress.register("sync", 10)
    with pytest.raises(ValueError, match="must be > 0"):
        progress.register("audio", 0)


TICK_S = 0.05
MAX_SILENCE_S = 0.3
# Scheduling slack for a loaded 2-core CI machine.
SLACK_S = 0.25


def _pings_between(listener: NotifyListener, start: float, end: float) -> list[float]:
    return [n.at for n in listener.with_key("WATCHDOG") if start <= n.at < end]


def test_pings_stop_while_a_worker_thread_is_wedged(
    notify_listener: NotifyListener, caplog: pytest.LogCaptureFixture
) -> None:
    """An audio thread stuck in a device write stops the pings; they resume after."""
    progress = ProgressWatchdog()
    stop = threading.Event()
    audio_gate = threading.Event()
    audio_gate.set()

    def worker(beat: object, gate: threading.Event | None) -> None:
        assert callable(beat)
        while not stop.is_set():
            if gate is not None:
                gate.wait()  # cleared: blocked like a write to a hung sound device
            beat()
            time.sleep(0.01)

    threads = [
        threading.Thread(
            target=worker, args=(progress.register("sensor:co-1", MAX_SILENCE_S), None)
        ),
        threading.Thread(
            target=worker, args=(progress.register("audio", MAX_SILENCE_S), audio_gate)
        ),
    ]
    for t in threads:
        t.start()

    async def scenario() -> tuple[float, float, float]:
        notifier = SystemdNotifier(notify_listener.env)
        task = asyncio.create_task(
            run_watchdog(
                notifier, progress, lambda: "backlog 0, broker connected", interval_s=TICK_S
            )
        )
        await asyncio.sleep(0.6)
        wedged_at = time.monotonic()
        audio_gate.clear()
        await asyncio.sleep(1.0)
        released_at = time.monotonic()
        audio_gate.set()
        await asyncio.sleep(0.4)
        task.cancel()
        return wedged_at, released_at, time.monotonic()

    try:
        with caplog.at_level(logging.WARNING, logger="gateway.notify"):
            wedged_at, released_at, end = asyncio.run(scenario())
    finally:
        stop.set()
        audio_gate.set()
        for t in threads:
            t.join()

    healthy = _pings_between(notify_listener, 0, wedged_at)
    assert len(healthy) >= 5, "pings must come periodically while every worker beats"
    assert max(b - a for a, b in itertools.pairwise(healthy)) < TICK_S + SLACK_S

    cutoff = wedged_at + MAX_SILENCE_S + TICK_S + SLACK_S
    assert _pings_between(notify_listener, cutoff, released_at) == [], "wedged: no pings"
    resumed = _pings_between(notify_listener, released_at, end)
    assert resumed and resumed[0] < released_at + TICK_S + SLACK_S

    stuck = notify_listener.wait_for("STATUS", "STUCK: audio")
    assert wedged_at < stuck.at < cutoff
    assert stuck.fields["STATUS"] == "STUCK: audio; backlog 0, broker connected"
    statuses = [n.fields["STATUS"] for n in notify_listener.with_key("STATUS")]
    assert statuses[-1] == "backlog 0, broker connected"
    messages = [r.getMessage() for r in caplog.records]
    assert any(m.startswith("worker audio made no progress") for m in messages)
    assert "worker audio is making progress again" in messages
    assert not any("sensor:co-1" in m for m in messages)


def test_pings_stop_when_the_sync_loop_dies(notify_listener: NotifyListener) -> None:
    progress = ProgressWatchdog()

    async def sync_loop(beat: object) -> None:
        assert callable(beat)
        for _ in range(10):
            beat()
            await asyncio.sleep(0.02)
        raise ConnectionError("sync loop crashed")

    async def scenario() -> float:
        notifier = SystemdNotifier(notify_listener.env)
        sync = asyncio.create_task(sync_loop(progress.register("sync", MAX_SILENCE_S)))
        task = asyncio.create_task(
            run_watchdog(notifier, progress, lambda: "ok", interval_s=TICK_S)
        )
        with pytest.raises(ConnectionError):
            await sync
        died_at = time.monotonic()
        await asyncio.sleep(1.0)
        task.cancel()
        return died_at

    died_at = asyncio.run(scenario())
    assert _pings_between(notify_listener, 0, died_at), "pings while the loop was alive"
    late = _pings_between(notify_listener, died_at + MAX_SILENCE_S + TICK_S + SLACK_S, 1e12)
    assert late == []
    notify_listener.wait_for("STATUS", "STUCK: sync")


def test_a_blocked_event_loop_stops_the_pings(notify_listener: NotifyListener) -> None:
    """The ping task runs on the event loop: a loop blocked for 0.6 s sends nothing then."""
    progress = ProgressWatchdog()
    progress.register("sensor", 60)

    async def scenario() -> tuple[float, float]:
        notifier = SystemdNotifier(notify_listener.env)
        task = asyncio.create_task(
            run_watchdog(notifier, progress, lambda: "ok", interval_s=TICK_S)
        )
        await asyncio.sleep(0.3)
        blocked_at = time.monotonic()
        time.sleep(0.6)  # a blocking call on the loop: exactly what must never happen
        unblocked_at = time.monotonic()
        await asyncio.sleep(0.3)
        task.cancel()
        return blocked_at, unblocked_at

    blocked_at, unblocked_at = asyncio.run(scenario())
    assert _pings_between(notify_listener, blocked_at + 0.01, unblocked_at) == []
    assert _pings_between(notify_listener, unblocked_at, 1e12)


def test_a_failing_status_text_does_not_stop_the_pings(notify_listener: NotifyListener) -> None:
    progress = ProgressWatchdog()
    progress.register("sensor", 60)

    def broken() -> str:
        raise RuntimeError("store closed")

    async def scenario() -> None:
        task = asyncio.create_task(
            run_watchdog(SystemdNotifier(notify_listener.env), progress, broken, interval_s=TICK_S)
        )
        await asyncio.sleep(0.3)
        task.cancel()

    asyncio.run(scenario())
    assert len(notify_listener.with_key("WATCHDOG")) >= 3
    assert notify_listener.wait_for("STATUS").fields["STATUS"] == "status unavailable"


CHILD = textwrap.dedent(
    """
    import asyncio, signal
    from gateway.notify import ProgressWatchdog, SystemdNotifier, run_watchdog

    async def main() -> None:
        notifier, progress = SystemdNotifier(), ProgressWatchdog()
        beat = progress.register("loop", 5.0)
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)

        async def worker() -> None:
            while True:
                beat()
                await asyncio.sleep(0.01)

        tasks = [asyncio.create_task(worker()),
                 asyncio.create_task(run_watchdog(notifier, progress, lambda: "backlog 0"))]
        notifier.ready()
        await stop.wait()
        notifier.stopping()
        for task in tasks:
            task.cancel()

    asyncio.run(main())
    """
)


def test_child_process_under_a_stand_in_systemd(notify_listener: NotifyListener) -> None:
    """READY, WATCHDOG at half of WATCHDOG_USEC, STOPPING on SIGTERM, exit 0."""
    watchdog_usec = 200_000
    env = {**os.environ, **notify_listener.env, "WATCHDOG_USEC": str(watchdog_usec)}
    env["PYTHONPATH"] = str(PROJECT)
    child = subprocess.Popen([sys.executable, "-c", CHILD], env=env, cwd=PROJECT)
    try:
        ready = notify_listener.wait_for("READY", timeout=15)
        time.sleep(1.0)
        child.send_signal(signal.SIGTERM)
        assert child.wait(timeout=5) == 0
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    stopping = notify_listener.wait_for("STOPPING")
    pings = [n.at for n in notify_listener.with_key("WATCHDOG") if ready.at <= n.at <= stopping.at]
    gaps = [b - a for a, b in itertools.pairwise(pings)]
    expected = watchdog_usec / 2 / 1e6
    assert len(gaps) >= 4
    assert expected * 0.7 < statistics.median(gaps) < expected * 1.5
    assert notify_listener.wait_for("STATUS").fields["STATUS"] == "backlog 0"
