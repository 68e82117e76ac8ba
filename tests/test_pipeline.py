"""Training/export pipeline: dataset adapters, configs, feature cache, engine (resume, corrupt
checkpoints, two-process DDP vs one process), staged ONNX export, GGUF quantize, rebuild, model card."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import wave
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from edge_xemo.eval.datasets import DatasetError, load_clips, load_emer_csv, load_label_folders, load_manifest  # noqa: E402
from train.config import load_config  # noqa: E402

RESUME_TOL = 1e-6
"""Resumed vs straight run: same rows, same RNG streams, same float ops -> equal up to rounding."""
DDP_TOL = 1e-5
"""Two gloo ranks vs one process: gradients are averaged in another order -> float rounding only."""


# ----------------------------------------------------------------------------- real media made here
def write_mp4(path: Path, frames: int = 5) -> Path:
    import cv2

    path.parent.mkdir(parents=True, exist_ok=True)
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 25, (64, 48))
    for i in range(frames):
        w.write(np.full((48, 64, 3), 20 * i, np.uint8))
    w.release()
    return path


def write_wav(path: Path, seconds: float = 0.2) -> Path:
    t = np.arange(int(16000 * seconds)) / 16000
    with wave.open(str(path), "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(16000)
        f.writeframes((3000 * np.sin(2 * np.pi * 220 * t)).astype(np.int16).tobytes())
    return path


@pytest.fixture
def media(tmp_path):
    write_mp4(tmp_path / "clips" / "a.mp4")
    write_mp4(tmp_path / "clips" / "b.mp4")
    write_wav(tmp_path / "clips" / "a.wav")
    (tmp_path / "clips" / "empty.mp4").write_bytes(b"")
    return tmp_path


# ----------------------------------------------------------------------------- dataset adapters
def test_csv_manifest_reports_and_skips_bad_rows(media):
    m = media / "manifest.csv"
    m.write_text(
        "video,audio,subtitle,description,label\n"
        "clips/a.mp4,clips/a.wav,\"Hello, there\",smiles broadly,happy\n"
        "clips/missing.mp4,,,frowns,sad\n"  # missing video
        "clips/b.mp4,clips/nope.wav,,,neutral\n"  # missing audio
        "clips/b.mp4,,too,many,fields,here\n"  # malformed
        ",,,no media at all,sad\n"  # malformed: no media value
        "clips/empty.mp4,,,,sad\n"  # empty file
        "clips/b.mp4,,,calm face,neutral\n"
    )
    s = load_manifest(m)
    assert [c.name for c in s.clips] == ["a", "b"]
    a = s.clips[0]
    assert a.video == media / "clips" / "a.mp4" and a.audio == media / "clips" / "a.wav"
    assert (a.subtitle, a.description, a.label, a.line) == ("Hello, there", "smiles broadly", "happy", 2)
    r = s.report
    assert (r.rows, r.kept) == (7, 2)
    assert r.skipped == {"missing video": 1, "missing audio": 1, "malformed": 2, "empty video": 1}
    assert r.examples[0].startswith("line 3: video") and "missing.mp4 missing" in r.examples[0]
    assert sum(r.skipped.values()) + r.kept == r.rows  # nothing silently dropped


def test_jsonl_manifest_with_labels_filter(media):
    m = media / "m.jsonl"
    m.write_text("\n".join([
        json.dumps({"clip": "clips/a.mp4", "label": "happy", "name": "one"}),
        "{not json",
        json.dumps(["a", "list"]),
        json.dumps({"clip": "clips/b.mp4", "label": "elated"}),
        json.dumps({"audio": "clips/a.wav", "label": "sad"}),
        json.dumps({"clip": "clips/b.mp4", "label": "sad", "name": "one"}),
    ]) + "\n")
    s = load_clips(m, labels={"happy", "sad"})
    assert [(c.name, c.label, c.video is None) for c in s.clips] == [("one", "happy", False), ("a", "sad", True)]
    assert s.report.skipped == {"malformed": 2, "unknown label": 1, "duplicate name": 1}


def test_emer_csv_with_and_without_media(media):
    csv_path = media / "emer.csv"
    csv_path.write_text("name,english\n"
                        "a,\"In the video, the woman smiles. In the audio, her tone is bright.\"\n"
                        "b,\n"
                        "a,duplicate row\n"
                        "c,In the video a man frowns.\n")
    text_only = load_clips(csv_path)  # dispatches on the name,english header
    assert [c.name for c in text_only.clips] == ["a", "c"] and text_only.report.layout == "emer"
    assert text_only.report.skipped == {"malformed": 1, "duplicate name": 1}
    with_media = load_emer_csv(csv_path, media_dir=media / "clips")
    assert [c.name for c in with_media.clips] == ["a"] and with_media.clips[0].video.suffix == ".mp4"
    assert with_media.report.skipped["missing video"] == 1


def test_label_folders(tmp_path):
    root = tmp_path / "dfew"
    write_mp4(root / "happy" / "001.mp4")
    write_mp4(root / "sad" / "002.mp4")
    write_wav(root / "sad" / "003.wav")
    (root / "sad" / "004.mp4").write_bytes(b"")
    (root / "sad" / "notes.txt").write_text("x")
    write_mp4(root / "stray.mp4")
    s = load_label_folders(root)
    assert [(c.name, c.label) for c in s.clips] == [("happy/001", "happy"), ("sad/002", "sad"), ("sad/003", "sad")]
    assert s.report.skipped == {"empty video": 1, "not media": 1, "not in a label folder": 1}


def test_zero_usable_rows_is_an_error_naming_the_file(media):
    m = media / "broken.csv"
    m.write_text("video,label\nclips/gone.mp4,happy\nclips/gone2.mp4,sad\n")
    with pytest.raises(DatasetError, match=r"no usable rows in .*broken\.csv.*2 missing video"):
        load_manifest(m)
    with pytest.raises(DatasetError, match="does not exist"):
        load_clips(media / "absent.jsonl")


def test_config_file_and_overrides(tmp_path):
    from train.rebuild import RebuildConfig

    f = tmp_path / "r.toml"
    f.write_text('keep_going = true\nstages = ["verify"]\n[args]\n"export.aecb" = ["--ckpt", "x.pt"]\n')
    cfg = load_config(RebuildConfig, f, ["smoke=true", "stages=verify,model_card"])
    assert cfg.keep_going and cfg.smoke and cfg.stages == ["verify", "model_card"]
    assert cfg.args == {"export.aecb": ["--ckpt", "x.pt"]}
    with pytest.raises(ValueError, match="unknown config key 'smok'"):
        load_config(RebuildConfig, None, ["smok=1"])
    with pytest.raises(ValueError, match="keep_going.*true/false"):
        load_config(RebuildConfig, None, ["keep_going=maybe"])


@dataclass
class Fit:
    lr: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.999)


@dataclass
class StageCfg:  # configs live at module level: their annotations are resolved from the module
    fit: Fit = field(default_factory=Fit)
    d: int = 128


def test_nested_stage_config(tmp_path):
    f = tmp_path / "s.json"
    f.write_text(json.dumps({"d": 256, "fit": {"betas": [0.8, 0.95]}}))
    cfg = load_config(StageCfg, f, ["fit.lr=3e-4"])
    assert (cfg.d, cfg.fit.lr, cfg.fit.betas) == (256, 3e-4, (0.8, 0.95))
    with pytest.raises(ValueError, match="'fit.lrr'.*Fit has: betas, lr"):
        load_config(StageCfg, None, ["fit.lrr=1"])
    with pytest.raises(ValueError, match="'d' wants int"):
        load_config(StageCfg, None, ["d=wide"])


# ----------------------------------------------------------------------------- feature cache
def test_feature_cache_hits_invalidates_and_recovers(tmp_path):
    from train.features import FeatureCache

    clip = write_mp4(tmp_path / "clip.mp4")
    enc = REPO / "edge_xemo" / "models" / "face_landmarks478.onnx"
    cache, calls = FeatureCache(tmp_path / "cache"), []

    def compute():
        calls.append(1)
        return {"tokens": np.arange(6, dtype=np.float32).reshape(2, 3) + len(calls)}

    first = cache.for_clip(clip, enc, compute, fps=8)
    again = cache.for_clip(clip, enc, compute, fps=8)
    assert len(calls) == 1 and np.array_equal(first["tokens"], again["tokens"]) and cache.hits == 1
    cache.for_clip(clip, enc, compute, fps=4)  # other settings -> other entry
    assert len(calls) == 2
    write_mp4(clip, frames=7)  # the clip changed (size) -> recomputed
    cache.for_clip(clip, enc, compute, fps=8)
    assert len(calls) == 3
    entry = cache.path_for({"clip": "x"})
    cache.cached({"clip": "x"}, compute)
    entry.write_bytes(b"PK\x03\x04 truncated")  # damaged entry: logged and recomputed, not a crash
    assert cache.cached({"clip": "x"}, compute)["tokens"].shape == (2, 3) and len(calls) == 5
    assert not list((tmp_path / "cache").rglob("*.tmp"))


# ----------------------------------------------------------------------------- engine
try:
    import torch
except ImportError:  # the runtime venv may lack torch; the training/export tests need it
    torch = None
needs_torch = pytest.mark.skipif(torch is None, reason="training/export tests need torch (pip install torch==2.13.0)")

DDP_SCRIPT = '''
import json, sys, torch
sys.path.insert(0, sys.argv[3])
from train.engine import FitConfig, fit, load_config, teardown, unwrap

class CueBridge(torch.nn.Module):
    """A 1-layer transformer over 6 frame tokens + a 4-way head: a VECB-sized toy."""
    def __init__(self):
        super().__init__()
        self.inp = torch.nn.Linear(8, 16)
        # bias=False: the attention KEY bias has an exactly-zero true gradient (softmax ignores a
        # per-query constant), so Adam turns its float-rounding noise into lr-sized steps that differ
        # between any two summation orders (measured: 1e-3 after 5 steps; every other weight < 2e-7)
        self.layer = torch.nn.TransformerEncoderLayer(16, 2, 32, dropout=0.0, batch_first=True, bias=False)
        self.head = torch.nn.Linear(16, 4)
    def forward(self, x):  # (B, 6, 8) -> (B, 4)
        return self.head(self.layer(self.inp(x)).mean(1))

g = torch.Generator().manual_seed(0)
x = torch.randn(96, 6, 8, generator=g)
y = (x.mean((1, 2)) > 0).long() + 2 * (x[:, 0, 0] > 0).long()
data = torch.utils.data.TensorDataset(x, y)

def loss_fn(model, batch):
    logits = model(batch[0])
    ce = torch.nn.functional.cross_entropy(logits, batch[1])
    reg = 1e-3 * logits.pow(2).mean()
    return {"loss": ce + reg, "ce": ce, "reg": reg}

torch.manual_seed(1)
model = CueBridge()
cfg = load_config(FitConfig, None, ["out_dir=" + sys.argv[1], "steps=5", "batch_size=16", "lr=0.01",
                                    "warmup_steps=2", "threads=1", "log_every=100", "grad_accum=" + sys.argv[4]])
res = fit(model, loss_fn, data, cfg, stage="ddp_test")
if res.checkpoint is not None:
    torch.save({k: v.detach().cpu() for k, v in unwrap(model).state_dict().items()}, sys.argv[2])
teardown()
'''


def _toy(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(64, 8, generator=g)
    y = torch.stack([x[:, :4].sum(1), x[:, 4:].prod(1)], 1)
    model = torch.nn.Sequential(torch.nn.Linear(8, 32), torch.nn.Tanh(), torch.nn.Dropout(0.2), torch.nn.Linear(32, 2))
    return model, torch.utils.data.TensorDataset(x, y)


def _loss(model, batch):
    err = model(batch[0]) - batch[1]
    return {"loss": err.pow(2).mean(), "mae": err.abs().mean()}


@needs_torch
def test_resume_equals_straight_run_and_logs_every_step(tmp_path):
    from train.engine import FitConfig, fit

    base = dict(batch_size=16, lr=0.02, warmup_steps=1, threads=1, log_every=100)
    torch.manual_seed(3)
    straight_model, data = _toy()
    init = {k: v.clone() for k, v in straight_model.state_dict().items()}
    fit(straight_model, _loss, data, FitConfig(out_dir=str(tmp_path / "straight"), steps=6, **base))

    resumed_model, _ = _toy()
    resumed_model.load_state_dict(init)
    first = fit(resumed_model, _loss, data, FitConfig(out_dir=str(tmp_path / "resumed"), steps=6, stop_at=3, **base))
    assert first.step == 3
    fresh, _ = _toy()  # a new process would build the model from scratch: the checkpoint restores it
    res = fit(fresh, _loss, data, FitConfig(out_dir=str(tmp_path / "resumed"), steps=6, **base))
    assert res.step == 6
    for k, v in straight_model.state_dict().items():
        assert torch.allclose(v, fresh.state_dict()[k], atol=RESUME_TOL), k
    rows = [json.loads(line) for line in res.log_path.read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5, 6]
    assert all({"loss", "mae", "lr"} <= set(r) for r in rows)
    straight_rows = [json.loads(x) for x in (tmp_path / "straight" / "stage_loss.jsonl").read_text().splitlines()]
    assert np.allclose([r["loss"] for r in rows], [r["loss"] for r in straight_rows], atol=RESUME_TOL)


@needs_torch
def test_corrupt_checkpoint_is_a_clear_error(tmp_path):
    from train.engine import CheckpointError, FitConfig, fit, load_checkpoint

    model, data = _toy()
    out = tmp_path / "run"
    fit(model, _loss, data, FitConfig(out_dir=str(out), steps=1, batch_size=16, threads=1))
    ckpt = out / "ckpt.pt"
    ckpt.write_bytes(ckpt.read_bytes()[: ckpt.stat().st_size // 2])  # truncated, as by a full disk
    with pytest.raises(CheckpointError, match=f"checkpoint {ckpt} is corrupt"):
        fit(model, _loss, data, FitConfig(out_dir=str(out), steps=2, batch_size=16, threads=1))
    wider = torch.nn.Sequential(torch.nn.Linear(8, 64), torch.nn.Tanh(), torch.nn.Dropout(0.2), torch.nn.Linear(64, 2))
    fit(model, _loss, data, FitConfig(out_dir=str(tmp_path / "ok"), steps=1, batch_size=16, threads=1))
    with pytest.raises(CheckpointError, match="does not fit this model"):
        fit(wider, _loss, data, FitConfig(out_dir=str(tmp_path / "ok"), steps=2, batch_size=16, threads=1))
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(2)}, other)
    with pytest.raises(CheckpointError, match=f"checkpoint {other} lacks"):
        load_checkpoint(other)


@needs_torch
@pytest.mark.slow
def test_two_process_ddp_matches_one_process(tmp_path):
    """torchrun, 2 gloo ranks x 2 accumulation micro-steps x 4 rows vs 1 process x 16 rows: the same
    rows per optimizer step -> the same parameters."""
    script = tmp_path / "ddp_stage.py"
    script.write_text(DDP_SCRIPT)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    for attempt in range(2):
        out = tmp_path / f"two{attempt}"
        two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                              str(script), str(out), str(tmp_path / "two.pt"), str(REPO), "2"],
                             capture_output=True, text=True, env=env, timeout=300)
        # gloo has aborted a rank (SIGABRT) while the ranks left the group, twice in full runs on 2 cores, never
        # alone (engine.teardown's barrier made it rarer): that one failure is retried once, in a fresh folder
        if two.returncode == 0 or "SIGABRT" not in two.stderr:
            break
    assert two.returncode == 0, two.stderr[-2000:]
    one = subprocess.run([sys.executable, str(script), str(tmp_path / "one"), str(tmp_path / "one.pt"), str(REPO), "1"],
                         capture_output=True, text=True, env=env, timeout=300)
    assert one.returncode == 0, one.stderr[-2000:]
    a, b = torch.load(tmp_path / "two.pt"), torch.load(tmp_path / "one.pt")
    worst = max(float((a[k] - b[k]).abs().max()) for k in a)
    assert worst <= DDP_TOL, f"DDP and single-process parameters differ by {worst}"
    log_two = [json.loads(x) for x in (out / "ddp_test_loss.jsonl").read_text().splitlines()]
    log_one = [json.loads(x) for x in (tmp_path / "one" / "ddp_test_loss.jsonl").read_text().splitlines()]
    assert len(log_two) == len(log_one) == 5  # master only: one line per step, not one per rank
    assert np.allclose([r["ce"] for r in log_two], [r["ce"] for r in log_one], atol=DDP_TOL)
    assert log_one[0]["ce"] != pytest.approx(log_one[-1]["ce"])  # it trained


# ----------------------------------------------------------------------------- export
def _head():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(32, 64), torch.nn.GELU(), torch.nn.Linear(64, 10), torch.nn.Softmax(-1))


@needs_torch
def test_export_fp32_fp16_and_sidecar(tmp_path):
    from export.onnx_tools import FP16_TOL, FP32_TOL, export_fp32, to_fp16, write_sidecar

    model, x = _head(), torch.randn(3, 32)
    feeds = [{"x": np.random.default_rng(i).standard_normal((2 + i, 32)).astype(np.float32)} for i in range(3)]
    p = export_fp32(model, {"x": x}, tmp_path / "head.onnx", ["probs"], dynamic_axes={"x": {0: "batch"}},
                    check_feeds=feeds)
    assert p.ok and p.max_abs_diff["probs"] <= FP32_TOL and p.n_inputs == 3
    p16 = to_fp16(tmp_path / "head.onnx", tmp_path / "head_fp16.onnx", check_feeds=feeds)
    assert 0 < p16.max_abs_diff["probs"] <= FP16_TOL
    side = json.loads(write_sidecar(tmp_path / "head.onnx", source={"command": "pytest"}, licence="Apache-2.0",
                                    trained_on="random init", how="test", metrics={"parity": p.as_dict()}).read_text())
    assert side["inputs"] == [{"name": "x", "shape": ["batch", 32], "dtype": "float32"}]
    assert side["outputs"][0]["name"] == "probs" and len(side["sha256"]) == 64
    assert sorted(f.name for f in tmp_path.iterdir()) == ["head.json", "head.onnx", "head_fp16.onnx"]


@needs_torch
def test_failing_parity_leaves_nothing_behind(tmp_path):
    from export.onnx_tools import ParityError, export_fp32, quantize_int8

    model = _head()
    export_fp32(model, {"x": torch.randn(2, 32)}, tmp_path / "head.onnx", ["probs"])
    shipped = tmp_path / "head_int8.onnx"
    shipped.write_bytes(b"previous artifact")
    feeds = [{"x": np.random.default_rng(0).standard_normal((2, 32)).astype(np.float32)}]
    with pytest.raises(ParityError, match="fails on check input 0"):  # wrong batch for a fixed-shape graph
        quantize_int8(tmp_path / "head.onnx", shipped, check_feeds=[{"x": np.zeros((4, 32), np.float32)}],
                      expected=[{"probs": np.zeros((4, 10))}])
    with pytest.raises(ParityError, match=r"head_int8\.onnx fails parity: output 'probs' differs by .* > tolerance 1e-09"):
        quantize_int8(tmp_path / "head.onnx", shipped, check_feeds=feeds, tolerance=1e-9)
    assert shipped.read_bytes() == b"previous artifact"  # the old artifact is untouched
    with pytest.raises(ParityError, match=r"new\.onnx fails parity"):
        quantize_int8(tmp_path / "head.onnx", tmp_path / "new.onnx", check_feeds=feeds, tolerance=1e-9)
    assert sorted(f.name for f in tmp_path.iterdir()) == ["head.onnx", "head_int8.onnx"]  # no temp files


@needs_torch
def test_gguf_quantize_refuses_quantized_base_without_flag(tmp_path):
    from edge_xemo.core.models import ModelError, resolve
    from export.gguf_tools import QuantizeError, quantize_gguf

    pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed")
    try:
        base = resolve("decoder_smollm2").path
    except ModelError as e:
        pytest.skip(str(e))
    with pytest.raises(QuantizeError, match="allow_requantize"):
        quantize_gguf(base, tmp_path / "q8.gguf", "Q8_0")
    with pytest.raises(ValueError, match="Q4_K_M"):
        quantize_gguf(base, tmp_path / "x.gguf", "Q3")
    assert list(tmp_path.iterdir()) == []


# ----------------------------------------------------------------------------- rebuild and model card
def test_rebuild_rejects_unknown_stage_and_lists_stages():
    r = subprocess.run([sys.executable, "-m", "train.rebuild", "--only", "train.vecbb"], cwd=REPO,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    assert "unknown stage(s) 'train.vecbb'" in r.stderr and "train.vecb" in r.stderr and "export.minilm" in r.stderr


def test_rebuild_runs_stages_and_writes_summary(tmp_path):
    from train.rebuild import RebuildConfig, Stage, rebuild, run_module

    summary = rebuild(RebuildConfig(root=str(tmp_path), smoke=True, stages=["verify", "model_card"]))
    assert summary["ok"] and set(summary["stages"]) == {"verify", "model_card"}
    assert all(s["status"] == "ok" and s["seconds"] >= 0 for s in summary["stages"].values())
    assert (tmp_path / "MODEL_CARD.md").read_text().startswith("# edge-xemo model card")
    assert json.loads((tmp_path / "summary.json").read_text()) == summary
    absent = run_module(Stage("train.no_such_stage", "train", ""), RebuildConfig(), tmp_path)
    assert absent.status == "not available" and "does not exist" in absent.detail
    card = tmp_path / "card.md"  # a real module stage run as a subprocess: `--check` fails (no card) -> failed
    failed = run_module(Stage("export.model_card", "check", ""),
                        RebuildConfig(args={"export.model_card": ["--check", "--out", str(card)]}), tmp_path)
    assert failed.status == "failed" and "exit 1" in failed.detail and "out of date" in Path(failed.log).read_text()


@pytest.mark.slow
def test_smoke_rebuild_runs_every_available_stage(tmp_path):
    """`python -m train.rebuild --smoke` from the data stages on (sources need the registries): every
    stage that exists and has --smoke must pass; the others are listed, never silently dropped."""
    from train.rebuild import NAMES

    r = subprocess.run([sys.executable, "-m", "train.rebuild", "--smoke", "--keep-going", "--from", NAMES[1],
                        "--root", str(tmp_path)], cwd=REPO, capture_output=True, text=True, timeout=900)
    summary = json.loads((tmp_path / "summary.json").read_text())

    assert list(summary["stages"]) == list(NAMES[1:])
    failed = {k: v["detail"] for k, v in summary["stages"].items() if v["status"] == "failed"}
    assert not failed and r.returncode == 0, failed or r.stderr[-2000:]
    assert {v["status"] for v in summary["stages"].values()} <= {"ok", "skipped", "not available"}


def test_model_card_is_up_to_date():
    from export.model_card import CARD, render

    assert CARD.exists(), "MODEL_CARD.md is missing: run python -m export.model_card"
    assert CARD.read_text() == render(), "MODEL_CARD.md is out of date: run python -m export.model_card"


def test_manifest_compare_judges_each_kind_of_metric():
    """Rebuilt vs committed: counts exact, rates within 0.05, values within 15 % (+0.02), parity under
    its stated tolerance, timings only reported; missing metrics are flagged, never passed silently."""
    from export.manifest_compare import compare_entry

    vecb = json.loads((REPO / "edge_xemo" / "models" / "vecb.json").read_text())
    rebuilt = json.loads(json.dumps(vecb))
    m = rebuilt["metrics"]
    m["val"]["expr_top1"] -= 0.04  # rate, inside
    m["val"]["align_r1_other_cues"] -= 0.08  # rate, outside
    m["final_loss"]["val"]["recon"] *= 1.10  # value, inside
    m["final_loss"]["val"]["align"] *= 1.30  # value, outside
    m["val"]["windows"] += 1  # count, outside
    m["parity_vs_pytorch"]["fp32"]["max_abs_diff"]["tokens"] = 2e-4  # parity over its 1e-4 tolerance
    m["parity_vs_pytorch"]["fp32"]["median_ms_1_thread"] *= 5  # timing: reported
    del m["val"]["order_acc"]
    rows = {r.metric: r for r in compare_entry("vecb", vecb, rebuilt)}

    def status(path):
        return rows["metrics." + path].kind, rows["metrics." + path].status

    assert status("val.expr_top1") == ("rate", "ok")
    assert status("val.align_r1_other_cues") == ("rate", "outside")
    assert status("final_loss.val.recon") == ("value", "ok")
    assert status("final_loss.val.align") == ("value", "outside")
    assert status("val.windows") == ("count", "outside")
    assert status("parity_vs_pytorch.fp32.max_abs_diff.tokens") == ("parity", "outside")
    assert status("parity_vs_pytorch.fp32.median_ms_1_thread") == ("timing", "reported")
    assert status("val.order_acc")[1] == "not re-measured"
    assert status("final_loss.val.cue") == ("value", "ok")  # untouched


def test_sidecar_keeps_metrics_only_for_the_same_bytes(tmp_path):
    """A re-exported artifact with other bytes loses the metrics measured on the old bytes."""
    from export.onnx_tools import kept_metrics

    entry = {"sha256": "aa", "metrics": {"heldout": 0.5}}
    assert kept_metrics(entry, "aa") == {"heldout": 0.5}
    assert kept_metrics(entry, "bb") == {}
    assert kept_metrics({}, "bb") == {}
