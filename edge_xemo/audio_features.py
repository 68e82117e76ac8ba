"""Log-mel features of 16 kHz speech, in numpy: the one front end of the audio encoder.

Training (`train/aecb.py`) and the runtime (`edge_xemo.aecb`) both call `log_mel`, so the
ONNX encoder sees bit-identical features in both places. 25 ms Hann windows every 10 ms
(no centering), 512-point FFT, 64 HTK-mel bands from 50 Hz to 8 kHz, log10 of power.
No per-window normalization: absolute level is a cue (loud / soft voice).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

SAMPLE_RATE = 16_000
WIN = 400  # 25 ms
HOP = 160  # 10 ms
N_FFT = 512
N_MELS = 64
FMIN, FMAX = 50.0, 8000.0
LOG_FLOOR = 1e-10


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


def log_mel(samples: np.ndarray) -> np.ndarray:
    """(n_frames, 64) float32 log10 mel power of mono 16 kHz float samples in [-1, 1]."""
    x = np.asarray(samples, dtype=np.float32)
    if x.ndim != 1:
        raise ValueError(f"log_mel expects mono samples of shape (n,), got {x.shape}")
    n = n_frames(len(x))
    if n == 0:
        return np.zeros((0, N_MELS), dtype=np.float32)
    x = np.concatenate([x, np.zeros(N_FFT - WIN, dtype=np.float32)])
    frames = np.lib.stride_tricks.sliding_window_view(x, N_FFT)[::HOP][:n] * _window()
    power = np.abs(np.fft.rfft(frames, axis=1)).astype(np.float32) ** 2
    return np.log10(power @ mel_filterbank() + LOG_FLOOR).astype(np.float32)
