"""Prosody and voice quality of 16 kHz speech, in numpy.

Two levels:
- frames (`ProsodyTracker`, `analyze_frames`): every 10 ms, a YIN pitch estimate (60-550 Hz),
  level in dBFS, harmonics-to-noise ratio, alpha ratio (spectral tilt) and spectral flatness;
- windows (`measure_window`): F0 level/range/variability/slope in semitones re 100 Hz, loudness
  level/variability, syllable rate (intensity peaks in voiced speech, after de Jong & Wempe 2009),
  pauses (from the VAD), cycle-to-cycle jitter and shimmer, HNR and spectral tilt.
`SpeakerBaseline` keeps exponentially weighted per-speaker norms, so cues say "higher pitch than
usual" instead of "a deep voice".
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

from ..core.types import SAMPLE_RATE
from .features import HOP, WIN  # 10 ms hop; 25 ms YIN integration and level window

F0_MIN, F0_MAX = 60.0, 550.0
TAU_MIN = int(SAMPLE_RATE / F0_MAX)
TAU_MAX = int(math.ceil(SAMPLE_RATE / F0_MIN))
FRAME = WIN + TAU_MAX + 1
N_FFT = 1024  # YIN cross-correlation (>= FRAME, no wrap-around for lags <= TAU_MAX)
N_SPEC = 512  # spectrum of the Hann-windowed 25 ms frame
YIN_THRESHOLD = 0.15
VOICING_MAX_APERIODICITY = 0.35
SILENCE_DB = -55.0
"""Frames below this level (dBFS) are never voiced; windows below it are "silence"."""
_FREQS = np.fft.rfftfreq(N_SPEC, 1.0 / SAMPLE_RATE)
_LOW_BAND = (_FREQS >= 50) & (_FREQS < 1000)
_HIGH_BAND = (_FREQS >= 1000) & (_FREQS < 5000)
_HANN = np.hanning(WIN).astype(np.float32)
_TAU = np.arange(TAU_MAX + 1)


@dataclass(frozen=True, slots=True)
class FrameFeatures:
    """Per-frame measures (equal-length arrays); `t` is the source time of each frame centre.

    f0_hz is NaN where unvoiced; aperiodicity is YIN's d'(T0) (0 = perfectly periodic).
    """

    t: np.ndarray
    f0_hz: np.ndarray
    aperiodicity: np.ndarray
    level_db: np.ndarray
    hnr_db: np.ndarray
    alpha_db: np.ndarray
    flatness: np.ndarray

    def __len__(self) -> int:
        return len(self.t)

    def select(self, mask: np.ndarray) -> FrameFeatures:
        return FrameFeatures(*(getattr(self, f.name)[mask] for f in fields(self)))

    @staticmethod
    def empty() -> FrameFeatures:
        return _NO_FRAMES

    @staticmethod
    def concat(parts: list[FrameFeatures]) -> FrameFeatures:
        parts = [p for p in parts if len(p)]
        if not parts:
            return FrameFeatures.empty()
        return FrameFeatures(*(np.concatenate([getattr(p, f.name) for p in parts]) for f in fields(FrameFeatures)))


_NO_FRAMES = FrameFeatures(*(np.zeros(0, dtype=np.float32) for _ in fields(FrameFeatures)))


def analyze_frames(samples: np.ndarray, t0: float = 0.0) -> FrameFeatures:
    """Frame measures of a whole buffer; frame k covers samples [k*HOP, k*HOP + FRAME)."""
    x = np.asarray(samples, dtype=np.float32).reshape(-1)
    n = 0 if len(x) < FRAME else 1 + (len(x) - FRAME) // HOP
    if n == 0:
        return FrameFeatures.empty()
    frames = np.lib.stride_tricks.sliding_window_view(x, FRAME)[::HOP][:n]
    a = frames[:, :WIN]
    # YIN difference function d(tau) = e_a + e_b(tau) - 2 r(tau), r by FFT cross-correlation.
    r = np.fft.irfft(np.conj(np.fft.rfft(a, N_FFT)) * np.fft.rfft(frames, N_FFT), N_FFT)[:, : TAU_MAX + 1]
    cs = np.concatenate([np.zeros((n, 1)), np.cumsum(frames.astype(np.float64) ** 2, axis=1)], axis=1)
    e_a = cs[:, WIN : WIN + 1]
    e_b = cs[:, WIN + _TAU] - cs[:, _TAU]
    d = np.maximum(e_a + e_b - 2.0 * r, 0.0)
    d[:, 0] = 0.0
    cum = np.cumsum(d[:, 1:], axis=1)
    dn = np.ones_like(d)
    dn[:, 1:] = d[:, 1:] * _TAU[1:] / np.maximum(cum, 1e-12)
    search = dn[:, TAU_MIN:TAU_MAX]
    below = search < YIN_THRESHOLD
    local_min = np.zeros_like(below)
    local_min[:, :-1] = search[:, :-1] <= search[:, 1:]
    first = np.argmax(below, axis=1)
    after = np.arange(search.shape[1])[None, :] >= first[:, None]
    dip = np.argmax(below & local_min & after, axis=1)
    has_dip = (below & local_min & after).any(axis=1)
    k = np.where(has_dip, dip, np.argmin(search, axis=1)) + TAU_MIN
    rows = np.arange(n)
    ap = dn[rows, k]
    # Parabolic interpolation of the dip for sub-sample periods.
    km, kp = np.maximum(k - 1, 1), np.minimum(k + 1, TAU_MAX)
    y0, y1, y2 = dn[rows, km], ap, dn[rows, kp]
    denom = y0 - 2 * y1 + y2
    shift = np.where(np.abs(denom) > 1e-12, 0.5 * (y0 - y2) / np.where(denom == 0, 1, denom), 0.0)
    period = k + np.clip(shift, -1, 1)
    level_db = 10 * np.log10(e_a[:, 0] / WIN + 1e-12)
    voiced = (ap < VOICING_MAX_APERIODICITY) & (level_db > SILENCE_DB)
    f0 = np.where(voiced, SAMPLE_RATE / period, np.nan)
    rho = np.clip(r[rows, k] / np.sqrt(e_a[:, 0] * e_b[rows, k] + 1e-20), 1e-4, 1 - 1e-4)
    hnr = np.clip(10 * np.log10(rho / (1 - rho)), -10, 40)
    spec = np.abs(np.fft.rfft(a * _HANN, N_SPEC)) ** 2 + 1e-12
    alpha = 10 * np.log10(spec[:, _HIGH_BAND].sum(1) / spec[:, _LOW_BAND].sum(1))
    band = spec[:, (_FREQS >= 100) & (_FREQS < 7000)]
    flatness = np.exp(np.log(band).mean(1)) / band.mean(1)
    t = t0 + (np.arange(n) * HOP + WIN / 2) / SAMPLE_RATE
    f32 = np.float32
    return FrameFeatures(
        t,
        f0.astype(f32),
        ap.astype(f32),
        level_db.astype(f32),
        hnr.astype(f32),
        alpha.astype(f32),
        flatness.astype(f32),
    )


class ProsodyTracker:
    """Streaming `analyze_frames`: push blocks of any size, get the frames they complete.

    Frames are computed in batches of at least `min_batch` (numpy's per-call overhead dominates
    for a few frames), so frames lag the input by up to `min_batch` hops (250 ms by default).
    """

    def __init__(self, min_batch: int = 25) -> None:
        self.min_batch = min_batch
        self.reset()

    def reset(self) -> None:
        self._buf = np.zeros(0, dtype=np.float32)
        self._t: float | None = None

    def push(self, samples: np.ndarray, t: float) -> FrameFeatures:
        if self._t is None or abs(t - (self._t + len(self._buf) / SAMPLE_RATE)) > 0.01:
            self._buf, self._t = np.zeros(0, dtype=np.float32), t  # first block or a jump in the stream
        self._buf = np.concatenate([self._buf, np.asarray(samples, dtype=np.float32)])
        if len(self._buf) < FRAME + (self.min_batch - 1) * HOP:
            return FrameFeatures.empty()
        out = analyze_frames(self._buf, self._t)
        consumed = len(out) * HOP
        self._buf = self._buf[consumed:]
        self._t += consumed / SAMPLE_RATE
        return out


@dataclass(frozen=True, slots=True)
class WindowMeasures:
    """Prosody and voice quality of one window; NaN where not measurable.

    Pitch in semitones re 100 Hz (st); level in dBFS; rates per second of speech; jitter and
    shimmer in percent (local, cycle to cycle); alpha ratio in dB (higher = flatter tilt, tenser voice).
    """

    speech_s: float = 0.0
    voiced_s: float = 0.0
    speech_ratio: float = 0.0
    f0_median_hz: float = math.nan
    f0_median_st: float = math.nan
    f0_range_st: float = math.nan
    f0_sd_st: float = math.nan
    f0_slope_st_s: float = math.nan
    f0_end_slope_st_s: float = math.nan
    level_db: float = math.nan
    level_sd_db: float = math.nan
    syllable_rate: float = math.nan
    voiced_onset_rate: float = math.nan
    pause_ratio: float = math.nan
    pause_count: int = 0
    pause_mean_s: float = math.nan
    pause_max_s: float = math.nan
    jitter_pct: float = math.nan
    shimmer_pct: float = math.nan
    hnr_db: float = math.nan
    alpha_db: float = math.nan
    extra: dict = field(default_factory=dict)

    def as_dict(self) -> dict[str, float]:
        d = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "extra"}
        return {k: float(v) for k, v in d.items() if v is not None and np.isfinite(v)}


def semitones(f_hz):
    """Semitones re 100 Hz."""
    return 12.0 * np.log2(np.asarray(f_hz, dtype=np.float64) / 100.0)


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """[start, end) index pairs of the True runs in `mask`."""
    m = np.concatenate([[False], np.asarray(mask, dtype=bool), [False]])
    edges = np.flatnonzero(np.diff(m.astype(np.int8)))
    return list(zip(edges[::2], edges[1::2]))


def clean_f0(f0: np.ndarray) -> np.ndarray:
    """Median-smooth voiced runs (3 frames), drop runs under 40 ms and octave jumps from the median."""
    f0 = f0.astype(np.float64).copy()
    for s, e in _runs(np.isfinite(f0)):
        if e - s < 4:
            f0[s:e] = np.nan
        else:
            seg = f0[s:e]
            padded = np.concatenate([seg[:1], seg, seg[-1:]])
            f0[s:e] = np.median(np.stack([padded[:-2], padded[1:-1], padded[2:]]), axis=0)
    ok = np.isfinite(f0)
    if ok.sum() >= 5:
        med = np.median(semitones(f0[ok]))
        far = ok & (np.abs(semitones(np.where(ok, f0, 100.0)) - med) > 9.0)
        f0[far] = np.nan
    return f0


def voiced_segments(frames: FrameFeatures, f0: np.ndarray, min_frames: int = 10) -> list[dict]:
    """Per voiced stretch of at least `min_frames` (100 ms): times, median F0, level, F0 slope."""
    out = []
    for s, e in _runs(np.isfinite(f0)):
        if e - s < min_frames:
            continue
        st = semitones(f0[s:e])
        t = frames.t[s:e]
        out.append(
            {
                "start": round(float(t[0]), 3),
                "end": round(float(t[-1]), 3),
                "f0_median_hz": round(float(np.median(f0[s:e])), 1),
                "level_db": round(float(np.max(frames.level_db[s:e])), 1),
                "f0_slope_st_s": round(float(np.polyfit(t - t[0], st, 1)[0]), 2),
            }
        )
    return out


def syllable_nuclei(level_db: np.ndarray, voiced: np.ndarray, speech: np.ndarray, dip_db: float = 2.0) -> np.ndarray:
    """Frame indices of intensity peaks in voiced speech that rise `dip_db` above the dips around them."""
    if len(level_db) < 5 or not speech.any():
        return np.zeros(0, dtype=int)
    power = np.convolve(10 ** (level_db / 10.0), np.ones(5) / 5, mode="same")
    s = 10 * np.log10(power + 1e-12)
    floor = max(np.median(s[speech]) - 3.0, s[speech].max() - 25.0)
    cand = np.flatnonzero((s[1:-1] >= s[:-2]) & (s[1:-1] > s[2:])) + 1
    near_voiced = np.convolve(voiced.astype(float), np.ones(5), mode="same") > 0
    cand = cand[(s[cand] > floor) & near_voiced[cand] & speech[cand]]
    kept: list[int] = []
    for c in cand:
        if not kept:
            kept.append(c)
            continue
        dip = s[kept[-1] : c + 1].min()
        if s[c] - dip >= dip_db and s[kept[-1]] - dip >= dip_db:
            kept.append(c)
        elif s[c] > s[kept[-1]]:
            kept[-1] = c
    return np.asarray(kept, dtype=int)


def jitter_shimmer(
    samples: np.ndarray, t0: float, frames: FrameFeatures, f0: np.ndarray, max_cycles: int = 250
) -> tuple[float, float]:
    """Local jitter and shimmer (%) from glottal cycles picked in voiced runs of at least 60 ms.

    Stops after about `max_cycles` cycles (plenty for a stable mean; cycle picking is a Python loop).
    """
    periods: list[np.ndarray] = []
    amps: list[np.ndarray] = []
    for s, e in _runs(np.isfinite(f0)):
        if e - s < 6:
            continue
        if sum(len(p) for p in periods) >= max_cycles:
            break
        a = int(round((frames.t[s] - t0) * SAMPLE_RATE))
        b = int(round((frames.t[e - 1] - t0) * SAMPLE_RATE))
        if a < 0 or b > len(samples) or b - a < 200:
            continue
        seg = samples[a:b].astype(np.float64)
        tmed = SAMPLE_RATE / np.nanmedian(f0[s:e])
        width = max(3, int(tmed / 2))
        smooth = np.convolve(seg, np.hanning(width) / np.hanning(width).sum(), mode="same")
        f0_at = np.interp(np.arange(len(seg)), (frames.t[s:e] - frames.t[s]) * SAMPLE_RATE, f0[s:e])
        p = int(np.argmax(smooth[: int(tmed)]))
        pulses = [p]
        while True:
            period = SAMPLE_RATE / f0_at[min(pulses[-1], len(seg) - 1)]
            lo, hi = pulses[-1] + int(0.75 * period), pulses[-1] + int(1.25 * period) + 1
            if hi > len(seg):
                break
            pulses.append(lo + int(np.argmax(smooth[lo:hi])))
        if len(pulses) < 4:
            continue
        pulses_arr = np.asarray(pulses)
        # Sub-sample pulse times (parabola through the peak): whole samples alone add about
        # 0.3 / period of jitter, 1 % for a 300 Hz voice at 16 kHz.
        p = np.clip(pulses_arr, 1, len(smooth) - 2)
        y0, y1, y2 = smooth[p - 1], smooth[p], smooth[p + 1]
        den = y0 - 2 * y1 + y2
        frac = np.where(den < 0, 0.5 * (y0 - y2) / np.where(den < 0, den, -1.0), 0.0)
        periods.append(np.diff(p + np.clip(frac, -0.5, 0.5)))
        amps.append(np.maximum.reduceat(seg, pulses_arr)[:-1] - np.minimum.reduceat(seg, pulses_arr)[:-1])
    if not periods:
        return math.nan, math.nan
    jit = np.concatenate([np.abs(np.diff(p)) for p in periods]).mean() / np.concatenate(periods).mean()
    shim = np.concatenate([np.abs(np.diff(a)) for a in amps]).mean() / max(np.concatenate(amps).mean(), 1e-9)
    return float(100 * jit), float(100 * shim)


def measure_window(
    frames: FrameFeatures,
    speech: np.ndarray,
    vad_t: np.ndarray,
    vad_prob: np.ndarray,
    vad_threshold: float,
    duration_s: float,
    samples: np.ndarray | None = None,
    t0: float = 0.0,
    min_pause_s: float = 0.2,
) -> WindowMeasures:
    """Aggregate a window's frames; `speech` marks frames inside VAD speech.

    vad_t / vad_prob: the window's VAD chunks (pauses are runs of chunks below `vad_threshold`
    between speech chunks); `samples` (starting at source time `t0`) enables jitter and shimmer.
    """
    speech = np.asarray(speech, dtype=bool)
    speech_chunks = vad_prob >= vad_threshold
    timing = _timing_measures(speech_chunks, duration_s, min_pause_s)
    speech_s = timing["speech_s"]
    sp = frames.select(speech) if len(frames) else frames
    if len(sp) < 5:
        return WindowMeasures(**timing)
    f0_all = clean_f0(np.where(speech, frames.f0_hz, np.nan))
    f0 = f0_all[speech]
    voiced = np.isfinite(f0)
    out: dict[str, Any] = dict(timing, voiced_s=float(voiced.sum() * HOP / SAMPLE_RATE))
    out.update(_loudness_measures(sp.level_db))
    if speech_s > 0:
        out.update(_rate_measures(frames, f0_all, speech, speech_s, vad_t[speech_chunks]))
    if voiced.sum() >= 10:
        out.update(_pitch_measures(frames, f0_all, semitones(f0[voiced]), sp.t[voiced]))
        out.update(_voice_quality_measures(frames, f0_all, sp.select(voiced), samples, t0))
        out.setdefault("extra", {})["voiced_segments"] = voiced_segments(frames, f0_all)
    return WindowMeasures(**out)


def _timing_measures(speech_chunks: np.ndarray, duration_s: float, min_pause_s: float) -> dict[str, Any]:
    """Seconds and share of speech, and the pauses: runs of at least `min_pause_s` of VAD chunks without
    speech between speech chunks."""
    chunk_s = 512 / SAMPLE_RATE
    speech_s = float(speech_chunks.sum() * chunk_s)
    speech_ratio = speech_s / duration_s if duration_s > 0 else 0.0
    pauses = []
    idx = np.flatnonzero(speech_chunks)
    if len(idx) >= 2:
        for s, e in _runs(~speech_chunks[idx[0] : idx[-1] + 1]):
            if (e - s) * chunk_s >= min_pause_s:
                pauses.append((e - s) * chunk_s)
    return dict(
        speech_s=speech_s,
        speech_ratio=speech_ratio,
        pause_count=len(pauses),
        pause_ratio=1.0 - speech_ratio if speech_s > 0 else math.nan,
        pause_mean_s=float(np.mean(pauses)) if pauses else (0.0 if speech_s > 0 else math.nan),
        pause_max_s=float(max(pauses)) if pauses else (0.0 if speech_s > 0 else math.nan),
    )


def _loudness_measures(level_db: np.ndarray) -> dict[str, float]:
    """Level (power mean) and its spread over the speech frames above `SILENCE_DB`."""
    loud = level_db > SILENCE_DB
    if not loud.any():
        return {}
    return dict(
        level_db=float(10 * np.log10(np.mean(10 ** (level_db[loud] / 10)))),
        level_sd_db=float(np.std(level_db[loud])),
    )


def _rate_measures(
    frames: FrameFeatures, f0_all: np.ndarray, speech: np.ndarray, speech_s: float, speech_chunk_t: np.ndarray
) -> dict[str, Any]:
    """Syllable and voiced-onset rates per second of speech; `extra` keeps the nuclei's times and the speech
    chunks' for rates over a longer stretch of the stream."""
    nuclei = syllable_nuclei(frames.level_db, np.isfinite(f0_all), speech)
    onsets = sum(1 for s, e in _runs(np.isfinite(f0_all)) if e - s >= 4)
    return dict(
        syllable_rate=len(nuclei) / speech_s,
        voiced_onset_rate=onsets / speech_s,
        # speech chunks only as far as frames reach (frames lag the VAD), for rates over time
        extra={"nuclei_t": frames.t[nuclei], "speech_chunk_t": speech_chunk_t[speech_chunk_t <= frames.t[-1]]},
    )


