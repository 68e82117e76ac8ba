"""Bounded queues, the rolling window scheduler, and which windows are explained (`ExplainPolicy`).

Nothing in the pipeline queues without bound: `BoundedQueue` either blocks the producer
(offline files: nothing is lost) or drops the oldest item and counts it (live capture: capture
never waits). `WindowScheduler` cuts both streams into rolling windows on the source clock and
closes a window once every active stream has passed its end.
"""

from __future__ import annotations

import collections
import threading
from dataclasses import dataclass, field

import numpy as np

from .types import SAMPLE_RATE, ModalityResult


class BoundedQueue:
    """A FIFO of at most `maxsize` items; `drop_oldest` picks the policy when full."""

    def __init__(self, maxsize: int, drop_oldest: bool):
        if maxsize < 1:
            raise ValueError(f"queue size must be >= 1, got {maxsize}")
        self.maxsize = maxsize
        self.drop_oldest = drop_oldest
        self.dropped = 0
        self._items: collections.deque = collections.deque()
        self._cond = threading.Condition()
        self._closed = False

    def put(self, item) -> bool:
        """Add `item`; returns False if the queue is closed."""
        with self._cond:
            while not self.drop_oldest and len(self._items) >= self.maxsize and not self._closed:
                self._cond.wait(0.1)
            if self._closed:
                return False
            if len(self._items) >= self.maxsize:
                self._items.popleft()
                self.dropped += 1
            self._items.append(item)
            self._cond.notify_all()
            return True

    def get(self, timeout: float | None = None):
        """Next item, or None after `timeout` seconds or once closed and empty."""
        with self._cond:
            if not self._items and not self._closed:
                self._cond.wait(timeout)
            if not self._items:
                return None
            item = self._items.popleft()
            self._cond.notify_all()
            return item

    def drain(self, poll_s: float = 0.1):
        """Yield items as they come until the queue is closed and empty."""
        while True:
            item = self.get(poll_s)
            if item is not None:
                yield item
            elif self._closed and not self._items:
                return

    def peek(self):
        with self._cond:
            return self._items[0] if self._items else None

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    @property
    def closed(self) -> bool:
        return self._closed

    def __len__(self) -> int:
        return len(self._items)


@dataclass
class Window:
    """One closed window: per-item observations of both streams and the audio it spans."""

    index: int
    t_start: float
    t_end: float
    frame_observations: list = field(default_factory=list)
    audio_observations: list = field(default_factory=list)
    audio: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    audio_t0: float = 0.0
    n_frames: int = 0


