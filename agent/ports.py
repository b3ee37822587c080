"""The seams between the agent's actors.

The audio engine and its control thread live in `agent/engine.py` and `agent/service/`; the cloud sync
layer lives in `agent/sync/`. Neither reaches into the other's state: the daemon hands the sync layer a
`ControlPort` (commands inbound), and the sync layer hands the daemon an `Uplink` (records outbound).
Both sides must return quickly: they are called from the other actor's thread.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np


class ControlPort(Protocol):
    """What the cloud may ask of the running engine (implemented by the daemon)."""

    def apply_settings(self, desired: dict[str, Any]) -> dict[str, Any]:
        """Validate `desired` (shadow names: mode, algorithm, mu, taps, leakage, rls_taps, rls_lambda,
        telemetry_interval_s, offload) against the profile and apply it between blocks.

        Returns the full applied settings. Raises ValueError naming the field and the allowed values
        when any value is rejected; then nothing is applied and the running values stay.
        """
        ...

    def current_settings(self) -> dict[str, Any]:
        """The applied settings, in the same names as `apply_settings` takes."""
        ...

    def status(self) -> dict[str, Any]:
        """Agent version, profile name, mode, attenuation estimate, uptime: for the reported state."""
        ...

    def coefficients(self) -> dict[str, np.ndarray]:
        """A copy of the adaptive state (for the coefficients shadow)."""
        ...

    def load_coefficients(self, coefficients: dict[str, np.ndarray]) -> None:
        """Install a coefficient set pushed by the cloud; ValueError naming the key on a mismatch."""
        ...

    def command(self, command: dict[str, Any]) -> None:
        """A cloud command (`anc/T/commands`): emergency pass-through, classification, capture request.
        ValueError naming the field on a malformed command."""
        ...


class Uplink(Protocol):
    """Where the control thread sends records for the cloud (implemented by the sync layer).

    Calls never block on the network: the sync layer spools and sends on its own thread.
    """

    def telemetry(self, record: dict[str, Any]) -> None: ...

    def event(self, record: dict[str, Any]) -> None: ...

    def features(self, record: dict[str, Any]) -> None: ...


class NullUplink:
    """The uplink of an agent with no cloud configured: records are dropped (ANC needs no network)."""

    def telemetry(self, record: dict[str, Any]) -> None:
        return None

    def event(self, record: dict[str, Any]) -> None:
        return None

    def features(self, record: dict[str, Any]) -> None:
        return None
