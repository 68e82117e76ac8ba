"""The perception thread: frames and audio blocks in time order through the stages, cut into windows."""

from __future__ import annotations

import collections
import logging
import threading
import time
from typing import Callable

import numpy as np

from ..core.scheduler import Window, WindowScheduler
from ..core.types import AudioBlock, AudioStage, Frame, ModalityResult, ResultCode, StatusCode, VisualStage
from .explainer import Explainer
from .feed import STREAMS, InputFeed
from .reporting import Reporter

log = logging.getLogger(__name__)


class Perception:
    """Runs the stages on the fed items, oldest first, and each closed window through the stages' summaries:
    its `cues` events (with per-stage latency), its result codes as `status` events, and the window handed to
    the explainer (None: no reasoner). Reports what the input queues dropped, at most once per window.

    `frame_callback` receives (Frame, observation) after each frame; `live`: latency includes capture to cues
    on `clock`; `on_end` runs once the loop ends (the input ended, the stop was set, or the loop failed)."""

    def __init__(
        self,
        feed: InputFeed,
        visual: VisualStage | None,
        audio: AudioStage | None,
        scheduler: WindowScheduler,
        explainer: Explainer | None,
        report: Reporter,
        stop: threading.Event,
        on_end: Callable[[], None],
        frame_callback: Callable[[Frame, object], None] | None = None,
        live_clock: Callable[[], float] | None = None,
    ):
        self._feed, self._visual, self._audio, self._scheduler = feed, visual, audio, scheduler
        self._explainer, self._report, self._stop, self._on_end = explainer, report, stop, on_end
        self._frame_callback, self._live_clock = frame_callback, live_clock
        self._controls: collections.deque[Callable[[], None]] = collections.deque()
        self._timing: dict[str, collections.deque[tuple[float, float]]] = {
            s: collections.deque(maxlen=4096) for s in STREAMS
        }  # (t, ms) of each stage call
        self._frame_size: tuple[int, int] | None = None
        self._reported_drops = (0, 0)

    def call_soon(self, control: Callable[[], None]) -> None:
        """Run `control` on the perception thread before its next item."""
        self._controls.append(control)
        self._feed.notify()

    def run(self) -> None:
        """The thread's body: until the input ends or the stop is set; the last windows close as they stand."""
        try:
            while not self._stop.is_set():
                while self._controls:
                    self._controls.popleft()()
                if self._take_oldest():
                    self._close_windows()
                elif self._inputs_done():
                    break
                else:
                    self._feed.wait(0.05)
            self._close_windows(last=True)
        except Exception as e:
            log.exception("perception failed")
            self._report.emit(self._report.events.error(StatusCode.PERCEPTION_FAILED, e, None))
        finally:
            self._on_end()

    def _take_oldest(self) -> bool:
        """Run the oldest item waiting (a frame before a block of the same time); False when none waits."""
        frame, block = self._feed.frames.peek(), self._feed.blocks.peek()
        if frame is None and block is None:
            return False
        if block is None or (frame is not None and frame.t <= block.t):
            self._on_frame(self._feed.frames.get(0))
        else:
            self._on_block(self._feed.blocks.get(0))
        return True

    def _inputs_done(self) -> bool:
        """Tell the scheduler which streams ended (so the last windows flush); True when both did."""
        ended = [s for s in STREAMS if self._feed.ended(s)]
        for stream in ended:
            self._scheduler.end_stream(stream)
        return len(ended) == len(STREAMS)

    def _on_frame(self, frame: Frame | None) -> None:
        if frame is None:
            return
        assert self._visual is not None  # frames are queued only with a visual stage
        t0 = time.perf_counter()
        try:
            obs = self._visual.process_frame(frame)
        except Exception as e:  # a bad frame must not end a live loop
            self._report.fail(StatusCode.VISUAL_FAILED, e, frame.t)
            return
        self._timing["video"].append((frame.t, (time.perf_counter() - t0) * 1e3))
        self._report.stats["frames"] += 1
        self._frame_size = (frame.image.shape[1], frame.image.shape[0])
        self._scheduler.add_frame(frame.t, obs)
        if self._frame_callback is not None:
            try:
                self._frame_callback(frame, obs)
            except Exception as e:
                self._report.stats["callback_errors"] += 1
                log.warning("frame callback failed: %s: %s", type(e).__name__, e)

    def _on_block(self, block: AudioBlock | None) -> None:
        if block is None:
            return
        assert self._audio is not None  # blocks are queued only with an audio stage
        t0 = time.perf_counter()
        try:
            obs = self._audio.process_block(block)
        except Exception as e:
            self._report.fail(StatusCode.AUDIO_FAILED, e, block.t)
            return
        self._timing["audio"].append((block.t, (time.perf_counter() - t0) * 1e3))
        self._report.stats["audio_blocks"] += 1
        self._scheduler.add_audio(block.t, block.samples, obs)

    def _close_windows(self, last: bool = False) -> None:
        self._inputs_done()
        windows = self._scheduler.ready()
        for win in windows:
            self._on_window(win)
        if windows or last:  # drops are reported at most once per window, with counts
            self._report_drops(windows[-1].t_end if windows else None)

    def _report_drops(self, t: float | None) -> None:
        drops = self._feed.dropped
        if drops != self._reported_drops:
            new = (drops[0] - self._reported_drops[0], drops[1] - self._reported_drops[1])
            self._reported_drops = drops
            self._report.stats.update(frames_dropped=drops[0], audio_dropped=drops[1])
            self._report.emit(self._report.events.dropped(t, drops, new))

    def _on_window(self, win: Window) -> None:
        t0 = time.perf_counter()
        try:
            vis, aud = self._summarize(win)
        except Exception as e:
            self._report.fail(StatusCode.SUMMARIZE_FAILED, e, win.t_end)
            return
        self._report.stats["windows"] += 1
        lat = self._stage_latency(win, vis, aud, (time.perf_counter() - t0) * 1e3)
        if self._live_clock is not None:
            lat["capture_to_cues"] = (self._live_clock() - win.t_end) * 1e3
        events = self._report.events
        for r in (vis, aud):
            if r.code is not None and r.code is not ResultCode.PATH_OFF:
                self._report.emit(
                    events.window_status(win, r.code.value, f"{r.modality}: {r.message}", modality=r.modality)
                )
        if not vis.empty or not aud.empty:
            for event in events.cues(win, vis, aud, lat, self._frame_size):
                self._report.emit(event)
        if self._explainer is not None:
            self._explainer.offer(win, vis, aud)

    def _summarize(self, win: Window) -> tuple[ModalityResult, ModalityResult]:
        vis = aud = None
        if self._visual is not None:
            vis = self._visual.summarize(win.frame_observations, win.t_start, win.t_end)
        if self._audio is not None:
            aud = self._audio.summarize(win.audio, win.audio_t0, win.audio_observations, win.t_start, win.t_end)
        return (
            vis or ModalityResult("visual", code=ResultCode.PATH_OFF, message="visual path off"),
            aud or ModalityResult("auditory", code=ResultCode.PATH_OFF, message="audio path off"),
        )

    def _stage_latency(
        self, win: Window, vis: ModalityResult, aud: ModalityResult, summarize_ms: float
    ) -> dict[str, float]:
        lat = {}
        for stream, key in (("video", "visual_frame"), ("audio", "audio_block")):
            timing = self._timing[stream]
            while timing and timing[0][0] < win.t_start:
                timing.popleft()
            ms = [m for t, m in timing if t < win.t_end]
            if ms:
                lat[f"{key}_mean"] = float(np.mean(ms))
                lat[f"{key}_max"] = float(np.max(ms))
        lat.update({f"visual_{k}": v for k, v in vis.latency_ms.items()})
        lat.update({f"audio_{k}": v for k, v in aud.latency_ms.items()})
        lat["summarize"] = summarize_ms
        return lat
