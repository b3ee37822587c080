"""Labelled synthetic scenes for the emergency-sound detector: its test set and its benchmark.

Emergencies: sirens (wail, yelp, hi-lo), smoke alarms (ISO 8201 / NFPA 72 temporal-three) and CO alarms
(NFPA 720 temporal-four), car horns (single and two-tone). Backgrounds: speech-like babble, music-like
chords with drums, engine noise with orders, HVAC broadband noise with fan tones. Distractors that must
NOT be detected: a held sung note, a whistled tune, a phone ring, a microwave beep, bird chirps.

Every scene is deterministic for a given (kind, background, SNR, sample rate, seed). The SNR is the power
of the foreground (emergency or distractor) over the samples where it sounds, against the power of the
background over the whole scene, in dB. Backgrounds sit at BACKGROUND_DBFS RMS.
Generation needs scipy (the `dev` extra); the detector itself does not.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import signal

BACKGROUND_DBFS = -30.0
SNRS_DB = (10.0, 5.0, 0.0, -5.0)
EMERGENCY_KINDS: dict[str, str] = {
    "siren-wail": "siren",
    "siren-yelp": "siren",
    "siren-hilo": "siren",
    "alarm-t3": "alarm",
    "alarm-t4": "alarm",
    "horn-single": "horn",
    "horn-two-tone": "horn",
}
BACKGROUNDS = ("speech", "music", "engine", "hvac")
DISTRACTORS = ("sung-note", "whistle", "phone-ring", "microwave-beep", "bird-chirp")

# ISO 8201 temporal-three: 0.5 s on, 0.5 s off, three times, the last off lasting 1.5 s (4 s cycle).
T3_ON_S, T3_OFF_S, T3_PAUSE_S = 0.5, 0.5, 1.5
# NFPA 720 temporal-four (CO): 0.1 s on, 0.1 s off, four times, then 5 s off.
T4_ON_S, T4_OFF_S, T4_PAUSE_S = 0.1, 0.1, 5.0


@dataclass(frozen=True, slots=True)
class Event:
    """One labelled emergency in a scene: `label` sounds from `onset_s` to `end_s` (scene time, s)."""

    label: str
    kind: str
    onset_s: float
    end_s: float


@dataclass(frozen=True, slots=True)
class Scene:
    """A mono scene: `samples` (n,) float32 at `sample_rate_hz`, full scale 1.0, and its ground truth."""

    name: str
    kind: str
    background: str | None
    snr_db: float | None
    sample_rate_hz: int
    samples: np.ndarray
    events: tuple[Event, ...]

    @property
    def duration_s(self) -> float:
        return self.samples.shape[0] / self.sample_rate_hz


def _rng(*parts: object) -> np.random.Generator:
    return np.random.default_rng([zlib.crc32(repr(p).encode()) for p in parts])


def _phase(f_hz: np.ndarray, sample_rate_hz: int, rng: np.random.Generator) -> np.ndarray:
    """Running phase (rad) of an oscillator following `f_hz` ((n,) Hz), from a random start."""
    return rng.uniform(0, 2 * np.pi) + 2 * np.pi * np.cumsum(f_hz) / sample_rate_hz


def harmonic_tone(
    f_hz: np.ndarray,
    sample_rate_hz: int,
    amplitude_of: Callable[[int, np.ndarray], np.ndarray | float],
    rng: np.random.Generator,
    max_harmonics: int = 24,
) -> np.ndarray:
    """Sum of harmonics k = 1.. of a fundamental following `f_hz` ((n,) Hz), (n,) float64.

    `amplitude_of(k, f_k_hz)` gives the amplitude of harmonic k (a scalar or (n,) array) at its frequency;
    harmonics above 0.45 * sample rate are left out sample by sample.
    """
    phase = _phase(f_hz, sample_rate_hz, rng)
    out = np.zeros(f_hz.shape[0])
    for k in range(1, max_harmonics + 1):
        f_k = k * f_hz
        audible = f_k < 0.45 * sample_rate_hz
        if not audible.any():
            break
        out += np.where(audible, amplitude_of(k, f_k), 0.0) * np.sin(k * phase + rng.uniform(0, 2 * np.pi))
    return out


def _ramp_envelope(
    gates: list[tuple[float, float]], n: int, sample_rate_hz: int, ramp_s: float
) -> np.ndarray:
    """(n,) float64 gain: 1 inside each (start_s, end_s) gate, with raised-cosine ramps of `ramp_s`."""
    env = np.zeros(n)
    t = np.arange(n) / sample_rate_hz
    for start_s, end_s in gates:
        rise = np.clip((t - start_s) / ramp_s, 0.0, 1.0)
        fall = np.clip((end_s - t) / ramp_s, 0.0, 1.0)
        env = np.maximum(env, np.sin(0.5 * np.pi * np.minimum(rise, fall)) ** 2)
    return env


def _reverb(x: np.ndarray, sample_rate_hz: int, rng: np.random.Generator) -> np.ndarray:
    """`x` plus a diffuse exponential tail (RT60 0.15-0.6 s, direct-to-reverb 0-10 dB), same length."""
    rt60_s = rng.uniform(0.15, 0.6)
    n_ir = int(rt60_s * sample_rate_hz)
    t = np.arange(n_ir) / sample_rate_hz
    tail = rng.standard_normal(n_ir) * 10 ** (-3 * t / rt60_s)
    tail[: int(0.005 * sample_rate_hz)] = 0.0  # first reflections arrive after 5 ms
    tail *= 10 ** (-rng.uniform(0, 10) / 20) / np.sqrt(np.sum(tail**2))
    wet = signal.fftconvolve(x, tail)[: x.shape[0]]
    return x + wet


def _horn_speaker_gain(f_hz: np.ndarray | float) -> np.ndarray:
    """Amplitude response of a siren's horn loudspeaker: band-pass, roughly 400 Hz to 4 kHz."""
    f = np.asarray(f_hz)
    return 1.0 / np.sqrt((1 + (400.0 / f) ** 4) * (1 + (f / 4000.0) ** 4))


