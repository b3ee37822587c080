"""`anc-agent detect FILE.wav...`: run the on-device emergency-sound detector over recordings.

Each file is read (mono or its first channel; PCM 8/16/24/32-bit or float; any rate, resampled to the
analysis rate), fed to the same `SafetyDetector` the daemon runs, block by block, and its detections are
printed. A file that cannot be read gives one line on stderr naming it; the other files are still processed
and the exit status is 1.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

import numpy as np

from agent.control.safety import DEFAULT_HOLD_S, Detection, SafetyDetector

BLOCK = 512  # samples per detector call, as the daemon's ring buffer hands them over
RATES_HZ = (16000, 48000)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("files", nargs="+", metavar="FILE.wav", help="WAV recordings to scan")
    parser.add_argument("--json", action="store_true", help="print one JSON list, one object per file")
    parser.add_argument(
        "--hold",
        type=float,
        default=DEFAULT_HOLD_S,
        metavar="S",
        help="seconds without evidence before an end",
    )
    parser.add_argument(
        "--rate",
        type=int,
        default=RATES_HZ[0],
        choices=RATES_HZ,
        help="analysis sample rate, Hz (16000 as on the HVAC profile, 48000 as on the headphone)",
    )


def detect_samples(samples: np.ndarray, sample_rate_hz: int, hold_s: float) -> list[Detection]:
    """Finished detections of a whole recording ((n,) float32 mono), each with its end time."""
    detector = SafetyDetector(sample_rate_hz, hold_s=hold_s)
    events: list[Detection] = []
    for start in range(0, samples.shape[0], BLOCK):
        events.extend(detector.process(samples[start : start + BLOCK]))
    return [e for e in events + detector.finish() if e.end_s is not None]


def read_mono(path: Path, sample_rate_hz: int) -> np.ndarray:
    """The first channel of a WAV file at `sample_rate_hz`, (n,) float32; ValueError naming the file."""
    from agent.sim.wavio import read_wav  # scipy, only when a file is read

    try:
        with warnings.catch_warnings():  # odd chunks are skipped; what cannot be read raises below
            warnings.simplefilter("ignore")
            samples = read_wav(path, sample_rate_hz)
    except (ValueError, OSError, EOFError) as exc:
        message = str(exc)
        raise ValueError(message if str(path) in message else f"{path}: {message}") from exc
    except Exception as exc:  # the WAV parser fails in its own ways on corrupt files; none may stop the rest
        raise ValueError(f"{path}: not a readable WAV file ({type(exc).__name__}: {exc})") from exc
    if not np.all(np.isfinite(samples[:, 0])):
        raise ValueError(f"{path}: holds NaN or infinite samples")
    return np.ascontiguousarray(samples[:, 0], dtype=np.float32)


def run(args: argparse.Namespace) -> int:
    if not 0.0 < args.hold <= 600.0:
        print(f"anc-agent detect: --hold {args.hold:g} is outside (0, 600] seconds", file=sys.stderr)
        return 2
    results = []
    failed = False
    for name in args.files:
        path = Path(name)
        try:
            samples = read_mono(path, args.rate)
        except ValueError as exc:
            print(f"anc-agent detect: {exc}", file=sys.stderr)
            failed = True
            continue
        detections = detect_samples(samples, args.rate, args.hold)
        results.append({"file": name, "detections": [d.to_dict() for d in detections]})
        if not args.json:
            print(f"{name}: {len(detections)} detection(s)")
            for d in detections:
                print(
                    f"  {d.label:<5} onset {d.onset_s:8.3f} s  end {d.end_s:8.3f} s  "
                    f"confidence {d.confidence:.2f}  ({d.pattern})"
                )
    if args.json:
        print(json.dumps(results, indent=2))
    return 1 if failed else 0
