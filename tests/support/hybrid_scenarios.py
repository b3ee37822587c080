"""Attenuation over time of the three algorithms on two simulated loops (the figures in docs/hybrid.md).

Run: `.venv/bin/python -m tests.support.hybrid_scenarios [mu]` from the repository root (about a minute).
The true secondary path (loop delay included) is handed to the controller so the algorithms alone are
compared; the sensor noise at the error mic (-80 dBFS) sets the floor.
"""

from __future__ import annotations

import sys

import numpy as np
from scipy.signal import butter, lfilter

from agent.dsp.controller import M_MIX_WEIGHT, Controller, ControllerSettings
from agent.dsp.secondary_path import SecondaryPath
from agent.profiles import load_profile
from tests.support.anc_plant import ProfileLoop, decaying_fir, tone

SECONDS = 6.0
WINDOWS_S = (0.05, 0.25, 0.5, 1.0, 2.0, 4.0, 5.5)


def scenario(name: str, mu: float | None) -> None:
    profile = load_profile(name)
    fs = profile.audio.sample_rate_hz
    n_ch = profile.channels.controllers
    rng = np.random.default_rng(5)
    if name.startswith("hvac"):
        b, a = butter(2, [100 / (fs / 2), 500 / (fs / 2)], "band")
        noise = lfilter(b, a, rng.standard_normal(round(SECONDS * fs)))
        refs = (0.1 * noise / np.std(noise))[None, :]
        primaries = [decaying_fir(rng, 140, 128, 30.0)]
        secondaries = [decaying_fir(rng, 14, 64, 12.0)]
    else:
        refs = np.array([tone(150, fs, SECONDS) + tone(410, fs, SECONDS, 0.05) for _ in range(n_ch)])
        primaries = [decaying_fir(rng, 12, 64, 10.0) for _ in range(n_ch)]
        secondaries = [decaying_fir(rng, 2, 48, 8.0) for _ in range(n_ch)]
    loop_delay = 2 * profile.audio.block_size + profile.converter_delay_samples
    paths = [
        SecondaryPath.from_impulse_response(
            np.concatenate([np.zeros(loop_delay), s]), profile.controller.secondary_path_taps
        )
        for s in secondaries
    ]
    overrides = {} if mu is None else {"mu": mu}
    print(
        f"{name}, mu={mu if mu is not None else profile.controller.mu.default}; attenuation dB at", WINDOWS_S
    )
    for algorithm in ("fxnlms", "fxrls", "hybrid"):
        loop = ProfileLoop(profile, refs, primaries, secondaries, 1e-4)
        ctl = Controller(
            profile, paths, ControllerSettings.from_profile(profile, algorithm=algorithm, **overrides)
        )
        errors, dist = loop.run(ctl, loop.blocks)
        att = []
        for start in WINDOWS_S:
            sl = slice(round(start * fs), round((start + 0.25) * fs))
            att.append(10 * np.log10(np.mean(dist[:, sl] ** 2) / np.mean(errors[:, sl] ** 2)))
        row = " ".join(f"{a:6.1f}" for a in att)
        print(f"  {algorithm:7s} {row}   lambda {ctl.metrics[M_MIX_WEIGHT]:.3f}")


def main() -> None:
    mu = float(sys.argv[1]) if len(sys.argv) > 1 else None
    for name in ("headphone-ff-48k", "hvac-duct-16k"):
        scenario(name, mu)


if __name__ == "__main__":
    main()
