"""Fill numba's on-disk cache with every kernel the daemon runs: `python -m agent.service.warmup`.

`scripts/install.sh` runs it as the service user with the service's NUMBA_CACHE_DIR, so the first start
of a freshly installed device loads compiled kernels instead of compiling them (about a minute on a
small board) while identification waits. Safe to run again: cached kernels just load.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from agent.profiles import available_profiles, load_profile


def warm_profile(name: str) -> float:
    """Compile (or load) the engine, identifier and controller kernels for profile `name`; seconds taken."""
    from agent.dsp.controller import Controller, ControllerSettings
    from agent.dsp.secondary_path import SecondaryPath, SecondaryPathIdentifier
    from agent.engine import Engine

    t0 = time.perf_counter()
    profile = load_profile(name)
    ch = profile.channels
    indata = np.zeros((profile.audio.block_size, ch.input_channels), dtype=np.float32)
    outdata = np.zeros((profile.audio.block_size, ch.output_channels), dtype=np.float32)
    Engine(profile)
    SecondaryPathIdentifier(profile).process(indata, outdata)
    fir = np.zeros(profile.controller.secondary_path_taps)
    fir[0] = 1.0
    secondary = [SecondaryPath(0, fir) for _ in range(ch.controllers)]
    Controller(profile, secondary, ControllerSettings.from_profile(profile)).process(indata, outdata)
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m agent.service.warmup", description=__doc__.splitlines()[0]
    )
    parser.add_argument("profiles", nargs="*", help="profile names (default: every profile)")
    args = parser.parse_args(argv)
    for name in args.profiles or available_profiles():
        print(f"warmup: {name}: kernels ready in {warm_profile(name):.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
