"""The station's configuration: one TOML file read into pydantic models.

Technicians edit this file by hand, so loading it must never stop at the first
mistake: every section, sensor and rule is validated on its own, every problem
is collected with the file, the line (where one can be found), the key path
(`sensors[2] ("river").port`), what was wrong and what is allowed, and then all
of them are reported at once (as Mopidy does). Unknown keys are errors, so a
typo cannot silently disable an alarm. docs/config.md is the reference.
"""

from __future__ import annotations

import difflib
import hashlib
import os
import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    model_validator,
)

from audio.levels import WARNING_LEVELS, Level, WarningLevel
from drivers.base import BOOLEAN_QUANTITIES
from gateway.downlink.keys import decode_public_key
from gateway.downlink.scope import TRUSTED_KEY_FORMS, KeyScope, TrustedKeyValue, key_scopes
from gateway.programmes.model import LocalProgramme

Tone = Literal["siren", "chime", "none"]
BcmPin = Annotated[int, Field(ge=0, le=27, description="GPIO number (BCM), 0-27")]
NAME_PATTERN = r"^[A-Za-z0-9_.-]{1,64}$"
CLIP_PATTERN = r"^[a-z0-9_-]{1,64}$"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class StationConfig(_Section):
    """Identity of the station (docs/protocol.md §1)."""

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{2,63}$", description="unique station id")
    area: str = Field(pattern=r"^[0-9]{12}$", description="12-digit area code of the village")
    name: str = ""
    clock: Literal["auto", "synced", "unsynced"] = "auto"


class MqttConfig(_Section):
    """The broker at the centre and how to reach it."""

    host: str = "127.0.0.1"
    port: int = Field(1883, ge=1, le=65535)
    topic_prefix: str = Field("cx/v1", pattern=r"^[^#+]+[^#+/]$")
    keepalive_s: int = Field(30, ge=5, le=3600)
    heartbeat_s: int = Field(60, ge=5, le=3600)
    username: str = ""
    password_file: Path | None = None
    tls: bool = False
    allow_plaintext: bool = Field(
        False, description="tls = false is refused unless this is true (docs/protocol.md §2)"
    )
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    reconnect_min_s: float = Field(1.0, gt=0, le=600)
    reconnect_max_s: float = Field(60.0, gt=0, le=3600)
    protocol: Literal["5", "3.1.1"] = Field(
        "5",
        description="MQTT version: 5 (Maximum Packet Size, session expiry) or 3.1.1 (old brokers)",
    )

    @model_validator(mode="after")
    def _consistent(self) -> MqttConfig:
        if self.reconnect_max_s < self.reconnect_min_s:
            raise ValueError("reconnect_max_s must be at least reconnect_min_s")
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file go together: set both or neither")
        return self


class StorageConfig(_Section):
    """The local SQLite store and its budget."""

    path: Path = Path("/var/lib/cunxiang/gateway.db")
    max_mb: int = Field(512, ge=1)
    max_age_days: int = Field(30, ge=1)
    commit_interval_s: float = Field(1.0, gt=0, le=60)


class SyncConfig(_Section):
    """Uplink batching and flow control."""

    batch_max: int = Field(500, ge=1, le=5000)
    inflight_max: int = Field(20, ge=1, le=1000)


class SecurityConfig(_Section):
    """Who may make the loudspeakers speak, and the limits on what they send."""

    max_payload_bytes: int = Field(4 * 1024 * 1024, ge=1024, le=16 * 1024 * 1024)
    max_clock_skew_s: int = Field(300, ge=0)
    max_alert_lifetime_s: int = Field(604800, ge=60, description="docs/protocol.md §6.1")
    max_command_lifetime_s: int = Field(600, ge=10, description="docs/protocol.md §8")
    allow_test_sound: bool = False
    trusted_keys: dict[str, TrustedKeyValue] = Field(default_factory=dict)

    def public_keys(self) -> dict[str, bytes]:
        """Key name to raw 32-byte Ed25519 public key (validated at load)."""
        return {name: scope.public_key for name, scope in self.key_scopes().items()}

    def key_scopes(self) -> dict[str, KeyScope]:
        """Key name to what the key may sign and for which areas (docs/protocol.md §6)."""
        return key_scopes(self.trusted_keys)


