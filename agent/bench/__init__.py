"""`anc-agent bench`: how fast our kernels run, next to peers timed in the same run, and how well they learn.

Method (what is timed, what is not)
- Inputs (`signals`) are made once, deterministically: white noise plus a tone as the reference, a
  32-tap plant's output as the desired signal, and for the filtered-x kernels an independent error
  signal (they are timed open loop, so no plant simulation is inside the timed call) and a secondary
  path estimate of a bulk delay (two blocks + converters) plus a 128-tap FIR.
- Every implementation of a kernel gets the same inputs, block size (64), filter length and
  parameters (`cases`). Before any figure is trusted, a fresh instance of each peer is cross-checked
  against ours on the same input: the largest difference of outputs and coefficients, relative to
  ours, must stay below 1e-6 (`suite.AGREEMENT_RTOL`); the table prints it on every peer line.
- Timed (`harness.measure`): only the processing call, after one untimed warm-up call (numba JIT and
  the C build happen before). Each measurement repeats the call until it has lasted at least 1 s
  (0.05 s with --quick); the best of 3 measurements (2 with --quick) is kept. One thread: the
  command pins BLAS and numba to one thread before numpy is imported. The clock is the calling
  thread's CPU time, so other processes competing for the cores (a shared build machine) do not
  count against a kernel; the wall-clock rate and the CPU share are reported next to it.
- Ours (`agent.dsp`) is called per 64-sample block from Python, as the audio callback calls it, so
  its figure includes the per-block call overhead the device pays. The C reference
  (`reference.c`, built with `cc -O3 -march=native`) loops over the blocks inside C: the strictest
  yardstick. padasip and pyroomacoustics run per sample in Python; they get shorter chunks and
  shorter measurements, and report samples/s like the rest.
- `x real time` is samples/s divided by 48 000; `ratio` is ours / the peer's samples/s (above 1:
  ours is faster). The targets (FxNLMS 256/128 >= 150x real time and within 1.3x of C's time,
  hybrid >= 30x, RLS 32 >= 40x) are printed PASS/FAIL; the command exits 0 either way.
- Learning curves (`learning`): the full controller through `agent.sim.run.simulate` (its own
  secondary-path identification, then control) on the simulated plants, compared with the same noise
  uncontrolled; written as a PNG. `--soak` adds ten minutes of simulated time per algorithm and
  noise (`soak`, on the constant-memory loop in `closedloop`).

Modules: `cases` (what is measured), `signals` (inputs), `implementations` (ours and the peers behind
one interface), `creference` + `reference.c` (the C peer), `harness` (timing, machine description),
`suite` (runs and cross-checks everything), `report` (the table), `closedloop`, `learning`, `soak`.
"""
