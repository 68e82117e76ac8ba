"""Face detection (BlazeFace short range), 478-point landmark tracking and blendshapes (numpy, LiteRT,
onnxruntime, OpenCV).

The detector is MediaPipe's `face_detection_short_range.tflite` converted to ONNX (`export/face_models.py`).
The landmark and blendshape models are MediaPipe Face Landmarker's (`face_landmarks_detector.tflite`,
`face_blendshapes.tflite`, installed from its task bundle by `export/face_landmarker.py`; their ONNX
conversions serve the GPU path). Between detections a face is followed with the region of interest derived
from its previous landmarks (as MediaPipe's face mesh does); the landmark model's face-presence score drops a
lost track. Coordinates are image pixels.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

import cv2
import numpy as np

from ..core.models import RUNTIMES, litert_installed, load_session, runs_on_cpu
from ..core.types import ResultCode

DETECTOR_SIZE = 128
LANDMARK_SIZE = 256
N_LANDMARKS = 478
BLENDSHAPE_POINTS = np.array(
    [0, 1, 4, 5, 6, 7, 8, 10, 13, 14, 17, 21, 33, 37, 39, 40, 46, 52, 53, 54, 55, 58, 61, 63, 65, 66, 67, 70, 78, 80,
     81, 82, 84, 87, 88, 91, 93, 95, 103, 105, 107, 109, 127, 132, 133, 136, 144, 145, 146, 148, 149, 150, 152, 153,
     154, 155, 157, 158, 159, 160, 161, 162, 163, 168, 172, 173, 176, 178, 181, 185, 191, 195, 197, 234, 246, 249,
     251, 263, 267, 269, 270, 276, 282, 283, 284, 285, 288, 291, 293, 295, 296, 297, 300, 308, 310, 311, 312, 314,
     317, 318, 321, 323, 324, 332, 334, 336, 338, 356, 361, 362, 365, 373, 374, 375, 377, 378, 379, 380, 381, 382,
     384, 385, 386, 387, 388, 389, 390, 397, 398, 400, 402, 405, 409, 415, 454, 466, 468, 469, 470, 471, 472, 473,
     474, 475, 476, 477]
)  # fmt: skip
"""The 146 landmarks the blendshape model reads (MediaPipe's face_blendshapes_graph.cc, kLandmarksSubsetIdxs)."""
BLENDSHAPES = (
    "_neutral", "browDownLeft", "browDownRight", "browInnerUp", "browOuterUpLeft", "browOuterUpRight", "cheekPuff",
    "cheekSquintLeft", "cheekSquintRight", "eyeBlinkLeft", "eyeBlinkRight", "eyeLookDownLeft", "eyeLookDownRight",
    "eyeLookInLeft", "eyeLookInRight", "eyeLookOutLeft", "eyeLookOutRight", "eyeLookUpLeft", "eyeLookUpRight",
    "eyeSquintLeft", "eyeSquintRight", "eyeWideLeft", "eyeWideRight", "jawForward", "jawLeft", "jawOpen", "jawRight",
    "mouthClose", "mouthDimpleLeft", "mouthDimpleRight", "mouthFrownLeft", "mouthFrownRight", "mouthFunnel",
    "mouthLeft", "mouthLowerDownLeft", "mouthLowerDownRight", "mouthPressLeft", "mouthPressRight", "mouthPucker",
    "mouthRight", "mouthRollLower", "mouthRollUpper", "mouthShrugLower", "mouthShrugUpper", "mouthSmileLeft",
    "mouthSmileRight", "mouthStretchLeft", "mouthStretchRight", "mouthUpperUpLeft", "mouthUpperUpRight",
    "noseSneerLeft", "noseSneerRight",
)  # fmt: skip
"""The blendshape model's 52 outputs in order (face_blendshapes_graph.cc, kBlendshapeNames; ARKit names)."""
RIGHT_EYE_OUTER, LEFT_EYE_OUTER = 33, 263  # the subject's eyes; the right one is on the image's left
SURE_PRESENCE = 0.9
"""Face presence from which the landmark model is sure of a face (`FaceTrackerOptions.sure_keypoint_error`)."""


@dataclass(frozen=True, slots=True)
class FaceTrackerOptions:
    """How faces are found and followed.

    detect_every: run the detector every N frames (and whenever no face is tracked).
    max_faces: faces tracked at once; the largest are kept.
    min_face_px: faces whose box is narrower than this many pixels are ignored.
    detect_threshold: BlazeFace score needed for a detection.
    presence_threshold: landmark-model face-presence probability below which a track is dropped.
    max_keypoint_error: a new track becomes a face only when the landmark model's eye centres lie within
      this fraction of the detector's eye distance from the detector's eye keypoints (two models that
      agree on where the eyes are). 0.155, measured with the 478-point model (tests/vision/test_face_evidence.py):
      real faces of the demo clip, upright, rotated +-35 degrees and squeezed to 60 % width, <= 0.14; detections
      on a title card, a cartoon smiley and scikit-learn's two photos without people, >= 0.169 (the flower; its
      face-presence probability is 0.0, so `presence_threshold` rejects it too).
    sure_keypoint_error: the same gate for a face the landmark model is sure of (presence >= `SURE_PRESENCE`). A face
      turned three-quarters puts BlazeFace's eye keypoints further from the mesh's eyes: 0.16-0.24 on the XEmoGPT
      sample's woman on the phone, a real face the 0.155 gate kept out of every two-person clip built with her
      (benchmarks/speakers.py); no phantom detection of those test images reaches presence 0.34 (the highest, a
      cartoon smiley), so 0.3 lets such faces in without letting phantoms through.
    nms_iou: overlap above which detections are merged (weighted NMS).
    match_iou: box overlap needed to give a detection the id of an existing track.
    reid_s: a face lost (covered, turned away, out of frame) keeps its id this many seconds: a new face whose box
      overlaps the lost one's last box by `reid_iou` or more takes it back, with its cue reader, neutral and
      smoothing (`vision.stage`), instead of starting as a new person. 3 s: a hand over the face, a look away or
      a passer-by in front lasts a second or two; after longer, someone else standing where that person stood is
      as likely. The position and the look are compared (`reid_iou`, `reid_look`).
    reid_iou: box overlap with a lost face's last box that gives its id back (lower than `match_iou`: the
      person moved while hidden).
    reid_look: and how alike the two must look (`appearance`, correlation of hue-saturation histograms), so that
      someone else stepping in where a person was lost does not take their id. 0.6, between what was measured
      (tests/vision/test_visual.py's people): the same face over 4 s, >= 0.986 (cap13, RAVDESS actor 01, the
      XEmoGPT woman); two of those people, <= 0.276.
    roi_scale: the landmark crop is this many times the face's size (MediaPipe uses 1.5).
    tile_wide_frames: when fewer than `max_faces` are found, also search square tiles of a wide (or tall) frame
      for faces too small for the letterboxed view (costs 2-3 more detector runs on such frames).
    blendshapes: run the blendshape model on every tracked face (`TrackedFace.blendshapes`).
    landmark_runtime: what runs the landmark and blendshape graphs: "litert" (LiteRT's XNNPACK on the original .tflite;
      the `litert` extra), "opencv" (OpenCV's DNN module on the ONNX), "onnxruntime", or "auto": LiteRT
      when onnxruntime would run on the CPU and the extra is installed, else OpenCV there; onnxruntime
      when it has a GPU provider. On one core, on the demo clip's face crops, OpenCV takes 0.65-0.78x
      onnxruntime's time and LiteRT 0.6-0.7x OpenCV's (`python benchmarks/bench_visual.py --runtimes`,
      docs/speed.md); all three are within 2e-4 crop pixels of the .tflite's own outputs. onnxruntime
      stays faster for the detector and the expression encoder, which it keeps.
    """

    detect_every: int = 10
    max_faces: int = 4
    min_face_px: int = 24
    detect_threshold: float = 0.5
    presence_threshold: float = 0.5
    max_keypoint_error: float = 0.155
    sure_keypoint_error: float = 0.3
    nms_iou: float = 0.3
    match_iou: float = 0.3
    reid_s: float = 3.0
    reid_iou: float = 0.2
    reid_look: float = 0.6
    roi_scale: float = 1.5
    tile_wide_frames: bool = True
    landmark_runtime: str = "auto"
    blendshapes: bool = True

    def __post_init__(self):
        if self.landmark_runtime not in ("auto", *RUNTIMES):
            raise ValueError(f"landmark_runtime must be auto, {' or '.join(RUNTIMES)}; got {self.landmark_runtime!r}")
        if self.detect_every < 1:
            raise ValueError(f"detect_every must be >= 1, got {self.detect_every}")
        if self.max_faces < 1:
            raise ValueError(f"max_faces must be >= 1, got {self.max_faces}")
        if self.min_face_px < 0:
            raise ValueError(f"min_face_px must be >= 0, got {self.min_face_px}")
        if self.reid_s < 0:
            raise ValueError(f"reid_s must be >= 0, got {self.reid_s}")


@dataclass(frozen=True, slots=True)
class Detection:
    """One BlazeFace detection in pixels: box (x0, y0, x1, y1), score, 6 keypoints (6, 2).

    Keypoints: right eye, left eye, nose tip, mouth centre, right ear tragion, left ear tragion.
    """

    box: tuple[float, float, float, float]
    score: float
    keypoints: np.ndarray


@dataclass(frozen=True, slots=True)
class TrackedFace:
    """One tracked face in one frame: 478 landmarks (x, y in pixels, z in pixels of the same scale; 468 mesh
    points, then 5 per iris, right iris first) and its 52 blendshape scores (`BLENDSHAPES` order; None when
    the tracker runs without them)."""

    face_id: int
    landmarks: np.ndarray  # (478, 3) float32
    box: tuple[float, float, float, float]
    score: float  # face-presence probability of the landmark model
    t: float
    blendshapes: np.ndarray | None = None  # (52,) float32


@dataclass(frozen=True, slots=True)
class FaceFrame:
    """What the tracker saw in one frame; `code` (and `message`) say why `faces` is empty."""

    faces: tuple[TrackedFace, ...]
    t: float
    detected: bool
    code: ResultCode | None = None
    message: str | None = None
    latency_ms: dict | None = None


def ssd_anchors() -> np.ndarray:
    """BlazeFace short-range anchor centres (896, 2) in [0, 1] (strides 8, 16, 16, 16; fixed size)."""
    centres = []
    for stride, per_cell in ((8, 2), (16, 6)):
        n = DETECTOR_SIZE // stride
        ys, xs = np.meshgrid((np.arange(n) + 0.5) / n, (np.arange(n) + 0.5) / n, indexing="ij")
        grid = np.stack([xs.ravel(), ys.ravel()], axis=1)
        centres.append(np.repeat(grid, per_cell, axis=0))
    return np.concatenate(centres).astype(np.float32)


_ANCHORS = ssd_anchors()


def as_bgr(image: np.ndarray) -> np.ndarray:
    """A uint8 (H, W, 3) view of a BGR, BGRA or grayscale image; ValueError names what is wrong."""
    if not isinstance(image, np.ndarray):
        raise ValueError(f"frame image must be a numpy array, got {type(image).__name__}")
    if image.dtype != np.uint8:
        raise ValueError(f"frame image must be uint8, got {image.dtype}")
    if image.ndim == 2:
        return cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_GRAY2BGR)
    if image.ndim == 3 and image.shape[2] == 1:
        return cv2.cvtColor(np.ascontiguousarray(image[:, :, 0]), cv2.COLOR_GRAY2BGR)
    if image.ndim == 3 and image.shape[2] == 4:
        return cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_BGRA2BGR)
    if image.ndim == 3 and image.shape[2] == 3:
        return np.ascontiguousarray(image)
    raise ValueError(f"frame image must be (H, W), (H, W, 3) or (H, W, 4), got shape {image.shape}")


