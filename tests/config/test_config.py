"""The config file as a technician meets it: good files load, broken ones say every problem."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.config.loader import load_config
from gateway.config.problems import ConfigError

ROOT = Path(__file__).resolve().parents[2]
KEY = "6ZuFf/HWlUKhhvTe90efTGP+9Y4Ceu3OCvh38aL/t0o="

BASE = f"""
[station]
id = "lq-371581001201-01"
area = "371581001201"

[mqtt]
allow_plaintext = true

[security]
trusted_keys = {{ "centre" = "{KEY}" }}

[[sensors]]
name = "co-1"
type = "ze07_co"
port = "/dev/ttyUSB0"

[[sensors]]
name = "smoke-1"
type = "gpio_contact"
pin = 17

[[rules]]
name = "co-danger"
sensor = "co-1"
above = 50
"""


def write(tmp_path: Path, text: str) -> Path:
    file = tmp_path / "gateway.toml"
    file.write_text(text, encoding="utf-8")
    return file


def problems(tmp_path: Path, text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text))
    return [str(p) for p in info.value.problems]


def test_base_config_loads_with_defaults(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, BASE))
    assert config.mqtt.port == 1883
    assert config.mqtt.topic_prefix == "cx/v1"
    assert config.storage.commit_interval_s == 1.0
    assert config.sync.batch_max == 500
    assert config.security.max_payload_bytes == 4194304
    assert config.audio.default_repeat == {"red": 3, "orange": 3, "yellow": 2, "blue": 1}
    assert config.sensors[0].type == "ze07_co"
    assert config.security.public_keys()["centre"].__len__() == 32


def test_scoped_and_plain_trusted_keys(tmp_path: Path) -> None:
    text = BASE.replace(
        f'"centre" = "{KEY}"',
        f'"centre" = "{KEY}", "town" = {{ key = "{KEY}", areas = ["371581001000"], '
        'may = ["alert", "cap"] }',
    )
    scopes = load_config(write(tmp_path, text)).security.key_scopes()
    assert scopes["centre"].may("command") and not scopes["centre"].may("override")
    assert scopes["centre"].covers(["all"])
    town = scopes["town"]
    assert town.areas == ("371581001",)
    assert town.may("cap") and not town.may("command") and not town.may("programme")
    assert town.covers(["371581001201", "371581001"])
    assert not town.covers(["371581002"]) and not town.covers(["all"])
    assert not town.covers(["371581001", "3715"])


def test_relative_paths_resolve_against_config_folder(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    text = BASE + '\n[storage]\npath = "data/g.db"\n'
    config = load_config(write(tmp_path / "sub", text))
    assert config.storage.path == (tmp_path / "sub" / "data" / "g.db")
    assert config.audio.clips_dir == tmp_path / "sub" / "clips"


@pytest.mark.parametrize("name", ["example.toml", "demo.toml"])
def test_shipped_examples_pass_check_config(name: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "gateway", "check-config", "-c", str(ROOT / "config" / name)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "OK" in result.stdout


def test_example_lists_every_key() -> None:
    """The example is the technician's reference: every key of every section appears in it."""
    from gateway.config import rules, sections
    from gateway.programmes.model import LocalProgramme

    text = (ROOT / "config" / "example.toml").read_text(encoding="utf-8")
    for model in (
        sections.StationConfig,
        sections.MqttConfig,
        sections.StorageConfig,
        sections.SyncConfig,
        sections.SecurityConfig,
        sections.AudioConfig,
        rules.RuleConfig,
        sections.MicrophoneConfig,
        LocalProgramme,
    ):
        for key in model.model_fields:
            if key in {"quantity", "below", "active", "clear_above"} and model is rules.RuleConfig:
                continue  # alternatives named in the comments
            assert f"{key} =" in text or f"{key} = " in text or f"# {key}" in text, key


def test_committed_schema_matches_models() -> None:
    from gateway.config.model import json_schema

    committed = json.loads((ROOT / "config" / "gateway.schema.json").read_text(encoding="utf-8"))
    assert committed == json_schema(), "run: python -m gateway.schema > config/gateway.schema.json"


# --- broken files: each names the file, the line, the key, what is wrong and what is allowed ---

