"""`anc-agent bench --quick --json` as a user runs it: one JSON object with every row and its peers."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from agent.bench.cases import standard_cases

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def quick_json(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    plot_dir = tmp_path_factory.mktemp("bench-out")
    proc = subprocess.run(
        [sys.executable, "-m", "agent.cli", "bench", "--quick", "--json", "--plot-dir", str(plot_dir)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one JSON line, got {len(lines)}: {proc.stdout[:500]}"
    result = json.loads(lines[0])
    result["_plot_dir"] = str(plot_dir)
    return result


def _positive(value: object) -> bool:
    return isinstance(value, (int, float)) and value > 0


def test_quick_json_has_one_row_per_case_with_positive_figures(quick_json: dict[str, Any]) -> None:
    rows = quick_json["rows"]
    assert [(r["kernel"], r["taps"]) for r in rows] == [(c.kernel, c.taps) for c in standard_cases()]
    for row in rows:
        assert {"kernel", "taps", "samples_per_s", "x_realtime_48k", "peers"} <= row.keys()
        if row["samples_per_s"] is not None:
            assert _positive(row["samples_per_s"]) and _positive(row["x_realtime_48k"])
            assert _positive(row["wall_samples_per_s"]) and 0 < row["cpu_share"] <= 1
            assert row["x_realtime_48k"] == pytest.approx(row["samples_per_s"] / 48_000)


def test_every_peer_figure_is_positive_and_ratio_is_ours_over_peer(quick_json: dict[str, Any]) -> None:
    assert "ours" in quick_json["ratio_definition"]
    seen = set()
    for row in quick_json["rows"]:
        for name, peer in row["peers"].items():
            assert "unavailable" not in peer, f"{row['label']}: {name}: {peer}"
            assert _positive(peer["samples_per_s"]) and _positive(peer["x_realtime_48k"])
            seen.add(name)
            if row["samples_per_s"] is not None:
                assert peer["ratio"] == pytest.approx(row["samples_per_s"] / peer["samples_per_s"])
    assert {"c", "padasip", "pyroomacoustics"} <= seen


def test_every_cross_checked_peer_agrees_with_our_kernel(quick_json: dict[str, Any]) -> None:
    checked = [
        (row["label"], name, peer)
        for row in quick_json["rows"]
        for name, peer in row["peers"].items()
        if "max_rel_diff" in peer
    ]
    assert checked, "no kernel was cross-checked against a peer"
    for label, name, peer in checked:
        assert peer["agrees"], (
            f"{label} disagrees with {name}: max relative difference {peer['max_rel_diff']}"
        )


def test_targets_are_reported_with_a_verdict(quick_json: dict[str, Any]) -> None:
    names = [t["name"] for t in quick_json["targets"]]
    assert len(names) == 4
    assert {t["status"] for t in quick_json["targets"]} <= {"PASS", "FAIL", "NOT MEASURED"}
    machine = quick_json["machine"]
    assert machine["quick"] is True and machine["cores"] >= 1 and machine["c_flags"].startswith("-O3")


def test_learning_curves_are_written_as_png_with_figures_per_algorithm(quick_json: dict[str, Any]) -> None:
    curves = quick_json["learning_curves"]
    assert "unavailable" not in curves, curves.get("unavailable")
    figure = Path(curves["figure"])
    assert figure.parent == Path(quick_json["_plot_dir"])
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for plant, per_algorithm in curves["plants"].items():
        assert set(per_algorithm) == {"fxnlms", "fxrls", "hybrid"}, plant
        assert all(f["identification_s"] > 0 for f in per_algorithm.values())
        best_db = max(f["attenuation_db"] or -math.inf for f in per_algorithm.values())
        assert best_db > 3.0, f"{plant}: no algorithm attenuates the noise: {per_algorithm}"