class WindowScheduler:
    """Rolling windows [t0 + k*hop, t0 + k*hop + window) over timestamped observations.

    `streams` names the streams that gate closing ("video", "audio"); a stream that has ended
    no longer gates. Observations and audio older than the next window's start are discarded, so
    memory stays bounded by one window.
    """

    def __init__(self, window_s: float = 2.0, hop_s: float = 1.0, streams: tuple[str, ...] = ("video", "audio")):
        if window_s <= 0 or hop_s <= 0:
            raise ValueError(f"window and hop must be positive, got window={window_s} hop={hop_s}")
        if hop_s > window_s:
            raise ValueError(f"hop ({hop_s} s) must not exceed the window ({window_s} s)")
        self.window_s, self.hop_s = window_s, hop_s
        self._watermark: dict[str, float | None] = {s: None for s in streams}
        self._ended = {s: False for s in streams}
        self._frames: collections.deque = collections.deque()  # (t, obs)
        self._audio_obs: collections.deque = collections.deque()  # (t, obs)
        self._audio_chunks: collections.deque = collections.deque()  # (t, samples)
        self._t0: float | None = None
        self._next = 0

    def _start(self, t: float) -> None:
        if self._t0 is None:
            self._t0 = t

    def add_frame(self, t: float, observation) -> None:
        self._start(t)
        self._frames.append((t, observation))
        self._advance("video", t)

    def add_audio(self, t: float, samples: np.ndarray, observation) -> None:
        self._start(t)
        self._audio_obs.append((t, observation))
        self._audio_chunks.append((t, samples))
        self._advance("audio", t + len(samples) / SAMPLE_RATE)

    def _advance(self, stream: str, t: float) -> None:
        if stream in self._watermark:
            w = self._watermark[stream]
            self._watermark[stream] = t if w is None else max(w, t)

    def end_stream(self, stream: str) -> None:
        if stream in self._ended:
            self._ended[stream] = True

    def _bounds(self, k: int) -> tuple[float, float]:
        assert self._t0 is not None  # a window exists once an item has come
        start = self._t0 + k * self.hop_s
        return start, start + self.window_s

    def _gate(self) -> float | None:
        live = [w for s, w in self._watermark.items() if not self._ended[s]]
        marks = [w for w in live if w is not None]
        if len(marks) < len(live):
            return None
        return min(marks) if marks else float("inf")

    def ready(self) -> list[Window]:
        """Windows that every active stream has passed, oldest first."""
        out: list[Window] = []
        gate = self._gate()
        if gate is None or self._t0 is None:
            return out
        last = self._last_t()
        while True:
            t_start, t_end = self._bounds(self._next)
            if gate == float("inf"):
                # every stream ended: flush full-length windows until the data is covered
                if last is None or (self._next > 0 and self._bounds(self._next - 1)[1] > last):
                    break
            elif t_end > gate:
                break
            out.append(self._cut(self._next, t_start, t_end))
            self._next += 1
        return out

    def _last_t(self) -> float | None:
        ts = [
            t
            for t in (
                self._frames[-1][0] if self._frames else None,
                (self._audio_chunks[-1][0] + len(self._audio_chunks[-1][1]) / SAMPLE_RATE)
                if self._audio_chunks
                else None,
            )
            if t is not None
        ]
        return max(ts) if ts else None

    def _cut(self, k: int, t_start: float, t_end: float) -> Window:
        win = Window(k, t_start, t_end)
        win.frame_observations = [o for t, o in self._frames if t_start <= t < t_end]
        win.n_frames = len(win.frame_observations)
        win.audio_observations = [o for t, o in self._audio_obs if t_start <= t < t_end]
        chunks = [(t, x) for t, x in self._audio_chunks if t < t_end and t + len(x) / SAMPLE_RATE > t_start]
        if chunks:
            a0 = chunks[0][0]
            audio = np.concatenate([x for _, x in chunks])
            i0 = max(0, int(round((t_start - a0) * SAMPLE_RATE)))
            i1 = max(i0, int(round((t_end - a0) * SAMPLE_RATE)))
            win.audio, win.audio_t0 = audio[i0:i1], a0 + i0 / SAMPLE_RATE
        self._discard_before(self._bounds(k + 1)[0])
        return win

    def _discard_before(self, t: float) -> None:
        while self._frames and self._frames[0][0] < t:
            self._frames.popleft()
        while self._audio_obs and self._audio_obs[0][0] < t:
            self._audio_obs.popleft()
        while self._audio_chunks and self._audio_chunks[0][0] + len(self._audio_chunks[0][1]) / SAMPLE_RATE < t:
            self._audio_chunks.popleft()


def cue_signature(*results: ModalityResult) -> frozenset[str]:
    """The names of the cues of a window's results: what `material_change` compares."""
    return frozenset(c.name for r in results for c in r.cues)


def material_change(a: frozenset[str], b: frozenset[str], threshold: float = 0.5) -> bool:
    """True when the Jaccard distance between two cue sets reaches `threshold`."""
    if not a and not b:
        return False
    return 1.0 - len(a & b) / len(a | b) >= threshold


class ExplainPolicy:
    """Which windows are explained: the first, then one every `every_s` seconds of source time, and any
    window whose cues changed materially since the last one explained."""

    def __init__(self, every_s: float):
        self.every_s = every_s
        self._last: tuple[float, frozenset[str]] | None = None

    def due(self, t_end: float, signature: frozenset[str]) -> bool:
        """Whether the window ending at `t_end` with these cue names is explained (it then becomes the last)."""
        last = self._last
        if last is not None and t_end - last[0] < self.every_s and not material_change(signature, last[1]):
            return False
        self._last = (t_end, signature)
        return True
