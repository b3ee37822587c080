"""The multi-channel ANC controller the audio callback (and the simulator) runs once per block.

`Controller.process(indata, outdata)` is ONE numba call per block (`controller_block`): it reads each
controller's reference and error mic straight out of `indata` (B, n_in) float32, replaces non-finite
samples by 0 (and counts them), runs the chosen algorithm for every channel, crossfades on mode or
algorithm changes, limits the output and writes `outdata` (B, n_out) float32. Nothing is allocated and
nothing can raise in there. Every channel uses the modified filtered-x structure (see `agent.dsp.fxrls`):
the algorithms adapt on virtual errors built from d^ = e - S^ * y, which keeps them stable whatever the loop
delay; `fxnlms` is the long FxNLMS alone, `fxrls` the short FxRLS alone, `hybrid` their adaptive convex
combination (`agent.dsp.hybrid`, with its snapped output weight and coefficient feedback). The profile's
leakage applies to the FxNLMS coefficients; the RLS is regularised by its forgetting factor and the cap on
trace(P) instead. The FxRLS taps sit `rls_stride` samples apart (see RLS_BAND_HZ) and the RLS starts
adapting only once its whole regressor span has been excited. Last, the do-no-harm gate
(`agent.dsp.gate`) scales the anti-noise down wherever it adds more than it cancels.

Tunables reach the kernel through two preallocated parameter sets: `apply` (control thread) writes the
inactive one and flips an index the kernel reads at the next block boundary. Changing `taps` or
`rls_taps` needs new buffers: `apply` builds them on the control thread, copies the coefficients over and
swaps them in between blocks. Coefficient loads and resets are posted the same way (preallocated staging
arrays plus a flag the kernel acts on at the start of a block).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from numba import njit

from agent.dsp.fxnlms import estimated_disturbance, filtered_reference, push_filtered, reversed_fir
from agent.dsp.fxrls import fxrls_adapt
from agent.dsp.gate import (
    GATE_FROM,
    GATE_STATE_SIZE,
    GATE_TO,
    gate_alpha,
    gate_gain,
    gate_update,
    reset_gate,
)
from agent.dsp.guard import (
    G_TRIPPED,
    GUARD_STATE_SIZE,
    guard_channel,
    guard_parameters,
)
from agent.dsp.hybrid import (
    DEFAULT_MU_MIX,
    MIX_LAMBDA,
    MIX_STATE_SIZE,
    feed_back,
    hybrid_adapt,
    output_weight,
    reset_mix,
)
from agent.dsp.limiter import DEFAULT_RELEASE_S, limit_amplitude, limit_sample, release_coefficient
from agent.dsp.primitives import (
    FASTMATH,
    default_max_trace,
    dot,
    dot_strided,
    leaky_update,
    reset_inverse_correlation,
    shift_history,
    sum_squares,
)
from agent.dsp.secondary_path import SecondaryPath
from agent.profiles import ALGORITHMS, Profile

MODE_ANC, MODE_PASSTHROUGH, MODE_OFF = 0, 1, 2
MODE_NAMES = ("anc", "passthrough", "off")
ALG_FXNLMS, ALG_FXRLS, ALG_HYBRID = 0, 1, 2

# metrics vector indices
M_ERROR_POWER = 0  # mean square of the error mics over the last block, summed over channels
M_REFERENCE_POWER = 1  # same for the reference mics
M_OUTPUT_POWER = 2  # same for the speaker outputs
M_NONFINITE_COUNT = 3  # cumulative non-finite input samples replaced by 0
M_DIVERGENCE_COUNT = 4  # cumulative divergence-guard restores
M_LIMITER_COUNT = 5  # cumulative output samples that hit the limiter
M_MIX_WEIGHT = 6  # FxNLMS share of channel 0's anti-noise: hybrid lambda; 1 for fxnlms, 0 for fxrls
M_BLOCKS = 7  # cumulative blocks processed
M_DISTURBANCE_POWER = 8  # mean square of the estimated uncontrolled error d^ (attenuation = this / error)
M_TRIPPED_CHANNELS = 9  # channels the divergence guard has muted (see agent.dsp.guard); 0 when healthy
M_REJECTED_BLOCKS = 10  # cumulative blocks whose buffers did not match the profile (silence was written)
N_METRICS = 11

# parameter-set layout (float64 vector)
P_ALGORITHM, P_MU, P_LEAKAGE, P_LAMBDA, P_MODE, P_EPS, P_MU_MIX, P_DELTA, P_MAX_TRACE = range(9)
P_GATE_ALPHA = 9
N_PARAMS = 10

# crossfade state (int64 vector)
X_MODE, X_ALG, X_POS = range(3)
N_XFADE = 3
# posted commands (int64 vector)
CMD_LOAD, CMD_RESET = 0, 1

EPS = 1e-8
DELTA = 1e-3  # RLS prior P0 = I / DELTA
CROSSFADE_S = 0.005
# The FxNLMS step is normalised by ||x'_vec||^2 + NORM_FLOOR * ||s^||^2 ||x_vec||^2: right after start-up or
# a noise onset the filtered reference lags the reference by the path delay, ||x'_vec|| is still tiny,
# and a plain normalisation would take huge steps that the (already loud) reference turns into a blast.
NORM_FLOOR = 0.1
# No excitation, no adaptation: the filters hold still while the filtered reference is below
# EXCITATION_FLOOR per sample (about -100 dBFS) or still lags a fresh reference onset (its energy below
# LAG_FRACTION of what the reference predicts). Otherwise the RLS inverse correlation grows through every
# silence (P ~ lam^-n) and the first regressors after an onset, half empty, throw the weights about.
EXCITATION_FLOOR = 1e-10
LAG_FRACTION = 1e-3
# The FxRLS taps sit `rls_stride` samples apart so that its grid's Nyquist frequency is about RLS_BAND_HZ
# (stride 8 at 48 kHz, 2 at 16 kHz): 32 adjacent taps at 48 kHz span 0.7 ms, less than a period of any
# tone ANC is for, and the best such filter is worth only a few dB once the mics' self-noise is there
# (see docs/hybrid.md). The stride is capped so the RLS span stays inside the FxNLMS filter (coefficient
# feedback needs it there).
RLS_BAND_HZ = 3000.0
# hist vector layout: [hx, hf, hy, rls stride, feedback on]
H_X, H_F, H_Y, H_STRIDE, H_FEEDBACK = range(5)


def rls_stride(sample_rate_hz: int, taps: int, rls_taps: int) -> int:
    """Tap spacing of the FxRLS component, in samples (see RLS_BAND_HZ)."""
    by_band = max(1, int(sample_rate_hz // (2.0 * RLS_BAND_HZ)))
    fits = max(1, (taps - 1) // max(1, rls_taps - 1))
    return min(by_band, fits)


@dataclass(frozen=True)
class ControllerSettings:
    """The tunables; `from_profile` validates them against a profile's bounds."""

    algorithm: str = "hybrid"
    taps: int = 256
    mu: float = 0.05
    leakage: float = 1e-6
    rls_taps: int = 32
    rls_lambda: float = 0.9995
    mode: int = MODE_ANC

    @classmethod
    def from_profile(cls, profile: Profile, **overrides: Any) -> ControllerSettings:
        """Defaults from the profile, then `overrides`; ValueError naming the field and the allowed range.

        `mode` may be given as 0/1/2 or as "anc"/"passthrough"/"off".
        """
        b = profile.controller
        values: dict[str, Any] = {
            "algorithm": b.algorithm,
            "taps": int(b.taps.default),
            "mu": b.mu.default,
            "leakage": b.leakage.default,
            "rls_taps": int(b.rls_taps.default),
            "rls_lambda": b.rls_lambda.default,
            "mode": MODE_ANC,
        }
        unknown = sorted(set(overrides) - set(values))
        if unknown:
            raise ValueError(f"controller.{unknown[0]}: unknown setting (allowed: {', '.join(values)})")
        values.update(overrides)
        return cls(**values).validated(profile)

    def validated(self, profile: Profile) -> ControllerSettings:
        """This, with types normalised, or ValueError naming the field, the value and what is allowed."""
        b = profile.controller
        where = f"for profile {profile.name}"
        if self.algorithm not in ALGORITHMS:
            raise ValueError(
                f"controller.algorithm: {self.algorithm!r} is not one of {', '.join(ALGORITHMS)} {where}"
            )
        mode = self.mode
        if isinstance(mode, str):
            if mode not in MODE_NAMES:
                raise ValueError(f"controller.mode: {mode!r} is not one of {', '.join(MODE_NAMES)}")
            mode = MODE_NAMES.index(mode)
        if isinstance(mode, bool) or mode not in (MODE_ANC, MODE_PASSTHROUGH, MODE_OFF):
            raise ValueError(
                f"controller.mode: {self.mode!r} is not one of 0, 1, 2 ({', '.join(MODE_NAMES)})"
            )
        out: dict[str, Any] = {"algorithm": self.algorithm, "mode": int(mode)}
        for name, bounds, integer in (
            ("taps", b.taps, True),
            ("mu", b.mu, False),
            ("leakage", b.leakage, False),
            ("rls_taps", b.rls_taps, True),
            ("rls_lambda", b.rls_lambda, False),
        ):
            value = getattr(self, name)
            try:
                number = float(value)
            except (TypeError, ValueError):
                raise ValueError(f"controller.{name}: {value!r} is not a number") from None
            if isinstance(value, bool) or not math.isfinite(number):
                raise ValueError(f"controller.{name}: {value!r} is not a finite number")
            if integer and number != int(number):
                raise ValueError(f"controller.{name}: {value!r} must be a whole number")
            if not bounds.contains(number):
                raise ValueError(f"controller.{name}: {value!r} is outside {bounds.describe()} {where}")
            out[name] = int(number) if integer else number
        return dataclasses.replace(self, **out)

    @property
    def mode_name(self) -> str:
        return MODE_NAMES[self.mode]


