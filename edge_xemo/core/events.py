"""The versioned event schema: one JSON object per line.

Every event has `schema_version`, `type`, `source`, `t_start`/`t_end` (seconds on the source
clock), `wall_time` (Unix seconds when it was emitted) and `latency_ms` (per-stage timings).

Types:
- `cues`: the interpretable cues of one window (one event per tracked face; audio cues ride on
  the event of the primary face), expression scores and voice measures.
- `token`: a piece of an explanation being generated (streamed as it comes).
- `explanation`: the finished cue-level explanation with emotion label and scores, one per person in view
  (`face_id`) per explained window; `speaker` says whose the window's voice is.
- `status`: something the user should know that is not a failure (no face, silence, drops).
- `error`: something failed; a live loop keeps going when it can.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field

from .types import ModalityResult, StatusCode

SCHEMA_VERSION = "1.2"
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


def status(
    code: StatusCode, message: str, source: str = "", t: float | None = None, level: str = "status", **extra
) -> Event:
    """A `status` (or, with level="error", an `error`) event with a machine code and a one-line message."""
    return Event(
        type="error" if level == "error" else "status",
        t_start=t,
        t_end=t,
        source=source,
        data={"code": code, "message": message, **extra},
    )


def cue_events(
    t_start: float,
    t_end: float,
    source: str,
    visual: ModalityResult,
    auditory: ModalityResult,
    latency_ms: dict[str, float],
    frame_size: tuple[int, int] | None,
    n_frames: int,
    audio_s: float,
) -> list[Event]:
    """A window's `cues` events: one per face (the primary face first; one without a face when none has
    cues), the voice's cues, measures and expression scores on the first."""
    face_ids = sorted({c.face_id for c in visual.cues}, key=lambda f: (f is None, f)) or [None]
    voice = {**auditory.scores, **{k: v for k, v in auditory.extra.items() if isinstance(v, (int, float, str))}}
    return [
        Event(
            "cues",
            t_start,
            t_end,
            source,
            latency_ms,
            {
                "face_id": face_id,
                "visual_cues": [c.to_dict() for c in visual.cues if c.face_id == face_id],
                "auditory_cues": [c.to_dict() for c in auditory.cues] if i == 0 else [],
                "expression": visual.scores if i == 0 else {},
                "voice": voice if i == 0 else {},
                "faces": [
                    {"face_id": f.face_id, "box": list(f.box), "score": f.score}
                    for f in visual.faces
                    if f.face_id == face_id
                ],
                "frame_size": list(frame_size) if frame_size else None,
                "n_frames": n_frames,
                "audio_s": audio_s,
            },
        )
        for i, face_id in enumerate(face_ids)
    ]


@dataclass(frozen=True, slots=True)
class Field:
    """One field of an event object: its JSON type(s), whether it is required, and for objects the keys it must hold."""

    name: str
    json_type: str | tuple[str, ...]
    required: bool = True
    keys: tuple[str, ...] = ()
    description: str = ""


COMMON_FIELDS = (
    Field("schema_version", "string", description=f'"{SCHEMA_VERSION}" for this version'),
    Field("type", "string", description="one of " + ", ".join(EVENT_TYPES)),
    Field("source", "string", False, description="what the input was (file, camera, microphone)"),
    Field("t_start", ("number", "null"), description="window start, seconds on the source clock"),
    Field("t_end", ("number", "null"), description="window end, seconds on the source clock"),
    Field("wall_time", "number", False, description="Unix seconds when the event was emitted"),
    Field("latency_ms", "object", description="per-stage timings in milliseconds"),
    Field("seq", "integer", False, description="sequence number, on events served by `edge-xemo serve`"),
)
TYPE_FIELDS = {
    "cues": (
        Field("face_id", ("integer", "null"), False, description="tracked face (null: no face)"),
        Field("visual_cues", "array", description="[{name, phrase, intensity, evidence, face_id}]"),
        Field("auditory_cues", "array", description="[{name, phrase, intensity, evidence}]"),
        Field("expression", "object", False, description="expression scores"),
        Field("voice", "object", False, description="voice measures"),
        Field("faces", "array", False, description="[{face_id, box [x0, y0, x1, y1] in pixels, score}]"),
        Field("frame_size", "array", False, description="[width, height] of the frames in pixels"),
    ),
    "token": (
        Field("text", "string", description="a piece of an explanation as it is generated"),
        Field("face_id", ("integer", "null"), False, description="whose explanation (null: no face)"),
    ),
    "explanation": (
        Field("text", "string"),
        Field(
            "emotion",
            "object",
            keys=("label", "scores"),
            description="{label, scores, confidence, outcome, reason, carried_by}",
        ),
        Field("visual_cues", "array"),
        Field("auditory_cues", "array"),
        Field("evidence", "object", False, description="{source: {distribution, weight, cues}}"),
        Field("perceived", "object", False, description="the cue phrases of the window"),
        Field("face_id", ("integer", "null"), False, description="the person explained (null: no face in view)"),
        Field(
            "speaker",
            "object",
            False,
            keys=("face_id", "reason"),
            description="whose the window's voice is: {face_id (null: nobody's), reason, scores per face}",
        ),
    ),
    "status": (Field("code", "string"), Field("message", "string")),
    "error": (Field("code", "string"), Field("message", "string")),
}
"""The event schema in one place: `validate` checks it and `json_schema` publishes it."""

