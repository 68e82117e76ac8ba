"""Clip-level evaluation: run an analyzer over a manifest of clips and score it.

A manifest (CSV or JSONL) lists clips: `video`, optional `audio`, `subtitle`, `description` (the
reference explanation) and `label` (the reference emotion), optional `name`. `evaluate_clips` calls the
analyzer once per clip and reports EmoCue-360 against the reference descriptions, emotion accuracy
(WAR = overall accuracy, UAR = mean per-class recall), a confusion table and latency statistics.
Rows whose media are missing are skipped and listed; an analyzer error fails that clip only.
"""

from __future__ import annotations

import csv
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

from edge_xemo import emocue
from edge_xemo.cue_extract import emotion_label, extract_cues

log = logging.getLogger("edge_xemo")

MANIFEST_FIELDS = ("name", "video", "audio", "subtitle", "description", "label")


@dataclass(frozen=True, slots=True)
class ClipRow:
    """One manifest row; paths are resolved against the manifest's folder."""

    name: str
    video: Path | None = None
    audio: Path | None = None
    subtitle: str | None = None
    description: str | None = None
    label: str | None = None


@dataclass(frozen=True, slots=True)
class ClipResult:
    """What the analyzer says about one clip.

    text: the explanation; label: the predicted emotion (None: read from the explanation's emotional
    cues); cues: {"visual", "auditory", "emotional"} lists when the analyzer has them (None: extracted
    from `text`); latency_s: the analyzer's own latency measure (None: wall time of the call);
    media_s: clip duration, for the real-time factor; status: "ok" or why the result is empty.
    """

    text: str
    label: str | None = None
    cues: dict | None = None
    latency_s: float | None = None
    media_s: float | None = None
    status: str = "ok"
    extra: dict = field(default_factory=dict)


def _none_if_blank(v) -> str | None:
    return v.strip() if isinstance(v, str) and v.strip() else None


def load_manifest(path: Path) -> list[ClipRow]:
    """Read a CSV or JSONL clip manifest; raises ValueError naming the file and line on bad input."""
    path = Path(path)
    if not path.exists():
        raise ValueError(f"clip manifest {path} not found")
    raw: list[dict] = []
    if path.suffix.lower() in (".jsonl", ".ndjson"):
        for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}:{i}: not valid JSON ({e.msg})") from e
            if not isinstance(obj, dict):
                raise ValueError(f"{path}:{i}: expected a JSON object per line")
            raw.append(obj)
    else:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            if not reader.fieldnames or not ({"video", "audio"} & set(reader.fieldnames)):
                raise ValueError(f"{path}: CSV manifest needs a header with a 'video' or 'audio' column")
            raw = list(reader)
    rows = []
    for i, r in enumerate(raw):
        media = {k: Path(r[k]) if _none_if_blank(r.get(k)) else None for k in ("video", "audio")}
        media = {k: (p if p is None or p.is_absolute() else path.parent / p) for k, p in media.items()}
        first = media["video"] or media["audio"]
        name = _none_if_blank(r.get("name")) or (first.stem if first else f"row{i}")
        rows.append(ClipRow(name, media["video"], media["audio"], _none_if_blank(r.get("subtitle")),
                            _none_if_blank(r.get("description")), _none_if_blank(r.get("label"))))
    return rows


def _missing_media(row: ClipRow) -> str | None:
    if row.video is None and row.audio is None:
        return "no video or audio path"
    for kind, p in (("video", row.video), ("audio", row.audio)):
        if p is not None and not p.exists():
            return f"{kind} file not found: {p}"
    return None


def _stats(values: Sequence[float]) -> dict:
    if not values:
        return {"n": 0, "median": None, "p95": None, "mean": None, "max": None}
    a = np.asarray(values, dtype=np.float64)
    return {"n": int(a.size), "median": float(np.median(a)), "p95": float(np.percentile(a, 95)),
            "mean": float(a.mean()), "max": float(a.max())}


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
    per_class = {t: {"n": sum(confusion[t].values()), "recall": confusion[t].get(t, 0) / sum(confusion[t].values())}
                 for t in classes}
    acc = sum(t == p for t, p in pairs) / len(pairs)
    return {"n": len(pairs), "accuracy": acc, "war": acc,
            "uar": float(np.mean([c["recall"] for c in per_class.values()])),
            "per_class": per_class, "confusion": confusion}


