"""The PortAudio backend on ALSA's null device (in a subprocess, so PortAudio loads that configuration)."""

from __future__ import annotations

import json
from pathlib import Path

from tests.support.alsa import null_alsa_env, run_python

OPEN_AND_RUN = """
import json, time, dataclasses
import numpy as np
from agent.audio import AudioBackendError, open_backend
from agent.profiles import load_profile

profile = load_profile("vehicle-cabin-48k")
seen = {"blocks": 0, "shapes": set(), "dtypes": set()}
def callback(indata, outdata, frames, time_info, status):
    seen["blocks"] += 1
    seen["shapes"].add((indata.shape, outdata.shape, frames))
    seen["dtypes"].add((str(indata.dtype), str(outdata.dtype), indata.flags.c_contiguous))
    outdata[:] = 0.0
backend = open_backend("sounddevice", profile)
backend.start(callback)
latency = backend.latency
time.sleep(0.3)
running = backend.running
backend.stop()
bad = dataclasses.replace(profile, input_device="no-such-card")
try:
    open_backend("sounddevice", bad).start(callback)
    error = None
except AudioBackendError as exc:
    error = str(exc)
shapes = [list(map(list, s[:2])) + [s[2]] for s in seen["shapes"]]
print(json.dumps({"blocks": seen["blocks"], "shapes": shapes,
                  "dtypes": sorted(map(list, seen["dtypes"])), "latency": [latency.input_s, latency.output_s],
                  "running": running, "stopped": not backend.running, "error": error}))
"""


def test_duplex_stream_from_the_profile_runs_and_reports_latency(tmp_path: Path) -> None:
    proc = run_python(OPEN_AND_RUN, null_alsa_env(tmp_path))
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["blocks"] > 10 and out["running"] and out["stopped"]
    assert out["shapes"] == [[[64, 3], [64, 2], 64]]  # block size and channel counts of the profile
    assert out["dtypes"] == [["float32", "float32", True]]
    assert out["latency"][0] > 0 and out["latency"][1] > 0
    assert "audio.input_device 'no-such-card'" in out["error"] and "available: 0: default" in out["error"]
