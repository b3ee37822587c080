"""Bulk provisioning: issue and bundle every device listed in a CSV, resumably.

CSV rows are `serial[,profile]` (a first row `serial,profile` is a header; blank lines and lines starting
with `#` are skipped). Each device gets its certificate in the fleet home and its bundle in
`<out>/<thing_name>/`. Progress goes to `<out>/.bulk-state.jsonl`, one fsync-ed JSON line per finished
device; a re-run skips the devices listed there, and a device issued but not yet bundled (interrupted
between the two steps) is bundled from the fleet home without being issued again. Every row is checked
before any work starts, so a bad CSV changes nothing.
"""

from __future__ import annotations

import csv
import json
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from provisioning import bundle, naming, pki
from provisioning.errors import BadInputError, ProvisionError
from provisioning.home import FleetHome

STATE_FILE = ".bulk-state.jsonl"


@dataclass(frozen=True)
class BulkRow:
    line: int
    serial: str
    thing_name: str
    profile: str


def read_csv(path: Path, default_profile: str) -> list[BulkRow]:
    """Parse and validate the whole CSV; BadInputError listing every bad row (line numbers 1-based)."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise BadInputError(f"csv: cannot read {path}: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise BadInputError(f"csv: {path} is not UTF-8 text ({exc.reason})") from exc
    rows: list[BulkRow] = []
    errors: list[str] = []
    seen: dict[str, int] = {}
    for number, cells in enumerate(csv.reader(text.splitlines()), start=1):
        cells = [c.strip() for c in cells]
        if not cells or not any(cells) or cells[0].startswith("#"):
            continue
        if number == 1 and cells[0].lower() == "serial":
            continue
        if len(cells) > 2:
            errors.append(f"line {number}: {len(cells)} columns (allowed: serial[,profile])")
            continue
        profile = cells[1] if len(cells) == 2 and cells[1] else default_profile
        try:
            thing_name = naming.thing_name_from_serial(cells[0])
            bundle.validate_profile(profile)
        except (naming.InvalidNameError, BadInputError) as exc:
            errors.append(f"line {number}: {exc}")
            continue
        if thing_name in seen:
            errors.append(
                f"line {number}: serial {cells[0]!r} repeats line {seen[thing_name]} (same thing name)"
            )
            continue
        seen[thing_name] = number
        rows.append(BulkRow(number, cells[0], thing_name, profile))
    if errors:
        shown = "\n  ".join(errors[:20]) + (
            f"\n  ... and {len(errors) - 20} more" if len(errors) > 20 else ""
        )
        raise BadInputError(f"csv: {path}: {len(errors)} bad row(s), nothing done:\n  {shown}")
    if not rows:
        raise BadInputError(f"csv: {path}: no device rows")
    return rows


@dataclass
class BulkSummary:
    total: int = 0
    done: int = 0
    skipped: int = 0
    failed: dict[str, str] = field(default_factory=dict)  # thing name -> error
    elapsed_s: float = 0.0
    state_file: str = ""
    out: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "total": self.total,
            "done": self.done,
            "skipped": self.skipped,
            "failed": self.failed,
            "elapsed_s": round(self.elapsed_s, 3),
            "state_file": self.state_file,
            "out": self.out,
        }

    def text(self) -> str:
        lines = [
            f"bulk: {self.total} devices: {self.done} provisioned, {self.skipped} already done, "
            f"{len(self.failed)} failed in {self.elapsed_s:.1f} s; bundles in {self.out}"
        ]
        lines += [f"  failed {name}: {error}" for name, error in self.failed.items()]
        return "\n".join(lines)


class ProgressBar:
    """A one-line text progress bar on a terminal-like stream (stderr), redrawn at most 10 times a second."""

    def __init__(self, total: int, stream: TextIO | None = None, width: int = 30) -> None:
        self.total = max(total, 1)
        self.stream = stream if stream is not None else sys.stderr
        self.width = width
        self.start = time.monotonic()
        self._last_draw = 0.0

    def update(self, count: int, *, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_draw < 0.1:
            return
        self._last_draw = now
        filled = int(self.width * count / self.total)
        rate = count / max(now - self.start, 1e-9)
        bar = "#" * filled + "-" * (self.width - filled)
        self.stream.write(f"\r[{bar}] {count}/{self.total} ({rate:.1f}/s)")
        self.stream.flush()

    def close(self, count: int) -> None:
        self.update(count, force=True)
        self.stream.write("\n")
        self.stream.flush()


def read_state(path: Path) -> set[str]:
    """Thing names recorded as done in the state file (a torn last line is ignored)."""
    done: set[str] = set()
    if not path.exists():
        return done
    for line in path.read_text().splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict) and entry.get("status") == "done":
            done.add(str(entry.get("thing_name")))
    return done


def _append_state(fd: int, entry: dict[str, Any]) -> None:
    os.write(fd, (json.dumps(entry, sort_keys=True) + "\n").encode())
    os.fsync(fd)


def run_bulk(
    home: FleetHome,
    ca: pki.CertificateAuthority,
    rows: Sequence[BulkRow],
    out: Path,
    endpoint: bundle.Endpoint,
    *,
    root_ca_pem: bytes | None = None,
    progress: bool = True,
) -> BulkSummary:
    """Issue + bundle every row not yet done; per-device failures are recorded and the run goes on."""
    out.mkdir(parents=True, exist_ok=True)
    state_path = out / STATE_FILE
    done = read_state(state_path)
    summary = BulkSummary(total=len(rows), state_file=str(state_path), out=str(out))
    bar = ProgressBar(len(rows)) if progress else None
    start = time.monotonic()
    fd = os.open(state_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644)
    try:
        for index, row in enumerate(rows, start=1):
            if row.thing_name in done:
                summary.skipped += 1
            else:
                try:
                    if not home.has_device(row.thing_name):
                        home.issue_device(ca, row.thing_name, serial=row.serial, profile=row.profile)
                    target = out / row.thing_name
                    bundle.bundle_device(
                        home,
                        row.thing_name,
                        target,
                        endpoint,
                        row.profile,
                        root_ca_pem=root_ca_pem,
                        force=True,
                    )
                    _append_state(fd, {"thing_name": row.thing_name, "serial": row.serial, "status": "done"})
                    summary.done += 1
                except (ProvisionError, pki.PkiError, OSError) as exc:
                    summary.failed[row.thing_name] = str(exc)
            if bar is not None:
                bar.update(index)
    finally:
        os.close(fd)
        summary.elapsed_s = time.monotonic() - start
        if bar is not None:
            bar.close(summary.done + summary.skipped + len(summary.failed))
    return summary
