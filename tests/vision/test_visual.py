"""The visual stage on real footage: tracking, landmarks, cues, window summaries, bad frames."""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import DEMO_VIDEO, SAMPLE_MP4, need
from edge_xemo.vision.face_cues import CUE_NAMES, OneEuro, align, head_pose, phrase
from edge_xemo.vision.faces import FaceTrackerOptions
from edge_xemo.core.types import Frame, ModalityResult, ResultCode
from edge_xemo.vision.expression import face_crop
from edge_xemo.vision.observation import VisualObservation
from edge_xemo.vision.stage import VisualOptions, VisualPerception
from edge_xemo.vision.window_cues import WindowCueOptions

N_DEMO_FRAMES = 150  # 6 s of the 25 fps demo clip


def read_frames(path, limit=None) -> tuple[list[np.ndarray], float]:
    cap = cv2.VideoCapture(str(path))
    fps = cap.get(cv2.CAP_PROP_FPS) or 25.0
    frames = []
    while limit is None or len(frames) < limit:
        ok, f = cap.read()
        if not ok:
            break
        frames.append(f)
    cap.release()
    return frames, fps


@pytest.fixture(scope="module")
def demo():
    frames, fps = read_frames(need(DEMO_VIDEO, "the install step puts the demo clip there"), N_DEMO_FRAMES)
    assert len(frames) == N_DEMO_FRAMES
    return frames, fps


def stage(**kw) -> VisualPerception:
    return VisualPerception.create_from_options(VisualOptions(**kw))


def run(va: VisualPerception, frames, fps) -> list[VisualObservation]:
    return [va.process_frame(Frame(f, i / fps, i)) for i, f in enumerate(frames)]


def test_blank_and_dark_frames_give_no_face_and_no_cues():
    va = stage()
    rng = np.random.default_rng(0)
    frames = [np.zeros((360, 640, 3), np.uint8), rng.integers(0, 12, (360, 640, 3), dtype=np.uint8)] * 10
    obs = run(va, frames, 25.0)
    assert all(not o.faces and o.code is ResultCode.NO_FACE for o in obs)
    res = va.summarize(obs, 0.0, 1.0)
    assert isinstance(res, ModalityResult) and res.empty and res.code is ResultCode.NO_FACE and res.tokens is None
    assert va.summarize([], 0.0, 2.0).code is ResultCode.NO_FRAMES


def test_bad_frames_get_a_status_not_an_exception(demo):
    va = stage()
    for image, why in ((np.zeros((5, 5, 3), np.uint8), "frame too small"),
                       (demo[0][0].astype(np.float32), "bad frame"),
                       (np.zeros((10, 10, 2), np.uint8), "bad frame")):
        o = va.process_frame(Frame(image, 0.0, 0))
        assert not o.faces and o.message.startswith(why)


def test_grayscale_bgra_and_odd_sized_frames(demo):
    frame = demo[0][10]
    gray = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
    odd = cv2.resize(frame, (333, 251))
    mirrored = frame[:, ::-1]  # a non-contiguous view, as a mirrored camera preview gives
    for image in (gray, gray[:, :, None], cv2.cvtColor(frame, cv2.COLOR_BGR2BGRA), odd, mirrored):
        o = stage().process_frame(Frame(image, 0.0, 0))
        assert len(o.faces) == 1, o.message
        x0, y0, x1, y1 = o.faces[0].box
        h, w = image.shape[:2]
        assert 0 <= x0 < x1 <= w + 5 and 0 <= y0 < y1 <= h + 5


def test_face_found_and_id_stable_across_the_clip(demo):
    frames, fps = demo
    obs = run(stage(tracker=FaceTrackerOptions(detect_every=5)), frames, fps)
    found = [o for o in obs if o.faces]
    assert len(found) >= 0.95 * len(obs)
    assert {f.face_id for o in found for f in o.faces} == {0}
    # detection ran on about every fifth frame; landmarks followed the face in between
    detections = sum(o.latency_ms.get("detect", 0.0) > 0 for o in obs)
    assert len(obs) / 5 - 2 <= detections <= len(obs) / 5 + 3
    lm = found[0].faces[0].landmarks
    assert lm.shape == (478, 3) and lm.dtype == np.float32  # Face Landmarker: 468 mesh + 10 iris points
    x0, y0, x1, y1 = found[0].faces[0].box
    assert x0 <= lm[1, 0] <= x1 and y0 <= lm[1, 1] <= y1