def _pitch_measures(
    frames: FrameFeatures, f0_all: np.ndarray, st: np.ndarray, t_voiced: np.ndarray
) -> dict[str, float]:
    """F0 level, range, spread and slope of the voiced speech frames (`st` in semitones at times `t_voiced`), and
    the final rise or fall: the slope of the last voiced run of 150 ms or more that ends 200 ms before the window
    does."""
    p10, p50, p90 = np.percentile(st, [10, 50, 90])
    out = dict(
        f0_median_hz=float(100 * 2 ** (p50 / 12)),
        f0_median_st=float(p50),
        f0_range_st=float(p90 - p10),
        f0_sd_st=float(np.std(st)),
    )
    if t_voiced[-1] - t_voiced[0] > 0.2:
        out["f0_slope_st_s"] = float(np.polyfit(t_voiced - t_voiced[0], st, 1)[0])
    runs = [r for r in _runs(np.isfinite(f0_all)) if r[1] - r[0] >= 15 and r[1] <= len(f0_all) - 20]
    if runs:
        s, e = runs[-1]
        tail = slice(max(s, e - 40), e)
        out["f0_end_slope_st_s"] = float(np.polyfit(frames.t[tail], semitones(f0_all[tail]), 1)[0])
    return out


def _voice_quality_measures(
    frames: FrameFeatures, f0_all: np.ndarray, voiced: FrameFeatures, samples: np.ndarray | None, t0: float
) -> dict[str, float]:
    """Median HNR and alpha ratio of the voiced speech frames; jitter and shimmer when `samples` are given."""
    out = dict(hnr_db=float(np.median(voiced.hnr_db)), alpha_db=float(np.median(voiced.alpha_db)))
    if samples is not None:
        out["jitter_pct"], out["shimmer_pct"] = jitter_shimmer(samples, t0, frames, f0_all)
    return out


