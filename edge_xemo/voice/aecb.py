"""Audio encoder + AECB (Audio Emotional Cue Bridge) at run time: numpy + onnxruntime, no torch.

One ONNX graph (`edge_xemo/models/aecb.onnx`, trained by `train/aecb.py`) turns the frame
features (log-mel + pitch bands, `edge_xemo.voice.features`) of a 2.0 s window into 8 audio
tokens (8, 128) for the decoder's projector, per-cue-phrase probabilities and Praat-style
prosody measures. Cues such as "higher pitch than usual" are judged
against the speaker's baseline: the running mean of the graph's `voice` embedding over earlier
windows, which `AudioBridge` keeps (call `reset()` for a new source or speaker).

Usage: create one bridge per audio stream and call it once per window,
after VAD, with the window's 16 kHz mono float32 samples:

    bridge = AudioBridge(threads=1, provider="cpu")
    out = bridge.run(window_samples, update_baseline=speech_fraction >= 0.3)
    out.tokens        # (8, 128) float32 -> ModalityResult.tokens
    out.cue_scores    # {"higher_pitch": p, ..., "long_pauses": p}, p in [0, 1] -> ModalityResult.scores
    out.phrases       # {"higher_pitch": "higher pitch than usual", ...} for Cue.phrase
    out.prosody       # {"f0_median_st": ..., "loudness_dbfs": ..., ...} (model estimates, not Praat)
    out.baseline_windows  # 0 on the first window: the relative cues are then ~0 by design

Windows of another length are cropped to the last 2.0 s or zero-padded at the start; skip
windows without speech (the model was trained on speech only), and pass `update_baseline=False`
for windows that are mostly silence so that pauses do not drag the speaker baseline.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from ..core.models import ModelError, load_session, resolve
from .features import SAMPLE_RATE, frame_features

WINDOW_S = 2.0
"""Length of audio the model sees per call, in seconds (32000 samples at 16 kHz)."""
WINDOW_SAMPLES = int(WINDOW_S * SAMPLE_RATE)
MODELS = ("aecb", "aecb_int8")


@dataclass(frozen=True, slots=True)
class AecbOutput:
    """One window through the encoder + AECB."""

    tokens: np.ndarray  # (n_tokens, d) float32
    cue_scores: dict[str, float]
    prosody: dict[str, float]
    voice: np.ndarray  # (d,) float32, this window's voice embedding
    baseline_windows: int  # windows averaged into the baseline this window was compared with
    phrases: dict[str, str] = field(default_factory=dict)
    latency_ms: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class BaselineOptions:
    """How the speaker baseline follows the voice.

    warmup: windows averaged with equal weight before switching to an exponential average.
    momentum: weight of a new window after warm-up (0.05 = about the last 20 windows).
    """

    warmup: int = 20
    momentum: float = 0.05


class AudioBridge:
    """Stateful wrapper of the AECB ONNX graph: one per audio stream (keeps the speaker baseline).

    `model` is "aecb" (fp32) or "aecb_int8" (dynamic int8, when shipped); `threads` is the
    onnxruntime intra-op thread count; `provider` as in `edge_xemo.core.models.select_providers`.
    """

    def __init__(
        self, threads: int = 1, provider: str = "cpu", model: str = "aecb", baseline: BaselineOptions | None = None
    ):
        if model not in MODELS:
            raise ValueError(f"unknown AECB model {model!r}; choose one of {', '.join(MODELS)}")
        self.entry = resolve(model).entry
        self.session = load_session(model, threads, provider)
        outputs = {o["name"]: o for o in self.entry["outputs"]}
        self.cues: tuple[str, ...] = tuple(outputs["cue_probs"]["labels"])
        self.prosody_names: tuple[str, ...] = tuple(outputs["prosody"]["labels"])
        self.phrases: dict[str, str] = dict(self.entry.get("cue_phrases", {}))
        self.n_frames, self.n_feats = (int(v) for v in self.entry["inputs"][0]["shape"][1:])
        self.options = baseline or BaselineOptions()
        self._baseline: np.ndarray | None = None
        self._n = 0

    @property
    def baseline_windows(self) -> int:
        return self._n

    def reset(self) -> None:
        """Forget the speaker baseline (new source or speaker)."""
        self._baseline, self._n = None, 0

    def features(self, samples_16k: np.ndarray) -> np.ndarray:
        """(1, 198, 96) frame features of the window, after cropping/padding to 2.0 s."""
        x = np.asarray(samples_16k)
        if x.ndim != 1 or x.size == 0:
            raise ValueError(f"AudioBridge.run expects non-empty mono 16 kHz samples (n,), got shape {x.shape}")
        if not np.issubdtype(x.dtype, np.floating):
            raise ValueError(f"AudioBridge.run expects float samples in [-1, 1], got dtype {x.dtype}")
        x = x.astype(np.float32, copy=False)
        if not np.isfinite(x).all():
            raise ValueError("AudioBridge.run got NaN or infinite samples")
        if len(x) > WINDOW_SAMPLES:
            x = x[-WINDOW_SAMPLES:]
        elif len(x) < WINDOW_SAMPLES:
            x = np.concatenate([np.zeros(WINDOW_SAMPLES - len(x), np.float32), x])
        feats = frame_features(x)
        if feats.shape != (self.n_frames, self.n_feats):
            raise ModelError(f"AECB expects features {(self.n_frames, self.n_feats)}, the front end gave {feats.shape}")
        return feats[None]

    def _session_run(self, feats: np.ndarray, baseline: np.ndarray):
        return self.session.run(None, {"features": feats, "baseline": baseline[None].astype(np.float32)})

    def run(self, samples_16k: np.ndarray, update_baseline: bool = True) -> AecbOutput:
        """Encode one window (2.0 s of 16 kHz mono float32; see the module docstring)."""
        t0 = time.perf_counter()
        feats = self.features(samples_16k)
        return self.encode(feats, update_baseline, features_ms=(time.perf_counter() - t0) * 1000)

    def encode(self, features: np.ndarray, update_baseline: bool = True, features_ms: float = 0.0) -> AecbOutput:
        """Encode one window's frame features ((198, 96) or (1, 198, 96), `features.frame_features` of its
        2.0 s; `features.StreamFrames` computes them once per frame over a stream)."""
        mel = np.asarray(features, dtype=np.float32).reshape(1, -1, features.shape[-1])
        if mel.shape[1:] != (self.n_frames, self.n_feats):
            raise ModelError(f"AECB expects features {(self.n_frames, self.n_feats)}, got {mel.shape[1:]}")
        t1 = time.perf_counter()
        n_before = self._n
        if self._baseline is None:  # no baseline yet: compare the voice with itself
            voice = self._session_run(mel, np.zeros(self._d(), np.float32))[3][0]  # voice ignores baseline
            outs = self._session_run(mel, voice)
        else:
            outs = self._session_run(mel, self._baseline)
        tokens, probs, prosody, voice = (o[0] for o in outs)
        t2 = time.perf_counter()
        if update_baseline:
            self._update(voice)
        return AecbOutput(
            tokens=tokens.astype(np.float32, copy=False),
            cue_scores={c: float(p) for c, p in zip(self.cues, probs)},
            prosody={k: float(v) for k, v in zip(self.prosody_names, prosody)},
            voice=voice.astype(np.float32, copy=False),
            baseline_windows=n_before,
            phrases=self.phrases,
            latency_ms={"features": features_ms, "aecb": (t2 - t1) * 1000},
        )

    def _d(self) -> int:
        return int(self.entry["inputs"][1]["shape"][1])

    def _update(self, voice: np.ndarray) -> None:
        self._n += 1
        if self._baseline is None:
            self._baseline = voice.astype(np.float32).copy()
            return
        w = 1.0 / self._n if self._n <= self.options.warmup else self.options.momentum
        self._baseline = ((1 - w) * self._baseline + w * voice).astype(np.float32)