def test_landmarks_follow_a_rotated_face(demo):
    """Landmarks come back in image pixels through the rotated crop: head roll follows the image."""
    frame = demo[0][20]
    h, w = frame.shape[:2]
    rolls = {}
    for deg in (0, 25, -25):
        image = cv2.warpAffine(frame, cv2.getRotationMatrix2D((w / 2, h / 2), deg, 1.0), (w, h))
        va = stage()
        va.process_frame(Frame(image, 0.0, 0))
        o = va.process_frame(Frame(image, 0.04, 1))  # second frame: landmark-derived ROI
        rolls[deg] = head_pose(align(o.faces[0].landmarks)[1])[2]
    # a counter-clockwise image rotation (cv2's positive angle) lifts the image-right eye: roll goes negative
    assert rolls[25] - rolls[0] == pytest.approx(-25, abs=5)
    assert rolls[-25] - rolls[0] == pytest.approx(25, abs=5)


def test_min_face_size_and_max_faces(demo):
    frame = demo[0][30]
    small = cv2.resize(frame, (frame.shape[1] // 3, frame.shape[0] // 3))  # the face is ~35 px wide
    assert len(stage(tracker=FaceTrackerOptions(min_face_px=20)).process_frame(Frame(small, 0.0, 0)).faces) == 1
    o = stage(tracker=FaceTrackerOptions(min_face_px=60)).process_frame(Frame(small, 0.0, 0))
    assert not o.faces and o.code is ResultCode.FACE_TOO_SMALL
    # two people: the face and a smaller copy beside it (short-range BlazeFace wants faces >~ 15 % of the frame)
    face = frame[60:300, 100:300]
    smaller = cv2.resize(face, (160, 192))
    pair = np.zeros((240, 360, 3), np.uint8)
    pair[:, :200] = face
    pair[:192, 200:] = smaller
    two = stage(tracker=FaceTrackerOptions(max_faces=2)).process_frame(Frame(pair, 0.0, 0))
    assert len(two.faces) == 2 and len({f.face_id for f in two.faces}) == 2
    one = stage(tracker=FaceTrackerOptions(max_faces=1)).process_frame(Frame(pair, 0.0, 0))
    assert len(one.faces) == 1 and one.faces[0].box[2] <= 205  # the larger face


def test_a_face_hidden_for_a_second_comes_back_with_its_id_and_its_neighbour_keeps_its_own(demo):
    """Two people side by side (the demo face and a smaller copy, both moving as the clip does); the larger is
    covered for 1 s. Within `reid_s` it takes its id back (so its cue reader and neutral go on); with a
    shorter `reid_s` it comes back as a new person. The other face keeps its id throughout."""
    frames, fps = demo

    def pair(frame, hidden: bool) -> np.ndarray:
        out = np.zeros((240, 360, 3), np.uint8)
        face = frame[60:300, 100:300]
        out[:, :200] = 0 if hidden else face
        out[:192, 200:] = cv2.resize(face, (160, 192))
        return out

    def ids(reid_s: float) -> list[dict[str, int]]:
        va = stage(tracker=FaceTrackerOptions(max_faces=2, reid_s=reid_s))
        out = []
        for i, f in enumerate(frames[:75]):
            o = va.process_frame(Frame(pair(f, 20 <= i < 45), i / fps, i))
            out.append({"left" if face.box[0] < 200 else "right": face.face_id for face in o.faces})
        return out

    seen = ids(3.0)
    left, right = seen[10]["left"], seen[10]["right"]
    assert not any("left" in s for s in seen[22:45])  # hidden
    assert all(s.get("right") == right for s in seen[10:])
    back = [s["left"] for s in seen[45:] if "left" in s]
    assert len(back) >= 20 and set(back) == {left}
    again = [s["left"] for s in ids(0.5)[45:] if "left" in s]
    assert again and left not in again


def test_someone_else_where_a_person_was_lost_does_not_take_their_id(demo):
    """Two different people side by side (the demo's man, the XEmoGPT sample's woman), both covered for 1 s, then
    back in each other's places: each stands where the other was lost, but looks like someone else, so neither
    takes the other's id. Back in their own places they take their own ids back."""
    frames, fps = demo
    woman, _ = read_frames(need(SAMPLE_MP4, "../shared/data is only on the project's machines"), 75)

    def pair(i: int, hidden: bool, swapped: bool) -> np.ndarray:
        man = cv2.resize(frames[i][60:300, 100:300], (200, 240))
        her = woman[i][52:292, 339:539]  # her face where his is in his half: each overlaps where the other was
        out = np.zeros((240, 400, 3), np.uint8)
        if not hidden:
            out[:, :200], out[:, 200:] = (her, man) if swapped else (man, her)
        return out

    def ids(swapped: bool, reid_look: float = 0.6) -> tuple[dict[str, int], dict[str, int]]:
        va = stage(tracker=FaceTrackerOptions(max_faces=2, reid_s=3.0, reid_look=reid_look))
        seen = []
        for i in range(75):
            o = va.process_frame(Frame(pair(i, 20 <= i < 45, swapped and i >= 45), i / fps, i))
            seen.append({"left" if face.box[0] < 200 else "right": face.face_id for face in o.faces})
        return seen[15], seen[-1]

    before, after = ids(swapped=False)
    assert len(before) == 2 and after == before
    before, after = ids(swapped=True)
    assert len(after) == 2 and not set(after.values()) & set(before.values()), (before, after)
    by_place = ids(swapped=True, reid_look=-1.0)  # the place alone gives each person the other's id
    assert by_place[1] == by_place[0]


def test_window_summary_on_the_demo_clip(demo):
    frames, fps = demo
    va = stage()
    obs = run(va, frames, fps)
    res = va.summarize(obs, 2.0, 4.0)
    assert res.modality == "visual" and res.code is None and res.cues
    assert res.extra["n_frames"] == 50 and res.extra["primary_face"] == 0
    assert [f.face_id for f in res.faces] == [0]
    for c in res.cues:
        assert c.face_id == 0 and c.modality == "visual" and 0.0 <= c.intensity <= 1.0
        assert c.phrase and c.evidence["on_fraction"] >= va.options.window.min_on_fraction
    names = [c.name for c in res.cues]
    assert len(names) == len(set(names))
    assert sum(n.startswith("gaze_") for n in names) <= 1
    assert {"detect", "landmarks", "cues", "frame"} <= set(res.latency_ms)
    if va.expression is None:
        assert res.scores == {}
    else:
        assert set(res.scores) == set(va.labels) and sum(res.scores.values()) == pytest.approx(1.0, abs=1e-3)
    if va.bridge is None or va.expression is None:
        assert res.tokens is None
    else:
        assert res.tokens.ndim == 2 and res.tokens.dtype == np.float32 and np.isfinite(res.tokens).all()
        assert "vecb" in res.latency_ms
    # a window nobody was seen in
    assert va.summarize(obs, 100.0, 102.0).code is ResultCode.NO_FRAMES


def test_reset_restarts_ids_and_baselines(demo):
    frames, fps = demo
    va = stage()
    run(va, frames[:5], fps)
    assert not va.process_frame(Frame(np.zeros_like(frames[0]), 1.0, 5)).faces  # the face is lost
    assert va.process_frame(Frame(frames[6], 1.04, 6)).faces[0].face_id == 0  # found where it was: its id back
    assert not va.process_frame(Frame(np.zeros_like(frames[0]), 1.08, 7)).faces
    assert va.process_frame(Frame(frames[8], 5.0, 8)).faces[0].face_id == 1  # after reid_s: a new track
    va.reset()
    o = va.process_frame(Frame(frames[0], 0.0, 0))
    assert o.faces[0].face_id == 0


def test_without_expression_and_bridge(demo):
    frames, fps = demo
    va = stage(use_expression=False, use_bridge=False)
    obs = run(va, frames[:50], fps)
    res = va.summarize(obs, 0.0, 2.0)
    assert res.scores == {} and res.tokens is None and res.cues
    assert all(f.expression is None for o in obs for f in o.faces)


def test_the_encoder_runs_at_expression_hz_and_windows_read_only_encoded_frames(demo):
    frames, fps = demo
    va = stage()
    if va.expression is None:
        pytest.skip("the expression encoder is not installed")
    obs = run(va, frames[:75], fps)
    faces = [o.faces[0] for o in obs if o.faces]
    assert len(faces) == 75
    encoded = [f for f in faces if f.encoded]
    assert len([f for f in encoded if 0.0 <= f.cues.t < 2.0]) == 16  # 8 Hz: one frame per 0.125 s slot
    last = None
    for f in faces:  # the frames between carry the scores of the last encoded one, and say so
        last = f if f.encoded else last
        assert f.expression_t == last.cues.t and f.expression is last.expression
    res = va.summarize(obs, 0.0, 2.0)
    mean = np.mean([f.expression for f in encoded if f.cues.t < 2.0], axis=0)
    assert [res.scores[k] for k in va.labels] == pytest.approx(mean.tolist(), abs=1e-6)
    every = stage(expression_hz=None)
    assert all(o.faces[0].encoded for o in run(every, frames[:10], fps))


def test_face_crop_is_upright_gray(demo):
    frame = demo[0][0]
    o = stage().process_frame(Frame(frame, 0.0, 0))
    crop = face_crop(frame, o.faces[0].landmarks)
    assert crop.shape == (64, 64) and crop.dtype == np.uint8 and crop.std() > 10


def test_phrases_and_intensity_words():
    assert phrase("brow_lower", 0.3) == "slightly furrowed brow"
    assert phrase("brow_lower", 0.6) == "furrowed brow"
    assert phrase("brow_lower", 0.9) == "clearly furrowed brow"
    assert phrase("lip_corner_pull", 0.6) == "corners of the mouth turned up"
    assert all(phrase(n, v) for n in CUE_NAMES for v in (0.1, 0.6, 0.95))


def test_one_euro_filter_smooths_jitter_and_follows_steps():
    f = OneEuro(min_cutoff=1.0, beta=0.0)
    rng = np.random.default_rng(1)
    noisy = 1.0 + 0.05 * rng.standard_normal(100)
    out = np.array([f(np.array([x]), i / 25)[0] for i, x in enumerate(noisy)])
    assert out[20:].std() < 0.5 * noisy[20:].std()
    step = [f(np.array([3.0]), 4.0 + i / 25)[0] for i in range(50)]
    assert math.isclose(step[-1], 3.0, abs_tol=0.05)


@pytest.mark.shared
def test_smiling_speaker_in_the_shared_sample():
    frames, fps = read_frames(need(SAMPLE_MP4, "../shared/data is only on the project's machines"))
    va = stage()
    obs = run(va, frames, fps)
    assert sum(bool(o.faces) for o in obs) >= 0.95 * len(obs)
    duration = len(frames) / fps
    starts = np.arange(0.0, duration - 2.0 + 1e-6, 1.0)
    windows = [va.summarize(obs, s, s + 2.0) for s in starts]
    smiling = sum(any(c.name == "lip_corner_pull" for c in w.cues) for w in windows)
    assert len(starts) >= 2 and smiling > len(starts) / 2
    if va.expression is not None:  # the expression encoder agrees: happy leads in most windows
        happy = sum(max(w.scores, key=w.scores.get) == "happy" for w in windows)
        assert happy > len(starts) / 2


def test_small_face_in_a_wide_frame_is_found_by_tiles(demo):
    from edge_xemo.vision.faces import FaceTracker, FaceTrackerOptions

    half = cv2.resize(demo[0][30], None, fx=0.5, fy=0.5)  # the face is ~50 px wide
    canvas = np.zeros((360, 640, 3), np.uint8)
    canvas[100 : 100 + half.shape[0], 400 : 400 + half.shape[1]] = half
    assert FaceTracker(FaceTrackerOptions(tile_wide_frames=False)).detect(canvas) == []
    found = FaceTracker().track(canvas, 0.0).faces
    assert len(found) == 1
    x0, y0, x1, y1 = found[0].box
    assert 400 < x0 < x1 < 600 and 100 < y0 < y1 < 250


@pytest.mark.parametrize("options, bad", [(FaceTrackerOptions, {"detect_every": 0}), (FaceTrackerOptions, {"max_faces": 0}),
                                          (VisualOptions, {"expression_hz": 0}),
                                          (WindowCueOptions, {"min_on_fraction": 0.0})])
def test_bad_options_name_the_field(options, bad):
    name = next(iter(bad))
    with pytest.raises(ValueError, match=name):
        options(**bad)


def test_a_missing_optional_model_is_reported_and_a_bug_is_not_hidden(monkeypatch):
    """The expression encoder not installed: the stage runs without it and says so once, as a
    `model_missing` status when the analysis starts; an error that is not a missing model propagates."""
    from edge_xemo import vision
    from edge_xemo.analyzer import Analyzer, AnalyzerOptions, RunningMode
    from edge_xemo.core.models import ModelError
    from edge_xemo.io.sources import FileSource

    def not_installed(opts):
        raise ModelError("expression.onnx is not installed")

    monkeypatch.setattr(vision.stage, "_expression", not_installed)
    stage = vision.stage.VisualPerception(vision.stage.VisualOptions(use_bridge=False))
    assert stage.expression is None and stage.missing == (
        "expression encoder (no expression scores) unavailable: expression.onnx is not installed",)
    photo = Path(__file__).resolve().parents[1] / "data" / "cap13_frame0025.jpg"
    with Analyzer(AnalyzerOptions(running_mode=RunningMode.VIDEO, voice=None, judgement=None, decoder=None), stage) as an:
        an.run_sources(FileSource(photo))
        an.wait()
        codes = [e.data.get("code") for e in an.events(timeout=0) if e.type == "status"]
    assert codes[0] == "model_missing" and codes.count("model_missing") == 1

    def bug(opts):
        raise TypeError("a bug in the loader")

    monkeypatch.setattr(vision.stage, "_expression", bug)
    with pytest.raises(TypeError):
        vision.stage.VisualPerception(vision.stage.VisualOptions(use_bridge=False))
