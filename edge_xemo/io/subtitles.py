"""Timed subtitles from .srt and .vtt files, routed to the windows they overlap."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from .sources import SourceError

_TIME = re.compile(r"(?:(\d+):)?(\d{1,2}):(\d{2})[.,](\d{1,3})\s*-->\s*(?:(\d+):)?(\d{1,2}):(\d{2})[.,](\d{1,3})")
_TAGS = re.compile(r"<[^>]+>|\{\\[^}]*\}")


@dataclass(frozen=True, slots=True)
class TimedText:
    """One subtitle cue: `text` shown from `start` to `end` (seconds on the media clock)."""

    start: float
    end: float
    text: str


def _seconds(h, m, s, ms) -> float:
    return int(h or 0) * 3600 + int(m) * 60 + int(s) + int(ms.ljust(3, "0")) / 1000


def read_subtitles(path: Path) -> tuple[TimedText, ...]:
    """The cues of an .srt or .vtt file, in time order. SourceError (one line) when it has none."""
    path = Path(path)
    try:
        raw = path.read_bytes().decode("utf-8-sig", errors="replace")
    except OSError as e:
        raise SourceError(f"cannot read subtitle file {path}: {e.strerror or e}") from e
    cues = []
    for block in re.split(r"\r?\n\s*\r?\n", raw):
        lines = [line.strip() for line in block.strip().splitlines()]
        for i, line in enumerate(lines):
            m = _TIME.search(line)
            if m:
                text = " ".join(_TAGS.sub("", t) for t in lines[i + 1 :] if t).strip()
                start, end = _seconds(*m.groups()[:4]), _seconds(*m.groups()[4:])
                if text and end > start:
                    cues.append(TimedText(start, end, text))
                break
    if not cues:
        raise SourceError(f"{path} has no timed subtitle cues (expected .srt or .vtt)")
    return tuple(sorted(cues, key=lambda c: c.start))


def text_during(cues: tuple[TimedText, ...], t_start: float, t_end: float) -> str | None:
    """The words of the cues that overlap [t_start, t_end), joined (None when none does)."""
    text = " ".join(c.text for c in cues if c.start < t_end and c.end > t_start)
    return text or None
