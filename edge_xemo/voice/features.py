"""Frame features of 16 kHz speech, in numpy: the one front end of the audio encoder.

Training (`train/audio_data.py`) and the runtime (`edge_xemo.voice.aecb`) both call `frame_features`,
so the ONNX encoder sees the same features (to float32 rounding) in both places. Per 25 ms Hann window every 10 ms
(no centering): 64 HTK-mel bands from 50 Hz to 8 kHz (log10 of power; no per-window
normalization, absolute level is a cue) and 32 pitch bands: the normalized autocorrelation
(corrected for the window, as in Boersma 1993) at lags of 60-450 Hz, log-spaced, so that a pitch
change of k semitones moves the peak by a fixed number of bands for every speaker.
"""

from __future__ import annotations

from collections import deque
from functools import lru_cache

import numpy as np

from ..core.types import SAMPLE_RATE

WIN = 400  # 25 ms
HOP = 160  # 10 ms
N_FFT = 512
N_MELS = 64
FMIN, FMAX = 50.0, 8000.0
LOG_FLOOR = 1e-10
N_PITCH = 32
F0_MIN, F0_MAX = 60.0, 450.0
N_FEATURES = N_MELS + N_PITCH
_ACF_FFT = 1024  # >= WIN + the longest lag: no circular wrap


def n_frames(n_samples: int) -> int:
    """Frames `log_mel` returns for `n_samples` samples (0 when shorter than one window)."""
    return 0 if n_samples < WIN else 1 + (n_samples - WIN) // HOP


def _hz_to_mel(f):
    return 2595.0 * np.log10(1.0 + np.asarray(f, dtype=np.float64) / 700.0)


def _mel_to_hz(m):
    return 700.0 * (10.0 ** (np.asarray(m, dtype=np.float64) / 2595.0) - 1.0)


@lru_cache(maxsize=1)
def mel_filterbank() -> np.ndarray:
    """(N_FFT // 2 + 1, N_MELS) float32 triangular HTK-mel filters, unit peak."""
    bins = np.fft.rfftfreq(N_FFT, 1.0 / SAMPLE_RATE)
    edges = _mel_to_hz(np.linspace(_hz_to_mel(FMIN), _hz_to_mel(FMAX), N_MELS + 2))
    lo, mid, hi = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    up = (bins[None, :] - lo) / (mid - lo)
    down = (hi - bins[None, :]) / (hi - mid)
    fb = np.clip(np.minimum(up, down), 0.0, None)
    return np.ascontiguousarray(fb.T, dtype=np.float32)


@lru_cache(maxsize=1)
def _window() -> np.ndarray:
    w = np.zeros(N_FFT, dtype=np.float32)
    w[:WIN] = np.hanning(WIN + 1)[:-1]  # periodic Hann
    return w


@lru_cache(maxsize=1)
def _pitch_lags() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Integer lag below each pitch band, interpolation weight, window-autocorrelation there."""
    lags = SAMPLE_RATE / np.geomspace(F0_MAX, F0_MIN, N_PITCH)  # short lag (high f0) first
    lo = np.floor(lags).astype(np.int64)
    frac = (lags - lo).astype(np.float32)
    w = _window()[:WIN].astype(np.float64)
    r_w = np.correlate(w, w, mode="full")[WIN - 1 :]
    r_w = (1 - frac) * r_w[lo] + frac * r_w[lo + 1]
    return lo, frac, (r_w / np.dot(w, w)).astype(np.float32)


def _frames(x: np.ndarray, n: int) -> np.ndarray:
    x = np.concatenate([x, np.zeros(N_FFT - WIN, dtype=np.float32)])
    return np.lib.stride_tricks.sliding_window_view(x, N_FFT)[::HOP][:n] * _window()


def _check(samples: np.ndarray) -> np.ndarray:
    x = np.asarray(samples, dtype=np.float32)
    if x.ndim != 1:
        raise ValueError(f"audio features expect mono samples of shape (n,), got {x.shape}")
    return x


def _log_mel(frames: np.ndarray) -> np.ndarray:
    power = np.abs(np.fft.rfft(frames, axis=1)).astype(np.float32) ** 2
    # einsum, not `@`: a (198, 257) x (257, 64) product through multi-threaded OpenBLAS takes
    # 16 ms instead of 0.1 ms when the cores are busy (measured here on 2 loaded cores).
    mel = np.einsum("ft,tm->fm", power, mel_filterbank(), optimize=False)
    return np.log10(mel + LOG_FLOOR).astype(np.float32)


def _pitch_bands(frames: np.ndarray) -> np.ndarray:
    spec = np.fft.rfft(frames[:, :WIN], n=_ACF_FFT, axis=1)
    acf = np.fft.irfft(spec.real**2 + spec.imag**2, n=_ACF_FFT, axis=1)
    lo, frac, r_w = _pitch_lags()
    r = (1 - frac) * acf[:, lo] + frac * acf[:, lo + 1]
    return (r / (acf[:, :1] + 1e-9) / r_w).astype(np.float32)


def log_mel(samples: np.ndarray) -> np.ndarray:
    """(n_frames, 64) float32 log10 mel power of mono 16 kHz float samples in [-1, 1]."""
    x = _check(samples)
    n = n_frames(len(x))
    return _log_mel(_frames(x, n)) if n else np.zeros((0, N_MELS), dtype=np.float32)


def pitch_bands(samples: np.ndarray) -> np.ndarray:
    """(n_frames, 32) float32 normalized autocorrelation at log-spaced pitch lags (450 -> 60 Hz)."""
    x = _check(samples)
    n = n_frames(len(x))
    return _pitch_bands(_frames(x, n)) if n else np.zeros((0, N_PITCH), dtype=np.float32)


def frame_features(samples: np.ndarray) -> np.ndarray:
    """(n_frames, 96) float32: log-mel (64) then pitch bands (32); the encoder's input."""
    x = _check(samples)
    n = n_frames(len(x))
    if n == 0:
        return np.zeros((0, N_FEATURES), dtype=np.float32)
    frames = _frames(x, n)
    return np.concatenate([_log_mel(frames), _pitch_bands(frames)], axis=1)


