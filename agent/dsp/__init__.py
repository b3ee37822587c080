"""Adaptive-filter kernels and the ANC controller (numba, one call per audio block, no allocation).

- `primitives`: shared per-sample building blocks (dot products, leaky updates, the symmetric RLS step).
- `nlms`, `rls`: system-identification filters (`Nlms`, `Rls`).
- `fxnlms`, `fxrls`, `hybrid`: single-channel ANC controllers (`FxNlms`, `FxRls`, `Hybrid`).
- `secondary_path`: `SecondaryPath` and the start-up `SecondaryPathIdentifier`.
- `guard`, `limiter`: the divergence guard and the output limiter used inside the controller kernel.
- `controller`: the multi-channel `Controller` the audio callback runs (see docs/hybrid.md).
"""
