"""The terminal view and the overlay with two people in view."""

from __future__ import annotations

import io

import numpy as np

from edge_xemo.core.events import Event
from edge_xemo.core.types import FaceBox, Frame
from edge_xemo.io.sinks import ConsoleView, OverlayWriter

SPEAKER = {"face_id": 1, "reason": "face 1's mouth moves with the voice (r 0.70, next 0.20)", "scores": {}}


def _people() -> list[Event]:
    """One window: a cues event per face, then each person's explanation (face 1 speaking)."""
    out = [Event("cues", 0.0, 2.0, "cam", data={"face_id": f, "visual_cues": [], "auditory_cues": []}) for f in (0, 1)]
    for face, label in ((0, "neutral"), (1, "happy")):
        data = {"text": f"... the emotional state is {label}.", "face_id": face, "speaker": SPEAKER,
                "emotion": {"label": label, "scores": {label: 0.8}, "confidence": 0.8, "outcome": "confident"},
                "perceived": {"visual": ["smiling"] if face else [], "auditory": ["loud"] if face else []}}
        out.append(Event("explanation", 0.0, 2.0, "cam", data=data))
    return out


def test_the_terminal_names_each_person_and_who_speaks():
    from rich.console import Console

    text = io.StringIO()
    view = ConsoleView(Console(file=text, width=200), live=False)
    for event in _people():
        view(event)
    lines = [line for line in text.getvalue().splitlines() if "seen:" in line]
    assert "person 0: seen: -" in lines[0] and "neutral" in lines[0]
    assert "person 1, speaking: seen: smiling" in lines[1] and "happy" in lines[1]
    one = io.StringIO()
    alone = ConsoleView(Console(file=one, width=200), live=False)
    for event in _people()[:1] + _people()[2:3]:  # one face in the window: no names
        alone(event)
    assert "person" not in one.getvalue()


def test_the_overlay_labels_each_face_with_its_person_s_label(tmp_path):
    writer = OverlayWriter(tmp_path / "o.mp4")
    for event in _people():
        writer(event)
    assert writer._labels == {0: "neutral 0.80", 1: "happy 0.80 speaking"}

    class Seen:
        faces = (FaceBox(0, (10, 10, 60, 60), 1.0, 0.0), FaceBox(1, (100, 10, 150, 60), 1.0, 0.0))

    writer.on_frame(Frame(np.zeros((120, 200, 3), np.uint8), 0.0, 0), Seen())
    writer.close()
    assert writer.frames_written == 1 and (tmp_path / "o.mp4").stat().st_size > 0