def _siren_amplitude(rng: np.random.Generator) -> Callable[[int, np.ndarray], np.ndarray | float]:
    """Square-wave drive (odd harmonics 1/k, even ones 22-32 dB down) through a horn loudspeaker."""
    even_db = rng.uniform(22, 32)

    def amp(k: int, f_k: np.ndarray) -> np.ndarray:
        base = 1.0 / k if k % 2 else 10 ** (-even_db / 20) / k
        return base * _horn_speaker_gain(f_k)

    return amp


def _doppler(n: int, sample_rate_hz: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Frequency factor and amplitude gain ((n,) each) of a vehicle passing at 10-30 m/s."""
    t = np.arange(n) / sample_rate_hz
    t_pass = rng.uniform(0.3, 1.0) * t[-1]
    speed_ratio = rng.uniform(10, 30) / 343.0
    closeness_s = rng.uniform(1.0, 4.0)
    shape = np.tanh((t - t_pass) / closeness_s)
    factor = 1.0 - speed_ratio * 0.5 * shape
    gain = 10 ** (-6 * np.abs(shape) / 20)
    return factor, gain


def siren(kind: str, n: int, sample_rate_hz: int, rng: np.random.Generator) -> np.ndarray:
    """A siren of `kind` (wail, yelp, hilo), n samples, with harmonics and Doppler drift, (n,) float64."""
    t = np.arange(n) / sample_rate_hz
    lo_hz, hi_hz = rng.uniform(550, 750), rng.uniform(1250, 1600)
    if kind == "wail":
        period_s = rng.uniform(2.0, 5.0)
        f_hz = lo_hz + (hi_hz - lo_hz) * (0.5 - 0.5 * np.cos(2 * np.pi * t / period_s + rng.uniform(0, 6.3)))
    elif kind == "yelp":
        rate_hz = rng.uniform(3.0, 5.0)
        cycle = (t * rate_hz + rng.uniform(0, 1)) % 1.0
        if rng.uniform() < 0.5:
            shape = 0.5 - 0.5 * np.cos(2 * np.pi * cycle)
        else:  # triangle, rising for 60-80 % of the cycle
            rise = rng.uniform(0.6, 0.8)
            shape = np.where(cycle < rise, cycle / rise, (1 - cycle) / (1 - rise))
        f_hz = lo_hz + (hi_hz - lo_hz) * shape
    elif kind == "hilo":
        pairs = ((450.0, 600.0), (435.0, 580.0), (770.0, 960.0), (660.0, 880.0))
        a_hz, b_hz = pairs[int(rng.integers(len(pairs)))]
        half_s = rng.uniform(0.4, 0.65)
        step = ((t / half_s + rng.integers(2)) % 2.0) < 1.0
        f_hz = np.where(step, a_hz, b_hz)
        glide = max(1, int(0.005 * sample_rate_hz))
        f_hz = np.convolve(f_hz, np.ones(glide) / glide, mode="same")
    else:
        raise ValueError(f"siren kind {kind!r}: allowed values: wail, yelp, hilo")
    factor, gain = _doppler(n, sample_rate_hz, rng)
    return gain * harmonic_tone(f_hz * factor, sample_rate_hz, _siren_amplitude(rng), rng)


def _pattern_gates(
    on_s: float, off_s: float, count: int, pause_s: float, duration_s: float, rng: np.random.Generator
) -> list[tuple[float, float]]:
    """(start_s, end_s) of each beep of a temporal pattern, every timing jittered by up to 10 %."""
    gates, t = [], 0.0
    while t < duration_s:
        for i in range(count):
            on = on_s * rng.uniform(0.9, 1.1)
            gates.append((t, min(t + on, duration_s)))
            t += on + (off_s if i < count - 1 else pause_s) * rng.uniform(0.9, 1.1)
            if t >= duration_s:
                break
    return [g for g in gates if g[1] > g[0]]


def alarm(kind: str, n: int, sample_rate_hz: int, rng: np.random.Generator) -> tuple[np.ndarray, list]:
    """A piezo smoke (t3) or CO (t4) alarm, (n,) float64, and the (start_s, end_s) of its beeps."""
    if kind == "t3":
        f0_hz = rng.uniform(2900, 3500)
        gates = _pattern_gates(T3_ON_S, T3_OFF_S, 3, T3_PAUSE_S, n / sample_rate_hz, rng)
    elif kind == "t4":
        f0_hz = rng.uniform(2500, 3500)
        gates = _pattern_gates(T4_ON_S, T4_OFF_S, 4, T4_PAUSE_S, n / sample_rate_hz, rng)
    else:
        raise ValueError(f"alarm kind {kind!r}: allowed values: t3, t4")
    drift = 1 + 0.001 * np.sin(2 * np.pi * np.arange(n) / sample_rate_hz / rng.uniform(3, 9))
    third_db, fifth_db = rng.uniform(10, 20), rng.uniform(18, 30)

    def amp(k: int, f_k: np.ndarray) -> float:
        return {1: 1.0, 3: 10 ** (-third_db / 20), 5: 10 ** (-fifth_db / 20)}.get(k, 0.0)

    tone = harmonic_tone(np.full(n, f0_hz) * drift, sample_rate_hz, amp, rng, max_harmonics=5)
    return tone * _ramp_envelope(gates, n, sample_rate_hz, 0.003), gates


def horn(kind: str, n: int, sample_rate_hz: int, rng: np.random.Generator) -> tuple[np.ndarray, list]:
    """A car horn (single or two-tone), honked 1-3 times, (n,) float64, and the (start_s, end_s) of honks."""
    if kind == "single":
        fundamentals = [rng.uniform(300, 500)]
    elif kind == "two-tone":
        low = rng.uniform(330, 420)
        fundamentals = [low, low * rng.uniform(1.2, 1.3)]
    else:
        raise ValueError(f"horn kind {kind!r}: allowed values: single, two-tone")
    duration_s = n / sample_rate_hz
    gates, t = [], 0.0
    for _ in range(int(rng.integers(1, 4))):
        length = rng.uniform(0.3, 1.5)
        gates.append((t, min(t + length, duration_s)))
        t += length + rng.uniform(0.15, 0.5)
        if t >= duration_s:
            break
    brass_hz = rng.uniform(1800, 3000)

    def amp(k: int, f_k: np.ndarray) -> np.ndarray:
        resonance = 1 + 2.0 / (1 + ((f_k - brass_hz) / 600.0) ** 2)
        return k**-0.8 * resonance / (1 + (f_k / 5000.0) ** 2)

    out = np.zeros(n)
    jitter = 1 + 0.0015 * rng.standard_normal(n).cumsum() / np.sqrt(n)
    for f0 in fundamentals:
        out += harmonic_tone(np.full(n, f0) * jitter, sample_rate_hz, amp, rng)
    return out * _ramp_envelope(gates, n, sample_rate_hz, 0.015), gates


# ---------------------------------------------------------------- backgrounds


VOWELS_HZ = (  # F1, F2, F3 of five vowels (adult speaker)
    (730, 1090, 2440),
    (270, 2290, 3010),
    (300, 870, 2240),
    (530, 1840, 2480),
    (570, 840, 2410),
)


def _resonator(f_hz: float, bandwidth_hz: float, sample_rate_hz: int) -> tuple[np.ndarray, np.ndarray]:
    r = np.exp(-np.pi * bandwidth_hz / sample_rate_hz)
    theta = 2 * np.pi * f_hz / sample_rate_hz
    return np.array([1 - r]), np.array([1.0, -2 * r * np.cos(theta), r * r])


def voiced(
    f0_hz: np.ndarray, formants_hz: tuple[float, ...], sample_rate_hz: int, rng: np.random.Generator
) -> np.ndarray:
    """A glottal pulse train following `f0_hz` ((n,) Hz) through formant resonators, (n,) float64."""
    cycles = np.cumsum(f0_hz) / sample_rate_hz + rng.uniform()
    pulses = np.diff(np.floor(cycles), prepend=np.floor(cycles[0])).astype(np.float64)
    source = signal.lfilter([1.0], [1.0, -0.95], signal.lfilter([1.0], [1.0, -0.9], pulses))
    source -= signal.lfilter([1.0], [1.0, -0.999], source) * 0.001
    out = np.zeros_like(source)
    for i, f in enumerate(formants_hz):
        if f < 0.45 * sample_rate_hz:
            b, a = _resonator(f, 60.0 + 30.0 * i, sample_rate_hz)
            out += signal.lfilter(b, a, source) * (1.0, 0.6, 0.3)[i]
    return out


def speech(n: int, sample_rate_hz: int, rng: np.random.Generator) -> np.ndarray:
    """Babble of one or two talkers: syllables (voiced vowels, some fricatives), phrases, pauses."""
    out = np.zeros(n)
    for _talker in range(int(rng.integers(1, 3))):
        base_hz = rng.uniform(90, 230)
        t = rng.uniform(0, 0.5)
        while t < n / sample_rate_hz:
            for _syllable in range(int(rng.integers(3, 12))):
                length = rng.uniform(0.12, 0.3)
                i0, i1 = int(t * sample_rate_hz), min(n, int((t + length) * sample_rate_hz))
                if i1 - i0 < 16:
                    break
                m = i1 - i0
                glide = rng.uniform(-0.25, 0.25)
                f0 = base_hz * (1 + rng.uniform(-0.15, 0.15)) * (1 + glide * np.linspace(0, 1, m))
                syl = voiced(f0, VOWELS_HZ[int(rng.integers(len(VOWELS_HZ)))], sample_rate_hz, rng)
                env = np.sin(np.pi * np.linspace(0, 1, m)) ** 0.7
                out[i0:i1] += syl * env * rng.uniform(0.5, 1.0)
                if rng.uniform() < 0.4:  # a fricative before the next syllable
                    f_len = int(rng.uniform(0.04, 0.12) * sample_rate_hz)
                    j0, j1 = i1, min(n, i1 + f_len)
                    hiss = signal.lfilter([1, -1], [1, -0.3], rng.standard_normal(j1 - j0))
                    out[j0:j1] += 0.05 * hiss * np.hanning(j1 - j0)
                t += length + rng.uniform(0.03, 0.15)
            t += rng.uniform(0.3, 0.9)
    return out


def music(n: int, sample_rate_hz: int, rng: np.random.Generator) -> np.ndarray:
    """Chords changing every 2-4 beats (plucked or pad), a melody, bass, kick, snare and hi-hat."""
    beat_s = 60.0 / rng.uniform(80, 140)
    out = np.zeros(n)
    t_axis = np.arange(n) / sample_rate_hz
    root = int(rng.integers(45, 57))
    scale = np.array([0, 2, 4, 5, 7, 9, 11])
    timbre = "pluck" if rng.uniform() < 0.5 else "pad"
    t = 0.0
    while t < t_axis[-1]:
        length_s = beat_s * int(rng.choice([2, 4]))
        degree = int(rng.integers(7))
        chord = [root + scale[(degree + s) % 7] + 12 * ((degree + s) // 7) for s in (0, 2, 4)]
        i0, i1 = int(t * sample_rate_hz), min(n, int((t + length_s) * sample_rate_hz))
        local = t_axis[i0:i1] - t
        for midi in [chord[0] - 12, *chord]:
            f = 440.0 * 2 ** ((midi - 69) / 12)
            if timbre == "pluck":
                env = np.exp(-local / rng.uniform(0.3, 0.9)) * np.minimum(1, local / 0.005)
                tone = harmonic_tone(np.full(i1 - i0, f), sample_rate_hz, lambda k, fk: k**-1.5, rng, 10)
            else:
                env = np.minimum(1, local / 0.15) * np.minimum(1, (local[-1] - local) / 0.1 + 1e-3)
                detune = 1 + 0.002 * np.sin(2 * np.pi * 0.7 * local)
                tone = harmonic_tone(f * detune, sample_rate_hz, lambda k, fk: k**-2.0, rng, 8)
            out[i0:i1] += 0.3 * env * tone
        for b in range(round(length_s / beat_s) * 2):  # melody in eighth notes, sometimes rests
            if rng.uniform() < 0.3:
                continue
            s0 = i0 + int(b * beat_s / 2 * sample_rate_hz)
            s1 = min(i1, s0 + int(beat_s / 2 * sample_rate_hz))
            if s1 - s0 < 16:
                continue
            midi = root + 12 + scale[int(rng.integers(7))] + 12 * int(rng.integers(2))
            f = 440.0 * 2 ** ((midi - 69) / 12)
            local_m = np.arange(s1 - s0) / sample_rate_hz
            vib = 1 + 0.004 * np.sin(2 * np.pi * 5.5 * local_m)
            env = np.minimum(1, local_m / 0.02) * np.exp(-local_m / 0.4)
            out[s0:s1] += 0.25 * env * harmonic_tone(f * vib, sample_rate_hz, lambda k, fk: 1.0 / k, rng, 12)
        t += length_s
    # drums: kick on beats 1 and 3, snare on 2 and 4, hi-hat on eighths
    for b in range(int(t_axis[-1] / beat_s * 2) + 1):
        s0 = int(b * beat_s / 2 * sample_rate_hz)
        if s0 >= n:
            break
        hit = min(n - s0, int(0.25 * sample_rate_hz))
        local = np.arange(hit) / sample_rate_hz
        if b % 4 == 0:
            f = 50 + 100 * np.exp(-local / 0.03)
            out[s0 : s0 + hit] += (
                0.8 * np.sin(2 * np.pi * np.cumsum(f) / sample_rate_hz) * np.exp(-local / 0.12)
            )
        elif b % 4 == 2:
            noise = rng.standard_normal(hit)
            out[s0 : s0 + hit] += 0.3 * (noise + np.sin(2 * np.pi * 200 * local)) * np.exp(-local / 0.08)
        hat = signal.lfilter([1, -1], [1.0], rng.standard_normal(hit)) * np.exp(-local / 0.03)
        out[s0 : s0 + hit] += 0.05 * hat
    return out


def engine(n: int, sample_rate_hz: int, rng: np.random.Generator) -> np.ndarray:
    """Engine orders (half orders up to 12, emphasis on 2, 4 and 6) of a wandering RPM, plus road noise."""
    steps = max(2, int(n / sample_rate_hz / 2) + 2)
    rpm_knots = np.clip(np.cumsum(rng.normal(0, 500, steps)) + rng.uniform(1200, 3000), 800, 4500)
    rpm = np.interp(np.arange(n), np.linspace(0, n, steps), rpm_knots)
    crank_hz = rpm / 60.0
    out = np.zeros(n)
    for order in np.arange(0.5, 12.5, 0.5):
        weight = 1.0 if order in (2.0, 4.0, 6.0) else 0.15 / order
        f = crank_hz * order
        out += weight * np.where(f < 0.45 * sample_rate_hz, 1.0, 0.0) * np.sin(_phase(f, sample_rate_hz, rng))
    road = signal.lfilter([1.0], [1.0, -0.98], rng.standard_normal(n)) * 0.05
    return out + road


def hvac(n: int, sample_rate_hz: int, rng: np.random.Generator) -> np.ndarray:
    """Duct rumble (red-ish broadband noise), a fan blade-pass tone with harmonics and mains hum."""
    rumble = signal.lfilter([1.0], [1.0, -0.97], rng.standard_normal(n)) * 0.1
    hiss = rng.standard_normal(n) * 0.05
    bpf = rng.uniform(80, 250) * (1 + 0.002 * np.sin(2 * np.pi * np.arange(n) / sample_rate_hz / 7.0))
    fan = harmonic_tone(bpf, sample_rate_hz, lambda k, fk: 0.3 * 0.5**k, rng, 4)
    mains = float(rng.choice([50.0, 60.0]))
    hum = harmonic_tone(np.full(n, 2 * mains), sample_rate_hz, lambda k, fk: 0.1 * 0.4**k, rng, 3)
    return rumble + hiss + fan + hum


BACKGROUND_MAKERS: dict[str, Callable[[int, int, np.random.Generator], np.ndarray]] = {
    "speech": speech,
    "music": music,
    "engine": engine,
    "hvac": hvac,
}


# ---------------------------------------------------------------- distractors (never emergencies)


def sung_note(n: int, sample_rate_hz: int, rng: np.random.Generator) -> tuple[np.ndarray, list]:
    """Held sung notes (1-3 s, 180-750 Hz) with vibrato (4.5-6.5 Hz, 25-70 cents) on a vowel."""
    out, gates, t = np.zeros(n), [], rng.uniform(0, 0.5)
    while t < n / sample_rate_hz - 0.3:
        length = rng.uniform(1.0, 3.0)
        i0, i1 = int(t * sample_rate_hz), min(n, int((t + length) * sample_rate_hz))
        local = np.arange(i1 - i0) / sample_rate_hz
        extent = rng.uniform(25, 70) / 1200 * np.minimum(1, local / 0.15)
        f0 = rng.uniform(180, 750) * 2 ** (extent * np.sin(2 * np.pi * rng.uniform(4.5, 6.5) * local))
        note = voiced(f0, VOWELS_HZ[int(rng.integers(len(VOWELS_HZ)))], sample_rate_hz, rng)
        out[i0:i1] += note * np.minimum(1, local / 0.08) * np.minimum(1, (local[-1] - local) / 0.1)
        gates.append((t, t + length))
        t += length + rng.uniform(0.3, 1.0)
    return out, gates


def whistle(n: int, sample_rate_hz: int, rng: np.random.Generator) -> tuple[np.ndarray, list]:
    """A whistled tune: pure-tone notes of 700-2800 Hz with glides, pitch wander and breath noise."""
    out, gates, t = np.zeros(n), [], rng.uniform(0, 0.3)
    f_prev = rng.uniform(900, 2000)
    while t < n / sample_rate_hz - 0.2:
        length = rng.uniform(0.15, 0.8)
        i0, i1 = int(t * sample_rate_hz), min(n, int((t + length) * sample_rate_hz))
        m = i1 - i0
        f_next = float(np.clip(f_prev * 2 ** (rng.integers(-5, 6) / 12), 700, 2800))
        glide = np.minimum(1, np.arange(m) / (0.04 * sample_rate_hz))
        wander = 1 + rng.uniform(0.003, 0.01) * np.sin(
            2 * np.pi * rng.uniform(3, 7) * np.arange(m) / sample_rate_hz
        )
        f = (f_prev + (f_next - f_prev) * glide) * wander
        env = np.sin(np.pi * np.linspace(0, 1, m)) ** 0.3
        breath = signal.lfilter([1, -1], [1.0], rng.standard_normal(m)) * 0.03
        out[i0:i1] += env * (np.sin(_phase(f, sample_rate_hz, rng)) + breath)
        gates.append((t, t + length))
        f_prev = f_next
        t += length + rng.uniform(0.02, 0.3)
    return out, gates


def phone_ring(n: int, sample_rate_hz: int, rng: np.random.Generator) -> tuple[np.ndarray, list]:
    """A phone ringing: an electronic trill (two tones alternating at 16-25 Hz) or a dual-tone bell
    cadence (440+480 Hz, 2 s on 4 s off; or 400+450 Hz, 0.4 on 0.2 off 0.4 on 2 s off)."""
    t = np.arange(n) / sample_rate_hz
    style = int(rng.integers(3))
    if style == 0:
        a_hz = rng.uniform(900, 1300)
        b_hz = a_hz * rng.uniform(1.15, 1.35)
        f = np.where((t * rng.uniform(16, 25)) % 1.0 < 0.5, a_hz, b_hz)
        tone = harmonic_tone(f, sample_rate_hz, lambda k, fk: (1.0 / k) if k % 2 else 0.0, rng, 5)
        gates = _pattern_gates(1.0, 2.0, 1, 2.0, t[-1], rng)
    elif style == 1:
        tone = np.sin(_phase(np.full(n, 440.0), sample_rate_hz, rng))
        tone += np.sin(_phase(np.full(n, 480.0), sample_rate_hz, rng))
        gates = _pattern_gates(2.0, 4.0, 1, 4.0, t[-1], rng)
    else:
        tone = np.sin(_phase(np.full(n, 400.0), sample_rate_hz, rng))
        tone += np.sin(_phase(np.full(n, 450.0), sample_rate_hz, rng))
        gates = _pattern_gates(0.4, 0.2, 2, 2.0, t[-1], rng)
    return tone * _ramp_envelope(gates, n, sample_rate_hz, 0.01), gates


def microwave_beep(n: int, sample_rate_hz: int, rng: np.random.Generator) -> tuple[np.ndarray, list]:
    """Single short appliance beeps (0.1-0.5 s) at 1.8-2.2 kHz, seconds apart."""
    gates, t = [], rng.uniform(0.2, 1.0)
    while t < n / sample_rate_hz - 0.6:
        gates.append((t, t + rng.uniform(0.1, 0.5)))
        t = gates[-1][1] + rng.uniform(1.0, 4.0)
    f = np.full(n, rng.uniform(1800, 2200))
    tone = harmonic_tone(f, sample_rate_hz, lambda k, fk: (1.0 / k) if k % 2 else 0.0, rng, 5)
    return tone * _ramp_envelope(gates, n, sample_rate_hz, 0.003), gates


def bird_chirp(n: int, sample_rate_hz: int, rng: np.random.Generator) -> tuple[np.ndarray, list]:
    """Phrases of 3-10 tonal chirps, each a 40-200 ms sweep within 2.2-7 kHz (kept below Nyquist)."""
    out, gates, t = np.zeros(n), [], rng.uniform(0, 0.5)
    top_hz = min(7000.0, 0.42 * sample_rate_hz)
    while t < n / sample_rate_hz - 0.3:
        for _ in range(int(rng.integers(3, 11))):
            length = rng.uniform(0.04, 0.2)
            i0, i1 = int(t * sample_rate_hz), min(n, int((t + length) * sample_rate_hz))
            if i1 - i0 < 16:
                break
            f_a, f_b = rng.uniform(2200, top_hz, 2)
            f = np.linspace(f_a, f_b, i1 - i0)
            out[i0:i1] += np.sin(_phase(f, sample_rate_hz, rng)) * np.hanning(i1 - i0)
            gates.append((t, t + length))
            t += length + rng.uniform(0.02, 0.12)
        t += rng.uniform(0.5, 2.0)
    return out, gates


DISTRACTOR_MAKERS: dict[str, Callable[[int, int, np.random.Generator], tuple[np.ndarray, list]]] = {
    "sung-note": sung_note,
    "whistle": whistle,
    "phone-ring": phone_ring,
    "microwave-beep": microwave_beep,
    "bird-chirp": bird_chirp,
}


# ---------------------------------------------------------------- mixing


def _background(name: str, n: int, sample_rate_hz: int, rng: np.random.Generator) -> np.ndarray:
    if name not in BACKGROUND_MAKERS:
        raise ValueError(f"background {name!r}: allowed values: {', '.join(BACKGROUNDS)}")
    x = BACKGROUND_MAKERS[name](n, sample_rate_hz, rng)
    return x * (10 ** (BACKGROUND_DBFS / 20) / max(np.sqrt(np.mean(x**2)), 1e-12))


def _mix(
    background: np.ndarray, foreground: np.ndarray, snr_db: float, reference: np.ndarray | None = None
) -> np.ndarray:
    """`background + g * foreground`, (n,) float32, with g set so that the power of `reference` (default:
    the foreground) where it sounds is `snr_db` above the background's mean power; scaled down as a whole
    if it would clip."""
    ref = foreground if reference is None else reference
    sounding = np.abs(ref) > 1e-3 * np.abs(ref).max()
    gain = np.sqrt(np.mean(background**2) * 10 ** (snr_db / 10) / np.mean(ref[sounding] ** 2))
    mix = background + gain * foreground
    peak = np.abs(mix).max()
    if peak > 0.99:
        mix *= 0.99 / peak
    return mix.astype(np.float32)


def _check_snr(snr_db: float) -> float:
    if not -30.0 <= snr_db <= 40.0:
        raise ValueError(f"snr_db={snr_db:g} is outside [-30, 40]")
    return float(snr_db)


def emergency_scene(
    kind: str,
    background: str,
    snr_db: float,
    sample_rate_hz: int = 16000,
    seed: int = 0,
    lead_s: float = 2.0,
    sound_s: float = 6.0,
    tail_s: float = 1.0,
) -> Scene:
    """`lead_s` of background, then the emergency `kind` (a key of EMERGENCY_KINDS) for `sound_s` over
    the background, then `tail_s` of background. One Event spans the first to the last sounding sample."""
    if kind not in EMERGENCY_KINDS:
        raise ValueError(f"kind {kind!r}: allowed values: {', '.join(EMERGENCY_KINDS)}")
    snr_db = _check_snr(snr_db)
    rng = _rng(kind, background, snr_db, sample_rate_hz, seed)
    onset_s = lead_s + rng.uniform(0, 0.2)
    n = int((onset_s + sound_s + tail_s) * sample_rate_hz)
    m = int(sound_s * sample_rate_hz)
    family, variant = kind.split("-", 1)
    if family == "siren":
        sound, gates = siren(variant, m, sample_rate_hz, rng), [(0.0, sound_s)]
    elif family == "alarm":
        sound, gates = alarm(variant, m, sample_rate_hz, rng)
    else:
        sound, gates = horn(variant, m, sample_rate_hz, rng)
    gated = sound.copy()
    sound = _reverb(sound, sample_rate_hz, rng)
    fg = np.zeros(n)
    i0 = int(onset_s * sample_rate_hz)
    fg[i0 : i0 + m] = sound
    bg = _background(background, n, sample_rate_hz, rng)
    # the SNR is set on the dry sound where it sounds, so reverb tails do not dilute it
    dry = np.zeros(n)
    dry[i0 : i0 + m] = gated
    mix = _mix(bg, fg, snr_db, reference=dry)
    event = Event(EMERGENCY_KINDS[kind], kind, onset_s + gates[0][0], onset_s + gates[-1][1])
    name = f"{kind}+{background}@{snr_db:+g}dB/{sample_rate_hz}/s{seed}"
    return Scene(name, kind, background, snr_db, sample_rate_hz, mix, (event,))


def negative_scene(
    kind: str,
    sample_rate_hz: int = 16000,
    seed: int = 0,
    duration_s: float = 10.0,
    background: str | None = None,
    snr_db: float = 5.0,
) -> Scene:
    """A scene with no emergency: a background alone (`kind` in BACKGROUNDS), or a distractor (`kind` in
    DISTRACTORS) at `snr_db` over `background` (default: one chosen by the seed)."""
    rng = _rng(kind, background, snr_db, sample_rate_hz, seed)
    n = int(duration_s * sample_rate_hz)
    if kind in BACKGROUND_MAKERS:
        mix = _background(kind, n, sample_rate_hz, rng).astype(np.float32)
        return Scene(f"{kind}/{sample_rate_hz}/s{seed}", kind, kind, None, sample_rate_hz, mix, ())
    if kind not in DISTRACTOR_MAKERS:
        raise ValueError(f"kind {kind!r}: allowed values: {', '.join(BACKGROUNDS + DISTRACTORS)}")
    snr_db = _check_snr(snr_db)
    bg_name = background or BACKGROUNDS[int(rng.integers(len(BACKGROUNDS)))]
    sound, _gates = DISTRACTOR_MAKERS[kind](n, sample_rate_hz, rng)
    mix = _mix(_background(bg_name, n, sample_rate_hz, rng), sound, snr_db)
    name = f"{kind}+{bg_name}@{snr_db:+g}dB/{sample_rate_hz}/s{seed}"
    return Scene(name, kind, bg_name, snr_db, sample_rate_hz, mix, ())


def labelled_set(
    sample_rate_hz: int = 16000, seed: int = 0, snrs_db: tuple[float, ...] = SNRS_DB
) -> list[Scene]:
    """Every emergency kind over every background at every SNR, then every background alone and every
    distractor over every background at every SNR."""
    scenes = [
        emergency_scene(kind, bg, snr, sample_rate_hz, seed)
        for kind in EMERGENCY_KINDS
        for bg in BACKGROUNDS
        for snr in snrs_db
    ]
    scenes += [negative_scene(bg, sample_rate_hz, seed) for bg in BACKGROUNDS]
    scenes += [
        negative_scene(kind, sample_rate_hz, seed, background=bg, snr_db=snr)
        for kind in DISTRACTORS
        for bg in BACKGROUNDS
        for snr in snrs_db
    ]
    return scenes
