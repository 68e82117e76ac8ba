"""The facial-action emotion head: real CK+ faces through the real landmark, blendshape and head models; its
place in the judgement (the `facial_actions` distribution, fitted face weights) and its terms."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from edge_xemo.core.models import COMMERCIAL_ONLY, ExcludedByTerms
from edge_xemo.core.types import Cue, ModalityResult
from edge_xemo.reasoning.judgement import Judge, facial_action_source
from edge_xemo.vision.face_cues import NEUTRAL_PRIOR
from edge_xemo.vision.face_emotion import BlendshapeEmotion

CKPLUS = Path(__file__).resolve().parents[3] / "shared" / "data" / "ckplus48_dev"


@pytest.fixture(scope="module")
def head() -> BlendshapeEmotion:
    return BlendshapeEmotion.load()


def test_the_head_gives_a_calibrated_distribution_and_reads_no_action_as_neutral(head):
    p = head(np.zeros(52))
    assert set(p) == {"angry", "disgust", "fear", "happy", "neutral", "sad", "surprise"}
    assert sum(p.values()) == pytest.approx(1.0)
    assert max(p, key=lambda k: p[k]) == "neutral"


def test_posed_faces_of_ckplus_are_read_by_their_actions(head):
    """Two subjects per emotion (the head saw them when fitted: this checks the chain, not generalisation, which
    train.face_blendshapes measures subject-out)."""
    if not CKPLUS.exists():
        pytest.skip("../shared/data/ckplus48_dev is absent")
    from edge_xemo.vision.faces import FaceTracker
    from train.face_blendshapes import camera_view

    tracker, right, total = FaceTracker(), 0, 0
    for folder, label in (("happy", "happy"), ("surprise", "surprise"), ("disgust", "disgust")):
        for png in sorted((CKPLUS / folder).glob("*.png"))[::3][:2]:
            image = camera_view(cv2.imread(str(png), cv2.IMREAD_GRAYSCALE))
            tracker.reset()
            for i in range(4):
                frame = tracker.track(image, i / 25)
            p = head(frame.faces[0].blendshapes - NEUTRAL_PRIOR)
            right += max(p, key=lambda k: p[k]) == label
            total += 1
    assert right >= total - 1, (right, total)


def test_the_judgement_takes_the_heads_distribution_and_names_the_prototype_cues():
    cues = (Cue("lip_corner_pull", "corners of the mouth turned up", 0.9, "visual"),
            Cue("brow_lower", "furrowed brow", 0.4, "visual"))
    learned = {"happy": 0.8, "neutral": 0.1, "angry": 0.05, "sad": 0.05}
    s = facial_action_source(cues, 0.75, learned)
    assert s is not None and s.distribution == learned and s.cues == ("corners of the mouth turned up",)
    judge = Judge.create_from_options()
    visual = ModalityResult("visual", cues=cues, emotion=learned)
    (actions,) = [s for s in judge.sources(visual, None, [], [], None) if s.name == "facial_actions"]
    assert actions.distribution == learned
    assert judge.weights["facial_actions"] == judge.weights["expression"] == 0.75  # fitted (sidecar `fusion`)


def test_commercial_only_leaves_the_head_out_and_the_prototypes_judge(monkeypatch):
    monkeypatch.setenv(COMMERCIAL_ONLY, "1")
    with pytest.raises(ExcludedByTerms):
        BlendshapeEmotion.load()
    judge = Judge.create_from_options()
    assert judge.weights["facial_actions"] == 1.0  # the fitted weights belong to the head
    from edge_xemo.vision.stage import VisualOptions, VisualPerception

    stage = VisualPerception(VisualOptions(use_expression=False, use_bridge=False))
    assert stage.emotion is None and any("facial-action emotion head" in why for why in stage.missing)
