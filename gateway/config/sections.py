"""The one-table sections of the config file: station, mqtt, storage, sync, security, audio, mic.

Why this module exists: each section is a small pydantic model with its limits and defaults,
docs/config.md describes every key; `Section` is the base of every table (sensors and rules too),
so an unknown key is always an error.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from audio.levels import WARNING_LEVELS, Level, WarningLevel
from gateway.downlink.scope import KeyScope, TrustedKeyValue, key_scopes

Tone = Literal["siren", "chime", "none"]
BcmPin = Annotated[int, Field(ge=0, le=27, description="GPIO number (BCM), 0-27")]
NAME_PATTERN = r"^[A-Za-z0-9_.-]{1,64}$"
CLIP_PATTERN = r"^[a-z0-9_-]{1,64}$"


class Section(BaseModel):
    """A table of the file: unknown keys are errors (a typo must not disable an alarm)."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class StationConfig(Section):
    """Identity of the station (docs/protocol.md §1)."""

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{2,63}$", description="unique station id")
    area: str = Field(pattern=r"^[0-9]{12}$", description="12-digit area code of the village")
    name: str = ""
    clock: Literal["auto", "synced", "unsynced"] = "auto"


class MqttConfig(Section):
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


class StorageConfig(Section):
    """The local SQLite store and its budget."""

    path: Path = Path("/var/lib/cunxiang/gateway.db")
    max_mb: int = Field(512, ge=1)
    max_age_days: int = Field(30, ge=1)
    commit_interval_s: float = Field(1.0, gt=0, le=60)


class SyncConfig(Section):
    """Uplink batching and flow control."""

    batch_max: int = Field(500, ge=1, le=5000)
    inflight_max: int = Field(20, ge=1, le=1000)


class SecurityConfig(Section):
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


class AudioConfig(Section):
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


class MicrophoneConfig(Section):
    """The village microphone: a PyAudio input and a push-to-talk button (docs/protocol.md §11)."""

    device: str | int = "default"
    ptt_pin: BcmPin
    gain: float = Field(1.0, ge=0.0, le=10.0)
    record: bool = False
    debounce_s: float = Field(0.05, ge=0.0, le=1.0)