DEFAULT_TONE: dict[WarningLevel, Tone] = {
    Level.RED: "siren",
    Level.ORANGE: "siren",
    Level.YELLOW: "chime",
    Level.BLUE: "chime",
}
DEFAULT_REPEAT: dict[WarningLevel, int] = {
    Level.RED: 3,
    Level.ORANGE: 3,
    Level.YELLOW: 2,
    Level.BLUE: 1,
}


class AudioConfig(_Section):
    """The loudspeaker chain: sound device, amplifier relay, clips and TTS."""

    device: str | int = "default"
    clips_dir: Path = Path("clips")
    tts: Literal["espeak-ng", "none"] = "espeak-ng"
    tts_voice: str = "cmn-latn-pinyin"
    # language (BCP 47 prefix) -> espeak-ng voice for text not in Chinese (docs/protocol.md §9)
    tts_voices: dict[
        Annotated[str, Field(pattern=r"^[A-Za-z]{2,8}(-[A-Za-z0-9]{1,8})*$")],
        Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9+_-]{0,63}$")],
    ] = Field(default_factory=lambda: {"en": "en-us", "fr": "fr-fr"})
    # longer spoken text: the repeats say only headline + instruction (docs/protocol.md §9)
    repeat_full_max_s: float = Field(45.0, ge=0.0, le=3600.0)
    volume: float = Field(1.0, ge=0.0, le=1.0)
    repeat_gap_s: float = Field(2.0, ge=0.0, le=60.0)
    retries: int = Field(2, ge=0, le=10)
    amp_pin: BcmPin | None = None
    amp_active_high: bool = True
    amp_warmup_s: float = Field(2.0, ge=0.0, le=30.0)
    amp_release_s: float = Field(10.0, ge=0.0, le=600.0)
    default_tone: dict[WarningLevel, Tone] = Field(default_factory=lambda: dict(DEFAULT_TONE))
    default_repeat: dict[WarningLevel, Annotated[int, Field(ge=1, le=10)]] = Field(
        default_factory=lambda: dict(DEFAULT_REPEAT)
    )
    microphone_level: Literal[WarningLevel, Level.MIC] = Level.MIC
    max_queue: int = Field(32, ge=1, le=1000)

    @model_validator(mode="after")
    def _all_levels(self) -> AudioConfig:
        for key in ("default_tone", "default_repeat"):
            missing = [str(lvl) for lvl in WARNING_LEVELS if lvl not in getattr(self, key)]
            if missing:
                raise ValueError(f"{key} needs a value for every level; missing {missing}")
        return self


class MicrophoneConfig(_Section):
    """The village microphone: a PyAudio input and a push-to-talk button (docs/protocol.md §11)."""

    device: str | int = "default"
    ptt_pin: BcmPin
    gain: float = Field(1.0, ge=0.0, le=10.0)
    record: bool = False
    debounce_s: float = Field(0.05, ge=0.0, le=1.0)


# --- sensors -----------------------------------------------------------------


class _Sensor(_Section):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    name: str = Field(pattern=NAME_PATTERN)

    def driver_params(self) -> dict[str, Any]:
        """The keyword arguments of this sensor's driver: every key but name and type."""
        return self.model_dump(by_alias=True, exclude={"name", "type"})


class Ze07CoSensor(_Sensor):
    """Winsen ZE07-CO carbon monoxide module on a UART."""

    type: Literal["ze07_co"]
    port: str
    baud: int = 9600
    mode: Literal["active", "qa"] = "active"
    poll_s: float = Field(1.0, gt=0)
    timeout_s: float = Field(10.0, gt=0)


