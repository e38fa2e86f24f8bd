"""The fault scenarios of issue 7, each a function that runs it and returns what it counted.

One implementation, two sizes: the fast cases in tests/faults/ call these with small numbers
and assert on the result; `benchmarks/chaos.py` calls them with the issue's numbers and prints
the same counts. Every scenario runs the real `cunxiang run` (tests/support/fault_station.py)
against a private Mosquitto and is judged the way the county centre and the villagers would
judge it, through tests/support/ledger.py (what arrived, by seq) and the ALSA capture (what the
loudspeakers got):

* ``lost``: records committed by the station (their seq is in its database) that never reached
  the centre, after the scenario's own repair step if it has one;
* ``duplicates``: deliveries of a seq beyond its first (at-least-once; the centre de-duplicates);
* ``sounded``: forged, replayed or otherwise unacceptable messages that made a sound;
* ``crashes``: service processes that died without being killed, failed to start again, or
  did not exit 0 on SIGTERM.

Each result also carries scenario-specific figures in ``details`` (the seed, how many kills hit
a broadcast, what `resend` repaired, RSS and descriptors, …). Seeds are printed so that any run
can be repeated.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from drivers.ze07_co import active_frame
from gateway.alert_model import InlineAudio
from tests.drivers.devices import PtyPort, SocatPair
from tests.support.fault_station import (
    FaultStation,
    contains,
    db_integrity,
    db_max_seq,
    edit_config,
    seed_backlog,
    sine_pcm,
    wav_bytes,
    write_clip,
)
from tests.support.hostile import Hostile, HostileDownlink, surrogate_key_envelope
from tests.support.ledger import Ledger
from tests.support.mosquitto import Mosquitto
from tests.support.netns import NamespacedMosquitto, NetnsLink
from tests.support.proc_watch import ProcWatch
from tests.support.serial_noise import (
    JSONL_GOOD,
    ZE07_GOOD_TENTHS,
    CountingNode,
    NoisyLine,
    NoisyTransmitter,
    Replugger,
    spurious_ze07_frames,
)
from tests.support.station import AREA, Centre, station_topic, topic, write_config
from tests.support.tmpfs import SmallDisk

TOWN_TOPIC = topic("alert", AREA[:9])


@dataclass
class ScenarioResult:
    """What one scenario counted; the four headline counts first."""

    name: str
    lost: int = 0
    duplicates: int = 0
    sounded: int = 0
    crashes: int = 0
    skipped: str | None = None
    details: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def headline(self) -> str:
        if self.skipped:
            return f"{self.name}: SKIPPED ({self.skipped})"
        return (
            f"{self.name}: lost after commit {self.lost}, duplicates {self.duplicates}, "
            f"forged/replayed that made sound {self.sounded}, crashes {self.crashes}"
        )

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "lost": self.lost,
            "duplicates": self.duplicates,
            "sounded": self.sounded,
            "crashes": self.crashes,
            "skipped": self.skipped,
            "details": self.details,
            "notes": self.notes,
        }


def simulated_sensors(count: int, interval_s: float, prefix: str = "sim") -> str:
    """`count` simulated water-level sensors as [[sensors]] tables."""
    tables = []
    for i in range(count):
        tables.append(
            f"""
