"""Data that flows between pipeline stages: timestamped media, cues, per-window results.

Every item carries a timestamp in seconds on the source clock (a monotonic clock for live
capture, media time for files), so that face and voice line up.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field
from typing import Callable, Protocol, Sequence, TypeVar

import numpy as np

SAMPLE_RATE = 16_000
"""The one audio rate inside the pipeline: every source delivers 16 kHz mono float32."""

EMOTIONS = ("neutral", "happy", "sad", "angry", "surprise", "fear", "disgust", "worried")
"""Emotion labels of explanation events (EMER/XEmoGPT label set)."""

EMOTION_COLOURS = {
    "neutral": "#9aa5b1",
    "happy": "#f2b134",
    "sad": "#3b6fb6",
    "angry": "#d64541",
    "surprise": "#9b59b6",
    "fear": "#2a9d8f",
    "disgust": "#6b8e23",
    "worried": "#e67e22",
}
"""One colour per label, the same in the timeline report and on the kiosk page (`/v1/info`)."""


class StatusCode(enum.StrEnum):
    """What a `status` or `error` event reports besides a perception result's `ResultCode`: its `code`.
    A str, so a code read back from JSON compares equal to its member."""

    # sources (io.sources)
    CAMERA_LOST = "camera_lost"
    CAMERA_RECONNECTED = "camera_reconnected"
    BAD_FRAME = "bad_frame"
    BAD_AUDIO = "bad_audio"
    MICROPHONE_LOST = "microphone_lost"
    MICROPHONE_RECONNECTED = "microphone_reconnected"
    AUDIO_OVERFLOW = "audio_overflow"
    FILE_TRUNCATED = "file_truncated"
    SOURCE_FAILED = "source_failed"
    # the analyzer
    DROPPED = "dropped"
    PAUSED = "paused"
    RESUMED = "resumed"
    BASELINE_RESET = "baseline_reset"
    VISUAL_FAILED = "visual_failed"
    AUDIO_FAILED = "audio_failed"
    SUMMARIZE_FAILED = "summarize_failed"
    PERCEPTION_FAILED = "perception_failed"
    NOTHING_TO_EXPLAIN = "nothing_to_explain"
    EXPLANATION_FAILED = "explanation_failed"
    EXPLANATION_CANCELLED = "explanation_cancelled"
    STOPPED = "stopped"
    # the server (serve)
    START_FAILED = "start_failed"
    SERVER_STOPPING = "server_stopping"
    REPLAY_INCOMPLETE = "replay_incomplete"
    # the stages
    MODEL_MISSING = "model_missing"


@dataclass(frozen=True, slots=True)
class Frame:
    """One video frame: BGR uint8 image (H, W, 3), timestamp `t` in source seconds."""

    image: np.ndarray
    t: float
    index: int


@dataclass(frozen=True, slots=True)
class AudioBlock:
    """A block of 16 kHz mono float32 samples as `io.audio.Conditioner` makes it where audio enters (in [-1, 1],
    DC offset removed); `t` is the time of the first sample, `nonfinite`/`clipped` the samples repaired there."""

    samples: np.ndarray
    t: float
    index: int
    nonfinite: int = 0
    clipped: int = 0

    @property
    def duration(self) -> float:
        return len(self.samples) / SAMPLE_RATE


@dataclass(frozen=True, slots=True)
class Cue:
    """One interpretable cue: a stable id, the English phrase experts use, an intensity in [0, 1].

    `evidence` holds the measurements behind it (e.g. {"f0_z": 1.8}); `face_id` is set for visual
    cues measured on a tracked face.
    """

    name: str
    phrase: str
    intensity: float
    modality: str  # "visual" | "auditory"
    evidence: dict[str, float] = field(default_factory=dict)
    face_id: int | None = None

    def to_dict(self) -> dict:
        d = {"name": self.name, "phrase": self.phrase, "intensity": round(float(self.intensity), 3)}
        if self.evidence:
            d["evidence"] = {k: round(float(v), 4) for k, v in self.evidence.items()}
        if self.face_id is not None:
            d["face_id"] = self.face_id
        return d


@dataclass(frozen=True, slots=True)
class FaceBox:
    """A tracked face in one frame: pixel box (x0, y0, x1, y1), detector score, stable id."""

    face_id: int
    box: tuple[float, float, float, float]
    score: float
    t: float


class ResultCode(enum.Enum):
    """Why a perception result (of a frame or a window) has no cues, or what else the user should know.

    The value is the `code` of the `status` event the analyzer emits for it.
    """

    NO_FRAMES = "no_frames"
    NO_FACE = "no_face"
    FACE_TOO_SMALL = "face_too_small"
    FRAME_TOO_SMALL = "frame_too_small"
    BAD_FRAME = "bad_frame"
    NO_VISIBLE_CUE = "no_visible_cue"
    NO_AUDIO = "no_audio"
    SILENCE = "silence"
    NOISE = "noise"
    NO_SPEECH = "no_speech"
    TOO_LITTLE_SPEECH = "too_little_speech"
    NO_CLEAR_VOCAL_CUE = "no_clear_vocal_cue"
    LEARNING_BASELINE = "learning_the_voice_baseline"
    INPUT_REPAIRED = "input_repaired"
    NO_AUDIO_TOKENS = "no_audio_tokens"
    PATH_OFF = "path_off"
    NOTHING_MEASURED = "nothing_measured"
    VOICE_ELSEWHERE = "voice_elsewhere"
    """Several people in view and the window's voice is another person's, or nobody's that can be told."""

    @property
    def text(self) -> str:
        """The code as words ("no face"): the default message."""
        return self.value.replace("_", " ")


