"""Adapters for real annotated clip collections in three common layouts -> one `Clip` list.

- a manifest, CSV or JSONL, one clip per row: `video` (or `clip`/`path`/`file`), optional `audio`,
  `subtitle`, `description`, `label`, `name`; relative paths are resolved against `root`
  (default: the manifest's folder);
- an EMER-style description CSV (`name,english`, as in AffectGPT's EMER releases), optionally
  paired with a media folder holding `<name>.mp4` (or .avi/.mkv/.mov/.webm/.wav);
- a folder per label (`root/<label>/<clip>.mp4`, DFEW/RAVDESS-style exports).

Rows that cannot be used (malformed, missing or empty media, unknown label, duplicate name) are
skipped and REPORTED: counts per reason plus the first few row-level reasons go to the log and to
the returned `LoadReport`. Zero usable rows raise `DatasetError` naming the file. Torch-free: the
training stages and `edge-xemo eval clips` (edge_xemo.eval.evaluation) read clips through it.
"""

from __future__ import annotations

import csv
import io
import json
import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

VIDEO_EXTS = (".mp4", ".avi", ".mkv", ".mov", ".webm")
AUDIO_EXTS = (".wav", ".flac", ".mp3", ".ogg", ".m4a")
VIDEO_KEYS = ("video", "clip", "path", "file")
MAX_EXAMPLES = 5
"""Row-level reasons kept verbatim in a report (the rest are only counted)."""


class DatasetError(ValueError):
    """A dataset file or folder is unusable (absent, unreadable, or zero usable rows); names it."""


@dataclass(frozen=True, slots=True)
class Clip:
    """One annotated clip. `video`/`audio` are resolved, existing paths or None."""

    name: str
    video: Path | None = None
    audio: Path | None = None
    subtitle: str | None = None
    description: str | None = None
    label: str | None = None
    line: int = 0  # row (1-based line of the file) or 0 for folder layouts


@dataclass(frozen=True, slots=True)
class LoadReport:
    """What happened to every row of one source."""

    source: Path
    layout: str  # manifest | emer | folders
    rows: int  # rows (or files) read
    kept: int
    skipped: dict[str, int]  # reason -> count
    examples: tuple[str, ...]  # the first MAX_EXAMPLES row-level reasons, e.g. "line 4: video a.mp4 missing"

    def summary(self) -> str:
        counts = ", ".join(f"{n} {reason}" for reason, n in sorted(self.skipped.items())) or "none"
        return f"{self.source} ({self.layout}): {self.kept}/{self.rows} rows usable; skipped: {counts}"


@dataclass(frozen=True, slots=True)
class ClipSet:
    clips: tuple[Clip, ...]
    report: LoadReport

    def __len__(self) -> int:
        return len(self.clips)


@dataclass
class _Tally:
    source: Path
    layout: str
    rows: int = 0
    reasons: Counter = field(default_factory=Counter)
    examples: list = field(default_factory=list)

    def skip(self, where: str, reason: str, detail: str) -> None:
        self.reasons[reason] += 1
        if len(self.examples) < MAX_EXAMPLES:
            self.examples.append(f"{where}: {detail}")

    def finish(self, clips: list[Clip]) -> ClipSet:
        report = LoadReport(self.source, self.layout, self.rows, len(clips), dict(self.reasons), tuple(self.examples))
        if not clips:  # the error says it all: no log line besides it
            detail = f" (first problems: {'; '.join(report.examples)})" if report.examples else ""
            raise DatasetError(f"no usable rows in {self.source}: {report.summary()}{detail}")
        if self.reasons:
            log.warning("%s; first: %s", report.summary(), "; ".join(report.examples))
        else:
            log.info(report.summary())
        return ClipSet(tuple(clips), report)


def _media(value, root: Path, what: str, tally: _Tally, where: str) -> tuple[bool, Path | None]:
    """(ok, resolved path): a named file must exist and be non-empty; no name -> (True, None)."""
    if value is None or str(value).strip() == "":
        return True, None
    p = Path(str(value).strip())
    p = p if p.is_absolute() else root / p
    if not p.is_file():
        tally.skip(where, f"missing {what}", f"{what} {p} missing")
        return False, None
    if p.stat().st_size == 0:
        tally.skip(where, f"empty {what}", f"{what} {p} is empty")
        return False, None
    return True, p


def _text(value) -> str | None:
    s = "" if value is None else str(value).strip()
    return s or None