class ModbusLevelSensor(_Sensor):
    """RS-485 Modbus RTU level transmitter."""

    type: Literal["modbus_level"]
    port: str
    baud: int = 9600
    unit: int = Field(1, ge=1, le=247)
    # `register` would shadow BaseModel's ABC `register`, hence the alias.
    value_register: int = Field(alias="register", ge=0, le=65535)
    decimals_register: int | None = Field(None, ge=0, le=65535)
    scale: float = 1.0
    offset: float = 0.0
    poll_s: float = Field(5.0, gt=0)
    timeout_s: float = Field(30.0, gt=0)
    retries: int = Field(2, ge=0, le=10)


class GpioContactSensor(_Sensor):
    """A dry contact on a GPIO: smoke detector relay, float switch, door."""

    type: Literal["gpio_contact"]
    pin: BcmPin
    active_low: bool = True
    quantity: str = "smoke"
    debounce_s: float = Field(0.05, ge=0, le=10)
    report_s: float = Field(60.0, gt=0)


class GpioPulseSensor(_Sensor):
    """A tipping-bucket rain gauge counting pulses on a GPIO."""

    type: Literal["gpio_pulse"]
    pin: BcmPin
    per_pulse: float = Field(0.2, gt=0)
    report_s: float = Field(60.0, gt=0)
    debounce_s: float = Field(0.01, ge=0, le=10)


class JsonlSensor(_Sensor):
    """A microcontroller writing one JSON object per line."""

    type: Literal["jsonl"]
    port: str
    baud: int = 115200
    timeout_s: float = Field(30.0, gt=0)


class SimulatedSensor(_Sensor):
    """A simulated sensor for demos and tests."""

    type: Literal["simulated"]
    quantity: str
    pattern: Literal["sine", "steps", "random_walk", "script"] = "sine"
    period_s: float = Field(60.0, gt=0)
    low: float = 0.0
    high: float = 1.0
    interval_s: float = Field(1.0, gt=0)
    values: list[float | bool] | None = None
    seed: int | None = None

    @model_validator(mode="after")
    def _script_has_values(self) -> SimulatedSensor:
        if self.pattern == "script" and not self.values:
            raise ValueError('pattern = "script" needs values = [ ... ]')
        return self


SensorConfig = Annotated[
    Ze07CoSensor
    | ModbusLevelSensor
    | GpioContactSensor
    | GpioPulseSensor
    | JsonlSensor
    | SimulatedSensor,
    Field(discriminator="type"),
]
SENSOR_MODELS: dict[str, type[_Sensor]] = {
    "ze07_co": Ze07CoSensor,
    "modbus_level": ModbusLevelSensor,
    "gpio_contact": GpioContactSensor,
    "gpio_pulse": GpioPulseSensor,
    "jsonl": JsonlSensor,
    "simulated": SimulatedSensor,
}
FIXED_QUANTITY = {"ze07_co": "co_ppm", "modbus_level": "water_level_m", "gpio_pulse": "rain_mm"}


def sensor_quantity(sensor: _Sensor) -> str | None:
    """The quantity a sensor reports, or None when it reports several (jsonl)."""
    fixed = FIXED_QUANTITY.get(getattr(sensor, "type", ""))
    return fixed or getattr(sensor, "quantity", None)


# --- rules -------------------------------------------------------------------


class RuleBroadcast(_Section):
    """What a local alarm says over the loudspeakers."""

    text: str | None = Field(None, min_length=1, max_length=2000)
    clip: str | None = Field(None, pattern=CLIP_PATTERN)
    repeat: int | None = Field(None, ge=1, le=10)
    level: WarningLevel | None = None

    @model_validator(mode="after")
    def _one_source(self) -> RuleBroadcast:
        if (self.text is None) == (self.clip is None):
            raise ValueError("a broadcast needs exactly one of text = ... or clip = ...")
        return self


