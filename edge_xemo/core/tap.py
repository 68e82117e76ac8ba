"""Observe a perception stage without changing it: every call, its source time, duration and result.

The benchmark times stages through it and the clip evaluation collects per-window results with it;
both wrap the stage the analyzer runs, so what they see is what the analyzer did.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True, slots=True)
class StageCall:
    """One call of a tapped stage: `kind` is "per_frame", "per_block" or "per_window"; `t` its source time
    (the item's time, or the window start); `ms` its wall time; `item` the frame or block (None for a window)."""

    kind: str
    t: float
    ms: float
    item: object
    result: object


class StageTap:
    """A VisualStage or AudioStage that forwards every call to `stage` and reports it to `on_call`."""

    def __init__(self, stage, on_call: Callable[[StageCall], None]):
        self.stage, self.on_call = stage, on_call

    def _call(self, kind: str, t: float, item, fn, *args):
        t0 = time.perf_counter()
        result = fn(*args)
        self.on_call(StageCall(kind, t, (time.perf_counter() - t0) * 1e3, item, result))
        return result

    def process_frame(self, frame):
        return self._call("per_frame", frame.t, frame, self.stage.process_frame, frame)

    def process_block(self, block):
        return self._call("per_block", block.t, block, self.stage.process_block, block)

    def summarize(self, *args):
        # (observations, t_start, t_end) for video, (samples, t0, observations, t_start, t_end) for audio
        return self._call("per_window", args[-2], None, self.stage.summarize, *args)

    def reset(self) -> None:
        self.stage.reset()

    def reset_baseline(self, *args) -> None:
        self.stage.reset_baseline(*args)

    @property
    def missing(self) -> tuple[str, ...]:
        return getattr(self.stage, "missing", ())

    def close(self) -> None:
        close = getattr(self.stage, "close", None)
        if close is not None:
            close()