@njit(cache=True, inline="always")
def _weights(mode: int, alg: int, lam: float) -> tuple[float, float, float]:
    """Output weights (FxNLMS output, FxRLS output, reference) of one mode/algorithm configuration."""
    if mode == MODE_PASSTHROUGH:
        return 0.0, 0.0, 1.0
    if mode == MODE_OFF:
        return 0.0, 0.0, 0.0
    if alg == ALG_FXNLMS:
        return 1.0, 0.0, 0.0
    if alg == ALG_FXRLS:
        return 0.0, 1.0, 0.0
    return lam, 1.0 - lam, 0.0


@njit(cache=True, inline="always")
def _fade_curve(pos: int, fade_len: int) -> float:
    """Raised-cosine crossfade gain, 0 at pos 0 rising to 1 at pos fade_len."""
    return 0.5 - 0.5 * np.cos(np.pi * pos / fade_len)


@njit(cache=True, nogil=True, fastmath=FASTMATH)
def controller_block(
    indata: np.ndarray,
    outdata: np.ndarray,
    ref_ch: np.ndarray,
    err_ch: np.ndarray,
    spk_ch: np.ndarray,
    params: np.ndarray,
    active: np.ndarray,
    xfade: np.ndarray,
    fade_from: np.ndarray,
    cmd: np.ndarray,
    sr: np.ndarray,
    delays: np.ndarray,
    xbuf: np.ndarray,
    fxbuf: np.ndarray,
    ybuf: np.ndarray,
    ebuf: np.ndarray,
    hist: np.ndarray,
    energy: np.ndarray,
    w1r: np.ndarray,
    w2r: np.ndarray,
    p: np.ndarray,
    pi: np.ndarray,
    ureg: np.ndarray,
    mix: np.ndarray,
    snap_w1: np.ndarray,
    snap_w2: np.ndarray,
    snap_mix: np.ndarray,
    stage_w1: np.ndarray,
    stage_w2: np.ndarray,
    stage_p: np.ndarray,
    stage_mix: np.ndarray,
    gstate: np.ndarray,
    gate: np.ndarray,
    vbuf: np.ndarray,
    gparams: np.ndarray,
    limiter_gain: np.ndarray,
    limit: float,
    release: float,
    fade_len: int,
    metrics: np.ndarray,
) -> None:
    """One audio block for every controller channel (see the module docstring).

    indata (B, n_in) float32, outdata (B, n_out) float32 (written; channels no controller drives get 0).
    params (2, N_PARAMS) the two parameter sets, active (1,) which one is live; xfade (3,) int64 [mode,
    algorithm, samples into the current crossfade]; fade_from (C, 3) the output weights (FxNLMS, FxRLS,
    reference) the current crossfade started from; cmd (2,) posted load/reset flags.
    Per-channel state has a leading channel axis C: sr (C, M) reversed S^ FIRs, delays (C,) int64, histories
    xbuf (C, hx + Bmax), fxbuf (C, hf + Bmax), ybuf (C, hy + Bmax) with hist = [hx, hf, hy] (int64), ebuf
    (C, Bmax) sanitised error block, energy (C, 4) [running ||x'_vec||^2 over L, running ||x_vec||^2 over L,
    ||s^||^2, samples the filtered reference has been excited in a row], w1r (C, L), w2r (C, N),
    p (C, N, N), pi (C, N), mix (C, 3), snapshots and staging arrays of the same shapes, gstate (C, G),
    gate (C, 4) (`agent.dsp.gate`), vbuf like ybuf: the anti-noise before the gate and the limiter,
    limiter_gain (C,). Blocks longer than Bmax are processed in Bmax chunks.
    """
    n_ch = w1r.shape[0]
    l_taps = w1r.shape[1]
    max_block = ebuf.shape[1]
    hx = hist[H_X]
    hf = hist[H_F]
    hy = hist[H_Y]
    stride = hist[H_STRIDE]
    can_feed_back = hist[H_FEEDBACK] != 0
    rls_span = float((w2r.shape[1] - 1) * stride + 1)
    prm = params[active[0]]
    alg = int(prm[P_ALGORITHM])
    mode = int(prm[P_MODE])
    mu = prm[P_MU]
    keep = 1.0 - prm[P_LEAKAGE]
    lam = prm[P_LAMBDA]
    eps = prm[P_EPS]
    mu_mix = prm[P_MU_MIX]
    delta = prm[P_DELTA]
    max_trace = prm[P_MAX_TRACE]
    g_alpha = prm[P_GATE_ALPHA]

    if cmd[CMD_RESET] != 0:
        for c in range(n_ch):
            w1r[c, :] = 0.0
            w2r[c, :] = 0.0
            reset_inverse_correlation(p[c], delta)
            mix[c, 0] = 0.0
            mix[c, MIX_LAMBDA] = 0.5
            mix[c, 2] = 0.0
            snap_w1[c, :] = 0.0
            snap_w2[c, :] = 0.0
            snap_mix[c, :] = mix[c, :]
            gstate[c, :] = 0.0
            gate[c, :] = 0.0
            gate[c, GATE_FROM] = 1.0
            gate[c, GATE_TO] = 1.0
        cmd[CMD_RESET] = 0
    if cmd[CMD_LOAD] != 0:
        w1r[:, :] = stage_w1
        w2r[:, :] = stage_w2
        p[:, :, :] = stage_p
        mix[:, :] = stage_mix
        for c in range(n_ch):
            gstate[c, G_TRIPPED] = 0.0
        cmd[CMD_LOAD] = 0

    if mode != xfade[X_MODE] or alg != xfade[X_ALG]:
        # fade from the mix being played right now (even halfway through an earlier fade) to the new one
        pos = xfade[X_POS]
        for c in range(n_ch):
            a1, a2, ap = _weights(xfade[X_MODE], xfade[X_ALG], output_weight(mix[c, MIX_LAMBDA], True))
            if pos < fade_len:
                g = _fade_curve(pos, fade_len)
                a1 = g * a1 + (1.0 - g) * fade_from[c, 0]
                a2 = g * a2 + (1.0 - g) * fade_from[c, 1]
                ap = g * ap + (1.0 - g) * fade_from[c, 2]
            fade_from[c, 0] = a1
            fade_from[c, 1] = a2
            fade_from[c, 2] = ap
        xfade[X_MODE] = mode
        xfade[X_ALG] = alg
        xfade[X_POS] = 0
    adapting = mode == MODE_ANC
    fading = xfade[X_POS] < fade_len
    need1 = mode == MODE_ANC and alg != ALG_FXRLS
    need2 = mode == MODE_ANC and alg != ALG_FXNLMS

    for j in range(outdata.shape[1]):
        for n in range(outdata.shape[0]):
            outdata[n, j] = 0.0

    total = indata.shape[0]
    e_pow = 0.0
    x_pow = 0.0
    y_pow = 0.0
    d_pow = 0.0
    start = 0
    while start < total:
        block = min(max_block, total - start)
        fade_pos = xfade[X_POS]
        for c in range(n_ch):
            xb = xbuf[c]
            fb = fxbuf[c]
            yb = ybuf[c]
            eb = ebuf[c]
            s_r = sr[c]
            delay = delays[c]
            w1 = w1r[c]
            w2 = w2r[c]
            mx = mix[c]
            uc = ureg[c]
            rc = ref_ch[c]
            ec = err_ch[c]
            spk = spk_ch[c]
            for n in range(block):
                xv = float(indata[start + n, rc])
                if not np.isfinite(xv):
                    xv = 0.0
                    metrics[M_NONFINITE_COUNT] += 1.0
                xb[hx + n] = xv
                ev = float(indata[start + n, ec])
                if not np.isfinite(ev):
                    ev = 0.0
                    metrics[M_NONFINITE_COUNT] += 1.0
                eb[n] = ev
            en = energy[c, 0]
            ex = energy[c, 1]
            s2 = energy[c, 2]
            run = energy[c, 3]
            floor_gain = NORM_FLOOR * s2
            ce_pow = 0.0
            cd_pow = 0.0
            gc = gate[c]
            vb = vbuf[c]
            g_dv = 0.0
            g_vv = 0.0
            g_dd = 0.0
            g_n = 0
            c_lim = 0
            live = gstate[c, G_TRIPPED] == 0.0
            use1 = live and (need1 or (fading and fade_from[c, 0] != 0.0))
            use2 = live and (need2 or (fading and fade_from[c, 1] != 0.0))
            for n in range(block):
                xv = xb[hx + n]
                ev = eb[n]
                en = push_filtered(fb, hf, n, filtered_reference(s_r, delay, xb, hx, n), l_taps, en)
                x_old = xb[hx + n - l_taps]
                ex += xv * xv - x_old * x_old
                if ex < 0.0:
                    ex = 0.0
                norm = en + floor_gain * ex
                excited = en > EXCITATION_FLOOR * l_taps and en >= LAG_FRACTION * s2 * ex
                run = run + 1.0 if excited else 0.0
                y1 = dot(w1, 0, xb, hx + n - l_taps + 1, l_taps) if use1 else 0.0
                n_taps = w2.shape[0]
                y2 = dot_strided(w2, xb, hx + n - (n_taps - 1) * stride, stride) if use2 else 0.0
                a1, a2, ap = _weights(mode, alg, output_weight(mx[MIX_LAMBDA], True))
                pos = fade_pos + n + 1
                if pos < fade_len:
                    g = _fade_curve(pos, fade_len)
                    a1 = g * a1 + (1.0 - g) * fade_from[c, 0]
                    a2 = g * a2 + (1.0 - g) * fade_from[c, 1]
                    ap = g * ap + (1.0 - g) * fade_from[c, 2]
                anti = a1 * y1 + a2 * y2
                vb[hy + n] = anti
                v = gate_gain(gc, n, block) * anti + ap * xv
                if not (abs(v) <= limit):
                    c_lim += 1
                out = limit_sample(v, limiter_gain, c, limit, release)
                yb[hy + n] = out
                outdata[start + n, spk] = np.float32(out)
                dh = estimated_disturbance(ev, s_r, delay, yb, hy, n)
                if adapting and live and excited:
                    if alg == ALG_FXNLMS or (alg == ALG_HYBRID and run < rls_span):
                        b0 = hf + n - l_taps + 1
                        e1 = dh + dot(w1, 0, fb, b0, l_taps)
                        leaky_update(w1, keep, -mu * e1 / (eps + norm), fb, b0, l_taps)
                    elif alg == ALG_FXRLS:
                        if run >= rls_span:
                            fxrls_adapt(
                                w2, p[c], pi[c], uc, fb, hf, n, dh, lam, 1.0, delta, max_trace, stride
                            )  # fmt: skip
                    else:
                        hybrid_adapt(
                            w1, w2, p[c], pi[c], uc, fb, hf, n, dh, norm, mx, mu, keep, eps, lam, delta,
                            max_trace, mu_mix, stride,
                        )  # fmt: skip
                    # what the ungated anti-noise, played with the weights it really had, adds at the mic
                    vc = -estimated_disturbance(0.0, s_r, delay, vb, hy, n)
                    g_dv += dh * vc
                    g_vv += vc * vc
                    g_dd += dh * dh
                    g_n += 1
                ce_pow += ev * ev
                cd_pow += dh * dh
                x_pow += xv * xv
                y_pow += out * out
            if alg == ALG_HYBRID and adapting and live and can_feed_back:
                feed_back(w1, w2, output_weight(mx[MIX_LAMBDA], True), stride)
            shift_history(xb, hx, block)
            shift_history(fb, hf, block)
            shift_history(yb, hy, block)
            shift_history(vb, hy, block)
            energy[c, 3] = run
            if adapting and live:
                gate_update(gc, g_dv, g_vv, g_dd, g_n, g_alpha)
            energy[c, 0] = sum_squares(fb, hf - l_taps, l_taps)
            energy[c, 1] = sum_squares(xb, hx - l_taps, l_taps)
            e_pow += ce_pow
            d_pow += cd_pow
            metrics[M_LIMITER_COUNT] += c_lim
            cancelling = adapting and fade_pos + block >= fade_len
            if guard_channel(
                w1, w2, p[c], mx, snap_w1[c], snap_w2[c], snap_mix[c], gstate[c], gparams,
                ce_pow / block, cd_pow / block, c_lim / block, cancelling,
            ):  # fmt: skip
                metrics[M_DIVERGENCE_COUNT] += 1.0
                # the gate's moments and the ungated output history describe the filter just thrown away
                for i in range(GATE_STATE_SIZE):
                    gc[i] = 0.0
                gc[GATE_FROM] = 1.0
                gc[GATE_TO] = 1.0
                vb[:] = 0.0
        xfade[X_POS] = min(fade_pos + block, fade_len)
        start += block

    if total > 0:
        scale = 1.0 / total
        metrics[M_ERROR_POWER] = e_pow * scale
        metrics[M_REFERENCE_POWER] = x_pow * scale
        metrics[M_OUTPUT_POWER] = y_pow * scale
        metrics[M_DISTURBANCE_POWER] = d_pow * scale
    if alg == ALG_HYBRID:
        metrics[M_MIX_WEIGHT] = output_weight(mix[0, MIX_LAMBDA], True)
    else:
        metrics[M_MIX_WEIGHT] = 1.0 if alg == ALG_FXNLMS else 0.0
    metrics[M_BLOCKS] += 1.0
    tripped = 0.0
    for c in range(n_ch):
        tripped += gstate[c, G_TRIPPED]
    metrics[M_TRIPPED_CHANNELS] = tripped