class StreamFrames:
    """`frame_features` of a sample stream, each 10 ms frame computed once.

    Rolling windows overlap (2 s windows every 1 s share 99 of their 198 frames), so the frames of a
    window are taken from a cache keyed by the frame's place on the stream's 10 ms grid, and only the
    new ones are computed. Samples before the stream's first one are zeros. Push samples in order; a
    block that does not continue the stream (a gap or overlap over 10 ms) starts a new grid.

    The last `keep_s` of samples are kept, so a window may be asked for while the stream has run
    ahead of it (offline, audio is decoded faster than video and the window closes with the video).
    A window that starts before the kept samples gives None.
    """

    def __init__(self, keep_s: float = 30.0):
        self.keep = int(keep_s * SAMPLE_RATE)
        self.computed = 0
        """Frames computed so far (each once)."""
        self.reset()

    def reset(self) -> None:
        self._origin_t: float | None = None  # source time of the stream's sample 0
        self._blocks: deque[tuple[int, np.ndarray]] = deque()  # (stream index of the first sample, samples)
        self._end = 0  # stream index one past the last sample
        self._rows: dict[int, np.ndarray] = {}

    @property
    def _start(self) -> int:
        """Stream index of the first kept sample."""
        return self._blocks[0][0] if self._blocks else self._end

    def push(self, samples: np.ndarray, t: float) -> None:
        """Append a block whose first sample is at source time `t`."""
        x = _check(samples)
        if self._origin_t is None or abs(t - (self._origin_t + self._end / SAMPLE_RATE)) > 0.01:
            self.reset()
            self._origin_t = t
        self._blocks.append((self._end, x.copy()))
        self._end += len(x)
        while self._blocks and self._end - (self._blocks[0][0] + len(self._blocks[0][1])) >= self.keep:
            self._blocks.popleft()

    def window(self, t_start: float, n_samples: int) -> np.ndarray | None:
        """(n_frames(n_samples), 96) features of the `n_samples` from `t_start` (to the nearest 10 ms of the
        grid); None before any sample was pushed, or when the window's samples are no longer kept."""
        if self._origin_t is None:
            return None
        first = int(round((t_start - self._origin_t) * SAMPLE_RATE / HOP))
        wanted = range(first, first + n_frames(n_samples))
        missing = [j for j in wanted if j not in self._rows]
        fresh = {}
        if missing:
            lo, hi = missing[0], missing[-1] + 1
            if 0 < self._start and lo * HOP < self._start:
                return None
            fresh = dict(zip(range(lo, hi), frame_features(self._samples(lo * HOP, (hi - 1) * HOP + WIN))))
            self.computed += len(fresh)
            # a frame whose samples are all in will not change: keep it
            self._rows.update((j, row) for j, row in fresh.items() if j * HOP + WIN <= self._end)
        out = np.stack([self._rows[j] if j in self._rows else fresh[j] for j in wanted])
        for j in [j for j in self._rows if j < first]:
            del self._rows[j]
        return out

    def _samples(self, a: int, b: int) -> np.ndarray:
        """Stream samples [a, b): zeros where the stream has none (before it or after it)."""
        out = np.zeros(b - a, dtype=np.float32)
        for at, x in reversed(self._blocks):  # the newest first: windows ask for recent samples
            if at + len(x) <= a:
                break
            lo, hi = max(a, at), min(b, at + len(x))
            if hi > lo:
                out[lo - a : hi - a] = x[lo - at : hi - at]
        return out
