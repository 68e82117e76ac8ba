"""The Analyzer: sources -> perception -> rolling windows -> explanations -> events.

Three threads besides the sources, started by `start()`: perception (per-frame and per-block work,
window cutting, summaries), reasoning (the judgement stage and its optional LLM narrator, one
explanation at a time), and delivery (callbacks). Its parts: `core.scheduler` (bounded queues, windows,
`ExplainPolicy`), `core.outbox.Outbox` (window order), `core.events` (event payloads); `close()` is the
one way everything stops (docs/reliability.md).

Running modes:
- VIDEO: offline files. Producers wait when a queue is full, so nothing is dropped and every
  window is analysed; explanations are never cancelled. Every decision rests on the source clock
  and the data, and events leave in window order (a later window's events wait behind an earlier
  window's unfinished explanation), so the same input gives the same event stream, apart from
  `wall_time` and `latency_ms`, whatever the machine is doing and whatever the thread counts
  (tests/test_determinism.py).
- LIVE_STREAM: capture never waits. Full queues drop their oldest item (counted, reported as a
  `status` event); a newer window whose cues differ materially cancels an unfinished explanation,
  and at most one window waits for the judgement, so explanations never queue behind stale ones.
  These are real-time policies: what is dropped or cancelled depends on how fast the machine is,
  and events leave as soon as they are made.
"""

from __future__ import annotations

import collections
import dataclasses
import enum
import logging
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Iterator

import numpy as np

from .core import events as ev
from .core.models import sha256_of, used_artifacts
from .core.outbox import Outbox
from .core.scheduler import BoundedQueue, ExplainPolicy, Window, WindowScheduler, cue_signature, material_change
from .core.types import (
    SAMPLE_RATE,
    AudioBlock,
    AudioStage,
    Frame,
    ModalityResult,
    Reasoner,
    ResultCode,
    StatusCode,
    VisualStage,
)
from .io.audio import to_mono_16k
from .io.sources import Clock, Source, SourceError
from .io.subtitles import text_during
from .reasoning.judgement import explanation_fields

if TYPE_CHECKING:
    from .reasoning.decoder import DecoderOptions
    from .reasoning.judgement import JudgementOptions
    from .vision.stage import VisualOptions
    from .voice.stage import VoiceOptions

log = logging.getLogger(__name__)


class RunningMode(enum.Enum):
    VIDEO = "video"
    LIVE_STREAM = "live_stream"


@dataclass
class AnalyzerOptions:
    """How the analyzer runs. Stage options left as None take each stage's defaults.

    window_s/hop_s: rolling window length and step in seconds (2 s windows every 1 s suit a
      1-2 s explanation cadence).
    explain_every_s: least time between explanations unless the cues change materially.
    visual/audio: turn the visual and the audio path on or off.
    judge: the judgement stage (`reasoning.stage.Reasoning`): a label with its confidence, outcome and
      evidence for every window with something to explain. Off with `explain` off: cues only.
    explain: the LLM narrator (the GGUF decoder) writes or reads the explanation and adds its label
      scores as a source; off: the cue sections are rendered from perception and no LLM is loaded.
    visual_options/voice_options/judgement_options/decoder_options: each stage's options (None: its defaults).
    frame_queue/audio_queue/event_queue: queue bounds (items).
    subtitle: fixed text given to the judgement as the subtitle (a transcript replaces it when ASR runs).
    subtitles: timed subtitle cues (`io.subtitles.read_subtitles`); each window gets the ones it overlaps.
    result_callback: receives every event on the delivery thread; without it use `events()`.
    frame_callback: receives (Frame, per-frame visual observation) on the perception thread
      (the overlay writer uses it).
    """

    running_mode: RunningMode = RunningMode.LIVE_STREAM
    window_s: float = 2.0
    hop_s: float = 1.0
    explain_every_s: float = 2.0
    visual: bool = True
    audio: bool = True
    judge: bool = True
    explain: bool = True
    visual_options: VisualOptions | None = None
    voice_options: VoiceOptions | None = None
    judgement_options: JudgementOptions | None = None
    decoder_options: DecoderOptions | None = None
    frame_queue: int = 8
    audio_queue: int = 64
    event_queue: int = 4096
    subtitle: str | None = None
    subtitles: tuple = ()
    result_callback: Callable[[ev.Event], object] | None = None
    frame_callback: Callable[[Frame, object], None] | None = None

    def __post_init__(self):
        asr = getattr(self.voice_options, "asr", None)
        if self.running_mode == RunningMode.VIDEO and asr is not None and asr.background:
            raise ValueError(
                "TranscriberOptions.background is a live-stream policy (which window a transcript "
                "lands in depends on timing); VIDEO mode transcribes in order: set background=False"
            )