class _Buffers:
    """Every array the kernel needs for one (taps, rls_taps) shape; built on the control thread."""

    def __init__(
        self,
        n_ch: int,
        taps: int,
        rls_taps: int,
        secondary: list[SecondaryPath],
        max_block: int,
        sample_rate_hz: int,
    ) -> None:
        m = max(s.taps for s in secondary)
        max_delay = max(s.delay_samples for s in secondary)
        self.sr = np.zeros((n_ch, m))
        for c, s in enumerate(secondary):
            # shorter FIRs are zero-padded at their end, i.e. at the front of the reversed copy
            self.sr[c, m - s.taps :] = reversed_fir(s)
        self.delays = np.array([s.delay_samples for s in secondary], dtype=np.int64)
        self.stride = rls_stride(sample_rate_hz, taps, rls_taps)
        span = (rls_taps - 1) * self.stride + 1
        longest = max(taps, span)
        hx = max(longest, max_delay + m)  # >= L: the x energy window needs x[n - L]
        hf = longest
        hy = max_delay + m - 1
        self.hist = np.array([hx, hf, hy, self.stride, int(span <= taps)], dtype=np.int64)
        self.xbuf = np.zeros((n_ch, hx + max_block))
        self.fxbuf = np.zeros((n_ch, hf + max_block))
        self.ybuf = np.zeros((n_ch, hy + max_block))
        self.ebuf = np.zeros((n_ch, max_block))
        self.energy = np.zeros((n_ch, 4))
        self.energy[:, 2] = np.sum(self.sr**2, axis=1)
        self.w1r = np.zeros((n_ch, taps))
        self.w2r = np.zeros((n_ch, rls_taps))
        self.p = np.zeros((n_ch, rls_taps, rls_taps))
        for c in range(n_ch):
            reset_inverse_correlation(self.p[c], DELTA)
        self.pi = np.zeros((n_ch, rls_taps))
        self.ureg = np.zeros((n_ch, rls_taps))
        self.mix = np.zeros((n_ch, MIX_STATE_SIZE))
        reset_mix(self.mix)
        self.snap_w1 = np.zeros_like(self.w1r)
        self.snap_w2 = np.zeros_like(self.w2r)
        self.snap_mix = self.mix.copy()
        self.stage_w1 = np.zeros_like(self.w1r)
        self.stage_w2 = np.zeros_like(self.w2r)
        self.stage_p = self.p.copy()
        self.stage_mix = self.mix.copy()
        self.gstate = np.zeros((n_ch, GUARD_STATE_SIZE))
        self.gate = np.zeros((n_ch, GATE_STATE_SIZE))
        reset_gate(self.gate)
        self.vbuf = np.zeros_like(self.ybuf)
        self.limiter_gain = np.ones(n_ch)

    def state_arrays(self) -> tuple[np.ndarray, ...]:
        """The kernel's arguments from `sr` to `limiter_gain`, in order (gparams inserted by the caller)."""
        return (
            self.sr, self.delays, self.xbuf, self.fxbuf, self.ybuf, self.ebuf, self.hist, self.energy,
            self.w1r, self.w2r, self.p, self.pi, self.ureg, self.mix, self.snap_w1, self.snap_w2,
            self.snap_mix, self.stage_w1, self.stage_w2, self.stage_p, self.stage_mix, self.gstate,
            self.gate, self.vbuf,
        )  # fmt: skip


