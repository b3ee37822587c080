"""The audio callback allocates nothing and raises nothing, called directly and through real PortAudio.

`agent.service.bench.callback_figures` runs the engine with a real Controller for thousands of blocks
and measures, under tracemalloc, the memory still held that was allocated with engine, ring or dsp code
on the stack (tracemalloc sees every thread, so this covers PortAudio's callback thread), and the change
in live numba NRT allocations. The PortAudio run happens in a subprocess whose ALSA default device is the
`null` PCM (tests/support/alsa.py), so PortAudio is loaded with that configuration.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from agent.audio.base import StreamStatus
from agent.audio.rings import C_UNEXPECTED
from agent.dsp.secondary_path import SecondaryPathIdentifier
from agent.engine import STAGE_IDENTIFY, Engine, Stage
from agent.profiles import load_profile
from agent.service.bench import callback_figures, net_allocations
from agent.sim.plant import AcousticPlant
from tests.support.alsa import null_alsa_env, run_python


def _assert_clean(fig: dict, min_blocks: int) -> None:
    assert fig["blocks_allocation_checked"] >= min_blocks
    assert fig["net_allocations"] == 0, fig
    assert fig["net_allocated_bytes"] == 0, fig
    assert fig["nrt_live_change"] == 0, fig
    assert fig["callback_faults"] == 0, fig
    assert fig["blocks_timed"] >= min_blocks
    assert 0 < fig["callback_us_p50"] <= fig["callback_us_p99"]


def test_direct_callback_with_the_controller_allocates_nothing() -> None:
    fig = callback_figures("vehicle-cabin-48k", "fxnlms", 256, blocks=4000, portaudio=False)
    _assert_clean(fig, 1000)


def test_direct_callback_with_the_hybrid_controller_allocates_nothing() -> None:
    fig = callback_figures("headphone-ff-48k", "hybrid", 256, blocks=4000, portaudio=False)
    _assert_clean(fig, 1000)


def test_callback_during_identification_allocates_nothing() -> None:
    profile = load_profile("hvac-duct-16k")
    engine = Engine(profile)
    engine.install(Stage(SecondaryPathIdentifier(profile), STAGE_IDENTIFY))
    plant = AcousticPlant(profile)
    B = profile.audio.block_size
    indata = np.zeros((B, profile.channels.input_channels), dtype=np.float32)
    outdata = np.zeros((B, profile.channels.output_channels), dtype=np.float32)
    status = StreamStatus()

    def blocks(n: int) -> None:
        for _ in range(n):
            engine.callback(indata, outdata, B, None, status)
            plant.step(outdata, indata)

    blocks(300)  # past the small-int cache: the identifier counts blocks in Python ints
    count, size, nrt = net_allocations(lambda: blocks(1000))
    assert (count, size, nrt) == (0, 0, 0)
    assert engine.counter(C_UNEXPECTED) == 0


def test_callback_through_portaudio_on_alsa_null_allocates_nothing(tmp_path: Path) -> None:
    code = (
        "import json\n"
        "from agent.service.bench import callback_figures\n"
        "fig = callback_figures('vehicle-cabin-48k', 'fxnlms', 256, blocks=6000, portaudio=True)\n"
        "print(json.dumps(fig))\n"
    )
    proc = run_python(code, null_alsa_env(tmp_path))
    assert proc.returncode == 0, proc.stderr
    fig = json.loads(proc.stdout.strip().splitlines()[-1])
    assert fig["path"] == "portaudio-alsa-null"
    _assert_clean(fig, 1000)
    assert fig["stream_latency_s"][0] > 0 and fig["stream_latency_s"][1] > 0