[[sensors]]
name = "{prefix}-{i}"
type = "simulated"
quantity = "water_level_m"
pattern = "random_walk"
low = 0.5
high = 3.5
interval_s = {interval_s}
"""
        )
    return "".join(tables)


def inline_alert(
    centre: Centre, freq: float, seconds: float, **fields: Any
) -> tuple[str, bytes, bytes]:
    """A sealed alert carrying its own audio (a sine at `freq`): (id, pcm, raw message)."""
    pcm = sine_pcm(freq, seconds)
    audio = InlineAudio(data=wav_bytes(pcm))
    alert = centre.alert(audio=audio, tone="none", repeat=1, **fields)
    return alert.id, pcm, centre.seal_alert(alert)


# -- scenario 1: SIGKILL of the service -----------------------------------------------------


@dataclass
class _Kill9Run:
    """One life of the service in the kill -9 scenario."""

    number: int
    alive_s: float
    alert: str | None
    hit_playing: bool
    died_by_itself: int | None


def kill9(
    folder: Path,
    *,
    kills: int,
    seed: int,
    seed_per_run: int = 5000,
    sensors: int = 3,
    sensor_interval_s: float = 0.002,
    alive_s: tuple[float, float] = (0.3, 2.5),
    clip_s: float = 1.0,
) -> ScenarioResult:
    """SIGKILL the service `kills` times at random moments during ingest, drain and broadcast.

    Before each start a batch of readings is committed straight into the database (a backlog
    to drain); simulated sensors ingest all the time; most lives get a signed alert with its
    own audio, and every third life is killed while that alert is playing. After each kill the
    database must pass `PRAGMA integrity_check`. A last life drains everything and plays what
    is left; then every seq ever committed must be at the centre and every alert heard in full.
    """
    rng = random.Random(seed)
    result = ScenarioResult("1 kill -9 of the service")
    folder.mkdir(parents=True, exist_ok=True)
    with Mosquitto() as broker:
        centre = Centre()
        config = write_config(
            folder, broker.port, centre, body=simulated_sensors(sensors, sensor_interval_s)
        )
        db = folder / "station.db"
        ledger = Ledger(port=broker.port)
        station = FaultStation(config)
        alerts: dict[str, bytes] = {}
        runs: list[_Kill9Run] = []
        integrity: list[str] = []
        committed = 0
        seeded = 0
        try:
            for number in range(kills):
                seed_backlog(config, seed_per_run, start=seeded)
                seeded += seed_per_run
                runs.append(
                    _kill9_life(number, station, ledger, centre, rng, alerts, alive_s, clip_s)
                )
                check = db_integrity(db)
                integrity.append(check)
                committed = max(committed, db_max_seq(db))
            committed = max(committed, db_max_seq(db))
            final_exit = _kill9_final(station, ledger, db, alerts)
        finally:
            station.close()
            ledger.close()
        lost = ledger.missing(committed)
        result.lost = len(lost)
        result.duplicates = ledger.duplicates()
        result.crashes = sum(r.died_by_itself is not None for r in runs) + (final_exit != 0)
        seed_values = {int(r["v"]) for r in ledger.readings_of("seed")}
        unheard = [
            a
            for a, pcm in alerts.items()
            if not any(contains(c.raw(), pcm) for c in station.captures)
        ]
        replayed = [a for a in alerts if ledger.statuses(a).count("playing") > 1]
        played_twice = [a for a in alerts if ledger.statuses(a).count("played") > 1]
        result.details = {
            "seed": seed,
            "kills": kills,
            "committed_seqs": committed,
            "seq_contiguous_at_centre": not ledger.missing(ledger.max_seq()),
            "seq_conflicts": len(ledger.conflicts),
            "integrity_checks_failed": sum(check != "ok" for check in integrity),
            "seeded_values_missing": seeded - len(seed_values & set(range(seeded))),
            "alerts_sent": len(alerts),
            "kills_during_playback": sum(r.hit_playing for r in runs),
            "broadcasts_replayed_after_kill": len(replayed),
            "alerts_never_heard_in_full": len(unheard),
            "alerts_played_receipt_twice": len(played_twice),
            "final_exit_code": final_exit,
            "mean_life_s": round(sum(r.alive_s for r in runs) / max(1, len(runs)), 2),
        }
        if lost:
            result.notes.append(f"missing seqs (first 20): {lost[:20]}")
        if ledger.conflicts:
            result.notes.append(f"seq conflicts (first 3): {ledger.conflicts[:3]}")
        bad = [check for check in integrity if check != "ok"]
        if bad:
            result.notes.append(f"integrity_check: {bad[:3]}")
    return result


def _kill9_life(
    number: int,
    station: FaultStation,
    ledger: Ledger,
    centre: Centre,
    rng: random.Random,
    alerts: dict[str, bytes],
    alive_s: tuple[float, float],
    clip_s: float,
) -> _Kill9Run:
    """Start, maybe send an alert, SIGKILL at a random moment (or while the alert plays)."""
    started = time.monotonic()
    station.start()
    alert_id = None
    aim_at_playback = number % 3 == 1
    if number % 3 != 2:
        freq = 300 + 20 * len(alerts)
        alert_id, pcm, raw = inline_alert(centre, freq, clip_s, level="orange")
        alerts[alert_id] = pcm
        time.sleep(rng.uniform(0.0, alive_s[1] / 2))
        if number == 0:  # the broker keeps downlink only for a session that has subscribed once
            ledger.wait(lambda: ledger.states, 20, "the station's first state")
        ledger.publish(TOWN_TOPIC, raw)
    hit_playing = False
    if aim_at_playback and alert_id is not None:
        try:
            ledger.wait(lambda: "playing" in ledger.statuses(alert_id), 15, f"{alert_id} playing")
            time.sleep(rng.uniform(0.05, clip_s * 0.6))
            hit_playing = "played" not in ledger.statuses(alert_id)
        except AssertionError:
            pass
    else:
        remaining = rng.uniform(*alive_s) - (time.monotonic() - started)
        time.sleep(max(0.0, remaining))
        if alert_id is not None:
            statuses = ledger.statuses(alert_id)
            hit_playing = "playing" in statuses and "played" not in statuses
    died = station.exited_by_itself()
    if died is None:
        station.kill()
    return _Kill9Run(number, time.monotonic() - started, alert_id, hit_playing, died)


def _kill9_final(station: FaultStation, ledger: Ledger, db: Path, alerts: dict[str, bytes]) -> int:
    """The last life: drain everything committed, play what is left, stop with SIGTERM."""
    station.start()
    station.wait_ready()
    deadline = time.monotonic() + 120
    while True:
        upto = db_max_seq(db)
        if not ledger.missing(upto):
            break
        if time.monotonic() > deadline:
            break
        time.sleep(0.2)
    for alert_id in alerts:
        try:
            ledger.wait(
                lambda a=alert_id: set(ledger.statuses(a)) & {"played", "expired", "failed"},
                60,
                f"{alert_id} finished",
            )
        except AssertionError:
            break
    time.sleep(0.5)
    try:
        return station.terminate(timeout=10)
    except Exception:
        station.kill()
        return -9


# -- scenario 2: the broker restarted during a drain ----------------------------------------


def broker_restarts(
    folder: Path,
    *,
    records: int,
    restarts: int,
    seed: int,
    hard: bool,
    batch_max: int = 20,
    inflight_max: int = 2,
) -> ScenarioResult:
    """Stop the broker `restarts` times while the station drains a backlog of `records`.

    ``hard=False``: SIGTERM, Mosquitto saves its state; nothing may be lost, no repair allowed.
    ``hard=True``: SIGKILL; the broker forgets messages it had acknowledged but not saved, so
    the centre sees gaps. It repairs them with `resend`; nothing may be missing afterwards.

    With the defaults (500 readings a batch, 20 in flight) a loopback drain of 200,000 takes
    about a second; a small window (`batch_max`, `inflight_max`, as on a slow link) stretches
    it so that the restarts land inside it. Restarts are spread over the drain by the highest
    seq the centre has seen (the station publishes in seq order; a count would stall on the
    very losses a SIGKILL causes).
    """
    rng = random.Random(seed)
    kind = "SIGKILL" if hard else "SIGTERM"
    result = ScenarioResult(f"2{'b' if hard else 'a'} broker {kind}-restarted during a drain")
    folder.mkdir(parents=True, exist_ok=True)
    with Mosquitto() as broker:
        centre = Centre()
        window = f"\n[sync]\nbatch_max = {batch_max}\ninflight_max = {inflight_max}\n"
        config = write_config(folder, broker.port, centre, body=window)
        db = folder / "station.db"
        seed_backlog(config, records)
        ledger = Ledger(port=broker.port)
        station = FaultStation(config)
        crashes = 0
        downtimes: list[float] = []
        progress: list[int] = []
        try:
            time.sleep(1.2)  # Mosquitto autosaves every second: the centre's session is on disk
            started = time.monotonic()
            station.start()
            for k in range(1, restarts + 1):
                threshold = records * k // (restarts + 1)
                with contextlib.suppress(AssertionError):  # a stalled drain gets restarts too
                    ledger.wait(
                        lambda t=threshold: ledger.max_reading_seq() >= t, 20, f"seq {threshold}"
                    )
                progress.append(ledger.max_reading_seq())
                (broker.kill if hard else broker.stop)()
                down = rng.uniform(0.0, 0.5)
                downtimes.append(down)
                time.sleep(down)
                broker.start()
            backlog_empty = _wait_backlog_empty(ledger, centre, 120)
            drain_s = time.monotonic() - started
            committed = db_max_seq(db)
            time.sleep(0.3)
            lost_before = len(ledger.missing(committed))
            repaired = 0
            if hard and lost_before:
                repaired = ledger.repair(centre, committed, timeout=60)
            crashes += station.exited_by_itself() is not None
            exit_code = station.terminate(timeout=10) if station.running() else -1
            crashes += exit_code != 0
        finally:
            station.close()
            ledger.close()
        result.lost = len(ledger.missing(committed))
        result.duplicates = ledger.duplicates()
        result.crashes = crashes
        result.details = {
            "seed": seed,
            "records": records,
            "restarts": restarts,
            "signal": kind,
            "committed_seqs": committed,
            "backlog_reported_empty": backlog_empty,
            "lost_before_resend": lost_before,
            "repaired_by_resend": repaired,
            "seq_conflicts": len(ledger.conflicts),
            "drain_s": round(drain_s, 2),
            "mean_downtime_s": round(sum(downtimes) / max(1, len(downtimes)), 2),
            "centre_max_seq_at_each_restart": progress,
        }
    return result


def _wait_backlog_empty(ledger: Ledger, centre: Centre, timeout: float) -> bool:
    """Ask the station (`status` command) until it reports an empty backlog."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            response = ledger.command(centre, "status", timeout=5)
        except AssertionError:
            continue
        if response.get("ok") and response["result"].get("backlog") == 0:
            return True
        time.sleep(0.3)
    return False