BROKEN: list[tuple[str, str, str, list[str]]] = [
    (
        "toml syntax",
        BASE + "\n[sync\nbatch_max = 1\n",
        "gateway.toml:27",
        ["TOML syntax error", "Expected ']'"],
    ),
    (
        "missing station",
        BASE.replace('[station]\nid = "lq-371581001201-01"\narea = "371581001201"\n', ""),
        "station",
        ["[station] section is required"],
    ),
    (
        "bad station id",
        BASE.replace('"lq-371581001201-01"', '"LQ_01"'),
        "station.id",
        ["must match"],
    ),
    (
        "short area",
        BASE.replace('area = "371581001201"', 'area = "3715"'),
        "station.area",
        ["must match"],
    ),
    (
        "area as number",
        BASE.replace('area = "371581001201"', "area = 371581001201"),
        "station.area",
        ["valid string"],
    ),
    (
        "clock typo",
        BASE + "\n[station2]\n",
        "station2",
        ["unknown section", "did you mean [station]"],
    ),
    (
        "unknown key typo",
        BASE.replace('area = "371581001201"', 'area = "371581001201"\nnmae = "x"'),
        "station.nmae",
        ["unknown key", "did you mean `name`"],
    ),
    (
        "port as text",
        BASE.replace("[mqtt]\n", '[mqtt]\nport = "eighty"\n'),
        "mqtt.port",
        ["valid integer"],
    ),
    (
        "port range",
        BASE.replace("[mqtt]\n", "[mqtt]\nport = 70000\n"),
        "mqtt.port",
        ["less than or equal to 65535"],
    ),
    (
        "plaintext without opt-in",
        BASE.replace("allow_plaintext = true\n", ""),
        "mqtt.allow_plaintext",
        ["mqtt.tls = false", "mqtt.tls = true", "mqtt.allow_plaintext = true"],
    ),
    (
        "scoped key with an unknown permission",
        BASE.replace(
            f'"centre" = "{KEY}"', f'"centre" = {{ key = "{KEY}", may = ["alert", "warn"] }}'
        ),
        "security.trusted_keys.centre.may[1]",
        ["'alert'", "'override'"],
    ),
    (
        "scoped key with a bad area",
        BASE.replace(f'"centre" = "{KEY}"', f'"centre" = {{ key = "{KEY}", areas = ["3715810"] }}'),
        "security.trusted_keys.centre.areas",
        ["2/4/6/9/12-digit"],
    ),
    (
        "tls without ca",
        BASE.replace("[mqtt]\n", "[mqtt]\ntls = true\n"),
        "mqtt.ca_file",
        ["tls = true needs ca_file"],
    ),
    (
        "missing password file",
        BASE.replace("[mqtt]\n", '[mqtt]\npassword_file = "nope.txt"\n'),
        "mqtt.password_file",
        ["does not exist"],
    ),
    (
        "reconnect order",
        BASE.replace("[mqtt]\n", "[mqtt]\nreconnect_min_s = 10\nreconnect_max_s = 5\n"),
        "mqtt",
        ["reconnect_max_s must be at least reconnect_min_s"],
    ),
    (
        "negative budget",
        BASE + "\n[storage]\nmax_mb = -1\n",
        "storage.max_mb",
        ["greater than or equal to 1"],
    ),
    (
        "batch too big",
        BASE + "\n[sync]\nbatch_max = 100000\n",
        "sync.batch_max",
        ["less than or equal"],
    ),
    (
        "bad base64 key",
        BASE.replace(KEY, "not base64!!"),
        "security.trusted_keys.centre",
        ["not base64", "cunxiang keygen"],
    ),
    (
        "short key",
        BASE.replace(KEY, "AAAA"),
        "security.trusted_keys.centre",
        ["is 3 bytes", "32"],
    ),
    (
        "volume range",
        BASE + "\n[audio]\nvolume = 1.5\n",
        "audio.volume",
        ["less than or equal to 1"],
    ),
    ("tts typo", BASE + '\n[audio]\ntts = "espeak"\n', "audio.tts", ["allowed", "espeak-ng"]),
    (
        "missing clips dir",
        BASE + '\n[audio]\nclips_dir = "no-such-dir"\n',
        "audio.clips_dir",
        ["does not exist"],
    ),
    (
        "sensor type typo",
        BASE.replace('type = "ze07_co"', 'type = "ze07-co"'),
        'sensors[0] ("co-1").type',
        ["unknown sensor type 'ze07-co'", "did you mean 'ze07_co'", "allowed:"],
    ),
    (
        "sensor missing port",
        BASE.replace('port = "/dev/ttyUSB0"\n', ""),
        'sensors[0] ("co-1").port',
        ["required key is missing"],
    ),
    (
        "sensor unknown key",
        BASE.replace('port = "/dev/ttyUSB0"', 'port = "/dev/ttyUSB0"\nbuad = 9600'),
        'sensors[0] ("co-1").buad',
        ["unknown key", "did you mean `baud`"],
    ),
    (
        "bad mode",
        BASE.replace('port = "/dev/ttyUSB0"', 'port = "/dev/ttyUSB0"\nmode = "poll"'),
        'sensors[0] ("co-1").mode',
        ["allowed", "'active'", "'qa'"],
    ),
    (
        "duplicate sensor name",
        BASE + '\n[[sensors]]\nname = "co-1"\ntype = "jsonl"\nport = "/dev/ttyUSB1"\n',
        'sensors[2] ("co-1").name',
        ["used twice"],
    ),
    (
        "duplicate pin",
        BASE + '\n[[sensors]]\nname = "rain"\ntype = "gpio_pulse"\npin = 17\n',
        'sensors[2] ("rain").pin',
        ["GPIO 17 is already used by sensors[1]"],
    ),
    (
        "amp pin clash",
        BASE + "\n[audio]\namp_pin = 17\n",
        'sensors[1] ("smoke-1").pin',
        ["GPIO 17 is already used by audio.amp_pin"],
    ),
    (
        "pin out of range",
        BASE.replace("pin = 17", "pin = 40"),
        'sensors[1] ("smoke-1").pin',
        ["less than or equal to 27"],
    ),
    (
        "contact numeric quantity",
        BASE.replace("pin = 17", 'pin = 17\nquantity = "co_ppm"'),
        'sensors[1] ("smoke-1").quantity',
        ["boolean quantity", "allowed"],
    ),
    (
        "rule unknown sensor",
        BASE.replace('sensor = "co-1"', 'sensor = "co1"'),
        'rules[0] ("co-danger").sensor',
        ["no sensor named 'co1'", "did you mean 'co-1'"],
    ),
    (
        "rule two conditions",
        BASE.replace("above = 50", "above = 50\nbelow = 1"),
        'rules[0] ("co-danger")',
        ["exactly one of above"],
    ),
    (
        "rule active on numeric",
        BASE.replace("above = 50", "active = true"),
        'rules[0] ("co-danger").active',
        ["active = ... is for on/off sensors", "use above or below"],
    ),
    (
        "rule above on boolean",
        BASE + '\n[[rules]]\nname = "s"\nsensor = "smoke-1"\nabove = 1\n',
        'rules[1] ("s")',
        ["use active = true"],
    ),
    (
        "rule hysteresis wrong way",
        BASE.replace("above = 50", "above = 50\nclear_below = 60"),
        'rules[0] ("co-danger")',
        ["clear_below (60.0) must not exceed above (50.0)"],
    ),
    (
        "rule bad level",
        BASE.replace("above = 50", 'above = 50\nlevel = "purple"'),
        'rules[0] ("co-danger").level',
        ["allowed", "'red'"],
    ),
    (
        "rule missing clip",
        BASE.replace("above = 50", 'above = 50\nbroadcast = { clip = "co_alarm" }'),
        'rules[0] ("co-danger").broadcast.clip',
        ["co_alarm.wav does not exist"],
    ),
    (
        "rule broadcast two sources",
        BASE.replace("above = 50", 'above = 50\nbroadcast = { clip = "a", text = "b" }'),
        'rules[0] ("co-danger").broadcast',
        ["exactly one of text"],
    ),
    ("rules not array", BASE.replace("[[rules]]", "[rules]"), "rules", ["[[rules]]"]),
    (
        "simulated script empty",
        BASE + '\n[[sensors]]\nname = "s"\ntype = "simulated"\nquantity = "x"\n'
        'pattern = "script"\n',
        'sensors[2] ("s")',
        ['pattern = "script" needs values'],
    ),
]