def analyzer_options(
    threads: int = 1,
    provider: str = "cpu",
    *,
    decoder_threads: int | None = None,
    asr=None,
    gpu_layers: int = 0,
    decoder: str | None = None,
    **fields,
) -> AnalyzerOptions:
    """AnalyzerOptions built once, with every stage it turns on given one thread budget and provider (what
    the command line, the bench and the evaluations run). `fields` are AnalyzerOptions' own (running_mode,
    window_s, visual, audio, judge, explain, ...). Perception stages and the judgement's text head get
    `threads`, the decoder `decoder_threads` (default: the same number); `asr` (a voice.asr.TranscriberOptions)
    turns transcription on in the voice stage; `gpu_layers`: decoder layers llama.cpp offloads (needs a
    CUDA/Metal build of llama-cpp-python); `decoder`: the manifest name of another decoder (DecoderOptions.model)."""
    base = AnalyzerOptions(**fields)
    out: dict = {}
    if base.judge:
        from .reasoning.judgement import JudgementOptions

        out["judgement_options"] = JudgementOptions(threads=threads, provider=provider)
    if base.visual:
        from .vision.stage import VisualOptions

        # the facial-action emotion head feeds only the judgement, as the voice-emotion model below
        out["visual_options"] = VisualOptions(threads=threads, provider=provider, use_emotion_model=base.judge)
    if base.audio:
        from .voice.stage import VoiceOptions

        # the voice-emotion model feeds only the judgement: without one (--cues-only) it is not loaded or run
        out["voice_options"] = VoiceOptions(threads=threads, provider=provider, asr=asr, use_emotion_model=base.judge)
    if base.explain:
        from .reasoning.decoder import DecoderOptions

        out["decoder_options"] = DecoderOptions(
            n_threads=decoder_threads or threads, provider=provider, n_gpu_layers=gpu_layers, model=decoder
        )
    return dataclasses.replace(base, **out)


@dataclass(frozen=True, slots=True)
class Stages:
    """The stages an AnalyzerOptions turns on, loaded (None where a path is off)."""

    visual: VisualStage | None = None
    audio: AudioStage | None = None
    reasoner: Reasoner | None = None

    def close(self) -> None:
        """Close every stage that has something to close (thread pools, the decoder's model)."""
        for stage in (self.reasoner, self.audio, self.visual):
            close = getattr(stage, "close", None)
            if close is not None:
                close()


def build_stages(options: AnalyzerOptions) -> Stages:
    """Load the stages the options turn on, each with its own options or its defaults."""
    visual = audio = reasoner = None
    if options.visual:
        from .vision.stage import VisualOptions, VisualPerception

        visual = VisualPerception.create_from_options(options.visual_options or VisualOptions())
    if options.audio:
        from .voice.stage import VoiceOptions, VoicePerception

        audio = VoicePerception.create_from_options(options.voice_options or VoiceOptions())
    if options.judge or options.explain:
        from .reasoning.decoder import DecoderOptions
        from .reasoning.judgement import JudgementOptions
        from .reasoning.stage import Reasoning

        reasoner = Reasoning.create_from_options(
            (options.judgement_options or JudgementOptions()) if options.judge else None,
            (options.decoder_options or DecoderOptions()) if options.explain else None,
        )
    return Stages(visual, audio, reasoner)


