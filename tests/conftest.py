"""Shared fixtures: paths to real media (skipped with a reason when absent) and a virtual microphone."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edge_xemo.core.paths import demo_audio, demo_video

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
SAMPLE_MP4 = SHARED / "xemogpt_sample" / "sample_00000007.mp4"
SAMPLE_WAV = SHARED / "xemogpt_sample" / "sample_00000007.wav"
EMER_CSV = SHARED / "emer_v2" / "emer_v2_dev.csv"
DEMO_VIDEO = demo_video()
DEMO_AUDIO = demo_audio()
CLI = [sys.executable, "-m", "edge_xemo"]


def need(path: Path, why: str) -> Path:
    if not path.exists():
        pytest.skip(f"{path} is absent ({why})")
    return path


@pytest.fixture
def sample_mp4() -> Path:
    return need(SAMPLE_MP4, "../shared/data is only on the project's machines")


@pytest.fixture
def sample_wav() -> Path:
    return need(SAMPLE_WAV, "../shared/data is only on the project's machines")


@pytest.fixture
def demo_video() -> Path:
    return need(DEMO_VIDEO, "demo media comes from scripts/install.sh")


@pytest.fixture
def demo_audio() -> Path:
    return need(DEMO_AUDIO, "demo media comes from scripts/install.sh")


def first_frames(video: Path, out: Path, n: int) -> Path:
    """The first `n` frames of `video` as a 25 frames/s 400x300 mp4: a 'camera' (OpenCV on a file) that runs dry."""
    import cv2

    cap = cv2.VideoCapture(str(video))
    writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"mp4v"), 25, (400, 300))
    for _ in range(n):
        writer.write(cv2.resize(cap.read()[1], (400, 300)))
    writer.release()
    return out


def landmark_artifact() -> tuple[str, str]:
    """(runtime, manifest artifact) that the auto landmark runtime uses on a CPU: LiteRT on Face Landmarker's
    .tflite when the litert extra is installed, else OpenCV on the ONNX."""
    from edge_xemo.core.models import litert_installed

    return ("litert", "face_landmarks478_tflite") if litert_installed() else ("opencv", "face_landmarks478")


def run_cli(*args: str, timeout: float = 300, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(CLI + [str(a) for a in args], capture_output=True, text=True, timeout=timeout, cwd=REPO, **kw)


@pytest.fixture(scope="session")
def virtual_microphone():
    """A PulseAudio null sink whose monitor is the default capture device; yields the sink name.

    Audio played into the sink (`paplay --device=SINK file.wav`) is captured, paced in real
    time, through PortAudio's ALSA `pulse` device.
    """
    if not shutil.which("pulseaudio") or not shutil.which("pactl"):
        pytest.skip("pulseaudio is not installed (scripts/install.sh installs it)")
    if subprocess.run(["pulseaudio", "--check"]).returncode != 0:
        subprocess.run(["pulseaudio", "-D", "--exit-idle-time=-1"], capture_output=True)
        for _ in range(50):
            if subprocess.run(["pulseaudio", "--check"]).returncode == 0:
                break
            time.sleep(0.1)
    sink = "edge_xemo_test"
    sinks = subprocess.run(["pactl", "list", "short", "sinks"], capture_output=True, text=True).stdout
    if sink not in sinks:
        subprocess.run(["pactl", "load-module", "module-null-sink", f"sink_name={sink}"], check=True, capture_output=True)
    subprocess.run(["pactl", "set-default-sink", sink], check=True)
    subprocess.run(["pactl", "set-default-source", f"{sink}.monitor"], check=True)
    yield sink
