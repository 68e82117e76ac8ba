"""The emotion timeline report: one self-contained HTML page from a run's events (`edge-xemo report`).

On one time axis: the judged label as a coloured band (abstentions pale, disagreeing sources hatched),
each evidence source's distribution as stacked areas, the facial cues of each tracked face and the vocal
cues as rows of marks, speech activity and the words; a summary above (time per label, transitions, the
cues behind each label, the data's limits). Python writes every mark as SVG; the page's one script
(`static/report.js`) only shows the hovered or clicked window's explanation and zooms the axis. The page
loads nothing: its script and style are inlined and a CSP forbids any request.
"""

from __future__ import annotations

import html
import json
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from statistics import median

from ..core.events import validate
from ..core.types import EMOTION_COLOURS, EMOTIONS

STATIC = Path(__file__).with_name("static")
OTHER_COLOUR = "#c8c8c8"
SCALE = 10
"""SVG units per second."""
BAND_H, AREA_H, CUE_H, SPEECH_H = 28, 36, 11, 18
CSP = "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'"
"""The page may run its inlined script and style and nothing else: no request of any kind."""
NO_FACE = {"no_face", "face_too_small", "frame_too_small", "no_frames"}
_SCORE = re.compile(r"\s*\(\d+(\.\d+)?\)$")


@dataclass
class Window:
    """Everything the events say about one analysis window."""

    t_start: float
    t_end: float
    explanation: dict | None = None
    cues: list[dict] = field(default_factory=list)
    codes: set[str] = field(default_factory=set)
    slot: tuple[float, float] = (0.0, 0.0)
    """The part of the time axis this window stands for (its middle `hop` seconds)."""

    @property
    def emotion(self) -> dict:
        return (self.explanation or {}).get("emotion") or {}

    @property
    def unsure(self) -> bool:
        """Judged, but not confidently (weak evidence, or the sources disagree)."""
        return self.explanation is not None and self.emotion.get("outcome") not in (None, "confident")

    @property
    def has_face(self) -> bool:
        return any(c.get("faces") or c.get("face_id") is not None for c in self.cues) and not self.codes & NO_FACE

    @property
    def speech_s(self) -> float:
        return max((float(c.get("voice", {}).get("speech_s") or 0.0) for c in self.cues), default=0.0)

    @property
    def speech_ratio(self) -> float:
        return max((float(c.get("voice", {}).get("speech_ratio") or 0.0) for c in self.cues), default=0.0)


