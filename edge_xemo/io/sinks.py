"""Event sinks: JSON lines, a live terminal view (rich), and an overlay video.

Each sink is a callable taking one Event; `Fanout` sends every event to several sinks.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from pathlib import Path
from typing import Any, Callable

from ..core.events import Event
from ..core.types import Frame, StatusCode

log = logging.getLogger(__name__)


class Fanout:
    """Calls every sink with each event; one failing sink does not stop the others."""

    def __init__(self, sinks: list[Callable[[Event], None]]):
        self.sinks = sinks

    def __call__(self, event: Event) -> None:
        for sink in self.sinks:
            try:
                sink(event)
            except Exception as e:
                log.warning("sink %s failed: %s: %s", type(sink).__name__, type(e).__name__, e)

    def close(self) -> None:
        for sink in self.sinks:
            close = getattr(sink, "close", None)
            if close:
                close()


class JsonlSink:
    """One JSON object per line to a file or stdout ("-"); `token` events only if `tokens`.

    Each line leaves in one unbuffered write, so a process killed at any moment leaves whole lines
    only. When the target cannot be written (a full disk, a file removed from under a read-only
    mount), the partial line is cut off again, `on_error(message)` is called once and later events
    are not written: what was written before stays.
    """

    def __init__(self, path: str | Path = "-", tokens: bool = False, on_error: Callable[[str], None] | None = None):
        self.path = str(path)
        self._fd = (
            sys.stdout.fileno() if self.path == "-" else os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        )
        self.tokens = tokens
        self.on_error = on_error
        self.failed: OSError | None = None
        self._size = 0
        self._lock = threading.Lock()

    def __call__(self, event: Event) -> None:
        if event.type == "token" and not self.tokens:
            return
        line = (event.to_json() + "\n").encode("utf-8")
        with self._lock:
            if self.failed is not None or self._fd < 0:
                return
            try:
                if self.path == "-":
                    sys.stdout.flush()  # anything printed before stays before this line
                view = memoryview(line)
                while view:
                    view = view[os.write(self._fd, view) :]
                self._size += len(line)
            except OSError as e:
                self._fail(e)

    def _fail(self, error: OSError) -> None:
        self.failed = error
        if self.path != "-":
            try:
                os.ftruncate(self._fd, self._size)  # no half-written line
            except OSError:
                pass
        message = (
            f"cannot write events to {self.path}: {error.strerror or error}; {self._size} bytes written before stay"
        )
        if self.on_error is not None:
            self.on_error(message)

    def close(self) -> None:
        with self._lock:
            if self.path != "-" and self._fd >= 0:
                os.close(self._fd)
            self._fd = -1


def _cue_line(cues: list[dict], limit: int = 6) -> str:
    top = sorted(cues, key=lambda c: -c.get("intensity", 0))[:limit]
    return ", ".join(c["phrase"] for c in top) or "-"


def _emotion_line(emotion: dict) -> str:
    """Label, top scores, and what carried it (or why the judgement is unsure)."""
    scores = sorted(emotion.get("scores", {}).items(), key=lambda kv: -kv[1])[:3]
    line = f"{emotion.get('label', '?')} ({', '.join(f'{k} {v:.2f}' for k, v in scores)})"
    if emotion.get("outcome", "confident") != "confident":
        line += f" unsure: {emotion.get('reason')}"
    elif emotion.get("carried_by"):
        line += f" from {'; '.join(emotion['carried_by'])}"
    return line


_SHOWN = {
    StatusCode.DROPPED,
    StatusCode.CAMERA_LOST,
    StatusCode.MICROPHONE_LOST,
    StatusCode.AUDIO_OVERFLOW,
    StatusCode.STOPPED,
}
"""Statuses a plain (non-terminal) view prints besides errors."""


class ConsoleView:
    """The terminal view: current cues and the latest explanation.

    On a terminal it is a live rich panel, with the explanation streaming in as tokens come;
    otherwise (a pipe, CI) it prints one plain block per explanation and per problem.
    """

    def __init__(self, console=None, live: bool | None = None):
        from rich.console import Console

        self.console = console or Console(stderr=False)
        self.live_mode = self.console.is_terminal if live is None else live
        self.visual: list[dict] = []
        self.auditory: list[dict] = []
        self.window: tuple = (None, None)
        self.faces: set = set()  # the face ids with cues in the current window
        self.partial = ""
        self.explanation: dict | None = None
        self.people: dict = {}  # face id -> that person's latest explanation (with several people in view)
        self.status = ""
        self._live = None
        if self.live_mode:
            from rich.live import Live

            self._live = Live(self._render(), console=self.console, refresh_per_second=8, transient=False)
            self._live.start()

    def __call__(self, event: Event) -> None:
        d = event.to_dict()
        if event.type == "cues" and (d["t_start"], d["t_end"]) != self.window:
            # the first cues event of a window is the primary face's and carries the voice cues
            self.visual, self.auditory = d.get("visual_cues", []), d.get("auditory_cues", [])
            self.window, self.faces = (d["t_start"], d["t_end"]), set()
        if event.type == "cues":
            self.faces.add(d.get("face_id"))
        elif event.type == "token":
            self.partial += event.data.get("text", "")
        elif event.type == "explanation":
            self.explanation, self.partial = d, ""
            self.people = {**self.people, d.get("face_id"): d} if len(self.faces) > 1 else {}
            if not self.live_mode:
                self._print_explanation(d)
        elif event.type in ("status", "error"):
            self.status = f"{event.type}: {d.get('message', '')}"
            if not self.live_mode and (event.type == "error" or d.get("code") in _SHOWN):
                self.console.print(
                    f"[{'red' if event.type == 'error' else 'yellow'}]{self.status}[/]", markup=True, highlight=False
                )
        if self._live is not None:
            self._live.update(self._render())

    def _person(self, d: dict) -> str:
        """'person N: ' (', speaking' when the voice is theirs) with several people in view; else ''."""
        if len(self.faces) < 2 or d.get("face_id") is None:
            return ""
        return f"person {d['face_id']}{', speaking' if _speaking(d) else ''}: "

    def _print_explanation(self, d: dict) -> None:
        t0, t1 = d.get("t_start") or 0.0, d.get("t_end") or 0.0
        seen = ", ".join(d["perceived"]["visual"]) or "-"
        self.console.print(
            f"[bold][{t0:6.1f}-{t1:6.1f} s][/bold] {self._person(d)}seen: {seen} | "
            f"heard: {', '.join(d['perceived']['auditory']) or '-'} -> [bold]{_emotion_line(d['emotion'])}[/bold]"
            + ("" if d.get("valid", True) else f" [red](flagged: {d.get('problem')})[/red]"),
            markup=True,
            highlight=False,
        )
        self.console.print(f"    {d['text']}", markup=False, highlight=False)

    def _render(self):
        from rich.panel import Panel
        from rich.table import Table

        table = Table.grid(padding=(0, 1))
        table.add_column(style="bold cyan", no_wrap=True)
        table.add_column()
        if self.window[0] is not None:
            table.add_row("window", f"{self.window[0]:.1f}-{self.window[1]:.1f} s")
        table.add_row("face", _cue_line(self.visual))
        table.add_row("voice", _cue_line(self.auditory))
        for face_id, d in sorted(self.people.items(), key=lambda kv: str(kv[0])):
            table.add_row(f"person {face_id}", _emotion_line(d["emotion"]) + (" (speaking)" if _speaking(d) else ""))
        if self.explanation:
            table.add_row("emotion", _emotion_line(self.explanation["emotion"]))
            table.add_row("explanation", self.explanation["text"])
        if self.partial:
            table.add_row("thinking", self.partial)
        if self.status:
            table.add_row("status", self.status)
        return Panel(table, title="edge-xemo", border_style="blue")

    def close(self) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None


def _speaking(d: dict) -> bool:
    """Whether an explanation event's person is the one the window's voice is attributed to."""
    return d.get("face_id") is not None and (d.get("speaker") or {}).get("face_id") == d["face_id"]


class OverlayWriter:
    """Writes an overlay video (face boxes with each person's latest label, top cues, latest explanation) to an .mp4.

    Use `on_frame` as the analyzer's frame_callback and the writer itself as an event sink.
    Only written when asked for: raw frames never reach disk otherwise.
    """

    def __init__(self, path: str | Path, fps: float = 25.0):
        self.path = Path(path)
        self.fps = fps
        self._writer: Any = None  # a cv2.VideoWriter from the first frame on (its size)
        self._lines: list[str] = []
        self._explanation = ""
        self._labels: dict = {}  # face id -> its person's latest label, shown by its box
        self.frames_written = 0

    def __call__(self, event: Event) -> None:
        if event.type == "cues" and event.data.get("face_id") in (None, 0, 1):
            self._lines = [
                c["phrase"]
                for c in sorted(
                    event.data.get("visual_cues", []) + event.data.get("auditory_cues", []),
                    key=lambda c: -c["intensity"],
                )[:4]
            ]
        elif event.type == "explanation":
            emotion = event.data["emotion"]
            self._explanation = f"{emotion['label']}: {event.data['text']}"
            confidence = f" {emotion['confidence']:.2f}" if emotion.get("confidence") is not None else ""
            speaking = " speaking" if _speaking(event.data) else ""
            self._labels[event.data.get("face_id")] = f"{emotion['label']}{confidence}{speaking}"

    def on_frame(self, frame: Frame, observation) -> None:
        import cv2

        image = frame.image
        if image.ndim == 2:
            image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
        elif image.shape[2] == 4:
            image = cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
        else:
            image = image.copy()
        if self._writer is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            h, w = image.shape[:2]
            self._writer = cv2.VideoWriter(str(self.path), cv2.VideoWriter.fourcc(*"mp4v"), self.fps, (w, h))
            if not self._writer.isOpened():
                raise OSError(f"cannot write overlay video {self.path}")
        for face in getattr(observation, "faces", ()) or ():
            x0, y0, x1, y1 = (int(v) for v in face.box)
            cv2.rectangle(image, (x0, y0), (x1, y1), (0, 220, 0), 2)
            label = f"#{face.face_id} {self._labels.get(face.face_id, '')}".strip()
            cv2.putText(image, label, (x0, max(12, y0 - 4)), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 220, 0), 1)
        y = 16
        for line in self._lines:
            cv2.putText(image, line, (6, y), cv2.FONT_HERSHEY_SIMPLEX, 0.42, (255, 255, 255), 1, cv2.LINE_AA)
            y += 16
        lines = _wrap(self._explanation, max(20, image.shape[1] // 8))[:3]
        for i, line in enumerate(lines):
            y = image.shape[0] - 8 - 16 * (len(lines) - 1 - i)
            cv2.putText(image, line, (6, y), cv2.FONT_HERSHEY_SIMPLEX, 0.42, (0, 255, 255), 1, cv2.LINE_AA)
        self._writer.write(image)
        self.frames_written += 1

    def close(self) -> None:
        if self._writer is not None:
            self._writer.release()
            self._writer = None


def _wrap(text: str, width: int) -> list[str]:
    words, lines, cur = text.split(), [], ""
    for w in words:
        if len(cur) + len(w) + 1 > width and cur:
            lines.append(cur)
            cur = w
        else:
            cur = f"{cur} {w}".strip()
    if cur:
        lines.append(cur)
    return lines
