"""The Analyzer: sources -> perception -> rolling windows -> explanations -> events.

Three threads besides the sources, started by `start()`: perception (per-frame and per-block work,
window cutting, summaries), reasoning (the judgement stage and its optional LLM narrator, one
explanation at a time), and delivery (callbacks). The `Analyzer` composes single-purpose parts:
`analysis.feed` (input checks and queues), `analysis.perception` (the perception thread),
`analysis.explainer` (which windows are explained: `core.scheduler.ExplainPolicy`; the reasoning thread),
`core.outbox.Outbox` (window order), `analysis.delivery` (the delivery thread, `events()`),
`analysis.reporting` (event payloads), `analysis.source_runner` (a thread per source) and `analysis.threads`
(starting and joining); `close()` is the one way everything stops (docs/reliability.md).

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

import dataclasses
import enum
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Iterator

import numpy as np

from .analysis.delivery import Delivery
from .analysis.explainer import Explainer
from .analysis.feed import InputFeed
from .analysis.perception import Perception
from .analysis.reporting import COUNTERS, EventFactory, Reporter
from .analysis.source_runner import source_thread
from .analysis.threads import Threads
from .core import events as ev
from .core.models import RuntimeOptions, sha256_of, used_artifacts
from .core.outbox import Outbox
from .core.scheduler import ExplainPolicy, WindowScheduler
from .core.types import SAMPLE_RATE, AudioStage, Frame, Reasoner, StatusCode, VisualStage
from .io.sources import Clock, Source
from .reasoning.decoder import Conclusion, DecoderOptions
from .reasoning.judgement import JudgementOptions
from .vision.stage import VisualOptions
from .voice.asr import TranscriberOptions
from .voice.stage import VoiceOptions

log = logging.getLogger(__name__)


class RunningMode(enum.Enum):
    VIDEO = "video"
    LIVE_STREAM = "live_stream"


@dataclass(frozen=True, slots=True)
class AnalyzerOptions:
    """How the analyzer runs; a stage is off when its options are None.

    window_s/hop_s: rolling window length and step in seconds (2 s windows every 1 s suit a
      1-2 s explanation cadence).
    explain_every_s: least time between explanations unless the cues change materially.
    runtime: threads, provider and precision, handed down to every stage whose own `runtime` is None.
    visual/voice: the perception stages (`vision.stage`, `voice.stage`).
    judgement: the judgement (`reasoning.judgement`): a label with its confidence, outcome and evidence for every
      window with something to explain; None with `decoder` None: cues only. The perception stages' emotion
      models feed only the judgement: without it they are not loaded.
    decoder: the LLM narrator (the GGUF decoder): reads the rendered sections (or writes them), adds its label scores
      as a source (weight 0) and may write the conclusion (`DecoderOptions.conclusion`); None (the default): the
      same sections, label and evidence without loading an LLM, at about half the CPU (docs/judgement.md).
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
    runtime: RuntimeOptions = field(default_factory=RuntimeOptions)
    visual: VisualOptions | None = field(default_factory=VisualOptions)
    voice: VoiceOptions | None = field(default_factory=VoiceOptions)
    judgement: JudgementOptions | None = field(default_factory=JudgementOptions)
    decoder: DecoderOptions | None = None
    frame_queue: int = 8
    audio_queue: int = 64
    event_queue: int = 4096
    subtitle: str | None = None
    subtitles: tuple = ()
    result_callback: Callable[[ev.Event], object] | None = None
    frame_callback: Callable[[Frame, object], None] | None = None

    def __post_init__(self):
        asr = self.voice.asr if self.voice else None
        if self.running_mode == RunningMode.VIDEO and asr is not None and asr.background:
            raise ValueError(
                "TranscriberOptions.background is a live-stream policy (which window a transcript "
                "lands in depends on timing); VIDEO mode transcribes in order: set background=False"
            )


