"""`anc-agent simulate`: run the device's identification and controller on a simulated acoustic plant.

With no arguments it runs the default profile's built-in plant and default noise for a few seconds
and prints what was achieved (the project's demo). `--json` prints exactly one JSON object instead;
`--plot` writes a PNG. Exit status: 0 when the run completed (divergence is a reported figure, not an
error), 1 when it could not complete (identification failed), 2 on bad arguments
(unknown profile, bad noise spec, unreadable impulse-response file, settings outside the profile bounds).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from agent.profiles import ALGORITHMS, DEFAULT_PROFILE, ProfileError, load_profile
from agent.sim.noise import NOISE_FORMS, NoiseSpecError, make_noise
from agent.sim.paths import AcousticPath, PathFileError, load_path

DEFAULT_SECONDS = 5.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--profile", default=DEFAULT_PROFILE, help=f"profile name or YAML path ({DEFAULT_PROFILE})"
    )
    parser.add_argument(
        "--primary-ir", metavar="F", help="primary-path impulse response, .wav or .npy (every controller)"
    )
    parser.add_argument(
        "--secondary-ir", metavar="F", help="secondary-path impulse response, .wav or .npy (every controller)"
    )
    parser.add_argument("--noise", metavar="SPEC", help=f"{NOISE_FORMS} (default: the profile's)")
    parser.add_argument(
        "--seconds", type=float, default=DEFAULT_SECONDS, help="seconds of control after identification"
    )
    parser.add_argument(
        "--algorithm", choices=ALGORITHMS, help="controller algorithm (default: the profile's)"
    )
    parser.add_argument("--taps", type=int, help="controller FIR taps (default: the profile's)")
    parser.add_argument("--mu", type=float, help="FxNLMS normalised step size (default: the profile's)")
    parser.add_argument("--seed", type=int, default=0, help="identification probe seed")
    parser.add_argument("--json", action="store_true", help="print one JSON object with every figure")
    parser.add_argument("--plot", metavar="PNG", help="write the error spectrum and attenuation curve here")


def _fail(message: str) -> int:
    print(f"anc-agent simulate: {message}", file=sys.stderr)
    return 2


def _path(file: str | None, sample_rate_hz: int) -> AcousticPath | None:
    return None if file is None else load_path(file, sample_rate_hz)


def run(args: argparse.Namespace) -> int:
    try:
        profile = load_profile(args.profile)
        fs = profile.audio.sample_rate_hz
        primary, secondary = _path(args.primary_ir, fs), _path(args.secondary_ir, fs)
        noise = args.noise or profile.simulation.default_noise
        make_noise(noise, profile)  # reject a bad spec before any kernel is compiled
        if not (math.isfinite(args.seconds) and args.seconds > 0):
            raise ValueError(f"--seconds: {args.seconds:g} must be a positive number of seconds")
        if args.plot is not None:
            _check_plot_target(Path(args.plot))
        from agent.dsp.controller import ControllerSettings

        overrides = {k: getattr(args, k) for k in ("algorithm", "taps", "mu") if getattr(args, k) is not None}
        settings = ControllerSettings.from_profile(profile, **overrides)
    except (ProfileError, PathFileError, NoiseSpecError, ValueError) as exc:
        return _fail(str(exc))

    from agent.sim.run import SimulationError, simulate

    try:
        result = simulate(
            profile, seconds=args.seconds, noise_spec=noise, primary=primary, secondary=secondary,
            settings=settings, seed=args.seed,
        )  # fmt: skip
    except SimulationError as exc:
        print(f"anc-agent simulate: {exc}", file=sys.stderr)
        return 1
    if args.plot is not None:
        from agent.sim.plot import write_plot

        write_plot(result, args.plot)
    if args.json:
        print(json.dumps(result.figures(), allow_nan=False))
    else:
        print(summary(result.figures(), args.plot))
    return 0


def _check_plot_target(path: Path) -> None:
    if path.suffix.lower() != ".png":
        raise ValueError(f"--plot: {path} must name a .png file")
    if not path.parent.resolve().is_dir():
        raise ValueError(f"--plot: directory {path.parent} does not exist")
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise ValueError("--plot needs matplotlib (install the 'plot' extra)") from None


def _num(value: float | None, fmt: str, unit: str = "") -> str:
    return "n/a" if value is None else f"{value:{fmt}}{unit}"


def _stability(f: dict) -> str:
    if not f["diverged"]:
        return "stable (the divergence guard never tripped)"
    if f["divergence_count"] == 0:
        return "DIVERGED (non-finite error signal)"
    recovered = f["attenuation_db"] is not None and f["attenuation_db"] > 0
    return (
        f"DIVERGED: the divergence guard tripped {f['divergence_count']} times "
        f"(first at {f['first_divergence_s']:.3f} s); "
        + ("recovered since" if recovered else "did not recover")
    )


def summary(f: dict, plot: str | None) -> str:
    """A readable account of the figures of one run (the dict from SimulationResult.figures())."""
    converged = (
        f"converged after {f['convergence_s']:.2f} s"
        if f["convergence_s"] is not None
        else "did not converge"
    )
    share = f["callback_share_p99_pct"]
    lines = [
        f"ANC simulation: profile {f['profile']} ({f['sample_rate_hz']} Hz, "
        f"{f['block_size']}-sample blocks), noise {f['noise']}, "
        f"algorithm {f['algorithm']} ({f['taps']} taps, mu {f['mu']:g})",
        f"  secondary path  identified in {f['identification_s']:.2f} s, "
        f"model error {_num(f['secondary_path_error_db'], '.1f', ' dB')}",
        f"  attenuation     {_num(f['attenuation_db'], '.1f', ' dB')} at the error mic "
        f"(last {f['attenuation_window_s']:g} s of {f['seconds']:g} s of control); {converged}",
        f"  callback time   p50 {f['callback_us_p50']:.1f} us, p99 {f['callback_us_p99']:.1f} us "
        f"(CPU p99 {f['callback_cpu_us_p99']:.1f} us) of a {f['block_period_us']:.1f} us block "
        f"({_num(share, '.1f', ' %')} at p99), {f['x_realtime']:.0f}x faster than real time",
        f"  causality       margin {f['causality_margin_ms']:.2f} ms "
        f"(loop delay {f['electronic_delay_ms']:.2f} ms; paths: primary {f['primary_ir']}, "
        f"secondary {f['secondary_ir']})",
    ]
    lines.append("  stability       " + _stability(f))
    lines += [f"  warning: {w}" for w in f["warnings"]]
    if plot:
        lines.append(f"  plot written to {plot}")
    return "\n".join(lines)
