"""The C reference kernels (`reference.c`): compiled on the spot, called through ctypes.

The shared library is built with the system C compiler (`cc -O3 -march=native -shared -fPIC`)
into a cache directory keyed by a hash of the source, the flags and the compiler version, so
a second run (or a parallel test) reuses it; the build writes to a temporary name and renames,
so concurrent builds never see a half-written file.

Each class mirrors one numba kernel of `agent/dsp` and owns the same state (coefficients,
newest-first history buffers, running energy, RLS inverse correlation matrix):
`process(...)` runs one block through ctypes, `run(...)` runs a whole signal with the loop over
blocks inside C, which is what the benchmark times (no per-block Python or ctypes overhead).
All arrays are float64 C-contiguous; signal lengths passed to `run` are whole blocks.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import subprocess
import tempfile
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

SOURCE_PATH = Path(__file__).with_name("reference.c")
CFLAGS = ("-O3", "-march=native", "-shared", "-fPIC")
LDLIBS = ("-lm",)

_dptr = ctypes.POINTER(ctypes.c_double)
_int = ctypes.c_int
_dbl = ctypes.c_double


class CompilerError(RuntimeError):
    """No usable C compiler, or the reference did not compile; the message carries its output."""


def compiler() -> str:
    """The system C compiler: $CC if set, else the first of cc, gcc, clang on PATH."""
    for name in (os.environ.get("CC"), "cc", "gcc", "clang"):
        if name and shutil.which(name):
            return name
    raise CompilerError("no C compiler found (set CC, or install cc/gcc/clang)")


def compiler_version(cc: str) -> str:
    out = subprocess.run([cc, "--version"], capture_output=True, text=True, check=False)
    return out.stdout.splitlines()[0].strip() if out.stdout else cc


def cache_dir() -> Path:
    """`$XDG_CACHE_HOME/anc-agent/bench` (or ~/.cache/...), else a directory under the temp dir."""
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    for candidate in (base / "anc-agent" / "bench", Path(tempfile.gettempdir()) / "anc-agent-bench"):
        try:
            candidate.mkdir(parents=True, exist_ok=True)
        except OSError:
            continue
        if os.access(candidate, os.W_OK):
            return candidate
    raise CompilerError("no writable cache directory for the compiled C reference")


def build(force: bool = False) -> Path:
    """Compile `reference.c` (unless an identical build is cached) and return the library path."""
    cc = compiler()
    source = SOURCE_PATH.read_bytes()
    recipe = " ".join((cc, compiler_version(cc), *CFLAGS, *LDLIBS)).encode()
    key = hashlib.sha256(source + recipe).hexdigest()[:16]
    target = cache_dir() / f"anc_reference_{key}.so"
    if target.exists() and not force:
        return target
    fd, tmp_name = tempfile.mkstemp(suffix=".so", dir=target.parent)
    os.close(fd)
    cmd = [cc, *CFLAGS, "-o", tmp_name, str(SOURCE_PATH), *LDLIBS]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        Path(tmp_name).unlink(missing_ok=True)
        raise CompilerError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr}")
    os.replace(tmp_name, target)
    return target


@cache
def library() -> ctypes.CDLL:
    """The loaded C reference with the argument types of every entry point declared."""
    lib = ctypes.CDLL(str(build()))
    p, i, f = _dptr, _int, _dbl
    lib.nlms_block.argtypes = [i, i, p, p, p, p, p, p, p, f, f, f]
    lib.nlms_run.argtypes = [i, i, i, p, p, p, p, p, p, p, f, f, f]
    lib.rls_block.argtypes = [i, i, p, p, p, p, p, p, p, p, f, f]
    lib.rls_run.argtypes = [i, i, i, p, p, p, p, p, p, p, p, f, f]
    lib.fxnlms_block.argtypes = [i, i, i, i, p, p, p, p, p, p, p, p, p, p, f, f, f]
    lib.fxnlms_run.argtypes = [i, i, i, i, i, p, p, p, p, p, p, p, p, p, p, f, f, f]
    lib.fxrls_block.argtypes = [i, i, i, i, p, p, p, p, p, p, p, p, p, p, p, p, f, f]
    lib.fxrls_run.argtypes = [i, i, i, i, i, p, p, p, p, p, p, p, p, p, p, p, p, f, f]
    for fn in (lib.nlms_block, lib.nlms_run, lib.rls_block, lib.rls_run):
        fn.restype = None
    # x, e, y, then mu, lam, leakage, eps, mu_mix, beta, mix_eps, a_limit
    hybrid_tail: list[Any] = [p, p, p, f, f, f, f, f, f, f, f]
    lib.hybrid_block.argtypes = [i, i, i, i, i, *([p] * 12), *hybrid_tail]
    lib.hybrid_run.argtypes = [i, i, i, i, i, i, *([p] * 12), *hybrid_tail]
    for fn in (lib.fxnlms_block, lib.fxnlms_run, lib.fxrls_block, lib.fxrls_run):
        fn.restype = None
    lib.hybrid_block.restype = lib.hybrid_run.restype = None
    return lib


def _ptr(a: np.ndarray) -> ctypes._Pointer:  # type: ignore[type-arg]
    if a.dtype != np.float64 or not a.flags.c_contiguous:
        raise TypeError(f"C reference arrays must be float64 C-contiguous, got {a.dtype} {a.flags}")
    return a.ctypes.data_as(_dptr)


def _whole_blocks(n: int, block: int) -> int:
    if n % block:
        raise ValueError(f"signal length {n} is not a whole number of {block}-sample blocks")
    return n // block


class CNlms:
    """NLMS system identification: y = w . x_vec, e = d - y, w += mu e x_vec / (eps + |x_vec|^2)."""

    def __init__(
        self, taps: int, mu: float, leakage: float = 0.0, eps: float = 1e-8, block: int = 64
    ) -> None:
        self.taps, self.block, self.mu, self.leakage, self.eps = taps, block, mu, leakage, eps
        self.w = np.zeros(taps)
        self._hist = np.zeros(taps + block)
        self._energy = np.zeros(1)

    def process(self, x: np.ndarray, d: np.ndarray, y: np.ndarray, e: np.ndarray) -> None:
        """One block: x, d inputs and y, e outputs, each (block,) float64."""
        library().nlms_block(
            self.taps, self.block, _ptr(self.w), _ptr(self._hist), _ptr(self._energy),
            _ptr(x), _ptr(d), _ptr(y), _ptr(e), self.mu, self.leakage, self.eps,
        )  # fmt: skip

    def run(self, x: np.ndarray, d: np.ndarray, y: np.ndarray, e: np.ndarray) -> None:
        """A whole signal of whole blocks, looping over blocks in C; arrays (n,) float64."""
        library().nlms_run(
            self.taps, self.block, _whole_blocks(x.size, self.block), _ptr(self.w), _ptr(self._hist),
            _ptr(self._energy), _ptr(x), _ptr(d), _ptr(y), _ptr(e), self.mu, self.leakage, self.eps,
        )  # fmt: skip


class CRls:
    """Exponentially weighted RLS system identification with P(0) = I / delta."""

    def __init__(
        self, taps: int, lam: float, delta: float = 1e-2, leakage: float = 0.0, block: int = 64
    ) -> None:
        self.taps, self.block, self.lam, self.leakage = taps, block, lam, leakage
        self.w = np.zeros(taps)
        self.p = np.eye(taps) / delta
        self._hist = np.zeros(taps + block)
        self._pi = np.zeros(taps)

    def process(self, x: np.ndarray, d: np.ndarray, y: np.ndarray, e: np.ndarray) -> None:
        """One block: x, d inputs and y, e outputs, each (block,) float64."""
        library().rls_block(
            self.taps, self.block, _ptr(self.w), _ptr(self.p), _ptr(self._hist), _ptr(self._pi),
            _ptr(x), _ptr(d), _ptr(y), _ptr(e), self.lam, self.leakage,
        )  # fmt: skip

    def run(self, x: np.ndarray, d: np.ndarray, y: np.ndarray, e: np.ndarray) -> None:
        """A whole signal of whole blocks, looping over blocks in C; arrays (n,) float64."""
        library().rls_run(
            self.taps, self.block, _whole_blocks(x.size, self.block), _ptr(self.w), _ptr(self.p),
            _ptr(self._hist), _ptr(self._pi), _ptr(x), _ptr(d), _ptr(y), _ptr(e), self.lam, self.leakage,
        )  # fmt: skip


class _CFilteredX:
    """State shared by the filtered-x kernels (the secondary-path estimate and the histories), and the
    calls into C: a subclass names its entry points `<_kernel>_block` / `<_kernel>_run` and gives the
    arguments around the signals (`_sizes`, `_args`, `_tail`)."""

    _kernel: str

    def __init__(self, taps: int, delay_samples: int, fir: np.ndarray, block: int) -> None:
        if delay_samples < 0:
            raise ValueError(f"delay_samples must be >= 0, got {delay_samples}")
        self.taps, self.block = taps, block
        self.delay_samples = int(delay_samples)
        self.fir = np.ascontiguousarray(fir, dtype=np.float64)
        self.w = np.zeros(taps)
        self._xhist = np.zeros(taps + block)
        self._shist = np.zeros(self.delay_samples + self.fir.size + block)
        self._fhist = np.zeros(taps + block)
        self._xf = np.zeros(block)

    def _sizes(self) -> tuple[int, ...]:
        """The leading C arguments, before [nblocks]."""
        return (self.taps, self.block)

    def _args(self) -> tuple[object, ...]:
        """The C arguments after the sizes (and nblocks) and before the signals."""
        raise NotImplementedError

    def _tail(self) -> tuple[float, ...]:
        """The scalar C arguments after the signals."""
        raise NotImplementedError

    def process(self, x: np.ndarray, e: np.ndarray, y: np.ndarray) -> None:
        """One block: reference x and measured error e in, anti-noise y out; (block,) float64."""
        kernel = getattr(library(), f"{self._kernel}_block")
        kernel(*self._sizes(), *self._args(), _ptr(x), _ptr(e), _ptr(y), *self._tail())

    def run(self, x: np.ndarray, e: np.ndarray, y: np.ndarray) -> None:
        """A whole signal of whole blocks (open loop: e is given), looping in C; (n,) float64."""
        kernel = getattr(library(), f"{self._kernel}_run")
        nblocks = _whole_blocks(x.size, self.block)
        kernel(*self._sizes(), nblocks, *self._args(), _ptr(x), _ptr(e), _ptr(y), *self._tail())


class CFxNlms(_CFilteredX):
    """Leaky FxNLMS: y = w . x_vec, w = (1 - leakage) w - mu e x'_vec / (eps + |x'_vec|^2)."""

    _kernel = "fxnlms"

    def __init__(
        self,
        taps: int,
        delay_samples: int,
        fir: np.ndarray,
        mu: float,
        leakage: float = 0.0,
        eps: float = 1e-8,
        block: int = 64,
    ) -> None:
        super().__init__(taps, delay_samples, fir, block)
        self.mu, self.leakage, self.eps = mu, leakage, eps
        self._energy = np.zeros(1)

    def _args(self) -> tuple[object, ...]:
        """The C arguments after (taps, block[, nblocks]) and before the signals."""
        return (
            self.delay_samples, self.fir.size, _ptr(self.fir), _ptr(self.w), _ptr(self._xhist),
            _ptr(self._shist), _ptr(self._fhist), _ptr(self._xf), _ptr(self._energy),
        )  # fmt: skip

    def _tail(self) -> tuple[float, ...]:
        return (self.mu, self.leakage, self.eps)


class CFxRls(_CFilteredX):
    """Leaky FxRLS, modified filtered-x: w = (1 - leakage) w - k e_v, e_v = e - S^ * y + w . x'_vec."""

    _kernel = "fxrls"

    def __init__(
        self,
        taps: int,
        delay_samples: int,
        fir: np.ndarray,
        lam: float,
        delta: float = 1e-2,
        leakage: float = 0.0,
        block: int = 64,
    ) -> None:
        super().__init__(taps, delay_samples, fir, block)
        self.lam, self.leakage = lam, leakage
        self.p = np.eye(taps) / delta
        self._pi = np.zeros(taps)
        self._yhist = np.zeros(self.delay_samples + self.fir.size + block)

    def _args(self) -> tuple[object, ...]:
        """The C arguments after (taps, block[, nblocks]) and before the signals."""
        return (
            self.delay_samples, self.fir.size, _ptr(self.fir), _ptr(self.w), _ptr(self.p),
            _ptr(self._xhist), _ptr(self._shist), _ptr(self._fhist), _ptr(self._yhist), _ptr(self._xf),
            _ptr(self._pi),
        )  # fmt: skip

    def _tail(self) -> tuple[float, ...]:
        return (self.lam, self.leakage)