def read_events(path: str | Path) -> list[dict]:
    """The event objects of a JSONL file; a line that is not a valid event (`core.events.validate`) is an error
    naming it."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"events file {path} not found")
    events = []
    for i, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        try:
            event = json.loads(line)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}:{i}: not a JSON event ({e.msg})") from e
        if not isinstance(event, dict):
            raise ValueError(f"{path}:{i}: not an event object")
        try:
            validate(event)
        except ValueError as e:
            raise ValueError(f"{path}:{i}: {e}") from e
        events.append(event)
    return events


def windows(events: list[dict]) -> list[Window]:
    """The events grouped by window, in time order, each with its slot on the axis."""
    by_key: dict[tuple[float, float], Window] = {}
    for e in events:
        t0, t1 = e.get("t_start"), e.get("t_end")
        if not isinstance(t0, (int, float)) or not isinstance(t1, (int, float)) or t1 <= t0:
            continue
        w = by_key.setdefault((t0, t1), Window(float(t0), float(t1)))
        if e["type"] == "explanation" and isinstance(e.get("emotion"), dict):
            w.explanation = e
        elif e["type"] == "cues":
            w.cues.append(e)
        elif e["type"] in ("status", "error") and e.get("code"):
            w.codes.add(str(e["code"]))
    out = sorted(by_key.values(), key=lambda w: (w.t_start, w.t_end))
    if not out:
        raise ValueError("the events hold no analysis window (no cues, explanation or status with a time span)")
    starts = sorted({w.t_start for w in out})
    hop = median(b - a for a, b in zip(starts, starts[1:])) if len(starts) > 1 else out[0].t_end - out[0].t_start
    for w in out:
        middle = (w.t_start + w.t_end) / 2
        w.slot = (max(0.0, middle - hop / 2), middle + hop / 2)
    return out


def _colour(label) -> str:
    return EMOTION_COLOURS.get(str(label), OTHER_COLOUR)


def _share(n: int, total: int) -> str:
    return f"{100 * n / total:.0f} %" if total else "-"


def _clock(t: float) -> str:
    return f"{int(t // 60)}:{t % 60:04.1f}"


def summary(wins: list[Window]) -> dict:
    """Time per label, the main transitions, the cues behind each label and the data's limits."""
    n = len(wins)
    labels = [w.emotion.get("label") for w in wins if w.explanation]
    per_label = Counter(labels)
    abstained = Counter(w.emotion.get("label") for w in wins if w.unsure)
    runs = [label for i, label in enumerate(labels) if i == 0 or labels[i - 1] != label]
    transitions = Counter(zip(runs, runs[1:]))
    carried: dict[str, Counter] = {}
    for w in wins:
        if w.explanation:
            cues = (_SCORE.sub("", str(c)) for c in w.emotion.get("carried_by") or [])  # "... expression (0.80)"
            carried.setdefault(w.emotion.get("label") or "-", Counter()).update(cues)
    low, stretch = [], []
    for w in wins + [Window(0, 1)]:  # the sentinel closes the last stretch
        if w.unsure:
            stretch.append(w)
            continue
        if len(stretch) >= 2:
            low.append((stretch[0].t_start, stretch[-1].t_end, len(stretch)))
        stretch = []
    return {
        "windows": n,
        "duration_s": max(w.t_end for w in wins),
        "labels": [(label, k, abstained[label]) for label, k in per_label.most_common()],
        "unlabelled": n - len(labels),
        "transitions": transitions.most_common(5),
        "carried_by": {label: c.most_common(3) for label, c in carried.items()},
        "no_face": sum(not w.has_face for w in wins),
        "no_speech": sum(w.speech_s == 0.0 for w in wins),
        "not_confident": sum(w.unsure for w in wins),
        "low_stretches": sorted(low, key=lambda s: -s[2])[:5],
    }


def _summary_html(s: dict) -> str:
    n = s["windows"]
    bar = "".join(
        f'<span style="flex:{k};background:{_colour(label)}" title="{html.escape(str(label))}"></span>'
        for label, k, _ in s["labels"]
    )
    if s["unlabelled"]:
        bar += f'<span class="nolabel" style="flex:{s["unlabelled"]}" title="no label"></span>'
    rows = "".join(
        f'<tr><td><i class="sw" style="background:{_colour(label)}"></i>{html.escape(str(label))}</td>'
        f"<td>{_share(k, n)}</td><td>{_share(a, k)}</td><td>"
        + html.escape("; ".join(f"{cue} ({c})" for cue, c in s["carried_by"].get(label, [])) or "-")
        + "</td></tr>"
        for label, k, a in s["labels"]
    )
    if s["unlabelled"]:
        rows += f"<tr><td>no label</td><td>{_share(s['unlabelled'], n)}</td><td></td><td>nothing to judge</td></tr>"
    transitions = ", ".join(
        f"{html.escape(str(a))} &rarr; {html.escape(str(b))} ({k})" for (a, b), k in s["transitions"]
    )
    stretches = ", ".join(f"{_clock(a)}-{_clock(b)} ({k} windows)" for a, b, k in s["low_stretches"])
    return (
        f'<section id="summary"><div class="sharebar">{bar}</div>'
        '<table class="labels"><tr><th>label</th><th>share of time</th><th>of which not confident</th>'
        f"<th>cues most often behind it</th></tr>{rows}</table>"
        f'<p id="transitions"><b>Main transitions:</b> {transitions or "none (one label throughout)"}</p>'
        f'<p id="limits"><b>Limits of the data:</b> no face in {_share(s["no_face"], n)} of the windows, '
        f"no speech in {_share(s['no_speech'], n)}, the label not confident in {_share(s['not_confident'], n)}"
        f"{'; longest low-confidence stretches: ' + stretches if stretches else ''}.</p></section>"
    )


