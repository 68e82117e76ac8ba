"""Facial cue reading on real landmarks (the landmark model's output on demo-clip faces), moved in the
head frame by known amounts: each cue must respond to its own movement."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edge_xemo.vision.face_cues import L_EYE, MEASURES, R_EYE, FaceCueReader, align, head_pose, measure
from edge_xemo.vision.window_cues import _reversals

REFERENCE = Path(__file__).parents[1] / "data" / "face_models_reference.npz"
FPS = 25.0


@pytest.fixture(scope="module")
def faces() -> list[np.ndarray]:
    """Real 468-point landmarks (crop pixels, upright faces) from the .tflite reference outputs."""
    raw = np.load(REFERENCE)["face_landmarks/conv2d_21"]
    return [r.reshape(468, 3).astype(np.float32) for r in raw]


def to_image(lm: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Inverse of `align`: head-frame points back to the landmark space of `lm`."""
    _, rot, iod = align(lm)
    origin = (lm[list(R_EYE)].mean(0) + lm[list(L_EYE)].mean(0)) / 2
    return (p * iod @ rot + origin).astype(np.float32)


def moved(lm: np.ndarray, idx, dx=0.0, dy=0.0) -> np.ndarray:
    p = align(lm)[0].copy()
    p[list(idx), 0] += dx
    p[list(idx), 1] += dy
    return to_image(lm, p)


def read(lm: np.ndarray, seconds: float = 3.0):
    reader = FaceCueReader()
    for i in range(int(seconds * FPS)):
        out = reader.update(lm, i / FPS)
    return out


def test_alignment_round_trip(faces):
    lm = faces[0]
    p = align(lm)[0]
    np.testing.assert_allclose(to_image(lm, p), lm, atol=1e-3)
    assert abs(p[list(R_EYE)].mean(0)[0] + 0.5) < 1e-6  # eyes at x = -0.5 and +0.5 inter-ocular units


@pytest.mark.parametrize("cue, idx, dx, dy", [
    ("lip_corner_pull", [61, 291, 185, 409, 146, 375], 0.0, -0.12),   # corners up
    ("lip_corner_depress", [61, 291, 146, 375], 0.0, 0.09),            # corners down
    ("outer_brow_raise", [70, 46, 63, 53, 300, 276, 293, 283], 0.0, -0.12),
    ("inner_brow_raise", [107, 55, 66, 65, 336, 285, 296, 295], 0.0, -0.12),
])
def test_each_cue_follows_its_movement(faces, cue, idx, dx, dy):
    for lm in faces:
        base, move = read(lm), read(moved(lm, idx, dx, dy))
        assert move.intensity[cue] >= base.intensity[cue] + 0.5, (cue, base.intensity[cue], move.intensity[cue])
        assert cue in move.on


def test_furrowed_brow(faces):
    lm = faces[0]
    p = align(lm)[0].copy()
    for side, sign in (([107, 55, 66, 65], 1.0), ([336, 285, 296, 295], -1.0)):
        p[side, 0] += sign * 0.04  # brows pulled together
        p[side, 1] += 0.03  # and down
    out = read(to_image(lm, p))
    assert "brow_lower" in out.on and out.intensity["brow_lower"] > read(lm).intensity["brow_lower"] + 0.5


def test_jaw_drop_parts_the_lips(faces):
    lm = faces[1]
    p = align(lm)[0].copy()
    below = p[:, 1] > (p[13, 1] + p[14, 1]) / 2 + 1e-3
    below[13] = False
    p[below, 1] += 0.3
    out = read(to_image(lm, p))
    assert {"jaw_drop", "lips_part"} <= out.on


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


def test_blinks_are_counted_once_and_long_closures_are_not_blinks(faces):
    lm = faces[0]
    p = align(lm)[0]
    lids = [159, 145, 158, 153, 160, 144, 386, 374, 385, 380, 387, 373]
    closed = p.copy()
    centre = (p[[159, 145]].mean(0)[1], p[[386, 374]].mean(0)[1])
    for i in lids:
        closed[i, 1] = centre[0 if i < 200 else 1] + (p[i, 1] - centre[0 if i < 200 else 1]) * 0.4
    closed_lm = to_image(lm, closed)
    reader, blinks = FaceCueReader(), 0
    for k in range(250):  # 10 s: a 120 ms closure every 2 s, then one 2 s closure
        shut = (k % 50) in (25, 26, 27) or 200 <= k < 250
        out = reader.update(closed_lm if shut else lm, k / FPS)
        blinks += out.blink
    assert blinks == 4
    assert out.blink_rate == pytest.approx(4 * 60 / 10, rel=0.01)
    assert measure(closed)[3] < 0.5 * measure(p)[3]


def test_blinks_follow_the_source_clock_not_the_frame_count(faces):
    """At 60 frames/s, one-frame lid glitches (17 ms) are no blinks; a real 150 ms closure is one."""
    lm = faces[0]
    p = align(lm)[0]
    closed = p.copy()
    for i in (159, 145, 158, 153, 160, 144, 386, 374, 385, 380, 387, 373):
        c = p[[159, 145]].mean(0)[1] if i < 200 else p[[386, 374]].mean(0)[1]
        closed[i, 1] = c + (p[i, 1] - c) * 0.4
    closed_lm = to_image(lm, closed)
    reader, blinks = FaceCueReader(), 0
    for k in range(600):  # 10 s at 60 fps: a one-frame glitch every second, a 150 ms closure every 5 s
        shut = k % 60 == 30 or k % 300 in range(100, 109)
        blinks += reader.update(closed_lm if shut else lm, k / 60.0).blink
    assert blinks == 2


def test_reversals_count_direction_changes():
    t = np.linspace(0, 2, 50)
    assert _reversals(5 * np.sin(2 * np.pi * t), 2.0) == 4  # 2 cycles: peak, trough, peak, trough
    assert _reversals(np.linspace(0, 10, 50), 2.0) == 0  # a steady turn is not a nod
    assert _reversals(0.5 * np.sin(2 * np.pi * 3 * t), 2.0) == 0  # jitter below the hysteresis


def test_measures_are_the_geometry_they_name(faces):
    """The linear map in `measure` against each measure written out on a real face (heights are -y)."""
    p = align(faces[0])[0]
    m = dict(zip(MEASURES, measure(p)))
    assert m["brow_inner_h"] == pytest.approx(-p[[107, 55, 336, 285], 1].mean())
    assert m["brow_gap"] == pytest.approx(p[285, 0] - p[55, 0])
    assert m["eye_open"] == pytest.approx(np.mean([p[b, 1] - p[a, 1] for a, b in
                                                   ((159, 145), (158, 153), (160, 144), (386, 374), (385, 380), (387, 373))]))
    assert m["corner_up"] == pytest.approx((p[13, 1] + p[14, 1]) / 2 - (p[61, 1] + p[291, 1]) / 2)
    assert m["mouth_width"] == pytest.approx(p[291, 0] - p[61, 0])
    assert m["lip_red"] == pytest.approx(p[13, 1] - p[0, 1] + p[17, 1] - p[14, 1])
    assert m["jaw"] == pytest.approx(p[152, 1] - p[1, 1])
    shut = p.copy()
    shut[14, 1] = shut[13, 1] - 0.05  # inner lips crossed: no gap, never a negative one
    assert measure(shut)[MEASURES.index("lip_gap")] == 0.0
