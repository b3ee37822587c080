"""The on-device emergency-sound detector: sirens, smoke/CO alarms and car horns switch ANC to pass-through.

It runs on the control thread over the power spectra of `agent.control.features.FeatureExtractor` (32 ms
Hann frames every 16 ms). Per frame it picks the strongest spectral peaks between 200 Hz and 4 kHz
(parabolic interpolation on the dB spectrum) and measures, for each: its prominence over the local spectral
floor, the level and prominence of its harmonics 2..5, the median level of harmonics 4..8, whether it looks
like a harmonic of a lower fundamental, and the loudest peak at f/2..f/7 (both judged on peaks within 0.35
bin of f/d: an unrelated engine order or note a bin away is no fundamental). Peaks are linked across frames
into frequency tracks; the strongest peak of the siren band is also followed on its own (a yelp sweeps too
fast for a track). Evidence is a recent trajectory that matches a pattern:

- siren: a fundamental at 400-1800 Hz, no harmonic of a lower one, with odd harmonics (square-wave drive:
  3rd within 20 dB, 2nd 14 dB below the fundamental and 10 dB below the 3rd, 5th within 30 dB where the
  horn loudspeaker carries it) on a smooth trajectory (a hi-lo tone or a wail sweep) at a
  steady level, with no second tone a third away in the same frames (a phone's trill: within 6 dB, or within
  10 dB with the level jumping from frame to frame) and, when it moves,
  moving one way (a sung vibrato goes up and down); or the siren band's strongest peak sweeping 20 % or
  more in ~160 ms, in small steady steps, with its smeared 3rd harmonic over its 2nd (yelp);
- alarm: a tone at 2.3-3.9 kHz standing 20 dB out of the floor, holding its pitch to 0.06 % and its level
  (temporal-three beep), or pulsing with onsets 130-260 ms apart at one pitch, or two short beeps at one
  pitch, to 0.2 % (temporal-four CO cadence); never with a peak at f/2..f/7 within 10 dB (a steady tone) or
  louder than it (pulses, beeps): a siren's 3rd or 5th harmonic, or a note's, lands in that band;
- horn: a steady (pitch to 1.3 %, level to 4 dB, rising at most 15 dB/s, falling at most 8 dB/s: a ringing
  note dies away faster) fundamental at 280-650 Hz with at least three of harmonics 2..5 present, within
  16 dB of each other, harmonics 4..8 within 12.5 dB of it and 9 dB of the 2nd (brassy: rising to a 2-3 kHz
  resonance; a note doubled at the octave falls away) and no louder peak at f/2..f/7 (a note over its
  bass); two-tone horns are found by either note.

Every pattern also wants its tone to carry a fair share of the frame's power (MIN_SHARE_DB): an emergency
heard at SNR >= -5 dB is loud, a faint partial of music is not.

The thresholds were set on the synthetic scenes of `agent.control.scenes` with seeds 0 to 19 and 23;
`agent.control.safety_bench` measures what they give (report held-out seeds, e.g. 29, 31, 37 and 41). Evidence
needs about 150 ms of a track, so a detection fires about 150-250 ms after the onset: the engine must be in
pass-through within 300 ms. A detection ends once `hold_s` passes with no evidence of its label (for alarms
at least ALARM_MIN_HOLD_S, which bridges the 5 s pause of the CO cadence).
"""

from __future__ import annotations

import itertools
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from agent.control.features import FeatureExtractor

LABELS = ("siren", "alarm", "horn")
DEFAULT_HOLD_S = 5.0
ALARM_MIN_HOLD_S = 6.0  # the temporal-four cadence pauses 5 s (+10 %) between bursts of beeps

PEAK_BAND_HZ = (200.0, 4000.0)
MAX_PEAKS = 8  # peaks kept per frame, strongest first
PEAK_MIN_PROMINENCE_DB = 10.0
FLOOR_HALF_WIDTH_BINS = 8  # the local floor averages +-8 bins ...
FLOOR_GAP_BINS = 2  # ... leaving out +-2 bins around the peak
HARMONIC_PRESENT_DB = 6.0  # prominence at which a harmonic counts as present
MIN_SHARE_DB = -20.0  # a tone this far below the frame's total power is no emergency heard at SNR >= -5 dB
NEIGHBOUR_MIN_HZ = 60.0  # lowest frequency searched for a peak's lower neighbours
HARMONIC_MATCH_BINS = 0.35  # a lower fundamental's peak lies this close (bins) to f / d
SUBHARMONIC_LEVEL_DB = 10.0  # a lower neighbour counts when within 10 dB of the peak's level
MAX_MISSES = 2  # frames a track may lose its peak before it ends
MAX_TRACKS = 14
TRACK_MIN_STEP_HZ = 40.0  # a track follows its peak this far from one frame to the next ...
TRACK_MAX_STEP = 0.2  # ... or this share of its frequency in the siren band (a yelp sweeps fast) ...
TONE_MAX_STEP = 0.02  # ... and this share above it (alarms hold their pitch: keep their tracks apart)