class CHybrid(_CFilteredX):
    """Hybrid FxNLMS (taps) + FxRLS (rls_taps) in an adaptive convex mix, as `agent.dsp.hybrid.Hybrid`.

    `w` is the FxNLMS part, `w_rls` the FxRLS part, `mix` the [a, lam, power] mixing state; the leakage
    applies to the FxNLMS part only.
    """

    _kernel = "hybrid"

    def __init__(
        self,
        taps: int,
        rls_taps: int,
        delay_samples: int,
        fir: np.ndarray,
        mu: float,
        lam: float,
        leakage: float = 0.0,
        eps: float = 1e-8,
        delta: float = 1e-2,
        mu_mix: float = 1.0,
        beta: float = 0.9,
        mix_eps: float = 1e-12,
        a_limit: float = 4.0,
        block: int = 64,
    ) -> None:
        super().__init__(max(taps, rls_taps), delay_samples, fir, block)
        self.taps, self.rls_taps = taps, rls_taps
        self.w = np.zeros(taps)
        self.w_rls = np.zeros(rls_taps)
        self.p = np.eye(rls_taps) / delta
        self._pi = np.zeros(rls_taps)
        self.mix = np.array([0.0, 0.5, 0.0])
        self._energy = np.zeros(1)
        self._yhist = np.zeros(self.delay_samples + self.fir.size + block)
        self._params = (mu, lam, leakage, eps, mu_mix, beta, mix_eps, a_limit)

    def _args(self) -> tuple[object, ...]:
        """The C arguments after (l_taps, n_taps, block[, nblocks]) and before the signals."""
        return (
            self.delay_samples, self.fir.size, _ptr(self.fir), _ptr(self.w), _ptr(self.w_rls), _ptr(self.p),
            _ptr(self._pi), _ptr(self.mix), _ptr(self._energy), _ptr(self._xhist), _ptr(self._shist),
            _ptr(self._fhist), _ptr(self._yhist), _ptr(self._xf),
        )  # fmt: skip

    def _sizes(self) -> tuple[int, ...]:
        return (self.taps, self.rls_taps, self.block)

    def _tail(self) -> tuple[float, ...]:
        return self._params
