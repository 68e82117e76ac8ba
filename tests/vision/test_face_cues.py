"""Facial cue reading: real faces of the demo clip through the real landmark and blendshape models, their
landmarks moved in the head frame by known amounts (each action unit must respond to its own movement), and the
reader's neutral, hysteresis and blink logic on blendshape series."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from conftest import DEMO_VIDEO, need

from edge_xemo.vision.face_cues import CUES, L_EYE, NEUTRAL_PRIOR, R_EYE, FaceCueReader, align, head_pose
from edge_xemo.vision.faces import BLENDSHAPES
from edge_xemo.vision.window_cues import _reversals

FPS = 25.0


@pytest.fixture(scope="module")
def tracker():
    from edge_xemo.vision.faces import FaceTracker

    return FaceTracker()


@pytest.fixture(scope="module")
def faces(tracker) -> list[np.ndarray]:
    """Real 478-point landmarks (image pixels) of three demo-clip frames, a second apart."""
    cap = cv2.VideoCapture(str(need(DEMO_VIDEO, "demo media comes from scripts/install.sh")))
    out = []
    for i in range(80):
        ok, image = cap.read()
        frame = tracker.track(image, i / FPS)
        if i % 25 == 5 and frame.faces:
            out.append(frame.faces[0].landmarks)
    assert len(out) == 3
    return out


def to_image(lm: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Inverse of `align`: head-frame points back to the landmark space of `lm`."""
    _, rot, iod = align(lm)
    origin = (lm[list(R_EYE)].mean(0) + lm[list(L_EYE)].mean(0)) / 2
    return (p * iod @ rot + origin).astype(np.float32)


def read(tracker, lm: np.ndarray, seconds: float = 3.0, neutral: np.ndarray | None = None):
    """The cues after `seconds` of this face held still; `neutral`: a face shown for 20 s before (its neutral)."""
    reader, t = FaceCueReader(), 0.0
    if neutral is not None:
        scores = tracker.blendshapes(neutral)
        for i in range(int(20 * FPS)):
            reader.update(neutral, scores, t := i / FPS)
    scores = tracker.blendshapes(lm)
    for i in range(int(seconds * FPS)):
        out = reader.update(lm, scores, t + (i + 1) / FPS)
    return out


def test_alignment_round_trip(faces):
    lm = faces[0]
    p = align(lm)[0]
    np.testing.assert_allclose(to_image(lm, p), lm, atol=1e-2)
    assert abs(p[list(R_EYE)].mean(0)[0] + 0.5) < 1e-6  # eyes at x = -0.5 and +0.5 inter-ocular units


def smile(p: np.ndarray) -> None:
    """AU12 pulls the lip corners up and out."""
    for idx, side in (([61, 185, 146, 78, 191, 95], -1.0), ([291, 409, 375, 308, 415, 324], 1.0)):
        p[idx, 1] -= 0.15
        p[idx, 0] += side * 0.1


def brows_up(p: np.ndarray) -> None:
    p[[70, 46, 63, 53, 300, 276, 293, 283, 105, 334, 66, 296], 1] -= 0.15


def jaw_down(p: np.ndarray) -> None:
    """Everything below the lips' meeting line drops."""
    p[p[:, 1] > (p[13, 1] + p[14, 1]) / 2 + 1e-3, 1] += 0.35


@pytest.mark.parametrize("cue, move", [("lip_corner_pull", smile), ("outer_brow_raise", brows_up),
                                       ("jaw_drop", jaw_down)])
def test_each_action_unit_follows_its_movement(tracker, faces, cue, move):
    """The real blendshape model reads the moved landmarks; the cue switches on above the face's own neutral."""
    for lm in faces:
        p = align(lm)[0].copy()
        move(p)
        base, moved = read(tracker, lm, neutral=lm), read(tracker, to_image(lm, p), neutral=lm)
        assert moved.intensity[cue] >= base.intensity[cue] + 0.5, (cue, base.intensity[cue], moved.intensity[cue])
        assert cue in moved.on


def scores(**above: float) -> np.ndarray:
    """Blendshape scores: the neutral prior with some raised by the given amounts."""
    s = NEUTRAL_PRIOR.copy()
    for name, v in above.items():
        s[BLENDSHAPES.index(name)] += v
    return np.clip(s, 0, 1)


