"""Which windows are explained, and the reasoning thread that explains them one at a time."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Callable

from ..core.scheduler import BoundedQueue, ExplainPolicy, Window, cue_signature, material_change
from ..core.types import ModalityResult, Reasoner, ResultCode, StatusCode
from ..io.subtitles import text_during
from .reporting import Reporter
from .speakers import Attribution, Speakers


@dataclass(frozen=True, slots=True)
class _Job:
    """One window waiting for the reasoner."""

    window: Window
    visual: ModalityResult
    auditory: ModalityResult
    subtitle: str | None
    signature: frozenset[str]
    t_queued: float  # time.perf_counter() when the window was queued
    speaker: Attribution


class Explainer:
    """Explains windows with `reasoner`: `offer` (perception thread) queues a window with evidence when the
    `ExplainPolicy` says it is due; `run` (the reasoning thread) explains the queued ones in order, streaming
    `token` events, then an `explanation` event. Each window's subtitle is its words, else the timed `subtitles`
    it overlaps, else the fixed `subtitle`.

    `live`: at most one window waits (the oldest is dropped), and a waiting window whose cues changed materially
    cancels the explanation under way. After `stop` is set, queued windows are cancelled, not explained.
    `on_end` runs once the thread ends."""

    def __init__(
        self,
        reasoner: Reasoner,
        policy: ExplainPolicy,
        report: Reporter,
        stop: threading.Event,
        on_end: Callable[[], None],
        live: bool,
        subtitle: str | None = None,
        subtitles: tuple = (),
    ):
        self._reasoner, self._policy, self._report, self._stop, self._on_end = reasoner, policy, report, stop, on_end
        self._live, self._subtitle, self._subtitles = live, subtitle, subtitles
        self._jobs = BoundedQueue(1 if live else 4, drop_oldest=live)
        self._speakers = Speakers()

    def offer(self, win: Window, vis: ModalityResult, aud: ModalityResult) -> None:
        """A closed window: queued when it has evidence (cues, a judged face or voice, words) and is due; a
        window with none gets a `status` saying there was nothing to explain."""
        words = aud.words or text_during(self._subtitles, win.t_start, win.t_end)
        speaker = self._speakers.attribute(vis.people, aud, win.t_end)  # every window: it smooths over them
        if not (vis.evidence or aud.evidence or words):  # no evidence, no label
            message = f"nothing to explain: {vis.message}; {aud.message}"
            self._report.emit(self._report.events.window_status(win, StatusCode.NOTHING_TO_EXPLAIN, message))
            return
        signature = cue_signature(vis, aud)
        if not self._policy.due(win.t_end, signature):
            return
        self._report.outbox.explanation_queued()
        self._jobs.put(_Job(win, vis, aud, words or self._subtitle, signature, time.perf_counter(), speaker))

    def no_more_windows(self) -> None:
        """The last window was offered: the thread ends once the queued ones are done."""
        self._jobs.close()

    def run(self) -> None:
        """The thread's body: explain the queued windows until `no_more_windows`."""
        outbox = self._report.outbox
        try:
            for job in self._jobs.drain():
                try:
                    if self._stop.is_set():  # closing: windows still queued are not explained
                        self._report.stats["cancelled"] += 1
                    else:
                        self._explain(job)
                finally:
                    outbox.explanation_done()
        finally:
            outbox.explanation_done(everything=True)
            self._on_end()

    def _superseded(self, job: _Job) -> bool:
        """Whether the explanation of `job` should stop: closing, or (live) a waiting window's cues differ."""
        if self._stop.is_set():
            return True
        pending = self._jobs.peek()
        return self._live and pending is not None and material_change(pending.signature, job.signature)

    def _explain(self, job: _Job) -> None:
        """One explanation per person in view (one for the window without a face), each judged on that person's
        evidence; the voice and the words join only the judgement of the person they are attributed to."""
        people, speaker = job.visual.people or (job.visual,), job.speaker
        for person in people:
            heard = speaker.hears(person, len(people))
            voice = job.auditory if heard else _unheard(speaker)
            words = job.subtitle if heard else None
            if person.evidence or voice.evidence or words:
                if not self._explain_person(job, person, voice, words, speaker):
                    return

    def _explain_person(
        self, job: _Job, person: ModalityResult, voice: ModalityResult, words: str | None, speaker: Attribution
    ) -> bool:
        """Explain one person's window and emit it; False when it failed or was cancelled (the window ends)."""
        win, events, emit = job.window, self._report.events, self._report.emit
        first_token: list[float] = []

        def on_token(piece: str) -> None:
            if not first_token:
                first_token.append((time.perf_counter() - job.t_queued) * 1e3)
            emit(events.token(win, piece, person.face_id), explaining=True)

        try:
            exp = self._reasoner.explain(person, voice, words, on_token, lambda: self._superseded(job), t=win.t_end)
        except Exception as e:
            self._report.fail(StatusCode.EXPLANATION_FAILED, e, win.t_end, explaining=True)
            return False
        if self._superseded(job) and not exp.valid:
            self._report.stats["cancelled"] += 1
            message = "a newer window with different cues replaced this explanation"
            emit(events.window_status(win, StatusCode.EXPLANATION_CANCELLED, message), explaining=True)
            return False
        lat = dict(exp.latency_ms)
        lat["window_to_explanation"] = (time.perf_counter() - job.t_queued) * 1e3
        if first_token:
            lat["window_to_first_token"] = first_token[0]
        self._report.stats["explanations"] += 1
        emit(events.explanation(win, exp, person, voice, words, lat, speaker), explaining=True)
        return True


def _unheard(speaker: Attribution) -> ModalityResult:
    """The voice result of a person the window's voice is not attributed to."""
    whose = f"face {speaker.face_id}'s" if speaker.face_id is not None else "not attributed"
    return ModalityResult(
        "auditory", code=ResultCode.VOICE_ELSEWHERE, message=f"the voice is {whose}: {speaker.reason}"
    )
