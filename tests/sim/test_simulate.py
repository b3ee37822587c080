"""`anc-agent simulate` end to end: one JSON object, tonal noise cancelled, a PNG, exit 2 on bad args."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from agent.cli import main
from agent.profiles import load_profile
from agent.sim.paths import built_in_path

REPO = Path(__file__).resolve().parents[2]
FIGURES = {
    "attenuation_db",
    "convergence_s",
    "secondary_path_error_db",
    "callback_us_p50",
    "callback_us_p99",
    "block_period_us",
    "x_realtime",
    "diverged",
}
SETTINGS = {"profile", "algorithm", "noise", "seconds", "sample_rate_hz", "block_size", "taps", "mu"}
SETTINGS |= {"leakage", "rls_taps", "rls_lambda", "causality_margin_ms", "warnings"}


@pytest.fixture(scope="module")
def json_run(tmp_path_factory) -> tuple[subprocess.CompletedProcess, Path]:
    """`anc-agent simulate --json --plot` on the default profile, as a separate process."""
    png = tmp_path_factory.mktemp("plot") / "run.png"
    proc = subprocess.run(
        [sys.executable, "-m", "agent.cli", "simulate", "--json", "--seconds", "2", "--plot", str(png)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=240,
    )
    return proc, png


def test_json_run_prints_exactly_one_object_with_every_figure_and_setting(json_run):
    proc, _ = json_run
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1
    figures = json.loads(lines[0])
    assert set(figures) >= FIGURES | SETTINGS
    profile = load_profile("headphone-ff-48k")
    assert figures["profile"] == profile.name
    assert figures["noise"] == profile.simulation.default_noise
    assert figures["seconds"] == 2.0
    assert figures["block_period_us"] == pytest.approx(profile.audio.block_period_us)
    assert figures["causality_margin_ms"] < 0
    assert any("causality margin" in w for w in figures["warnings"])


def test_default_run_attenuates_tonal_noise(json_run):
    figures = json.loads(json_run[0].stdout)
    assert isinstance(figures["diverged"], bool)
    assert figures["attenuation_db"] > 10.0
    assert figures["convergence_s"] is not None and 0 < figures["convergence_s"] < figures["seconds"]
    assert figures["secondary_path_error_db"] < -10.0
    assert 0 < figures["callback_us_p50"] <= figures["callback_us_p99"]
    assert figures["x_realtime"] > 0


def test_plot_is_a_png_image(json_run):
    _, png = json_run
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    import matplotlib.image

    image = matplotlib.image.imread(png)
    assert image.shape[0] > 100 and image.shape[1] > 100


def test_readable_summary_on_the_duct_with_impulse_response_files(tmp_path, capsys):
    profile = load_profile("hvac-duct-16k")
    primary, secondary = tmp_path / "primary.npy", tmp_path / "secondary.npy"
    np.save(primary, built_in_path(profile, "primary").ir)
    np.save(secondary, built_in_path(profile, "secondary").ir)
    argv = ["simulate", "--profile", "hvac-duct-16k", "--seconds", "2", "--noise", "tonal:200"]
    code = main([*argv, "--primary-ir", str(primary), "--secondary-ir", str(secondary)])
    out = capsys.readouterr().out
    assert code == 0
    assert "attenuation" in out and "dB" in out
    assert str(primary) in out and str(secondary) in out
    assert "warning: causality" not in out  # the duct leaves time to act


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--profile", "no-such-device"], "no-such-device: no such profile"),
        (["--noise", "pink"], "accepted: tonal:HZ"),
        (["--primary-ir", "/nonexistent/ir.npy"], "/nonexistent/ir.npy: no such impulse-response file"),
        (["--seconds", "0"], "--seconds"),
        (["--mu", "7"], "mu"),
        (["--plot", "/nonexistent/dir/out.png"], "does not exist"),
    ],
)
def test_bad_arguments_exit_2_with_a_one_line_message(argv, expected, capsys):
    assert main(["simulate", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert expected in err


def test_unknown_algorithm_is_refused_by_the_parser(capsys):
    with pytest.raises(SystemExit) as info:
        main(["simulate", "--algorithm", "lms"])
    assert info.value.code == 2
    assert "fxnlms" in capsys.readouterr().err
