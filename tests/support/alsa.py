"""ALSA's `null` PCM as the default sound device, for running real PortAudio in tests.

PortAudio reads the ALSA configuration when it is first loaded, so the configuration must be in place
before `sounddevice` is imported. Tests therefore run PortAudio code in a subprocess whose environment
comes from `null_alsa_env`: `ALSA_CONFIG_PATH` points at an asound.conf (written into a temporary
directory) whose default PCM is `null` (accepts and produces silence, unpaced: a callback stream runs
as fast as the CPU allows, which is what a callback-path and processing-time test wants).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

ASOUND_CONF = """\
pcm.!default {
    type null
}
ctl.!default {
    type hw
    card 0
}
"""


def write_asound_conf(directory: Path) -> Path:
    path = Path(directory) / "asound.conf"
    path.write_text(ASOUND_CONF)
    return path


def null_alsa_env(directory: Path, **extra: str) -> dict[str, str]:
    """The current environment plus ALSA_CONFIG_PATH at a null-device asound.conf in `directory`."""
    env = dict(os.environ)
    env["ALSA_CONFIG_PATH"] = str(write_asound_conf(directory))
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env.update(extra)
    return env


def run_python(code: str, env: dict[str, str], timeout_s: float = 120.0) -> subprocess.CompletedProcess[str]:
    """Run `code` with this interpreter in the repo root; returns the finished process (text output)."""
    return subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=REPO, capture_output=True, text=True, timeout=timeout_s
    )
