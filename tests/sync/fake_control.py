"""An in-test ControlPort: the daemon's contract (validate against the profile, all or nothing) over plain
dicts, recording every change so tests can prove what reached the engine."""

from __future__ import annotations

import math
import threading
from functools import cache
from typing import Any

import numpy as np

from agent.profiles import ALGORITHMS, Profile, load_profile

MODES = ("anc", "passthrough", "off")
COMMAND_TYPES = ("emergency_passthrough", "classification", "capture")


@cache
def _default_profile() -> Profile:
    return load_profile()


class FakeControl:
    def __init__(
        self, profile: Profile | None = None, coefficient_shapes: dict[str, tuple[int, ...]] | None = None
    ):
        self.profile = profile or _default_profile()
        c = self.profile.controller
        self.settings: dict[str, Any] = {
            "mode": "anc",
            "algorithm": c.algorithm,
            "mu": c.mu.default,
            "taps": int(c.taps.default),
            "leakage": c.leakage.default,
            "rls_taps": int(c.rls_taps.default),
            "rls_lambda": c.rls_lambda.default,
            "telemetry_interval_s": 1.0,
            "offload": False,
        }
        shapes = coefficient_shapes or {"w": (2, 64)}
        rng = np.random.default_rng(0)
        self.coeffs: dict[str, np.ndarray] = {
            k: (0.01 * rng.standard_normal(s)).astype(np.float32) for k, s in shapes.items()
        }
        self.applied: list[dict[str, Any]] = []
        self.loaded: list[dict[str, np.ndarray]] = []
        self.commands: list[dict[str, Any]] = []
        self._lock = threading.RLock()

    def _check(self, key: str, value: Any) -> None:
        c = self.profile.controller
        if key == "mode":
            if value not in MODES:
                raise ValueError(f"mode: {value!r} is not allowed (allowed values: {', '.join(MODES)})")
        elif key == "algorithm":
            if value not in ALGORITHMS:
                raise ValueError(
                    f"algorithm: {value!r} is not allowed (allowed values: {', '.join(ALGORITHMS)})"
                )
        elif key == "offload":
            if not isinstance(value, bool):
                raise ValueError(f"offload: {value!r} is not allowed (allowed values: true, false)")
        elif key == "telemetry_interval_s":
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0.1 <= value <= 3600:
                raise ValueError(f"telemetry_interval_s: {value!r} is outside [0.1, 3600]")
        elif key in ("taps", "rls_taps", "mu", "leakage", "rls_lambda"):
            b = getattr(c, key)
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                raise ValueError(f"{key}: {value!r} is not a number (allowed: {b.describe()})")
            if key in ("taps", "rls_taps") and value != int(value):
                raise ValueError(f"{key}: {value!r} is not an integer (allowed: {b.describe()})")
            if not b.contains(value):
                raise ValueError(
                    f"{key}: {value!r} is outside {b.describe()} for profile {self.profile.name}"
                )
        else:
            raise ValueError(f"{key}: unknown setting")

    def valid(self, key: str, value: Any) -> bool:
        try:
            self._check(key, value)
        except ValueError:
            return False
        return True

    def apply_settings(self, desired: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            for key, value in desired.items():
                self._check(key, value)
            self.settings.update(desired)
            self.applied.append(dict(desired))
            return dict(self.settings)

    def current_settings(self) -> dict[str, Any]:
        with self._lock:
            return dict(self.settings)

    def status(self) -> dict[str, Any]:
        return {
            "agent_version": "0.1.0",
            "profile": self.profile.name,
            "mode": self.settings["mode"],
            "attenuation_db": 12.5,
            "uptime_s": 3.0,
        }

    def coefficients(self) -> dict[str, np.ndarray]:
        with self._lock:
            return {k: v.copy() for k, v in self.coeffs.items()}

    def load_coefficients(self, coefficients: dict[str, np.ndarray]) -> None:
        with self._lock:
            for key, value in coefficients.items():
                if key not in self.coeffs or value.shape != self.coeffs[key].shape:
                    raise ValueError(f"{key}: does not match the engine")
            self.coeffs = {k: np.asarray(v, dtype=np.float32).copy() for k, v in coefficients.items()}
            self.loaded.append(self.coefficients())

    def command(self, command: dict[str, Any]) -> None:
        kind = command.get("type")
        if kind not in COMMAND_TYPES:
            raise ValueError(f"type: {kind!r} is not allowed (allowed values: {', '.join(COMMAND_TYPES)})")
        with self._lock:
            self.commands.append(dict(command))
