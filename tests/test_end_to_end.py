"""The whole pipeline on real clips through the CLI: real faces, real speech, the real decoder."""

import json

import pytest

from conftest import run_cli
from edge_xemo.core import events as ev

POSITIVE = {"happy", "surprise"}


@pytest.fixture(scope="module")
def sample_events(tmp_path_factory):
    from conftest import SAMPLE_MP4, need

    need(SAMPLE_MP4, "../shared/data is only on the project's machines")
    out = tmp_path_factory.mktemp("e2e") / "out.jsonl"
    proc = run_cli("analyze", SAMPLE_MP4, "--jsonl", out, "--quiet", "--subtitle", "Be there or be square. Oh, okay, goodbye.")
    assert proc.returncode == 0, proc.stderr
    return [json.loads(line) for line in out.read_text().splitlines()]


def test_events_are_valid_cover_the_clip_and_never_go_backwards(sample_events):
    for d in sample_events:
        ev.validate(d)
    cues = [d for d in sample_events if d["type"] == "cues"]
    assert cues, "no cues events"
    starts = [d["t_start"] for d in cues]
    assert starts == sorted(starts)
    assert starts[0] == 0.0 and cues[-1]["t_end"] >= 4.6  # the clip is 4.64 s
    for d in cues:
        assert d["t_end"] > d["t_start"] and d["latency_ms"]


def test_explanations_cite_the_smile_and_the_voice_and_end_positive(sample_events):
    expl = [d for d in sample_events if d["type"] == "explanation"]
    assert expl, "no explanation"
    labels = [d["emotion"]["label"] for d in expl]
    assert sum(label in POSITIVE for label in labels) > len(labels) / 2, labels
    for d in expl:
        assert abs(sum(d["emotion"]["scores"].values()) - 1) < 1e-3
    assert any("smil" in d["text"].lower() or "mouth" in d["text"].lower() for d in expl)
    assert any(d["perceived"]["auditory"] for d in expl), "no vocal cue reached the decoder"


def test_demo_prints_rolling_explanations(demo_video, demo_audio, tmp_path):
    out = tmp_path / "demo.jsonl"
    proc = run_cli("demo", "--jsonl", out, timeout=600)
    assert proc.returncode == 0, proc.stderr
    events = [json.loads(line) for line in out.read_text().splitlines()]
    expl = [d for d in events if d["type"] == "explanation"]
    assert len(expl) >= 5  # a 30 s clip, one explanation every couple of seconds
    assert [d["t_end"] for d in expl] == sorted(d["t_end"] for d in expl)
    assert "In the video" in proc.stdout or "In the video" in expl[0]["text"]


def test_audio_only_file_at_44k_stereo(tmp_path, demo_audio):
    import av
    import numpy as np

    from edge_xemo.io.audio import to_mono_16k

    with av.open(str(demo_audio)) as c:
        x = np.concatenate([f.to_ndarray().reshape(-1) for f in c.decode(audio=0)]).astype(np.float32)
    x = x / (np.abs(x).max() or 1) if x.dtype != np.float32 or np.abs(x).max() > 1 else x
    y = np.repeat(np.interp(np.arange(0, len(x), 16000 / 44100), np.arange(len(x)), x)[:, None], 2, axis=1)
    path = tmp_path / "speech_44k_stereo.wav"
    with av.open(str(path), "w") as c:
        s = c.add_stream("pcm_s16le", rate=44100, layout="stereo")
        frame = av.AudioFrame.from_ndarray((y * 32767).astype(np.int16).reshape(1, -1), format="s16", layout="stereo")
        frame.sample_rate = 44100
        for p in s.encode(frame):
            c.mux(p)
    assert len(to_mono_16k(y, 44100)) == pytest.approx(len(x), abs=64)
    out = tmp_path / "a.jsonl"
    proc = run_cli("analyze", path, "--cues-only", "--quiet", "--jsonl", out)
    assert proc.returncode == 0, proc.stderr
    cues = [json.loads(l) for l in out.read_text().splitlines() if '"cues"' in l]
    assert cues and all(not d["visual_cues"] for d in cues)
    assert any(d["auditory_cues"] for d in cues)