def _read_rows(path: Path, tally: _Tally):
    """Yield (line, dict) for a CSV (header row) or JSONL file; malformed rows are tallied."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        raise DatasetError(f"cannot read {path}: {e}") from e
    if path.suffix.lower() in (".jsonl", ".ndjson"):
        for i, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            tally.rows += 1
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                tally.skip(f"line {i}", "malformed", f"not JSON ({e.msg})")
                continue
            if not isinstance(row, dict):
                tally.skip(f"line {i}", "malformed", f"not a JSON object: {line[:40]!r}")
                continue
            yield i, row
        return
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = [h.strip().lower() for h in next(reader)]
    except StopIteration:
        return
    except csv.Error as e:
        raise DatasetError(f"{path} has no readable CSV header: {e}") from e
    while True:
        try:
            values = next(reader)
        except StopIteration:
            return
        except csv.Error as e:
            tally.rows += 1
            tally.skip(f"line {reader.line_num}", "malformed", f"CSV error: {e}")
            continue
        if not any(v.strip() for v in values):
            continue
        tally.rows += 1
        if len(values) != len(header):
            tally.skip(f"line {reader.line_num}", "malformed", f"{len(values)} fields, the header has {len(header)}")
            continue
        yield reader.line_num, dict(zip(header, values))


def _check_label(label: str | None, labels, tally: _Tally, where: str) -> bool:
    if labels is not None and label not in labels:
        tally.skip(where, "unknown label", f"label {label!r} not in {sorted(labels)}")
        return False
    return True


def load_manifest(path: str | Path, root: str | Path | None = None, labels=None) -> ClipSet:
    """Clips of a CSV or JSONL manifest; each row needs a video or an audio file that exists."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"manifest {path} does not exist")
    root = Path(root) if root is not None else path.parent
    tally, clips, seen = _Tally(path, "manifest"), [], set()
    for line, row in _read_rows(path, tally):
        row = {str(k).strip().lower(): v for k, v in row.items()}
        where = f"line {line}"
        video_value = next((row[k] for k in VIDEO_KEYS if _text(row.get(k))), None)
        if video_value is None and not _text(row.get("audio")):
            tally.skip(where, "malformed", f"no {'/'.join(VIDEO_KEYS)} or audio column value")
            continue
        ok_v, video = _media(video_value, root, "video", tally, where)
        if not ok_v:
            continue
        ok_a, audio = _media(row.get("audio"), root, "audio", tally, where)
        if not ok_a:
            continue
        name = _text(row.get("name")) or Path(str(video_value or row.get("audio"))).stem
        if name in seen:
            tally.skip(where, "duplicate name", f"name {name!r} already used")
            continue
        label = _text(row.get("label"))
        if not _check_label(label, labels, tally, where):
            continue
        seen.add(name)
        clips.append(Clip(name, video, audio, _text(row.get("subtitle")), _text(row.get("description")), label, line))
    return tally.finish(clips)


def _find_media(folder: Path, name: str) -> Path | None:
    for ext in VIDEO_EXTS + AUDIO_EXTS:
        p = folder / f"{name}{ext}"
        if p.is_file():
            return p
    return None


def load_emer_csv(path: str | Path, media_dir: str | Path | None = None) -> ClipSet:
    """EMER description CSV (`name,english`); with `media_dir`, rows whose clip is absent are skipped."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"EMER CSV {path} does not exist")
    media = Path(media_dir) if media_dir is not None else None
    tally, clips, seen = _Tally(path, "emer"), [], set()
    for line, row in _read_rows(path, tally):
        where = f"line {line}"
        if "name" not in row or "english" not in row:
            raise DatasetError(f"{path} is not an EMER CSV: it needs columns name,english (has {', '.join(row)})")
        name, text = _text(row["name"]), _text(row["english"])
        if name is None or text is None:
            tally.skip(where, "malformed", "empty name" if name is None else f"empty description for {name}")
            continue
        if name in seen:
            tally.skip(where, "duplicate name", f"name {name!r} already used")
            continue
        video = audio = None
        if media is not None:
            found = _find_media(media, name)
            if found is None:
                tally.skip(where, "missing video", f"no clip {name}.* in {media}")
                continue
            if found.stat().st_size == 0:
                tally.skip(where, "empty video", f"{found} is empty")
                continue
            video, audio = (found, None) if found.suffix.lower() in VIDEO_EXTS else (None, found)
        seen.add(name)
        clips.append(Clip(name, video, audio, None, text, None, line))
    return tally.finish(clips)


def load_label_folders(root: str | Path, labels=None) -> ClipSet:
    """`root/<label>/<clip>.<video or audio ext>`; stray files, empty files and other types are reported."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"dataset folder {root} does not exist")
    tally, clips = _Tally(root, "folders"), []
    for p in sorted(root.rglob("*")):
        if p.is_dir() or p.name.startswith("."):
            continue
        tally.rows += 1
        rel = p.relative_to(root)
        if len(rel.parts) != 2:
            tally.skip(str(rel), "not in a label folder", f"{rel} is not <label>/<clip>")
            continue
        if p.suffix.lower() not in VIDEO_EXTS + AUDIO_EXTS:
            tally.skip(str(rel), "not media", f"{rel} has extension {p.suffix or '(none)'}")
            continue
        is_video = p.suffix.lower() in VIDEO_EXTS
        kind = "video" if is_video else "audio"
        if not p.is_file():  # a link to nothing
            tally.skip(str(rel), f"missing {kind}", f"{rel} points to a missing file")
            continue
        if p.stat().st_size == 0:
            tally.skip(str(rel), f"empty {kind}", f"{rel} is empty")
            continue
        label = rel.parts[0]
        if not _check_label(label, labels, tally, str(rel)):
            continue
        clips.append(Clip(f"{label}/{p.stem}", p if is_video else None, None if is_video else p, label=label))
    return tally.finish(clips)


def load_clips(path: str | Path, media_dir: str | Path | None = None, labels=None) -> ClipSet:
    """Pick the layout: a folder -> label folders; a CSV with `name,english` -> EMER; else a manifest.

    `media_dir`: the EMER clips' folder, or the folder a manifest's relative paths resolve against
    (default: the manifest's folder); a label-folder dataset holds its media, so it takes none.
    `labels`: the allowed labels (None: any); EMER rows carry no label.
    """
    path = Path(path)
    if path.is_dir():
        if media_dir is not None:
            raise DatasetError(f"{path} is a folder per label: it holds its own media (no media folder)")
        return load_label_folders(path, labels)
    if not path.is_file():
        raise DatasetError(f"dataset {path} does not exist")
    if path.suffix.lower() == ".csv":
        with open(path, encoding="utf-8-sig", newline="") as f:
            header = {h.strip().lower() for h in next(csv.reader(f), [])}
        if {"name", "english"} <= header and not header & set(VIDEO_KEYS + ("audio",)):
            return load_emer_csv(path, media_dir)
    return load_manifest(path, media_dir, labels)