STEADY_FRAMES = 9  # ~160 ms of frames for the steady-tone and sweep patterns
YELP_FRAMES = 10
SIREN_BAND_HZ = (400.0, 1800.0)  # the lowest hi-lo tone, 435 Hz, drops 4 % when the vehicle drives away
SIREN_MIN_ODD_EVEN_DB = 10.0  # square-wave drive: the 3rd harmonic well above the 2nd ...
SIREN_THIRD_DB = (-20.0, 6.0)  # ... and near the fundamental (-9.5 dB square wave, +-room colour) ...
SIREN_MAX_SECOND_DB = -14.0  # ... and the 2nd far below the fundamental (a note's 2nd is near -6 dB)
SIREN_MIN_FIFTH_DB = -30.0  # ... and the 5th near -14 dB too (a voice's falls away) ...
SIREN_MIN_FIFTH_PROMINENCE_DB = 12.0  # ... standing out of the floor ...
SIREN_FIFTH_CHECK_HZ = 4500.0  # ... where the horn loudspeaker still carries it
SIREN_MAX_LEVEL_JITTER_DB = 6.5  # std of the frame-to-frame level change: a siren holds its level
PARTNER_RATIOS = tuple(1.12 + 0.03 * i for i in range(10))  # 1.12 .. 1.39: a phone trill's two tones
SIREN_MAX_PARTNER_DB = -6.0  # no second tone that close in pitch within 6 dB, frame after frame (a chord's
SIREN_MAX_TRILL_PARTNER_DB = -10.0  # third may be; a trill's tones come within 10 dB with the level jumping
SIREN_TRILL_JITTER_DB = 4.5  # from frame to frame, as each frame catches more of one tone or the other)
SIREN_STEADY_REL_STD = 0.008  # a trajectory moving more than this (relative std) must sweep one way:
SIREN_MIN_MONOTONY = 0.6  # its net change at least this share of the distance it travels
SIREN_MAX_RESIDUAL = 0.005  # rms off a quadratic fit to the trajectory, relative (reverb: sweeps jitter) ...
SIREN_MAX_RESIDUAL_BINS = 0.45  # ... or in FFT bins, whichever is larger: a fast sweep smears the peak
SIREN_MAX_BASE_DB = 0.0  # no peak at f/2 .. f/7 louder than the siren's fundamental
YELP_BAND_HZ = (450.0, 2000.0)
YELP_MIN_RANGE = 0.2  # of the mean frequency, over YELP_FRAMES
YELP_MIN_CONSISTENCY = 0.7  # share of hops sweeping in the same direction as the previous one
YELP_MIN_FRAMES = 9  # frames of YELP_FRAMES where the sweep's peak was found
YELP_MAX_STEP = 0.3  # largest frequency step between frames, relative
YELP_MIN_STEP = 0.015  # a step smaller than this (relative) is not sweeping ...
YELP_MIN_MOVING = 0.6  # ... and most steps must sweep (notes of a tune hold still, then jump)
YELP_MIN_H3_DB = 4.0  # the third harmonic, smeared by the sweep, still shows over the floor ...
YELP_MIN_R3_DB = -18.5  # ... and within 18.5 dB of the fundamental (a whistle is a pure tone) ...
YELP_MIN_ODD_EVEN_DB = 5.0  # ... and above the 2nd harmonic (a voice's or an instrument's 2nd is strong)
YELP_MAX_P3_DB = 24.0  # a sweep this fast smears its harmonics: the 3rd stands at most 24 dB out of the
YELP_MAX_P5_DB = 16.0  # floor, the 5th at most 16 dB; a held (or vibrato) tone's stand further out
ALARM_BAND_HZ = (2300.0, 3900.0)
ALARM_MAX_REL_STD = 0.0006  # piezo sounders hold their pitch; a whistle wanders more than this
ALARM_MAX_LEVEL_RANGE_DB = 6.0
NO_PEAK_DB = -200.0
ALARM_MAX_BASE_DB = -10.0  # no peak at f/2 .. f/7 within 10 dB: the tone is no siren's harmonic
T4_MAX_REL_STD = 0.003  # over the few frames of a 0.1 s beep
T4_MIN_FRAMES = 12
T4_WINDOW_FRAMES = 20
T4_RISE_DB = 10.0
T4_MIN_PROMINENCE_DB = 15.0
T4_MAX_BASE_DB = 0.0  # a pulsing tone: peaks at f/2 .. f/7 quieter than it (a siren's fundamental is louder)
T4_MIN_LOUD_FRAMES = 2  # frames within 6 dB of the loudest, in each of the two beeps
T4_PERIOD_FRAMES = (8, 16)  # beep onsets 0.2 s (+-10 %) apart: 12.5 frames; generous for reverb and noise
ALARM_MIN_PROMINENCE_DB = 20.0  # a piezo tone stands far out of the floor; a formant of speech does not
T4_BURST_FRAMES = (3, 10)  # an isolated beep of 60-180 ms, seen in 3 to 10 frames
T4_BURST_MIN_PROMINENCE_DB = 12.0
T4_MAX_GAP_FRAMES = 12
T4_MAX_FREQ_DIFF = 0.002  # beep to beep, a piezo sounder holds its pitch to 0.2 % (a whistled note does not)
HORN_BAND_HZ = (280.0, 650.0)  # car horns sound at 300-550 Hz; below sit chords, bass notes and engine orders
HORN_MAX_REL_STD = 0.013  # a steady horn's pitch read frame by frame wanders up to ~1 % over music, speech
HORN_MAX_LEVEL_RANGE_DB = 4.0
HORN_MIN_HARMONICS = 3  # of harmonics 2..5
HORN_MIN_HIGH_DB = -12.5  # brassy: harmonics 4..8 typically within 12.5 dB of the fundamental ...
HORN_MIN_TILT_DB = -9.0  # ... and at most 9 dB under the 2nd (or the fundamental, if a room mode lifts the
# 2nd over it): a horn rises to its 2-3 kHz resonance, a note (its 2nd doubled an octave up) falls away
HORN_MAX_BASE_DB = 0.0  # no louder peak at f/2 .. f/7: a note of a chord or tune over its bass is no horn
HORN_MAX_SLOPE_DB_S = 15.0  # a horn holds its level (or builds up in the room) ...
HORN_MAX_DECAY_DB_S = 8.0  # ... where a plucked, struck or sung note decays
HORN_MAX_SPREAD_DB = 16.0  # harmonics 2..5 within 16 dB of each other: a horn's fall off smoothly, a chord's
# (or two tones' mixed) do not