def box_area(box) -> float:
    return (box[2] - box[0]) * (box[3] - box[1])


def iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = box_area(a) + box_area(b) - inter
    return inter / union if union > 0 else 0.0


def detector_input(bgr: np.ndarray) -> tuple[np.ndarray, float, float, float]:
    """Letterbox to 128x128 RGB in [-1, 1]; returns (tensor (1, 128, 128, 3), scale, pad_x, pad_y)."""
    h, w = bgr.shape[:2]
    scale = DETECTOR_SIZE / max(h, w)
    nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
    small = cv2.resize(bgr, (nw, nh), interpolation=cv2.INTER_AREA)
    canvas = np.zeros((DETECTOR_SIZE, DETECTOR_SIZE, 3), np.uint8)
    px, py = (DETECTOR_SIZE - nw) // 2, (DETECTOR_SIZE - nh) // 2
    canvas[py : py + nh, px : px + nw] = small
    x = cv2.cvtColor(canvas, cv2.COLOR_BGR2RGB).astype(np.float32) * (2.0 / 255.0) - 1.0
    return x[None], scale, px, py


def decode_detections(regressors: np.ndarray, logits: np.ndarray, threshold: float, nms_iou: float):
    """Raw BlazeFace outputs (896, 16), (896,) -> list of (box (4,), score, keypoints (6, 2)) in [0, 128]."""
    scores = 1.0 / (1.0 + np.exp(-np.clip(logits, -80.0, 80.0)))
    keep = np.flatnonzero(scores >= threshold)
    if keep.size == 0:
        return []
    raw = regressors[keep]
    centres = _ANCHORS[keep] * DETECTOR_SIZE
    cxy = raw[:, 0:2] + centres
    half = raw[:, 2:4] / 2.0
    boxes = np.concatenate([cxy - half, cxy + half], axis=1)
    kps = raw[:, 4:16].reshape(-1, 6, 2) + centres[:, None, :]
    return weighted_nms(boxes, scores[keep], kps, nms_iou)


