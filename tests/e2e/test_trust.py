"""Trust revision 2 (docs/protocol.md §6, §6.1, §8): the attacks that needed no forged signature now fail.

An attacker on the broker can capture any signed message and publish it again,
anywhere, at any time; a trusted authority's key can sign anything. Each test
here plays one such attack against the real `cunxiang run` (a private
Mosquitto, the centre's subscriber, the ALSA capture of the loudspeakers) and
checks what the station answers — and that nothing it should not play reaches
the loudspeakers. The station trusts four keys besides the county centre's:

- `town-b-2026`: a neighbouring town's key, scoped to area 371581002, alerts only;
- `programmes-2026`: a key that may sign programmes and nothing else;
- `rival-2026`: a bare key (full scope, but no `override`);
- `county-2026`: the county's key, scoped to 371581, with `override`.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives import serialization

from gateway.centre.alerts import AlertSpec, build_alert, seal_alert
from gateway.cli.centre import command as command_group
from harness.sounds import occurrences, sine_pcm
from harness.station import (
    AREA,
    STATION_ID,
    Centre,
    StationProcess,
    topic,
    wait_until,
)
from tests.e2e.conftest import (
    CMD_TOPIC,
    RESPONSE_TOPIC,
    STATE_TOPIC,
    STATION_ALERT_TOPIC,
    TOWN_TOPIC,
    Mark,
    Rig,
    running_station,
)

#: Another station of the same village: what was signed for it must not act here.
OTHER_STATION = "t-371581001201-02"
LONG = sine_pcm(523, 3.0, amplitude=0.2)
PLAYED = ["received", "queued", "playing", "played"]

TOWN_B = Centre(name="town-b-2026")
PROGRAMMES = Centre(name="programmes-2026")
RIVAL = Centre(name="rival-2026")
COUNTY = Centre(name="county-2026")
KEYS = {
    TOWN_B.name: f'{{ key = "{TOWN_B.public_b64}", areas = ["371581002"], may = ["alert", "cap"] }}',
    PROGRAMMES.name: f'{{ key = "{PROGRAMMES.public_b64}", may = ["programme"] }}',
    RIVAL.name: f'"{RIVAL.public_b64}"',
    COUNTY.name: (
        f'{{ key = "{COUNTY.public_b64}", areas = ["371581"], '
        'may = ["alert", "cap", "command", "override"] }'
    ),
}


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    folder = tmp_path_factory.mktemp("trust")
    with running_station(folder, clips={"long": LONG}, keys=KEYS) as station:
        yield station


def fresh_mark(rig: Rig) -> Mark:
    """A mark once the loudspeakers are quiet (the previous test's sound is all written)."""
    rig.settle()
    return rig.mark()


def _quiet(rig: Rig, mark_: Mark, barrier: bool = True) -> bool:
    if barrier:
        rig.barrier()
    rig.settle()
    return rig.silent_since(mark_)


def test_captured_cancel_all_replayed_on_another_station_does_not_run(rig: Rig) -> None:
    mark = fresh_mark(rig)
    alert = rig.alert(level="red", clip="long", repeat=1)
    rig.send(alert)
    rig.wait_status(alert.id, "playing")
    for cmd in ("cancel_all", "status", "resend"):
        args = {"from_seq": 1, "to_seq": 5} if cmd == "resend" else None
        # Signed for the other station and captured on its topic; replayed onto ours.
        response = rig.command(cmd, args, station=OTHER_STATION)
        assert response == {"id": response["id"], "ok": False, "error": "not_for_this_station"}
    rig.wait_status(alert.id, "played", timeout=20)
    assert rig.statuses(alert.id, mark) == PLAYED
    rig.settle()
    assert len(occurrences(rig.audio_since(mark), LONG)) == 1


def test_one_station_alert_replayed_on_the_area_topic_is_ignored(rig: Rig) -> None:
    spec = AlertSpec(
        area=AREA[:9],
        level="red",
        event="flood",
        text="",
        sender="临清市应急管理局",
        clip="beep",
        tone="none",
        repeat=1,
        station=OTHER_STATION,
    )
    built = build_alert(spec, datetime.now().astimezone())  # what `alert send --station` signs
    assert built.stations == [OTHER_STATION]
    mark = fresh_mark(rig)
    rig.publish(TOWN_TOPIC, seal_alert(built, False, rig.centre.name, rig.centre.key))
    rig.publish(topic("alert", AREA), seal_alert(built, False, rig.centre.name, rig.centre.key))
    assert _quiet(rig, mark)
    assert rig.receipts(built.id, mark) == []
    # Replayed onto this station's own topic, it is answered: it names another station.
    rig.publish(STATION_ALERT_TOPIC, seal_alert(built, False, rig.centre.name, rig.centre.key))
    receipt = rig.wait_status(built.id, "rejected")
    assert receipt["reason"] == "not_for_this_station"
    # The same in CAP: <scope>Private</scope> with <addresses>.
    cap = rig.alert(stations=[OTHER_STATION], clip=None, text="撤离", tone=None)
    rig.send(cap, cap=True)
    rig.send(cap, cap=True, topic_=STATION_ALERT_TOPIC)
    assert rig.wait_status(cap.id, "rejected")["reason"] == "not_for_this_station"
    assert _quiet(rig, mark)
    assert [r["status"] for r in rig.receipts(cap.id, mark)] == ["rejected"]


def test_an_alert_naming_this_station_plays_from_the_area_topic(rig: Rig) -> None:
    alert = rig.alert(stations=[OTHER_STATION, STATION_ID])
    rig.send(alert)
    rig.wait_status(alert.id, "played")


def test_a_town_key_cannot_warn_another_town_or_everyone(rig: Rig) -> None:
    mark = fresh_mark(rig)
    here = TOWN_B.alert(areas=[AREA[:9]], clip="beep")
    everyone = TOWN_B.alert(areas=["all"], clip="beep")
    both = TOWN_B.alert(areas=["371581002", AREA[:9]], clip="beep")
    rig.publish(TOWN_TOPIC, TOWN_B.seal_alert(here))
    rig.publish(topic("alert", "all"), TOWN_B.seal_alert(everyone))
    rig.publish(TOWN_TOPIC, TOWN_B.seal_alert(both, cap=True))
    for alert in (here, everyone, both):
        assert rig.wait_status(alert.id, "rejected")["reason"] == "not_authorised"
    assert _quiet(rig, mark)
    for alert in (here, everyone, both):
        assert rig.statuses(alert.id, mark) == ["rejected"]


def test_a_programme_only_key_cannot_send_commands_or_alerts(rig: Rig) -> None:
    mark = fresh_mark(rig)
    alert = rig.alert(level="orange", clip="long", repeat=1)
    rig.send(alert)
    rig.wait_status(alert.id, "playing")
    raw = PROGRAMMES.seal_command("cancel_all")
    command_id = json.loads(_payload(raw))["id"]
    rig.publish(CMD_TOPIC, raw)
    response = wait_until(lambda: next(iter(rig.responses(command_id)), None), 10, "a response")
    assert response == {"id": command_id, "ok": False, "error": "not_authorised"}
    warning = PROGRAMMES.alert(clip="beep")
    rig.publish(TOWN_TOPIC, PROGRAMMES.seal_alert(warning))
    assert rig.wait_status(warning.id, "rejected")["reason"] == "not_authorised"
    rig.wait_status(alert.id, "played", timeout=20)
    assert "cancelled" not in rig.statuses(alert.id, mark)


def test_a_rival_keys_cancel_is_ignored_an_override_keys_cancels(rig: Rig) -> None:
    mark = fresh_mark(rig)
    original = rig.alert(level="orange", clip="long", repeat=1)
    rig.send(original)
    rig.wait_status(original.id, "playing")
    rival = RIVAL.alert(msg_type="cancel", references=[original.id])
    rig.publish(TOWN_TOPIC, RIVAL.seal_alert(rival))
    rig.wait_status(rival.id, "received")
    rig.barrier()
    assert rig.statuses(original.id, mark) == ["received", "queued", "playing"]
    county = COUNTY.alert(msg_type="cancel", references=[original.id])
    rig.publish(TOWN_TOPIC, COUNTY.seal_alert(county))
    cancelled = rig.wait_status(original.id, "cancelled")
    assert cancelled["by"] == county.id
    rig.settle()
    assert "played" not in rig.statuses(original.id, mark)
    assert occurrences(rig.audio_since(mark), LONG) == []


def test_ids_are_per_key(rig: Rig) -> None:
    """A rival that uses an authority's next (predictable) id first does not burn it."""
    rival = RIVAL.alert(clip="beep")
    rig.publish(TOWN_TOPIC, RIVAL.seal_alert(rival))
    rig.wait_status(rival.id, "played")
    mine = rig.alert(id=rival.id)
    rig.send(mine)
    rig.wait_status(mine.id, "played", count=2)


@pytest.mark.parametrize(
    "reference", ["local:co-danger:1", "cmd:x", "prog:routine:a:2026-07-01", "mic:1"]
)
def test_a_cancel_naming_a_station_id_is_bad_payload(rig: Rig, reference: str) -> None:
    mark = fresh_mark(rig)
    cancel = rig.alert(msg_type="cancel", references=[reference], clip=None)
    rig.send(cancel)
    assert rig.wait_status(cancel.id, "rejected")["reason"] == "bad_payload"
    assert _quiet(rig, mark)


def test_a_command_relabelled_as_an_alert_fails_its_signature(rig: Rig) -> None:
    mark = fresh_mark(rig)
    raw = rig.centre.seal_command("cancel_all")
    command_id = json.loads(_payload(raw))["id"]
    envelope = json.loads(raw)
    envelope["type"] = "alert"
    rig.publish(TOWN_TOPIC, json.dumps(envelope).encode())
    events = wait_until(lambda: rig.events("downlink_rejected", mark), 10, "downlink_rejected")
    assert events[0]["reason"] == "bad_signature" and events[0]["key"] == rig.centre.name
    assert _quiet(rig, mark)
    assert rig.responses(command_id) == []


def test_a_two_hour_command_is_bad_payload(rig: Rig) -> None:
    mark = fresh_mark(rig)
    alert = rig.alert(level="orange", clip="long", repeat=1)
    rig.send(alert)
    rig.wait_status(alert.id, "playing")
    now = datetime.now(UTC)
    response = rig.command(
        "cancel_all", sent=now.isoformat(), expires=(now + timedelta(hours=2)).isoformat()
    )
    assert response == {"id": response["id"], "ok": False, "error": "bad_payload"}
    rig.wait_status(alert.id, "played", timeout=20)
    assert "cancelled" not in rig.statuses(alert.id, mark)


def _payload(raw: bytes) -> bytes:
    import base64

    return base64.b64decode(json.loads(raw)["payload"])


# -- the time floor: a station whose clock is wrong and unsynced -------------------------------

SHIFT = {"PYTHONPATH": "tests/support/clock_shift"}


def restart(rig: Rig, *, clock: str, offset_s: float = 0.0) -> None:
    """Stop the station cleanly, then start it with `station.clock = clock` and its clock shifted.

    It is ready when it publishes its state: no command is sent first, since an
    accepted command would itself raise the time floor.
    """
    rig.station.terminate()
    text = rig.config.read_text(encoding="utf-8")
    for mode in ("synced", "unsynced", "auto"):
        text = text.replace(f'clock = "{mode}"', f'clock = "{clock}"')
    rig.config.write_text(text, encoding="utf-8")
    env = {**rig.capture.env(), **SHIFT, "CX_TEST_CLOCK_OFFSET_S": str(offset_s)}
    mark = rig.mark()
    rig.station = StationProcess(rig.config, env=env)
    rig.station.start()
    wait_until(
        lambda: any(state.get("online") for state in rig.on(STATE_TOPIC, mark)),
        20,
        f"the restarted station's state\n{rig.log()[-2000:]}",
    )
    rig.settle()


@pytest.fixture(scope="module")
def floor_rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    with running_station(tmp_path_factory.mktemp("floor"), clock="synced") as station:
        yield station


def test_the_floor_survives_a_restart_with_an_unsynced_clock(floor_rig: Rig) -> None:
    rig = floor_rig
    now = datetime.now(UTC)
    stale = rig.alert(sent=now - timedelta(seconds=30), expires=now + timedelta(seconds=2))
    stale_cmd = rig.centre.seal_command(
        "cancel_all",
        sent=(now - timedelta(seconds=30)).isoformat(),
        expires=(now + timedelta(seconds=2)).isoformat(),
    )
    time.sleep(3)  # both expire while the station runs with a synced clock
    # A Pi without a real-time clock reboots with its clock a day behind, and NTP is blocked.
    restart(rig, clock="unsynced", offset_s=-86400)
    mark = fresh_mark(rig)
    rig.send(stale)
    expired = rig.wait_status(stale.id, "expired")
    assert expired.get("clock_unsynced") is True
    assert expired["ts"] < (time.time() - 23 * 3600) * 1000  # the station's clock is behind
    rig.publish(CMD_TOPIC, stale_cmd)
    command_id = json.loads(_payload(stale_cmd))["id"]
    response = wait_until(lambda: next(iter(rig.responses(command_id)), None), 10, "a response")
    assert response == {"id": command_id, "ok": False, "error": "expired"}
    assert _quiet(rig, mark)
    assert rig.barrier()["clock_synced"] is False

    def clock_line() -> str | None:
        """`cunxiang status`'s clock line, once the running service has recorded it (≤ 5 s)."""
        shown = subprocess.run(
            [sys.executable, "-m", "gateway", "status", "-c", str(rig.config)],
            capture_output=True,
            text=True,
            check=False,
        )
        assert shown.returncode == 0, shown.stderr
        line = next(line for line in shown.stdout.splitlines() if line.startswith("Clock:"))
        return line if "NOT synced" in line else None

    line = wait_until(clock_line, 15, "status showing the unsynced clock")
    shown_floor = datetime.strptime(line.split("time floor: ")[1][:19], "%Y-%m-%d %H:%M:%S")
    assert shown_floor.replace(tzinfo=UTC) >= (now + timedelta(seconds=2)).replace(microsecond=0)


def test_messages_signed_in_2025_are_expired_on_a_station_whose_clock_says_1970(
    floor_rig: Rig,
) -> None:
    rig = floor_rig
    restart(rig, clock="unsynced", offset_s=-time.time())
    mark = fresh_mark(rig)
    sent = datetime(2025, 6, 1, 8, 0, tzinfo=UTC)
    old = rig.alert(level="red", sent=sent, expires=sent + timedelta(hours=12))
    rig.send(old)
    expired = rig.wait_status(old.id, "expired")
    assert expired.get("clock_unsynced") is True
    assert expired["ts"] < 86_400_000  # the station's clock says 1 January 1970
    response = rig.command(
        "cancel_all", sent=sent.isoformat(), expires=(sent + timedelta(minutes=5)).isoformat()
    )
    assert response == {"id": response["id"], "ok": False, "error": "expired"}
    assert _quiet(rig, mark)
    assert rig.statuses(old.id, mark) == ["expired"]


def test_unsynced_a_command_older_than_the_floor_does_not_run(floor_rig: Rig) -> None:
    """A message accepted raises the floor; a command sent before it is not run (§8)."""
    rig = floor_rig
    now = datetime.now(UTC)
    latest = rig.alert(sent=now)
    rig.send(latest)
    rig.wait_status(latest.id, "played")
    earlier = now - timedelta(seconds=20)
    response = rig.command(
        "status", sent=earlier.isoformat(), expires=(earlier + timedelta(minutes=5)).isoformat()
    )
    assert response == {"id": response["id"], "ok": False, "error": "expired"}
    assert rig.command("status")["ok"] is True


def test_command_send_signs_for_one_station_and_prints_its_response(
    rig: Rig, tmp_path: Path
) -> None:
    key_file = tmp_path / "centre.key"
    key_file.write_bytes(
        rig.centre.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    base = ["send", "--broker", f"127.0.0.1:{rig.broker.port}", "--key", str(key_file)]
    base += ["--key-name", rig.centre.name, "--wait", "10"]
    result = CliRunner().invoke(
        command_group, [*base, "--station", STATION_ID, "resend", "from_seq=1", "to_seq=3"]
    )
    assert result.exit_code == 0, result.output
    response = json.loads(result.output[result.output.index("{") :])
    assert response["ok"] is True and response["result"]["from_seq"] == 1
    # A two-hour command: the station refuses it (security.max_command_lifetime_s = 600).
    result = CliRunner().invoke(
        command_group, [*base, "--station", STATION_ID, "--expires-in", "7200", "status"]
    )
    assert result.exit_code == 1 and '"error": "bad_payload"' in result.output
    # Sent to the other station, it goes to that station's topic: this one never answers.
    mark = fresh_mark(rig)
    result = CliRunner().invoke(
        command_group, [*base[:-1], "1", "--station", OTHER_STATION, "cancel_all"]
    )
    assert result.exit_code != 0 and f"no response from {OTHER_STATION}" in result.output
    assert rig.on(RESPONSE_TOPIC, mark) == []


def test_check_config_refuses_plaintext_without_the_opt_in(rig: Rig, tmp_path: Path) -> None:
    text = rig.config.read_text(encoding="utf-8").replace("allow_plaintext = true\n", "")
    (tmp_path / "clips").mkdir()
    config = tmp_path / "gateway.toml"
    config.write_text(text, encoding="utf-8")
    result = subprocess.run(
        [sys.executable, "-m", "gateway", "check-config", "-c", str(config)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1
    assert "mqtt.allow_plaintext" in result.stderr and "mqtt.tls = true" in result.stderr
    assert "mqtt.allow_plaintext = true" in result.stderr
