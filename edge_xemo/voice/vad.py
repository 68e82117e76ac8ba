"""Streaming voice activity detection with Silero VAD (ONNX, MIT).

The model scores 512-sample chunks of 16 kHz audio (32 ms), each preceded by the last 64 samples
of the previous chunk, and carries a recurrent state (h, c, [1, 1, 128] each) from chunk to chunk;
its sequence graph scores all the chunks of a block in one call. `SileroVad`
accepts blocks of any size, keeps the leftover samples, and turns chunk probabilities into speech
segments with hysteresis: speech starts when a chunk scores >= `threshold`, ends after
`min_silence_ms` of chunks below `neg_threshold`; segments shorter than `min_speech_ms` are dropped.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from ..core.models import load_session
from ..core.types import SAMPLE_RATE

log = logging.getLogger(__name__)

CHUNK = 512
"""Samples per scored chunk at 16 kHz (32 ms)."""
CONTEXT = 64
"""Samples of the previous chunk prepended to each chunk."""
CHUNK_S = CHUNK / SAMPLE_RATE


@dataclass(frozen=True, slots=True)
class VadOptions:
    """Silero VAD settings.

    threshold: chunk speech probability that starts speech (Silero's default 0.5).
    neg_threshold: probability below which a chunk counts as silence; None = threshold - 0.15.
    min_speech_ms: speech segments shorter than this are dropped (250 ms).
    min_silence_ms: silence needed to end a segment (300 ms); shorter gaps stay inside it.
    speech_pad_ms: padding added to each side of a finished segment (30 ms).
    """

    threshold: float = 0.5
    neg_threshold: float | None = None
    min_speech_ms: int = 250
    min_silence_ms: int = 300
    speech_pad_ms: int = 30

    def __post_init__(self) -> None:
        if not 0.0 < self.threshold < 1.0:
            raise ValueError(f"VAD threshold must be in (0, 1), got {self.threshold}")
        if self.neg_threshold is not None and not 0.0 <= self.neg_threshold <= self.threshold:
            raise ValueError(f"VAD neg_threshold must be in [0, threshold], got {self.neg_threshold}")
        if min(self.min_speech_ms, self.min_silence_ms, self.speech_pad_ms) < 0:
            raise ValueError("VAD durations (min_speech_ms, min_silence_ms, speech_pad_ms) must be >= 0")

    @property
    def off_threshold(self) -> float:
        return self.neg_threshold if self.neg_threshold is not None else max(0.01, self.threshold - 0.15)


@dataclass(frozen=True, slots=True)
class SpeechSegment:
    """One stretch of speech, `start`/`end` in source seconds."""

    start: float
    end: float

    @property
    def duration(self) -> float:
        return self.end - self.start


@dataclass(frozen=True, slots=True)
class VadUpdate:
    """What one `accept` call produced.

    t: source time of the start of each scored chunk; prob: its speech probability;
    speaking: the hysteresis state after each chunk; segments: segments closed by this call.
    """

    t: np.ndarray
    prob: np.ndarray
    speaking: np.ndarray
    segments: tuple[SpeechSegment, ...]


class SileroVad:
    """Stateful Silero VAD over a stream of 16 kHz mono float32 blocks.

    threads / provider: onnxruntime intra-op threads and provider (see `core.models.Provider`).
    """

    def __init__(self, options: VadOptions | None = None, threads: int = 1, provider: str = "cpu"):
        self.options = options or VadOptions()
        self._session = load_session("silero_vad", threads, provider)
        self.reset_states()

    def reset_states(self) -> None:
        """Forget the recurrent state, the leftover samples and any open segment."""
        self._h = np.zeros((1, 1, 128), dtype=np.float32)
        self._c = np.zeros((1, 1, 128), dtype=np.float32)
        self._context = np.zeros(CONTEXT, dtype=np.float32)
        self._pending = np.zeros(0, dtype=np.float32)
        self._pending_t: float | None = None  # source time of _pending[0]
        self._speaking = False
        self._start: float | None = None
        self._silence_since: float | None = None
        self._last_speech_end = 0.0

    @property
    def speaking(self) -> bool:
        return self._speaking

    @property
    def open_start(self) -> float | None:
        """Start (source seconds) of the segment still open, or None."""
        return self._start if self._speaking else None

    def probabilities(self, samples: np.ndarray) -> np.ndarray:
        """Speech probability of each whole 512-sample chunk of `samples` (n * 512 of them), in one
        call of the sequence graph, advancing the recurrent state and the context."""
        chunks = samples.reshape(-1, CHUNK)
        if not len(chunks):
            return np.zeros(0, dtype=np.float32)
        rows = np.empty((len(chunks), CONTEXT + CHUNK), dtype=np.float32)
        rows[:, CONTEXT:] = chunks
        rows[0, :CONTEXT] = self._context
        rows[1:, :CONTEXT] = chunks[:-1, -CONTEXT:]
        probs, self._h, self._c = self._session.run(None, {"input": rows, "h": self._h, "c": self._c})
        self._context = chunks[-1, -CONTEXT:].copy()
        return probs.astype(np.float32, copy=False)

    def accept(self, samples: np.ndarray, t: float) -> VadUpdate:
        """Score every whole chunk now available; `t` is the source time of `samples[0]`.

        A block that does not continue the previous one (a gap or overlap over 10 ms) first
        closes any open segment and restarts the chunk grid at `t`; the model state is kept.
        """
        samples = np.asarray(samples, dtype=np.float32).reshape(-1)
        closed: list[SpeechSegment] = []
        if self._pending_t is None:
            self._pending_t = t
        else:
            expected = self._pending_t + len(self._pending) / SAMPLE_RATE
            if abs(t - expected) > 0.01:
                log.debug("VAD: stream jumped from %.3f s to %.3f s", expected, t)
                closed += self._close(self._end_time(expected))
                self._pending = np.zeros(0, dtype=np.float32)
                self._pending_t = t
        buf = np.concatenate([self._pending, samples]) if len(self._pending) else samples
        n = len(buf) // CHUNK
        times = self._pending_t + np.arange(n) * CHUNK_S
        probs = self.probabilities(buf[: n * CHUNK])
        speaking = np.empty(n, dtype=bool)
        for i in range(n):
            closed += self._step(float(times[i]), float(probs[i]))
            speaking[i] = self._speaking
        self._pending = buf[n * CHUNK :].copy()
        self._pending_t += n * CHUNK_S
        return VadUpdate(times, probs, speaking, tuple(closed))

    def flush(self) -> tuple[SpeechSegment, ...]:
        """End of stream: close an open segment at the last scored sample."""
        if self._pending_t is None:
            return ()
        stream_end = self._pending_t + len(self._pending) / SAMPLE_RATE
        segments = self._close(self._end_time(self._pending_t))
        return tuple(SpeechSegment(s.start, min(s.end, round(stream_end, 4))) for s in segments)

    def _end_time(self, now: float) -> float:
        return self._silence_since if self._silence_since is not None else now

    def _step(self, t: float, prob: float) -> list[SpeechSegment]:
        o = self.options
        if prob >= o.threshold:
            self._silence_since = None
            if not self._speaking:
                self._speaking = True
                self._start = max(self._last_speech_end, t - o.speech_pad_ms / 1000)
            return []
        if self._speaking and prob < o.off_threshold:
            if self._silence_since is None:
                self._silence_since = t
            if t + CHUNK_S - self._silence_since >= o.min_silence_ms / 1000:
                return self._close(self._silence_since)
        return []

    def _close(self, end: float) -> list[SpeechSegment]:
        if not self._speaking or self._start is None:
            return []
        o = self.options
        end = end + o.speech_pad_ms / 1000
        start = self._start
        self._speaking, self._start, self._silence_since = False, None, None
        self._last_speech_end = end
        if end - start < o.min_speech_ms / 1000:
            return []
        return [SpeechSegment(round(start, 4), round(end, 4))]


def speech_segments(samples: np.ndarray, t0: float = 0.0, options: VadOptions | None = None) -> list[SpeechSegment]:
    """Speech segments of a whole clip (16 kHz mono float32) starting at source time `t0`."""
    vad = SileroVad(options)
    segments = list(vad.accept(samples, t0).segments)
    return segments + list(vad.flush())
