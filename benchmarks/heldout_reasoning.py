"""Held-out reasoning: base decoder vs base + LoRA adapter vs merged + re-quantized, on EMER rows 200-249.

    python benchmarks/heldout_reasoning.py                       # all variants, all 50 held-out rows
    python benchmarks/heldout_reasoning.py --variants=base,adapter --limit=10 --threads=2
    python benchmarks/heldout_reasoning.py --sidecar=1   # also record the numbers in decoder_lora.json

Each held-out description is split (edge_xemo.eval.cue_extract) into its visual / vocal cues and subtitle;
the runtime decoder (edge_xemo.reasoning.decoder.CueDecoder, greedy, its default options) explains them.
Reported per variant:
- emotion agreement: the decoder's label == the label of the description's own conclusion;
- well-formed: explanations without problems (sections, label, no loops);
- EmoCue-360 (edge_xemo.eval.emocue with all-MiniLM-L6-v2) of the explanation's cue lists (+ label as the
  emotional list) against the description's full cue lists, when the MiniLM artifact is installed;
- tokens generated and median latency.
Variants measured by separate runs (same rows) are merged in the sidecar. Baselines in every run: "echo" (the input cues themselves + the training set's most frequent
label: what copying alone scores) and the majority-label agreement.
The merged variants are built from the adapter (export.decoder_export.build_merged) into
--merged-dir when missing. Torch-free. Writes a JSON report (--out).
"""

from __future__ import annotations

import collections
import json
import logging
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from edge_xemo.eval.cue_extract import extract_cues  # noqa: E402
from edge_xemo.core.models import RuntimeOptions  # noqa: E402
from edge_xemo.reasoning.decoder import CueDecoder, DecoderOptions  # noqa: E402
from train.config import skip_stage  # noqa: E402
from train.decoder_data import load_examples  # noqa: E402

log = logging.getLogger("edge_xemo")
VARIANTS = ("base", "adapter", "merged_q8_0", "merged_q4_k_m")
ADAPTER = REPO / "edge_xemo" / "models" / "decoder_lora.gguf"


def decoder_options(variant: str, threads: int, merged_dir: Path) -> DecoderOptions:
    """Options of one compared decoder; merged files are built on first use."""
    if variant == "base":
        return DecoderOptions(runtime=RuntimeOptions(threads), lora_artifact=None)
    if not ADAPTER.exists():
        raise FileNotFoundError(f"LoRA adapter {ADAPTER} not found (python -m export.decoder_export CKPT)")
    if variant == "adapter":
        return DecoderOptions(runtime=RuntimeOptions(threads), lora_path=str(ADAPTER), lora_artifact=None)
    quant = {"merged_q8_0": "Q8_0", "merged_q4_k_m": "Q4_K_M"}[variant]
    path = merged_dir / f"decoder-merged.{quant}.gguf"
    if not path.exists():
        from export.decoder_export import build_merged

        build_merged(ADAPTER, merged_dir)
    return DecoderOptions(model_path=str(path), n_threads=threads, lora_artifact=None)


def run_variant(variant: str, examples, threads: int, merged_dir: Path) -> list[dict]:
    rows = []
    with CueDecoder(decoder_options(variant, threads, merged_dir)) as dec:
        for ex in examples:
            t = time.perf_counter()
            e = dec.explain_cues(list(ex.visual), list(ex.auditory), ex.subtitle)
            rows.append({"name": ex.name, "ref_label": ex.label, "label": e.label, "valid": e.valid,
                         "problem": e.problem, "text": e.text, "n_tokens": e.n_tokens,
                         "seconds": time.perf_counter() - t,
                         "cues": {"visual": list(e.visual_cues), "auditory": list(e.auditory_cues),
                                  "emotional": [e.label] if e.label else []}})
            log.info("%s %s: ref %s, got %s%s", variant, ex.name, ex.label, e.label,
                     "" if e.valid else f" ({e.problem})")
    return rows


def emocue_scorer():
    """EmoCue-360 scoring function, or None (with the reason logged) when MiniLM is not installed."""
    try:
        from edge_xemo.eval import emocue
        from edge_xemo.reasoning.embeddings import MiniLMEmbedder

        embedder = MiniLMEmbedder.create_from_options()
    except Exception as e:  # missing artifact or module: report without EmoCue-360
        log.warning("EmoCue-360 skipped: %s", e)
        return None
    return lambda pred, ref: emocue.score(pred, ref, embedder.embed)