# -- scenario 3: a cut and a lossy network link ---------------------------------------------


def network_cut(
    folder: Path,
    *,
    cut_s: float,
    loss_s: float,
    loss_percent: int = 30,
    sensors: int = 5,
    sensor_interval_s: float = 0.05,
) -> ScenarioResult:
    """The broker behind a veth pair: the link cut for `cut_s`, then `loss_percent` % loss for `loss_s`.

    An alert is published while the link is down (it waits in the broker for the station's
    persistent session) and one during the loss; both must play. Afterwards every committed
    record must be at the centre. Skipped, with the reason, where namespaces cannot be made.
    """
    result = ScenarioResult(f"3 network cut {cut_s:g} s, then {loss_percent} % loss {loss_s:g} s")
    reason = NetnsLink.available()
    if reason is not None:
        result.skipped = reason
        return result
    folder.mkdir(parents=True, exist_ok=True)
    with NetnsLink() as link:
        broker = NamespacedMosquitto(link)
        broker.start()
        ledger: Ledger | None = None
        station: FaultStation | None = None
        try:
            centre = Centre()
            config = write_config(
                folder, broker.port, centre, body=simulated_sensors(sensors, sensor_interval_s)
            )
            edit_config(config, {'host = "127.0.0.1"': f'host = "{link.broker_addr}"'})
            ledger = Ledger(unix_path=broker.unix_path)
            station = FaultStation(config, netns=link.station_ns)
            result.details = _network_phases(
                link, ledger, centre, station, folder / "station.db", cut_s, loss_s, loss_percent
            )
            result.crashes = int(result.details.pop("crashes"))
        finally:
            if station is not None:
                station.close()
            if ledger is not None:
                ledger.close()
            broker.close()
        committed = int(result.details["committed_seqs"])
        result.lost = len(ledger.missing(committed))
        result.duplicates = ledger.duplicates()
        result.details["seq_conflicts"] = len(ledger.conflicts)
    return result


