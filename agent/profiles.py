"""Firmware profiles: the hardware facts and safe tuning bounds of one hardware model.

A profile is a YAML file in `firmware_profiles/` checked against
`firmware_profiles/profile.schema.json`, then against the rules a schema cannot say
(defaults inside their bounds, channel indices inside the channel counts). Everything
that reaches the engine later (config file overrides, shadow desired values) is checked
against the bounds held here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError

from agent.timing import AudioFormat

PROFILE_DIR = Path(__file__).resolve().parent.parent / "firmware_profiles"
SCHEMA_PATH = PROFILE_DIR / "profile.schema.json"
DEFAULT_PROFILE = "headphone-ff-48k"
ALGORITHMS = ("fxnlms", "fxrls", "hybrid")


class ProfileError(ValueError):
    """A profile that cannot be used; the message names the file, the field and what is allowed."""


@dataclass(frozen=True, slots=True)
class Bounds:
    """An allowed closed range and the value used when nothing else is asked for."""

    min: float
    max: float
    default: float

    def contains(self, value: float) -> bool:
        return self.min <= value <= self.max

    def describe(self) -> str:
        return f"[{self.min:g}, {self.max:g}]"


@dataclass(frozen=True, slots=True)
class ChannelMap:
    """Which hardware channels each controller uses; controller c pairs the c-th entries."""

    input_channels: int
    output_channels: int
    reference_mics: tuple[int, ...]
    error_mics: tuple[int, ...]
    speakers: tuple[int, ...]

    @property
    def controllers(self) -> int:
        return len(self.speakers)


@dataclass(frozen=True, slots=True)
class ControllerBounds:
    algorithm: str
    taps: Bounds
    mu: Bounds
    leakage: Bounds
    rls_taps: Bounds
    rls_lambda: Bounds
    secondary_path_taps: int
    probe_level_dbfs: float
    probe_s: float


@dataclass(frozen=True, slots=True)
class SimulatedPlant:
    """The built-in acoustic plant standing in for this hardware model."""

    primary_delay_ms: float
    secondary_delay_ms: float
    reverb_ms: float
    seed: int
    default_noise: str
    noise_level_dbfs: float


@dataclass(frozen=True, slots=True)
class Profile:
    name: str
    description: str
    source: Path
    audio: AudioFormat
    input_device: str | int | None
    output_device: str | int | None
    latency: str | float
    converter_delay_samples: int
    channels: ChannelMap
    controller: ControllerBounds
    output_limit_dbfs: float
    cpu_budget_pct: float
    simulation: SimulatedPlant
    engine_orders: tuple[float, ...] = ()
    rpm_range: tuple[float, float] | None = None


@cache
def _validator() -> Draft202012Validator:
    schema = json.loads(SCHEMA_PATH.read_text())
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def _field_path(error: ValidationError) -> str:
    path = ".".join(str(p) for p in error.absolute_path)
    return path or "(top level)"


def _allowed(error: ValidationError) -> str:
    """What the schema would have accepted at the failing place, in words."""
    schema = error.schema if isinstance(error.schema, dict) else {}
    if error.validator == "additionalProperties":
        return "allowed keys: " + ", ".join(sorted(schema.get("properties", {})))
    if error.validator == "required":
        return "required keys: " + ", ".join(schema.get("required", []))
    if "enum" in schema:
        return "allowed values: " + ", ".join(str(v) for v in schema["enum"])
    parts = []
    for key, word in (
        ("minimum", ">="),
        ("exclusiveMinimum", ">"),
        ("maximum", "<="),
        ("exclusiveMaximum", "<"),
    ):
        if key in schema:
            parts.append(f"{word} {schema[key]}")
    if "type" in schema:
        parts.insert(0, f"type {schema['type']}")
    if "pattern" in schema:
        parts.append(f"matching {schema['pattern']}")
    return "allowed: " + " ".join(parts) if parts else ""


def _fail(source: Path, field: str, message: str) -> ProfileError:
    return ProfileError(f"{source}: {field}: {message}")


def _bounds(source: Path, field: str, raw: dict[str, float]) -> Bounds:
    b = Bounds(float(raw["min"]), float(raw["max"]), float(raw["default"]))
    if b.min > b.max:
        raise _fail(source, f"{field}.min", f"{b.min:g} is above max {b.max:g}")
    if not b.contains(b.default):
        raise _fail(source, f"{field}.default", f"{b.default:g} is outside {b.describe()}")
    return b


def parse_profile(data: Any, source: Path) -> Profile:
    """Turn a loaded YAML document into a Profile, or raise ProfileError naming the field."""
    if not isinstance(data, dict):
        raise _fail(source, "(top level)", "a profile is a mapping of keys to values")
    errors = sorted(_validator().iter_errors(data), key=lambda e: list(e.absolute_path))
    if errors:
        err = errors[0]
        allowed = _allowed(err)
        raise _fail(source, _field_path(err), err.message + (f" ({allowed})" if allowed else ""))

    audio, ch, ctl, sim = data["audio"], data["channels"], data["controller"], data["simulation"]
    channels = ChannelMap(
        input_channels=ch["input_channels"],
        output_channels=ch["output_channels"],
        reference_mics=tuple(ch["reference_mics"]),
        error_mics=tuple(ch["error_mics"]),
        speakers=tuple(ch["speakers"]),
    )
    n = channels.controllers
    for key, limit in (
        ("reference_mics", channels.input_channels),
        ("error_mics", channels.input_channels),
        ("speakers", channels.output_channels),
    ):
        values: tuple[int, ...] = getattr(channels, key)
        if len(values) != n:
            raise _fail(
                source,
                f"channels.{key}",
                f"has {len(values)} entries; one per speaker ({n}) is required",
            )
        bad = [v for v in values if v >= limit]
        if bad:
            allowed = f"allowed 0..{limit - 1}"
            raise _fail(source, f"channels.{key}", f"channel {bad[0]} does not exist ({allowed})")
    if set(channels.reference_mics) & set(channels.error_mics):
        raise _fail(source, "channels.error_mics", "an error mic cannot also be a reference mic")

    controller = ControllerBounds(
        algorithm=ctl["algorithm"],
        taps=_bounds(source, "controller.taps", ctl["taps"]),
        mu=_bounds(source, "controller.mu", ctl["mu"]),
        leakage=_bounds(source, "controller.leakage", ctl["leakage"]),
        rls_taps=_bounds(source, "controller.rls_taps", ctl["rls_taps"]),
        rls_lambda=_bounds(source, "controller.rls_lambda", ctl["rls_lambda"]),
        secondary_path_taps=ctl["secondary_path_taps"],
        probe_level_dbfs=float(ctl["probe_level_dbfs"]),
        probe_s=float(ctl["probe_s"]),
    )
    if controller.mu.max > 2.0 or controller.mu.min <= 0:
        raise _fail(source, "controller.mu", "NLMS is stable only for 0 < mu < 2")
    if not (controller.rls_lambda.min >= 0.9 and controller.rls_lambda.max <= 1.0):
        raise _fail(source, "controller.rls_lambda", "forgetting factor must lie in [0.9, 1.0]")
    if controller.leakage.min < 0 or controller.leakage.max >= 1:
        raise _fail(source, "controller.leakage", "leakage must lie in [0, 1)")

    rpm = data.get("rpm_range")
    if rpm is not None and rpm[0] >= rpm[1]:
        raise _fail(source, "rpm_range", f"{rpm[0]:g} must be below {rpm[1]:g}")

    return Profile(
        name=data["name"],
        description=data["description"],
        source=source,
        audio=AudioFormat(audio["sample_rate_hz"], audio["block_size"]),
        input_device=audio.get("input_device"),
        output_device=audio.get("output_device"),
        latency=audio.get("latency", "low"),
        converter_delay_samples=audio["converter_delay_samples"],
        channels=channels,
        controller=controller,
        output_limit_dbfs=float(data["output_limit_dbfs"]),
        cpu_budget_pct=float(data["cpu_budget_pct"]),
        simulation=SimulatedPlant(
            primary_delay_ms=float(sim["primary_delay_ms"]),
            secondary_delay_ms=float(sim["secondary_delay_ms"]),
            reverb_ms=float(sim.get("reverb_ms", 5.0)),
            seed=int(sim.get("seed", 0)),
            default_noise=sim["default_noise"],
            noise_level_dbfs=float(sim.get("noise_level_dbfs", -20.0)),
        ),
        engine_orders=tuple(float(o) for o in data.get("engine_orders", ())),
        rpm_range=(float(rpm[0]), float(rpm[1])) if rpm is not None else None,
    )


def load_profile(name_or_path: str | Path = DEFAULT_PROFILE) -> Profile:
    """Load a profile by name (a file in `firmware_profiles/`) or by path."""
    path = Path(name_or_path)
    if path.suffix not in (".yaml", ".yml"):
        path = PROFILE_DIR / f"{name_or_path}.yaml"
        if not path.exists():
            raise ProfileError(
                f"{name_or_path}: no such profile (available: {', '.join(available_profiles())})"
            )
    return parse_profile(read_yaml(path, ProfileError), path)


def read_yaml(path: Path, error: type[ValueError]) -> Any:
    """The YAML document in the file at `path`; `error` naming the file when it cannot be read or parsed."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise error(f"{path}: cannot read: {exc.strerror}") from exc
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise error(f"{path}: not valid YAML: {exc}") from exc


def available_profiles() -> list[str]:
    return sorted(p.stem for p in PROFILE_DIR.glob("*.yaml"))