def _x(t: float) -> str:
    return f"{t * SCALE:.0f}"


def _rect(w: Window, y: float, h: float, cls: str, fill: str, opacity: float = 1.0, i: int | None = None) -> str:
    x0, x1 = w.slot
    extra = f' data-i="{i}"' if i is not None else ""
    alpha = f' fill-opacity="{opacity:.2f}"' if opacity < 1 else ""
    return (
        f'<rect class="{cls}" x="{_x(x0)}" y="{y:.0f}" width="{(x1 - x0) * SCALE:.0f}" height="{h:.0f}" '
        f'fill="{fill}"{alpha}{extra}/>'
    )


def _svg(width: int, height: int, body: str, cls: str) -> str:
    return (
        f'<svg class="{cls}" viewBox="0 0 {width} {height}" preserveAspectRatio="none" height="{height}">{body}</svg>'
    )


def _band(wins: list[Window]) -> str:
    marks = []
    for i, w in enumerate(wins):
        if not w.explanation:
            continue
        outcome = html.escape(str(w.emotion.get("outcome") or "confident"))
        alpha = 1.0 if outcome == "confident" else 0.35
        marks.append(_rect(w, 0, BAND_H, f"win {outcome}", _colour(w.emotion.get("label")), alpha, i))
        if outcome == "sources_disagree":
            marks.append(_rect(w, 0, BAND_H, "hatch", "url(#hatch)"))
    return "".join(marks)


def _areas(wins: list[Window], source: str, labels: list[str]) -> str:
    """One path per label: the stacked distribution of `source`, a polygon per run of adjacent windows."""
    judged = [w for w in wins if w.explanation]
    runs: list[list[Window]] = []
    for w in judged:
        if runs and abs(runs[-1][-1].slot[1] - w.slot[0]) < 1e-6:
            runs[-1].append(w)
        else:
            runs.append([w])
    paths = []
    for k, label in enumerate(labels):
        d = []
        for run in runs:
            top, bottom = [], []
            for w in run:
                dist = (w.explanation or {}).get("evidence", {}).get(source, {}).get("distribution") or {}
                below = sum(float(dist.get(other) or 0.0) for other in labels[:k])
                above = below + float(dist.get(label) or 0.0)
                for t in w.slot:
                    top.append(f"{_x(t)} {AREA_H * (1 - above):.1f}")
                    bottom.append(f"{_x(t)} {AREA_H * (1 - below):.1f}")
            d.append("M" + " L".join(top + bottom[::-1]) + "Z")
        paths.append(f'<path class="area" data-label="{html.escape(label)}" fill="{_colour(label)}" d="{"".join(d)}"/>')
    return "".join(paths)


def _row(name: str, svg: str, height: int, cls: str = "", title: str = "") -> tuple[str, str]:
    tip = f' title="{html.escape(title)}"' if title else ""
    return (
        f'<div class="rl {cls}" style="height:{height}px"{tip}>{html.escape(name)}</div>',
        f'<div class="rt {cls}" style="height:{height}px">{svg}</div>',
    )