def weighted_nms(boxes, scores, kps, nms_iou):
    """MediaPipe's weighted NMS: overlapping candidates are averaged by score."""
    order = np.argsort(-scores)
    out = []
    while order.size:
        first = order[0]
        overlaps = np.array([iou(boxes[first], boxes[j]) for j in order])
        group = order[overlaps > nms_iou]
        w = scores[group][:, None]
        box = (boxes[group] * w).sum(0) / w.sum()
        kp = (kps[group] * w[:, :, None]).sum(0) / w.sum()
        out.append((box, float(scores[first]), kp))
        order = order[overlaps <= nms_iou]
    return out


def eye_disagreement(landmarks: np.ndarray, keypoints: np.ndarray) -> float:
    """Mean distance between the landmark model's eye centres and the detector's eye keypoints (either
    order), as a fraction of the detector's eye distance."""
    lm = landmarks[:, :2]
    eyes = ((lm[33] + lm[133]) / 2, (lm[263] + lm[362]) / 2)
    a, b = keypoints[0], keypoints[1]
    spread = max(float(np.linalg.norm(a - b)), 1.0)
    same = np.linalg.norm(eyes[0] - a) + np.linalg.norm(eyes[1] - b)
    swapped = np.linalg.norm(eyes[0] - b) + np.linalg.norm(eyes[1] - a)
    return float(min(same, swapped) / 2 / spread)


