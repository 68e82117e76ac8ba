"""The analysis the server runs: models loaded in the background, then the sources; readiness.

The server answers `/healthz` at once; `/readyz` says 503 until the models are loaded and every
source delivers (a camera frame, a microphone block, a replayed file's first item within the last
`STALE_S` seconds). Events go to the hub from the analyzer's delivery thread.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time

from ..analyzer import Analyzer, AnalyzerOptions, RunningMode, build_stages, run_record
from ..core import events as ev
from ..core.models import ModelError
from ..core.types import StatusCode
from ..io.sources import FileSource, Source
from .hub import EventHub

log = logging.getLogger(__name__)

STALE_S = 3.0
"""A stream that delivered nothing for this long is not ready (a camera at 5 frames/s or more, a
microphone's 0.1 s blocks, are far inside it)."""


class Pipeline:
    """Loads the stages on a thread of its own, then runs the sources through one LIVE_STREAM analyzer."""

    def __init__(self, sources: list[Source], options: AnalyzerOptions, hub: EventHub):
        self.sources, self._hub = sources, hub
        self.options = dataclasses.replace(options, running_mode=RunningMode.LIVE_STREAM, result_callback=hub.publish)
        self.analyzer: Analyzer | None = None
        self.record: dict = {}
        self.state = {"models": "loading"}
        self.problem: str | None = None
        self._thread = threading.Thread(target=self._start, name="edge-xemo-serve-start", daemon=True)
        self._closing = False

    def start(self) -> None:
        self._thread.start()

    def _start(self) -> None:
        try:
            stages = build_stages(self.options)
            self.record = run_record(stages)
            self.state["models"] = "ready"
            if self._closing:
                stages.close()
                return
            self.analyzer = Analyzer(self.options, stages.visual, stages.audio, stages.reasoner, owns_stages=True)
            self.analyzer.source_name = ", ".join(s.name for s in self.sources)
            self.analyzer.run_sources(*self.sources)
        except (ModelError, ValueError, OSError, ImportError) as e:
            first = str(e).splitlines()[0] if str(e) else type(e).__name__
            self.problem = first
            self.state["models"] = "failed"
            log.error("edge-xemo serve: %s", first)
            self._hub.publish(ev.status(StatusCode.START_FAILED, first, level="error"))

    def readiness(self) -> tuple[bool, dict[str, str]]:
        """(ready, state of each component): models, then video/audio of the sources."""
        state = dict(self.state)
        a = self.analyzer
        if a is not None:
            now = a.clock()
            for stream, name in (("video", "camera"), ("audio", "microphone")):
                if (a.visual if stream == "video" else a.audio) is None:
                    continue
                if any(isinstance(s, FileSource) for s in self.sources):
                    name = f"replay_{stream}"
                last = a.last_input_time(stream)
                state[name] = (
                    "paused"
                    if a.paused
                    else "waiting"
                    if last is None
                    else "ready"
                    if now - last <= STALE_S
                    else "stalled"
                )
        ready = all(v in ("ready", "paused") for v in state.values()) and a is not None
        return ready, state

    def close(self, timeout: float = 2.0) -> bool:
        """Stop the sources and the analyzer (an explanation under way is cut short); False when a thread
        is still stuck after `timeout` seconds (models still loading, a device that does not let go)."""
        self._closing = True
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.warning("models still loading %.1f s after the stop", timeout)
            return False
        if self.analyzer is None:
            return True
        t0 = time.monotonic()
        ended = self.analyzer.close(timeout=timeout)
        log.info("analyzer closed in %.1f s", time.monotonic() - t0)
        return ended
