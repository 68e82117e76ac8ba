"""The analyzer's plumbing (threads, windows, queues, modes, cancellation, delivery).

The perception and reasoning stages here are small fakes: this file tests the spine that carries
them, not the stages (those have their own tests on real models).
"""

import threading
import time

import numpy as np
import pytest

from edge_xemo.core import events as ev
from edge_xemo.analyzer import Analyzer, AnalyzerOptions, RunningMode
from edge_xemo.core.scheduler import ExplainPolicy, material_change
from edge_xemo.io.sources import FileSource
from edge_xemo.core.types import Cue, Explanation, FaceBox, ModalityResult, Problem, ResultCode


class FakeFace:
    """Two faces per frame; 'smile' when the frame is bright, nothing when it is black."""

    def __init__(self, delay=0.0):
        self.delay = delay

    def process_frame(self, frame):
        time.sleep(self.delay)
        return float(frame.image.mean())

    def summarize(self, obs, t0, t1):
        if not obs or max(obs) < 1:
            return ModalityResult("visual", code=ResultCode.NO_FACE)
        cues = tuple(Cue("lip_corner_pull", "corners of the mouth turned up", 0.8, "visual", face_id=i) for i in (0, 1))
        return ModalityResult("visual", cues=cues, faces=(FaceBox(0, (0, 0, 10, 10), 0.9, t0),), scores={"happy": 0.7})

    def reset(self):
        pass


class FakeVoice:
    def process_block(self, block):
        return float(np.abs(block.samples).mean())

    def summarize(self, samples, t0, obs, t_start, t_end):
        if not len(samples) or np.abs(samples).mean() < 1e-3:
            return ModalityResult("auditory", code=ResultCode.SILENCE)
        return ModalityResult("auditory", cues=(Cue("loud", "loud voice", 0.6, "auditory"),))

    def reset(self):
        pass


class FakeReasoner:
    def __init__(self, pieces=3, delay=0.0):
        self.pieces, self.delay, self.calls, self.stopped = pieces, delay, 0, 0

    def explain(self, visual, auditory, subtitle, on_token=None, should_stop=None, t=None):
        self.calls += 1
        for i in range(self.pieces):
            if should_stop and should_stop():
                self.stopped += 1
                return Explanation("", "neutral", {}, (), (), problems=(Problem.STOPPED_EARLY,))
            time.sleep(self.delay)
            if on_token:
                on_token(f"w{i} ")
        return Explanation("In the video, smiling. Therefore happy.", "happy", {"happy": 0.9, "neutral": 0.1},
                           tuple(c.phrase for c in visual.cues), tuple(c.phrase for c in auditory.cues))


def bright(h=36, w=64):
    return np.full((h, w, 3), 200, np.uint8)


def tone(n: int) -> np.ndarray:
    """A 400 Hz tone of amplitude 0.1 (a constant would be taken away as DC offset where audio enters)."""
    return (0.1 * np.sin(2 * np.pi * 400 * np.arange(n) / 16000)).astype(np.float32)


