"""`edge-xemo bench` on real clips: the JSON holds every figure the benchmark promises."""

import json
from fractions import Fraction

import av
import numpy as np
import pytest

from conftest import landmark_artifact, run_cli

FIGURES = ("stages", "frames_per_s", "audio_rtf", "first_token_ms", "window_to_first_token_ms",
           "decode_tokens_per_s", "explanation_cadence_s", "peak_rss_mb", "provider", "precision", "threads")


def make_clip(video, audio, out, seconds=8.0):
    """A project-made clip: the demo video's first seconds with real speech muxed in (PCM, 44.1 kHz stereo)."""
    with av.open(str(audio)) as ain:
        x = np.concatenate([f.to_ndarray().reshape(-1) for f in ain.decode(audio=0)])
    x = x[int(6 * 16000): int((6 + seconds) * 16000)].astype(np.float32) / 32768  # the speech starts at 6 s
    x = np.interp(np.arange(0, len(x), 16000 / 44100), np.arange(len(x)), x).astype(np.float32)
    pcm = (np.stack([x, x], axis=1) * 32767).astype(np.int16)
    with av.open(str(video)) as vin, av.open(str(out), "w") as dst:
        vs = dst.add_stream("mpeg4", rate=25)
        vs.width, vs.height, vs.pix_fmt = 400, 300, "yuv420p"
        as_ = dst.add_stream("pcm_s16le", rate=44100, layout="stereo")
        for i, frame in enumerate(vin.decode(video=0)):
            if frame.time >= seconds:
                break
            out_frame = av.VideoFrame.from_ndarray(frame.to_ndarray(format="rgb24"), format="rgb24")
            out_frame.pts, out_frame.time_base = i, Fraction(1, 25)
            for p in vs.encode(out_frame):
                dst.mux(p)
        for p in vs.encode(None):
            dst.mux(p)
        for i in range(0, len(pcm), 4410):
            frame = av.AudioFrame.from_ndarray(pcm[i:i + 4410].reshape(1, -1), format="s16", layout="stereo")
            frame.sample_rate, frame.pts, frame.time_base = 44100, i, Fraction(1, 44100)
            for p in as_.encode(frame):
                dst.mux(p)
        for p in as_.encode(None):
            dst.mux(p)


def check(report):
    for key in FIGURES:
        assert key in report, key
    assert report["frames_per_s"] > 0 and 0 < report["audio_rtf"] < 1
    assert report["first_token_ms"]["n"] >= 1
    # rendered cue sections (the default) generate no tokens: there is no decode rate to report
    assert report["decode_tokens_per_s"] is None and report["explanation_ms"]["n"] >= 1
    assert "decoder.judgement" in report["stages"]
    for name in ("visual.per_frame", "audio.per_block", "decoder.prefill"):
        s = report["stages"][name]
        assert s["n"] > 0 and 0 < s["median_ms"] <= s["p95_ms"]
    run = report["run"]  # what it ran with, so two reports can be compared
    assert run["stages"]["visual"]["runtime"]["threads"] == report["threads"]["perception"]
    assert run["stages"]["reasoner"]["runtime"]["threads"] == report["threads"]["decoder"]
    runtime, artifact = landmark_artifact()
    assert report["provider"]["landmarks"] == runtime
    assert {artifact, "silero_vad"} <= set(run["models"]) and len(run["models"][artifact]["sha256"]) == 64
    assert run["libraries"]["onnxruntime"] and run["libraries"]["llama-cpp-python"]


def test_bench_on_a_project_made_clip(demo_video, demo_audio, tmp_path):
    clip = tmp_path / "clip.mkv"
    make_clip(demo_video, demo_audio, clip)
    out = tmp_path / "bench.json"
    proc = run_cli("bench", clip, "--json", out, "--warmup", "1", "--provider", "cuda", "--explain")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(out.read_text())
    check(report)
    assert report["provider"]["used"] == "CPUExecutionProvider" and "fell back" in report["provider"]["note"]
    assert (tmp_path / "bench.png").stat().st_size > 1000


def test_bench_on_the_shared_sample(sample_mp4, tmp_path):
    out = tmp_path / "bench.json"
    proc = run_cli("bench", sample_mp4, "--json", out, "--warmup", "0.5", "--explain")
    assert proc.returncode == 0, proc.stderr
    check(json.loads(out.read_text()))


def test_bench_rejects_an_unknown_precision(demo_video):
    proc = run_cli("bench", demo_video, "--precision", "int4")
    assert proc.returncode != 0 and "unknown precision" in proc.stderr


def test_bench_reports_asr_time_per_window(demo_audio, tmp_path):
    pytest.importorskip("faster_whisper", reason="faster-whisper (asr extra) is not installed")
    out = tmp_path / "bench.json"
    proc = run_cli("bench", demo_audio, "--json", out, "--cues-only", "--asr", "--warmup", "0")
    assert proc.returncode == 0, proc.stderr
    asr = json.loads(out.read_text())["stages"]["audio.asr"]
    assert asr["n"] >= 10 and asr["max_ms"] > 0
