"""The decoder's label scores at the label step ("... the emotional state is").

Each label in `EMOTIONS` is scored by its full continuation (multi-token labels are evaluated, then rolled
back). With calibration (calibrate-before-use, Zhao et al. 2021) the scores are divided by those after
content-free cues ("N/A", "none", "nothing") and renormalized, which removes the model's prior towards "neutral".
"""

from __future__ import annotations

import math

import numpy as np

from ..core.distributions import label_distribution
from ..core.types import EMOTIONS
from .llama_session import LlamaSession
from .prompt import Segment, build_prompt_with_notes
from .prompt_cache import PromptCache
from .section_writer import HEADERS


class LabelScorer:
    """Each label's token ids and the content-free prior; scores the labels after a prompt."""

    def __init__(self, session: LlamaSession):
        self._session = session
        self.label_tokens = {e: session.tokenize(" " + e) for e in EMOTIONS}
        """Token ids of each label after a space."""
        self.prior: dict[str, float] | None = None
        """Label distribution for content-free cues (divided out of the scores), or None: not calibrated."""

    @property
    def longest(self) -> int:
        """Tokens of the longest label."""
        return max(len(t) for t in self.label_tokens.values())

    def calibrate(self, cache: PromptCache) -> None:
        """Divide the scores from now on by the geometric mean of the label distributions after explanations
        of content-free cues."""
        logs = []
        for word in ("N/A", "none", "nothing"):
            segments = build_prompt_with_notes([word], [word], None, False, False)[0]
            answer = f" {word}.{HEADERS[0]} {word}.{HEADERS[1]}"
            segments[-1] = Segment("text", segments[-1].text + answer)
            logits, n_past = cache.evaluate(cache.pieces(segments, {}))
            logs.append(np.log(np.array(list(self.raw_scores(logits, n_past).values())) + 1e-12))
        prior = np.exp(np.mean(logs, axis=0))
        self.prior = {label: float(v) for label, v in zip(EMOTIONS, prior / prior.sum())}

    def scores(self, logits: np.ndarray, n_past: int) -> dict[str, float]:
        """The label distribution at the label step, calibrated when a prior is set."""
        scores = self.raw_scores(logits, n_past)
        if self.prior is not None:
            scores = {k: v / self.prior[k] for k, v in scores.items()}
            scores = {k: v / sum(scores.values()) for k, v in scores.items()}
        return scores

    def raw_scores(self, logits: np.ndarray, n_past: int) -> dict[str, float]:
        """Normalized probabilities of each label's full continuation after the label lead."""
        logp = _log_softmax(logits)
        totals = {}
        for label, ids in self.label_tokens.items():
            total = float(logp[ids[0]])
            for k in range(1, len(ids)):  # multi-token label: score the rest, then roll back
                more = self._session.eval_tokens([ids[k - 1]], n_past + k - 1, want_logits=True)
                assert more is not None  # asked for
                total += float(_log_softmax(more)[ids[k]])
            if len(ids) > 1:
                self._session.truncate(n_past)
            totals[label] = total
        return label_distribution(np.array(list(totals.values())), list(totals))


def _log_softmax(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float64)
    m = x.max()
    return x - m - math.log(np.exp(x - m).sum())
