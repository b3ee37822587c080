"""What the benchmark measures: each kernel at each filter length, with the parameters they all share.

Every implementation of a case (ours, the C reference, padasip, pyroomacoustics) is built from
the same `Case` and the same `BenchParams`, so the figures compare like with like.
"""

from __future__ import annotations

from dataclasses import dataclass

KERNELS = ("nlms", "fxnlms", "rls", "fxrls", "hybrid")
SECONDARY_TAPS = 128
HYBRID_RLS_TAPS = 32


@dataclass(frozen=True, slots=True)
class BenchParams:
    """Step sizes and forgetting factors used by every implementation (leakage only on filtered-x)."""

    nlms_mu: float = 0.5
    fx_mu: float = 0.05
    eps: float = 1e-8
    leakage: float = 1e-6  # filtered-x kernels; the system-identification rows run without leakage
    lam: float = 0.9995
    delta: float = 1e-2


@dataclass(frozen=True, slots=True)
class Case:
    """One row of the benchmark: a kernel at a filter length."""

    kernel: str
    taps: int
    secondary_taps: int = 0  # filtered-x kernels: taps of the secondary-path FIR estimate
    rls_taps: int = 0  # hybrid: taps of its RLS part

    @property
    def label(self) -> str:
        if self.kernel == "hybrid":
            return f"hybrid {self.taps}+{self.rls_taps} (S {self.secondary_taps})"
        if self.secondary_taps:
            return f"{self.kernel} {self.taps} (S {self.secondary_taps})"
        return f"{self.kernel} {self.taps}"

    @property
    def filtered_x(self) -> bool:
        return self.kernel in ("fxnlms", "fxrls", "hybrid")


def standard_cases() -> list[Case]:
    """NLMS and FxNLMS at 64/256/1024 taps, RLS and FxRLS at 16/32/64, hybrid 256 FxNLMS + 32 RLS."""
    cases = [Case("nlms", n) for n in (64, 256, 1024)]
    cases += [Case("fxnlms", n, SECONDARY_TAPS) for n in (64, 256, 1024)]
    cases += [Case("rls", n) for n in (16, 32, 64)]
    cases += [Case("fxrls", n, SECONDARY_TAPS) for n in (16, 32, 64)]
    cases.append(Case("hybrid", 256, SECONDARY_TAPS, HYBRID_RLS_TAPS))
    return cases
