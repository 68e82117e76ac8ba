"""Clip-level evaluation: run an analyzer over an annotated clip collection and score it.

The clips come from `edge_xemo.eval.datasets` (a CSV/JSONL manifest, an EMER description CSV with its
media folder, or a folder per label): `subtitle`, `description` (the reference explanation) and
`label` (the reference emotion) are optional per clip. `evaluate_clips` calls the analyzer once per
clip and reports EmoCue-360 against the reference descriptions, emotion accuracy (WAR = overall
accuracy, UAR = mean per-class recall), a confusion table and latency statistics. Rows the reader
skipped are counted per reason with the first examples; an analyzer error fails that clip only.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

from edge_xemo.eval import emocue
from edge_xemo.eval.cue_extract import emotion_label, extract_cues
from edge_xemo.eval.datasets import Clip, ClipSet, DatasetError, LoadReport, load_clips
from edge_xemo.eval.report import report_name
from edge_xemo.eval.report import write_report as write_timeline

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ClipResult:
    """What the analyzer says about one clip.

    text: the explanation; label: the predicted emotion (None: read from the explanation's emotional
    cues); cues: {"visual", "auditory", "emotional"} lists when the analyzer has them (None: extracted
    from `text`); latency_s: the analyzer's own latency measure (None: wall time of the call);
    media_s: clip duration, for the real-time factor; status: "ok" or why the result is empty;
    events: the clip's window events (schema objects), for its timeline report.
    """

    text: str
    label: str | None = None
    cues: dict | None = None
    latency_s: float | None = None
    media_s: float | None = None
    status: str = "ok"
    extra: dict = field(default_factory=dict)
    events: tuple[dict, ...] = ()


def load_eval_clips(path: str | Path, media_dir: str | Path | None = None, labels=None) -> ClipSet:
    """`datasets.load_clips`, then every clip must have media to analyze (an EMER CSV needs `media_dir`)."""
    clips = load_clips(path, media_dir, labels)
    if any(c.video is None and c.audio is None for c in clips.clips):
        raise DatasetError(f"{path} lists descriptions without media: give the folder holding <name>.mp4")
    return clips


def _stats(values: Sequence[float]) -> dict:
    if not values:
        return {"n": 0, "median": None, "p95": None, "mean": None, "max": None}
    a = np.asarray(values, dtype=np.float64)
    return {
        "n": int(a.size),
        "median": float(np.median(a)),
        "p95": float(np.percentile(a, 95)),
        "mean": float(a.mean()),
        "max": float(a.max()),
    }


def emotion_metrics(pairs: Iterable[tuple[str, str | None]]) -> dict:
    """(true, predicted) labels -> accuracy (= WAR), UAR, per-class recall and the confusion table."""
    pairs = list(pairs)
    if not pairs:
        return {"n": 0, "accuracy": None, "war": None, "uar": None, "per_class": {}, "confusion": {}}
    classes = sorted({t for t, _ in pairs})
    confusion: dict[str, dict[str, int]] = {t: {} for t in classes}
    for t, p in pairs:
        key = p if p is not None else "none"
        confusion[t][key] = confusion[t].get(key, 0) + 1
    per_class = {
        t: {"n": sum(confusion[t].values()), "recall": confusion[t].get(t, 0) / sum(confusion[t].values())}
        for t in classes
    }
    acc = sum(t == p for t, p in pairs) / len(pairs)
    return {
        "n": len(pairs),
        "accuracy": acc,
        "war": acc,
        "uar": float(np.mean([c["recall"] for c in per_class.values()])),
        "per_class": per_class,
        "confusion": confusion,
    }


@dataclass(slots=True)
class _Scores:
    """What the evaluated clips add up to: predicted and reference cues by clip name, (reference, predicted)
    labels, latencies and real-time factors."""

    pred_cues: dict[str, dict] = field(default_factory=dict)
    ref_cues: dict[str, dict] = field(default_factory=dict)
    label_pairs: list[tuple[str, str | None]] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    rtfs: list[float] = field(default_factory=list)

    def add(self, clip: Clip, result: ClipResult, wall_s: float, extractor: Callable[[str], dict]) -> dict:
        """Score one clip's `result` (`wall_s`: the call's wall time); return its row of the report."""
        latency = result.latency_s if result.latency_s is not None else wall_s
        self.latencies.append(latency)
        if result.media_s:
            self.rtfs.append(latency / result.media_s)
        cues = result.cues if result.cues is not None else extractor(result.text or "")
        label = result.label or emotion_label(cues.get("emotional", []))
        self.pred_cues[clip.name] = cues
        if clip.description:
            self.ref_cues[clip.name] = extractor(clip.description)
        if clip.label:
            self.label_pairs.append((clip.label.lower(), label.lower() if label else None))
        return {
            "name": clip.name,
            "label": clip.label,
            "predicted": label,
            "latency_s": latency,
            "status": result.status,
            "text": result.text,
        }


def evaluate_clips(
    clips: ClipSet,
    analyze_clip: Callable[[Clip], ClipResult],
    embed: emocue.Embed | None = None,
    extractor: Callable[[str], dict] = extract_cues,
    reports: Path | None = None,
) -> dict:
    """Run `analyze_clip` on every clip; return the report (a JSON-ready dict).

    `embed` (e.g. `MiniLMEmbedder.embed`) enables EmoCue-360; `extractor` splits explanations and
    reference descriptions into cue lists; with `reports`, the timeline report of each clip whose result
    has events is written there and its row names it (relative to the folder above `reports`).
    """
    evaluated, failed = [], []
    scores = _Scores()
    for clip in clips.clips:
        t0 = time.perf_counter()
        try:
            result = analyze_clip(clip)
        except Exception as e:  # one bad clip must not end the evaluation
            log.warning("clip %s failed: %s", clip.name, e)
            first_line = str(e).splitlines()[0] if str(e) else ""
            failed.append({"name": clip.name, "error": f"{type(e).__name__}: {first_line}"})
            continue
        row = scores.add(clip, result, time.perf_counter() - t0, extractor)
        if reports is not None and result.events:
            try:
                page = write_timeline(list(result.events), reports / report_name(clip.name), f"{clip.name}: timeline")
                row["report"] = f"{reports.name}/{page.name}"
            except ValueError as e:  # events without a window: the row says why it has no report
                row["report_error"] = str(e)
        evaluated.append(row)
    return _clips_report(clips.report, evaluated, failed, scores, embed)


def _clips_report(
    read: LoadReport, evaluated: list[dict], failed: list[dict], scores: _Scores, embed: emocue.Embed | None
) -> dict:
    """The report of an evaluation: what the reader read and skipped, the clips evaluated and failed, and
    their scores (EmoCue-360 with `embed` and reference descriptions)."""
    report = {
        "source": str(read.source),
        "layout": read.layout,
        "n_rows": read.rows,
        "n_evaluated": len(evaluated),
        "n_skipped": sum(read.skipped.values()),
        "n_failed": len(failed),
        "skipped": dict(sorted(read.skipped.items())),
        "skipped_examples": list(read.examples),
        "failed": failed,
        "emocue360": None,
        "emotion": emotion_metrics(scores.label_pairs),
        "latency_s": _stats(scores.latencies),
        "real_time_factor": _stats(scores.rtfs),
        "clips": evaluated,
    }
    if embed is not None and scores.ref_cues:
        scored = emocue.score({n: scores.pred_cues[n] for n in scores.ref_cues}, scores.ref_cues, embed)
        report["emocue360"] = {m: scored[m] for m in emocue.MODALITIES}
    return report


def _fmt(v) -> str:
    return "-" if v is None else f"{v:.3f}" if isinstance(v, float) else str(v)


def markdown(report: dict) -> str:
    """The report as Markdown tables."""
    lines = [
        "# Clip evaluation\n",
        f"{report['n_evaluated']} clips evaluated, {report['n_skipped']} skipped, "
        f"{report['n_failed']} failed, of {report['n_rows']} rows in {report['source']} ({report['layout']}).\n",
    ]
    if report["emocue360"]:
        lines += ["## EmoCue-360\n", "| modality | precision | recall | F1 | n |", "|---|---|---|---|---|"]
        for m, s in report["emocue360"].items():
            lines.append(f"| {m} | {_fmt(s['precision'])} | {_fmt(s['recall'])} | {_fmt(s['f1'])} | {s['n']} |")
        lines.append("")
    emo = report["emotion"]
    lines += [
        "## Emotion\n",
        "| accuracy (WAR) | UAR | n |",
        "|---|---|---|",
        f"| {_fmt(emo['war'])} | {_fmt(emo['uar'])} | {emo['n']} |",
        "",
    ]
    if emo["per_class"]:
        lines += ["| class | recall | n |", "|---|---|---|"]
        lines += [f"| {c} | {_fmt(v['recall'])} | {v['n']} |" for c, v in emo["per_class"].items()]
        lines.append("")
    lat, rtf = report["latency_s"], report["real_time_factor"]
    lines += [
        "## Latency (s)\n",
        "| median | p95 | mean | max | n | RTF median |",
        "|---|---|---|---|---|---|",
        f"| {_fmt(lat['median'])} | {_fmt(lat['p95'])} | {_fmt(lat['mean'])} | {_fmt(lat['max'])} | {lat['n']} "
        f"| {_fmt(rtf['median'])} |",
        "",
    ]
    linked = [c for c in report["clips"] if c.get("report")]
    if linked:
        lines += ["## Clips\n", "| clip | label | predicted | timeline |", "|---|---|---|---|"]
        lines += [
            f"| {c['name']} | {_fmt(c['label'])} | {_fmt(c['predicted'])} | [report]({c['report']}) |" for c in linked
        ]
        lines.append("")
    if report["skipped"]:
        lines += ["## Skipped\n", "| reason | rows |", "|---|---|"]
        lines += [f"| {reason} | {n} |" for reason, n in report["skipped"].items()]
        lines += ["", "First skipped rows:\n"] + [f"- {e}" for e in report["skipped_examples"]] + [""]
    if report["failed"]:
        lines += ["## Failed\n"] + [f"- {r['name']}: {r['error']}" for r in report["failed"]] + [""]
    return "\n".join(lines)


def write_report(report: dict, out_dir: Path, plots: bool = True) -> list[Path]:
    """Write report.json, report.md and (with matplotlib installed) PNG plots; returns the paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = [out_dir / "report.json", out_dir / "report.md"]
    written[0].write_text(json.dumps(report, indent=2))
    written[1].write_text(markdown(report))
    if plots:
        written += _plots(report, out_dir)
    return written