def evaluate_clips(
    rows: Sequence[ClipRow],
    analyze_clip: Callable[[ClipRow], ClipResult],
    embed: emocue.Embed | None = None,
    extractor: Callable[[str], dict] = extract_cues,
) -> dict:
    """Run `analyze_clip` on every row with its media present; return the report (a JSON-ready dict).

    `embed` (e.g. `MiniLMEmbedder.embed`) enables EmoCue-360; `extractor` splits explanations and
    reference descriptions into cue lists.
    """
    clips, skipped, failed = [], [], []
    pred_cues, ref_cues, label_pairs, latencies, rtfs = {}, {}, [], [], []
    for row in rows:
        reason = _missing_media(row)
        if reason:
            skipped.append({"name": row.name, "reason": reason})
            continue
        t0 = time.perf_counter()
        try:
            result = analyze_clip(row)
        except Exception as e:  # one bad clip must not end the evaluation
            log.warning("clip %s failed: %s", row.name, e)
            failed.append({"name": row.name, "error": f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"})
            continue
        wall = time.perf_counter() - t0
        latency = result.latency_s if result.latency_s is not None else wall
        latencies.append(latency)
        if result.media_s:
            rtfs.append(latency / result.media_s)
        cues = result.cues if result.cues is not None else extractor(result.text or "")
        label = result.label or emotion_label(cues.get("emotional", []))
        pred_cues[row.name] = cues
        if row.description:
            ref_cues[row.name] = extractor(row.description)
        if row.label:
            label_pairs.append((row.label.lower(), label.lower() if label else None))
        clips.append({"name": row.name, "label": row.label, "predicted": label, "latency_s": latency,
                      "status": result.status, "text": result.text})
    report = {
        "n_rows": len(rows), "n_evaluated": len(clips), "n_skipped": len(skipped), "n_failed": len(failed),
        "skipped": skipped, "failed": failed,
        "emocue360": None,
        "emotion": emotion_metrics(label_pairs),
        "latency_s": _stats(latencies),
        "real_time_factor": _stats(rtfs),
        "clips": clips,
    }
    if embed is not None and ref_cues:
        scored = emocue.score({n: pred_cues[n] for n in ref_cues}, ref_cues, embed)
        report["emocue360"] = {m: scored[m] for m in emocue.MODALITIES}
    return report


def _fmt(v) -> str:
    return "-" if v is None else f"{v:.3f}" if isinstance(v, float) else str(v)


def markdown(report: dict) -> str:
    """The report as Markdown tables."""
    lines = ["# Clip evaluation\n", f"{report['n_evaluated']} clips evaluated, {report['n_skipped']} skipped "
             f"(missing media), {report['n_failed']} failed, of {report['n_rows']} rows.\n"]
    if report["emocue360"]:
        lines += ["## EmoCue-360\n", "| modality | precision | recall | F1 | n |", "|---|---|---|---|---|"]
        for m, s in report["emocue360"].items():
            lines.append(f"| {m} | {_fmt(s['precision'])} | {_fmt(s['recall'])} | {_fmt(s['f1'])} | {s['n']} |")
        lines.append("")
    emo = report["emotion"]
    lines += ["## Emotion\n", "| accuracy (WAR) | UAR | n |", "|---|---|---|",
              f"| {_fmt(emo['war'])} | {_fmt(emo['uar'])} | {emo['n']} |", ""]
    if emo["per_class"]:
        lines += ["| class | recall | n |", "|---|---|---|"]
        lines += [f"| {c} | {_fmt(v['recall'])} | {v['n']} |" for c, v in emo["per_class"].items()]
        lines.append("")
    lat, rtf = report["latency_s"], report["real_time_factor"]
    lines += ["## Latency (s)\n", "| median | p95 | mean | max | n | RTF median |", "|---|---|---|---|---|---|",
              f"| {_fmt(lat['median'])} | {_fmt(lat['p95'])} | {_fmt(lat['mean'])} | {_fmt(lat['max'])} | {lat['n']} "
              f"| {_fmt(rtf['median'])} |", ""]
    for title, key, col in (("Skipped", "skipped", "reason"), ("Failed", "failed", "error")):
        if report[key]:
            lines += [f"## {title}\n"] + [f"- {r['name']}: {r[col]}" for r in report[key]] + [""]
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
        paths.append(out_dir / "latency.png")
        fig.tight_layout()
        fig.savefig(paths[-1], dpi=100)
        plt.close(fig)
    if report["emocue360"]:
        mods = [m for m, s in report["emocue360"].items() if s["n"]]
        fig, ax = plt.subplots(figsize=(5, 3.2))
        for metric, off in (("precision", -0.25), ("recall", 0), ("f1", 0.25)):
            ax.bar(np.arange(len(mods)) + off, [report["emocue360"][m][metric] for m in mods], 0.25, label=metric)
        ax.set_xticks(range(len(mods)), mods)
        ax.set_ylim(0, 1)
        ax.legend()
        ax.set_title("EmoCue-360")
        paths.append(out_dir / "emocue360.png")
        fig.tight_layout()
        fig.savefig(paths[-1], dpi=100)
        plt.close(fig)
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
        paths.append(out_dir / "confusion.png")
        fig.tight_layout()
        fig.savefig(paths[-1], dpi=100)
        plt.close(fig)
    return paths