def roi_crop_matrix(cx: float, cy: float, size: float, angle: float) -> np.ndarray:
    """2x3 affine that maps landmark-input pixels (256x256) to image pixels for a rotated square ROI."""
    c, s = np.cos(angle), np.sin(angle)
    k = size / LANDMARK_SIZE
    half = LANDMARK_SIZE / 2.0
    return np.array(
        [[k * c, -k * s, cx - k * (c * half - s * half)], [k * s, k * c, cy - k * (s * half + c * half)]],
        np.float64,
    )


def landmark_input(bgr: np.ndarray, roi: tuple[float, float, float, float]) -> tuple[np.ndarray, np.ndarray]:
    """The landmark model's input for a rotated square ROI (1x256x256x3 RGB in [0, 1]) and its crop matrix."""
    m = roi_crop_matrix(*roi)
    crop = cv2.warpAffine(
        bgr,
        m,
        (LANDMARK_SIZE, LANDMARK_SIZE),
        flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
        borderMode=cv2.BORDER_CONSTANT,
    )
    return (cv2.cvtColor(crop, cv2.COLOR_BGR2RGB).astype(np.float32) * (1.0 / 255.0))[None], m


@dataclass(slots=True)
class _Track:
    face_id: int
    roi: tuple[float, float, float, float]  # cx, cy, size, angle
    box: tuple[float, float, float, float]
    landmarks: np.ndarray | None = None
    age: int = 0
    keypoints: np.ndarray | None = None  # the detector's 6 keypoints, until the first landmarks confirm them
    seen: float = 0.0  # source time of its last frame with landmarks
    look: np.ndarray | None = None  # its appearance in that frame (`appearance`)


@dataclass(frozen=True, slots=True)
class _Lost:
    """A face no longer tracked: its id, where and when it was last seen and how it looked (for `reid_s`)."""

    face_id: int
    box: tuple[float, float, float, float]
    seen: float
    look: np.ndarray | None


