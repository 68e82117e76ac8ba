"""The voice stage's transcript: speech audio kept for the recognizer, transcription (inline or on a worker
thread) and each window's words."""

from __future__ import annotations

import logging
import math
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np

from ..core.types import SAMPLE_RATE, TranscriptSegment
from .asr import Transcriber, TranscriberOptions

log = logging.getLogger(__name__)

WORDS_BEFORE_S = 2.0
"""A window's words include those said this long before it: one window-length of context, since a short
window often holds half a sentence (the words head judges the utterance as MELD's lines are whole ones)."""
KEEP_S = 30
"""Seconds of cleaned audio, and of recognized words, kept."""


class WindowTranscriber:
    """Holds the last `KEEP_S` of cleaned audio, the transcriptions still running and the words recognized lately;
    sends speech to the recognizer once and gives each window its words."""

    def __init__(self, options: TranscriberOptions, threads: int):
        self.options = options
        self._asr = Transcriber(options, threads)
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="edge-xemo-asr") if options.background else None
        self.reset()

    def reset(self) -> None:
        self._recent = np.zeros(0, dtype=np.float32)  # last KEEP_S of cleaned audio
        self._recent_t = 0.0
        self._transcribed_until = -math.inf
        self._pending: list[Future] = []  # background transcriptions, oldest first
        self._heard: list[TranscriptSegment] = []  # recognized words of the last KEEP_S, in order

    def close(self) -> None:
        """Stop the background transcription worker (pending pieces are dropped)."""
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)

    def remember(self, x: np.ndarray, t: float) -> None:
        """Keep a cleaned block that starts at source time `t` (a jump in the stream starts afresh)."""
        if len(self._recent) == 0 or abs(self._recent_t + len(self._recent) / SAMPLE_RATE - t) > 0.01:
            self._recent, self._recent_t = x.copy(), t
        else:
            self._recent = np.concatenate([self._recent, x])
        excess = len(self._recent) - KEEP_S * SAMPLE_RATE
        if excess > 0:
            self._recent = self._recent[excess:]
            self._recent_t += excess / SAMPLE_RATE

    def words(
        self, segments: list[dict], open_start: float | None, t_start: float, t_end: float
    ) -> tuple[TranscriptSegment, ...]:
        """The recognized words spoken in this window or in the `WORDS_BEFORE_S` before it, and words recognized
        only now that were said earlier (speech goes to the recognizer when an utterance ends, or after
        `max_chunk_s` of one still going on, so a long utterance's first words come after their windows).

        segments: the speech segments that ended in the window; open_start: start of the utterance still going
        on, if any."""
        spans = [(s["start"], s["end"]) for s in segments]
        if open_start is not None:
            start = max(open_start, self._transcribed_until)
            if t_end - start >= self.options.max_chunk_s:
                spans.append((start, t_end))
        out: list[TranscriptSegment] = []
        for start, end in spans:
            if end <= self._transcribed_until:  # already done in an earlier, overlapping window
                continue
            start = max(start, self._transcribed_until)
            self._transcribed_until = end
            out += self._transcribe(start, end)
        out += self._finished()
        self._heard = [w for w in self._heard if w.end >= t_end - KEEP_S] + out
        recent = [w for w in self._heard if w.end > t_start - WORDS_BEFORE_S and w.start < t_end]
        late = [w for w in out if w not in recent]  # said before that but only recognized now: never lost
        return tuple(sorted(late + recent, key=lambda w: w.start))

    def _transcribe(self, start: float, end: float) -> list[TranscriptSegment]:
        """The words of the kept audio in [start, end), or none yet when the worker transcribes it."""
        a = int((start - self._recent_t) * SAMPLE_RATE)
        b = int((end - self._recent_t) * SAMPLE_RATE)
        a = max(a, 0)
        if b <= a:
            return []
        audio, t_audio = self._recent[a:b].copy(), self._recent_t + a / SAMPLE_RATE
        if self._pool is None:
            return self._asr.transcribe(audio, t_audio)
        self._pending.append(self._pool.submit(self._asr.transcribe, audio, t_audio))
        return []

    def _finished(self) -> list[TranscriptSegment]:
        """The words of the background transcriptions finished since the last call, in order."""
        out: list[TranscriptSegment] = []
        while self._pending and self._pending[0].done():
            try:
                out += self._pending.pop(0).result()
            except Exception as e:  # a failed transcription must not end a live stream
                log.warning("voice: transcription failed: %s", e)
        return out