def summarize(rows: list[dict], refs: dict, scorer) -> dict:
    out = {
        "n": len(rows),
        "emotion_agreement": sum(r["label"] == r["ref_label"] for r in rows) / max(1, len(rows)),
        "well_formed": sum(bool(r["valid"]) and not r["problem"] for r in rows) / max(1, len(rows)),
        "labels": dict(collections.Counter(r["label"] for r in rows)),
        "mean_tokens": statistics.fmean(r["n_tokens"] for r in rows) if rows else 0.0,
        "median_seconds": statistics.median(r["seconds"] for r in rows) if rows else 0.0,
    }
    if scorer is not None:
        s = scorer({r["name"]: r["cues"] for r in rows}, refs)
        out["emocue360_f1"] = {m: s[m]["f1"] for m in ("visual", "auditory", "emotional")}
    return out


def write_sidecar_metrics(report: dict) -> None:
    """Record the summary under `metrics.heldout_reasoning` of the adapter's sidecar (same adapter only)."""
    from edge_xemo.core.models import sha256_of

    sidecar = ADAPTER.with_suffix(".json")
    entry = json.loads(sidecar.read_text())
    if entry.get("sha256") != sha256_of(ADAPTER):
        raise SystemExit(f"{sidecar} describes another adapter file: re-export before recording metrics")
    rows = f"{report['rows'][0]}-{report['rows'][-1]} ({len(report['rows'])} rows)"
    old = entry.setdefault("metrics", {}).get("heldout_reasoning", {})
    variants = old.get("variants", {}) if old.get("rows") == rows else {}
    for name, summary in report["variants"].items():  # variants may be measured by separate runs
        variants[name] = {**summary, "command": report["command"]}
    entry["metrics"]["heldout_reasoning"] = {
        "rows": rows, "majority_label": report["majority_label"], "baselines": report["baselines"],
        "variants": variants,
    }
    sidecar.write_text(json.dumps(entry, indent=2) + "\n")


def main(argv: list[str]) -> dict:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    opts = {"variants": ",".join(VARIANTS), "limit": "0", "threads": "2", "sidecar": "0",
            "out": str(REPO / "runs" / "heldout_reasoning.json"), "merged_dir": str(REPO / "runs" / "merged")}
    for arg in argv:
        key, _, val = arg.lstrip("-").partition("=")
        key = key.replace("-", "_")
        if key not in opts or not val:
            raise SystemExit(f"usage: --{'=.. --'.join(opts)}=..  (got {arg!r})")
        opts[key] = val
    variants = opts["variants"].split(",")
    for v in variants:
        if v not in VARIANTS:
            raise SystemExit(f"unknown variant {v!r}; choose from {', '.join(VARIANTS)}")
    try:
        held = load_examples("heldout")
        train = load_examples("train")
    except FileNotFoundError as e:
        skip_stage(str(e))  # exit 75: train.rebuild records the stage as skipped
    if int(opts["limit"]):
        held = held[: int(opts["limit"])]
    majority = collections.Counter(e.label for e in train).most_common(1)[0][0]
    refs = {e.name: {k: v for k, v in extract_cues(e.description).items() if k != "subtitle"} for e in held}
    scorer = emocue_scorer()
    report = {"rows": [e.row for e in held], "majority_label": majority, "command": " ".join(["python", "benchmarks/heldout_reasoning.py", *sys.argv[1:]]),  # no local path
              "baselines": {}, "variants": {}, "outputs": {}}
    echo = [{"name": e.name, "ref_label": e.label, "label": majority, "valid": True, "problem": None,
             "n_tokens": 0, "seconds": 0.0,
             "cues": {"visual": list(e.visual), "auditory": list(e.auditory), "emotional": [majority]}}
            for e in held]
    report["baselines"]["echo_inputs_majority_label"] = summarize(echo, refs, scorer)
    for v in variants:
        rows = run_variant(v, held, int(opts["threads"]), Path(opts["merged_dir"]))
        report["variants"][v] = summarize(rows, refs, scorer)
        report["outputs"][v] = [{k: r[k] for k in ("name", "ref_label", "label", "text", "problem")} for r in rows]
        log.info("%s: %s", v, json.dumps(report["variants"][v]))
    out = Path(opts["out"])
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1))
    if opts["sidecar"] == "1":
        write_sidecar_metrics(report)
    for name, s in {**report["baselines"], **report["variants"]}.items():
        f1 = s.get("emocue360_f1") or {}
        log.info("%-28s agree %.3f  well-formed %.3f  F1 v/a/e %s  tokens %.0f  median %.2f s", name,
                 s["emotion_agreement"], s["well_formed"],
                 "/".join(f"{f1[m]:.3f}" if f1.get(m) is not None else "-" for m in ("visual", "auditory", "emotional")),
                 s["mean_tokens"], s["median_seconds"])
    return report


if __name__ == "__main__":
    main(sys.argv[1:])
