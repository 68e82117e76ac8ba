"""The words source: emotion probabilities from what was said (a subtitle or ASR transcript), never from cue phrases.

A logistic-regression head (train/words_head.py, artifact `words_head`, fitted on MELD's Friends dialogue)
over the all-MiniLM-L6-v2 embedding of the normalized utterance, temperature-scaled. It speaks about
neutral, happy, sad, angry, surprise, fear and disgust; it gives no score for "worried" (MELD has no such label).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from ..core.distributions import softmax
from ..core.models import ModelError, resolve, verified_path
from .embeddings import DIM

_REPLACE = (
    # mojibake first (UTF-8 read as cp1252, then cp1252 read as latin-1), then the typographic characters
    ("â€™", "'"), ("â€˜", "'"), ("â€œ", '"'), ("â€\x9d", '"'), ("â€¦", "..."), ("â€”", "-"), ("â€“", "-"),
    ("Â’", "'"), ("Â‘", "'"), ("Â“", '"'), ("Â”", '"'), ("Â…", "..."), ("Â\xa0", " "),
    ("\x92", "'"), ("\x91", "'"), ("\x93", '"'), ("\x94", '"'), ("\x85", "..."), ("\x96", "-"), ("\x97", "-"),
    ("’", "'"), ("‘", "'"), ("“", '"'), ("”", '"'), ("…", "..."), ("—", " - "), ("–", "-"), ("\xa0", " "),
)  # fmt: skip


def normalize_text(text: str) -> str:
    """Plain-ASCII punctuation for an utterance: mojibake and typographic quotes, ellipses and dashes mapped
    (`\\x92`, `Â’`, `â€™`, `’` -> `'`, ...), whitespace collapsed. Training and run time both use it."""
    for bad, good in _REPLACE:
        if bad in text:
            text = text.replace(bad, good)
    return " ".join(text.split())


def joined_context(context: str, text: str) -> str:
    """The text a context-reading head embeds beside the utterance: the preceding words, then the utterance."""
    return " ".join(t for t in (normalize_text(context), normalize_text(text)) if t)


class WordsHead:
    """Emotion probabilities of an utterance (artifact `words_head`); torch-free (MiniLM on onnxruntime, numpy)."""

    def __init__(
        self, embedder: Any, weight: np.ndarray, labels: Sequence[str], temperature: float = 1.0, context: bool = False
    ):
        """`weight`: (n_labels, k * 384 + 1), logistic-regression weights then the bias; k = 2 when the head
        reads context (features: the utterance's embedding, then that of `joined_context`), else 1."""
        self.embedder, self.labels = embedder, tuple(labels)
        self.weight = np.asarray(weight, np.float32)
        self.temperature, self.context = float(temperature), bool(context)
        want = (len(self.labels), (2 if self.context else 1) * DIM + 1)
        if self.weight.shape != want:
            raise ModelError(f"words_head has shape {self.weight.shape}, expected {want}")
        if not self.temperature > 0:
            raise ModelError(f"words_head temperature must be positive, got {self.temperature}")

    @classmethod
    def load(cls, threads: int = 1, provider: str = "cpu") -> WordsHead:
        """The installed head and MiniLM encoder; ModelError when either is missing or corrupt."""
        from .embeddings import EmbedderOptions, MiniLMEmbedder

        entry = resolve("words_head").entry
        try:
            weight = np.load(verified_path("words_head"))
            labels, temperature = entry["outputs"][0]["labels"], entry["temperature"]
            context = entry.get("context", {}).get("used", False)
        except (KeyError, IndexError, TypeError, ValueError) as e:
            raise ModelError(f"words_head artifact or sidecar unusable: {type(e).__name__}: {e}") from e
        embedder = MiniLMEmbedder.create_from_options(EmbedderOptions(threads=threads, provider=provider))
        return cls(embedder, weight, labels, temperature, context)

    def features(self, texts: Sequence[str], contexts: Sequence[str] | None = None) -> np.ndarray:
        """The head's input rows (n, k * 384) for utterances and (if the head reads it) their preceding text."""
        x = self.embedder.embed([normalize_text(t) for t in texts])
        if not self.context:
            return x
        contexts = contexts if contexts is not None else [""] * len(texts)
        return np.hstack([x, self.embedder.embed([joined_context(c, t) for c, t in zip(contexts, texts)])])

    def probabilities(self, texts: Sequence[str], contexts: Sequence[str] | None = None) -> np.ndarray:
        """(n, n_labels) temperature-scaled probabilities, rows in `texts` order, columns in `labels` order."""
        z = self.features(texts, contexts) @ self.weight[:, :-1].T + self.weight[:, -1]
        return softmax(z / self.temperature)

    def __call__(self, text: str, context: str = "") -> dict[str, float]:
        """{label: probability} for one utterance; `context`: the preceding words of the same stream (used
        only by a head trained with context)."""
        p = self.probabilities([text], [context])[0]
        return {lab: float(v) for lab, v in zip(self.labels, p)}
