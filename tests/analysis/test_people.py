"""Everyone in view: per-person evidence on two real people side by side (assembled from single-person clips,
`eval.side_by_side`), and who is speaking."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from conftest import SHARED, need

RAVDESS = SHARED / "ravdess_av" / "01-01-01-01-01-01-01.mp4"
XEMOGPT = SHARED / "xemogpt_sample" / "sample_00000007.mp4"
PROBABILITY_TOL = 0.005
"""How far any probability of a person's evidence or judgement may move when another person is beside them: the
expression encoder sees both crops in one batch (onnxruntime's sums then run in another order). Measured 0.0014
(2026-12-07); the cue phrases and labels are the same."""


def _frames(video: Path) -> list[np.ndarray]:
    import av

    with av.open(str(video)) as c:
        return [f.to_ndarray(format="bgr24") for f in c.decode(video=0)]


def _by_side(events: list[dict], width: int) -> dict[tuple[float, str], dict]:
    """Each person's explanation event by (window start, side of the frame its face is on)."""
    side = {f["face_id"]: "left" if (f["box"][0] + f["box"][2]) / 2 < width / 2 else "right"
            for e in events if e["type"] == "cues" for f in e.get("faces", [])}
    return {(e["t_start"], side[e["face_id"]]): e for e in events if e["type"] == "explanation"}


def _people(frames: list[np.ndarray]) -> dict[tuple[float, str], dict]:
    """Every window of the frames explained (VIDEO mode, no sound), by (window start, side)."""
    from edge_xemo.analyzer import Analyzer, RunningMode, analyzer_options

    options = analyzer_options(running_mode=RunningMode.VIDEO, explain_every_s=0.0, voice=False)
    with Analyzer.create_from_options(options) as an:
        for i, image in enumerate(frames):
            an.push_frame(image, i / 25)
        an.end_input()
        return _by_side([e.to_dict() for e in an.events()], frames[0].shape[1])


def _heard(video: Path, wav: Path) -> dict[tuple[float, str], dict]:
    """Every window of the clip with its soundtrack explained (VIDEO mode), by (window start, side)."""
    import cv2

    from edge_xemo.analyzer import Analyzer, RunningMode, analyzer_options
    from edge_xemo.io.sources import FileSource

    options = analyzer_options(running_mode=RunningMode.VIDEO, explain_every_s=0.0)
    with Analyzer.create_from_options(options) as an:
        an.run_sources(FileSource(video, audio_path=wav))
        an.wait()
        events = [e.to_dict() for e in an.events(timeout=0)]
    return _by_side(events, int(cv2.VideoCapture(str(video)).get(cv2.CAP_PROP_FRAME_WIDTH)))


@pytest.mark.shared
def test_a_second_person_does_not_leak_into_the_first_s_evidence(tmp_path):
    from edge_xemo.eval.side_by_side import side_by_side

    video, _ = side_by_side([need(RAVDESS, "../shared/data"), need(XEMOGPT, "../shared/data")], tmp_path / "two.mp4")
    both = _frames(video)
    half = both[0].shape[1] // 2
    together = _people(both)
    assert {s for _, s in together} == {"left", "right"}
    worst = 0.0
    for side in ("left", "right"):
        frames = [f.copy() for f in both]
        for f in frames:
            f[:, half:] = 0 if side == "left" else f[:, half:]
            f[:, :half] = 0 if side == "right" else f[:, :half]
        alone = _people(frames)
        assert alone and {s for _, s in alone} == {side}
        for key, e in alone.items():
            other = together[key]
            assert other["visual_cues"] == e["visual_cues"] and other["emotion"]["label"] == e["emotion"]["label"], key
            assert set(other["evidence"]) == set(e["evidence"]), key
            for name, source in e["evidence"].items():
                theirs = other["evidence"][name]["distribution"]
                worst = max(worst, *(abs(theirs[k] - v) for k, v in source["distribution"].items()))
            worst = max(worst, *(abs(other["emotion"]["scores"][k] - v) for k, v in e["emotion"]["scores"].items()))
    assert worst <= PROBABILITY_TOL, f"largest difference {worst:.4f}"


@pytest.mark.shared
@pytest.mark.parametrize("order", [("cap13", "xemogpt"), ("xemogpt", "cap13")])
def test_the_voice_joins_the_judgement_of_the_person_whose_lips_follow_it(tmp_path, demo_video, order):
    """The woman's own soundtrack; beside her a man talking without sound (cap13): her windows with speech get the
    voice, his say whose it is and judge without it."""
    from edge_xemo.eval.side_by_side import side_by_side

    clips = {"cap13": demo_video, "xemogpt": need(XEMOGPT, "../shared/data")}
    video, wav = side_by_side([clips[name] for name in order], tmp_path / "two.mp4", soundtrack=clips["xemogpt"])
    assert wav is not None
    people = _heard(video, wav)
    speaker_side = "left" if order[0] == "xemogpt" else "right"
    spoken = [e for (t, side), e in people.items() if side == speaker_side and e["speaker"]["reason"] != "no speech"]
    assert len(spoken) >= 3
    right = [e for e in spoken if e["speaker"]["face_id"] == e["face_id"]]
    assert len(right) >= len(spoken) - 1, [e["speaker"] for e in spoken]
    assert all(e["speaker"]["face_id"] in (e["face_id"], None) for e in spoken)  # never the silent man
    for e in right:
        assert "voice" in e["evidence"]
        listener = next(o for (t, side), o in people.items() if t == e["t_start"] and side != speaker_side)
        assert "voice" not in listener["evidence"] and "words" not in listener["evidence"]
        assert listener["speaker"] == e["speaker"]