def _network_phases(
    link: NetnsLink,
    ledger: Ledger,
    centre: Centre,
    station: FaultStation,
    db: Path,
    cut_s: float,
    loss_s: float,
    loss_percent: int,
) -> dict[str, Any]:
    station.start()
    station.wait_ready()
    ledger.wait(lambda: ledger.readings, 20, "readings over the veth")
    time.sleep(1.0)
    details: dict[str, Any] = {
        "station_address": link.station_addr,
        "broker_address": link.broker_addr,
    }
    # The cut.
    link.cut()
    cut_alert, cut_pcm, raw = inline_alert(centre, 523, 0.3, level="yellow")
    ledger.publish(TOWN_TOPIC, raw)
    time.sleep(cut_s)
    seen_before = ledger.max_reading_seq()
    link.restore()
    restored_at = time.monotonic()
    ledger.wait(
        lambda: ledger.max_reading_seq() > seen_before, 60, "readings after the link came back"
    )
    details["link_back_to_flowing_s"] = round(time.monotonic() - restored_at, 2)
    ledger.wait(
        lambda: "played" in ledger.statuses(cut_alert), 60, "the alert sent during the cut played"
    )
    details["alert_sent_during_cut_played_receipt_s_after_restore"] = round(
        time.monotonic() - restored_at, 2
    )
    # Packet loss.
    before_loss = len(ledger.readings)
    link.lossy(loss_percent)
    loss_at = time.monotonic()
    loss_alert, loss_pcm, raw = inline_alert(centre, 659, 0.3, level="yellow")
    ledger.publish(TOWN_TOPIC, raw)
    played_at = None
    while time.monotonic() - loss_at < loss_s:
        if played_at is None and "played" in ledger.statuses(loss_alert):
            played_at = time.monotonic()
        time.sleep(0.05)
    details["readings_delivered_during_loss"] = len(ledger.readings) - before_loss
    details["packets_dropped_by_loss_rules"] = link.dropped()
    link.clear_loss()
    if played_at is None:
        ledger.wait(
            lambda: "played" in ledger.statuses(loss_alert), 60, "the alert sent during loss"
        )
        played_at = time.monotonic()
    details["alert_sent_during_loss_played_receipt_after_s"] = round(played_at - loss_at, 2)
    details["alert_sent_during_loss_receipt_before_loss_ended"] = played_at - loss_at < loss_s
    # Everything committed must arrive once the link is clean again.
    crashes = int(station.exited_by_itself() is not None)
    committed = db_max_seq(db)
    ledger.wait_complete(committed, 120)
    details["committed_seqs"] = committed
    exit_code = station.terminate(timeout=10) if station.running() else -1
    # The capture's tail is written when the stream closes: look at it after the exit.
    details["heard_in_full"] = sum(
        any(contains(c.raw(), pcm) for c in station.captures) for pcm in (cut_pcm, loss_pcm)
    )
    details["crashes"] = crashes + (exit_code != 0)
    details["station_exit_code"] = exit_code
    details["station_reconnects"] = station.log().count("connected to the broker at")
    return details


# -- scenario 4: a full disk ----------------------------------------------------------------


def full_disk(
    folder: Path,
    *,
    full_s: float,
    disk_kib: int = 4096,
    node_rate: float = 1000.0,
    buffered_readings: int | None = 3000,
) -> ScenarioResult:
    """The database on a small tmpfs that fills up, with the broker gone meanwhile; then space returns.

    A counting JSON-lines node writes `node_rate` readings/s all along. The disk is filled to
    ENOSPC while the broker is up (an alert sent now must still play), then the broker goes
    away for `full_s` seconds: the readings pile up in memory, and beyond the memory bound
    (``gateway.store.MAX_BUFFERED_READINGS``, lowered to `buffered_readings` so a test sees it
    within seconds; None keeps the real 100,000) they are dropped and must be reported as
    ``data_dropped``. Then the ballast goes, the broker returns, and the centre must get every
    committed record plus ``data_dropped`` events whose counts match exactly the values that
    never arrived.
    """
    result = ScenarioResult(f"4 full disk ({disk_kib} KiB tmpfs, {full_s:g} s full)")
    reason = SmallDisk.available(folder)
    if reason is not None:
        result.skipped = reason
        return result
    folder.mkdir(parents=True, exist_ok=True)
    tune = (
        {}
        if buffered_readings is None
        else {"gateway.store.MAX_BUFFERED_READINGS": buffered_readings}
    )
    with SmallDisk(folder / "disk", disk_kib) as disk, Mosquitto() as broker:
        port = PtyPort(folder / "ttyNODE")
        node = CountingNode(port.master, node_rate)
        centre = Centre()
        sensor = f"""
[[sensors]]
name = "node"
type = "jsonl"
port = "{port.path}"
timeout_s = 5
"""
        config = write_config(folder, broker.port, centre, body=sensor)
        edit_config(config, {'path = "station.db"': 'path = "disk/station.db"'})
        ledger = Ledger(port=broker.port)
        station = FaultStation(config, tune=tune)
        try:
            result.details = _full_disk_phases(disk, broker, ledger, centre, station, node, full_s)
        finally:
            node.stop()
            station.close()
            ledger.close()
            port.close()
        result.crashes = int(result.details.pop("crashes"))
        result.lost = int(result.details["committed_records_missing"])
        result.duplicates = ledger.duplicates()
    return result


