"""The secondary path (speaker -> error mic, including the loop's electronic delay) and its start-up
identification.

`SecondaryPathIdentifier` plays low-level white probe noise on every speaker at once (independent
sequences, so each channel's cross paths are just uncorrelated disturbance) through the real output
buffers, so the fitted response contains the whole loop delay (2 blocks + converters + acoustics). It fits
a long FIR from each speaker's output to its error mic with NLMS while the primary noise is still there: a
second NLMS branch from the reference mic to the error mic runs jointly and removes the part of the
primary noise the reference can explain, which otherwise swamps a probe 20 dB below it. Each branch is
normalised by its own input energy. The step size decays geometrically over the probe (fast start, low
misadjustment at the end). The callback also records the reference and error mics (preallocated), and
`result()` (control thread) refines the fit with the joint least-squares solve over the whole probe
period, which is free of NLMS misadjustment and of the adaptive notch the reference branch forms at the
primary noise's tones. The bulk delay is the first coefficient above `onset_fraction` of the peak,
minus `onset_margin_samples`; the `secondary_path_taps` coefficients after it are kept.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numba import njit

from agent.dsp.primitives import FASTMATH, dot, leaky_update, shift_history
from agent.profiles import Profile


@dataclass(frozen=True)
class SecondaryPath:
    """A measured secondary path: `delay_samples` of pure delay, then the FIR `fir`."""

    delay_samples: int
    fir: np.ndarray = field(repr=False)

    def __post_init__(self) -> None:
        if isinstance(self.delay_samples, bool) or int(self.delay_samples) != self.delay_samples:
            raise ValueError(f"delay_samples: {self.delay_samples!r} must be an integer >= 0")
        if self.delay_samples < 0:
            raise ValueError(f"delay_samples: {self.delay_samples} must be >= 0")
        fir = np.ascontiguousarray(self.fir, dtype=np.float64)
        if fir.ndim != 1 or fir.shape[0] == 0:
            raise ValueError(f"fir: must be a non-empty 1-D array, got shape {fir.shape}")
        if not np.all(np.isfinite(fir)):
            raise ValueError("fir: contains NaN or Inf")
        fir.setflags(write=False)
        object.__setattr__(self, "delay_samples", int(self.delay_samples))
        object.__setattr__(self, "fir", fir)

    @property
    def taps(self) -> int:
        return int(self.fir.shape[0])

    def impulse_response(self) -> np.ndarray:
        """(delay_samples + taps,) float64: zeros for the bulk delay, then the FIR."""
        return np.concatenate([np.zeros(self.delay_samples), self.fir])

    @classmethod
    def from_impulse_response(
        cls, h: np.ndarray, taps: int, onset_fraction: float = 0.2, onset_margin_samples: int = 4
    ) -> SecondaryPath:
        """Split a full response h (K,) into bulk delay + `taps` coefficients (zero-padded if h is short).

        The onset is the first |h[k]| >= onset_fraction * max|h|; the delay starts `onset_margin_samples`
        before it (never below 0). ValueError when h is all zero or not finite.
        """
        h = np.asarray(h, dtype=np.float64)
        peak = float(np.max(np.abs(h))) if h.size else 0.0
        if not np.isfinite(peak) or peak == 0.0:
            raise ValueError("impulse response: all zero or not finite; no secondary path was measured")
        onset = int(np.argmax(np.abs(h) >= onset_fraction * peak))
        delay = max(0, onset - onset_margin_samples)
        fir = np.zeros(taps)
        part = h[delay : delay + taps]
        fir[: part.shape[0]] = part
        return cls(delay, fir)


def secondary_paths_to_dict(paths: list[SecondaryPath]) -> dict[str, np.ndarray]:
    """Arrays for storage: `delay_samples` (C,) int64 and `fir` (C, taps) float64."""
    taps = max(p.taps for p in paths)
    fir = np.zeros((len(paths), taps))
    for c, p in enumerate(paths):
        fir[c, : p.taps] = p.fir
    return {"delay_samples": np.array([p.delay_samples for p in paths], dtype=np.int64), "fir": fir}


def secondary_paths_from_dict(arrays: dict[str, np.ndarray]) -> list[SecondaryPath]:
    """The inverse of `secondary_paths_to_dict`; ValueError naming the key when something is missing."""
    for key in ("delay_samples", "fir"):
        if key not in arrays:
            raise ValueError(f"{key}: missing (required keys: delay_samples, fir)")
    delays = np.asarray(arrays["delay_samples"])
    fir = np.asarray(arrays["fir"], dtype=np.float64)
    if delays.ndim != 1 or fir.ndim != 2 or fir.shape[0] != delays.shape[0]:
        raise ValueError(
            f"fir: shape {fir.shape} does not match delay_samples shape {delays.shape} (want (C, taps), (C,))"
        )
    return [SecondaryPath(int(d), f) for d, f in zip(delays, fir, strict=True)]


@njit(cache=True, nogil=True, fastmath=FASTMATH)
def identify_block(
    indata: np.ndarray,
    outdata: np.ndarray,
    ref_ch: np.ndarray,
    err_ch: np.ndarray,
    spk_ch: np.ndarray,
    probe: np.ndarray,
    probe_pos: int,
    hr: np.ndarray,
    gr: np.ndarray,
    ubuf: np.ndarray,
    xbuf: np.ndarray,
    energy: np.ndarray,
    stats: np.ndarray,
    rec_x: np.ndarray,
    rec_e: np.ndarray,
    mu: float,
    mu_ref: float,
    adapt: bool,
) -> int:
    """One block of identification for every channel; returns the count of non-finite input samples.

    indata (B, n_in) float32; outdata (B, n_out) float32, written (probe on speaker c, zeros elsewhere);
    probe (C, total) float64 probe sequences, this block reads probe[:, probe_pos : probe_pos + B];
    hr (C, K) reversed speaker->error FIR; gr (C, G) reversed reference->error FIR; ubuf (C, K + B) and
    xbuf (C, G + B) histories (newest sample of block index n at [K + n] / [G + n]); energy (C, 2) running
    ||u||^2, ||x||^2; stats (C, 2) accumulated error-mic power and residual power (for the fit quality);
    rec_x, rec_e (C, total) float64 recordings of the sanitised reference and error mics (written at
    probe_pos + n) for the least-squares refinement.
    """
    block = indata.shape[0]
    n_ch = hr.shape[0]
    k_taps = hr.shape[1]
    g_taps = gr.shape[1]
    bad = 0
    for n in range(block):
        for j in range(outdata.shape[1]):
            outdata[n, j] = 0.0
    for c in range(n_ch):
        h = hr[c]
        g = gr[c]
        ub = ubuf[c]
        xb = xbuf[c]
        eu = energy[c, 0]
        ex = energy[c, 1]
        for n in range(block):
            un = probe[c, probe_pos + n]
            outdata[n, spk_ch[c]] = np.float32(un)
            xn = float(indata[n, ref_ch[c]])
            en = float(indata[n, err_ch[c]])
            if not np.isfinite(xn):
                xn = 0.0
                bad += 1
            if not np.isfinite(en):
                en = 0.0
                bad += 1
            rec_x[c, probe_pos + n] = xn
            rec_e[c, probe_pos + n] = en
            old_u = ub[n]
            ub[k_taps + n] = un
            eu += un * un - old_u * old_u
            old_x = xb[n]
            xb[g_taps + n] = xn
            ex += xn * xn - old_x * old_x
            if eu < 0.0:
                eu = 0.0
            if ex < 0.0:
                ex = 0.0
            if adapt:
                pred = dot(h, 0, ub, n + 1, k_taps) + dot(g, 0, xb, n + 1, g_taps)
                err = en - pred
                stats[c, 0] += en * en
                stats[c, 1] += err * err
                leaky_update(h, 1.0, mu * err / (1e-12 + eu), ub, n + 1, k_taps)
                leaky_update(g, 1.0, mu_ref * err / (1e-12 + ex), xb, n + 1, g_taps)
        energy[c, 0] = eu
        energy[c, 1] = ex
        shift_history(ub, k_taps, block)
        shift_history(xb, g_taps, block)
    return bad


def correlation(a: np.ndarray, b: np.ndarray, lags: int) -> np.ndarray:
    """r[k] = sum_n a[n] b[n - k] for k in [0, lags): (lags,) float64, by FFT. a, b (T,) float64."""
    nf = 1 << int(np.ceil(np.log2(a.shape[0] + lags)))
    return np.fft.irfft(np.fft.rfft(a, nf) * np.conj(np.fft.rfft(b, nf)), nf)[:lags]


def joint_least_squares(
    u: np.ndarray, x: np.ndarray, e: np.ndarray, k_taps: int, g_taps: int, ridge: float = 1e-6
) -> np.ndarray:
    """The speaker response h (k_taps,) of the least-squares fit e[n] ~ (h * u)[n] + (g * x)[n].

    u (T,) probe played, x (T,) reference mic, e (T,) error mic, all float64. Solved jointly through the
    normal equations built from FFT correlations (Toeplitz blocks), with a ridge of `ridge` times the mean
    diagonal so a tonal reference (rank-deficient x block) stays solvable. Unlike the online NLMS it has
    no misadjustment and no adaptive notch at the primary noise's tones, which in our runs took the path
    error from -5..-20 dB to -25..-35 dB with the primary noise 20 dB above the probe.
    """
    n = u.shape[0]
    idx_k = np.arange(k_taps)
    idx_g = np.arange(g_taps)
    ruu = correlation(u, u, k_taps)
    rxx = correlation(x, x, g_taps)
    nf = 1 << int(np.ceil(np.log2(n + max(k_taps, g_taps))))
    full = np.fft.irfft(np.fft.rfft(u, nf) * np.conj(np.fft.rfft(x, nf)), nf)  # full[m] = sum u[n] x[n-m]
    lag = idx_g[None, :] - idx_k[:, None]  # Rux[i, j] = sum u[n-i] x[n-j] = full[j - i]
    a = np.empty((k_taps + g_taps, k_taps + g_taps))
    a[:k_taps, :k_taps] = ruu[np.abs(idx_k[:, None] - idx_k[None, :])]
    a[k_taps:, k_taps:] = rxx[np.abs(idx_g[:, None] - idx_g[None, :])]
    a[:k_taps, k_taps:] = full[lag % nf]
    a[k_taps:, :k_taps] = a[:k_taps, k_taps:].T
    a[np.diag_indices_from(a)] += ridge * np.trace(a) / a.shape[0] + 1e-300
    b = np.concatenate([correlation(e, u, k_taps), correlation(e, x, g_taps)])
    return np.linalg.solve(a, b)[:k_taps]


class IdentificationError(RuntimeError):
    """The secondary path could not be measured (no response on a channel, or asked for too early)."""


class SecondaryPathIdentifier:
    """Start-up identification: plays a low-level probe noise on each speaker, fits an FIR with NLMS."""

    # A measured response must stand out of its own noise floor: peak |h| at least this many times the
    # median |h| over the fitted window (noise alone gives about 5).
    MIN_PEAK_TO_MEDIAN = 20.0
    MU_START = 1.0
    MU_END = 0.005
    MU_REF_START = 0.05
    MU_REF_END = 0.002

    def __init__(self, profile: Profile, max_delay_samples: int | None = None, seed: int = 0) -> None:
        fmt = profile.audio
        ch = profile.channels
        ctl = profile.controller
        self.profile = profile
        if max_delay_samples is None:
            # the loop (2 blocks + converters) plus 10 ms of acoustic propagation
            max_delay_samples = 2 * fmt.block_size + profile.converter_delay_samples + fmt.samples(0.010)
        if max_delay_samples < 0:
            raise ValueError(f"max_delay_samples: {max_delay_samples} must be >= 0")
        self.max_delay_samples = int(max_delay_samples)
        self.secondary_taps = int(ctl.secondary_path_taps)
        self.fit_taps = self.max_delay_samples + self.secondary_taps
        self.primary_taps = int(ctl.taps.default)
        self.level_rms = 10.0 ** (ctl.probe_level_dbfs / 20.0)
        settle_blocks = -(-(2 * fmt.block_size + profile.converter_delay_samples) // fmt.block_size) + 1
        self.total_blocks = fmt.blocks(ctl.probe_s) + settle_blocks
        n_ch = ch.controllers
        block = fmt.block_size
        rng = np.random.default_rng(seed)
        self._probe = np.clip(rng.standard_normal((n_ch, self.total_blocks * block)), -4.0, 4.0)
        self._probe *= self.level_rms
        self._hr = np.zeros((n_ch, self.fit_taps))
        self._gr = np.zeros((n_ch, self.primary_taps))
        self._max_block = block
        self._ubuf = np.zeros((n_ch, self.fit_taps + block))
        self._xbuf = np.zeros((n_ch, self.primary_taps + block))
        self._energy = np.zeros((n_ch, 2))
        self._stats = np.zeros((n_ch, 2))
        self._rec_x = np.zeros_like(self._probe)
        self._rec_e = np.zeros_like(self._probe)
        self._ref = np.array(ch.reference_mics, dtype=np.int64)
        self._err = np.array(ch.error_mics, dtype=np.int64)
        self._spk = np.array(ch.speakers, dtype=np.int64)
        # [blocks processed, probe samples played, non-finite input samples]: an array, so counting in
        # the audio callback creates no Python objects that outlive the call
        self._count = np.zeros(3, dtype=np.int64)

    @property
    def nonfinite_count(self) -> int:
        """Non-finite input samples replaced by 0 so far."""
        return int(self._count[2])

    @property
    def done(self) -> bool:
        """True once probe_s seconds of probe (plus the loop's settling blocks) have been processed."""
        return self._count[0] >= self.total_blocks

    def process(self, indata: np.ndarray, outdata: np.ndarray) -> None:
        """One audio block: indata (B, n_in) float32, outdata (B, n_out) float32 (probe written here).

        B must be the profile's block size (smaller blocks are accepted). After `done`, or for buffers
        that do not match the profile's channel counts, writes silence.
        """
        block = indata.shape[0]
        if (
            self.done
            or block > self._max_block
            or indata.ndim != 2
            or outdata.ndim != 2
            or indata.shape[1] < self.profile.channels.input_channels
            or outdata.shape[1] < self.profile.channels.output_channels
            or outdata.shape[0] != block
        ):
            outdata.fill(0.0)
            return
        progress = self._count[0] / self.total_blocks
        mu = self.MU_START * (self.MU_END / self.MU_START) ** progress
        mu_ref = self.MU_REF_START * (self.MU_REF_END / self.MU_REF_START) ** progress
        pos = self._count[1]
        remaining = self._probe.shape[1] - pos
        block = min(block, remaining)
        self._count[2] += identify_block(
            indata[:block], outdata[:block], self._ref, self._err, self._spk, self._probe, pos,
            self._hr, self._gr, self._ubuf, self._xbuf, self._energy, self._stats,
            self._rec_x, self._rec_e, mu, mu_ref, True,
        )  # fmt: skip
        self._count[1] += block
        self._count[0] += 1

    def impulse_responses(self, least_squares: bool = True) -> np.ndarray:
        """(C, fit_taps) float64: the fitted speaker -> error-mic responses (delay included).

        least_squares=True (once `done`): the joint least-squares fit over the whole recorded probe
        period (see `joint_least_squares`), falling back to the online NLMS fit for a channel where the
        solve fails; otherwise the online NLMS fit as it stands.
        """
        nlms = self._hr[:, ::-1].copy()
        if not (least_squares and self.done):
            return nlms
        n = int(self._count[1])
        for c in range(nlms.shape[0]):
            try:
                h = joint_least_squares(
                    self._probe[c, :n],
                    self._rec_x[c, :n],
                    self._rec_e[c, :n],
                    self.fit_taps,
                    self.primary_taps,
                )
            except np.linalg.LinAlgError:
                continue
            if np.all(np.isfinite(h)):
                nlms[c] = h
        return nlms

    def residual_db(self) -> np.ndarray:
        """(C,) float64: residual power of the joint fit relative to the error-mic power, in dB."""
        return 10.0 * np.log10((self._stats[:, 1] + 1e-30) / (self._stats[:, 0] + 1e-30))

    def result(self, onset_fraction: float = 0.2, onset_margin_samples: int = 4) -> list[SecondaryPath]:
        """One SecondaryPath per controller channel; IdentificationError if not done or a channel is dead."""
        if not self.done:
            raise IdentificationError(
                f"identification still running ({self._count[0]}/{self.total_blocks} blocks)"
            )
        paths = []
        for c, h in enumerate(self.impulse_responses()):
            peak = float(np.max(np.abs(h)))
            floor = float(np.median(np.abs(h)))
            if not (peak >= self.MIN_PEAK_TO_MEDIAN * floor):
                raise IdentificationError(
                    f"channel {c} (speaker {self._spk[c]}, error mic {self._err[c]}): no clear response to "
                    f"the probe (peak {peak:.3g} vs noise floor {floor:.3g}); is the speaker connected?"
                )
            try:
                paths.append(
                    SecondaryPath.from_impulse_response(
                        h, self.secondary_taps, onset_fraction, onset_margin_samples
                    )
                )
            except ValueError as exc:
                raise IdentificationError(f"channel {c} (speaker {self._spk[c]}): {exc}") from exc
        return paths