class RuleConfig(_Section):
    """A local alarm rule (docs/protocol.md §9)."""

    name: str = Field(pattern=NAME_PATTERN)
    sensor: str
    quantity: str | None = None
    above: float | None = None
    below: float | None = None
    active: bool | None = None
    clear_below: float | None = None
    clear_above: float | None = None
    for_s: float = Field(0.0, ge=0)
    level: WarningLevel = Level.ORANGE
    broadcast: RuleBroadcast | None = None

    @model_validator(mode="after")
    def _one_condition(self) -> RuleConfig:
        given = [k for k in ("above", "below", "active") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(
                "a rule needs exactly one of above = ..., below = ... or active = true"
            )
        if self.clear_below is not None and self.above is None:
            raise ValueError("clear_below goes with above")
        if self.clear_above is not None and self.below is None:
            raise ValueError("clear_above goes with below")
        if (
            self.above is not None
            and self.clear_below is not None
            and self.clear_below > self.above
        ):
            raise ValueError(
                f"clear_below ({self.clear_below}) must not exceed above ({self.above})"
            )
        if (
            self.below is not None
            and self.clear_above is not None
            and self.clear_above < self.below
        ):
            raise ValueError(
                f"clear_above ({self.clear_above}) must not be under below ({self.below})"
            )
        return self


class Config(_Section):
    """The whole file."""

    station: StationConfig
    mqtt: MqttConfig = MqttConfig()
    storage: StorageConfig = StorageConfig()
    sync: SyncConfig = SyncConfig()
    security: SecurityConfig = SecurityConfig()
    audio: AudioConfig = AudioConfig()
    sensors: list[SensorConfig] = Field(default_factory=list)
    rules: list[RuleConfig] = Field(default_factory=list)
    microphone: MicrophoneConfig | None = None
    programmes: list[LocalProgramme] = Field(default_factory=list)

    def config_hash(self) -> str:
        """A short stable hash of the effective configuration (for the `started` event)."""
        return hashlib.sha256(self.model_dump_json().encode()).hexdigest()[:16]


# --- loading and error reporting ---------------------------------------------


@dataclass(frozen=True)
class Problem:
    """One thing wrong in the file, said so a technician can fix it."""

    file: str
    line: int | None
    key: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.key}: {self.message}" if self.key else f"{where}: {self.message}"