def _full_disk_phases(
    disk: SmallDisk,
    broker: Mosquitto,
    ledger: Ledger,
    centre: Centre,
    station: FaultStation,
    node: CountingNode,
    full_s: float,
) -> dict[str, Any]:
    details: dict[str, Any] = {}
    db = disk.mountpoint / "station.db"
    station.start()
    station.wait_ready()
    node.start()
    ledger.wait(lambda: len(ledger.readings_of("node")) > 100, 20, "the node's readings")
    # The disk fills up while the broker is there.
    details["ballast_kib"] = disk.fill() // 1024
    station.wait_log("cannot write", 20)
    alert_id, pcm, raw = inline_alert(centre, 440, 0.3, level="yellow")
    ledger.publish(TOWN_TOPIC, raw)
    heard = _wait(lambda: contains(station.capture.raw(), pcm), 20)
    details["alert_on_full_disk_heard"] = heard
    # The broker goes away; readings pile up in memory and overflow.
    broker.stop()
    time.sleep(full_s)
    details["running_while_full"] = station.running()
    details["free_kib_while_full"] = disk.free_kib()
    # Space returns, then the broker.
    disk.empty()
    station.wait_log("writing works again", 20)
    broker.start()
    time.sleep(1.0)
    node.stop()
    written = node.written
    ledger.wait(lambda: ledger.events_of("data_dropped"), 30, "a data_dropped event")
    committed = _settled_max_seq(db)
    with contextlib.suppress(AssertionError):
        ledger.wait_complete(committed, 60)
    dropped = [e for e in ledger.events_of("data_dropped")]
    values = [int(r["v"]) for r in ledger.readings_of("node")]
    details["node_values_written"] = written
    details["node_values_at_centre"] = len(set(values))
    details["node_values_received_twice_with_new_seq"] = len(values) - len(set(values))
    details["data_dropped_events"] = [
        {k: e.get(k) for k in ("count", "from_seq", "to_seq", "reason")} for e in dropped
    ]
    reported = sum(int(e["count"]) for e in dropped)
    details["dropped_reported"] = reported
    details["unreported_loss"] = written - len(set(values)) - reported
    details["committed_seqs"] = committed
    details["committed_records_missing"] = len(ledger.missing(committed))
    details["seq_conflicts"] = len(ledger.conflicts)
    details["alert_receipts"] = ledger.statuses(alert_id)
    exit_code = station.terminate(timeout=10) if station.running() else -1
    details["station_exit_code"] = exit_code
    details["integrity_check"] = db_integrity(db)
    details["crashes"] = (exit_code != 0) + (not details["running_while_full"])
    return details


def _settled_max_seq(db: Path, quiet_s: float = 1.0, timeout: float = 30.0) -> int:
    """The database's last seq once it has stopped growing for `quiet_s` (read-only peeks)."""
    last, since = -1, time.monotonic()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        seq = db_max_seq(db)
        if seq != last:
            last, since = seq, time.monotonic()
        elif time.monotonic() - since >= quiet_s:
            break
        time.sleep(0.1)
    return last


