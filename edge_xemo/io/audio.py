"""Audio conversion: any rate and channel count to the pipeline's 16 kHz mono float32 (PyAV)."""

from __future__ import annotations

import numpy as np

from ..core.types import SAMPLE_RATE


class Resampler:
    """Streaming conversion of any rate and channel count to 16 kHz mono float32 (PyAV/libswresample).

    Channels are averaged; input is (n,) mono, (n, channels) or interleaved (n * channels,).
    """

    def __init__(self, rate: int, channels: int = 1):
        if rate <= 0 or channels <= 0:
            raise ValueError(f"resample: rate and channels must be positive, got rate={rate}, channels={channels}")
        import av

        self.rate, self.channels = int(rate), int(channels)
        self._pts = 0
        self._resampler = None if self.rate == SAMPLE_RATE else av.AudioResampler(format="flt", layout="mono",
                                                                                   rate=SAMPLE_RATE)

    def _mono(self, samples: np.ndarray) -> np.ndarray:
        x = np.asarray(samples)
        if np.issubdtype(x.dtype, np.integer):
            x = x.astype(np.float32) / float(np.iinfo(x.dtype).max + 1)
        x = x.astype(np.float32)
        if x.ndim == 1 and self.channels > 1:
            if len(x) % self.channels:
                raise ValueError(f"resample: {len(x)} interleaved samples is not a multiple of {self.channels} channels")
            x = x.reshape(-1, self.channels)
        if x.ndim == 2:
            if self.channels not in x.shape:
                raise ValueError(f"resample: array of shape {x.shape} has no axis of {self.channels} channels")
            x = x.mean(axis=1 if x.shape[1] == self.channels else 0)
        return np.ascontiguousarray(np.nan_to_num(x, nan=0.0, posinf=1.0, neginf=-1.0))

    def push(self, samples: np.ndarray) -> np.ndarray:
        """Resampled 16 kHz mono output available so far (the filter delays a few samples)."""
        x = self._mono(samples)
        if self._resampler is None:
            return x
        import av

        frame = av.AudioFrame.from_ndarray(x[None, :], format="flt", layout="mono")
        frame.sample_rate = self.rate
        frame.pts = self._pts
        self._pts += len(x)
        return self._collect(self._resampler.resample(frame))

    def flush(self) -> np.ndarray:
        """The samples still inside the filter at the end of the stream."""
        return np.zeros(0, np.float32) if self._resampler is None else self._collect(self._resampler.resample(None))

    @staticmethod
    def _collect(frames) -> np.ndarray:
        parts = [f.to_ndarray().reshape(-1) for f in frames]
        return np.concatenate(parts).astype(np.float32) if parts else np.zeros(0, np.float32)


def resample(samples: np.ndarray, rate: int, channels: int = 1) -> np.ndarray:
    """Whole-buffer conversion of any rate / channel count to 16 kHz mono float32."""
    r = Resampler(rate, channels)
    out = r.push(samples)
    return np.concatenate([out, r.flush()])
