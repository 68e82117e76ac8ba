"""One explanation per clip (the `eval clips` analyzer) on real media, and the record of what it ran with."""

from __future__ import annotations

from conftest import landmark_artifact
from edge_xemo.core.types import EMOTIONS
from edge_xemo.eval.clip import ClipExplainer, ClipOptions
from edge_xemo.eval.datasets import Clip


def test_clip_explainer_explains_a_real_clip_and_records_its_run(demo_video, demo_audio):
    explainer = ClipExplainer(ClipOptions(threads=1))
    assert explainer.run_record() == {"clip_options": {"min_share": 0.3, "max_cues": 6, "threads": 1, "explain": True,
                                                       "window_s": 2.0, "hop_s": 1.0, "timeline": True}}
    result = explainer(Clip("demo", demo_video, demo_audio, None, None, None, 0))
    assert result.label in EMOTIONS and result.text.startswith("In the video,") and result.status == "ok"
    assert result.extra["perceived"]["visual"] and result.media_s > 20
    judged = [e for e in result.events if e["type"] == "explanation"]  # each window judged, for its timeline
    assert len(judged) > 10 and all(e["emotion"]["outcome"] for e in judged)
    assert any(e["type"] == "cues" and e["visual_cues"] for e in result.events)
    run = explainer.run_record()
    assert run["stages"]["visual"]["runtime"]["threads"] == 1 and run["stages"]["reasoner"]["runtime"]["threads"] == 1
    assert len(run["models"]["decoder_file"]["sha256"]) == 64 and landmark_artifact()[1] in run["models"]