BASELINE_KEYS = (
    "f0_median_st",
    "f0_range_st",
    "level_db",
    "level_sd_db",
    "syllable_rate",
    "pause_ratio",
    "jitter_pct",
    "shimmer_pct",
    "hnr_db",
    "alpha_db",
)
SD_FLOOR = {
    "f0_median_st": 1.5,
    "f0_range_st": 1.5,
    "level_db": 2.5,
    "level_sd_db": 1.0,
    "syllable_rate": 0.6,
    "pause_ratio": 0.1,
    "jitter_pct": 0.3,
    "shimmer_pct": 1.0,
    "hnr_db": 1.5,
    "alpha_db": 1.5,
}
"""Smallest standard deviation used for z-scores, so a very steady speaker's noise is not a cue."""


class SpeakerBaseline:
    """Exponentially weighted mean and variance of window measures, weighted by seconds of speech.

    `horizon_s` is the memory in seconds of speech; z-scores are given once `min_speech_s` of speech
    has been seen (before that, `zscores` returns {} and only absolute cues apply).
    """

    def __init__(self, horizon_s: float = 60.0, min_speech_s: float = 8.0):
        self.horizon_s, self.min_speech_s = horizon_s, min_speech_s
        self.reset()

    def reset(self) -> None:
        self._n: dict[str, float] = {}
        self._mean: dict[str, float] = {}
        self._var: dict[str, float] = {}
        self.speech_s = 0.0

    @property
    def ready(self) -> bool:
        return self.speech_s >= self.min_speech_s

    def zscores(self, m: WindowMeasures) -> dict[str, float]:
        if not self.ready:
            return {}
        z = {}
        for k in BASELINE_KEYS:
            x = getattr(m, k)
            if k in self._mean and np.isfinite(x) and self._n[k] >= self.min_speech_s / 2:
                z[k] = (x - self._mean[k]) / max(math.sqrt(self._var[k]), SD_FLOOR[k])
        return z

    def update(self, m: WindowMeasures, weight_s: float | None = None) -> None:
        """Fold one window in; `weight_s` = seconds of new speech it brings (default its speech_s).

        Deviations are clipped at 2.5 standard deviations, so a burst of excitement shifts the
        norm slowly instead of inflating its spread.
        """
        w = m.speech_s if weight_s is None else weight_s
        if w <= 0:
            return
        self.speech_s += w
        for k in BASELINE_KEYS:
            x = getattr(m, k)
            if not np.isfinite(x):
                continue
            n = min(self._n.get(k, 0.0) + w, self.horizon_s)
            a = w / n
            mean = self._mean.get(k, x)
            var = self._var.get(k, 0.0)
            limit = 2.5 * max(math.sqrt(var), SD_FLOOR[k])
            delta = min(max(x - mean, -limit), limit) if self._n.get(k, 0.0) >= self.min_speech_s else x - mean
            self._mean[k] = mean + a * delta
            self._var[k] = (1 - a) * (var + a * delta * delta)
            self._n[k] = n
