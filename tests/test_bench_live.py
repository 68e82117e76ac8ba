"""`edge-xemo bench --live` on a paced replay: the report holds the live delays and frames/s; `analyze`
(as fast as possible) says how far behind its windows the explanations came. No timed asserts."""

import json
import math
import re

from conftest import run_cli
from test_bench import make_clip

LIVE_FIGURES = ("explanations", "close_to_first_token_ms", "close_to_end_ms", "frames_per_s", "frames_offered_per_s",
                "windows", "cancelled", "targets")


def test_bench_live_reports_each_explanation_from_its_window_close(demo_video, demo_audio, tmp_path):
    clip = tmp_path / "clip.mkv"
    make_clip(demo_video, demo_audio, clip, seconds=6.0)
    out = tmp_path / "bench.json"
    proc = run_cli("bench", clip, "--live", "--json", out, "--warmup", "1", timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "live path" in proc.stdout and "target" in proc.stdout
    report = json.loads(out.read_text())
    live = report["live"]
    for key in LIVE_FIGURES:
        assert key in live, key
    rows = live["explanations"]
    assert rows and len(rows) == report["explanations"] <= live["windows"]
    for row in rows:
        assert row["t_start"] < row["t_end"] and math.isfinite(row["to_end_ms"]) and row["to_end_ms"] >= 0
        if row["to_first_token_ms"] is not None:
            assert 0 <= row["to_first_token_ms"] <= row["to_end_ms"]
    for key in ("close_to_first_token_ms", "close_to_end_ms"):
        s = live[key]
        assert s["n"] >= 1 and 0 <= s["median_ms"] <= s["p95_ms"] <= s["max_ms"] and math.isfinite(s["max_ms"])
    fps = live["frames_per_s"]
    assert fps["n"] >= 1 and 0 <= fps["min"] <= fps["p5"] <= fps["median"] <= 25
    assert 20 <= live["frames_offered_per_s"] <= 26  # the clip is 25 frames/s
    # CPU seconds of the whole process per second of media, after loading: real work, at most the 2 cores
    assert 0.05 < report["cpu_per_media_s"] <= 2.0 and report["cpu_s"] > 0
    assert live["targets"] == {"first_token_ms": 300.0, "end_ms": 1500.0, "end_p95_ms": 2000.0, "frames_per_s": 25.0}
    assert len(report["machine"]["load_avg"]) == 3


def test_bench_live_needs_explanations(demo_video):
    proc = run_cli("bench", demo_video, "--live", "--cues-only")
    assert proc.returncode != 0 and "drop --cues-only" in proc.stderr


def test_analyze_says_how_far_behind_the_explanations_came(demo_video, demo_audio, tmp_path):
    clip, out = tmp_path / "clip.mkv", tmp_path / "events.jsonl"
    make_clip(demo_video, demo_audio, clip, seconds=6.0)
    proc = run_cli("analyze", clip, "--quiet", "--jsonl", out, timeout=120)
    assert proc.returncode == 0, proc.stderr
    n = sum(json.loads(line)["type"] == "explanation" for line in out.read_text().splitlines())
    m = re.search(r"(\d+) explanations, in window order: each came ([\d.]+) s after its window was complete "
                  r"\(median; p95 ([\d.]+) s, max ([\d.]+) s\)", proc.stderr)
    assert m and int(m[1]) == n >= 1, proc.stderr
    assert 0 <= float(m[2]) <= float(m[3]) <= float(m[4])