_PYTHON_TYPES: dict[str, type | tuple[type, ...]] = {
    "string": str,
    "number": (int, float),
    "integer": int,
    "array": (list, tuple),
    "object": dict,
    "null": type(None),
    "boolean": bool,
}


def _is(value, json_type: str | tuple[str, ...]) -> bool:
    types = (json_type,) if isinstance(json_type, str) else json_type
    return any(
        isinstance(value, _PYTHON_TYPES[t]) and not (t in ("number", "integer") and isinstance(value, bool))
        for t in types
    )


def _readable(version) -> bool:
    """Whether events of `version` validate here: the same major version, this minor or an earlier one (fields are
    only ever added within a major version)."""
    major, minor = SCHEMA_VERSION.split(".")
    parts = version.split(".") if isinstance(version, str) else []
    return len(parts) == 2 and parts[0] == major and parts[1].isdigit() and int(parts[1]) <= int(minor)


def validate(d: dict) -> None:
    """Raise ValueError if `d` is not a valid event object of this schema version."""
    if d.get("type") not in EVENT_TYPES:
        raise ValueError(f"unknown event type {d.get('type')!r}")
    if not _readable(d.get("schema_version")):
        raise ValueError(f"schema_version {d.get('schema_version')!r} is not 1.0 to {SCHEMA_VERSION}")
    for f in COMMON_FIELDS + TYPE_FIELDS[d["type"]]:
        if f.name not in d:
            if f.required:
                raise ValueError(f"{d['type']} event lacks {f.name!r}")
            continue
        if not _is(d[f.name], f.json_type):
            raise ValueError(f"{d['type']} event field {f.name!r} is not {f.json_type}: {d[f.name]!r}")
        missing = [k for k in f.keys if k not in d[f.name]]
        if missing:
            raise ValueError(f"{d['type']} event field {f.name!r} lacks {', '.join(map(repr, missing))}")


def json_schema() -> dict:
    """JSON Schema (2020-12) of the event objects, made from COMMON_FIELDS and TYPE_FIELDS.

    Objects may carry fields the schema does not name: fields are only added within a major version,
    and clients ignore what they do not know.
    """

    def prop(f: Field) -> dict:
        out: dict = {"type": f.json_type if isinstance(f.json_type, str) else list(f.json_type)}
        if f.keys:
            out["required"] = list(f.keys)
        if f.description:
            out["description"] = f.description
        return out

    variants = []
    for kind, fields in TYPE_FIELDS.items():
        props = {f.name: prop(f) for f in COMMON_FIELDS + fields}
        props["type"] = {**props["type"], "const": kind}
        props["schema_version"] = {**props["schema_version"], "const": SCHEMA_VERSION}
        variants.append(
            {
                "title": kind,
                "type": "object",
                "properties": props,
                "required": [f.name for f in COMMON_FIELDS + fields if f.required],
                "additionalProperties": True,
            }
        )
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"edge-xemo/events/{SCHEMA_VERSION}",
        "title": "edge-xemo event",
        "oneOf": variants,
    }
