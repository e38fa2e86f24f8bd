"""Scenario 6: hostile downlink at the running station, and 6b: a key name the store once choked on.

Why this module exists: one scenario, one module, called small by tests/faults/ and at full
size by benchmarks/chaos.py. See harness/faults/__init__.py for what the scenarios count and
docs/faults.md for what they found.
"""

from __future__ import annotations

import contextlib
import time
from collections import Counter
from pathlib import Path
from typing import Any

from gateway.uplink.settings import max_packet_bytes
from harness import station_db
from harness.faults.common import TOWN_TOPIC, ScenarioResult, inline_alert
from harness.faults.station import FaultStation, edit_config
from harness.hostile import Hostile, HostileDownlink, surrogate_key_envelope
from harness.ledger import Ledger
from harness.mosquitto import Mosquitto
from harness.proc_watch import ProcWatch
from harness.serial_noise import CountingNode
from harness.serial_ports import PtyPort
from harness.sounds import sine_pcm, write_clip
from harness.station import Centre, station_topic, write_config

MAX_PAYLOAD = 65536


def hostile_downlink(
    folder: Path,
    *,
    messages: int,
    seed: int,
    window_s: float | None = 5.0,
    giants: int = 0,
    giant_mib: tuple[int, int] = (4, 8),
) -> ScenarioResult:
    """`messages` hostile downlink messages at the running station (harness/hostile.py).

    A control alert plays before the flood and another after it; nothing else may reach the
    loudspeakers. Every message must get exactly what docs/protocol.md §6–§8 prescribe: the
    ``downlink_rejected`` counts per reason add up to the envelope failures sent (the first of
    a reason at once, with count 1), each verified-but-wrong alert gets its one receipt, each
    wrong command its error response, replays and other villages' alerts nothing. `window_s`
    shortens the one-minute folding window (``gateway.downlink.rejections.WINDOW_MS``) so a test
    can see folded events without waiting a minute; None keeps the minute.
    """
    result = ScenarioResult(f"6 hostile downlink ({messages} messages)")
    folder.mkdir(parents=True, exist_ok=True)
    window_ms = 60_000 if window_s is None else int(window_s * 1000)
    tune = {} if window_s is None else {"gateway.downlink.rejections.WINDOW_MS": window_ms}
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
                station, ledger, centre, messages, seed, window_ms, giants, giant_mib
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
    giant_mib: tuple[int, int],
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
    # MQTT 5 (the default): the broker never delivers what exceeds the station's packet limit.
    stream = gen.messages(
        count, giants=giants, packet_limit=max_packet_bytes(MAX_PAYLOAD), giant_mib=giant_mib
    )
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
    firsts: dict[str, dict[str, Any]] = {}
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
        errors = [r.get("error") for r in answers]
        if errors == [message.reason]:
            return None
        return f"expected error {message.reason}, got {errors}"
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


def surrogate_key(folder: Path, *, rate: float = 200.0) -> ScenarioResult:
    """A downlink envelope whose ``key`` is a lone surrogate escape, then a backlog and a restart.

    docs/protocol.md §6 makes this an ``unknown_key`` rejection: a ``downlink_rejected`` event, a log
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
            committed = station_db.settled_committed_seq(folder / "station.db")
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
