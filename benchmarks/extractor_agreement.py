"""Agreement of the rule-based cue extractor with the LLM extractor (SmolLM2-135M + JSON grammar).

    python benchmarks/extractor_agreement.py [--csv ../shared/data/emer_v2/emer_v2_dev.csv]
        [--limit N] [--budget-s 600] [--threads 1] [--cache /tmp/llm_cues.jsonl] [--out agreement.json]

Agreement per modality = EmoCue-360 with the rule lists as reference and the LLM lists as prediction
(per-sample F1 is symmetric); emotional-label agreement = share of rows whose two emotional lists map
to the same label (`emotion_label`). The LLM runs row by row until --limit rows or --budget-s seconds;
its answers are cached in --cache (JSONL) so a rerun continues where it stopped.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edge_xemo.cue_extract import emotion_label, extract_cues  # noqa: E402
from edge_xemo.cue_llm import LLMCueExtractor, LLMExtractorOptions  # noqa: E402
from edge_xemo.embeddings import EmbedderOptions, MiniLMEmbedder  # noqa: E402
from edge_xemo.emocue import MODALITIES, score  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--csv", type=Path, default=ROOT.parent / "shared" / "data" / "emer_v2" / "emer_v2_dev.csv")
    ap.add_argument("--limit", type=int, default=0, help="LLM rows at most (0: all)")
    ap.add_argument("--budget-s", type=float, default=600.0, help="stop starting LLM rows after this many seconds")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--gguf", type=str, default=None, help="GGUF path (default: the SmolLM2 decoder artifact)")
    ap.add_argument("--cache", type=Path, default=Path("/tmp/edge_xemo_llm_cues.jsonl"))
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    if not args.csv.exists():
        print(f"{args.csv} not found", file=sys.stderr)
        return 2
    with open(args.csv, newline="", encoding="utf-8") as f:
        rows = [(r["name"], r["english"]) for r in csv.DictReader(f)]

    t0 = time.perf_counter()
    rule = {n: extract_cues(t) for n, t in rows}
    rule_s = time.perf_counter() - t0

    llm: dict[str, dict] = {}
    if args.cache.exists():
        for line in args.cache.read_text().splitlines():
            rec = json.loads(line)
            llm[rec["name"]] = rec["cues"]
    extractor = LLMCueExtractor(LLMExtractorOptions(model_path=args.gguf, threads=args.threads))
    limit = args.limit or len(rows)
    failures, times = [], []
    start = time.perf_counter()
    with open(args.cache, "a") as cache:
        for name, text in rows[:limit]:
            if name in llm:
                continue
            if time.perf_counter() - start > args.budget_s:
                break
            t = time.perf_counter()
            try:
                cues = extractor.extract(text)
            except ValueError as e:  # invalid JSON (the answer ran out of tokens): counted, not scored
                failures.append({"name": name, "error": str(e)[:120]})
                continue
            times.append(time.perf_counter() - t)
            llm[name] = cues
            cache.write(json.dumps({"name": name, "cues": cues}) + "\n")
            cache.flush()
    names = [n for n, _ in rows[:limit] if n in llm]
    embed = MiniLMEmbedder.create_from_options(EmbedderOptions(threads=args.threads)).embed
    agreement = score({n: llm[n] for n in names}, {n: rule[n] for n in names}, embed)
    same_label = [emotion_label(rule[n]["emotional"]) == emotion_label(llm[n]["emotional"]) for n in names]
    both_labelled = [n for n in names if emotion_label(llm[n]["emotional"]) is not None]
    result = {
        "rows": len(rows),
        "llm_rows": len(names),
        "llm_failures": failures,
        "rule_s_per_row": rule_s / len(rows),
        "llm_s_per_row_median": sorted(times)[len(times) // 2] if times else None,
        "agreement": {m: agreement[m] for m in MODALITIES},
        "emotion_label_agreement": sum(same_label) / len(same_label) if same_label else None,
        "llm_rows_with_a_label": len(both_labelled),
        "mean_cues_per_row": {
            src: {m: sum(len(d[n][m]) for n in names) / max(1, len(names)) for m in MODALITIES}
            for src, d in (("rule", rule), ("llm", llm))
        },
    }
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
