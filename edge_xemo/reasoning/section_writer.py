"""The model writing the cue sections (`DecoderOptions.sections="generated"`) token by token up to the label lead.

With `structured` the writer keeps the format: it writes the next header ("In the audio,", then the label
lead) when a sentence ends, the model stops, or the video section has used half of `max_tokens`; the video
section cannot jump to the label step. Without it the model writes freely. A generation that never reaches
the label lead gets it forced; a repetition loop or a stop ends it early (each with its `Problem`).
"""

from __future__ import annotations

import codecs
import re
import time
from typing import TYPE_CHECKING, Callable

import numpy as np

from ..core.distributions import softmax
from ..core.types import Problem
from .llama_session import LlamaSession
from .prompt import ANSWER_PREFIX, LABEL_LEAD, repeated_text

if TYPE_CHECKING:
    from .decoder import DecoderOptions

HEADERS = (" In the audio,", " " + LABEL_LEAD)
"""What `structured` generation writes after the video and the audio section."""
_STATE_END = re.compile(r"emotional state (?:is|seems to be|appears to be)$", re.IGNORECASE)
_LOOP_TOKENS = 6
"""The same token this many times in a row is a repetition loop."""
_AUDIO_HEAD = re.compile(r"\bin the audio,\s*$", re.IGNORECASE)
_SENTENCE_END = re.compile(r"[.!?\n]\s*$")


def label_step_words(session: LlamaSession) -> list[int]:
    """Single-token words that open the label step ("emotional", "Therefore"): banned in a structured video section."""
    words = [session.tokenize(w) for w in (" emotional", " Emotional", " Therefore", "Therefore")]
    return [ids[0] for ids in words if len(ids) == 1]


def forced_tokens(session: LlamaSession) -> int:
    """Most tokens the writer adds itself: a stop and the audio header, then a stop and the label lead."""
    return len(session.tokenize("." + HEADERS[0])) + len(session.tokenize(". " + LABEL_LEAD))


def next_token(logits: np.ndarray, temperature: float, rng: np.random.Generator) -> int:
    """The most likely token at temperature 0, else one sampled from the tempered distribution."""
    if temperature <= 0:
        return int(np.argmax(logits))
    p = softmax(logits.astype(np.float64) / temperature)
    return int(rng.choice(len(p), p=p))


class SectionWriter:
    """One generation: the text so far (from `ANSWER_PREFIX`), the logits and KV position after it, the current
    section (0 = video, 1 = audio), the generated tokens, problems and the first token's time."""

    def __init__(
        self,
        session: LlamaSession,
        options: DecoderOptions,
        rng: np.random.Generator,
        label_words: list[int],
        emit: Callable[[str], None],
        logits: np.ndarray,
        n_past: int,
    ):
        self._session, self._options, self._rng = session, options, rng
        self._label_words, self._emit = label_words, emit
        self._utf8 = codecs.getincrementaldecoder("utf-8")("replace")
        self.logits, self.n_past = logits, n_past
        self.text = ANSWER_PREFIX
        self.generated: list[int] = []
        self.problems: list[Problem] = []
        self.first: float | None = None
        self.reached_label = False
        self._section, self._section_start = 0, len(self.text)

    def write(self, should_stop: Callable[[], bool] | None) -> None:
        """Stream the sections until the label lead, a stop, a repetition loop or `max_tokens`."""
        self._emit(ANSWER_PREFIX)
        while len(self.generated) < self._options.max_tokens:
            if should_stop is not None and should_stop():
                self.problems.append(Problem.STOPPED_EARLY)
                return
            if self._step():
                return

    def lead_to_label(self) -> None:
        """Force the label lead when the model did not write it (a problem says so)."""
        if self.reached_label:
            return
        self._force((" " if self.text.rstrip().endswith(".") else ". ") + LABEL_LEAD)
        ran_out = len(self.generated) >= self._options.max_tokens
        self.problems.append(Problem.LABEL_FORCED_MAX_TOKENS if ran_out else Problem.LABEL_FORCED)

    def _step(self) -> bool:
        """Pick and write one token (or close the section); True when the generation ends."""
        o = self._options
        if o.structured and self._section == 0:
            self.logits[self._label_words] = -np.inf  # the video section must not jump to the label
        token = next_token(self.logits, o.temperature, self._rng)
        body = self.text[self._section_start :]
        section_full = o.structured and self._section == 0 and len(self.generated) >= o.max_tokens // 2
        if self._session.is_end(token) or section_full:
            if not o.structured or not body.strip():
                return True
            # the model ended (or ran long) inside a section: close it and write the next header
            return self._next_header("" if _SENTENCE_END.search(body) else ".")
        self._append(token)
        body = self.text[self._section_start :]
        if _STATE_END.search(self.text.rstrip()):
            self.reached_label = True
            return True
        if self._section == 0 and _AUDIO_HEAD.search(body):  # the model wrote the audio header itself
            self._section, self._section_start = 1, len(self.text)
            return False
        tail = self.generated[-_LOOP_TOKENS:]
        if repeated_text(self.text[-240:]) or (len(tail) == _LOOP_TOKENS and len(set(tail)) == 1):
            self.problems.append(Problem.REPETITION_LOOP)
            return True
        if o.structured and body.strip() and _SENTENCE_END.search(body):
            return self._next_header("")
        return False

    def _append(self, token: int) -> None:
        """Write a generated token, stream it and evaluate it."""
        piece = self._utf8.decode(self._session.piece(token))
        self.generated.append(token)
        self.text += piece
        self.first = self.first or time.perf_counter()
        self._emit(piece)
        self._eval([token])

    def _next_header(self, stop: str) -> bool:
        """End the section with `stop` and write the next header; True when that is the label lead."""
        self._force(stop + HEADERS[self._section])
        self.reached_label, self._section, self._section_start = self._section == 1, 1, len(self.text)
        return self.reached_label

    def _force(self, piece: str) -> None:
        """Write text the model did not generate, stream it and evaluate it."""
        self.text += piece
        self._emit(piece)
        self._eval(self._session.tokenize(piece))

    def _eval(self, ids: list[int]) -> None:
        """Evaluate `ids` after the text so far: the logits after them, the KV position past them."""
        logits = self._session.eval_tokens(ids, self.n_past, want_logits=True)
        assert logits is not None  # asked for
        self.logits, self.n_past = logits, self.n_past + len(ids)
