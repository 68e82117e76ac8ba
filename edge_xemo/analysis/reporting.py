"""The analyzer's events: `EventFactory` builds their payloads, `Reporter` sends them and counts failures."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable

from ..core import events as ev
from ..core.outbox import Outbox
from ..core.scheduler import Window
from ..core.types import SAMPLE_RATE, Explanation, ModalityResult, StatusCode
from ..reasoning.judgement import explanation_fields
from .speakers import Attribution

log = logging.getLogger(__name__)

COUNTERS = (
    "frames",
    "audio_blocks",
    "windows",
    "explanations",
    "cancelled",
    "errors",
    "frames_paused",
    "audio_paused",
    "callback_errors",
)
"""The run's counters (`Analyzer.stats`): frames, audio blocks, windows, explanations, cancelled, errors, items
left out while paused, exceptions raised by the result and frame callbacks; `frames_dropped` and `audio_dropped`
join them at the first drop."""


@dataclass(slots=True)
class EventFactory:
    """Builds every event the analyzer makes, each naming `source` (the sources' names once they start)."""

    clock: Callable[[], float]
    source: str = ""

    def status(
        self, code: StatusCode, message: str, t: float | None = None, level: str = "status", **extra
    ) -> ev.Event:
        """A `status` (level="error": an `error`) event at source time `t`."""
        return ev.status(code, message, self.source, t=t, level=level, **extra)

    def window_status(self, win: Window, code: str, message: str, **extra) -> ev.Event:
        """A `status` event about one window (a ResultCode's value or a StatusCode), timed as the window."""
        data = {"code": code, "message": message, **extra}
        return ev.Event("status", win.t_start, win.t_end, self.source, data=data)

    def error(self, code: StatusCode, e: Exception, t: float | None) -> ev.Event:
        return self.status(code, f"{type(e).__name__}: {e}", t=t, level="error")

    def stopped(self, reason: str) -> ev.Event:
        """The last event of a run that `close(reason)` stopped."""
        return self.status(StatusCode.STOPPED, f"stopped: {reason}", t=self.clock(), reason=reason)

    def dropped(self, t: float | None, total: tuple[int, int], new: tuple[int, int]) -> ev.Event:
        """What the full input queues dropped: (frames, audio blocks) in all and since the last report."""
        return self.status(
            StatusCode.DROPPED,
            f"under load: {new[0]} frames and {new[1]} audio blocks dropped since the "
            f"last report ({total[0]} and {total[1]} in all)",
            t=t,
            frames_dropped=total[0],
            audio_dropped=total[1],
            frames_dropped_new=new[0],
            audio_dropped_new=new[1],
        )

    def cues(
        self,
        win: Window,
        vis: ModalityResult,
        aud: ModalityResult,
        latency_ms: dict[str, float],
        frame_size: tuple[int, int] | None,
    ) -> list[ev.Event]:
        """A window's `cues` events (`core.events.cue_events`)."""
        audio_s = len(win.audio) / SAMPLE_RATE
        return ev.cue_events(
            win.t_start, win.t_end, self.source, vis, aud, latency_ms, frame_size, win.n_frames, audio_s
        )

    def token(self, win: Window, piece: str, face_id: int | None = None) -> ev.Event:
        """A piece of the explanation of person `face_id` being written."""
        return ev.Event("token", win.t_start, win.t_end, self.source, data={"text": piece, "face_id": face_id})

    def explanation(
        self,
        win: Window,
        exp: Explanation,
        vis: ModalityResult,
        aud: ModalityResult,
        subtitle: str | None,
        latency_ms: dict[str, float],
        speaker: Attribution | None = None,
    ) -> ev.Event:
        """One person's explanation (`vis.face_id`; None: a window without a face) and whose the voice was."""
        data = {
            "text": exp.text,
            **explanation_fields(exp, vis, aud),
            "subtitle": subtitle,
            "valid": exp.valid,
            "problem": exp.problem,
            "n_tokens": exp.n_tokens,
            "face_id": vis.face_id,
        }
        if speaker is not None:
            data["speaker"] = speaker.to_dict()
        return ev.Event("explanation", win.t_start, win.t_end, self.source, latency_ms, data)


@dataclass(frozen=True, slots=True)
class Reporter:
    """Where the parts send what they make: the event factory, the outbox and the run's counters (`stats`)."""

    events: EventFactory
    outbox: Outbox
    stats: dict[str, int]

    def emit(self, event: ev.Event, explaining: bool = False) -> None:
        """Hand `event` to the outbox; `explaining`: made by the explanation under way (it never waits)."""
        self.outbox.put(event, explaining=explaining)

    def fail(self, code: StatusCode, e: Exception, t: float | None, explaining: bool = False) -> None:
        """A stage call failed: counted, logged at debug level, and reported as an `error` event."""
        self.stats["errors"] += 1
        log.debug("%s", code, exc_info=e)
        self.emit(self.events.error(code, e, t), explaining)