def test_video_without_audio_track_runs_on_video_alone(demo_video, tmp_path):
    out = tmp_path / "v.jsonl"
    proc = run_cli("analyze", demo_video, "--cues-only", "--quiet", "--jsonl", out)
    assert proc.returncode == 0, proc.stderr
    assert "no audio track" in proc.stderr
    assert sum('"type": "cues"' in l for l in out.read_text().splitlines()) >= 25


def test_a_clip_with_no_face_gives_only_status_events(demo_video, tmp_path):
    """Real footage of the wall and map behind the demo's speaker (no face in it): nothing invented."""
    from fractions import Fraction

    import av
    import cv2

    clip = tmp_path / "wall.mp4"
    with av.open(str(demo_video)) as src, av.open(str(clip), "w") as dst:
        vs = dst.add_stream("mpeg4", rate=25)
        vs.width, vs.height, vs.pix_fmt = 260, 300, "yuv420p"
        for i, frame in enumerate(src.decode(video=0)):
            if i == 100:
                break
            crop = cv2.resize(frame.to_ndarray(format="rgb24")[0:150, 0:130], (260, 300))
            out = av.VideoFrame.from_ndarray(crop, format="rgb24")
            out.pts, out.time_base = i, Fraction(1, 25)
            for p in vs.encode(out):
                dst.mux(p)
        for p in vs.encode(None):
            dst.mux(p)
    out = tmp_path / "wall.jsonl"
    proc = run_cli("analyze", clip, "--quiet", "--jsonl", out)
    assert proc.returncode == 0, proc.stderr
    events = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(events) >= 3 and {d["type"] for d in events} == {"status"}
    assert {d["code"] for d in events} == {"no_face", "nothing_to_explain"}  # no evidence, no label


def test_analyze_asr_gives_the_recognized_words_as_the_subtitle(demo_audio, tmp_path):
    pytest.importorskip("faster_whisper", reason="faster-whisper (asr extra) is not installed")
    out = tmp_path / "asr.jsonl"
    proc = run_cli("analyze", demo_audio, "--asr", "--asr-language", "en", "--quiet", "--jsonl", out)
    assert proc.returncode == 0, proc.stderr
    events = [json.loads(line) for line in out.read_text().splitlines()]
    assert not [d for d in events if d["type"] == "error"], [d for d in events if d["type"] == "error"][:2]
    subtitles = [d["subtitle"] for d in events if d["type"] == "explanation" and d["subtitle"]]
    assert subtitles and all(isinstance(s, str) for s in subtitles)
    assert len(" ".join(subtitles).split()) >= 10  # real words of the conversation, not one stray token


def test_asr_needs_an_audio_input(demo_video):
    proc = run_cli("analyze", demo_video, "--asr", "--quiet", "--jsonl", "-")
    assert proc.returncode != 0 and "--asr needs an audio input" in proc.stderr and "Traceback" not in proc.stderr


def test_no_explain_gives_labels_with_evidence_and_loads_no_llm(demo_video, demo_audio, tmp_path):
    """`--no-explain`: the judgement stage without the LLM narrator: every explanation has its label,
    confidence, outcome and per-source evidence; the text is the perceived cues and the judged label."""
    out = tmp_path / "judged.jsonl"
    proc = run_cli("analyze", demo_video, "--audio", demo_audio, "--no-explain", "--quiet", "--jsonl", out)
    assert proc.returncode == 0, proc.stderr
    explanations = [e for e in map(json.loads, out.read_text().splitlines()) if e["type"] == "explanation"]
    assert len(explanations) >= 10
    for e in explanations:
        emotion = e["emotion"]
        assert emotion["label"] and 0 < emotion["confidence"] <= 1 and emotion["outcome"] in (
            "confident", "weak_evidence", "sources_disagree")
        assert e["evidence"] and "decoder" not in e["evidence"] and e["n_tokens"] == 0
        assert e["text"].startswith("In the video,") and f"emotional state is {emotion['label']}" in e["text"]
        assert "prefill" not in e["latency_ms"] and "judgement" in e["latency_ms"]
    assert {"expression", "facial_actions", "voice"} <= {s for e in explanations for s in e["evidence"]}
    assert "text" not in {s for e in explanations for s in e["evidence"]}  # cue phrases are not judged twice
