"""The control thread's view of the safety rule: never cancel a siren, an alarm or a horn.

Feeds the reference-mic samples drained from the engine's ring to the log-mel `FeatureExtractor` and the
local `SafetyDetector` (`agent/control/`), and keeps the pass-through override:
- a detection (or a cloud `passthrough` command) sets the override at once; the control thread then
  switches the Controller to pass-through (the switch happens at the next block boundary);
- the override ends only when the detector has seen nothing for its hold time and any commanded hold has
  run out, or when a `resume` command clears it.
Times are stream times (seconds of audio since the engine started), so latency is measured the way the
listener hears it. Finished log-mel frames are also kept for the feature offload.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

log = logging.getLogger(__name__)


@dataclass
class OverrideChange:
    """A change of the pass-through override: `active` True when it starts, False when it ends."""

    active: bool
    reason: str  # "detection", "command", "resume", "hold_elapsed"
    label: str | None
    onset_s: float | None
    stream_s: float
    confidence: float | None = None
    detected_s: float | None = None  # stream time the detector decided (detections only)

    def to_event(self) -> dict[str, Any]:
        return {
            "type": "emergency" if self.active else "emergency_end",
            "reason": self.reason,
            "label": self.label,
            "onset_s": None if self.onset_s is None else round(self.onset_s, 3),
            "stream_s": round(self.stream_s, 3),
            "confidence": None if self.confidence is None else round(float(self.confidence), 3),
            "detected_s": None if self.detected_s is None else round(self.detected_s, 3),
            "action": "passthrough" if self.active else "resume",
        }


class SafetyMonitor:
    """Features + detector + override state (see module docstring)."""

    def __init__(
        self, sample_rate_hz: int, hold_s: float, enabled: bool = True, keep_frames: int = 256
    ) -> None:
        from agent.control.features import FeatureExtractor
        from agent.control.safety import SafetyDetector

        self.sample_rate_hz = sample_rate_hz
        self.hold_s = hold_s
        self.enabled = enabled
        self.detector: SafetyDetector | None = None
        if enabled:
            self.detector = SafetyDetector(sample_rate_hz, hold_s=hold_s)
            self.features = self.detector.make_extractor()
        else:
            self.features = FeatureExtractor(sample_rate_hz)
        self.samples_seen = 0
        self.override = False
        self.override_label: str | None = None
        self.command_until_s = -1.0
        self._kept: list[np.ndarray] = []
        self._keep_frames = keep_frames
        self.detections = 0

    @property
    def stream_s(self) -> float:
        return self.samples_seen / self.sample_rate_hz

    def push(self, samples: np.ndarray) -> list[OverrideChange]:
        """Feed (n,) float32 reference samples; returns the override changes this caused."""
        self.samples_seen += int(samples.shape[0])
        changes: list[OverrideChange] = []
        if samples.shape[0] == 0:
            return self._check_end(changes)
        n = self.features.push(samples)
        if n == 0:
            return self._check_end(changes)
        frames_db = self.features.frames_db
        self._kept.append(frames_db.copy())
        if sum(f.shape[0] for f in self._kept) > self._keep_frames:
            self._kept = [np.concatenate(self._kept)[-self._keep_frames :]]
        if self.detector is not None:
            events = self.detector.update(self.features.power)
            for ev in events:
                if getattr(ev, "end_s", None) is None and not self.override:
                    self.override, self.override_label = True, ev.label
                    self.detections += 1
                    changes.append(
                        OverrideChange(
                            True,
                            "detection",
                            ev.label,
                            ev.onset_s,
                            self.stream_s,
                            ev.confidence,
                            ev.detected_s,
                        )
                    )
        return self._check_end(changes)

    def _check_end(self, changes: list[OverrideChange]) -> list[OverrideChange]:
        detecting = self.detector is not None and bool(self.detector.active)
        if self.override and not detecting and self.stream_s >= self.command_until_s and not changes:
            self.override = False
            changes.append(OverrideChange(False, "hold_elapsed", self.override_label, None, self.stream_s))
            self.override_label = None
        return changes

    def command_passthrough(self, hold_s: float, label: str | None) -> OverrideChange | None:
        """A cloud-confirmed emergency: pass through for at least `hold_s` seconds of audio."""
        self.command_until_s = max(self.command_until_s, self.stream_s + hold_s)
        if self.override:
            return None
        self.override, self.override_label = True, label
        return OverrideChange(True, "command", label, None, self.stream_s)

    def command_resume(self) -> OverrideChange | None:
        """Clear the override now (the detector's current detection, if any, is acknowledged)."""
        self.command_until_s = -1.0
        if not self.override:
            return None
        self.override = False
        change = OverrideChange(False, "resume", self.override_label, None, self.stream_s)
        self.override_label = None
        return change

    def take_frames(self) -> np.ndarray:
        """(n, n_mels) float32 log-mel frames (dB) finished since the last call (at most keep_frames)."""
        if not self._kept:
            return np.zeros((0, self.features.n_mels), dtype=np.float32)
        out = np.concatenate(self._kept)
        self._kept = []
        return out