COEFFICIENT_KEYS = ("w_fxnlms", "w_fxrls", "p_fxrls", "mix")


class Controller:
    """Independent SISO ANC controllers, one per speaker of the profile, run by one kernel call per block."""

    def __init__(
        self, profile: Profile, secondary: list[SecondaryPath], settings: ControllerSettings
    ) -> None:
        ch = profile.channels
        if len(secondary) != ch.controllers:
            raise ValueError(
                f"secondary: {len(secondary)} paths given, profile {profile.name} has {ch.controllers} "
                "controller channels"
            )
        for c, s in enumerate(secondary):
            if not isinstance(s, SecondaryPath):
                raise ValueError(f"secondary[{c}]: expected a SecondaryPath, got {type(s).__name__}")
        self.profile = profile
        self.secondary = list(secondary)
        self.settings = settings.validated(profile)
        fmt = profile.audio
        self._n_ch = ch.controllers
        self._n_in = ch.input_channels
        self._n_out = ch.output_channels
        self._max_block = fmt.block_size
        self._ref = np.array(ch.reference_mics, dtype=np.int64)
        self._err = np.array(ch.error_mics, dtype=np.int64)
        self._spk = np.array(ch.speakers, dtype=np.int64)
        self._limit = limit_amplitude(profile.output_limit_dbfs)
        self._release = release_coefficient(DEFAULT_RELEASE_S, fmt.sample_rate_hz)
        self._fade_len = max(1, fmt.samples(CROSSFADE_S))
        self._gparams = guard_parameters(fmt.sample_rate_hz, fmt.block_size, DELTA)
        self.metrics = np.zeros(N_METRICS)
        self._params = np.zeros((2, N_PARAMS))
        self._active = np.zeros(1, dtype=np.int64)
        self._cmd = np.zeros(2, dtype=np.int64)
        self._xfade = np.zeros(N_XFADE, dtype=np.int64)
        self._write_params(0, self.settings)
        self._xfade[X_MODE] = self.settings.mode
        self._xfade[X_ALG] = ALGORITHMS.index(self.settings.algorithm)
        self._xfade[X_POS] = 0
        self._fade_from = np.zeros((self._n_ch, 3))  # fade in from silence at start-up
        self._buffers = _Buffers(
            self._n_ch,
            self.settings.taps,
            self.settings.rls_taps,
            self.secondary,
            self._max_block,
            fmt.sample_rate_hz,
        )
        self._args = self._kernel_args(self._buffers)

    def _kernel_args(self, b: _Buffers) -> tuple[Any, ...]:
        return (
            self._ref, self._err, self._spk, self._params, self._active, self._xfade, self._fade_from,
            self._cmd,
            *b.state_arrays(), self._gparams, b.limiter_gain, self._limit, self._release, self._fade_len,
            self.metrics,
        )  # fmt: skip

    def _write_params(self, index: int, s: ControllerSettings) -> None:
        prm = self._params[index]
        prm[P_ALGORITHM] = ALGORITHMS.index(s.algorithm)
        prm[P_MU] = s.mu
        prm[P_LEAKAGE] = s.leakage
        prm[P_LAMBDA] = s.rls_lambda
        prm[P_MODE] = s.mode
        prm[P_EPS] = EPS
        prm[P_MU_MIX] = DEFAULT_MU_MIX
        prm[P_DELTA] = DELTA
        prm[P_MAX_TRACE] = default_max_trace(s.rls_taps, DELTA)
        fmt = self.profile.audio
        prm[P_GATE_ALPHA] = gate_alpha(fmt.sample_rate_hz, fmt.block_size)

    def process(self, indata: np.ndarray, outdata: np.ndarray) -> None:
        """One audio block: indata (B, n_in) float32 in, outdata (B, n_out) float32 out (any B).

        Buffers with fewer channels than the profile names, or with different block lengths, would make
        the kernel read or write out of bounds: such a block gets silence (where it can be written) and is
        counted in M_REJECTED_BLOCKS instead.
        """
        if (
            indata.ndim != 2
            or outdata.ndim != 2
            or indata.shape[1] < self._n_in
            or outdata.shape[1] < self._n_out
            or indata.shape[0] != outdata.shape[0]
        ):
            outdata.fill(0.0)
            self.metrics[M_REJECTED_BLOCKS] += 1.0
            return
        controller_block(indata, outdata, *self._args)

    def apply(self, settings: ControllerSettings) -> None:
        """Validate and apply new settings from the control thread; effective at the next block boundary.

        New filter lengths get new buffers (built here, coefficients carried over where they fit).
        """
        s = settings.validated(self.profile)
        old = self._buffers
        if s.taps != old.w1r.shape[1] or s.rls_taps != old.w2r.shape[1]:
            fs = self.profile.audio.sample_rate_hz
            new = _Buffers(self._n_ch, s.taps, s.rls_taps, self.secondary, self._max_block, fs)
            lt = min(s.taps, old.w1r.shape[1])
            nt = min(s.rls_taps, old.w2r.shape[1])
            # reversed storage: the newest-sample coefficients sit at the end of each row
            new.w1r[:, s.taps - lt :] = old.w1r[:, old.w1r.shape[1] - lt :]
            if new.stride == old.stride:  # on another tap grid the FxRLS coefficients mean nothing
                new.w2r[:, s.rls_taps - nt :] = old.w2r[:, old.w2r.shape[1] - nt :]
            new.mix[:] = old.mix
            new.snap_w1[:] = new.w1r
            new.snap_w2[:] = new.w2r
            new.snap_mix[:] = new.mix
            for name, i in (("xbuf", H_X), ("fxbuf", H_F), ("ybuf", H_Y), ("vbuf", H_Y)):
                # histories: the newest sample sits at column hist[i] - 1; align those ends
                dst, src = getattr(new, name), getattr(old, name)
                h_new, h_old = int(new.hist[i]), int(old.hist[i])
                k = min(h_new, h_old)
                dst[:, h_new - k : h_new] = src[:, h_old - k : h_old]
            hx, hf = int(new.hist[0]), int(new.hist[1])
            new.energy[:, 0] = np.sum(new.fxbuf[:, hf - s.taps : hf] ** 2, axis=1)
            new.energy[:, 1] = np.sum(new.xbuf[:, hx - s.taps : hx] ** 2, axis=1)
            new.gstate[:] = old.gstate
            new.gate[:] = old.gate
            new.limiter_gain[:] = old.limiter_gain
            self._flip(s)
            self._buffers = new
            self._args = self._kernel_args(new)
        else:
            self._flip(s)
        self.settings = s

    def _flip(self, s: ControllerSettings) -> None:
        """Write the inactive parameter set, then make it the active one (read at the next block)."""
        inactive = 1 - int(self._active[0])
        self._write_params(inactive, s)
        self._active[0] = inactive

    def coefficients(self) -> dict[str, np.ndarray]:
        """Copies of the adaptive state for a warm restart, in natural tap order.

        w_fxnlms (C, taps), w_fxrls (C, rls_taps) (tap k multiplies x[n - k * rls_stride], see
        `rls_stride`), p_fxrls (C, rls_taps, rls_taps) (indexed like the reversed taps, opaque), mix (C, 3)
        [a, lambda (unsnapped), power]; all float64.
        """
        b = self._buffers
        return {
            "w_fxnlms": b.w1r[:, ::-1].copy(),
            "w_fxrls": b.w2r[:, ::-1].copy(),
            "p_fxrls": b.p.copy(),
            "mix": b.mix.copy(),
        }

    def load_coefficients(self, coeffs: dict[str, np.ndarray]) -> None:
        """Install a coefficient set (any subset of `coefficients()`'s keys) at the next block boundary.

        ValueError naming the key on an unknown key, a shape mismatch or a non-finite value; then nothing
        is installed.
        """
        b = self._buffers
        current = self.coefficients()
        staged: dict[str, np.ndarray] = {}
        for key, value in coeffs.items():
            if key not in current:
                raise ValueError(f"{key}: unknown coefficient key (allowed: {', '.join(COEFFICIENT_KEYS)})")
            arr = np.asarray(value, dtype=np.float64)
            if arr.shape != current[key].shape:
                raise ValueError(f"{key}: shape {arr.shape} does not match the running {current[key].shape}")
            if not np.all(np.isfinite(arr)):
                raise ValueError(f"{key}: contains NaN or Inf")
            staged[key] = arr
        merged = {**current, **staged}
        b.stage_w1[:] = merged["w_fxnlms"][:, ::-1]
        b.stage_w2[:] = merged["w_fxrls"][:, ::-1]
        b.stage_p[:] = merged["p_fxrls"]
        b.stage_mix[:] = merged["mix"]
        self._cmd[CMD_LOAD] = 1

    def reset(self) -> None:
        """Zero the adaptive state at the next block boundary (the secondary path is kept)."""
        self._cmd[CMD_RESET] = 1

    def attenuation_db(self) -> float:
        """10 log10(d^ power / error power) of the last block: the current cancellation, in dB."""
        e = self.metrics[M_ERROR_POWER]
        d = self.metrics[M_DISTURBANCE_POWER]
        return float(10.0 * np.log10((d + 1e-20) / (e + 1e-20)))
