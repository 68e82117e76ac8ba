"""The versioned event schema: one JSON object per line.

Every event has `schema_version`, `type`, `source`, `t_start`/`t_end` (seconds on the source
clock), `wall_time` (Unix seconds when it was emitted) and `latency_ms` (per-stage timings).

Types:
- `cues`: the interpretable cues of one window (one event per tracked face; audio cues ride on
  the event of the primary face), expression scores and voice measures.
- `token`: a piece of an explanation being generated (streamed as it comes).
- `explanation`: the finished cue-level explanation with emotion label and scores.
- `status`: something the user should know that is not a failure (no face, silence, drops).
- `error`: something failed; a live loop keeps going when it can.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field

SCHEMA_VERSION = "1.1"
EVENT_TYPES = ("cues", "token", "explanation", "status", "error")


def _round(x):
    if isinstance(x, float):
        return round(x, 4) if math.isfinite(x) else None
    if isinstance(x, dict):
        return {k: _round(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_round(v) for v in x]
    return x


@dataclass(frozen=True, slots=True)
class Event:
    """One pipeline event; `data` holds the type-specific fields (see module docstring)."""

    type: str
    t_start: float | None = None
    t_end: float | None = None
    source: str = ""
    latency_ms: dict[str, float] = field(default_factory=dict)
    data: dict = field(default_factory=dict)
    wall_time: float = field(default_factory=time.time)

    def __post_init__(self):
        if self.type not in EVENT_TYPES:
            raise ValueError(f"unknown event type {self.type!r}; one of {', '.join(EVENT_TYPES)}")

    def to_dict(self) -> dict:
        d = {
            "schema_version": SCHEMA_VERSION,
            "type": self.type,
            "source": self.source,
            "t_start": self.t_start,
            "t_end": self.t_end,
            "wall_time": round(self.wall_time, 3),
            "latency_ms": self.latency_ms,
        }
        d.update(self.data)
        return _round(d)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False)

    @property
    def text(self) -> str:
        return self.data.get("text", "") or self.data.get("message", "")


def status(code: str, message: str, source: str = "", t: float | None = None, level: str = "status", **extra) -> Event:
    """A `status` (or, with level="error", an `error`) event with a machine code and a one-line message."""
    return Event(type="error" if level == "error" else "status", t_start=t, t_end=t, source=source,
                 data={"code": code, "message": message, **extra})


def validate(d: dict) -> None:
    """Raise ValueError if `d` is not a valid event object of this schema version."""
    for key in ("schema_version", "type", "t_start", "t_end", "latency_ms"):
        if key not in d:
            raise ValueError(f"event lacks {key!r}: {d}")
    if d["schema_version"] != SCHEMA_VERSION:
        raise ValueError(f"schema_version {d['schema_version']!r} != {SCHEMA_VERSION}")
    if d["type"] not in EVENT_TYPES:
        raise ValueError(f"unknown event type {d['type']!r}")
    if d["type"] == "explanation":
        for key in ("text", "emotion", "visual_cues", "auditory_cues"):
            if key not in d:
                raise ValueError(f"explanation event lacks {key!r}")
        if "label" not in d["emotion"] or "scores" not in d["emotion"]:
            raise ValueError("explanation emotion needs label and scores")
    if d["type"] == "cues" and ("visual_cues" not in d or "auditory_cues" not in d):
        raise ValueError("cues event needs visual_cues and auditory_cues")