def analyzer_options(
    runtime: RuntimeOptions | None = None,
    *,
    visual: bool = True,
    voice: bool = True,
    judge: bool = True,
    explain: bool = False,
    asr: TranscriberOptions | None = None,
    decoder_threads: int | None = None,
    gpu_layers: int = 0,
    decoder: str | None = None,
    conclusion: str = "rendered",
    smooth_s: float | None = None,
    **fields,
) -> AnalyzerOptions:
    """AnalyzerOptions from the switches the command line, the bench and the evaluations expose, built in one
    place: `visual`/`voice`/`judge`/`explain` turn each stage on; `asr` turns transcription on in the voice stage;
    the decoder runs on `decoder_threads` (default: the runtime's) with `gpu_layers` offloaded (needs a CUDA/Metal
    build of llama-cpp-python), `decoder` names another decoder in the manifest (DecoderOptions.model) and
    `conclusion` who writes the conclusion (DecoderOptions.conclusion); `smooth_s` smooths the judged label over time
    (JudgementOptions.time_constant_s; None: the fitted value). `fields` are AnalyzerOptions' own (running_mode,
    window_s, subtitle, result_callback, ...)."""
    runtime = runtime or RuntimeOptions()
    narrator = None
    if explain:
        own = dataclasses.replace(runtime, threads=decoder_threads) if decoder_threads else None
        narrator = DecoderOptions(
            runtime=own, n_gpu_layers=gpu_layers, model=decoder, conclusion=Conclusion(conclusion)
        )
    return AnalyzerOptions(
        runtime=runtime,
        visual=VisualOptions() if visual else None,
        voice=VoiceOptions(asr=asr) if voice else None,
        judgement=JudgementOptions(time_constant_s=smooth_s) if judge else None,
        decoder=narrator,
        **fields,
    )


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
    """Load the stages the options turn on, each on the analyzer's runtime unless its options name their own."""
    judged = options.judgement is not None

    def on_runtime(stage_options):
        return dataclasses.replace(stage_options, runtime=stage_options.runtime or options.runtime)

    visual = audio = reasoner = None
    if options.visual is not None:
        from .vision.stage import VisualPerception

        visual_options = dataclasses.replace(
            on_runtime(options.visual), use_emotion_model=options.visual.use_emotion_model and judged
        )
        visual = VisualPerception.create_from_options(visual_options)
    if options.voice is not None:
        from .voice.stage import VoicePerception

        voice_options = dataclasses.replace(
            on_runtime(options.voice), use_emotion_model=options.voice.use_emotion_model and judged
        )
        audio = VoicePerception.create_from_options(voice_options)
    if judged or options.decoder is not None:
        from .reasoning.stage import Reasoning

        reasoner = Reasoning.create_from_options(
            on_runtime(options.judgement) if options.judgement else None,
            on_runtime(options.decoder) if options.decoder else None,
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


class Analyzer:
    """Real-time multimodal cue analysis; build with `create_from_options`, feed, read events.

    Feed it with `run_source(source)` or with `push_frame(image, t)` / `push_audio(samples, t)`;
    read events through `options.result_callback` or by iterating `events()`. A context manager:
    leaving the block ends the input, drains it (VIDEO) and closes every thread.

    The composition root: it wires the parts (`analysis.feed.InputFeed`, `analysis.perception.Perception`,
    `analysis.explainer.Explainer`, `core.outbox.Outbox`, `analysis.delivery.Delivery`), starts their
    threads (`analysis.threads.Threads`) in `start()` and stops them in `close()`.
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
        given by a caller who reuses them elsewhere stay open. No thread starts here (see `start`)."""
        self.options = o = options
        self.visual, self.audio, self.reasoner = visual, audio, reasoner
        self._owned = Stages(visual, audio, reasoner) if owns_stages else None
        self._stop_reason: str | None = None
        live = o.running_mode == RunningMode.LIVE_STREAM
        self.clock = Clock()
        self.stats = dict.fromkeys(COUNTERS, 0)
        """Counters (`analysis.reporting.COUNTERS`), and the drops once there were any."""
        self._events = EventFactory(self.clock)
        outbox = Outbox(o.event_queue, drop_oldest=live or o.result_callback is not None, in_window_order=not live)
        self._report = Reporter(self._events, outbox, self.stats)
        self._feed = InputFeed(o.frame_queue, o.audio_queue, live, visual is not None, audio is not None, self.stats)
        streams = tuple(s for s, on in (("video", visual is not None), ("audio", audio is not None)) if on)
        self.scheduler = WindowScheduler(o.window_s, o.hop_s, streams)
        self._stop = threading.Event()
        self._closed = False
        self._explainer = None
        if reasoner is not None:
            policy = ExplainPolicy(o.explain_every_s)
            self._explainer = Explainer(
                reasoner, policy, self._report, self._stop, self._finish_events, live, o.subtitle, o.subtitles
            )
        windows_ended = self._explainer.no_more_windows if self._explainer is not None else self._finish_events
        self._perception = Perception(
            self._feed,
            visual,
            audio,
            self.scheduler,
            self._explainer,
            self._report,
            self._stop,
            windows_ended,
            o.frame_callback,
            self.clock if live else None,
        )
        self._delivery = Delivery(outbox, o.result_callback, self.stats)
        workers = {"perception": self._perception.run}
        if self._explainer is not None:
            workers["reasoning"] = self._explainer.run
        self._threads = Threads(workers, self._delivery.run if o.result_callback is not None else None)

    def start(self) -> "Analyzer":
        """Start the perception, reasoning and delivery threads (once; feeding, `run_sources` and
        `events()` call it): until then the stages can still be wrapped or replaced."""
        self._threads.start()
        return self

    @classmethod
    def create_from_options(cls, options: AnalyzerOptions) -> "Analyzer":
        """Build the stages the options turn on (loading their models) and start the analyzer."""
        stages = build_stages(options)
        return cls(options, stages.visual, stages.audio, stages.reasoner, owns_stages=True)

    @property
    def source_name(self) -> str:
        """What events name as their `source`: the sources' names once `run_source(s)` starts them."""
        return self._events.source

    @source_name.setter
    def source_name(self, name: str) -> None:
        self._events.source = name

    # ------------------------------------------------------------------------------ input side

    def push_frame(self, image: np.ndarray, t: float) -> None:
        """Feed one BGR (H, W, 3) or grayscale (H, W) uint8 frame taken at source time `t` seconds."""
        self._check_open()
        self.start()
        self._feed.push_frame(image, t)

    def push_audio(self, samples: np.ndarray, t: float, sample_rate: int = SAMPLE_RATE) -> None:
        """Feed audio starting at source time `t`: (n,) or (n, channels), any rate (resampled to 16 kHz)."""
        self._check_open()
        self.start()
        self._feed.push_audio(samples, t, sample_rate)

    def report(self, code: StatusCode, message: str, t: float | None = None, level: str = "status", **extra) -> None:
        """Send a `status` (level="error": an `error`) event about the input, e.g. from a source."""
        self._report.emit(self._events.status(code, message, t=t, level=level, **extra))

    @property
    def closed(self) -> bool:
        """Whether `close()` was called."""
        return self._closed

    def _check_open(self) -> None:
        if self._closed:
            raise ValueError("the analyzer is closed")

    # ------------------------------------------------------------------------------- control

    @property
    def paused(self) -> bool:
        return self._feed.paused

    def last_input_time(self, stream: str) -> float | None:
        """Source time of the newest item pushed on `stream` ("video" or "audio"); None before the first."""
        return self._feed.last_time(stream)

    def pause(self) -> None:
        """Stop analysing: frames and audio pushed while paused are left out (counted), nothing is kept."""
        if self._feed.set_paused(True):
            self.report(StatusCode.PAUSED, "analysis paused", t=self.clock())

    def resume(self) -> None:
        if self._feed.set_paused(False):
            self.report(StatusCode.RESUMED, "analysis resumed", t=self.clock())

    def reset_baseline(self, face_id: int | None = None) -> None:
        """Forget a person's neutral baseline (face `face_id`, or every face and the voice when None);
        it is learnt again from the following frames. Runs on the perception thread before its next item."""

        def reset() -> None:
            if self.visual is not None:
                self.visual.reset_baseline(face_id)
            if self.audio is not None and face_id is None:
                self.audio.reset_baseline()
            who = "every person" if face_id is None else f"face {face_id}"
            self.report(StatusCode.BASELINE_RESET, f"baseline of {who} reset", face_id=face_id)

        self._perception.call_soon(reset)

    def end_stream(self, stream: str) -> None:
        """Declare that no more items of `stream` ("video" or "audio") will come."""
        self._feed.end_stream(stream)

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
        thread = source_thread(source, self, self._stop, self.clock)
        self._threads.add_source(thread)
        return thread

    def run_sources(self, *sources: Source) -> None:
        """Start every source; streams that none of them has are ended at once. The first events say
        which optional models are missing (`model_missing`), one status each."""
        self.source_name = self.source_name or ", ".join(s.name for s in sources)
        for stage in (self.visual, self.audio, self.reasoner):
            for why in getattr(stage, "missing", ()):
                self.report(StatusCode.MODEL_MISSING, why)
        if not any(s.has_video for s in sources):
            self.end_stream("video")
        if not any(s.has_audio for s in sources):
            self.end_stream("audio")
        for source in sources:
            self.run_source(source)

    # -------------------------------------------------------------------------------- delivery

    def events(self, timeout: float | None = None) -> Iterator[ev.Event]:
        """Iterate events as they come until the input ends and everything is delivered.

        `timeout` bounds the wait for the next event (None: wait until the analyzer ends).
        Not available when a result_callback is set.
        """
        if self.options.result_callback is not None:
            raise ValueError("events() is not available when a result_callback is set")
        self.start()
        yield from self._delivery.events(timeout)

    def _finish_events(self) -> None:
        """The last event, once: `stopped` with the reason when `close(reason)` stopped the run; then the
        outbox closes (delivery ends once it has handed everything on)."""
        last = None if self._stop_reason is None else self._events.stopped(self._stop_reason)
        self._report.outbox.finish(last)

    # -------------------------------------------------------------------------------- lifetime

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the input has ended and every event is delivered; False on timeout."""
        self.start()
        deadline = None if timeout is None else time.monotonic() + timeout
        return self._threads.join(self._threads.sources + self._threads.own, deadline)

    def close(self, reason: str | None = None, timeout: float = 2.0) -> bool:
        """Stop in order, the same way for a signal, the end of the input and a caller: the sources (each
        closes its device), perception (the window under way is closed as it stands), the explanation under way
        (cut short where the decoder can be) and any queued, the stages this analyzer owns, then the
        delivery of every event already made. `reason` (e.g. "SIGINT") makes the last event a `stopped`
        status that says so. Each step waits at most what is left of `timeout` seconds. Returns True when
        every thread ended, False when one is still stuck (a blocked callback, a device that does not
        let go: the threads are daemons, so the process can still exit). Safe to call twice."""
        if self._closed:
            return not self._threads.alive()
        self._closed = True
        self._stop_reason = reason
        if self._threads.never_start():  # never started: nothing ran; what was made is delivered here
            self._finish_events()
            if self._threads.delivery is not None:
                self._delivery.run()
            if self._owned is not None:
                self._owned.close()
            return True
        self._stop.set()
        self.end_input()
        deadline = time.monotonic() + timeout
        self._threads.join(self._threads.sources + self._threads.workers, deadline)
        if self._explainer is not None:
            self._explainer.no_more_windows()
        self._finish_events()  # a no-op when perception or reasoning did it on their way out
        if self._owned is not None and not any(t.is_alive() for t in self._threads.workers):
            self._owned.close()  # never under a thread that may still be using them
        self._threads.join(self._threads.own, deadline)
        stuck = self._threads.alive()
        if stuck:
            log.warning(
                "still running %.1f s after the stop (a blocked callback or device): %s", timeout, ", ".join(stuck)
            )
        return not stuck

    def __enter__(self) -> "Analyzer":
        return self

    def __exit__(self, *exc) -> None:
        if exc[0] is None and self.options.running_mode == RunningMode.VIDEO:
            self.end_input()
            if self.options.result_callback is not None:
                self.wait()
        self.close()
