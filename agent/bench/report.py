"""The benchmark's human-readable table: one line per implementation of each kernel, then the targets."""

from __future__ import annotations

from typing import Any

PEER_NAMES = {
    "ours": "ours (numba, per block)",
    "c": "C -O3 (loop in C)",
    "padasip": "padasip",
    "pyroomacoustics": "pyroomacoustics",
}


def _rate(samples_per_s: float) -> str:
    for scale, unit in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if samples_per_s >= scale:
            return f"{samples_per_s / scale:7.2f} {unit}"
    return f"{samples_per_s:7.1f}  "


def format_machine(machine: dict[str, Any]) -> str:
    keys = ("cpu", "cores", "load_avg_1m", "python", "numpy", "numba", "c_compiler", "c_flags", "time_utc")
    return "machine: " + ", ".join(f"{k}={machine[k]}" for k in keys if machine.get(k) is not None)


def format_kernel_table(result: dict[str, Any]) -> str:
    """The rows of `agent.bench.suite.run_kernels` as a fixed-width table."""
    lines = [
        format_machine(result["machine"]),
        f"block {result['block_size']} samples; x RT = samples/s / {result['sample_rate_hz']}; "
        f"{result['ratio_definition']}; agreement: max relative difference <= {result['agreement_rtol']:g}",
        "samples/s per second of thread CPU time; cpu% = CPU / wall time of the best measurement "
        "(below ~90%: other processes competed for the cores)",
        "one call: our kernel handed the whole chunk at once; call overhead = the per-block cost of calling "
        "it from Python (a short diagnostic measurement: values within about 1 us of zero are noise)",
        "",
        f"{'kernel':<26}{'implementation':<26}{'samples/s':>12}{'x RT':>10}{'cpu%':>6}{'ours/peer':>11}"
        "  check",
    ]
    for row in result["rows"]:
        label = row["label"]
        if row["samples_per_s"] is None:
            lines.append(f"{label:<26}{PEER_NAMES['ours']:<26}  unavailable: {row.get('error', '')}")
        else:
            lines.append(
                f"{label:<26}{PEER_NAMES['ours']:<26}{_rate(row['samples_per_s']):>12}"
                f"{row['x_realtime_48k']:>9.1f}x{100 * row['cpu_share']:>6.0f}"
                f"{'':<13}one call: {_rate(row['one_call_samples_per_s']).strip()}/s, "
                f"call overhead {row['call_overhead_us_per_block']:.2f} us/block"
            )
        for peer, fig in row["peers"].items():
            name = PEER_NAMES.get(peer, peer)
            if "unavailable" in fig:
                lines.append(f"{'':<26}{name:<26}  unavailable: {fig['unavailable']}")
                continue
            ratio = f"{fig['ratio']:>10.2f}x" if "ratio" in fig else f"{'':>11}"
            check = ""
            if "max_rel_diff" in fig:
                verdict = "agrees" if fig["agrees"] else "DIFFERS"
                diff = fig["max_rel_diff"]
                check = f"  {verdict} (max rel diff {'non-finite' if diff is None else f'{diff:.1e}'})"
            lines.append(
                f"{'':<26}{name:<26}{_rate(fig['samples_per_s']):>12}{fig['x_realtime_48k']:>9.1f}x"
                f"{100 * fig['cpu_share']:>6.0f}{ratio}{check}"
            )
    lines.append("")
    lines.append(format_targets(result["targets"]))
    return "\n".join(line.rstrip() for line in lines)


def format_targets(targets: list[dict[str, Any]]) -> str:
    lines = ["targets:"]
    for t in targets:
        value = "-" if t["value"] is None else f"{t['value']:.2f}"
        lines.append(f"  {t['status']:<13}{t['name']:<45} measured {value}")
    return "\n".join(lines)
