"""Benchmark: bulk-provision N devices (default 1,000) into a temporary fleet home and verify every bundle.

    .venv/bin/python -m provisioning.bench_bulk [--devices 1000] [--keep DIR]

Prints one JSON object: devices, seconds for the bulk run, devices per second, seconds per device, and
the verification figures: every bundle checked by `bundle.verify_bundle` (CA signature, validity, CN =
thing name, key 0600 and matching) and every certificate by one `openssl verify -CAfile` run.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from provisioning import bulk, bundle
from provisioning.home import FleetHome

PASSPHRASE = b"benchmark passphrase"


def run(devices: int, root: Path) -> dict[str, object]:
    home = FleetHome(root / "fleet")
    home.init_ca(PASSPHRASE)
    csv_path = root / "devices.csv"
    csv_path.write_text("serial\n" + "".join(f"BENCH-{i:06d}\n" for i in range(devices)))
    out = root / "bundles"
    ca = home.load_ca(PASSPHRASE)
    rows = bulk.read_csv(csv_path, "headphone-ff-48k")
    start = time.perf_counter()
    summary = bulk.run_bulk(
        home, ca, rows, out, bundle.Endpoint("broker.local", 8883), progress=sys.stderr.isatty()
    )
    bulk_s = time.perf_counter() - start

    ca_pem = home.ca_cert_path.read_bytes()
    start = time.perf_counter()
    verified = sum(1 for row in rows if bundle.verify_bundle(out / row.thing_name, ca_pem))
    verify_s = time.perf_counter() - start
    certs = [str(out / row.thing_name / bundle.CERT_FILE) for row in rows]
    openssl = subprocess.run(
        ["openssl", "verify", "-purpose", "sslclient", "-CAfile", str(home.ca_cert_path), *certs],
        capture_output=True,
        text=True,
    )
    openssl_ok = sum(1 for line in openssl.stdout.splitlines() if line.endswith(": OK"))
    return {
        "devices": devices,
        "provisioned": summary.done,
        "failed": len(summary.failed),
        "bulk_s": round(bulk_s, 2),
        "devices_per_s": round(devices / bulk_s, 1),
        "ms_per_device": round(1000 * bulk_s / devices, 2),
        "bundles_verified": verified,
        "verify_s": round(verify_s, 2),
        "openssl_verify_ok": openssl_ok,
        "openssl_exit_code": openssl.returncode,
        "cpu_count": os.cpu_count(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--keep", type=Path, help="work in this directory and keep it (default: a temp dir)")
    args = parser.parse_args(argv)
    root = args.keep or Path(tempfile.mkdtemp(prefix="anc-bench-bulk-"))
    root.mkdir(parents=True, exist_ok=True)
    try:
        result = run(args.devices, root)
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)
    print(json.dumps(result, indent=2))
    ok = result["bundles_verified"] == result["openssl_verify_ok"] == args.devices and not result["failed"]
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
