"""Audio conversion: any rate, channel count, sample type or decoded PyAV frame to the pipeline's
16 kHz mono float32 (PyAV's libswresample), and its conditioning where it enters the pipeline (`Conditioner`).
The one place where audio changes rate, layout, level or offset."""

from __future__ import annotations

import numpy as np

from ..core.types import SAMPLE_RATE, AudioBlock

CLIP_LEVEL = 0.999
"""A sample at or above this magnitude is counted as clipped (int16 full scale is 32767/32768 = 0.99997)."""
DC_TIME_CONSTANT_S = 0.5
"""Time constant of the running mean subtracted as the DC offset: far below speech (F0 >= 60 Hz), above a
microphone's drift."""


def as_mono(samples: np.ndarray, channels: int | None = None) -> np.ndarray:
    """float32 mono samples (channels averaged, integer samples scaled to [-1, 1)), at the same rate.

    Input: (n,) mono, (n, channels) or (channels, n), or interleaved (n * channels,) when `channels` > 1.
    `channels` None: a 2-D array's shorter axis holds the channels.
    """
    x = np.asarray(samples)
    if np.issubdtype(x.dtype, np.integer):
        x = x.astype(np.float32) / float(np.iinfo(x.dtype).max + 1)
    x = x.astype(np.float32)
    if x.ndim == 1 and channels is not None and channels > 1:
        if len(x) % channels:
            raise ValueError(f"resample: {len(x)} interleaved samples is not a multiple of {channels} channels")
        x = x.reshape(-1, channels)
    if x.ndim == 2:
        if channels is None:
            return x.mean(axis=int(np.argmin(x.shape)))
        if channels not in x.shape:
            raise ValueError(f"resample: array of shape {x.shape} has no axis of {channels} channels")
        x = x.mean(axis=1 if x.shape[1] == channels else 0)
    return x


class FrameResampler:
    """Decoded PyAV audio frames of any format, layout and rate -> 16 kHz mono float32 (libswresample)."""

    def __init__(self):
        import av

        self._av = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)

    def push(self, frame) -> list[np.ndarray]:
        """The output pieces ready after this frame (the filter delays a few samples)."""
        return [f.to_ndarray().reshape(-1) for f in self._av.resample(frame)]

    def flush(self) -> list[np.ndarray]:
        """The pieces still inside the filter at the end of the stream."""
        return self.push(None)


class Resampler:
    """Streaming conversion of numpy samples at any rate and channel count (see `as_mono`; NaN/inf
    repaired) to 16 kHz mono float32."""

    def __init__(self, rate: int, channels: int = 1):
        if rate <= 0 or channels <= 0:
            raise ValueError(f"resample: rate and channels must be positive, got rate={rate}, channels={channels}")
        self.rate, self.channels = int(rate), int(channels)
        self._pts = 0
        self._frames = None if self.rate == SAMPLE_RATE else FrameResampler()

    def _mono(self, samples: np.ndarray) -> np.ndarray:
        x = as_mono(samples, self.channels)
        return np.ascontiguousarray(np.nan_to_num(x, nan=0.0, posinf=1.0, neginf=-1.0))

    def push(self, samples: np.ndarray) -> np.ndarray:
        """Resampled 16 kHz mono output available so far (the filter delays a few samples)."""
        x = self._mono(samples)
        if self._frames is None:
            return x
        import av

        frame = av.AudioFrame.from_ndarray(x[None, :], format="flt", layout="mono")
        frame.sample_rate = self.rate
        frame.pts = self._pts
        self._pts += len(x)
        return _joined(self._frames.push(frame))

    def flush(self) -> np.ndarray:
        """The samples still inside the filter at the end of the stream."""
        return np.zeros(0, np.float32) if self._frames is None else _joined(self._frames.flush())


def _joined(pieces: list[np.ndarray]) -> np.ndarray:
    return np.concatenate(pieces).astype(np.float32) if pieces else np.zeros(0, np.float32)


def resample(samples: np.ndarray, rate: int, channels: int = 1) -> np.ndarray:
    """Whole-buffer conversion of any rate / channel count to 16 kHz mono float32."""
    r = Resampler(rate, channels)
    out = r.push(samples)
    return np.concatenate([out, r.flush()])


def to_mono_16k(samples: np.ndarray, sample_rate: int) -> np.ndarray:
    """(n,) or (n, channels) samples at any rate -> 16 kHz mono float32 (NaN/inf repaired)."""
    x = np.asarray(samples)
    if x.ndim not in (1, 2):
        raise ValueError(f"audio must be (n,) or (n, channels), got shape {x.shape}")
    return resample(x, sample_rate, x.shape[1] if x.ndim == 2 else 1)


class Conditioner:
    """Audio where it enters the pipeline (`InputFeed.push_audio`), normalised once for every stage after it: any
    rate, channel count and sample type to 16 kHz mono float32 (`to_mono_16k`), non-finite samples zeroed and
    samples beyond [-1, 1] clipped (both counted in the block), the DC offset removed by a running mean over
    blocks (`DC_TIME_CONSTANT_S`). One per stream: the mean carries over from block to block."""

    def __init__(self):
        self._dc: float | None = None

    def block(self, samples: np.ndarray, sample_rate: int, t: float, index: int) -> AudioBlock:
        """The conditioned block of `samples` ((n,) or (n, channels) at `sample_rate`) starting at time `t`."""
        raw = np.asarray(samples)
        nonfinite = int(raw.size - np.isfinite(raw).sum()) if np.issubdtype(raw.dtype, np.floating) else 0
        x = to_mono_16k(raw, sample_rate)
        clipped = int((np.abs(x) >= CLIP_LEVEL).sum())
        if clipped:
            np.clip(x, -1.0, 1.0, out=x)
        if len(x):
            a = min(1.0, len(x) / (DC_TIME_CONSTANT_S * SAMPLE_RATE))
            m = float(x.mean())
            self._dc = m if self._dc is None else (1 - a) * self._dc + a * m
            x -= np.float32(self._dc)
        return AudioBlock(x, float(t), index, nonfinite, clipped)
