"""The agent's tunables by their shadow names, validated against the profile's bounds.

`AgentSettings` joins the Controller's settings (`agent.dsp.controller.ControllerSettings`, whose
`from_profile` owns the bounds checks) with the two tunables the controller does not know:
`telemetry_interval_s` and `offload` (send log-mel frames to the cloud). `merge_desired` is the single
place a desired document (shadow delta, config file overrides, SIGHUP reload) becomes new settings: every
key is checked, the result is complete and valid or a ValueError names the field (by its shadow name,
first in the message: `mu: 3.0 is outside [0.0001, 1] for profile hvac-duct-16k`) and the allowed
values, and nothing changes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from agent.dsp.controller import (
    ALGORITHMS,
    MODE_ANC,
    MODE_OFF,
    MODE_PASSTHROUGH,
    ControllerSettings,
)
from agent.profiles import Profile

MODE_BY_NAME: dict[str, int] = {"anc": MODE_ANC, "passthrough": MODE_PASSTHROUGH, "off": MODE_OFF}
MODE_NAMES: dict[int, str] = {v: k for k, v in MODE_BY_NAME.items()}
CONTROLLER_KEYS = ("mode", "algorithm", "taps", "mu", "leakage", "rls_taps", "rls_lambda")
SHADOW_KEYS = (*CONTROLLER_KEYS, "telemetry_interval_s", "offload")
TELEMETRY_INTERVAL_RANGE_S = (0.1, 3600.0)
_INTEGER_KEYS = ("taps", "rls_taps")
_FLOAT_KEYS = ("mu", "leakage", "rls_lambda")


@dataclass(frozen=True)
class AgentSettings:
    controller: ControllerSettings
    telemetry_interval_s: float = 1.0
    offload: bool = False

    @property
    def mode_name(self) -> str:
        return MODE_NAMES[self.controller.mode]

    def to_shadow(self) -> dict[str, Any]:
        """The settings in shadow names (what `ControlPort.current_settings` returns)."""
        c = self.controller
        return {
            "mode": MODE_NAMES[c.mode],
            "algorithm": c.algorithm,
            "taps": int(c.taps),
            "mu": float(c.mu),
            "leakage": float(c.leakage),
            "rls_taps": int(c.rls_taps),
            "rls_lambda": float(c.rls_lambda),
            "telemetry_interval_s": float(self.telemetry_interval_s),
            "offload": bool(self.offload),
        }


def default_settings(
    profile: Profile, telemetry_interval_s: float = 1.0, offload: bool = False
) -> AgentSettings:
    return AgentSettings(ControllerSettings.from_profile(profile), telemetry_interval_s, offload)


def merge_desired(profile: Profile, current: AgentSettings, desired: Mapping[str, Any]) -> AgentSettings:
    """`current` with the keys of `desired` applied, all validated; ValueError names field and range."""
    if not isinstance(desired, Mapping):
        raise ValueError(
            f"settings: expected a mapping of shadow names to values (allowed keys: {SHADOW_KEYS})"
        )
    unknown = sorted(str(k) for k in desired if k not in SHADOW_KEYS)
    if unknown:
        raise ValueError(f"{unknown[0]}: unknown setting (allowed keys: {', '.join(SHADOW_KEYS)})")
    where = f"for profile {profile.name}"
    overrides: dict[str, Any] = {}
    for key, value in desired.items():
        if key == "mode":
            if value not in MODE_BY_NAME:
                raise ValueError(
                    f"mode: {value!r} is not allowed (allowed values: {', '.join(MODE_BY_NAME)})"
                )
            overrides["mode"] = MODE_BY_NAME[value]
        elif key == "algorithm":
            if value not in ALGORITHMS:
                raise ValueError(
                    f"algorithm: {value!r} is not allowed (allowed values: {', '.join(ALGORITHMS)})"
                )
            overrides["algorithm"] = value
        elif key in _INTEGER_KEYS:
            bounds = getattr(profile.controller, key)
            if isinstance(value, bool) or not isinstance(value, int | float) or value != int(value):
                raise ValueError(
                    f"{key}: {value!r} is not an integer (allowed: an integer in {bounds.describe()} {where})"
                )
            overrides[key] = int(value)
        elif key in _FLOAT_KEYS:
            bounds = getattr(profile.controller, key)
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                raise ValueError(f"{key}: {value!r} is not a number (allowed: {bounds.describe()} {where})")
            overrides[key] = float(value)
    telemetry_interval_s = current.telemetry_interval_s
    if "telemetry_interval_s" in desired:
        value = desired["telemetry_interval_s"]
        lo, hi = TELEMETRY_INTERVAL_RANGE_S
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
            or not lo <= value <= hi
        ):
            raise ValueError(f"telemetry_interval_s: {value!r} is outside [{lo:g}, {hi:g}]")
        telemetry_interval_s = float(value)
    offload = current.offload
    if "offload" in desired:
        if not isinstance(desired["offload"], bool):
            raise ValueError(f"offload: {desired['offload']!r} is not allowed (allowed values: true, false)")
        offload = desired["offload"]
    base = {
        "algorithm": current.controller.algorithm,
        "taps": current.controller.taps,
        "mu": current.controller.mu,
        "leakage": current.controller.leakage,
        "rls_taps": current.controller.rls_taps,
        "rls_lambda": current.controller.rls_lambda,
        "mode": current.controller.mode,
    }
    base.update(overrides)
    try:
        controller = ControllerSettings.from_profile(profile, **base)
    except ValueError as exc:  # the Controller names fields "controller.<key>"; shadow names are bare
        raise ValueError(str(exc).removeprefix("controller.")) from None
    return replace(current, controller=controller, telemetry_interval_s=telemetry_interval_s, offload=offload)
