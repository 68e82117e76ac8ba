"""Agreement of the rule-based cue extractor with the LLM extractor (SmolLM2-135M + JSON grammar).

    python benchmarks/extractor_agreement.py [--csv ../shared/data/emer_v2/emer_v2_dev.csv]
        [--limit N] [--budget-s 600] [--threads 1] [--cache /tmp/llm_cues.jsonl] [--out agreement.json]

Agreement per modality = EmoCue-360 with the rule lists as reference and the LLM lists as prediction
(per-sample F1 is symmetric); emotional-label agreement = share of rows whose two emotional lists map
to the same label (`emotion_label`). The LLM runs row by row until --limit rows or --budget-s seconds;
its answers are cached in --cache (JSONL) so a rerun continues where it stopped.

Measured 2026-11-26 on the 2-core build machine (heavily shared, load ~13), `--limit 15`, SmolLM2-135M
Q4_1, 1 thread, few-shot prompt, grammar maxItems 8: 14 of 15 rows answered (1 ran out of its 400
tokens), ~26-36 s per row. EmoCue-360 F1 rule vs LLM: visual 0.383, auditory 0.458, emotional 0.482;
emotion-label agreement 1/14. Floors on the same rows: the worked example as a constant answer
0.336 / 0.465 / 0.419, the next row's rule lists 0.416 / 0.416 / 0.480. SmolLM2-135M mostly copies the
worked example: its lists agree with the rules no better than an unrelated description does.
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

from edge_xemo.eval.cue_extract import emotion_label, extract_cues  # noqa: E402
from edge_xemo.eval.cue_llm import EXAMPLE_OUTPUT, LLMCueExtractor, LLMExtractorOptions  # noqa: E402
from edge_xemo.reasoning.embeddings import EmbedderOptions, MiniLMEmbedder  # noqa: E402
from edge_xemo.eval.emocue import MODALITIES, score  # noqa: E402


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
    # floors for reading the numbers: the prompt's worked example as a constant answer, and the rule
    # lists of the next row (an unrelated description) as the answer
    constant = score({n: EXAMPLE_OUTPUT for n in names}, {n: rule[n] for n in names}, embed)
    shifted = score({n: rule[names[(i + 1) % len(names)]] for i, n in enumerate(names)},
                    {n: rule[n] for n in names}, embed) if len(names) > 1 else None
    same_label = [emotion_label(rule[n]["emotional"]) == emotion_label(llm[n]["emotional"]) for n in names]
    both_labelled = [n for n in names if emotion_label(llm[n]["emotional"]) is not None]
    result = {
        "rows": len(rows),
        "llm_rows": len(names),
        "llm_failures": failures,
        "rule_s_per_row": rule_s / len(rows),
        "llm_s_per_row_median": sorted(times)[len(times) // 2] if times else None,
        "agreement": {m: agreement[m] for m in MODALITIES},
        "floor_constant_example_f1": {m: constant[m]["f1"] for m in MODALITIES},
        "floor_next_row_f1": {m: shifted[m]["f1"] for m in MODALITIES} if shifted else None,
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
