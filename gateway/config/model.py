"""`Config`, the whole config file, and its JSON Schema.

Why this module exists: the sections, sensors, rules and programmes are put together here, in
one model whose dump is the effective configuration (hashed for the ``started`` event) and whose
schema is committed as config/gateway.schema.json (`python -m gateway.schema`).
"""

from __future__ import annotations

import hashlib
from typing import Any

from pydantic import Field

from gateway.config.rules import RuleConfig
from gateway.config.sections import (
    AudioConfig,
    MicrophoneConfig,
    MqttConfig,
    Section,
    SecurityConfig,
    StationConfig,
    StorageConfig,
    SyncConfig,
)
from gateway.config.sensors import SensorConfig
from gateway.programmes.model import LocalProgramme


class Config(Section):
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


def json_schema() -> dict[str, Any]:
    """The JSON Schema of the file (committed as config/gateway.schema.json)."""
    return Config.model_json_schema()
