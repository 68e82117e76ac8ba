"""Cost per extra face: the demo clip's talking man once, twice and three times side by side (the same 30 s, one
tracked face each), replayed at its real pace through the whole analyzer (`edge-xemo bench --live`, no sound).

    python benchmarks/faces_cost.py        # about 2 min; writes runs/faces_cost/report.json, prints the table

Per clip: faces tracked per frame (median), the visual path's ms per frame (median, p95; detection, landmarks,
blendshapes, cues and the expression encoder at 8 Hz per face), the frames per second perception held, and the
whole process's CPU seconds per second of media.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from edge_xemo.bench import BenchOptions, run_bench  # noqa: E402
from edge_xemo.core.paths import home  # noqa: E402
from edge_xemo.eval.side_by_side import side_by_side  # noqa: E402

RUNS = REPO / "runs" / "faces_cost"


def main() -> int:
    RUNS.mkdir(parents=True, exist_ok=True)
    clip = home() / "demo" / "cap13_edit2.mp4"
    rows = {}
    for n in (1, 2, 3):
        video, _ = side_by_side([clip] * n, RUNS / f"faces_{n}.mp4")
        report = run_bench(BenchOptions(str(video), live=True, warmup_s=2.0))
        frame = report["stages"]["visual.per_frame"]
        held = report["live"]["frames_per_s"]["min"]  # the slowest second after the warm-up
        rows[n] = {"frame_size": video.name, "per_frame_ms_median": round(frame["median_ms"], 2),
                   "per_frame_ms_p95": round(frame["p95_ms"], 2), "cpu_per_media_s": round(report["cpu_per_media_s"], 3),
                   "frames_per_s": report["frames_per_s"], "perception_fps": held, "explanations": report["explanations"]}
    (RUNS / "report.json").write_text(json.dumps(rows, indent=1))
    print("| faces | visual ms per frame, median [p95] | x one face | perception frames/s, slowest second | "
          "CPU s per s of media |")
    print("| --- | --- | --- | --- | --- |")
    for n, r in rows.items():
        print(f"| {n} | {r['per_frame_ms_median']} [{r['per_frame_ms_p95']}] | "
              f"{r['per_frame_ms_median'] / rows[1]['per_frame_ms_median']:.2f} | {r['perception_fps']} | "
              f"{r['cpu_per_media_s']} |")
    print(json.dumps(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
