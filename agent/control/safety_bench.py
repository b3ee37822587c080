"""Benchmark of the emergency-sound detector on the synthetic labelled scenes of `agent.control.scenes`.

`run(seed, minutes)` measures, on every emergency kind over every background at every SNR, the share
detected within DEADLINE_S of the onset (the engine must be in pass-through by then) and at all, the
share given the right label, the decision latency p50/p95, the false alarms per hour over `minutes`
of emergency-free audio (backgrounds alone and distractors over backgrounds), and the detector's CPU time
per 16 ms frame (thread time in `SafetyDetector.process`, feature extraction included). `python -m
agent.control.safety_bench [--seed N] [--minutes M] [--rate HZ]` prints the figures as JSON.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from agent.control.safety import Detection, SafetyDetector
from agent.control.scenes import (
    BACKGROUNDS,
    DISTRACTORS,
    EMERGENCY_KINDS,
    SNRS_DB,
    Scene,
    emergency_scene,
    negative_scene,
)

DEADLINE_S = 0.3
BLOCK = 2048  # samples handed to the detector at a time, as the daemon's ring buffer would
NEGATIVE_CLIP_S = 60.0


class _Clock:
    """Detector time (s, process time of this thread) and frames processed, summed over scenes."""

    seconds: float = 0.0
    frames: int = 0


def detect_scene(scene: Scene, hold_s: float = 5.0, block: int = BLOCK) -> list[Detection]:
    """Every event the detector emits over `scene`, fed block by block, then ended at the end of the scene."""
    detector = SafetyDetector(scene.sample_rate_hz, hold_s=hold_s)
    events: list[Detection] = []
    t0 = time.thread_time()
    for start in range(0, scene.samples.shape[0], block):
        events.extend(detector.process(scene.samples[start : start + block]))
    _Clock.seconds += time.thread_time() - t0
    _Clock.frames += max(0, round((scene.duration_s - detector.frame_s) / detector.hop_s) + 1)
    return events + detector.finish()


@dataclass(frozen=True, slots=True)
class Outcome:
    """How the detector did on one emergency scene."""

    scene: str
    kind: str
    snr_db: float
    latency_s: float | None  # decision time minus true onset; None when never detected during the event
    label_ok: bool
    early_false_alarms: int  # onsets before the true onset

    @property
    def in_time(self) -> bool:
        return self.latency_s is not None and self.latency_s <= DEADLINE_S


def score_emergency(scene: Scene, events: list[Detection]) -> Outcome:
    """Match the first onset decided during the emergency (or one decided before and still active at its
    onset: latency 0) to the truth; onsets decided before the true onset count as early false alarms."""
    truth = scene.events[0]
    onsets = [e for e in events if e.end_s is None]
    ended_at = {(e.label, e.onset_s): e.detected_s for e in events if e.end_s is not None}
    early = [e for e in onsets if e.detected_s < truth.onset_s]
    still_active = [e for e in early if ended_at.get((e.label, e.onset_s), np.inf) >= truth.onset_s]
    during = [e for e in onsets if truth.onset_s <= e.detected_s <= truth.end_s + 0.5]
    snr_db = float(scene.snr_db or 0.0)
    if still_active:
        labels = {e.label for e in still_active + during[:1]}
        return Outcome(scene.name, scene.kind, snr_db, 0.0, truth.label in labels, len(early))
    if not during:
        return Outcome(scene.name, scene.kind, snr_db, None, False, len(early))
    labels = {e.label for e in during[:2]}
    return Outcome(
        scene.name,
        scene.kind,
        snr_db,
        during[0].detected_s - truth.onset_s,
        truth.label in labels,
        len(early),
    )


def run(seed: int = 0, minutes: float = 60.0, sample_rate_hz: int = 16000) -> dict:
    """Measure the detector; returns the figures (see the module docstring) as a JSON-ready dict."""
    t0 = time.perf_counter()
    _Clock.seconds, _Clock.frames = 0.0, 0
    outcomes = [
        score_emergency(scene, detect_scene(scene))
        for kind in EMERGENCY_KINDS
        for background in BACKGROUNDS
        for snr in SNRS_DB
        for scene in [emergency_scene(kind, background, snr, sample_rate_hz, seed)]
    ]
    negative_kinds = BACKGROUNDS + DISTRACTORS
    clips = max(1, round(minutes * 60.0 / NEGATIVE_CLIP_S))
    false_alarms: dict[str, int] = defaultdict(int)
    false_alarm_scenes: list[str] = []
    negative_s = 0.0
    for i in range(clips):
        kind = negative_kinds[i % len(negative_kinds)]
        background = BACKGROUNDS[(i // len(negative_kinds)) % len(BACKGROUNDS)]
        snr = SNRS_DB[(i // (len(negative_kinds) * len(BACKGROUNDS))) % len(SNRS_DB)]
        scene = negative_scene(kind, sample_rate_hz, seed * 100003 + i, NEGATIVE_CLIP_S, background, snr)
        onsets = [e for e in detect_scene(scene) if e.end_s is None]
        negative_s += scene.duration_s
        false_alarms[kind] += len(onsets)
        if onsets:
            false_alarm_scenes.append(
                f"{scene.name}: " + ", ".join(f"{e.label}@{e.onset_s:.2f}" for e in onsets)
            )

    def share(selected: list[Outcome], test: str) -> float:
        if not selected:
            return float("nan")
        ok = [
            o.in_time if test == "in_time" else o.latency_s is not None if test == "any" else o.label_ok
            for o in selected
        ]
        return round(float(np.mean(ok)), 4)

    strong = [o for o in outcomes if o.snr_db >= 0]
    sirens_alarms = [o for o in strong if EMERGENCY_KINDS[o.kind] in ("siren", "alarm")]
    latencies = np.array([o.latency_s for o in outcomes if o.latency_s is not None])
    hours = negative_s / 3600.0
    return {
        "sample_rate_hz": sample_rate_hz,
        "seed": seed,
        "emergency_scenes": len(outcomes),
        "detected_within_300ms_snr_ge_0db": share(strong, "in_time"),
        "sirens_alarms_within_300ms_snr_ge_0db": share(sirens_alarms, "in_time"),
        "within_300ms_by_snr_db": {
            f"{s:+g}": share([o for o in outcomes if o.snr_db == s], "in_time") for s in SNRS_DB
        },
        "detected_by_snr_db": {
            f"{s:+g}": share([o for o in outcomes if o.snr_db == s], "any") for s in SNRS_DB
        },
        "label_correct_by_snr_db": {
            f"{s:+g}": share([o for o in outcomes if o.snr_db == s], "label") for s in SNRS_DB
        },
        "within_300ms_by_kind_snr_ge_0db": {
            k: share([o for o in strong if o.kind == k], "in_time") for k in EMERGENCY_KINDS
        },
        "latency_ms_p50": round(1000 * float(np.percentile(latencies, 50)), 1) if latencies.size else None,
        "latency_ms_p95": round(1000 * float(np.percentile(latencies, 95)), 1) if latencies.size else None,
        "false_alarms_before_onset": int(sum(o.early_false_alarms for o in outcomes)),
        "negative_audio_h": round(hours, 3),
        "false_alarms_per_h": round(sum(false_alarms.values()) / hours, 2),
        "false_alarms_by_kind": dict(false_alarms),
        "false_alarm_scenes": false_alarm_scenes[:20],
        "missed_in_time": [o.scene for o in strong if not o.in_time][:30],
        "detector_cpu_ms_per_frame": round(1000 * _Clock.seconds / max(_Clock.frames, 1), 3),
        "run_s": round(time.perf_counter() - t0, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--minutes", type=float, default=60.0, help="minutes of emergency-free audio")
    parser.add_argument("--rate", type=int, default=16000, help="sample rate, Hz")
    args = parser.parse_args()
    print(json.dumps(run(args.seed, args.minutes, args.rate), indent=2))


if __name__ == "__main__":
    main()