def _wait(check: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return False


# -- scenario 5: garbage on every serial port ----------------------------------------------

GENUINE_VALUES = {"co-1": 12.3, "node-1": 21.5, "river": 1.23}


def serial_garbage(
    folder: Path, *, seconds: float, seed: int, warmup_s: float = 5.0
) -> ScenarioResult:
    """Every serial port fed noise, partial frames and silences for `seconds`; genuine frames between.

    Ports: a ZE07-CO on a pty, a JSON-lines node on a pty that is also unplugged and plugged
    back every few seconds, a Modbus level transmitter on a socat pair that answers each poll
    with a good reply, noise, half a reply or nothing. Every
    sensor has a rule with a local broadcast, so a false alarm would be both an ``alarm`` event
    and sound. What must hold: no alarm, no sound, only genuine values as readings (except
    what the driver's own parser accepts from the same bytes — an 8-bit checksum collision,
    counted separately), ``sensor_fault`` events for every sensor (``port_unavailable`` among
    them), the service alive, and RSS and open descriptors flat after warm-up.
    """
    result = ScenarioResult(f"5 garbage on every serial port for {seconds:g} s")
    folder.mkdir(parents=True, exist_ok=True)
    with Mosquitto() as broker:
        co, node, pair = PtyPort(folder / "ttyCO"), PtyPort(folder / "ttyNODE"), SocatPair(folder)
        pair.start()
        device = os.open(pair.server, os.O_RDWR | os.O_NOCTTY)
        centre = Centre()
        config = write_config(folder, broker.port, centre, body=_garbage_body(co, node, pair))
        write_clip(folder / "clips", "beep", sine_pcm(1000, 0.2))
        ledger = Ledger(port=broker.port)
        station = FaultStation(config)
        lines: list[Any] = []
        replug = Replugger(node, seed + 3, every_s=(4.0, 8.0), out_s=(0.5, 3.0))
        try:
            station.start()
            station.wait_ready()
            watch = ProcWatch(station.pid)
            lines = [
                NoisyLine(co.master, active_frame(ZE07_GOOD_TENTHS), seed).start(),
                NoisyLine(node.master, JSONL_GOOD, seed + 1, write=replug.write).start(),
                NoisyTransmitter(device, seed + 2).start(),
            ]
            replug.start()
            time.sleep(seconds)
            replug.stop()
            for line in lines:
                line.stop()
            watch.stop()
            time.sleep(1.0)
            crashed = station.exited_by_itself() is not None
            exit_code = station.terminate(timeout=10) if not crashed else -1
        finally:
            replug.stop()
            for line in lines:
                line.stop()
            station.close()
            ledger.close()
            os.close(device)
            pair.stop()
            co.close()
            node.close()
        spurious = spurious_ze07_frames(bytes(lines[0].written))
        foreign = [
            r for r in ledger.readings.values() if r["v"] != GENUINE_VALUES.get(r["sensor"], r["v"])
        ]
        fault_events = ledger.events_of("sensor_fault")
        faults = {e["sensor"] for e in fault_events}
        result.crashes = int(crashed) + (exit_code != 0)
        result.sounded = int(any(not c.is_silent() for c in station.captures))
        rss = watch.summary(after_s=warmup_s)
        result.details = {
            "seed": seed,
            "seconds": seconds,
            "alarms": len(ledger.events_of("alarm")),
            "loudspeaker_silent": not result.sounded,
            "readings": len(ledger.readings),
            "readings_with_values_no_device_sent": len(foreign),
            "checksum_collisions_in_ze07_stream": spurious,
            "sensors_with_fault_events": sorted(faults),
            "fault_reasons": sorted({str(e.get("reason")) for e in fault_events}),
            "sensor_fault_events": len(fault_events),
            "node_unplugged": replug.unplugs,
            # The service reports one sensor_fault per episode (a reason that changes inside
            # an episode is not sent again), so the unplug is seen in the driver's log line.
            "node_unplugs_noticed_by_driver": station.log().count("node-1 fault: port_unavailable"),
            "sensor_ok_events": len(ledger.events_of("sensor_ok")),
            "segments": [line.stats.segments for line in lines],
            "bytes_written": sum(line.stats.bytes_written for line in lines),
            "memory": rss,
            "rss_growth_kib_after_warmup": rss["rss_kib"]["growth"],
            "station_exit_code": exit_code,
        }
        result.notes += [f"reading no device sent: {r}" for r in foreign[:5]]
    return result


def _garbage_body(co: PtyPort, node: PtyPort, pair: SocatPair) -> str:
    beep = 'broadcast = { clip = "beep", repeat = 1 }'
    return f"""
[[sensors]]
name = "co-1"
type = "ze07_co"
port = "{co.path}"
timeout_s = 2

[[sensors]]
name = "node-1"
type = "jsonl"
port = "{node.path}"
timeout_s = 2

[[sensors]]
name = "river"
type = "modbus_level"
port = "{pair.client}"
register = 4
decimals_register = 3
poll_s = 0.3
timeout_s = 2
retries = 1

[[rules]]
name = "co-danger"
sensor = "co-1"
above = 50
clear_below = 35
for_s = 2
level = "orange"
{beep}

[[rules]]
name = "node-hot"
sensor = "node-1"
quantity = "temperature_c"
above = 40
level = "orange"
{beep}

[[rules]]
name = "river-high"
sensor = "river"
above = 3.0
level = "red"
{beep}
"""


# -- scenario 6: hostile downlink ------------------------------------------------------------

MAX_PAYLOAD = 65536


def hostile_downlink(
    folder: Path,
    *,
    messages: int,
    seed: int,
    window_s: float | None = 5.0,
    giants: int = 0,
) -> ScenarioResult:
    """`messages` hostile downlink messages at the running station (tests/support/hostile.py).

    A control alert plays before the flood and another after it; nothing else may reach the
    loudspeakers. Every message must get exactly what PROTOCOL.md §6–§8 prescribe: the
    ``downlink_rejected`` counts per reason add up to the envelope failures sent (the first of
    a reason at once, with count 1), each verified-but-wrong alert gets its one receipt, each
    wrong command its error response, replays and other villages' alerts nothing. `window_s`
    shortens the one-minute folding window (``gateway.downlink_rejections.WINDOW_MS``) so a test
    can see folded events without waiting a minute; None keeps the minute.
    """
    result = ScenarioResult(f"6 hostile downlink ({messages} messages)")
    folder.mkdir(parents=True, exist_ok=True)
    window_ms = 60_000 if window_s is None else int(window_s * 1000)
    tune = {} if window_s is None else {"gateway.downlink_rejections.WINDOW_MS": window_ms}
    with Mosquitto() as broker:
        centre = Centre()
        config = write_config(
            folder, broker.port, centre, security=f"max_payload_bytes = {MAX_PAYLOAD}"
        )
        write_clip(folder / "clips", "beep", sine_pcm(1000, 0.2))
        ledger = Ledger(port=broker.port)
        station = FaultStation(config, tune=tune)
        try:
            station.start()
            station.wait_ready()
            result.details = _hostile_flood(
                station, ledger, centre, messages, seed, window_ms, giants
            )
            crashed = station.exited_by_itself() is not None
            exit_code = station.terminate(timeout=10) if not crashed else -1
        finally:
            station.close()
            ledger.close()
        # The capture's tail is written when the stream closes: judge the sound after the exit.
        controls = result.details.pop("controls")
        result.sounded = _foreign_sound(station, controls) + result.details.pop("played_hostile")
        result.crashes = int(crashed) + (exit_code != 0)
        result.duplicates = ledger.duplicates()
        result.details["station_exit_code"] = exit_code
        result.details["handler_errors_in_log"] = station.log().count("unexpected error")
        result.notes += result.details.pop("mismatches")
    return result


def _hostile_flood(
    station: FaultStation,
    ledger: Ledger,
    centre: Centre,
    count: int,
    seed: int,
    window_ms: int,
    giants: int,
) -> dict[str, Any]:
    gen = HostileDownlink(centre, seed, MAX_PAYLOAD)
    ledger.wait(lambda: ledger.states, 20, "the station online")
    first_id, first_pcm, first_raw = inline_alert(centre, 587, 0.3, level="yellow")
    ledger.publish(TOWN_TOPIC, first_raw)
    ledger.wait(lambda: "played" in ledger.statuses(first_id), 20, "the first control alert played")
    gen.accepted.append(first_raw)
    status_raw = centre.seal_command("status")
    ledger.publish(station_topic("cmd"), status_raw)
    ledger.wait(lambda: ledger.responses, 10, "a status response")
    gen.answered_commands.append(status_raw)
    watch = ProcWatch(station.pid, interval=0.2)
    watch.sample()
    baseline = watch.rss.values()[-1]
    stream = gen.messages(count, giants=giants)
    started = time.monotonic()
    first_sent: dict[str, float] = {}
    for index, message in enumerate(stream):
        if message.expect.startswith("event:"):
            first_sent.setdefault(message.reason, time.monotonic())
        info = ledger.client.publish(message.topic, message.payload, qos=1)
        if index % 100 == 99:
            info.wait_for_publish(30)
    ledger.command(centre, "status", timeout=120)  # a barrier: the flood has been handled
    flood_s = time.monotonic() - started
    time.sleep(window_ms / 1000 + 2.5)  # every folding window has closed and been published
    last_id, last_pcm, last_raw = inline_alert(centre, 784, 0.3, level="yellow")
    ledger.publish(TOWN_TOPIC, last_raw)
    ledger.wait(lambda: "played" in ledger.statuses(last_id), 30, "the second control alert played")
    watch.stop()
    details = _judge_hostile(ledger, stream, first_sent, first_id, window_ms)
    details["controls"] = [first_pcm, last_pcm]
    rss = watch.rss.values()
    details.update(
        {
            "seed": seed,
            "messages": count,
            "giant_messages": giants,
            "flood_s": round(flood_s, 1),
            "handled_per_s": round(count / flood_s),
            "fold_window_s": window_ms / 1000,
            "rss_kib_before": baseline,
            "rss_kib_peak": max(rss, default=0),
            "rss_kib_after": rss[-1] if rss else 0,
            "fds": watch.fds.summary(),
        }
    )
    return details


def _judge_hostile(
    ledger: Ledger,
    stream: list[Hostile],
    first_sent: dict[str, float],
    control: str,
    window_ms: int,
) -> dict[str, Any]:
    """Compare what the centre got with what each message should have caused."""
    mismatches: list[str] = []
    sent = Counter(m.reason for m in stream if m.expect.startswith("event:"))
    events = ledger.events_of("downlink_rejected")
    reported = Counter[str]()
    for event in events:
        reported[str(event["reason"])] += int(event["count"])
    for reason in sorted(set(sent) | set(reported)):
        if sent[reason] != reported[reason]:
            mismatches.append(
                f"downlink_rejected {reason}: sent {sent[reason]}, counted {reported[reason]}"
            )
    firsts = {}
    for event in events:
        firsts.setdefault(str(event["reason"]), event)
    delays = {}
    for reason, event in firsts.items():
        if int(event["count"]) != 1:
            mismatches.append(
                f"the first downlink_rejected {reason} folds {event['count']} (must be 1)"
            )
        arrived = ledger.first_arrival("downlink_rejected", reason=reason)
        if arrived is not None and reason in first_sent:
            delays[reason] = round(arrived - first_sent[reason], 2)
            if delays[reason] > window_ms / 2000:  # "at once": well inside its own window
                mismatches.append(
                    f"the first downlink_rejected {reason} came {delays[reason]} s late"
                )
    played_hostile = 0
    by_family = Counter[str]()
    for message in stream:
        by_family[message.family] += 1
        problem = _check_answer(ledger, message)
        if message.ident and {"playing", "played"} & set(ledger.statuses(message.ident)):
            played_hostile += 1
        if problem:
            mismatches.append(f"{message.family}: {problem}")
    control_statuses = ledger.statuses(control)
    if control_statuses != ["received", "queued", "playing", "played"]:
        mismatches.append(f"the replayed control alert got receipts {control_statuses}")
    return {
        "families": dict(sorted(by_family.items())),
        "envelope_failures_by_reason": dict(sorted(sent.items())),
        "downlink_rejected_events": len(events),
        "downlink_rejected_events_by_reason": dict(Counter(str(e["reason"]) for e in events)),
        "first_event_delay_s_by_reason": delays,
        "rejected_receipts": sum(1 for r in ledger.receipts if r["status"] == "rejected"),
        "played_hostile": played_hostile,
        "mismatches": sorted(set(mismatches))[:50],
        "mismatch_count": len(mismatches),
    }


def _check_answer(ledger: Ledger, message: Hostile) -> str | None:
    """What is wrong with the station's answer to one message (None: it is right)."""
    kind = message.expect.split(":")[0]
    if message.ident is None or kind == "event":
        return None
    receipts = ledger.receipts_for(message.ident)
    if kind == "receipt":
        _, status, reason = message.expect.split(":")
        got = [(r["status"], r.get("reason", "")) for r in receipts]
        return None if got == [(status, reason)] else f"expected {status} {reason}, got {got}"
    if kind == "response":
        answers = [r for r in ledger.responses if r.get("id") == message.ident]
        got = [r.get("error") for r in answers]
        return None if got == [message.reason] else f"expected error {message.reason}, got {got}"
    return (
        f"receipts {[r['status'] for r in receipts]} for a message that must cause none"
        if receipts
        else None
    )


def _foreign_sound(station: FaultStation, allowed: list[bytes]) -> int:
    """1 if the loudspeakers got anything but the `allowed` sounds (each at most once), else 0."""
    for capture in station.captures:
        raw = capture.raw()
        for pcm in allowed:
            index = raw.find(pcm)
            if index >= 0 and index % 2 == 0:
                raw = raw[:index] + bytes(len(pcm)) + raw[index + len(pcm) :]
        if any(raw):
            return 1
    return 0


# -- scenario 6b: an envelope key the database cannot store -------------------------------


def surrogate_key(folder: Path, *, rate: float = 200.0) -> ScenarioResult:
    """A downlink envelope whose ``key`` is a lone surrogate escape, then a backlog and a restart.

    PROTOCOL.md §6 makes this an ``unknown_key`` rejection: a ``downlink_rejected`` event, a log
    line, nothing else. It arrives while a counting node's first readings are still buffered
    (commit interval 5 s); the broker then goes away so a backlog builds, the node stops, the
    service is restarted and the broker returns. What must hold: the rejection is recorded, no
    reading the node sent while the service ran is lost without a ``data_dropped`` report, and
    every committed record reaches the centre after the restart.
    """
    result = ScenarioResult("6b envelope key with a lone surrogate")
    folder.mkdir(parents=True, exist_ok=True)
    with Mosquitto() as broker:
        centre = Centre()
        port = PtyPort(folder / "ttyNODE")
        node = CountingNode(port.master, rate, quantity="pulses")
        sensor = f"""
[[sensors]]
name = "node"
type = "jsonl"
port = "{port.path}"
timeout_s = 5
"""
        config = write_config(folder, broker.port, centre, body=sensor)
        edit_config(config, {"commit_interval_s = 0.2": "commit_interval_s = 5.0"})
        ledger = Ledger(port=broker.port)
        station = FaultStation(config)
        try:
            station.start()
            station.wait_ready()
            station.wait_log("opened", 10)
            ledger.wait(lambda: ledger.states, 10, "the station online")
            node.start()
            time.sleep(1.0)  # the node's first readings wait in memory for their commit
            ledger.publish(TOWN_TOPIC, surrogate_key_envelope())
            time.sleep(1.0)
            broker.stop()  # a backlog builds
            time.sleep(1.5)
            node.stop()
            time.sleep(0.5)
            first_exit = station.terminate(timeout=10)
            station.start()
            station.wait_ready()
            broker.start()
            committed = _settled_max_seq(folder / "station.db")
            with contextlib.suppress(AssertionError):
                ledger.wait_complete(committed, 5)
            crashed = station.exited_by_itself() is not None
            exit_code = station.terminate(timeout=10) if not crashed else -1
        finally:
            node.stop()
            station.close()
            ledger.close()
            port.close()
        result.details = _surrogate_outcome(ledger, station, node, committed)
        result.lost = int(result.details["committed_missing_at_centre"])
        result.duplicates = ledger.duplicates()
        result.crashes = int(crashed) + (exit_code != 0) + (first_exit != 0)
    return result


def _surrogate_outcome(
    ledger: Ledger, station: FaultStation, node: CountingNode, committed: int
) -> dict[str, Any]:
    values = {int(r["v"]) for r in ledger.readings_of("node")}
    reported = sum(int(e["count"]) for e in ledger.events_of("data_dropped"))
    log = station.log()
    rejected = ledger.events_of("downlink_rejected")
    return {
        "node_values_written": node.written,
        "node_values_at_centre": len(values),
        "silently_lost_readings": node.written - len(values) - reported,
        "committed_seqs": committed,
        "committed_missing_at_centre": len(ledger.missing(committed)),
        "downlink_rejected_unknown_key": sum(e["reason"] == "unknown_key" for e in rejected),
        "uplink_link_failures": sum(
            1 for line in log.splitlines() if "MQTT link" in line and line.endswith("failed")
        ),
        "key_errors_in_log": log.count("KeyError"),
        "unicode_errors_in_log": log.count("UnicodeEncodeError"),
    }


# -- scenario 7: the soak ----------------------------------------------------------------------


def soak(
    folder: Path,
    *,
    minutes: float,
    sensors: int = 10,
    outage_every_s: float = 300.0,
    outage_s: float = 30.0,
    sample_s: float = 10.0,
    progress: Callable[[str], None] | None = None,
) -> ScenarioResult:
    """`sensors` sensors at 1 Hz for `minutes`, the broker stopped for `outage_s` every `outage_every_s`.

    RSS and open descriptors of the service are sampled every `sample_s`; what matters is that
    they stay flat across outages (first / last / max, and the growth from the first third of
    the run to the last). Every committed record must reach the centre in the end.
    """
    result = ScenarioResult(
        f"7 soak {minutes:g} min, {sensors} sensors × 1 Hz, broker away every {outage_every_s:g} s"
    )
    folder.mkdir(parents=True, exist_ok=True)
    with Mosquitto() as broker:
        centre = Centre()
        config = write_config(folder, broker.port, centre, body=simulated_sensors(sensors, 1.0))
        ledger = Ledger(port=broker.port)
        station = FaultStation(config)
        outages = 0
        try:
            station.start()
            station.wait_ready()
            watch = ProcWatch(station.pid, interval=sample_s)
            started = time.monotonic()
            end = started + minutes * 60
            next_outage = started + outage_every_s
            while time.monotonic() < end and station.running():
                if time.monotonic() >= next_outage:
                    broker.stop()
                    outages += 1
                    if progress:
                        progress(f"soak: outage {outages} at {time.monotonic() - started:.0f} s")
                    time.sleep(min(outage_s, max(0.0, end - time.monotonic())))
                    broker.start()
                    next_outage += outage_every_s
                time.sleep(min(1.0, max(0.0, end - time.monotonic())))
            watch.stop()
            crashed = station.exited_by_itself() is not None
            committed = _settled_max_seq(folder / "station.db", quiet_s=0.5)
            with contextlib.suppress(AssertionError):
                ledger.wait_complete(committed, 60)
            exit_code = station.terminate(timeout=10) if not crashed else -1
        finally:
            station.close()
            ledger.close()
        result.lost = len(ledger.missing(committed))
        result.duplicates = ledger.duplicates()
        result.crashes = int(crashed) + (exit_code != 0)
        result.details = {
            "minutes": minutes,
            "sensors": sensors,
            "outages": outages,
            "outage_s": outage_s,
            "committed_seqs": committed,
            "readings_at_centre": len(ledger.readings),
            "rss_kib": watch.rss.summary(),
            "open_fds": watch.fds.summary(),
            "samples": len(watch.rss.samples),
            "station_exit_code": exit_code,
        }
    return result


def audio_b64(pcm: bytes) -> str:
    return base64.b64encode(wav_bytes(pcm)).decode("ascii")


def dump(results: list[ScenarioResult]) -> str:
    return json.dumps([r.as_json() for r in results], indent=2, ensure_ascii=False)
