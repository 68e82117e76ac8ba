"""Voice perception stage: VAD, prosody and vocal cues over a live 16 kHz stream.

`VoicePerception` implements the `AudioStage` protocol: `process_block` runs Silero VAD and the frame-level
prosody tracker as blocks arrive (conditioned where they entered: `io.audio.Conditioner`; its repairs are counted);
`summarize` turns one window into a `ModalityResult` (cues, cue scores, raw measures, code) and
updates the speaker baseline; with ASR on, `transcript.WindowTranscriber` gives each window its words.
The window's samples are the same conditioned blocks (the scheduler keeps them), so every measure reads one signal.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Sequence

import numpy as np

from ..core.models import ModelError, RuntimeOptions, load_optional
from ..core.types import Activity, AudioBlock, Cue, ModalityResult, ResultCode, TranscriptSegment
from .aecb import WINDOW_S, WINDOW_SAMPLES, AecbOutput, AudioBridge
from .asr import TranscriberOptions
from .cues import RULE_NAMES, AuditoryCueTracker, rule_name
from .emotion import MIN_SPEECH_S, VoiceEmotionModel
from .features import StreamFrames
from .prosody import SILENCE_DB, FrameFeatures, ProsodyTracker, SpeakerBaseline, WindowMeasures, measure_window
from .transcript import WindowTranscriber
from .vad import CHUNK_S, SileroVad, SpeechSegment, VadOptions

log = logging.getLogger(__name__)

NOISE_FLATNESS = 0.25
"""Median spectral flatness above which a loud window without speech is called "noise"."""


@dataclass(frozen=True, slots=True)
class VoiceOptions:
    """Settings of the voice stage (defaults in brackets).

    vad: Silero VAD thresholds and durations [VadOptions()].
    asr: transcribe finished speech segments with faster-whisper (needs the `asr` extra); None = no
        transcript [None].
    runtime: threads and provider of VAD, bridge and emotion model, CTranslate2 threads for ASR (None: the
        analyzer's, or `RuntimeOptions()` alone) [None].
    baseline_horizon_s: memory of the speaker baseline, in seconds of speech [60].
    baseline_min_speech_s: speech needed before relative cues (higher pitch than usual) [8].
    min_window_speech_s: less speech than this in a window gives code TOO_LITTLE_SPEECH [0.3].
    rate_horizon_s: syllable rate is counted over this much trailing stream time, since a 2 s window
        holds too few syllables for a stable rate [5].
    max_cues: most cues per window, strongest first [4].
    use_bridge: add AECB audio tokens when the bridge artifact is installed [True].
    use_emotion_model: judge each window with the `voice_emotion` model when it is installed [True].
    """

    vad: VadOptions = field(default_factory=VadOptions)
    asr: TranscriberOptions | None = None
    runtime: RuntimeOptions | None = None
    baseline_horizon_s: float = 60.0
    baseline_min_speech_s: float = 8.0
    min_window_speech_s: float = 0.3
    rate_horizon_s: float = 5.0
    max_cues: int = 4
    use_bridge: bool = True
    use_emotion_model: bool = True

    def __post_init__(self) -> None:
        positive = ("baseline_horizon_s", "baseline_min_speech_s", "rate_horizon_s", "max_cues")
        bad = [f"{k}={getattr(self, k)!r}" for k in positive if not getattr(self, k) > 0]
        if bad or self.min_window_speech_s < 0:
            raise ValueError(f"VoiceOptions: {', '.join(bad) or 'min_window_speech_s'} must be positive")


@dataclass(frozen=True, slots=True)
class VoiceBlock:
    """Per-block observation: VAD chunks (start times, probabilities, hysteresis state), segments
    closed by this block, prosody frames, and what had to be repaired in the input."""

    t: float
    n_samples: int
    vad_t: np.ndarray
    vad_prob: np.ndarray
    speaking: np.ndarray
    segments: tuple[SpeechSegment, ...]
    frames: FrameFeatures
    nonfinite: int = 0
    clipped: int = 0
    latency_ms: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class VoiceWindow:
    """One window [t_start, t_end) measured: its prosody frames, cleaned samples (DC removed), measures and
    input repairs (code, message)."""

    t_start: float
    t_end: float
    duration_s: float
    frames: FrameFeatures
    samples: np.ndarray
    measures: WindowMeasures
    repairs: tuple[tuple[ResultCode, str], ...]
    loudness: Activity
    """Loudness per prosody frame (dB) and which frames are speech: who is speaking is read from it."""


@dataclass(frozen=True, slots=True)
class CueDecision:
    """A window's vocal cues, the z-scores against the speaker baseline behind them, and its code (None: cues)."""

    cues: tuple[Cue, ...] = ()
    zscores: dict[str, float] = field(default_factory=dict)
    code: ResultCode | None = None


class VoicePerception:
    """Streaming voice perception (the `AudioStage` of the pipeline). Not thread-safe: one stream."""

    def __init__(self, options: VoiceOptions | None = None):
        self.options = options or VoiceOptions()
        self.runtime = self.options.runtime or RuntimeOptions()
        self._vad = SileroVad(self.options.vad, self.runtime.threads, self.runtime.provider)
        self._frames = ProsodyTracker()
        self._cues = AuditoryCueTracker(max_cues=self.options.max_cues)
        self._rate = SyllableRate(self.options.rate_horizon_s)
        self._bridge, no_bridge = (
            load_optional("AECB audio bridge (no audio tokens)", self._load_bridge)
            if self.options.use_bridge
            else (None, None)
        )
        self._emotion, no_emotion = (
            load_optional("voice emotion model (the judgement falls back to vocal profiles)", self._load_emotion)
            if self.options.use_emotion_model
            else (None, None)
        )
        self.missing = tuple(why for why in (no_bridge, no_emotion) if why)
        """Optional models that are not installed, one line each (the analyzer reports them)."""
        self._bridge_frames = StreamFrames()
        """The AECB's frame features of the cleaned stream, each 10 ms frame computed once."""
        asr = self.options.asr
        self._transcriber = None if asr is None else WindowTranscriber(asr, self.runtime.threads)
        self.reset()

    @classmethod
    def create_from_options(cls, options: VoiceOptions | None = None) -> VoicePerception:
        return cls(options)

    def reset(self) -> None:
        self._vad.reset_states()
        self._frames.reset()
        self._baselines: dict[str, SpeakerBaseline] = {}
        self._speaker = ""
        self.set_speaker("default")
        self._cues.reset()
        self._rate.reset()
        if self._bridge is not None:
            self._bridge.reset()
        self._bridge_frames.reset()
        self._last_end: float | None = None  # end of the last window folded into the baseline
        self._last_size: int | None = None
        self.stats = {"blocks": 0, "irregular_blocks": 0, "nonfinite_samples": 0, "clipped_samples": 0}
        if self._transcriber is not None:
            self._transcriber.reset()

    def close(self) -> None:
        """Stop the background transcription worker (pending pieces are dropped)."""
        if self._transcriber is not None:
            self._transcriber.close()

    def __enter__(self) -> VoicePerception:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _load_bridge(self) -> AudioBridge:
        return AudioBridge(threads=self.runtime.threads, provider=self.runtime.provider)

    def _load_emotion(self) -> VoiceEmotionModel:
        return VoiceEmotionModel.load(self.runtime.threads, self.runtime.provider)

    @property
    def has_bridge(self) -> bool:
        return self._bridge is not None

    @property
    def baseline(self) -> SpeakerBaseline:
        """The current speaker's baseline."""
        return self._baselines[self._speaker]

    @property
    def speaker(self) -> str:
        return self._speaker

    def reset_baseline(self) -> None:
        """Forget the current speaker's baseline; relative cues wait until it is learnt again."""
        self._baselines[self._speaker] = SpeakerBaseline(
            self.options.baseline_horizon_s, self.options.baseline_min_speech_s
        )
        self._cues.reset()
        self._last_end = None

    def set_speaker(self, key: str) -> None:
        """Judge the following windows against speaker `key`'s own baseline (created on first use).

        One stream is one speaker by default; a diarizer or the face tracker (who is talking) can
        switch speakers so that each voice keeps its own norm. Cue hysteresis restarts on a switch.
        """
        if key == self._speaker:
            return
        if key not in self._baselines:
            self._baselines[key] = SpeakerBaseline(self.options.baseline_horizon_s, self.options.baseline_min_speech_s)
        self._speaker = key
        self._cues.reset()
        self._rate.reset()
        self._last_end = None

    def process_block(self, block: AudioBlock) -> VoiceBlock:
        """Repair, VAD and frame prosody of one block (any size)."""
        x = block.samples
        if x.ndim != 1 or x.dtype != np.float32:
            raise ValueError(
                f"a voice block must be 16 kHz mono float32 (io.audio.Conditioner makes one), got {x.dtype} {x.shape}"
            )
        nonfinite, clipped = block.nonfinite, block.clipped
        self.stats["blocks"] += 1
        self.stats["irregular_blocks"] += int(self._last_size is not None and len(x) != self._last_size)
        self.stats["nonfinite_samples"] += nonfinite
        self.stats["clipped_samples"] += clipped
        self._last_size = len(x)
        t_vad = time.perf_counter()
        vad = self._vad.accept(x, block.t)
        t_pros = time.perf_counter()
        frames = self._frames.push(x, block.t)
        if self._bridge is not None:
            self._bridge_frames.push(x, block.t)
        t_end = time.perf_counter()
        if self._transcriber is not None:
            self._transcriber.remember(x, block.t)
        latency = {"vad": (t_pros - t_vad) * 1e3, "prosody": (t_end - t_pros) * 1e3}
        return VoiceBlock(
            block.t, len(x), vad.t, vad.prob, vad.speaking, vad.segments, frames, nonfinite, clipped, latency
        )

    def summarize(
        self, samples: np.ndarray, t0: float, observations: Sequence[VoiceBlock], t_start: float, t_end: float
    ) -> ModalityResult:
        """Cues, cue scores, measures and code of the window [t_start, t_end)."""
        t_begin = time.perf_counter()
        obs = list(observations)
        latency = {k: sum(o.latency_ms.get(k, 0.0) for o in obs) for k in ("vad", "prosody")}
        window = self._measure(samples, t0, obs, t_start, t_end)
        t_measure = time.perf_counter()
        decision = self._decide_cues(window)
        t_cues = time.perf_counter()
        latency.update(measure=(t_measure - t_begin) * 1e3, cues=(t_cues - t_measure) * 1e3)
        return self._result(window, obs, decision, latency)

    def _measure(
        self, samples: np.ndarray, t0: float, obs: list[VoiceBlock], t_start: float, t_end: float
    ) -> VoiceWindow:
        """The window's frames and VAD chunks from its blocks, its cleaned samples and their measures (the syllable
        rate over the stream's trailing `rate_horizon_s`)."""
        vad_t = np.concatenate([o.vad_t for o in obs]) if obs else np.zeros(0)
        keep = (vad_t >= t_start) & (vad_t < t_end)
        vad_t = vad_t[keep]
        vad_prob = np.concatenate([o.vad_prob for o in obs])[keep] if obs else np.zeros(0)
        speaking = np.concatenate([o.speaking for o in obs])[keep] if obs else np.zeros(0, dtype=bool)
        frames = FrameFeatures.concat([o.frames for o in obs])
        frames = frames.select((frames.t >= t_start) & (frames.t < t_end))
        speech = _frame_speech(frames.t, vad_t, speaking)
        x = np.asarray(samples, np.float32)
        repairs = _repairs(sum(o.nonfinite for o in obs), sum(o.clipped for o in obs))
        duration = max(t_end - t_start, 1e-6)
        m = measure_window(frames, speech, vad_t, vad_prob, self._vad.options.threshold, duration, x, t0)
        if m.speech_s > 0:
            m = replace(m, syllable_rate=self._rate.update(m, t_end))
        return VoiceWindow(t_start, t_end, duration, frames, x, m, repairs, Activity(frames.t, frames.level_db, speech))

    def _decide_cues(self, window: VoiceWindow) -> CueDecision:
        """Cues against the speaker baseline, or why there are none; folds a window with speech into the baseline."""
        m = window.measures
        if m.speech_s < self.options.min_window_speech_s:
            return CueDecision(code=_no_speech_code(window.frames, m.speech_s))
        z = self.baseline.zscores(m)
        cues = self._cues.update(m, z)
        code = None
        if not cues:
            code = ResultCode.NO_CLEAR_VOCAL_CUE if self.baseline.ready else ResultCode.LEARNING_BASELINE
        duration, t_end = window.duration_s, window.t_end
        new_s = duration if self._last_end is None else min(duration, max(0.0, t_end - self._last_end))
        self.baseline.update(m, m.speech_s * new_s / duration)
        self._last_end = t_end
        return CueDecision(cues, z, code)

    def _result(
        self, window: VoiceWindow, obs: list[VoiceBlock], decision: CueDecision, latency: dict[str, float]
    ) -> ModalityResult:
        """The window's result: the cue decision with the emotion model's scores, the AECB's tokens, the measures
        and the transcript; `latency` gains their times and the total."""
        m, x, t_start, t_end = window.measures, window.samples, window.t_start, window.t_end
        tokens, bridge_scores, emotion, notes = None, {}, {}, list(window.repairs)
        if self._emotion is not None and m.speech_s >= MIN_SPEECH_S:
            t_emotion = time.perf_counter()
            emotion = self._emotion(x)
            latency["emotion"] = (time.perf_counter() - t_emotion) * 1e3
        if self._bridge is not None and m.speech_s >= self.options.min_window_speech_s and len(x):
            try:
                out = _encode(self._bridge, self._bridge_frames, window)
            except (ModelError, ValueError) as e:  # the measured cues stand without the tokens
                log.warning("voice: AECB bridge failed: %s", str(e).splitlines()[0])
                notes.append((ResultCode.NO_AUDIO_TOKENS, "no audio tokens (bridge failed)"))
            else:
                tokens = out.tokens
                bridge_scores = {f"aecb:{rule_name(k)}": round(v, 4) for k, v in out.cue_scores.items()}
                latency["aecb"] = sum(out.latency_ms.values())
        extra: dict[str, Any] = {k: round(v, 4) for k, v in m.as_dict().items()}
        extra.update(
            {f"{k}_z": round(v, 3) for k, v in decision.zscores.items()},
            speaker=self._speaker,
            baseline_ready=self.baseline.ready,
            segments=[asdict(s) for o in obs for s in o.segments if t_start <= s.end < t_end],
            voiced_segments=m.extra.get("voiced_segments", []),
            input=_input_stats(obs),
        )
        transcript: tuple[TranscriptSegment, ...] = ()
        if self._transcriber is not None:
            t_asr = time.perf_counter()
            transcript = self._transcriber.words(extra["segments"], self._vad.open_start, t_start, t_end)
            latency["asr"] = (time.perf_counter() - t_asr) * 1e3
        scores = {name: 0.0 for name in RULE_NAMES}
        scores.update({c.name: round(c.intensity, 4) for c in decision.cues})
        scores.update(bridge_scores)
        code, message = decision.code, None
        if notes:
            message = "; ".join(([code.text] if code else []) + [text for _, text in notes])
            code = code or notes[0][0]
        latency["total"] = sum(latency.values())
        return ModalityResult(
            "auditory",
            decision.cues,
            tokens,
            scores,
            code,
            message,
            (),
            latency,
            extra,
            transcript,
            emotion,
            activity=window.loudness,
        )


class SyllableRate:
    """Syllables per second of speech over the trailing `horizon_s` of the stream.

    Windows overlap, so speech chunks are kept once each (keyed by start time) and a nucleus found
    again by a later window (possibly a frame or two away) is kept once.
    """

    MERGE_S = 0.08  # nuclei closer than this are the same syllable

    def __init__(self, horizon_s: float = 5.0):
        self.horizon_s = horizon_s
        self.reset()

    def reset(self) -> None:
        self._nuclei = np.zeros(0)
        self._speech: set[int] = set()

    def update(self, m: WindowMeasures, t_end: float) -> float:
        for t in np.asarray(m.extra.get("nuclei_t", []), float):
            if len(self._nuclei) == 0 or np.abs(self._nuclei - t).min() >= self.MERGE_S:
                self._nuclei = np.append(self._nuclei, t)
        self._speech.update(np.round(np.asarray(m.extra.get("speech_chunk_t", []), float) * 1000).astype(int).tolist())
        oldest = t_end - self.horizon_s
        self._nuclei = self._nuclei[(self._nuclei >= oldest) & (self._nuclei <= t_end)]  # also after a jump back
        self._speech = {k for k in self._speech if oldest * 1000 <= k <= t_end * 1000}
        speech_s = len(self._speech) * CHUNK_S
        return len(self._nuclei) / speech_s if speech_s > 0 else math.nan


def _encode(bridge: AudioBridge, stream_frames: StreamFrames, window: VoiceWindow) -> AecbOutput:
    """The AECB's output for a window: from the stream's cached frame features, or from its samples when the
    cache does not hold the window; its baseline learns from windows mostly of speech."""
    t_feats = time.perf_counter()
    feats = stream_frames.window(window.t_end - WINDOW_S, WINDOW_SAMPLES)
    learn = window.measures.speech_ratio >= 0.3
    if feats is None:
        return bridge.run(window.samples, update_baseline=learn)
    return bridge.encode(feats, learn, features_ms=(time.perf_counter() - t_feats) * 1e3)


def _frame_speech(frame_t: np.ndarray, vad_t: np.ndarray, speaking: np.ndarray) -> np.ndarray:
    """Frames whose centre falls in a VAD chunk marked as speech."""
    if len(vad_t) == 0 or len(frame_t) == 0:
        return np.zeros(len(frame_t), dtype=bool)
    i = np.searchsorted(vad_t, frame_t, side="right") - 1
    ok = (i >= 0) & (frame_t < vad_t[np.clip(i, 0, None)] + CHUNK_S)
    return ok & speaking[np.clip(i, 0, None)]


def _no_speech_code(frames: FrameFeatures, speech_s: float) -> ResultCode:
    if len(frames) == 0:
        return ResultCode.NO_AUDIO
    level = 10 * math.log10(float(np.mean(10 ** (frames.level_db / 10))) + 1e-12)
    if level < SILENCE_DB:
        return ResultCode.SILENCE
    if speech_s > 0:
        return ResultCode.TOO_LITTLE_SPEECH
    return ResultCode.NOISE if float(np.median(frames.flatness)) > NOISE_FLATNESS else ResultCode.NO_SPEECH


def _input_stats(obs: list[VoiceBlock]) -> dict[str, int]:
    """What arrived in the window's blocks. Counted from the window's own blocks, not the stage's running
    totals, so the figure does not depend on how far perception had got when the window closed."""
    return {
        "blocks": len(obs),
        "irregular_blocks": sum(a.n_samples != b.n_samples for a, b in zip(obs, obs[1:])),
        "nonfinite_samples": sum(o.nonfinite for o in obs),
        "clipped_samples": sum(o.clipped for o in obs),
    }


def _repairs(nonfinite: int, clipped: int) -> tuple[tuple[ResultCode, str], ...]:
    """Notes (code, message) on what was repaired in a window's input."""
    notes = ((nonfinite, f"{nonfinite} non-finite samples zeroed"), (clipped, f"{clipped} clipped samples"))
    return tuple((ResultCode.INPUT_REPAIRED, text) for count, text in notes if count)
