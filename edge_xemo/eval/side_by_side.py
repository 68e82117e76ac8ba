"""Footage of several people assembled from real single-person clips: the clips side by side in one frame, with
one clip's soundtrack, so who is in view and who is speaking are known by construction (the everyone-in-view
checks: per-person evidence that must not leak, speaker attribution, cost per face)."""

from __future__ import annotations

import wave
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from ..core.types import SAMPLE_RATE
from ..io.audio import FrameResampler


def side_by_side(
    videos: Sequence[Path],
    out: Path,
    soundtrack: Path | None = None,
    seconds: float | None = None,
    height: int = 360,
    fps: float = 25.0,
) -> tuple[Path, Path | None]:
    """The clips left to right, each scaled to `height`, at `fps` (a clip holds its frame until its next one) for
    the shortest clip's length (or `seconds`), as `out` (mp4, no sound); with `soundtrack` (a media file with
    sound), its audio from the start, 16 kHz mono, as `out` with a .wav suffix. Returns (video, wav or None)."""
    clips = [_frames(Path(v), height) for v in videos]
    length = min(times[-1] + 1 / fps for times, _ in clips)
    n = int((seconds if seconds is not None else length) * fps)
    writer = None
    try:
        for k in range(n):
            t = k / fps
            row = np.hstack([frames[max(0, int(np.searchsorted(times, t + 1e-6)) - 1)] for times, frames in clips])
            if writer is None:
                h, w = row.shape[:2]
                writer = cv2.VideoWriter(str(out), cv2.VideoWriter.fourcc(*"mp4v"), fps, (w, h))
            writer.write(row)
    finally:
        if writer is not None:
            writer.release()
    if soundtrack is None:
        return Path(out), None
    wav = Path(out).with_suffix(".wav")
    write_wav(wav, sound_of(Path(soundtrack))[: int(n / fps * SAMPLE_RATE)])
    return Path(out), wav


def _frames(path: Path, height: int) -> tuple[np.ndarray, list[np.ndarray]]:
    """A clip's frame times (from 0) and frames scaled to `height` (an even width)."""
    import av

    times, frames = [], []
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            image = frame.to_ndarray(format="bgr24")
            width = int(round(image.shape[1] * height / image.shape[0] / 2)) * 2
            frames.append(cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA))
            times.append(float(frame.time or 0.0))
    if not frames:
        raise ValueError(f"{path} has no video frames")
    t = np.array(times) - times[0]
    return t, frames


def sound_of(path: Path) -> np.ndarray:
    """A media file's first audio stream as 16 kHz mono float32."""
    import av

    resampler, pieces = FrameResampler(), []
    with av.open(str(path)) as container:
        if not container.streams.audio:
            raise ValueError(f"{path} has no sound")
        for frame in container.decode(audio=0):
            pieces += resampler.push(frame)
    pieces += resampler.flush()
    return np.concatenate(pieces).astype(np.float32)


def write_wav(path: Path, samples: np.ndarray) -> None:
    """16 kHz mono 16-bit PCM."""
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(SAMPLE_RATE)
        w.writeframes((np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes())