def run(faces, series, fps=FPS):
    reader = FaceCueReader()
    return [reader.update(faces[0], s, k / fps) for k, s in enumerate(series)]


def test_an_idle_habit_is_the_persons_neutral_but_a_held_smile_is_not(faces):
    """Lowered brows held all along become this person's neutral (within the tolerance); a smile held all along
    still reads as a smile (a neutral face does not smile)."""
    frown = run(faces, [scores(browDownLeft=0.25, browDownRight=0.25)] * int(20 * FPS))
    assert "brow_lower" not in frown[-1].on
    smile = run(faces, [scores(mouthSmileLeft=0.8, mouthSmileRight=0.8)] * int(20 * FPS))
    assert "lip_corner_pull" in smile[-1].on and smile[-1].intensity["lip_corner_pull"] > 0.5


def test_before_the_neutral_is_learnt_only_actions_beyond_any_neutral_are_read(faces):
    """Brows held as low as some neutral people idle (RAVDESS actor 01: browDown about 0.55) are no frown in a
    clip's first seconds, and still none once learnt; brows lowered past every neutral seen are a frown at once."""
    idle = run(faces, [scores(browDownLeft=0.37, browDownRight=0.37)] * int(12 * FPS))
    assert not any("brow_lower" in f.on for f in idle)
    frown = run(faces, [scores(browDownLeft=0.75, browDownRight=0.75)] * int(2 * FPS))
    assert "brow_lower" in frown[-1].on


def test_without_blendshapes_no_action_is_asserted(faces):
    reader = FaceCueReader()
    out = [reader.update(faces[0], None, k / FPS) for k in range(50)][-1]
    assert all(out.intensity[c.name] == 0.0 for c in CUES) and not any(c.name in out.on for c in CUES)


def test_cue_table_reads_both_sides():
    """Each bilateral action unit is read from the left and right blendshapes of its stem."""
    for cue in CUES:
        assert all(b in BLENDSHAPES for b in cue.blendshapes)
        if len(cue.blendshapes) == 2:
            assert cue.blendshapes[0].endswith("Left") and cue.blendshapes[1].endswith("Right")


def closed(shut: bool) -> np.ndarray:
    return scores(eyeBlinkLeft=0.6, eyeBlinkRight=0.6) if shut else scores()


def test_blinks_are_counted_once_and_long_closures_are_not_blinks(faces):
    # 10 s: a 120 ms closure every 2 s, then one 2 s closure
    out = run(faces, [closed((k % 50) in (25, 26, 27) or 200 <= k < 250) for k in range(250)])
    assert sum(o.blink for o in out) == 4
    assert out[-1].blink_rate == pytest.approx(4 * 60 / 10, rel=0.01)


def test_blinks_follow_the_source_clock_not_the_frame_count(faces):
    """At 60 frames/s, one-frame glitches (17 ms) are no blinks; a real 150 ms closure is one."""
    out = run(faces, [closed(k % 60 == 30 or k % 300 in range(100, 109)) for k in range(600)], fps=60.0)
    assert sum(o.blink for o in out) == 2


def test_head_pose_follows_a_3d_rotation(faces):
    lm = faces[2]
    yaw0, pitch0, roll0 = head_pose(align(lm)[1])
    c = lm.mean(0)
    a = np.radians(20)
    rot_y = np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])
    yaw1, pitch1, roll1 = head_pose(align(((lm - c) @ rot_y.T + c).astype(np.float32))[1])
    assert abs(abs(yaw1 - yaw0) - 20) < 2 and abs(pitch1 - pitch0) < 2 and abs(roll1 - roll0) < 2
    rot_x = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    yaw2, pitch2, _ = head_pose(align(((lm - c) @ rot_x.T + c).astype(np.float32))[1])
    assert abs(abs(pitch2 - pitch0) - 20) < 2 and abs(yaw2 - yaw0) < 2


def test_reversals_count_direction_changes():
    t = np.linspace(0, 2, 50)
    assert _reversals(5 * np.sin(2 * np.pi * t), 2.0) == 4  # 2 cycles: peak, trough, peak, trough
    assert _reversals(np.linspace(0, 10, 50), 2.0) == 0  # a steady turn is not a nod
    assert _reversals(0.5 * np.sin(2 * np.pi * 3 * t), 2.0) == 0  # jitter below the hysteresis