@dataclass(frozen=True, slots=True)
class TranscriptSegment:
    """A piece of what was said, `start`/`end` in source seconds (voice.asr)."""

    start: float
    end: float
    text: str


@dataclass(frozen=True, slots=True)
class Activity:
    """A signal over a window at times `t` (seconds on the source clock): a face's mouth opening per frame (jawOpen
    above the person's neutral), or the voice's loudness per 10 ms frame (dB) with `speech` marking the frames
    voice activity detection called speech. Who is speaking is read from the two (`analysis.speakers`)."""

    t: np.ndarray
    value: np.ndarray
    speech: np.ndarray | None = None

    @property
    def speech_s(self) -> float:
        """Seconds of speech (frames marked `speech` times the frame step); 0 without a mask."""
        if self.speech is None or len(self.t) < 2:
            return 0.0
        return float(np.count_nonzero(self.speech) * np.median(np.diff(self.t)))


@dataclass(frozen=True, slots=True)
class ModalityResult:
    """What one perception stage says about one window.

    An empty result (no face, silence) has no cues and a `code` saying why; never `None`.
    `message` is the one-line human form of `code` (with details such as repaired samples).
    `tokens` are the bridge outputs (n_tokens, dim) for the decoder's projector, or None when the
    stage has no bridge or nothing was measurable.
    """

    modality: str  # "visual" | "auditory"
    cues: tuple[Cue, ...] = ()
    tokens: np.ndarray | None = None
    scores: dict[str, float] = field(default_factory=dict)
    code: ResultCode | None = None
    message: str | None = None
    faces: tuple[FaceBox, ...] = ()
    latency_ms: dict[str, float] = field(default_factory=dict)
    extra: dict = field(default_factory=dict)
    transcript: tuple[TranscriptSegment, ...] = ()
    """What the voice stage recognized in this window (with ASR on), in order."""
    emotion: dict[str, float] = field(default_factory=dict)
    """A learned model's calibrated distribution over emotion labels for this window (the voice stage's
    `voice_emotion` model); empty when no model judged it (not installed, too little voice)."""
    face_id: int | None = None
    """The tracked person this result is about (one of a visual result's `people`); None: the whole window."""
    people: tuple[ModalityResult, ...] = ()
    """Visual: one result per person in view, the window's most-seen face first, each with its own cues, expression
    scores, facial-action emotion, bridge tokens and `face_id`; empty without a face."""
    activity: Activity | None = None
    """The signal who-is-speaking reads: a person's mouth opening, the voice's loudness."""

    def __post_init__(self):
        if self.code is not None and self.message is None:
            object.__setattr__(self, "message", self.code.text)

    @property
    def empty(self) -> bool:
        return not self.cues

    @property
    def evidence(self) -> bool:
        """Whether the window says anything about an emotion: a cue, or a learned model's judgement."""
        return bool(self.cues or self.emotion)

    @property
    def words(self) -> str | None:
        """The transcript as one subtitle string (None when nothing was recognized)."""
        return " ".join(seg.text for seg in self.transcript if seg.text) or None


class Problem(enum.Enum):
    """What is wrong with a generated explanation (value: the words used in `Explanation.problem`)."""

    NOTHING_TO_EXPLAIN = "nothing to explain"
    STOPPED_EARLY = "stopped early"
    REPETITION_LOOP = "repetition loop"
    LABEL_FORCED = "label step forced"
    LABEL_FORCED_MAX_TOKENS = "label step forced (max_tokens reached)"
    NO_VIDEO_SECTION = "no video section"
    NO_AUDIO_SECTION = "no audio section"
    NO_EMOTIONAL_STATE = "no emotional state"
    UNKNOWN_LABEL = "label outside the label set"
    REPEATED_CUES = "repeated cues"

    @property
    def invalidates(self) -> bool:
        """A forced label step still gives a usable explanation; every other problem does not."""
        return self not in (Problem.LABEL_FORCED, Problem.LABEL_FORCED_MAX_TOKENS)