def run_record(stages: Stages) -> dict:
    """What a run used, so that two reports can be compared: each stage's options (threads, provider,
    precision, ...), every model file with its sha256, and the inference libraries' versions."""
    from importlib.metadata import PackageNotFoundError, version

    def installed(package: str) -> str | None:
        try:
            return version(package)
        except PackageNotFoundError:
            return None

    record: dict = {
        "stages": {},
        "models": used_artifacts(),
        "libraries": {
            p: installed(p)
            for p in ("onnxruntime", "onnxruntime-gpu", "llama-cpp-python", "numpy", "opencv-python-headless", "av")
        },
    }
    judge, narrator = getattr(stages.reasoner, "judge", None), getattr(stages.reasoner, "narrator", None)
    for name, stage in (
        ("visual", stages.visual),
        ("audio", stages.audio),
        ("judgement", judge),
        ("reasoner", narrator),
    ):
        options = getattr(stage, "options", None)
        if dataclasses.is_dataclass(options) and not isinstance(options, type):
            record["stages"][name] = dataclasses.asdict(options)
    model_path = getattr(stages.reasoner, "model_file", None)
    if model_path is not None:
        record["models"].setdefault("decoder_file", {"file": str(model_path), "sha256": sha256_of(model_path)})
    return record


@dataclass(frozen=True, slots=True)
class _Job:
    """One window waiting for the decoder."""

    window: Window
    visual: ModalityResult
    auditory: ModalityResult
    subtitle: str | None
    signature: frozenset[str]
    t_queued: float  # time.perf_counter() when the window was queued


