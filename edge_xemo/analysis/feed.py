"""The analyzer's input side: what `push_frame` and `push_audio` check and where their items wait."""

from __future__ import annotations

import threading

import numpy as np

from ..core.scheduler import BoundedQueue
from ..core.types import SAMPLE_RATE, Frame
from ..io.audio import Conditioner

STREAMS = ("video", "audio")


class InputFeed:
    """Checks each frame and audio block, numbers it and queues it for perception (`frames`, `blocks`: bounded;
    the producer waits when full, or with `drop_oldest` the oldest item is dropped and counted). Items of a path
    that is off are ignored; items pushed while `paused` are counted in `stats` and left out."""

    def __init__(self, frame_queue: int, audio_queue: int, drop_oldest: bool, video: bool, audio: bool, stats: dict):
        self.frames = BoundedQueue(frame_queue, drop_oldest)
        self.blocks = BoundedQueue(audio_queue, drop_oldest)
        self.paused = False
        self._video, self._audio, self._stats = video, audio, stats
        self._last_t: dict[str, float | None] = dict.fromkeys(STREAMS)
        self._frame_index = self._block_index = 0
        self._conditioner = Conditioner()
        self._wake = threading.Condition()

    def push_frame(self, image: np.ndarray, t: float) -> None:
        """Queue one BGR (H, W, 3) or grayscale (H, W) uint8 frame taken at source time `t` seconds."""
        if not self._video:
            return
        if self.paused:
            self._stats["frames_paused"] += 1
            return
        if not isinstance(image, np.ndarray) or image.ndim not in (2, 3) or image.size == 0:
            raise ValueError(
                f"a frame must be a non-empty (H, W) or (H, W, 3) array, got {getattr(image, 'shape', type(image))}"
            )
        if image.ndim == 3 and image.shape[2] not in (1, 3, 4):
            raise ValueError(f"a frame needs 1, 3 or 4 channels, got {image.shape[2]}")
        self._check_time("video", t)
        self.frames.put(Frame(image, float(t), self._frame_index))
        self._frame_index += 1
        self.notify()

    def push_audio(self, samples: np.ndarray, t: float, sample_rate: int = SAMPLE_RATE) -> None:
        """Queue audio starting at source time `t`: (n,) or (n, channels), any rate (`io.audio.Conditioner`)."""
        if not self._audio:
            return
        if self.paused:
            self._stats["audio_paused"] += 1
            return
        block = self._conditioner.block(samples, sample_rate, t, self._block_index)
        if len(block.samples) == 0:
            return
        self._check_time("audio", t)
        self.blocks.put(block)
        self._block_index += 1
        self.notify()

    def _check_time(self, stream: str, t: float) -> None:
        if not np.isfinite(t):
            raise ValueError(f"{stream} timestamp must be finite, got {t}")
        last = self._last_t[stream]
        if last is not None and t < last:
            raise ValueError(f"{stream} timestamps must not go backwards: {t:.3f} after {last:.3f}")
        self._last_t[stream] = t

    def last_time(self, stream: str) -> float | None:
        """Source time of the newest item pushed on `stream` ("video" or "audio"); None before the first."""
        return self._last_t[stream]

    def set_paused(self, paused: bool) -> bool:
        """Pause or resume; True when that changed anything."""
        changed, self.paused = self.paused != paused, paused
        return changed

    def end_stream(self, stream: str) -> None:
        """No more items of `stream` ("video" or "audio") will come."""
        {"video": self.frames, "audio": self.blocks}[stream].close()
        self.notify()

    def ended(self, stream: str) -> bool:
        """Whether `stream` ended and perception took all of its items."""
        queue = self.frames if stream == "video" else self.blocks
        return queue.closed and not len(queue)

    @property
    def dropped(self) -> tuple[int, int]:
        """Frames and audio blocks dropped so far by the full queues."""
        return self.frames.dropped, self.blocks.dropped

    def notify(self) -> None:
        """Wake perception (an item, the end of a stream, or a control came)."""
        with self._wake:
            self._wake.notify_all()

    def wait(self, timeout: float) -> None:
        """Wait at most `timeout` seconds for `notify`."""
        with self._wake:
            self._wake.wait(timeout)