def feed(analyzer, seconds, fps=10, audio=True, frame=bright):
    for i in range(int(seconds * fps)):
        t = i / fps
        analyzer.push_frame(frame(), t)
        if audio:
            analyzer.push_audio(tone(1600 * 10 // fps), t)
    analyzer.end_input()


def test_push_api_iterator_gives_valid_ordered_events():
    a = Analyzer(AnalyzerOptions(running_mode=RunningMode.VIDEO), FakeFace(), FakeVoice(), FakeReasoner())
    with a:
        threading.Thread(target=feed, args=(a, 6.0)).start()
        events = [e.to_dict() for e in a.events()]
    for d in events:
        ev.validate(d)
    cues = [d for d in events if d["type"] == "cues"]
    # two faces -> two cues events per window; the voice cues ride on the first
    assert len(cues) == 2 * 6 and [d["face_id"] for d in cues[:2]] == [0, 1]
    assert cues[0]["auditory_cues"] and not cues[1]["auditory_cues"]
    starts = [d["t_start"] for d in cues]
    assert starts == sorted(starts) and starts[0] == 0.0
    assert all("visual_frame_mean" in d["latency_ms"] for d in cues)
    expl = [d for d in events if d["type"] == "explanation"]
    assert len(expl) == 3  # every 2 s of source time (explain_every_s) in offline mode
    assert expl[0]["emotion"]["label"] == "happy" and expl[0]["perceived"]["auditory"] == ["loud voice"]
    assert "window_to_explanation" in expl[0]["latency_ms"]
    assert [d["text"] for d in events if d["type"] == "token"][:3] == ["w0 ", "w1 ", "w2 "]


def test_no_face_and_silence_give_status_events_and_no_cues():
    a = Analyzer(AnalyzerOptions(running_mode=RunningMode.VIDEO), FakeFace(), FakeVoice(), FakeReasoner())
    with a:
        threading.Thread(target=lambda: (feed(a, 3.0, audio=False, frame=lambda: np.zeros((8, 8, 3), np.uint8)))).start()
        events = list(a.events())
    assert events and {e.type for e in events} == {"status"}
    assert {e.data["code"] for e in events} == {"no_face", "silence", "nothing_to_explain"}  # no evidence, no label
    assert not [e for e in events if e.type == "explanation"]


def test_callback_mode_delivers_on_its_own_thread_and_survives_a_raising_callback():
    got, threads = [], set()

    def cb(event):
        threads.add(threading.current_thread().name)
        got.append(event)
        raise RuntimeError("a buggy user callback")

    a = Analyzer(AnalyzerOptions(running_mode=RunningMode.VIDEO, result_callback=cb), FakeFace(), FakeVoice(), None)
    with pytest.raises(ValueError, match="result_callback"):
        next(a.events())
    with a:
        feed(a, 3.0)
    assert threads == {"edge-xemo-delivery"}
    assert sum(e.type == "cues" for e in got) == 2 * 3  # windows [0,2) [1,3) [2,4): audio reaches 3.0 s


def test_misuse_raises_value_error():
    a = Analyzer(AnalyzerOptions(running_mode=RunningMode.VIDEO), FakeFace(), FakeVoice(), None)
    a.push_frame(bright(), 1.0)
    with pytest.raises(ValueError, match="backwards"):
        a.push_frame(bright(), 0.5)
    with pytest.raises(ValueError, match="frame"):
        a.push_frame(np.zeros((0, 0, 3), np.uint8), 2.0)
    with pytest.raises(ValueError, match="finite"):
        a.push_audio(np.zeros(160, np.float32), float("nan"))
    a.close()
    with pytest.raises(ValueError, match="closed"):
        a.push_frame(bright(), 3.0)
    a.close()  # twice is fine


def test_live_mode_drops_oldest_frames_under_load_and_says_so():
    a = Analyzer(AnalyzerOptions(running_mode=RunningMode.LIVE_STREAM, frame_queue=2), FakeFace(delay=0.02), None, None)
    t0 = time.monotonic()
    for i in range(100):
        a.push_frame(bright(), i / 100)
    assert time.monotonic() - t0 < 0.5  # capture never waits on a slow stage
    a.end_input()
    events = list(a.events())
    a.close()
    drops = [e for e in events if e.type == "status" and e.data["code"] == "dropped"]
    assert drops and drops[-1].data["frames_dropped"] == a.stats["frames_dropped"] > 50
    assert a.stats["frames"] + a.stats["frames_dropped"] == 100
    # readable: at most one report per window (1 s of frames -> at most 2 windows, plus the final one)
    assert len(drops) <= a.stats["windows"] + 1
    assert sum(e.data["frames_dropped_new"] for e in drops) == a.stats["frames_dropped"]


def test_live_mode_cancels_a_stale_explanation_when_cues_change():
    class Alternating(FakeFace):
        def summarize(self, obs, t0, t1):
            name = "smile" if round(t0 / 0.2) % 2 == 0 else "frown"
            return ModalityResult("visual", cues=(Cue(name, name, 0.9, "visual", face_id=0),))

    reasoner = FakeReasoner(pieces=40, delay=0.02)
    a = Analyzer(AnalyzerOptions(running_mode=RunningMode.LIVE_STREAM, window_s=0.4, hop_s=0.2, explain_every_s=0.01),
                 Alternating(), None, reasoner)
    for i in range(30):  # 3 s at a live pace
        a.push_frame(bright(), i / 10)
        time.sleep(0.1)
    a.end_input()
    events = list(a.events())
    a.close()
    assert reasoner.stopped >= 1 and a.stats["cancelled"] == reasoner.stopped
    assert any(e.type == "status" and e.data["code"] == "explanation_cancelled" for e in events)
    assert a.stats["explanations"] < a.stats["windows"]


def test_material_change():
    a, b = frozenset({"smile", "cheek"}), frozenset({"smile", "cheek", "nod"})
    assert not material_change(a, b) and material_change(a, frozenset({"frown"}))
    assert not material_change(frozenset(), frozenset())


def test_explain_policy_explains_the_first_window_then_on_cadence_or_on_change():
    policy = ExplainPolicy(every_s=2.0)
    smile, frown = frozenset({"smile", "cheek_raise"}), frozenset({"frown"})
    assert [policy.due(t, smile) for t in (2.0, 3.0, 4.0, 5.0)] == [True, False, True, False]
    assert policy.due(5.5, frown) and not policy.due(6.0, frown)  # a material change is due at once


def test_file_source_through_the_analyzer_covers_the_clip(demo_video, demo_audio):
    a = Analyzer(AnalyzerOptions(running_mode=RunningMode.VIDEO), FakeFace(), FakeVoice(), None)
    with a:
        a.run_sources(FileSource(demo_video, audio_path=demo_audio))
        cues = [e for e in a.events() if e.type == "cues"]
    windows = sorted({(e.t_start, e.t_end) for e in cues})
    assert windows[0][0] == 0.0 and windows[-1][1] >= 30.0
    assert a.stats["frames"] == 765


def test_video_mode_refuses_a_timing_dependent_transcript():
    from edge_xemo.voice.asr import TranscriberOptions
    from edge_xemo.voice.stage import VoiceOptions

    background = VoiceOptions(asr=TranscriberOptions(background=True))
    with pytest.raises(ValueError, match="background"):
        AnalyzerOptions(running_mode=RunningMode.VIDEO, voice=background)
    AnalyzerOptions(running_mode=RunningMode.LIVE_STREAM, voice=background)
    AnalyzerOptions(running_mode=RunningMode.VIDEO, voice=VoiceOptions(asr=TranscriberOptions()))


def test_a_stop_before_the_start_still_delivers_the_stopped_event():
    """A signal between loading and the sources' start: nothing ran, the `stopped` event still reaches the
    result callback (the JSONL), on the caller's thread."""
    got = []
    a = Analyzer(AnalyzerOptions(running_mode=RunningMode.LIVE_STREAM, result_callback=got.append), FakeFace())
    assert a.close(reason="SIGTERM") is True
    assert [(e.type, e.data["code"], e.data["reason"]) for e in got] == [("status", "stopped", "SIGTERM")]


def test_the_runtime_is_given_once_and_handed_down_to_each_stage_that_names_none():
    """Real stages: the analyzer's RuntimeOptions reaches the visual stage and the judgement, the decoder keeps
    its own; a stage whose options are None is not built, and without a judgement the perception stages'
    emotion models (which feed only it) are not loaded."""
    from edge_xemo.analyzer import build_stages
    from edge_xemo.core.models import Provider, RuntimeOptions
    from edge_xemo.reasoning.judgement import JudgementOptions
    from edge_xemo.vision.stage import VisualOptions

    two = RuntimeOptions(threads=2, provider="cpu")
    assert two.provider is Provider.CPU
    with pytest.raises(ValueError, match="unknown provider 'npu'"):
        RuntimeOptions(provider="npu")
    with pytest.raises(ValueError, match="threads"):
        RuntimeOptions(threads=0)
    options = AnalyzerOptions(runtime=two, voice=None, judgement=JudgementOptions(words=False), decoder=None)
    stages = build_stages(options)
    try:
        assert stages.audio is None and stages.visual.options.runtime == two and stages.visual.emotion is not None
        assert stages.reasoner.judge.options.runtime == two and stages.reasoner.narrator is None
    finally:
        stages.close()
    stages = build_stages(AnalyzerOptions(voice=None, judgement=None, decoder=None))
    try:
        assert stages.reasoner is None and stages.visual.emotion is None
        assert stages.visual.options.runtime == RuntimeOptions()
    finally:
        stages.close()
    with pytest.raises(ValueError, match="fp32 and int8"):
        VisualOptions(runtime=RuntimeOptions(precision="fp16"))


def test_the_api_doc_options_example_builds():
    """docs/api.md's options example runs as shown (it builds options; nothing is loaded)."""
    import re
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[1] / "docs" / "api.md").read_text()
    example = next(b for b in re.findall(r"```python\n(.*?)```", doc, re.S) if "RuntimeOptions" in b)
    scope = {"AnalyzerOptions": AnalyzerOptions}
    exec(example, scope)
    options = scope["options"]
    assert options.decoder.runtime.threads == 2 and options.runtime.provider == "auto"
