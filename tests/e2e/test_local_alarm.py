"""A local rule's alarm broadcast plays through the same queue as the centre's alerts (§9).

A simulated river gauge follows a script that crosses the rule's threshold a
couple of seconds after start; the rule names a broadcast. The centre sees the
`alarm` event and receipts for `local:<rule>:<n>`, the loudspeakers the rule's
clip — and a red central alert arriving meanwhile preempts the yellow local
broadcast, which then plays again from the start, as any broadcast would.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from harness.sounds import occurrences, sine_pcm
from harness.station import wait_until
from tests.e2e.conftest import RECEIPT_TOPIC, Rig, running_station

RULE = "river-high"
LEVEE = sine_pcm(350, 1.5, amplitude=0.3)
RED = sine_pcm(1500, 0.3, amplitude=0.6)
BODY = f"""
[[sensors]]
name = "river"
type = "simulated"
quantity = "water_level_m"
pattern = "script"
values = [{", ".join(["1.0"] * 12)}, 4.2]
interval_s = 0.2

[[rules]]
name = "{RULE}"
sensor = "river"
above = 3.0
clear_below = 2.5
for_s = 0.3
level = "yellow"
broadcast = {{ clip = "levee", repeat = 1 }}
"""
TONES = 'default_tone = { red = "none", orange = "none", yellow = "none", blue = "none" }'


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    folder = tmp_path_factory.mktemp("local")
    clips = {"levee": LEVEE, "red": RED}
    with running_station(folder, body=BODY, audio=TONES, clips=clips) as station:
        yield station


def test_rule_alarm_plays_through_the_queue_and_yields_to_a_red_alert(rig: Rig) -> None:
    alarm = wait_until(lambda: rig.events("alarm"), 15, "the alarm event")[0]
    assert (alarm["sensor"], alarm["rule"], alarm["level"]) == ("river", RULE, "yellow")
    assert alarm["value"] == pytest.approx(4.2)
    local_id = alarm["broadcast"]  # the alarm event names its broadcast
    assert local_id.startswith(f"local:{RULE}:")
    rig.wait_status(local_id, "playing")
    time.sleep(0.4)
    red = rig.alert(clip="red", level="red", repeat=1)
    rig.send(red)
    rig.wait_status(local_id, "played", timeout=15)
    rig.settle()

    assert rig.statuses(local_id) == [
        "received", "queued", "playing", "interrupted", "playing", "played",
    ]  # fmt: skip
    assert rig.statuses(red.id) == ["received", "queued", "playing", "played"]
    order = [(r["alert"], r["status"]) for r in rig.on(RECEIPT_TOPIC)]
    assert order.index((local_id, "interrupted")) < order.index((red.id, "playing"))
    seqs = [r["seq"] for r in rig.receipts(local_id)]
    assert seqs == sorted(seqs) and seqs[0] > alarm["seq"]

    audio = rig.capture.raw()
    red_at = occurrences(audio, RED)
    levee_at = occurrences(audio, LEVEE)
    assert len(red_at) == 1 and len(levee_at) == 1
    assert audio.find(LEVEE[:1764]) < red_at[0] < levee_at[0]  # cut, red, then all of it
    # One alarm, one broadcast: the level stays high, the rule does not trip again.
    assert len(rig.events("alarm")) == 1