class ConfigError(Exception):
    """The file cannot be used; `problems` says every reason at once."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


class _LineIndex:
    """Finds the line of a key in the TOML text (tomllib does not keep positions)."""

    _header = re.compile(r"^\s*(\[\[?)\s*([A-Za-z0-9_.\-\"]+)\s*\]\]?")
    _key = re.compile(r"^\s*([A-Za-z0-9_\-\"]+)\s*=")

    def __init__(self, text: str) -> None:
        self.lines: dict[tuple[str | int, ...], int] = {}
        counters: dict[str, int] = {}
        table: tuple[str | int, ...] = ()
        for number, line in enumerate(text.splitlines(), start=1):
            header = self._header.match(line)
            if header:
                name = header.group(2).strip('"')
                if header.group(1) == "[[":
                    counters[name] = counters.get(name, -1) + 1
                    table = (name, counters[name])
                else:
                    table = tuple(name.split("."))
                self.lines.setdefault(table, number)
                continue
            key = self._key.match(line)
            if key:
                self.lines.setdefault((*table, key.group(1).strip('"')), number)

    def find(self, path: tuple[str | int, ...]) -> int | None:
        for end in range(len(path), 0, -1):
            if path[:end] in self.lines:
                return self.lines[path[:end]]
        return None


def _key_path(path: Iterable[str | int], data: Mapping[str, Any]) -> str:
    out = ""
    node: Any = data
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
            try:
                node = node[part]
            except (IndexError, KeyError, TypeError):
                node = None
            if isinstance(node, dict) and isinstance(node.get("name"), str):
                out += f' ("{node["name"]}")'
        else:
            out += f".{part}" if out else part
            node = node.get(part) if isinstance(node, dict) else None
    return out


def _allowed(error: Mapping[str, Any]) -> str:
    ctx = error.get("ctx") or {}
    kind = error["type"]
    if kind == "literal_error":
        return f"; allowed: {ctx.get('expected')}"
    if kind == "string_pattern_mismatch":
        return f"; it must match {ctx.get('pattern')}"
    return ""


_MESSAGES = {
    "extra_forbidden": "unknown key (a typo?)",
    "missing": "required key is missing",
}


class _Reader:
    """Validates one parsed file part by part, collecting every problem."""

    def __init__(self, file: Path, text: str, data: dict[str, Any]) -> None:
        self.file = file
        self.data = data
        self.index = _LineIndex(text)
        self.problems: list[Problem] = []

    def problem(self, path: tuple[str | int, ...], message: str) -> None:
        self.problems.append(
            Problem(str(self.file), self.index.find(path), _key_path(path, self.data), message)
        )

    def validate(self, model: Any, value: Any, path: tuple[str | int, ...]) -> Any:
        try:
            return TypeAdapter(model).validate_python(value)
        except ValidationError as exc:
            for error in exc.errors():
                loc = tuple(p for p in error["loc"] if not _is_union_tag(p))
                message = _MESSAGES.get(error["type"], error["msg"])
                if error["type"] == "extra_forbidden":
                    message += self._suggest(model, loc)
                self.problem(path + loc, message + _allowed(error))
            return None

    def _suggest(self, model: Any, loc: tuple[str | int, ...]) -> str:
        fields = getattr(model, "model_fields", None)
        if not fields or not loc or not isinstance(loc[-1], str) or len(loc) != 1:
            return ""
        close = difflib.get_close_matches(loc[-1], list(fields), n=1)
        return f"; did you mean `{close[0]}`?" if close else f"; allowed keys: {', '.join(fields)}"


def _is_union_tag(part: str | int) -> bool:
    return isinstance(part, str) and (part in SENSOR_MODELS or part in TRUSTED_KEY_FORMS)


def _read_sensor(reader: _Reader, index: int, raw: Any) -> _Sensor | None:
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
    result: _Sensor | None = reader.validate(model, raw, path)
    return result


def _read(reader: _Reader) -> dict[str, Any]:
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


def _check_file(reader: _Reader, path: tuple[str | int, ...], file: Path | None) -> None:
    if file is None:
        return
    if not file.is_file():
        reader.problem(path, f"file {file} does not exist")
    elif not os.access(file, os.R_OK):
        reader.problem(path, f"file {file} is not readable by this user")


def _resolve_paths(reader: _Reader, parts: dict[str, Any], base: Path) -> None:
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


def _cross_check(reader: _Reader, parts: dict[str, Any]) -> None:
    sensors: list[_Sensor | None] = parts["sensors"]
    raw = reader.data.get("sensors")
    broken = {
        entry.get("name")
        for entry, sensor in zip(raw if isinstance(raw, list) else [], sensors, strict=False)
        if sensor is None and isinstance(entry, dict)
    }
    by_name: dict[str, _Sensor] = {}
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
    reader: _Reader, programmes: list[LocalProgramme | None], audio: AudioConfig | None
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
    reader: _Reader,
    i: int,
    rule: RuleConfig,
    sensor: _Sensor | None,
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


def _check_keys(reader: _Reader, parts: dict[str, Any]) -> None:
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
    reader = _Reader(file, text, data)
    parts = _read(reader)
    _resolve_paths(reader, parts, file.absolute().parent)
    _check_keys(reader, parts)
    _cross_check(reader, parts)
    if reader.problems:
        raise ConfigError(reader.problems)
    return Config.model_validate(
        {k: v for k, v in parts.items() if v is not None}, context={"resolved": True}
    )


def json_schema() -> dict[str, Any]:
    """The JSON Schema of the file (committed as config/gateway.schema.json)."""
    return Config.model_json_schema()