def _cue_rows(wins: list[Window], width: int) -> list[tuple[str, str]]:
    """A row of marks per cue name: per tracked face for the facial cues, then the voice's cues and speech."""
    faces = sorted({int(c["face_id"]) for w in wins for c in w.cues if c.get("face_id") is not None})
    rows = []
    persons: list[int | None] = [*faces] or [None]  # None: the events track no face
    for face in persons:
        names: dict[str, str] = {}
        for w in wins:
            for c in w.cues:
                if c.get("face_id") == face:
                    names.update({q["name"]: q.get("phrase", "") for q in c.get("visual_cues", []) if "name" in q})
        person = f"person {face}" if faces else "face"
        rows.append(_row(f"{person}: facial cues", "", 14, f"group person p{face}"))
        for name in sorted(names):
            marks = "".join(
                _rect(w, 1, CUE_H - 2, "mark", "#5b4a8b", max(0.25, float(q.get("intensity") or 0.0)))
                for w in wins
                for c in w.cues
                if c.get("face_id") == face
                for q in c.get("visual_cues", [])
                if q.get("name") == name
            )
            rows.append(
                _row(name.replace("_", " "), _svg(width, CUE_H, marks, "cues"), CUE_H, "cue-row visual", names[name])
            )
    vocal = sorted(
        {q["name"]: q.get("phrase", "") for w in wins for c in w.cues for q in c.get("auditory_cues", [])}.items()
    )
    rows.append(_row("voice: vocal cues", "", 14, "group"))
    for name, phrase in vocal:
        marks = "".join(
            _rect(w, 1, CUE_H - 2, "mark", "#1f7a6d", max(0.25, float(q.get("intensity") or 0.0)))
            for w in wins
            for c in w.cues
            for q in c.get("auditory_cues", [])
            if q.get("name") == name
        )
        rows.append(_row(name.replace("_", " "), _svg(width, CUE_H, marks, "cues"), CUE_H, "cue-row auditory", phrase))
    speech = "".join(
        _rect(w, SPEECH_H * (1 - w.speech_ratio), SPEECH_H * w.speech_ratio, "speech", "#1f7a6d", 0.6)
        for w in wins
        if w.speech_ratio > 0
    )
    rows.append(
        _row("speech", _svg(width, SPEECH_H, speech, "speechrow"), SPEECH_H, "", "share of the window with speech")
    )
    return rows


def _words(wins: list[Window], duration: float) -> str:
    """The words (subtitle or transcript) where they fall; a run of windows with the same words shows them once."""
    spans: list[list] = []
    for w in wins:
        words = ((w.explanation or {}).get("subtitle") or "").strip()
        if not words:
            continue
        if spans and spans[-1][2] == words and abs(spans[-1][1] - w.slot[0]) < 1e-6:
            spans[-1][1] = w.slot[1]
        else:
            spans.append([w.slot[0], w.slot[1], words])
    return "".join(
        f'<span class="words" style="left:{100 * a / duration:.3f}%;width:{100 * (b - a) / duration:.3f}%" '
        f'title="{html.escape(text)}">{html.escape(text)}</span>'
        for a, b, text in spans
    )


def _ticks(duration: float) -> str:
    step = next((s for s in (1, 2, 5, 10, 15, 30, 60, 120, 300, 600) if duration / s <= 15), 1200)
    return "".join(
        f'<span class="tick" style="left:{100 * t / duration:.3f}%">{text}</span>'
        for t in range(0, int(duration) + 1, step)
        for text in [_clock(t) if duration >= 60 else f"{t} s"]
    )


def _window_data(w: Window) -> dict:
    """What the page shows for a window on hover: its explanation and evidence, cues, words."""
    e = w.explanation or {}
    emotion = w.emotion
    return {
        "t": [w.t_start, w.t_end],
        "s": [round(w.slot[0], 3), round(w.slot[1], 3)],
        "label": emotion.get("label"),
        "outcome": emotion.get("outcome"),
        "confidence": emotion.get("confidence"),
        "reason": emotion.get("reason"),
        "carried_by": emotion.get("carried_by") or [],
        "text": e.get("text") or "",
        "words": e.get("subtitle") or "",
        "evidence": {
            source: {
                "weight": ev.get("weight"),
                "top": sorted(
                    ((k, round(float(v), 3)) for k, v in (ev.get("distribution") or {}).items()), key=lambda kv: -kv[1]
                )[:3],
                "cues": ev.get("cues") or [],
            }
            for source, ev in (e.get("evidence") or {}).items()
            if isinstance(ev, dict)
        },
        "visual": sorted({q.get("phrase", q.get("name", "")) for c in w.cues for q in c.get("visual_cues", [])}),
        "auditory": sorted({q.get("phrase", q.get("name", "")) for c in w.cues for q in c.get("auditory_cues", [])}),
        "status": sorted(w.codes),
    }


