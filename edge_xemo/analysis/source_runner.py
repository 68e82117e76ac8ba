"""Sources feeding an analyzer, each on a thread of its own, through the analyzer's public input side."""

from __future__ import annotations

import logging
import threading
from typing import Protocol

import numpy as np

from ..core.types import SAMPLE_RATE, StatusCode
from ..io.sources import Clock, Source, SourceError

log = logging.getLogger(__name__)


class Fed(Protocol):
    """What a source feeds: the analyzer's input side and its status events."""

    @property
    def closed(self) -> bool: ...

    def push_frame(self, image: np.ndarray, t: float) -> None: ...

    def push_audio(self, samples: np.ndarray, t: float, sample_rate: int = SAMPLE_RATE) -> None: ...

    def report(self, code: StatusCode, message: str, t: float | None = None, level: str = "status") -> None: ...

    def end_stream(self, stream: str) -> None: ...


class _SourceSink:
    """Adapts a Source's callbacks to the analyzer's feeding and events; bad items become events, not exceptions."""

    def __init__(self, fed: Fed):
        self._fed = fed

    def frame(self, image, t):
        try:
            self._fed.push_frame(image, t)
        except ValueError as e:
            if not self._fed.closed:
                self._fed.report(StatusCode.BAD_FRAME, str(e), t=t)

    def audio(self, samples, t, sample_rate=SAMPLE_RATE):
        try:
            self._fed.push_audio(samples, t, sample_rate)
        except ValueError as e:
            if not self._fed.closed:
                self._fed.report(StatusCode.BAD_AUDIO, str(e), t=t)

    def status(self, code: StatusCode, message: str, level: str = "status"):
        self._fed.report(code, message, level=level)


def source_thread(source: Source, fed: Fed, stop: threading.Event, clock: Clock) -> threading.Thread:
    """A thread (not started) that runs `source` into `fed` until the source ends or `stop` is set; a failure
    becomes an `error` event, and the source's end ends the streams it has."""
    sink = _SourceSink(fed)

    def run():
        try:
            source.run(sink, stop, clock)
        except SourceError as e:
            fed.report(StatusCode.SOURCE_FAILED, str(e), level="error")
        except Exception as e:  # a source bug must not take the analyzer down silently
            log.exception("source failed")
            fed.report(StatusCode.SOURCE_FAILED, f"{type(e).__name__}: {e}", level="error")
        finally:
            if source.has_video:
                fed.end_stream("video")
            if source.has_audio:
                fed.end_stream("audio")

    return threading.Thread(target=run, name="edge-xemo-source", daemon=True)