def appearance(bgr: np.ndarray, box: tuple[float, float, float, float]) -> np.ndarray | None:
    """How a face looks, for telling people apart: the hue-saturation histogram (16 x 8 bins) of its box at 32x32
    pixels, summing to 1 (skin, hair and what is worn around the face); None for an empty box."""
    h, w = bgr.shape[:2]
    x0, y0, x1, y1 = (int(round(v)) for v in box)
    crop = bgr[max(0, y0) : min(h, y1), max(0, x0) : min(w, x1)]
    if crop.size == 0:
        return None
    hsv = cv2.cvtColor(cv2.resize(crop, (32, 32), interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2HSV)
    hist = cv2.calcHist([hsv], [0, 1], None, [16, 8], [0, 180, 0, 256]).ravel()
    return hist / max(float(hist.sum()), 1e-9)


def alike(a: np.ndarray | None, b: np.ndarray | None) -> float:
    """The correlation of two appearances (1: the same histogram); 1 when either is unknown."""
    if a is None or b is None:
        return 1.0
    return float(cv2.compareHist(a.astype(np.float32), b.astype(np.float32), cv2.HISTCMP_CORREL))


class FaceTracker:
    """Detects and tracks faces; `track(image, t)` returns a FaceFrame (never raises on odd frames)."""

    def __init__(self, options: FaceTrackerOptions | None = None, threads: int = 1, provider: str = "cpu"):
        self.options = options or FaceTrackerOptions()
        self._detector = load_session("face_detector", threads, provider)
        runtime = self.options.landmark_runtime
        if runtime == "auto":
            runtime = ("litert" if litert_installed() else "opencv") if runs_on_cpu(provider) else "onnxruntime"
        self.landmark_runtime = runtime
        """What runs the landmark graph ("auto" resolved)."""
        self._landmarker = load_session("face_landmarks478", threads, provider, runtime)
        self._blendshaper = (
            load_session("face_blendshapes", threads, provider, runtime) if self.options.blendshapes else None
        )
        self._det_in = self._detector.get_inputs()[0].name
        self._lm_in = self._landmarker.get_inputs()[0].name
        self._bs_in = self._blendshaper.get_inputs()[0].name if self._blendshaper is not None else ""
        self.reset()

    def reset(self) -> None:
        """Forget all tracks (a new source)."""
        self._tracks: list[_Track] = []
        self._lost: list[_Lost] = []
        self._next_id = 0
        self._since_detect = 10**9

    # -- models -------------------------------------------------------------------------------
    def detect(self, bgr: np.ndarray) -> list[Detection]:
        """BlazeFace on one BGR frame; detections in image pixels, best first.

        The short-range model sees the frame letterboxed to 128x128, so on a wide frame a face
        narrower than ~15 % of the width is missed; when the whole frame gives fewer than `max_faces` and
        `tile_wide_frames` is on, square tiles across the long side are searched too (640x360:
        faces down to ~50 px instead of ~85 px; two people side by side are both found).
        """
        h, w = bgr.shape[:2]
        found = self._detect_region(bgr, 0, 0)
        if len(found) < self.options.max_faces and self.options.tile_wide_frames and max(h, w) >= 1.3 * min(h, w):
            side, long = min(h, w), max(h, w)  # tiles overlap by half: a face up to half a tile wide is whole in one
            for off in np.linspace(0, long - side, int(np.ceil((long - side) / (side / 2))) + 1).round().astype(int):
                tile = bgr[:, off : off + side] if w > h else bgr[off : off + side]
                found += self._detect_region(tile, off if w > h else 0, off if h > w else 0)
            if found:
                boxes, scores, kps = (np.array(v) for v in zip(*found))
                found = weighted_nms(boxes, scores, kps, self.options.nms_iou)
        out = []
        for box, score, kp in found:
            b = (max(0.0, box[0]), max(0.0, box[1]), min(float(w), box[2]), min(float(h), box[3]))
            if b[2] > b[0] and b[3] > b[1]:
                box4 = (float(b[0]), float(b[1]), float(b[2]), float(b[3]))
                out.append(Detection(box4, float(score), kp.astype(np.float32)))
        return out

    def _detect_region(self, bgr: np.ndarray, x0: int, y0: int) -> list:
        """(box, score, keypoints) in pixels of the full frame, for a region whose corner is (x0, y0)."""
        x, scale, px, py = detector_input(np.ascontiguousarray(bgr))
        regressors, logits = self._detector.run(None, {self._det_in: x})
        found = decode_detections(regressors[0], logits[0, :, 0], self.options.detect_threshold, self.options.nms_iou)
        shift = np.array([x0, y0])
        return [
            ((box - np.array([px, py, px, py])) / scale + np.tile(shift, 2), score, (kp - [px, py]) / scale + shift)
            for box, score, kp in found
        ]

    def landmarks(self, bgr: np.ndarray, roi: tuple[float, float, float, float]) -> tuple[np.ndarray, float]:
        """478 landmarks (image pixels) and face-presence probability inside a rotated square ROI."""
        x, m = landmark_input(bgr, roi)
        raw, presence = self._landmarker.run(None, {self._lm_in: x})[:2]
        pts = raw.reshape(N_LANDMARKS, 3).astype(np.float64)
        xy = pts[:, :2] @ m[:, :2].T + m[:, 2]
        z = pts[:, 2] * (roi[2] / LANDMARK_SIZE)
        prob = float(1.0 / (1.0 + np.exp(-float(presence.ravel()[0]))))
        return np.column_stack([xy, z]).astype(np.float32), prob

    def blendshapes(self, landmarks: np.ndarray) -> np.ndarray:
        """The 52 blendshape scores (`BLENDSHAPES` order) of one face's 478 landmarks (pixels: the model is
        scale-free; MediaPipe feeds it image pixels too)."""
        assert self._blendshaper is not None, "the tracker runs without blendshapes"
        points = np.ascontiguousarray(landmarks[BLENDSHAPE_POINTS, :2], np.float32)[None]
        (scores,) = self._blendshaper.run(None, {self._bs_in: points})
        return np.asarray(scores, np.float32).reshape(len(BLENDSHAPES))

    # -- ROI geometry -------------------------------------------------------------------------
    def _roi_from_detection(self, det: Detection) -> tuple[float, float, float, float]:
        (rx, ry), (lx, ly) = det.keypoints[0], det.keypoints[1]
        angle = -np.arctan2(-(ly - ry), lx - rx)
        x0, y0, x1, y1 = det.box
        return self._roi(((x0 + x1) / 2, (y0 + y1) / 2), (x1 - x0, y1 - y0), angle)

    def _roi_from_landmarks(self, lm: np.ndarray) -> tuple[float, float, float, float]:
        right, left = lm[RIGHT_EYE_OUTER], lm[LEFT_EYE_OUTER]
        angle = -np.arctan2(-(left[1] - right[1]), left[0] - right[0])
        c, s = np.cos(angle), np.sin(angle)
        # box of the landmarks in the face's rotated frame, so a tilted head does not inflate it
        rot = lm[:, :2] @ np.array([[c, -s], [s, c]])
        lo, hi = rot.min(0), rot.max(0)
        mid = (lo + hi) / 2
        centre = (mid[0] * c - mid[1] * s, mid[0] * s + mid[1] * c)
        return self._roi(centre, hi - lo, angle)

    def _roi(self, centre, wh, angle) -> tuple[float, float, float, float]:
        size = float(max(wh)) * self.options.roi_scale
        return float(centre[0]), float(centre[1]), size, float(angle)

    # -- tracking -----------------------------------------------------------------------------
    def track(self, image: np.ndarray, t: float) -> FaceFrame:
        """Follow faces into this frame; detection runs every `detect_every` frames or when none is tracked."""
        try:
            bgr = as_bgr(image)
        except ValueError as e:
            return FaceFrame((), t, False, ResultCode.BAD_FRAME, f"bad frame: {e}", latency_ms={})
        if bgr.shape[0] < 8 or bgr.shape[1] < 8:
            return FaceFrame(
                (),
                t,
                False,
                ResultCode.FRAME_TOO_SMALL,
                f"frame too small ({bgr.shape[1]}x{bgr.shape[0]})",
                latency_ms={},
            )
        opts = self.options
        lat = {"detect": 0.0, "landmarks": 0.0, "blendshapes": 0.0}
        detected, too_small = False, False
        self._since_detect += 1
        if not self._tracks or self._since_detect >= opts.detect_every:
            t0 = time.perf_counter()
            dets = self.detect(bgr)
            lat["detect"] = (time.perf_counter() - t0) * 1e3
            self._since_detect, detected = 0, True
            big = [d for d in dets if d.box[2] - d.box[0] >= opts.min_face_px]
            too_small = bool(dets) and not big
            self._merge_detections(big, t, bgr)
        t0 = time.perf_counter()
        faces = []
        for tr in list(self._tracks):
            lm, prob = self.landmarks(bgr, tr.roi)
            if prob < opts.presence_threshold or (
                tr.keypoints is not None
                and eye_disagreement(lm, tr.keypoints)
                > (opts.sure_keypoint_error if prob >= SURE_PRESENCE else opts.max_keypoint_error)
            ):
                self._tracks.remove(tr)
                if tr.landmarks is not None:  # a face that was seen, not a detection that never became one
                    self._lost.append(_Lost(tr.face_id, tr.box, tr.seen, tr.look))
                continue
            tr.landmarks, tr.age, tr.keypoints, tr.seen = lm, tr.age + 1, None, t
            tr.box = (float(lm[:, 0].min()), float(lm[:, 1].min()), float(lm[:, 0].max()), float(lm[:, 1].max()))
            tr.look = appearance(bgr, tr.box)
            tr.roi = self._roi_from_landmarks(lm)
            faces.append(TrackedFace(tr.face_id, lm, tr.box, prob, t))
        lat["landmarks"] = (time.perf_counter() - t0) * 1e3
        if self._blendshaper is not None and faces:
            t0 = time.perf_counter()
            faces = [replace(f, blendshapes=self.blendshapes(f.landmarks)) for f in faces]
            lat["blendshapes"] = (time.perf_counter() - t0) * 1e3
        faces = self._drop_duplicates(faces)
        code = None
        if not faces:
            code = ResultCode.FACE_TOO_SMALL if too_small else ResultCode.NO_FACE
        return FaceFrame(tuple(faces), t, detected, code, code.text if code else None, lat)

    def _merge_detections(self, dets: list[Detection], t: float, bgr: np.ndarray) -> None:
        """Give detections the ids of overlapping tracks; start tracks for new faces (with the id of a face lost
        there less than `reid_s` ago, else a new one); keep the largest."""
        unmatched = []
        for det in dets:
            best, best_iou = None, self.options.match_iou
            for tr in self._tracks:
                o = iou(det.box, tr.box)
                if o > best_iou:
                    best, best_iou = tr, o
            if best is None:
                unmatched.append(det)
            elif best.landmarks is None:
                best.roi, best.box, best.keypoints = self._roi_from_detection(det), det.box, det.keypoints
        self._lost = [lost for lost in self._lost if t - lost.seen <= self.options.reid_s]
        faces: list[_Track | Detection] = sorted([*self._tracks, *unmatched], key=lambda f: -box_area(f.box))
        kept, dropped = faces[: self.options.max_faces], faces[self.options.max_faces :]
        self._lost += [
            _Lost(f.face_id, f.box, f.seen, f.look)
            for f in dropped
            if isinstance(f, _Track) and f.landmarks is not None
        ]
        self._tracks = [
            f
            if isinstance(f, _Track)
            else _Track(
                self._reid(f.box, appearance(bgr, f.box)),
                self._roi_from_detection(f),
                f.box,
                keypoints=f.keypoints,
                seen=t,
            )
            for f in kept
        ]

    def _reid(self, box: tuple[float, float, float, float], look: np.ndarray | None) -> int:
        """The id of the lost face that looks like `look` (`reid_look`) and whose last box overlaps `box` most (at
        least `reid_iou`), else a new id."""
        o = self.options
        candidates = [lost for lost in self._lost if alike(look, lost.look) >= o.reid_look]
        best = max(candidates, key=lambda lost: iou(box, lost.box), default=None)
        if best is not None and iou(box, best.box) >= o.reid_iou:
            self._lost.remove(best)
            return best.face_id
        self._next_id += 1
        return self._next_id - 1

    def _drop_duplicates(self, faces: list[TrackedFace]) -> list[TrackedFace]:
        """Two tracks that converged on one face: keep the older (lower id)."""
        keep: list[TrackedFace] = []
        for f in sorted(faces, key=lambda f: f.face_id):
            if all(iou(f.box, k.box) < 0.5 for k in keep):
                keep.append(f)
        dropped = {f.face_id for f in faces} - {k.face_id for k in keep}
        if dropped:
            self._tracks = [tr for tr in self._tracks if tr.face_id not in dropped]
        return keep