# Columns of the per-peak feature rows: frequency, level, prominence; level of harmonics 2..5 relative to the
# peak (dB); prominence of harmonics 2..5 (dB); 1.0 when the peak looks like a harmonic of a lower fundamental
# (else 0.0); median level of harmonics 4..8 relative to the peak (dB); the loudest peak at f/2 .. f/7
# relative to the peak (dB; NO_PEAK_DB if none): a siren's 3rd or 5th harmonic in the alarm band has its
# fundamental there; the peak's level relative to the frame's total power (dB): an emergency sound is loud,
# its tone carries a fair share of what the microphone hears (a sine alone reads about -1.8 dB); the
# loudest peak a minor to a major third (PARTNER_RATIOS) above or below, relative to the peak (dB;
# NO_PEAK_DB if none): a phone's trill sounds its two tones in every frame, a hi-lo siren one at a time.
F_HZ, LEVEL_DB, PROM_DB, R2, R3, R4, R5, P2, P3, P4, P5, SUB, HIGH, BASE, SHARE, PARTNER = range(16)
N_COLUMNS = 16


@dataclass(frozen=True, slots=True)
class Detection:
    """An emergency sound: `label` (siren, alarm, horn) heard from `onset_s` (stream time, s) to `end_s`
    (None while it lasts). `detected_s` is when the detector decided; `confidence` is in [0, 1]."""

    label: str
    onset_s: float
    end_s: float | None
    confidence: float
    detected_s: float
    pattern: str = ""

    def to_dict(self) -> dict[str, object]:
        return {
            "label": self.label,
            "onset_s": round(self.onset_s, 3),
            "end_s": None if self.end_s is None else round(self.end_s, 3),
            "confidence": round(self.confidence, 3),
        }


