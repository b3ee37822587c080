"""`anc-agent bench`: every kernel against its peers, timed in the same run; the hybrid's learning curves.

How the figures are made (what is timed and what is not) is explained in `agent/bench/__init__.py`.
The run is a report: it exits 0 whether the speed targets pass or fail.
"""

from __future__ import annotations

import os

# Single thread for every library (BLAS inside numpy, numba's pool), set before numpy is imported.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

DEFAULT_PLOT_DIR = Path("bench-out")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = (
        "Figures are samples per second of thread CPU time, best of 3 measurements of at least 1 s each "
        "after a warm-up, one thread, block 64; every peer is cross-checked against our kernel on the same "
        "input first. What is timed and what is not: see agent/bench/__init__.py."
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    parser.add_argument("--quick", action="store_true", help="short measurements (a few seconds in all)")
    parser.add_argument(
        "--soak", action="store_true", help="also run the 10-minute (simulated) no-divergence runs"
    )
    parser.add_argument(
        "--plot-dir",
        type=Path,
        default=DEFAULT_PLOT_DIR,
        help=f"where the learning-curve PNG is written (default {DEFAULT_PLOT_DIR}/)",
    )
    parser.add_argument("--no-plot", action="store_true", help="skip the learning curves")
    parser.add_argument(
        "--soak-s",
        type=_positive_seconds,
        default=600.0,
        metavar="SECONDS",
        help="simulated seconds per soak run (default 600)",
    )


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"--soak-s: {text!r} must be a positive number of seconds")
    return value


def run(args: argparse.Namespace) -> int:
    from agent.bench.report import format_kernel_table
    from agent.bench.suite import run_kernels

    result: dict[str, Any] = run_kernels(quick=args.quick)
    if not args.json:
        print(format_kernel_table(result), flush=True)
    if not args.no_plot:
        from agent.bench.learning import learning_report

        result["learning_curves"] = learning_report(args.plot_dir, quick=args.quick)
        if not args.json:
            print(_describe(result["learning_curves"]), flush=True)
    if args.soak:
        from agent.bench.soak import soak_report

        result["soak"] = soak_report(args.soak_s, progress=None if args.json else sys.stderr)
        if not args.json:
            print(_describe(result["soak"]), flush=True)
    if args.json:
        json.dump(result, sys.stdout, allow_nan=False, default=str)
        sys.stdout.write("\n")
    return 0


def _describe(section: dict[str, Any]) -> str:
    return str(section.get("summary", ""))