def render(events: list[dict], title: str = "edge-xemo emotion timeline") -> str:
    """The report page for `events` (as `read_events` returns them)."""
    wins = windows(events)
    s = summary(wins)
    duration = s["duration_s"]
    width = max(1, round(duration * SCALE))
    labels = sorted(
        {
            str(k)
            for w in wins
            for ev in (w.explanation or {}).get("evidence", {}).values()
            if isinstance(ev, dict)
            for k in ev.get("distribution") or {}
        },
        key=lambda label: (EMOTIONS.index(label) if label in EMOTIONS else len(EMOTIONS), label),
    )
    sources = list(dict.fromkeys(src for w in wins for src in (w.explanation or {}).get("evidence", {})))
    hatch = (
        '<defs><pattern id="hatch" width="6" height="6" patternUnits="userSpaceOnUse" patternTransform="rotate(45)">'
        '<rect width="2" height="6" fill="#333" fill-opacity="0.35"/></pattern></defs>'
    )
    rows = [_row("judged label", _svg(width, BAND_H, hatch + _band(wins), "band"), BAND_H, "bandrow")]
    rows += [
        _row(f"evidence: {src}", _svg(width, AREA_H, _areas(wins, src, labels), "areas"), AREA_H, "source", src)
        for src in sources
    ]
    rows += _cue_rows(wins, width)
    rows.append(_row("words", _words(wins, duration), 18, "wordsrow"))
    legend = "".join(
        f'<span><i class="sw" style="background:{_colour(label)}"></i>{html.escape(label)}</span>'
        for label in labels or list(EMOTION_COLOURS)
    )
    data = json.dumps(
        {"duration": duration, "windows": [_window_data(w) for w in wins]}, separators=(",", ":")
    ).replace("</", "<\\/")
    source = next((str(e.get("source")) for e in events if e.get("source")), "")
    static = {name: (STATIC / name).read_text(encoding="utf-8") for name in ("report.css", "report.js")}
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{CSP}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(title)}</title><style>{static["report.css"]}</style></head>
<body><h1>{html.escape(title)}</h1>
<p class="meta">{html.escape(Path(source).name) or "events"}: {_clock(duration)} ({len(wins)} windows).
Hover a moment for its explanation and evidence; click to pin it; the slider zooms the time axis.</p>
{_summary_html(s)}
<div class="legend">{legend}<span><i class="sw pale"></i>weak evidence</span>
<span><i class="sw hatched"></i>sources disagree</span>
<label>zoom <input id="zoom" type="range" min="1" max="20" value="1"></label></div>
<div id="timeline"><div class="labels-col">{"".join(label for label, _ in rows)}<div class="rl axis"></div></div>
<div class="scroller"><div id="tracks">{"".join(track for _, track in rows)}
<div class="rt axis">{_ticks(duration)}</div>
<div id="cursor"></div></div></div></div>
<section id="detail"><p class="hint">Hover the timeline.</p></section>
<script type="application/json" id="report-data">{data}</script>
<script>{static["report.js"]}</script>
</body></html>
"""


def write_report(events: list[dict], out: str | Path, title: str | None = None) -> Path:
    """Write the report page of `events` to `out` (its folder is made); returns the path."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render(events, title or "edge-xemo emotion timeline"), encoding="utf-8")
    return out


def report_name(name: str) -> str:
    """A file name for the report of the clip called `name` (its path separators and odd characters become '_')."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") + ".html"