def peak_features(power: np.ndarray, bin_hz: float, sample_rate_hz: int) -> np.ndarray:
    """The strongest tonal peaks of each frame and what surrounds them.

    power: (n, n_bins) linear power spectra. Returns (n, MAX_PEAKS, N_COLUMNS) float64 rows of
    the columns named at the top of this module (F_HZ .. PARTNER); the prominence is over the local spectral
    floor, the neighbour is the strongest other peak between 0.3 f and 0.95 f (-inf if none). Rows of absent
    peaks are NaN. Peaks are ordered strongest first.
    """
    n, n_bins = power.shape
    level = 10.0 * np.log10(power.astype(np.float64) + 1e-12)
    w, g = FLOOR_HALF_WIDTH_BINS, FLOOR_GAP_BINS
    padded = np.pad(level, ((0, 0), (w + 1, w)), mode="edge")
    csum = np.cumsum(padded, axis=1)

    def window_sum(half: int) -> np.ndarray:
        return csum[:, w + 1 + half : w + 1 + half + n_bins] - csum[:, w - half : w - half + n_bins]

    floor = (window_sum(w) - window_sum(g)) / (2 * (w - g))
    prominence = level - floor

    # Where each local maximum really sits: parabolic interpolation on the dB spectrum, an offset in bins for
    # every inner bin. It places the frame's top peaks and holds a lower fundamental to its harmonic ratio.
    inner = slice(1, n_bins - 1)
    before, here, after = level[:, :-2], level[:, inner], level[:, 2:]
    curve = before - 2 * here + after
    offset = np.zeros_like(level)
    offset[:, inner] = np.where(curve < 0, 0.5 * (before - after) / np.where(curve < 0, curve, -1.0), 0.0)
    peak_f = (np.arange(n_bins) + offset) * bin_hz

    lo = max(2, int(np.ceil(PEAK_BAND_HZ[0] / bin_hz)))
    hi = min(n_bins - 2, int(PEAK_BAND_HZ[1] / bin_hz), int(0.45 * sample_rate_hz / bin_hz))
    centre = level[:, lo:hi]
    is_peak = (
        (centre > level[:, lo - 1 : hi - 1])
        & (centre >= level[:, lo + 1 : hi + 1])
        & (prominence[:, lo:hi] >= PEAK_MIN_PROMINENCE_DB)
    )
    ranked = np.where(is_peak, centre, -np.inf)
    k = min(MAX_PEAKS, hi - lo)
    top = np.argpartition(-ranked, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(ranked, top, axis=1), axis=1)
    top = np.take_along_axis(top, order, axis=1)
    valid = np.isfinite(np.take_along_axis(ranked, top, axis=1))
    bins = top + lo
    rows = np.arange(n)[:, None]
    out = np.full((n, MAX_PEAKS, N_COLUMNS), np.nan)
    f_hz = peak_f[rows, bins]
    out[:, :k, F_HZ] = f_hz
    out[:, :k, LEVEL_DB] = (
        level[rows, bins] - 0.25 * (level[rows, bins - 1] - level[rows, bins + 1]) * offset[rows, bins]
    )
    out[:, :k, PROM_DB] = prominence[rows, bins]

    def near(spectrum: np.ndarray, f_target_hz: np.ndarray) -> np.ndarray:
        """Largest value of `spectrum` within +-1 bin of each target frequency; NaN beyond the spectrum."""
        centre_bin = np.rint(f_target_hz / bin_hz).astype(np.int64)
        inside = (centre_bin >= 1) & (centre_bin <= n_bins - 2)
        cb = np.clip(centre_bin, 1, n_bins - 2)
        best = np.maximum(np.maximum(spectrum[rows, cb - 1], spectrum[rows, cb]), spectrum[rows, cb + 1])
        return np.where(inside, best, np.nan)

    peak_level = out[:, :k, LEVEL_DB]
    for multiple in (2, 3, 4, 5):
        out[:, :k, R2 + multiple - 2] = near(level, f_hz * multiple) - peak_level
        out[:, :k, P2 + multiple - 2] = near(prominence, f_hz * multiple)
    high = np.stack(
        [near(level, f_hz * multiple) for multiple in range(4, 9)]
    )  # (5, n, k), NaN above Nyquist
    high_sorted = np.sort(np.nan_to_num(high, nan=-np.inf), axis=0)  # the middle one of those present:
    present = np.sum(~np.isnan(high), axis=0)
    middle = np.take_along_axis(high_sorted, (5 - 1 - present // 2)[None], axis=0)[0]
    out[:, :k, HIGH] = np.where(present > 0, middle, np.nan) - peak_level
    # A fundamental is no harmonic of a lower one: for g = f / d (d = 2..6), the spectrum holds neither a peak
    # at g near f's level (d <= 3) nor peaks at most lower multiples of g (all for d = 3, d - 2 of them for
    # d >= 4) within SUBHARMONIC_LEVEL_DB of f. A harmonic of speech, music, an engine or a siren has those.
    peak_map = np.full_like(level, -np.inf)
    local_max = (level[:, inner] > level[:, :-2]) & (level[:, inner] >= level[:, 2:])
    peak_map[:, inner] = np.where(
        local_max & (prominence[:, inner] >= HARMONIC_PRESENT_DB), level[:, inner], -np.inf
    )

    def near_peak(f_target_hz: np.ndarray) -> np.ndarray:
        """Level of the loudest peak within HARMONIC_MATCH_BINS of each target frequency; -inf if none. (The
        +-1 bin of `near` spans +-47 Hz at 16 kHz: an unrelated engine order or note would pass for the
        fundamental under a siren.)"""
        centre_bin = np.clip(np.rint(f_target_hz / bin_hz).astype(np.int64), 1, n_bins - 2)
        best = np.full(f_target_hz.shape, -np.inf)
        for shift in (-1, 0, 1):
            cb = centre_bin + shift
            close = np.abs(peak_f[rows, cb] - f_target_hz) <= HARMONIC_MATCH_BINS * bin_hz
            best = np.maximum(best, np.where(close, peak_map[rows, cb], -np.inf))
        return best

    harmonic_of_lower = np.zeros(f_hz.shape, dtype=bool)
    for divisor in range(2, 7):
        support = np.zeros(f_hz.shape, dtype=np.int64)
        for multiple in range(1, divisor):
            target = f_hz * multiple / divisor
            neighbour = np.where(target >= NEIGHBOUR_MIN_HZ, near_peak(target), -np.inf)
            support += neighbour >= peak_level - SUBHARMONIC_LEVEL_DB
            if (
                multiple == 1 and divisor <= 3
            ):  # a loud fundamental: a 2nd harmonic under it, a 3rd within 6 dB
                harmonic_of_lower |= neighbour >= peak_level - (0.0 if divisor == 2 else 6.0)
        harmonic_of_lower |= support >= (2 if divisor == 3 else divisor - 2 if divisor >= 4 else 99)
    out[:, :k, SUB] = harmonic_of_lower
    bases = np.stack([near_peak(f_hz / divisor) for divisor in range(2, 8)])
    out[:, :k, BASE] = np.maximum(np.max(np.nan_to_num(bases, nan=-np.inf), axis=0) - peak_level, NO_PEAK_DB)
    apart = [  # targets 2 bins or more away from the peak (the +-1 bin search must not find the peak itself)
        target for ratio in PARTNER_RATIOS for target in (f_hz * ratio, f_hz / ratio)
    ]
    partners = np.stack([np.where(np.abs(t - f_hz) >= 2 * bin_hz, near(peak_map, t), -np.inf) for t in apart])
    out[:, :k, PARTNER] = np.maximum(
        np.max(np.nan_to_num(partners, nan=-np.inf), axis=0) - peak_level, NO_PEAK_DB
    )
    total_db = 10.0 * np.log10(np.sum(power, axis=1, dtype=np.float64) + 1e-12)
    out[:, :k, SHARE] = peak_level - total_db[:, None]
    out[:, :k][~valid] = np.nan
    return out


_MISSED = np.full(N_COLUMNS, np.nan)  # the row of a frame where a track lost its peak


def _window_frames(pattern: str) -> int:
    """Frames of evidence a pattern looks back over: the onset is never placed earlier than that."""
    if pattern == "siren-yelp":
        return YELP_FRAMES
    if pattern == "alarm-t4":
        return T4_WINDOW_FRAMES
    return STEADY_FRAMES


def _median(values: np.ndarray) -> float:
    """Median of the non-NaN values of (n,) `values`; -inf when there are none (an absent feature never
    passes a test). Sorting the few values directly is much cheaper than np.median on such short arrays."""
    finite = np.sort(values[~np.isnan(values)])
    n = finite.size
    if n == 0:
        return -np.inf
    return float(0.5 * (finite[(n - 1) // 2] + finite[n // 2]))


def _confidence(prominence_db: float) -> float:
    """A [0.3, 1] confidence from the median prominence of the evidence (6 dB -> 0.3, 30 dB -> 1)."""
    return float(np.clip((prominence_db - 6.0) / 24.0, 0.3, 1.0))


@dataclass(slots=True)
class _Track:
    """One frequency track: the per-frame peak rows since it started (NaN rows for missed frames)."""

    start_index: int
    rows: deque = field(default_factory=lambda: deque(maxlen=32))
    misses: int = 0
    length: int = 0  # frames since the start, misses included
    loudest_db: float = -np.inf
    last_f_hz: float = float("nan")  # frequency of the last frame where the peak was found

    def append(self, row: np.ndarray) -> None:
        self.rows.append(row)
        self.length += 1
        f_hz = float(row[F_HZ])
        if f_hz == f_hz:  # found (not NaN)
            self.last_f_hz = f_hz
            if row[LEVEL_DB] > self.loudest_db:
                self.loudest_db = float(row[LEVEL_DB])

    def predicted_f_hz(self) -> float:
        found = [r[F_HZ] for r in list(self.rows)[-3:] if not np.isnan(r[F_HZ])]
        if len(found) >= 2:
            return float(2 * found[-1] - found[-2])
        return self.last_f_hz

    def recent(self, frames: int) -> np.ndarray:
        """The last `frames` rows, (frames, N_COLUMNS) float64 (NaN rows where the peak was missed)."""
        return np.array(list(self.rows)[-frames:])


@dataclass(frozen=True, slots=True)
class _Burst:
    """A short, stable tone that ended: a candidate beep of a temporal-four CO alarm."""

    start_index: int
    end_index: int
    f_hz: float


@dataclass(slots=True)
class _LabelState:
    active: bool = False
    onset_s: float = 0.0
    last_evidence_s: float = 0.0
    confidence: float = 0.0
    pattern: str = ""


class SafetyDetector:
    """Stream detector of sirens, alarms and horns over `FeatureExtractor` power spectra.

    Feed it with `update(power)` (frames in stream order, (n, n_bins) from an extractor made by
    `make_extractor()`), or with raw samples through `process(samples)`. Both return the events of the
    frames just processed: a Detection with `end_s=None` at an onset, and one with `end_s` set when it ends.
    """

    def __init__(
        self,
        sample_rate_hz: int,
        hold_s: float = DEFAULT_HOLD_S,
        frame_s: float = 0.032,
        hop_s: float = 0.016,
    ) -> None:
        if not 0.0 < hold_s <= 600.0:
            raise ValueError(f"hold_s={hold_s:g} is outside (0, 600]")
        self.sample_rate_hz = int(sample_rate_hz)
        self.hold_s = float(hold_s)
        self.frame_s = frame_s
        self.hop_s = hop_s
        self._extractor = self.make_extractor()
        self.bin_hz = self._extractor.bin_hz
        self._hop_s = self._extractor.hop / self.sample_rate_hz
        self._frame_len_s = self._extractor.frame_length / self.sample_rate_hz
        self._index = 0
        self._tracks: list[_Track] = []
        self._bursts: deque[_Burst] = deque(maxlen=8)
        self._dominant: deque[np.ndarray] = deque(maxlen=YELP_FRAMES)  # strongest peak of the yelp band
        self._states = {label: _LabelState() for label in LABELS}

    def make_extractor(self) -> FeatureExtractor:
        """A FeatureExtractor framed as this detector expects."""
        return FeatureExtractor(self.sample_rate_hz, frame_s=self.frame_s, hop_s=self.hop_s)

    @property
    def active(self) -> bool:
        """True while any emergency is detected (pass-through wanted)."""
        return any(s.active for s in self._states.values())

    @property
    def active_labels(self) -> tuple[str, ...]:
        return tuple(label for label, s in self._states.items() if s.active)

    def process(self, samples: np.ndarray) -> list[Detection]:
        """Run the detector on the next samples of the stream, (n,) float32 mono, full scale 1.0."""
        if self._extractor.push(samples) == 0:
            return []
        return self.update(self._extractor.power)

    def update(self, power: np.ndarray) -> list[Detection]:
        """Run the detector on the next frames of the stream, (n, n_bins) linear power (see features)."""
        if power.ndim != 2 or power.shape[1] != self._extractor.n_bins:
            raise ValueError(
                f"power must be (frames, {self._extractor.n_bins}) for {self.sample_rate_hz} Hz, "
                f"got {power.shape}"
            )
        if power.shape[0] == 0:
            return []
        peaks = peak_features(power, self.bin_hz, self.sample_rate_hz)
        events: list[Detection] = []
        for i in range(peaks.shape[0]):
            evidence = self._step(peaks[i])
            events.extend(self._decide(evidence))
            self._index += 1
        return events

    def finish(self) -> list[Detection]:
        """End every active detection at the end of the stream (for files); returns the end events."""
        now_s = self._end_s(self._index - 1)
        events = []
        for label, state in self._states.items():
            if state.active:
                state.active = False
                events.append(
                    Detection(
                        label, state.onset_s, state.last_evidence_s, state.confidence, now_s, state.pattern
                    )
                )
        return events

    # ------------------------------------------------------------ internals

    def _end_s(self, index: int) -> float:
        return index * self._hop_s + self._frame_len_s

    def _start_s(self, index: int) -> float:
        return index * self._hop_s

    def _step(self, peaks: np.ndarray) -> dict[str, tuple[float, float, str]]:
        """Link this frame's peaks ((MAX_PEAKS, N_COLUMNS)) to tracks; return label -> (onset_s,
        confidence, pattern)."""
        present = [row for row in peaks if not np.isnan(row[F_HZ])]
        claimed = [False] * len(present)
        self._tracks.sort(key=lambda t: -t.loudest_db)
        for track in self._tracks:
            last, pred = track.last_f_hz, track.predicted_f_hz()
            step = TRACK_MAX_STEP if last <= YELP_BAND_HZ[1] else TONE_MAX_STEP
            tolerance = max(TRACK_MIN_STEP_HZ, step * last)
            best, best_err = -1, tolerance
            for j, row in enumerate(present):
                if claimed[j]:
                    continue
                err = min(abs(row[F_HZ] - last), abs(row[F_HZ] - pred))
                if err <= best_err:
                    best, best_err = j, err
            if best >= 0:
                claimed[best] = True
                track.append(present[best])
                track.misses = 0
            else:
                track.append(_MISSED)
                track.misses += 1
        for track in [t for t in self._tracks if t.misses > MAX_MISSES]:
            self._close(track)
        self._tracks = [t for t in self._tracks if t.misses <= MAX_MISSES]
        for j, row in enumerate(present):
            if not claimed[j] and len(self._tracks) < MAX_TRACKS:
                track = _Track(start_index=self._index)
                track.append(row)
                self._tracks.append(track)

        in_band = [row for row in present if YELP_BAND_HZ[0] <= row[F_HZ] <= YELP_BAND_HZ[1]]
        self._dominant.append(max(in_band, key=lambda row: row[LEVEL_DB]) if in_band else _MISSED)
        found = self._yelp_pattern()
        for track in self._tracks:
            if not track.misses:
                found += self._classify(track)
        evidence: dict[str, tuple[float, float, str]] = {}
        for label, confidence, onset_index, pattern in found:
            first = max(onset_index, self._index - _window_frames(pattern) + 1)
            onset_s = self._start_s(first) + 0.5 * self._frame_len_s
            if label not in evidence or confidence > evidence[label][1]:
                evidence[label] = (onset_s, confidence, pattern)
        return evidence

    def _close(self, track: _Track) -> None:
        """Remember a track that ended if it looks like one beep of an alarm."""
        seen = track.length - track.misses
        rows = track.recent(track.length)
        rows = rows[~np.isnan(rows[:, F_HZ])]
        if not T4_BURST_FRAMES[0] <= seen <= T4_BURST_FRAMES[1] or rows.shape[0] < T4_BURST_FRAMES[0]:
            return
        f = rows[:, F_HZ]
        if (
            ALARM_BAND_HZ[0] <= np.median(f) <= ALARM_BAND_HZ[1]
            and np.ptp(f) <= 2 * T4_MAX_REL_STD * np.mean(f)
            and _median(rows[:, PROM_DB]) >= T4_BURST_MIN_PROMINENCE_DB
            and np.mean(rows[:, SUB]) < 0.5
        ):
            self._bursts.append(_Burst(track.start_index, track.start_index + seen - 1, float(np.median(f))))

    def _classify(self, track: _Track) -> list[tuple[str, float, int, str]]:
        """The labels whose pattern the track's recent trajectory matches: (label, confidence, onset index,
        pattern)."""
        found: list[tuple[str, float, int, str]] = []
        if track.length >= STEADY_FRAMES:
            found += self._tonal_patterns(track)
        if 3 <= track.length <= T4_MAX_GAP_FRAMES and self._bursts:
            found += self._t4_pattern(track)
        near_alarm_band = ALARM_BAND_HZ[0] * 0.8 <= track.last_f_hz <= ALARM_BAND_HZ[1] * 1.25
        if track.length >= T4_MIN_FRAMES and near_alarm_band:  # (the band test is cheap; the pattern is not)
            found += self._pulse_pattern(track)
        return found

    def _tonal_patterns(self, track: _Track) -> list[tuple[str, float, int, str]]:
        """Steady or smoothly sweeping tones: an alarm beep, a hi-lo or wail siren, a horn. The cheap tests
        (isolation, band) go first: most tracks of speech and music fail them."""
        rows = track.recent(STEADY_FRAMES)
        ok = ~np.isnan(rows[:, F_HZ])
        if ok.sum() < STEADY_FRAMES - 1:
            return []
        r = rows[ok]
        if np.mean(r[:, SUB]) >= 0.5 or _median(r[:, SHARE]) < MIN_SHARE_DB:  # a harmonic, or a faint tone
            return []
        f = r[:, F_HZ]
        f_mean = float(np.mean(f))
        in_alarm = ALARM_BAND_HZ[0] <= f_mean <= ALARM_BAND_HZ[1]
        in_siren = SIREN_BAND_HZ[0] <= f_mean <= SIREN_BAND_HZ[1]
        in_horn = HORN_BAND_HZ[0] <= f_mean <= HORN_BAND_HZ[1]
        if not (in_alarm or in_siren or in_horn):
            return []
        rel_std = float(np.std(f)) / f_mean
        prom = _median(r[:, PROM_DB])
        confidence = _confidence(prom)
        found: list[tuple[str, float, int, str]] = []
        if (
            in_alarm
            and rel_std <= ALARM_MAX_REL_STD
            and prom >= ALARM_MIN_PROMINENCE_DB
            and _median(r[:, BASE]) < ALARM_MAX_BASE_DB
            and np.ptp(r[:, LEVEL_DB]) <= ALARM_MAX_LEVEL_RANGE_DB
        ):
            found.append(("alarm", confidence, track.start_index, "alarm-steady"))
        if in_siren and self._siren_smooth(
            r, np.flatnonzero(ok).astype(np.float64), f_mean, rel_std, self.bin_hz
        ):
            found.append(("siren", confidence, track.start_index, "siren-smooth"))
        if in_horn and rel_std <= HORN_MAX_REL_STD:
            level_range = float(np.ptp(r[:, LEVEL_DB]))
            slope_db_s = float(np.polyfit(np.flatnonzero(ok) * self._hop_s, r[:, LEVEL_DB], 1)[0])
            present = [_median(r[:, column]) >= HARMONIC_PRESENT_DB for column in (P2, P3, P4, P5)]
            if (
                level_range <= HORN_MAX_LEVEL_RANGE_DB
                and -HORN_MAX_DECAY_DB_S <= slope_db_s <= HORN_MAX_SLOPE_DB_S
                and sum(present) >= HORN_MIN_HARMONICS
                and _median(r[:, HIGH]) >= HORN_MIN_HIGH_DB
                and _median(r[:, HIGH] - np.minimum(r[:, R2], 0.0)) >= HORN_MIN_TILT_DB
                and _median(r[:, BASE]) < HORN_MAX_BASE_DB
                and np.ptp([_median(r[:, column]) for column in (R2, R3, R4, R5)]) <= HORN_MAX_SPREAD_DB
            ):
                found.append(("horn", confidence, track.start_index, "horn-stack"))
        return found

    @staticmethod
    def _siren_smooth(r: np.ndarray, t: np.ndarray, f_mean: float, rel_std: float, bin_hz: float) -> bool:
        """A hi-lo or wail siren in the rows `r` ((m, N_COLUMNS), found peaks only, at frame offsets `t`):
        square-wave drive (odd harmonics: the 3rd near -9.5 dB, the 2nd far below it), a steady level (a
        phone's trill alternates its two tones 16-25 times a second) and a trajectory that is either steady
        or sweeps one way smoothly (a sung vibrato of 4.5-7 Hz goes up and down within the window).
        `bin_hz` is the FFT bin spacing."""
        third_db = _median(r[:, R3])
        if not SIREN_THIRD_DB[0] <= third_db <= SIREN_THIRD_DB[1]:
            return False
        if _median(r[:, P3]) < HARMONIC_PRESENT_DB or _median(r[:, R3] - r[:, R2]) < SIREN_MIN_ODD_EVEN_DB:
            return False
        if _median(r[:, R2]) > SIREN_MAX_SECOND_DB:
            return False
        if _median(r[:, BASE]) >= SIREN_MAX_BASE_DB:
            return False
        if 5 * f_mean <= SIREN_FIFTH_CHECK_HZ and (
            _median(r[:, R5]) < SIREN_MIN_FIFTH_DB or _median(r[:, P5]) < SIREN_MIN_FIFTH_PROMINENCE_DB
        ):
            return False
        jitter_db = float(np.std(np.diff(r[:, LEVEL_DB])))
        if jitter_db > SIREN_MAX_LEVEL_JITTER_DB:
            return False
        partner_db = _median(r[:, PARTNER])
        if partner_db >= SIREN_MAX_PARTNER_DB or (
            partner_db >= SIREN_MAX_TRILL_PARTNER_DB and jitter_db >= SIREN_TRILL_JITTER_DB
        ):
            return False
        f = r[:, F_HZ]
        steps = np.diff(f)
        if rel_std > SIREN_STEADY_REL_STD and abs(steps.sum()) < SIREN_MIN_MONOTONY * np.abs(steps).sum():
            return False
        fit = np.polyval(np.polyfit(t, f, 2), t)
        residual_hz = float(np.sqrt(np.mean((f - fit) ** 2)))
        return residual_hz <= max(SIREN_MAX_RESIDUAL * f_mean, SIREN_MAX_RESIDUAL_BINS * bin_hz)

    def _yelp_pattern(self) -> list[tuple[str, float, int, str]]:
        """The dominant tone of the siren band sweeping fast, steadily one way then the other, in small steps,
        isolated and with odd harmonics. The sweep smears and splits peaks, so this follows the strongest
        peak of the band frame by frame rather than one track."""
        if len(self._dominant) < YELP_FRAMES:
            return []
        rows = np.array(self._dominant)
        ok = ~np.isnan(rows[:, F_HZ])
        r = rows[ok]
        if r.shape[0] < YELP_MIN_FRAMES:
            return []
        f = r[:, F_HZ]
        steps = np.diff(f)
        if np.any(np.abs(steps) > YELP_MAX_STEP * f[:-1]):
            return []
        if (
            np.mean(r[:, SUB]) >= 0.5
            or _median(r[:, SHARE]) < MIN_SHARE_DB
            or _median(r[:, P3]) < YELP_MIN_H3_DB
            or _median(r[:, R3]) < YELP_MIN_R3_DB
            or _median(r[:, R3] - r[:, R2]) < YELP_MIN_ODD_EVEN_DB
            or _median(r[:, P3]) > YELP_MAX_P3_DB
            or _median(r[:, P5]) > YELP_MAX_P5_DB
        ):
            return []
        same_way = float(np.mean(np.sign(steps[1:]) == np.sign(steps[:-1])))
        moving = float(np.mean(np.abs(steps) >= YELP_MIN_STEP * f[:-1]))
        if (
            np.ptp(f) < YELP_MIN_RANGE * np.mean(f)
            or same_way < YELP_MIN_CONSISTENCY
            or moving < YELP_MIN_MOVING
        ):
            return []
        onset_index = self._index - YELP_FRAMES + 1 + int(np.argmax(ok))
        return [("siren", _confidence(_median(r[:, PROM_DB])), onset_index, "siren-yelp")]

    def _t4_pattern(self, track: _Track) -> list[tuple[str, float, int, str]]:
        """A new beep at the frequency of a short beep that ended 30-190 ms before: the CO cadence."""
        rows = track.recent(track.length)
        r = rows[~np.isnan(rows[:, F_HZ])]
        if (
            r.shape[0] < 3
            or np.mean(r[:, SUB]) >= 0.5
            or _median(r[:, SHARE]) < MIN_SHARE_DB
            or _median(r[:, BASE]) >= T4_MAX_BASE_DB
        ):
            return []
        f_now = float(np.median(r[:, F_HZ]))
        if (
            not ALARM_BAND_HZ[0] <= f_now <= ALARM_BAND_HZ[1]
            or np.ptp(r[:, F_HZ]) > 2 * T4_MAX_REL_STD * f_now
        ):
            return []
        for burst in self._bursts:
            gap = track.start_index - burst.end_index
            if 2 <= gap <= T4_MAX_GAP_FRAMES and abs(burst.f_hz - f_now) <= T4_MAX_FREQ_DIFF * f_now:
                return [("alarm", _confidence(_median(r[:, PROM_DB])), burst.start_index, "alarm-t4")]
        return []

    def _pulse_pattern(self, track: _Track) -> list[tuple[str, float, int, str]]:
        """One alarm-band tone pulsing: two onsets (a rise of T4_RISE_DB within two frames) 130-260 ms apart
        at one pitch. This is the CO cadence when reverberation bridges the 0.1 s gaps between beeps."""
        rows = track.recent(T4_WINDOW_FRAMES)
        ok = ~np.isnan(rows[:, F_HZ])
        if ok.sum() < 4:
            return []
        level = rows[:, LEVEL_DB]
        loud = ok & (level >= np.nanmax(level) - 6.0)
        f = rows[loud, F_HZ]
        f_mid = float(np.median(f))
        if not ALARM_BAND_HZ[0] <= f_mid <= ALARM_BAND_HZ[1] or np.std(f) > T4_MAX_REL_STD * f_mid:
            return []
        if (
            np.mean(rows[loud, SUB]) >= 0.5
            or _median(rows[loud, SHARE]) < MIN_SHARE_DB
            or _median(rows[loud, PROM_DB]) < T4_MIN_PROMINENCE_DB
            or _median(rows[loud, BASE]) >= T4_MAX_BASE_DB
        ):
            return []
        filled = np.where(ok, level, np.nanmin(level) - T4_RISE_DB)
        onsets: list[int] = [0] if track.length <= rows.shape[0] else []  # the track's start is an onset
        for i in range(2, filled.size):
            if filled[i] - min(filled[i - 2], filled[i - 1]) >= T4_RISE_DB and (
                not onsets or i - onsets[-1] > 3
            ):
                onsets.append(i)
        pairs = [
            (a, b)
            for a, b in itertools.pairwise(onsets)
            if T4_PERIOD_FRAMES[0] <= b - a <= T4_PERIOD_FRAMES[1]
            and loud[a:b].sum() >= T4_MIN_LOUD_FRAMES
            and loud[b:].sum() >= T4_MIN_LOUD_FRAMES
        ]
        if not pairs:
            return []
        first = self._index - rows.shape[0] + 1 + pairs[0][0]
        return [("alarm", _confidence(_median(rows[loud, PROM_DB])), first - 1, "alarm-t4")]

    def _decide(self, evidence: dict[str, tuple[float, float, str]]) -> list[Detection]:
        now_s = self._end_s(self._index)
        events = []
        for label, state in self._states.items():
            if label in evidence:
                onset_s, confidence, pattern = evidence[label]
                state.last_evidence_s = now_s
                if not state.active:
                    state.active = True
                    state.onset_s = onset_s
                    state.confidence = confidence
                    state.pattern = pattern
                    events.append(Detection(label, onset_s, None, confidence, now_s, pattern))
                else:
                    state.confidence = max(state.confidence, confidence)
            elif state.active:
                hold_s = max(self.hold_s, ALARM_MIN_HOLD_S) if label == "alarm" else self.hold_s
                if now_s - state.last_evidence_s >= hold_s:
                    state.active = False
                    events.append(
                        Detection(
                            label,
                            state.onset_s,
                            state.last_evidence_s,
                            state.confidence,
                            now_s,
                            state.pattern,
                        )
                    )
        return events