@pytest.mark.parametrize(("label", "text", "key", "fragments"), BROKEN, ids=[b[0] for b in BROKEN])
def test_broken_config_names_key_and_fix(
    tmp_path: Path, label: str, text: str, key: str, fragments: list[str]
) -> None:
    found = problems(tmp_path, text)
    matching = [p for p in found if key in p]
    assert matching, f"no problem mentions {key!r}: {found}"
    message = " | ".join(matching)
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"
    assert all(p.startswith(str(tmp_path / "gateway.toml")) for p in found)


def test_problem_lines_point_at_the_key(tmp_path: Path) -> None:
    text = BASE.replace('port = "/dev/ttyUSB0"', 'port = "/dev/ttyUSB0"\nbuad = 9600')
    line = text.splitlines().index("buad = 9600") + 1
    (found,) = problems(tmp_path, text)
    assert found.startswith(f"{tmp_path / 'gateway.toml'}:{line}: ")


def test_every_problem_reported_in_one_run(tmp_path: Path) -> None:
    text = (
        BASE.replace('area = "371581001201"', 'area = "1"')
        .replace('type = "ze07_co"', 'type = "ze07"')
        .replace(KEY, "AAAA")
        .replace("[mqtt]\n", "[mqtt]\nport = 0\n")
        + '\n[[sensors]]\nname = "rain"\ntype = "gpio_pulse"\npin = 17\n'
    )
    found = problems(tmp_path, text)
    assert len(found) == 5, found


def test_check_config_cli_exit_codes(tmp_path: Path) -> None:
    good = write(tmp_path, BASE)
    bad_dir = tmp_path / "bad"
    bad_dir.mkdir()
    bad = write(bad_dir, BASE.replace("pin = 17", "pin = 99"))
    ok = subprocess.run(
        [sys.executable, "-m", "gateway", "check-config", "-c", str(good)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert ok.returncode == 0
    failed = subprocess.run(
        [sys.executable, "-m", "gateway", "check-config", "-c", str(bad)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert failed.returncode == 1
    assert "1 problem found" in failed.stderr
    assert 'sensors[1] ("smoke-1").pin' in failed.stderr
    missing = subprocess.run(
        [sys.executable, "-m", "gateway", "check-config", "-c", str(tmp_path / "x.toml")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert missing.returncode == 1
    assert "no such file" in missing.stderr


def test_version() -> None:
    from gateway import __version__

    out = subprocess.run(
        [sys.executable, "-m", "gateway", "--version"], capture_output=True, text=True, check=True
    )
    assert __version__ in out.stdout
