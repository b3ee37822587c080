"""The agent's configuration file (`/etc/anc-agent/agent.yaml`), parsed once into a typed `AgentConfig`.

Precedence (DESIGN.md): firmware profile < this file < shadow desired. This file chooses the profile,
may override the profile's controller defaults (checked against the profile's bounds when the daemon
starts), picks the audio backend and says where state lives. The `cloud:` section is kept as a dict and
handed to the sync layer, which owns its keys (`agent/sync/config.py`); without it the agent runs
offline. `config/agent.example.yaml` documents every key.

Every error names the file, the field and the allowed values: `agent.yaml: backend: 'alsa' is not
allowed (allowed values: sounddevice, simulated, wav)`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.audio import BACKENDS
from agent.profiles import read_yaml

DEFAULT_CONFIG_PATH = Path("/etc/anc-agent/agent.yaml")
DEFAULT_STATE_DIR = Path("/var/lib/anc-agent")
LOG_LEVELS = ("debug", "info", "warning", "error")
MODES = ("anc", "passthrough", "off")
CONTROLLER_KEYS = ("mode", "algorithm", "taps", "mu", "leakage", "rls_taps", "rls_lambda")
_TOP_KEYS = (
    "profile",
    "controller",
    "backend",
    "simulated",
    "wav",
    "state_dir",
    "checkpoint_interval_s",
    "telemetry_interval_s",
    "log_level",
    "realtime_priority",
    "safety",
    "features",
    "cloud",
)


class ConfigError(ValueError):
    """A configuration that cannot be used; the message names the file, the field and what is allowed."""


@dataclass(frozen=True, slots=True)
class SimulatedOptions:
    paced: bool = True
    noise: str | None = None  # a noise spec (agent.sim.noise); None = the profile's default noise


@dataclass(frozen=True, slots=True)
class WavOptions:
    path: Path | None = None
    loop: bool = True
    paced: bool = True


@dataclass(frozen=True, slots=True)
class SafetyOptions:
    enabled: bool = True
    hold_s: float = 5.0


@dataclass(frozen=True, slots=True)
class AgentConfig:
    source: Path
    profile: str = "headphone-ff-48k"
    controller: dict[str, Any] = field(default_factory=dict)  # overrides, by shadow name
    backend: str = "sounddevice"
    simulated: SimulatedOptions = SimulatedOptions()
    wav: WavOptions = WavOptions()
    state_dir: Path = DEFAULT_STATE_DIR
    checkpoint_interval_s: float = 60.0
    telemetry_interval_s: float = 1.0
    log_level: str = "info"
    realtime_priority: int = 70
    safety: SafetyOptions = SafetyOptions()
    offload_features: bool = False
    cloud: dict[str, Any] | None = None

    def backend_options(self) -> dict[str, Any]:
        """Keyword arguments for `agent.audio.open_backend(self.backend, profile, ...)`."""
        if self.backend == "simulated":
            return {"paced": self.simulated.paced, "noise": self.simulated.noise}
        if self.backend == "wav":
            return {"path": self.wav.path, "loop": self.wav.loop, "paced": self.wav.paced}
        return {}


class _Reader:
    """Typed access to one mapping of the file, with errors that name the file and the field path."""

    def __init__(self, source: Path, raw: Any, prefix: str, allowed: tuple[str, ...]) -> None:
        self.source, self.prefix = source, prefix
        if raw is None:
            raw = {}
        if not isinstance(raw, dict):
            raise self.fail("", f"expected a mapping of keys to values (allowed keys: {', '.join(allowed)})")
        unknown = sorted(str(k) for k in raw if k not in allowed)
        if unknown:
            raise self.fail(unknown[0], f"unknown key (allowed keys: {', '.join(allowed)})")
        self.raw: dict[str, Any] = raw

    def fail(self, key: str, message: str) -> ConfigError:
        path = f"{self.prefix}.{key}" if self.prefix and key else (self.prefix or key or "(top level)")
        return ConfigError(f"{self.source}: {path}: {message}")

    def number(self, key: str, default: float, lo: float, hi: float) -> float:
        value = self.raw.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise self.fail(key, f"{value!r} is not a number (allowed: a number in [{lo:g}, {hi:g}])")
        if not lo <= value <= hi:
            raise self.fail(key, f"{value:g} is outside [{lo:g}, {hi:g}]")
        return float(value)

    def integer(self, key: str, default: int, lo: int, hi: int) -> int:
        value = self.raw.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(key, f"{value!r} is not an integer (allowed: an integer in [{lo}, {hi}])")
        if not lo <= value <= hi:
            raise self.fail(key, f"{value} is outside [{lo}, {hi}]")
        return value

    def boolean(self, key: str, default: bool) -> bool:
        value = self.raw.get(key, default)
        if not isinstance(value, bool):
            raise self.fail(key, f"{value!r} is not allowed (allowed values: true, false)")
        return value

    def choice(self, key: str, default: str, choices: tuple[str, ...]) -> str:
        value = self.raw.get(key, default)
        if value not in choices:
            raise self.fail(key, f"{value!r} is not allowed (allowed values: {', '.join(choices)})")
        return str(value)

    def text(self, key: str, default: str | None) -> str | None:
        value = self.raw.get(key, default)
        if value is not None and (not isinstance(value, str) or not value.strip()):
            raise self.fail(key, f"{value!r} is not allowed (allowed: a non-empty string)")
        return value

    def path(self, key: str, default: Path | None) -> Path | None:
        value = self.text(key, None if default is None else str(default))
        if value is None:
            return None
        p = Path(value).expanduser()
        return p if p.is_absolute() else (self.source.parent / p)


def parse_config(data: Any, source: Path) -> AgentConfig:
    """Turn a loaded YAML document into an AgentConfig, or raise ConfigError naming the field."""
    top = _Reader(source, data, "", _TOP_KEYS)
    profile = top.text("profile", "headphone-ff-48k")
    assert profile is not None
    if profile.endswith((".yaml", ".yml")) and not Path(profile).is_absolute():
        profile = str(source.parent / profile)

    ctl = _Reader(source, top.raw.get("controller"), "controller", CONTROLLER_KEYS)
    overrides: dict[str, Any] = {}
    for key, value in ctl.raw.items():
        if key == "mode":
            overrides[key] = ctl.choice("mode", "anc", MODES)
        elif key == "algorithm":
            if not isinstance(value, str):
                raise ctl.fail(key, f"{value!r} is not allowed (allowed values: fxnlms, fxrls, hybrid)")
            overrides[key] = value
        elif key in ("taps", "rls_taps"):
            if isinstance(value, bool) or not isinstance(value, int):
                raise ctl.fail(
                    key, f"{value!r} is not an integer (allowed: an integer within the profile's bounds)"
                )
            overrides[key] = value
        else:
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                raise ctl.fail(
                    key, f"{value!r} is not a number (allowed: a number within the profile's bounds)"
                )
            overrides[key] = float(value)

    backend = top.choice("backend", "sounddevice", BACKENDS)
    sim = _Reader(source, top.raw.get("simulated"), "simulated", ("paced", "noise"))
    simulated = SimulatedOptions(paced=sim.boolean("paced", True), noise=sim.text("noise", None))
    wav_r = _Reader(source, top.raw.get("wav"), "wav", ("path", "loop", "paced"))
    wav = WavOptions(
        path=wav_r.path("path", None), loop=wav_r.boolean("loop", True), paced=wav_r.boolean("paced", True)
    )
    if backend == "wav" and wav.path is None:
        raise wav_r.fail("path", "is required when backend is wav (allowed: a WAV file path)")

    safety_r = _Reader(source, top.raw.get("safety"), "safety", ("enabled", "hold_s"))
    features_r = _Reader(source, top.raw.get("features"), "features", ("offload",))
    cloud = top.raw.get("cloud")
    if cloud is not None and not isinstance(cloud, dict):
        raise top.fail("cloud", "expected a mapping (the sync layer's keys) or nothing for an offline agent")
    state_dir = top.path("state_dir", DEFAULT_STATE_DIR)
    assert state_dir is not None
    return AgentConfig(
        source=source,
        profile=profile,
        controller=overrides,
        backend=backend,
        simulated=simulated,
        wav=wav,
        state_dir=state_dir,
        checkpoint_interval_s=top.number("checkpoint_interval_s", 60.0, 1.0, 86400.0),
        telemetry_interval_s=top.number("telemetry_interval_s", 1.0, 0.1, 3600.0),
        log_level=top.choice("log_level", "info", LOG_LEVELS),
        realtime_priority=top.integer("realtime_priority", 70, 0, 99),
        safety=SafetyOptions(
            enabled=safety_r.boolean("enabled", True), hold_s=safety_r.number("hold_s", 5.0, 0.5, 600.0)
        ),
        offload_features=features_r.boolean("offload", False),
        cloud=dict(cloud) if cloud else None,
    )


def load_config(path: str | Path) -> AgentConfig:
    """Read and parse the configuration file; ConfigError names the file on any problem."""
    source = Path(path)
    return parse_config(read_yaml(source, ConfigError), source)
