"""Floors of EmoCue-360 on EMER-V2 dev: what answers that ignore the clip score against its references.

    python benchmarks/emocue_floors.py [--csv ../shared/data/emer_v2/emer_v2_dev.csv]

References are the rule-extracted cue lists of the 250 descriptions. Two floors: one constant, generic
explanation for every clip, and the next row's description (a real, unrelated explanation). A system
that reads the clip should beat both. Measured 2026-11-26 (F1 visual / auditory / emotional):
constant 0.309 / 0.449 / 0.349, next row 0.434 / 0.376 / 0.426.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edge_xemo.eval.cue_extract import extract_cues  # noqa: E402
from edge_xemo.reasoning.embeddings import MiniLMEmbedder  # noqa: E402
from edge_xemo.eval.emocue import MODALITIES, score  # noqa: E402

CONSTANT = ("In the video, the person has a neutral expression. In the audio, the voice is calm. "
            "Therefore, the emotional state is neutral.")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--csv", type=Path, default=ROOT.parent / "shared" / "data" / "emer_v2" / "emer_v2_dev.csv")
    args = ap.parse_args(argv)
    if not args.csv.exists():
        print(f"{args.csv} not found", file=sys.stderr)
        return 2
    with open(args.csv, newline="", encoding="utf-8") as f:
        ref = {r["name"]: extract_cues(r["english"]) for r in csv.DictReader(f)}
    names = list(ref)
    embed = MiniLMEmbedder.create_from_options().embed
    const = extract_cues(CONSTANT)
    floors = {
        "constant": score({n: const for n in names}, ref, embed),
        "next_row": score({n: ref[names[(i + 1) % len(names)]] for i, n in enumerate(names)}, ref, embed),
    }
    print(json.dumps({k: {m: v[m] for m in MODALITIES} for k, v in floors.items()}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