FLOOR = 0.01
"""Probabilities are floored here before the log: one source cannot veto a label by giving it ~0."""


class Outcome(enum.Enum):
    """How sure the judgement is (the `outcome` of an explanation event)."""

    CONFIDENT = "confident"
    WEAK_EVIDENCE = "weak_evidence"
    SOURCES_DISAGREE = "sources_disagree"

    @property
    def confident(self) -> bool:
        return self is Outcome.CONFIDENT


@dataclass(frozen=True, slots=True)
class SourceJudgement:
    """One source's say: its distribution over the labels it covers, its weight, the cues behind it."""

    name: str
    distribution: dict[str, float]
    weight: float
    cues: tuple[str, ...] = ()

    def contribution(self) -> dict[str, float]:
        """w * centred log-probability per label (0 for labels this source does not cover)."""
        logs = {k: math.log(max(v, FLOOR)) for k, v in self.distribution.items()}
        mean = sum(logs.values()) / len(logs)
        return {e: self.weight * (logs[e] - mean) if e in logs else 0.0 for e in EMOTIONS}

    def to_dict(self) -> dict:
        return {
            "distribution": {k: round(v, 4) for k, v in self.distribution.items()},
            "weight": self.weight,
            "cues": list(self.cues),
        }


@dataclass(frozen=True, slots=True)
class Judgement:
    """The judged label of a window, its distribution, how sure it is and what each source said."""

    label: str
    distribution: dict[str, float]
    outcome: Outcome
    reason: str | None
    sources: tuple[SourceJudgement, ...]
    carried_by: tuple[str, ...]
    """Cue phrases of the sources that pushed the label up most (for the explanation's conclusion)."""

    @property
    def confidence(self) -> float:
        return self.distribution[self.label]


@dataclass(frozen=True, slots=True)
class Explanation:
    """A decoder's cue-level explanation of one window.

    `problems` say what went wrong in generation; `notes` what had to be cleaned, truncated or
    dropped in the input. `valid` is False when a problem invalidates the text.
    """

    text: str
    label: str
    scores: dict[str, float]
    visual_cues: tuple[str, ...]
    auditory_cues: tuple[str, ...]
    problems: tuple[Problem, ...] = ()
    notes: tuple[str, ...] = ()
    latency_ms: dict[str, float] = field(default_factory=dict)
    n_tokens: int = 0
    judgement: Judgement | None = None
    """The judgement behind `label` and `scores` (None: the decoder's label alone)."""
    decoder_scores: dict[str, float] = field(default_factory=dict)
    """The decoder's own calibrated label distribution (one of the judgement's sources)."""

    @property
    def valid(self) -> bool:
        return not any(p.invalidates for p in self.problems)

    @property
    def problem(self) -> str | None:
        """Problems and notes as one line (None when there are none)."""
        return "; ".join([p.value for p in self.problems] + list(self.notes)) or None


FrameObservation = TypeVar("FrameObservation")
BlockObservation = TypeVar("BlockObservation")


class VisualStage(Protocol[FrameObservation]):
    """Per-frame face perception plus a per-window summary (cues, tokens), generic in what a frame gives."""

    def process_frame(self, frame: Frame) -> FrameObservation:
        """Track faces and measure cues on one frame; the observation goes back to `summarize` unread."""

    def summarize(self, observations: Sequence[FrameObservation], t_start: float, t_end: float) -> ModalityResult:
        """Aggregate the window's per-frame observations into one result."""

    def reset(self) -> None:
        """Forget tracks and baselines (new source)."""

    def reset_baseline(self, face_id: int | None = None) -> None:
        """Forget face `face_id`'s neutral baseline (every face's when None); tracks are kept."""


class AudioStage(Protocol[BlockObservation]):
    """Streaming voice perception plus a per-window summary (cues, tokens), generic in what a block gives."""

    def process_block(self, block: AudioBlock) -> BlockObservation:
        """Run streaming work (VAD) on one block; the observation goes back to `summarize` unread."""

    def summarize(
        self, samples: np.ndarray, t0: float, observations: Sequence[BlockObservation], t_start: float, t_end: float
    ) -> ModalityResult:
        """Describe the window's audio (`samples` start at source time `t0`)."""

    def reset(self) -> None:
        """Forget stream state and speaker baselines (new source)."""

    def reset_baseline(self) -> None:
        """Forget the current speaker's baseline; it is learnt again from the following speech."""


class Reasoner(Protocol):
    """Turns a window's perception into a cue-level explanation (the decoder)."""

    def explain(
        self,
        visual: ModalityResult,
        auditory: ModalityResult,
        subtitle: str | None,
        on_token: Callable[[str], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
        t: float | None = None,
    ) -> Explanation:
        """One explanation of the window ending at `t` (source clock); stream text pieces to `on_token`;
        stop early if `should_stop()`."""
