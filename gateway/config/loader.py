"""`load_config`: read the TOML file, validate every part, check the parts against each other.

Why this module exists: this is where a file becomes a `Config` or a `ConfigError` naming every
problem at once (gateway/config/problems.py). Relative paths are resolved against the file's
folder, files the config names must be readable, and the cross-checks (unique names and pins,
rules naming sensors and clips) run over whatever validated. docs/config.md is the reference.
"""

from __future__ import annotations

import difflib
import os
import re
import tomllib
from pathlib import Path
from typing import Any

from drivers.base import BOOLEAN_QUANTITIES
from gateway.config.model import Config
from gateway.config.problems import ConfigError, Problem, Reader
from gateway.config.rules import RuleConfig
from gateway.config.sections import (
    AudioConfig,
    MicrophoneConfig,
    MqttConfig,
    SecurityConfig,
    StationConfig,
    StorageConfig,
    SyncConfig,
)
from gateway.config.sensors import SENSOR_MODELS, GpioContactSensor, SensorBase, sensor_quantity
from gateway.downlink.keys import decode_public_key
from gateway.programmes.model import LocalProgramme


def _read_sensor(reader: Reader, index: int, raw: Any) -> SensorBase | None:
    path: tuple[str | int, ...] = ("sensors", index)
    if not isinstance(raw, dict):
        reader.problem(path, "each [[sensors]] entry must be a table")
        return None
    kind = raw.get("type")
    model = SENSOR_MODELS.get(kind) if isinstance(kind, str) else None
    if model is None:
        close = difflib.get_close_matches(str(kind), list(SENSOR_MODELS), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        reader.problem(
            (*path, "type"),
            f"unknown sensor type {kind!r}{hint} allowed: {', '.join(SENSOR_MODELS)}",
        )
        return None
    result: SensorBase | None = reader.validate(model, raw, path)
    return result


def _read(reader: Reader) -> dict[str, Any]:
    sections: dict[str, Any] = {}
    data = reader.data
    models: dict[str, Any] = {
        "station": StationConfig,
        "mqtt": MqttConfig,
        "storage": StorageConfig,
        "sync": SyncConfig,
        "security": SecurityConfig,
        "audio": AudioConfig,
    }
    lists = ("sensors", "rules", "programmes")
    for key in data:
        if key not in (*models, *lists, "microphone"):
            close = difflib.get_close_matches(key, [*models, *lists, "microphone"], n=1)
            hint = f"; did you mean [{close[0]}]?" if close else ""
            reader.problem((key,), f"unknown section{hint}")
    if "station" not in data:
        reader.problem(("station",), "the [station] section is required (id and area)")
    for key, model in models.items():
        if key in data or key != "station":
            sections[key] = reader.validate(model, data.get(key, {}), (key,))
    if "microphone" in data:
        sections["microphone"] = reader.validate(
            MicrophoneConfig, data["microphone"], ("microphone",)
        )
    for key in lists:
        if key in data and not isinstance(data[key], list):
            reader.problem((key,), f"write each entry as [[{key}]]")
    raw_sensors = data.get("sensors", [])
    raw_rules = data.get("rules", [])
    sections["sensors"] = [
        _read_sensor(reader, i, raw)
        for i, raw in enumerate(raw_sensors if isinstance(raw_sensors, list) else [])
    ]
    sections["rules"] = [
        reader.validate(RuleConfig, raw, ("rules", i))
        for i, raw in enumerate(raw_rules if isinstance(raw_rules, list) else [])
    ]
    raw_programmes = data.get("programmes", [])
    sections["programmes"] = [
        reader.validate(LocalProgramme, raw, ("programmes", i))
        for i, raw in enumerate(raw_programmes if isinstance(raw_programmes, list) else [])
    ]
    return sections


def _resolve(base: Path, value: Path | None) -> Path | None:
    if value is None or str(value) == "":
        return None
    return value if value.is_absolute() else (base / value)


def _check_file(reader: Reader, path: tuple[str | int, ...], file: Path | None) -> None:
    if file is None:
        return
    if not file.is_file():
        reader.problem(path, f"file {file} does not exist")
    elif not os.access(file, os.R_OK):
        reader.problem(path, f"file {file} is not readable by this user")


def _resolve_paths(reader: Reader, parts: dict[str, Any], base: Path) -> None:
    mqtt: MqttConfig | None = parts.get("mqtt")
    if mqtt is not None:
        update = {
            k: _resolve(base, getattr(mqtt, k))
            for k in ("password_file", "ca_file", "cert_file", "key_file")
        }
        for key, file in update.items():
            _check_file(reader, ("mqtt", key), file)
        if not mqtt.tls and not mqtt.allow_plaintext:
            reader.problem(
                ("mqtt", "allow_plaintext"),
                "mqtt.tls = false would send everything unencrypted; set mqtt.tls = true "
                "(with mqtt.ca_file), or set mqtt.allow_plaintext = true to accept plaintext",
            )
        if mqtt.tls and update["ca_file"] is None:
            reader.problem(
                ("mqtt", "ca_file"), "tls = true needs ca_file (the centre's CA certificate)"
            )
        parts["mqtt"] = mqtt.model_copy(update=update)
    storage: StorageConfig | None = parts.get("storage")
    if storage is not None:
        parts["storage"] = storage.model_copy(update={"path": _resolve(base, storage.path)})
    audio: AudioConfig | None = parts.get("audio")
    if audio is not None:
        clips = _resolve(base, audio.clips_dir)
        explicit = "clips_dir" in reader.data.get("audio", {})
        if explicit and clips is not None and not clips.is_dir():
            reader.problem(("audio", "clips_dir"), f"folder {clips} does not exist")
        parts["audio"] = audio.model_copy(update={"clips_dir": clips})


def _cross_check(reader: Reader, parts: dict[str, Any]) -> None:
    sensors: list[SensorBase | None] = parts["sensors"]
    raw = reader.data.get("sensors")
    broken = {
        entry.get("name")
        for entry, sensor in zip(raw if isinstance(raw, list) else [], sensors, strict=False)
        if sensor is None and isinstance(entry, dict)
    }
    by_name: dict[str, SensorBase] = {}
    pins: dict[int, str] = {}
    audio: AudioConfig | None = parts.get("audio")
    if audio is not None and audio.amp_pin is not None:
        pins[audio.amp_pin] = "audio.amp_pin"
    microphone: MicrophoneConfig | None = parts.get("microphone")
    if microphone is not None:
        if microphone.ptt_pin in pins:
            reader.problem(
                ("microphone", "ptt_pin"),
                f"GPIO {microphone.ptt_pin} is already used by {pins[microphone.ptt_pin]}",
            )
        pins[microphone.ptt_pin] = "microphone.ptt_pin"
    _check_programmes(reader, parts.get("programmes") or [], audio)
    for i, sensor in enumerate(sensors):
        if sensor is None:
            continue
        if sensor.name in by_name:
            reader.problem(("sensors", i, "name"), f"sensor name {sensor.name!r} is used twice")
        by_name.setdefault(sensor.name, sensor)
        pin = getattr(sensor, "pin", None)
        if pin is not None:
            if pin in pins:
                reader.problem(("sensors", i, "pin"), f"GPIO {pin} is already used by {pins[pin]}")
            else:
                pins[pin] = f'sensors[{i}] ("{sensor.name}")'
        quantity = getattr(sensor, "quantity", None)
        if isinstance(sensor, GpioContactSensor) and quantity not in BOOLEAN_QUANTITIES:
            allowed = ", ".join(sorted(BOOLEAN_QUANTITIES))
            reader.problem(
                ("sensors", i, "quantity"),
                f"a contact reports a boolean quantity; allowed: {allowed}",
            )
    rule_names: set[str] = set()
    for i, rule in enumerate(parts["rules"]):
        if rule is None or rule.sensor in broken:
            continue  # the sensor's own problems are reported already
        if rule.name in rule_names:
            reader.problem(("rules", i, "name"), f"rule name {rule.name!r} is used twice")
        rule_names.add(rule.name)
        _check_rule(reader, i, rule, by_name.get(rule.sensor), list(by_name), audio)


def _check_programmes(
    reader: Reader, programmes: list[LocalProgramme | None], audio: AudioConfig | None
) -> None:
    names: set[str] = set()
    for i, item in enumerate(programmes):
        if item is None:
            continue
        if item.name in names:
            reader.problem(("programmes", i, "name"), f"programme name {item.name!r} is used twice")
        names.add(item.name)
        if item.clip and audio is not None and not (audio.clips_dir / f"{item.clip}.wav").is_file():
            reader.problem(
                ("programmes", i, "clip"),
                f"clip file {audio.clips_dir / f'{item.clip}.wav'} does not exist",
            )
        if item.text and audio is not None and audio.tts == "none":
            reader.problem(
                ("programmes", i, "text"),
                'audio.tts = "none" cannot speak text; record a clip, or set tts = "espeak-ng"',
            )


def _check_rule(
    reader: Reader,
    i: int,
    rule: RuleConfig,
    sensor: SensorBase | None,
    names: list[str],
    audio: AudioConfig | None,
) -> None:
    if sensor is None:
        close = difflib.get_close_matches(rule.sensor, names, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        known = ", ".join(names) or "none configured"
        reader.problem(
            ("rules", i, "sensor"), f"no sensor named {rule.sensor!r}{hint} (sensors: {known})"
        )
    else:
        quantity = rule.quantity or sensor_quantity(sensor)
        if quantity is None:
            reader.problem(
                ("rules", i, "quantity"),
                f'sensor {sensor.name!r} reports several quantities; say which: quantity = "..."',
            )
        elif rule.active is not None and quantity not in BOOLEAN_QUANTITIES:
            reader.problem(
                ("rules", i, "active"),
                f"active = ... is for on/off sensors; {sensor.name!r} reports {quantity}: use above or below",
            )
        elif rule.active is None and quantity in BOOLEAN_QUANTITIES:
            reader.problem(
                ("rules", i),
                f"{sensor.name!r} reports on/off ({quantity}): use active = true, not above/below",
            )
    clip = rule.broadcast.clip if rule.broadcast else None
    if clip and audio is not None:
        file = audio.clips_dir / f"{clip}.wav"
        if not file.is_file():
            reader.problem(("rules", i, "broadcast", "clip"), f"clip file {file} does not exist")
    if rule.broadcast and rule.broadcast.text and audio is not None and audio.tts == "none":
        reader.problem(
            ("rules", i, "broadcast", "text"),
            'audio.tts = "none" cannot speak text; record a clip, or set tts = "espeak-ng"',
        )


def _check_keys(reader: Reader, parts: dict[str, Any]) -> None:
    security: SecurityConfig | None = parts.get("security")
    if security is None:
        return
    for name, value in security.trusted_keys.items():
        if not isinstance(value, str):
            continue  # a table's key was decoded by its model
        try:
            decode_public_key(value)
        except ValueError as exc:
            reader.problem(("security", "trusted_keys", name), f"key {name!r} {exc}")


def load_config(path: Path | str) -> Config:
    """Read and validate the file; raise ConfigError naming every problem."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError([Problem(str(file), None, "", "no such file")]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([Problem(str(file), None, "", f"cannot read: {exc}")]) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        match = re.search(r"\(at line (\d+), column (\d+)\)", str(exc))
        line = int(match.group(1)) if match else None
        reason = re.sub(r"\s*\(at line.*\)", "", str(exc))
        raise ConfigError(
            [
                Problem(
                    str(file),
                    line,
                    "",
                    f"TOML syntax error: {reason} (check quotes, = and brackets)",
                )
            ]
        ) from None
    reader = Reader(file, text, data)
    parts = _read(reader)
    _resolve_paths(reader, parts, file.absolute().parent)
    _check_keys(reader, parts)
    _cross_check(reader, parts)
    if reader.problems:
        raise ConfigError(reader.problems)
    return Config.model_validate(
        {k: v for k, v in parts.items() if v is not None}, context={"resolved": True}
    )