def _save(plt, fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _plots(report: dict, out_dir: Path) -> list[Path]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log.warning("matplotlib not installed: no plots (pip install matplotlib)")
        return []
    paths = []
    lat = [c["latency_s"] for c in report["clips"]]
    if lat:
        fig, ax = plt.subplots(figsize=(5, 3.2))
        ax.hist(lat, bins=min(20, max(3, len(lat))))
        ax.set_xlabel("latency per clip (s)")
        ax.set_ylabel("clips")
        paths.append(_save(plt, fig, out_dir / "latency.png"))
    if report["emocue360"]:
        mods = [m for m, s in report["emocue360"].items() if s["n"]]
        fig, ax = plt.subplots(figsize=(5, 3.2))
        for metric, off in (("precision", -0.25), ("recall", 0), ("f1", 0.25)):
            ax.bar(np.arange(len(mods)) + off, [report["emocue360"][m][metric] for m in mods], 0.25, label=metric)
        ax.set_xticks(range(len(mods)), mods)
        ax.set_ylim(0, 1)
        ax.legend()
        ax.set_title("EmoCue-360")
        paths.append(_save(plt, fig, out_dir / "emocue360.png"))
    conf = report["emotion"]["confusion"]
    if conf:
        truth = list(conf)
        preds = sorted({p for row in conf.values() for p in row} | set(truth))
        mat = np.array([[conf[t].get(p, 0) for p in preds] for t in truth])
        fig, ax = plt.subplots(figsize=(1 + 0.6 * len(preds), 1 + 0.5 * len(truth)))
        ax.imshow(mat, cmap="Blues")
        ax.set_xticks(range(len(preds)), preds, rotation=45, ha="right")
        ax.set_yticks(range(len(truth)), truth)
        for (i, j), v in np.ndenumerate(mat):
            ax.text(j, i, str(v), ha="center", va="center", color="white" if v > mat.max() / 2 else "black")
        ax.set_xlabel("predicted")
        ax.set_ylabel("reference")
        paths.append(_save(plt, fig, out_dir / "confusion.png"))
    return paths