class Analyzer:
    """Real-time multimodal cue analysis; build with `create_from_options`, feed, read events.

    Feed it with `run_source(source)` or with `push_frame(image, t)` / `push_audio(samples, t)`;
    read events through `options.result_callback` or by iterating `events()`. A context manager:
    leaving the block ends the input, drains it (VIDEO) and closes every thread.
    """

    def __init__(
        self,
        options: AnalyzerOptions,
        visual: VisualStage | None = None,
        audio: AudioStage | None = None,
        reasoner: Reasoner | None = None,
        owns_stages: bool = False,
    ):
        """`owns_stages`: `close()` also closes the stages (their threads, the decoder's model); stages
        given by a caller who reuses them elsewhere stay open."""
        self.options = o = options
        self.visual, self.audio, self.reasoner = visual, audio, reasoner
        self._owned = Stages(visual, audio, reasoner) if owns_stages else None
        self._stop_reason: str | None = None
        live = o.running_mode == RunningMode.LIVE_STREAM
        self.clock = Clock()
        self._frames = BoundedQueue(o.frame_queue, drop_oldest=live)
        self._audio = BoundedQueue(o.audio_queue, drop_oldest=live)
        self._jobs = BoundedQueue(1 if live else 4, drop_oldest=live)
        self._outbox = Outbox(
            o.event_queue, drop_oldest=live or o.result_callback is not None, in_window_order=not live
        )
        streams = tuple(s for s, on in (("video", visual is not None), ("audio", audio is not None)) if on)
        self.scheduler = WindowScheduler(o.window_s, o.hop_s, streams)
        self._wake = threading.Condition()
        self._stop = threading.Event()
        self._closed = False
        self._last_t: dict[str, float | None] = {"video": None, "audio": None}
        self._frame_index = self._block_index = 0
        self._reported_drops = (0, 0)
        self._frame_size: tuple[int, int] | None = None
        self._paused = False
        self._controls: collections.deque[Callable[[], None]] = collections.deque()  # run on the perception thread
        self._policy = ExplainPolicy(o.explain_every_s)
        self._timing: dict[str, collections.deque[tuple[float, float]]] = {
            "video": collections.deque(maxlen=4096),
            "audio": collections.deque(maxlen=4096),
        }  # (t, ms)
        self._source_threads: list[threading.Thread] = []
        self.source_name = ""
        """What events name as their `source`: the sources' names once `run_source(s)` starts them."""
        self.stats = dict(
            frames=0,
            audio_blocks=0,
            windows=0,
            explanations=0,
            cancelled=0,
            errors=0,
            frames_paused=0,
            audio_paused=0,
            callback_errors=0,
        )
        """Counters: frames, audio blocks, windows, explanations, cancelled, errors, drops, items left out while
        paused, exceptions raised by the result and frame callbacks."""
        self._threads = [threading.Thread(target=self._perceive, name="edge-xemo-perception", daemon=True)]
        self._reasoning = threading.Thread(target=self._reason, name="edge-xemo-reasoning", daemon=True)
        if reasoner is not None:
            self._threads.append(self._reasoning)
        self._delivery = None
        if o.result_callback is not None:
            self._delivery = threading.Thread(target=self._deliver, name="edge-xemo-delivery", daemon=True)
            self._threads.append(self._delivery)
        self._started = threading.Lock()

    def start(self) -> "Analyzer":
        """Start the perception, reasoning and delivery threads (once; feeding, `run_sources` and
        `events()` call it): until then the stages can still be wrapped or replaced."""
        if self._started.acquire(blocking=False):
            for t in self._threads:
                t.start()
        return self

    @classmethod
    def create_from_options(cls, options: AnalyzerOptions) -> "Analyzer":
        """Build the stages the options turn on (loading their models) and start the analyzer."""
        stages = build_stages(options)
        return cls(options, stages.visual, stages.audio, stages.reasoner, owns_stages=True)

    # ------------------------------------------------------------------------------ input side

    def push_frame(self, image: np.ndarray, t: float) -> None:
        """Feed one BGR (H, W, 3) or grayscale (H, W) uint8 frame taken at source time `t` seconds."""
        self._check_open()
        self.start()
        if self.visual is None:
            return
        if self._paused:
            self.stats["frames_paused"] += 1
            return
        if not isinstance(image, np.ndarray) or image.ndim not in (2, 3) or image.size == 0:
            raise ValueError(
                f"a frame must be a non-empty (H, W) or (H, W, 3) array, got {getattr(image, 'shape', type(image))}"
            )
        if image.ndim == 3 and image.shape[2] not in (1, 3, 4):
            raise ValueError(f"a frame needs 1, 3 or 4 channels, got {image.shape[2]}")
        self._check_time("video", t)
        self._frames.put(Frame(image, float(t), self._frame_index))
        self._frame_index += 1
        self._notify()

    def push_audio(self, samples: np.ndarray, t: float, sample_rate: int = SAMPLE_RATE) -> None:
        """Feed audio starting at source time `t`: (n,) or (n, channels), any rate (resampled to 16 kHz)."""
        self._check_open()
        self.start()
        if self.audio is None:
            return
        if self._paused:
            self.stats["audio_paused"] += 1
            return
        block = to_mono_16k(samples, sample_rate)
        if len(block) == 0:
            return
        self._check_time("audio", t)
        self._audio.put(AudioBlock(block, float(t), self._block_index))
        self._block_index += 1
        self._notify()

    # ------------------------------------------------------------------------------- control

    @property
    def paused(self) -> bool:
        return self._paused

    def last_input_time(self, stream: str) -> float | None:
        """Source time of the newest item pushed on `stream` ("video" or "audio"); None before the first."""
        return self._last_t[stream]

    def pause(self) -> None:
        """Stop analysing: frames and audio pushed while paused are left out (counted), nothing is kept."""
        if not self._paused:
            self._paused = True
            self._emit(ev.status(StatusCode.PAUSED, "analysis paused", self.source_name, t=self.clock()))

    def resume(self) -> None:
        if self._paused:
            self._paused = False
            self._emit(ev.status(StatusCode.RESUMED, "analysis resumed", self.source_name, t=self.clock()))

    def reset_baseline(self, face_id: int | None = None) -> None:
        """Forget a person's neutral baseline (face `face_id`, or every face and the voice when None);
        it is learnt again from the following frames. Runs on the perception thread before its next item."""

        def reset() -> None:
            if self.visual is not None:
                self.visual.reset_baseline(face_id)
            if self.audio is not None and face_id is None:
                self.audio.reset_baseline()
            who = "every person" if face_id is None else f"face {face_id}"
            self._emit(
                ev.status(StatusCode.BASELINE_RESET, f"baseline of {who} reset", self.source_name, face_id=face_id)
            )

        self._controls.append(reset)
        self._notify()

    def end_stream(self, stream: str) -> None:
        """Declare that no more items of `stream` ("video" or "audio") will come."""
        {"video": self._frames, "audio": self._audio}[stream].close()
        self._notify()

    def end_input(self) -> None:
        self.end_stream("video")
        self.end_stream("audio")

    def run_source(self, source: Source) -> threading.Thread:
        """Start `source` on its own thread; its end ends the streams it has.

        Streams that no running source provides must be ended by the caller (`end_stream`);
        `run_sources` does that for a set of sources.
        """
        self.source_name = self.source_name or source.name
        self.start()
        sink = _SourceSink(self.push_frame, self.push_audio, self._emit, lambda: self._closed, lambda: self.source_name)

        def run():
            try:
                source.run(sink, self._stop, self.clock)
            except SourceError as e:
                self._emit(ev.status(StatusCode.SOURCE_FAILED, str(e), self.source_name, level="error"))
            except Exception as e:  # a source bug must not take the analyzer down silently
                log.exception("source failed")
                self._emit(
                    ev.status(StatusCode.SOURCE_FAILED, f"{type(e).__name__}: {e}", self.source_name, level="error")
                )
            finally:
                if source.has_video:
                    self.end_stream("video")
                if source.has_audio:
                    self.end_stream("audio")

        thread = threading.Thread(target=run, name="edge-xemo-source", daemon=True)
        self._source_threads.append(thread)
        thread.start()
        return thread

    def run_sources(self, *sources: Source) -> None:
        """Start every source; streams that none of them has are ended at once. The first events say
        which optional models are missing (`model_missing`), one status each."""
        self.source_name = self.source_name or ", ".join(s.name for s in sources)
        for stage in (self.visual, self.audio, self.reasoner):
            for why in getattr(stage, "missing", ()):
                self._emit(ev.status(StatusCode.MODEL_MISSING, why, self.source_name))
        if not any(s.has_video for s in sources):
            self.end_stream("video")
        if not any(s.has_audio for s in sources):
            self.end_stream("audio")
        for source in sources:
            self.run_source(source)

    def _check_open(self) -> None:
        if self._closed:
            raise ValueError("the analyzer is closed")

    def _check_time(self, stream: str, t: float) -> None:
        if not np.isfinite(t):
            raise ValueError(f"{stream} timestamp must be finite, got {t}")
        last = self._last_t[stream]
        if last is not None and t < last:
            raise ValueError(f"{stream} timestamps must not go backwards: {t:.3f} after {last:.3f}")
        self._last_t[stream] = t

    def _notify(self) -> None:
        with self._wake:
            self._wake.notify_all()

    # ------------------------------------------------------------------------------ perception

    def _perceive(self) -> None:
        try:
            while not self._stop.is_set():
                while self._controls:
                    self._controls.popleft()()
                frame, block = self._frames.peek(), self._audio.peek()
                if frame is None and block is None:
                    if self._inputs_done():
                        break
                    with self._wake:
                        self._wake.wait(0.05)
                    continue
                if block is None or (frame is not None and frame.t <= block.t):
                    self._on_frame(self._frames.get(0))
                else:
                    self._on_block(self._audio.get(0))
                self._close_windows()
            self._close_windows(last=True)
        except Exception as e:
            log.exception("perception failed")
            self._emit(
                ev.status(StatusCode.PERCEPTION_FAILED, f"{type(e).__name__}: {e}", self.source_name, level="error")
            )
        finally:
            self._jobs.close()
            if self.reasoner is None:
                self._finish_events()

    def _inputs_done(self) -> bool:
        done = self._frames.closed and self._audio.closed and not len(self._frames) and not len(self._audio)
        if self._frames.closed and not len(self._frames):
            self.scheduler.end_stream("video")
        if self._audio.closed and not len(self._audio):
            self.scheduler.end_stream("audio")
        return done

    def _on_frame(self, frame: Frame | None) -> None:
        if frame is None:
            return
        assert self.visual is not None  # frames are queued only with a visual stage
        t0 = time.perf_counter()
        try:
            obs = self.visual.process_frame(frame)
        except Exception as e:  # a bad frame must not end a live loop
            self._error(StatusCode.VISUAL_FAILED, e, frame.t)
            return
        self._timing["video"].append((frame.t, (time.perf_counter() - t0) * 1e3))
        self.stats["frames"] += 1
        self._frame_size = (frame.image.shape[1], frame.image.shape[0])
        self.scheduler.add_frame(frame.t, obs)
        if self.options.frame_callback is not None:
            try:
                self.options.frame_callback(frame, obs)
            except Exception as e:
                self.stats["callback_errors"] += 1
                log.warning("frame callback failed: %s: %s", type(e).__name__, e)

    def _on_block(self, block: AudioBlock | None) -> None:
        if block is None:
            return
        assert self.audio is not None  # blocks are queued only with an audio stage
        t0 = time.perf_counter()
        try:
            obs = self.audio.process_block(block)
        except Exception as e:
            self._error(StatusCode.AUDIO_FAILED, e, block.t)
            return
        self._timing["audio"].append((block.t, (time.perf_counter() - t0) * 1e3))
        self.stats["audio_blocks"] += 1
        self.scheduler.add_audio(block.t, block.samples, obs)

    def _error(self, code: StatusCode, e: Exception, t: float | None) -> None:
        self.stats["errors"] += 1
        log.debug("%s", code, exc_info=e)
        self._emit(ev.status(code, f"{type(e).__name__}: {e}", self.source_name, t=t, level="error"))

    def _close_windows(self, last: bool = False) -> None:
        self._inputs_done()  # tells the scheduler which streams ended, so the last windows flush
        windows = self.scheduler.ready()
        for win in windows:
            self._on_window(win)
        if windows or last:  # drops are reported at most once per window, with counts
            self._report_drops(windows[-1].t_end if windows else None)

    def _report_drops(self, t: float | None) -> None:
        drops = (self._frames.dropped, self._audio.dropped)
        if drops != self._reported_drops:
            new = (drops[0] - self._reported_drops[0], drops[1] - self._reported_drops[1])
            self._reported_drops = drops
            self.stats.update(frames_dropped=drops[0], audio_dropped=drops[1])
            self._emit(
                ev.status(
                    StatusCode.DROPPED,
                    f"under load: {new[0]} frames and {new[1]} audio blocks dropped since the "
                    f"last report ({drops[0]} and {drops[1]} in all)",
                    self.source_name,
                    t=t,
                    frames_dropped=drops[0],
                    audio_dropped=drops[1],
                    frames_dropped_new=new[0],
                    audio_dropped_new=new[1],
                )
            )

    def _summarize(self, win: Window) -> tuple[ModalityResult, ModalityResult]:
        vis = aud = None
        if self.visual is not None:
            vis = self.visual.summarize(win.frame_observations, win.t_start, win.t_end)
        if self.audio is not None:
            aud = self.audio.summarize(win.audio, win.audio_t0, win.audio_observations, win.t_start, win.t_end)
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

    def _on_window(self, win: Window) -> None:
        t0 = time.perf_counter()
        try:
            vis, aud = self._summarize(win)
        except Exception as e:
            self._error(StatusCode.SUMMARIZE_FAILED, e, win.t_end)
            return
        self.stats["windows"] += 1
        lat = self._stage_latency(win, vis, aud, (time.perf_counter() - t0) * 1e3)
        if self.options.running_mode == RunningMode.LIVE_STREAM:
            lat["capture_to_cues"] = (self.clock() - win.t_end) * 1e3
        for r in (vis, aud):
            if r.code is not None and r.code is not ResultCode.PATH_OFF:
                self._window_status(win, r.code.value, f"{r.modality}: {r.message}", modality=r.modality)
        if not vis.empty or not aud.empty:
            self._emit_cues(win, vis, aud, lat)
        if self.reasoner is None:
            return
        words = aud.words or text_during(self.options.subtitles, win.t_start, win.t_end)
        if vis.evidence or aud.evidence or words:
            self._maybe_explain(win, vis, aud, words)
        else:  # no evidence, no label
            self._window_status(win, StatusCode.NOTHING_TO_EXPLAIN, f"nothing to explain: {vis.message}; {aud.message}")

    def _window_status(self, win: Window, code: str, message: str, **extra) -> None:
        """A `status` event about one window (a ResultCode's value or a StatusCode), timed as the window."""
        data = {"code": code, "message": message, **extra}
        self._emit(ev.Event("status", win.t_start, win.t_end, self.source_name, data=data))

    def _emit_cues(self, win: Window, vis: ModalityResult, aud: ModalityResult, lat: dict) -> None:
        for event in ev.cue_events(
            win.t_start,
            win.t_end,
            self.source_name,
            vis,
            aud,
            lat,
            self._frame_size,
            win.n_frames,
            len(win.audio) / SAMPLE_RATE,
        ):
            self._emit(event)

    # ------------------------------------------------------------------------------- reasoning

    def _maybe_explain(self, win: Window, vis: ModalityResult, aud: ModalityResult, words: str | None) -> None:
        sig = cue_signature(vis, aud)
        if not self._policy.due(win.t_end, sig):
            return
        subtitle = words or self.options.subtitle
        self._outbox.explanation_queued()
        self._jobs.put(_Job(win, vis, aud, subtitle, sig, time.perf_counter()))

    def _reason(self) -> None:
        live = self.options.running_mode == RunningMode.LIVE_STREAM
        try:
            for job in self._jobs.drain():
                try:
                    if self._stop.is_set():  # closing: windows still queued are not explained
                        self.stats["cancelled"] += 1
                    else:
                        self._explain(job, live)
                finally:
                    self._outbox.explanation_done()
        finally:
            self._outbox.explanation_done(everything=True)
            self._finish_events()

    def _explain(self, job: _Job, live: bool) -> None:
        win, vis, aud, subtitle, t_window = job.window, job.visual, job.auditory, job.subtitle, job.t_queued
        src = self.source_name
        first_token: list[float] = []

        def on_token(piece: str) -> None:
            if not first_token:
                first_token.append((time.perf_counter() - t_window) * 1e3)
            self._emit(ev.Event("token", win.t_start, win.t_end, src, data={"text": piece}))

        def should_stop() -> bool:
            if self._stop.is_set():
                return True
            pending = self._jobs.peek()
            return live and pending is not None and material_change(pending.signature, job.signature)

        assert self.reasoner is not None  # the reasoning thread runs only with one
        try:
            exp = self.reasoner.explain(vis, aud, subtitle, on_token, should_stop, t=win.t_end)
        except Exception as e:
            self._error(StatusCode.EXPLANATION_FAILED, e, win.t_end)
            return
        if should_stop() and not exp.valid:
            self.stats["cancelled"] += 1
            message = "a newer window with different cues replaced this explanation"
            self._window_status(win, StatusCode.EXPLANATION_CANCELLED, message)
            return
        lat = dict(exp.latency_ms)
        lat["window_to_explanation"] = (time.perf_counter() - t_window) * 1e3
        if first_token:
            lat["window_to_first_token"] = first_token[0]
        self.stats["explanations"] += 1
        self._emit(
            ev.Event(
                "explanation",
                win.t_start,
                win.t_end,
                src,
                lat,
                {
                    "text": exp.text,
                    **explanation_fields(exp, vis, aud),
                    "subtitle": subtitle,
                    "valid": exp.valid,
                    "problem": exp.problem,
                    "n_tokens": exp.n_tokens,
                },
            )
        )

    # -------------------------------------------------------------------------------- delivery

    def _emit(self, event: ev.Event) -> None:
        """Hand an event to the outbox (in VIDEO mode, events not made by the reasoning thread wait behind
        an unfinished explanation of an earlier window)."""
        self._outbox.put(event, explaining=threading.current_thread() is self._reasoning)

    def _finish_events(self) -> None:
        """The last event, once: `stopped` with the reason when `close(reason)` stopped the run; then the
        outbox closes (delivery ends once it has handed everything on)."""
        last = None
        if self._stop_reason is not None:
            last = ev.status(
                StatusCode.STOPPED,
                f"stopped: {self._stop_reason}",
                self.source_name,
                t=self.clock(),
                reason=self._stop_reason,
            )
        self._outbox.finish(last)

    def _deliver(self) -> None:
        cb = self.options.result_callback
        assert cb is not None  # the delivery thread runs only with a callback
        for event in self._outbox.queue.drain():
            try:
                cb(event)
            except Exception as e:  # the callback's own fault: one line, and the next event goes on
                self.stats["callback_errors"] += 1
                log.warning("result callback failed on a %s event: %s: %s", event.type, type(e).__name__, e)

    def events(self, timeout: float | None = None) -> Iterator[ev.Event]:
        """Iterate events as they come until the input ends and everything is delivered.

        `timeout` bounds the wait for the next event (None: wait until the analyzer ends).
        Not available when a result_callback is set.
        """
        if self.options.result_callback is not None:
            raise ValueError("events() is not available when a result_callback is set")
        self.start()
        while True:
            event = self._outbox.queue.get(timeout if timeout is not None else 0.5)
            if event is not None:
                yield event
            elif self._outbox.queue.closed and not len(self._outbox.queue):
                return
            elif timeout is not None:
                return

    # -------------------------------------------------------------------------------- lifetime

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the input has ended and every event is delivered; False on timeout."""
        self.start()
        deadline = None if timeout is None else time.monotonic() + timeout
        for t in self._source_threads + self._threads:
            t.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
            if t.is_alive():
                return False
        return True

    def close(self, reason: str | None = None, timeout: float = 2.0) -> bool:
        """Stop in order, the same way for a signal, the end of the input and a caller: the sources (each
        closes its device), perception (the window under way is closed as it stands), the explanation under way
        (cut short where the decoder can be) and any queued, the stages this analyzer owns, then the
        delivery of every event already made. `reason` (e.g. "SIGINT") makes the last event a `stopped`
        status that says so. Each step waits at most what is left of `timeout` seconds. Returns True when
        every thread ended, False when one is still stuck (a blocked callback, a device that does not
        let go: the threads are daemons, so the process can still exit). Safe to call twice."""
        if self._closed:
            return not self._alive()
        self._closed = True
        self._stop_reason = reason
        if self._started.acquire(blocking=False):  # never started: nothing ran; what was made is delivered here
            self._finish_events()
            if self._delivery is not None:
                self._deliver()
            if self._owned is not None:
                self._owned.close()
            return True
        self._stop.set()
        self.end_input()
        self._notify()
        deadline = time.monotonic() + timeout
        workers = [t for t in self._threads if t is not self._delivery]
        for t in self._source_threads + workers:
            t.join(max(0.0, deadline - time.monotonic()))
        self._jobs.close()
        self._finish_events()  # a no-op when perception or reasoning did it on their way out
        if self._owned is not None and not any(t.is_alive() for t in workers):
            self._owned.close()  # never under a thread that may still be using them
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))
        stuck = self._alive()
        if stuck:
            log.warning(
                "still running %.1f s after the stop (a blocked callback or device): %s", timeout, ", ".join(stuck)
            )
        return not stuck

    def _alive(self) -> list[str]:
        return [t.name for t in self._source_threads + self._threads if t.is_alive()]

    def __enter__(self) -> "Analyzer":
        return self

    def __exit__(self, *exc) -> None:
        if exc[0] is None and self.options.running_mode == RunningMode.VIDEO:
            self.end_input()
            if self.options.result_callback is not None:
                self.wait()
        self.close()


class _SourceSink:
    """Adapts a Source's callbacks to the analyzer's feeding and events; bad items become events, not exceptions."""

    def __init__(
        self,
        push_frame,
        push_audio,
        emit: Callable[[ev.Event], None],
        closed: Callable[[], bool],
        source_name: Callable[[], str],
    ):
        self._push_frame, self._push_audio, self._emit = push_frame, push_audio, emit
        self._closed, self._name = closed, source_name

    def frame(self, image, t):
        try:
            self._push_frame(image, t)
        except ValueError as e:
            if not self._closed():
                self._emit(ev.status(StatusCode.BAD_FRAME, str(e), self._name(), t=t))

    def audio(self, samples, t, sample_rate=SAMPLE_RATE):
        try:
            self._push_audio(samples, t, sample_rate)
        except ValueError as e:
            if not self._closed():
                self._emit(ev.status(StatusCode.BAD_AUDIO, str(e), self._name(), t=t))

    def status(self, code: StatusCode, message: str, level: str = "status"):
        self._emit(ev.status(code, message, self._name(), level=level))
