"""Bulk provisioning from a CSV: every bundle verifies, a re-run resumes, a bad CSV changes nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from provisioning import bulk, bundle
from provisioning.home import FleetHome
from tests.support.pki import RunCli


def _bulk(run_cli: RunCli, fleet: Path, csv_path: Path, out: Path, passphrase_file: Path) -> tuple[int, dict]:
    return run_cli(
        "--home", fleet, "bulk", csv_path, "--out", out, "--endpoint", "broker.local:8883",
        "--profile", "headphone-ff-48k", "--passphrase-file", passphrase_file,
    )  # fmt: skip


def test_bulk_of_twenty_devices_writes_bundles_that_verify_against_the_ca(
    fleet: Path, passphrase_file: Path, tmp_path: Path, run_cli: RunCli
) -> None:
    csv_path = tmp_path / "devices.csv"
    rows = ["serial,profile"] + [f"SN-{i:04d}" + (",hvac-duct-16k" if i % 5 == 0 else "") for i in range(20)]
    csv_path.write_text("\n".join(rows) + "\n")
    out = tmp_path / "bundles"
    code, summary = _bulk(run_cli, fleet, csv_path, out, passphrase_file)
    assert code == 0, summary
    assert (summary["total"], summary["done"], summary["skipped"], summary["failed"]) == (20, 20, 0, {})
    ca_pem = (fleet / "ca" / "ca.pem").read_bytes()
    for i in range(20):
        thing = f"anc-sn-{i:04d}"
        assert bundle.verify_bundle(out / thing, ca_pem)["thing_name"] == thing
    assert "profile: hvac-duct-16k" in (out / "anc-sn-0005" / "agent.yaml").read_text()
    assert "profile: headphone-ff-48k" in (out / "anc-sn-0001" / "agent.yaml").read_text()


def test_rerun_skips_done_devices_and_finishes_an_interrupted_one(
    fleet: Path, passphrase_file: Path, tmp_path: Path, run_cli: RunCli
) -> None:
    csv_path = tmp_path / "devices.csv"
    csv_path.write_text("SN-A\nSN-B\nSN-C\n")
    out = tmp_path / "bundles"
    assert _bulk(run_cli, fleet, csv_path, out, passphrase_file)[0] == 0
    # Simulate an interruption after SN-C was issued but before its bundle and state line were written.
    state = out / bulk.STATE_FILE
    lines = state.read_text().splitlines()
    state.write_text("\n".join(line for line in lines if "anc-sn-c" not in line) + "\n")
    for path in (out / "anc-sn-c").iterdir():
        path.unlink()
    (out / "anc-sn-c").rmdir()
    cert_before = (fleet / "devices" / "anc-sn-c" / "device.crt").read_bytes()
    code, summary = _bulk(run_cli, fleet, csv_path, out, passphrase_file)
    assert code == 0
    assert (summary["done"], summary["skipped"]) == (1, 2)
    assert (fleet / "devices" / "anc-sn-c" / "device.crt").read_bytes() == cert_before  # not issued again
    assert bundle.verify_bundle(out / "anc-sn-c", (fleet / "ca" / "ca.pem").read_bytes())
    assert len([json.loads(line) for line in state.read_text().splitlines()]) == 3


def test_bad_rows_are_all_reported_and_nothing_is_issued(
    fleet: Path, passphrase_file: Path, tmp_path: Path, run_cli: RunCli
) -> None:
    csv_path = tmp_path / "devices.csv"
    csv_path.write_text("SN-1\nSN 2\nSN-3,toaster\nSN-1\nSN-4,a,b\n")
    code, result = _bulk(run_cli, fleet, csv_path, tmp_path / "out", passphrase_file)
    assert code == 2
    message = result["error"]["message"]
    for fragment in ("line 2", "line 3", "toaster", "line 4", "repeats line 1", "line 5"):
        assert fragment in message
    assert not (fleet / "devices").exists()
    assert not (tmp_path / "out").exists()


def test_progress_bar_reaches_the_total(tmp_path: Path) -> None:
    stream = tmp_path / "progress.txt"
    with stream.open("w") as handle:
        bar = bulk.ProgressBar(4, stream=handle)
        for i in range(1, 5):
            bar.update(i)
        bar.close(4)
    assert "4/4" in stream.read_text()


def test_bulk_run_with_progress_writes_to_stderr(
    fleet: Path, passphrase_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    home = FleetHome(fleet)
    rows = bulk.read_csv(_csv(tmp_path, ["SN-P1", "SN-P2"]), "headphone-ff-48k")
    ca = home.load_ca(passphrase_file.read_text().strip().encode())
    summary = bulk.run_bulk(home, ca, rows, tmp_path / "out", bundle.Endpoint("h"), progress=True)
    assert summary.done == 2
    assert "2/2" in capsys.readouterr().err


def _csv(tmp_path: Path, serials: list[str]) -> Path:
    path = tmp_path / "d.csv"
    path.write_text("\n".join(serials) + "\n")
    return path
