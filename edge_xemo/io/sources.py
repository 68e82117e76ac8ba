"""Media sources: camera (OpenCV), microphone (sounddevice/PortAudio), files (PyAV), still images.

Every source runs on its own thread and hands timestamped items to a `SourceSink`. Live sources
stamp items on one monotonic clock (`Clock`); file sources use media time (seconds from the start
of the file), paced against the same clock when `realtime` is set. Audio always leaves a source as
16 kHz mono float32.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

os.environ.setdefault("OPENCV_LOG_LEVEL", "OFF")
os.environ.setdefault("OPENCV_VIDEOIO_DEBUG", "0")
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # FFmpeg's own lines (a stream that ended, a refused connection)

import numpy as np

from ..core.types import SAMPLE_RATE, StatusCode
from .audio import FrameResampler, Resampler

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}


class SourceError(RuntimeError):
    """A source cannot be opened or read; the message is one line a user can act on."""


class Clock:
    """The pipeline's monotonic clock: seconds since `origin` (time.monotonic based)."""

    def __init__(self, origin: float | None = None):
        self.origin = time.monotonic() if origin is None else origin

    def __call__(self) -> float:
        return time.monotonic() - self.origin

    def sleep_until(self, t: float, stop: threading.Event) -> None:
        delay = t - self()
        if delay > 0:
            stop.wait(delay)


class SourceSink(Protocol):
    """Where a source delivers items; the Analyzer implements it."""

    def frame(self, image: np.ndarray, t: float) -> None: ...

    def audio(self, samples: np.ndarray, t: float, sample_rate: int = SAMPLE_RATE) -> None: ...

    def status(self, code: StatusCode, message: str, level: str = "status") -> None: ...


class Source:
    """Base: `run(sink, stop)` delivers items until the media ends or `stop` is set."""

    has_video = False
    has_audio = False
    name = "source"

    def run(self, sink: SourceSink, stop: threading.Event, clock: Clock) -> None:  # pragma: no cover
        raise NotImplementedError


# ---------------------------------------------------------------------------------------- camera


@dataclass(frozen=True, slots=True)
class CameraOptions:
    """Camera capture settings.

    device: index (0), device path (/dev/video0), file path or URL (rtsp://, http://).
    width/height/fps: requested capture format (None keeps the camera's default).
    reconnect_s: how long to keep retrying after the camera is lost before giving up (0: never).
    """

    device: int | str = 0
    width: int | None = 640
    height: int | None = 360
    fps: float | None = None
    reconnect_s: float = 10.0
    max_reconnects: int | None = None


def parse_device(device: str | int) -> int | str:
    """'0' -> 0 (an index); anything else stays a path/URL/name."""
    if isinstance(device, str) and device.strip().isdigit():
        return int(device.strip())
    return device


NETWORK_TIMEOUT_MS = 2000
"""How long a network camera may take to open or to deliver a frame before it counts as lost."""
LOST_AFTER_READS = 3
LOST_AFTER_S = 1.0
"""A camera is lost after this many reads in a row without a frame, or this long without one (a stalled
network stream: each read waits up to NETWORK_TIMEOUT_MS); fewer are frames that did not decode."""
FLAP_S = 5.0
"""A camera lost again within this many seconds of reconnecting is flapping (a loose cable, a stream that ends)."""
MAX_BACKOFF_S = 8.0
"""The longest wait before reopening a flapping camera (the wait doubles from 1 s)."""


def _doubling(n: int) -> bool:
    """True at 0, 1, 2, 4, 8, ...: a repeated problem reported ever more rarely, with its count."""
    return n & (n - 1) == 0


class CameraSource(Source):
    """Live frames from OpenCV VideoCapture, stamped on the pipeline clock at grab time.

    A read that gives no frame between good ones is a frame that did not decode (`bad_frame` status,
    counted in `bad_frames`); `LOST_AFTER_READS` in a row, or none for `LOST_AFTER_S`, mean it is lost.
    When the camera is lost, a `camera_lost` status is sent and the camera is reopened
    every 0.5 s for up to `reconnect_s` seconds; frames continue on the same clock after recovery.
    A camera that keeps getting lost soon after coming back waits 1, 2, 4, 8 s before reopening and is
    reported at its 1st, 2nd, 4th, 8th, ... loss in a row, with the count.
    """

    has_video = True

    def __init__(self, options: CameraOptions | None = None):
        self.options = options or CameraOptions()
        self.name = f"camera:{self.options.device}"
        self.reconnects = 0
        self.bad_frames = 0
        self._bad_reports = 0
        self._reconnected_at: float | None = None
        self._flaps = 0
        self._cap = self._open()
        if self._cap is None:
            raise SourceError(
                f"no camera at {parse_device(self.options.device)!r} (see `edge-xemo devices`)".replace("'", "")
            )

    def _open(self):
        import cv2

        device = parse_device(self.options.device)
        if isinstance(device, str) and "://" in device:
            # a network stream that stalls would block read() (and so a stop) without end
            cap = cv2.VideoCapture(
                device,
                cv2.CAP_FFMPEG,
                [
                    cv2.CAP_PROP_OPEN_TIMEOUT_MSEC,
                    NETWORK_TIMEOUT_MS,
                    cv2.CAP_PROP_READ_TIMEOUT_MSEC,
                    NETWORK_TIMEOUT_MS,
                ],
            )
        else:
            cap = cv2.VideoCapture(device)
        if not cap.isOpened():
            cap.release()
            return None
        o = self.options
        if o.width:
            cap.set(cv2.CAP_PROP_FRAME_WIDTH, o.width)
        if o.height:
            cap.set(cv2.CAP_PROP_FRAME_HEIGHT, o.height)
        if o.fps:
            cap.set(cv2.CAP_PROP_FPS, o.fps)
        return cap

    def run(self, sink: SourceSink, stop: threading.Event, clock: Clock) -> None:
        cap = self._cap
        failed, last_frame = 0, time.monotonic()  # reads in a row that gave no frame; when one last did
        try:
            while not stop.is_set():
                ok, image = cap.read() if cap is not None else (False, None)
                if ok and image is not None:
                    if failed:
                        self._bad_frames(sink, failed)
                    failed, last_frame = 0, time.monotonic()
                    sink.frame(image, clock())
                    continue
                failed += 1
                if cap is not None and failed < LOST_AFTER_READS and time.monotonic() - last_frame < LOST_AFTER_S:
                    continue  # a frame that does not decode is not a lost camera
                if cap is not None:
                    cap.release()
                failed = 0
                cap = self._reconnect(sink, stop)
                if cap is None:
                    return
        finally:
            if cap is not None:
                cap.release()

    def _bad_frames(self, sink: SourceSink, n: int) -> None:
        """Frames that did not decode between good ones, reported at the 1st, 2nd, 4th, 8th, ... time."""
        self.bad_frames += n
        self._bad_reports += 1
        if _doubling(self._bad_reports):
            sink.status(
                StatusCode.BAD_FRAME,
                f"camera {self.options.device!r}: {n} frame(s) could not be decoded "
                f"({self.bad_frames} in all); capture goes on",
            )

    def _reconnect(self, sink: SourceSink, stop: threading.Event):
        o = self.options
        if o.reconnect_s <= 0 or (o.max_reconnects is not None and self.reconnects >= o.max_reconnects):
            sink.status(StatusCode.CAMERA_LOST, f"camera {o.device!r} stopped delivering frames", level="error")
            return None
        # a camera lost again soon after coming back is flapping: wait longer each time, report at 1, 2, 4, 8, ...
        flapping = self._reconnected_at is not None and time.monotonic() - self._reconnected_at < FLAP_S
        self._flaps = self._flaps + 1 if flapping else 0
        backoff = min(MAX_BACKOFF_S, 0.5 * 2**self._flaps) if flapping else 0.0
        report = _doubling(self._flaps)
        if report:
            again = f" (lost {self._flaps + 1} times in a row; retrying after {backoff:g} s)" if flapping else ""
            sink.status(
                StatusCode.CAMERA_LOST, f"camera {o.device!r} lost; reconnecting for up to {o.reconnect_s:g} s{again}"
            )
        stop.wait(backoff)
        deadline = time.monotonic() + o.reconnect_s
        while not stop.is_set() and time.monotonic() < deadline:
            cap = self._open()
            if cap is not None:
                self.reconnects += 1
                self._reconnected_at = time.monotonic()
                if report:
                    sink.status(
                        StatusCode.CAMERA_RECONNECTED, f"camera {o.device!r} reconnected ({self.reconnects} in all)"
                    )
                return cap
            stop.wait(0.5)
        if not stop.is_set():
            sink.status(
                StatusCode.CAMERA_LOST,
                f"camera {o.device!r} did not come back within {o.reconnect_s:g} s",
                level="error",
            )
        return None


# ------------------------------------------------------------------------------------ microphone


def input_devices() -> list[tuple[int, dict]]:
    """PortAudio's devices that can record, as (index, device info); SourceError when PortAudio fails."""
    try:
        import sounddevice as sd

        devices = sd.query_devices()
    except Exception as e:  # PortAudio missing or broken (sounddevice raises OSError at import)
        raise SourceError(f"cannot list audio devices: {e}") from e
    return [(i, d) for i, d in enumerate(devices) if d["max_input_channels"] > 0]


def find_input_device(device: int | str | None) -> int | None:
    """Resolve a microphone by index or (part of its) name; raises SourceError listing choices."""
    inputs = [(i, d["name"]) for i, d in input_devices()]
    if not inputs:
        raise SourceError("no microphone found (PortAudio lists no input device)")
    if device is None:
        return None
    device = parse_device(device)
    if isinstance(device, int):
        if device not in [i for i, _ in inputs]:
            raise SourceError(
                f"no microphone with index {device}; inputs: " + ", ".join(f"{i}: {n}" for i, n in inputs)
            )
        return device
    matches = [i for i, n in inputs if device.lower() in n.lower()]
    if not matches:
        raise SourceError(f"no microphone named {device!r}; inputs: " + ", ".join(f"{i}: {n}" for i, n in inputs))
    return matches[0]


class MicrophoneSource(Source):
    """Live 16 kHz mono float32 blocks from a sounddevice InputStream callback.

    Blocks are stamped with PortAudio's ADC time of their first sample, mapped onto the pipeline
    clock. Input overflows are counted (`overflows`) and reported as `status` events; the stream
    opens at 16 kHz when the device supports it, else at its default rate with resampling.
    Between overflows, block times advance by the samples delivered (ADC times jitter by up to a
    block on some host APIs); they are re-anchored to the ADC time after an overflow or when the
    two disagree by more than `max_drift_s`.

    A microphone that goes away (PortAudio ends the stream: a device error, the sound server gone) is
    reported as `microphone_lost` and reopened every 0.5 s for up to `reconnect_s` seconds (PortAudio
    is re-initialised between tries so that a device that came back is seen); then `microphone_lost`
    again as an error. A gap in the blocks alone is not a loss: a PulseAudio monitor delivers nothing
    while its sink is idle, and PulseAudio moves a stream whose source is removed to another source
    (tests/faults/test_devices.py). On stop the stream is aborted and closed on the source's own
    thread, so no PortAudio stream outlives `run` (PortAudio's exit handler would wait on it for ever).
    """

    has_audio = True
    max_drift_s = 1.0

    def __init__(self, device: int | str | None = None, block_s: float = 0.1, reconnect_s: float = 10.0):
        self.requested = device
        self.device = find_input_device(device)
        self.block_s = block_s
        self.reconnect_s = reconnect_s
        self.overflows = 0
        self.reconnects = 0
        self.label = str(device) if device is not None else "default"
        """What messages call it: the device asked for, as given."""
        self.name = f"microphone:{self.label}"

    def _open_rate(self) -> int:
        import sounddevice as sd

        try:
            sd.check_input_settings(device=self.device, channels=1, dtype="float32", samplerate=SAMPLE_RATE)
            return SAMPLE_RATE
        except Exception:
            return int(sd.query_devices(self.device, "input")["default_samplerate"])

    def run(self, sink: SourceSink, stop: threading.Event, clock: Clock) -> None:
        import sounddevice as sd

        first = True
        while not stop.is_set():
            try:
                lost = self._capture(sink, stop, clock)
            except (sd.PortAudioError, SourceError) as e:
                if first:
                    raise SourceError(
                        f"cannot open microphone {self.device if self.device is not None else 'default'}: {e}"
                    ) from e
                lost = f"cannot reopen it ({e})"
            first = False
            if lost is None:
                return
            if not self._reconnect(sink, stop, lost):
                return

    def _capture(self, sink: SourceSink, stop: threading.Event, clock: Clock) -> str | None:
        """Stream until `stop` (None) or until the device goes away (why, one line)."""
        import sounddevice as sd

        rate = self._open_rate()
        resampler = Resampler(rate)
        clock_minus_adc: list[float] = []  # pipeline clock minus PortAudio's stream clock
        anchor = {"t": None, "n": 0}  # block times count samples from an anchor: ADC times jitter

        def callback(indata, frames, time_info, status):
            now = clock()
            adc = time_info.inputBufferAdcTime
            if adc and not clock_minus_adc:
                clock_minus_adc.append(now - frames / rate - adc)
            measured = adc + clock_minus_adc[0] if (adc and clock_minus_adc) else now - frames / rate
            expected = None if anchor["t"] is None else anchor["t"] + anchor["n"] / rate
            if status.input_overflow:
                self.overflows += 1
                sink.status(StatusCode.AUDIO_OVERFLOW, f"microphone overflow #{self.overflows}: audio was lost")
            if expected is None or status.input_overflow or abs(measured - expected) > self.max_drift_s:
                anchor["t"], anchor["n"] = measured, 0
            t = anchor["t"] + anchor["n"] / rate
            anchor["n"] += frames
            sink.audio(resampler.push(indata[:, 0].copy()), t)

        stream = sd.InputStream(
            device=self.device,
            channels=1,
            samplerate=rate,
            dtype="float32",
            blocksize=int(rate * self.block_s),
            callback=callback,
        )
        try:
            stream.start()
            while not stop.wait(0.1):
                if not stream.active:
                    return "its stream ended"
            return None
        finally:
            stream.abort(ignore_errors=True)
            stream.close(ignore_errors=True)

    def _reconnect(self, sink: SourceSink, stop: threading.Event, why: str) -> bool:
        """Reopen the device for up to `reconnect_s` seconds; False when it did not come back (reported)."""
        import sounddevice as sd

        name = self.label
        if self.reconnect_s <= 0:
            sink.status(StatusCode.MICROPHONE_LOST, f"microphone {name} lost: {why}", level="error")
            return False
        sink.status(
            StatusCode.MICROPHONE_LOST, f"microphone {name} lost: {why}; reopening for up to {self.reconnect_s:g} s"
        )
        deadline = time.monotonic() + self.reconnect_s
        while not stop.wait(0.5):
            try:
                sd._terminate()  # PortAudio lists devices once per initialisation: see the ones that came back
                sd._initialize()
                self.device = find_input_device(self.requested)
                sd.check_input_settings(device=self.device, channels=1, dtype="float32")
                self.reconnects += 1
                sink.status(StatusCode.MICROPHONE_RECONNECTED, f"microphone {name} reopened ({self.reconnects} in all)")
                return True
            except (sd.PortAudioError, SourceError, ValueError):
                if time.monotonic() > deadline:
                    sink.status(
                        StatusCode.MICROPHONE_LOST,
                        f"microphone {name} did not come back within {self.reconnect_s:g} s",
                        level="error",
                    )
                    return False
        return False


# ----------------------------------------------------------------------------------------- files


class _Shifted:
    """Passes a file's items on with their times moved by `offset` (the passes before, when looping)."""

    def __init__(self, sink: SourceSink):
        self.sink, self.offset, self.last_t = sink, 0.0, 0.0

    def frame(self, image, t):
        self.last_t = max(self.last_t, self.offset + t)
        self.sink.frame(image, self.offset + t)

    def audio(self, samples, t, sample_rate=SAMPLE_RATE):
        self.last_t = max(self.last_t, self.offset + t + len(samples) / sample_rate)
        self.sink.audio(samples, self.offset + t, sample_rate)

    def status(self, code, message, level="status"):
        self.sink.status(code, message, level)


def _open_container(path: Path):
    import av

    if not path.exists():
        raise SourceError(f"file not found: {path}")
    if path.is_dir():
        raise SourceError(f"is a folder, not a media file: {path}")
    if path.stat().st_size == 0:
        raise SourceError(f"file is empty: {path}")
    try:
        return av.open(str(path))
    except (av.error.FFmpegError, UnicodeDecodeError, ValueError) as e:
        raise SourceError(f"not a readable media file: {path} ({type(e).__name__})") from e


class FileSource(Source):
    """A recorded clip: video with its audio track, a separate audio file, audio alone, or a still image.

    Played as fast as the consumer takes it (offline analysis) or paced in real time (`realtime`).
    A separate `audio_path` replaces the video's own audio track. `loop` (real time only) plays the
    clip again and again, each pass timed from where the last one ended (a replayed "camera").
    """

    def __init__(
        self, path: str | Path, audio_path: str | Path | None = None, realtime: bool = False, loop: bool = False
    ):
        if loop and not realtime:
            raise ValueError("loop needs realtime: a clip played as fast as possible would never end")
        self.path = Path(path)
        self.audio_path = Path(audio_path) if audio_path else None
        self.realtime = realtime
        self.loop = loop
        self.name = str(self.path)
        self.image: np.ndarray | None = None
        self.duration: float | None = None
        if self.path.suffix.lower() in IMAGE_SUFFIXES:
            self._probe_image()
        else:
            self._probe_media()
        if self.audio_path is not None:
            with _open_container(self.audio_path) as c:
                if not c.streams.audio:
                    raise SourceError(f"no audio track in {self.audio_path}")
            self.has_audio = True

    def _probe_image(self) -> None:
        import cv2

        if not self.path.exists():
            raise SourceError(f"file not found: {self.path}")
        image = cv2.imread(str(self.path), cv2.IMREAD_COLOR)
        if image is None:
            raise SourceError(f"not a readable image: {self.path}")
        self.image, self.has_video, self.has_audio = image, True, False

    def _probe_media(self) -> None:
        with _open_container(self.path) as c:
            self.has_video = bool(c.streams.video)
            self.has_audio = bool(c.streams.audio)
            if not (self.has_video or self.has_audio):
                raise SourceError(f"no video or audio stream in {self.path}")
            if c.duration:
                self.duration = c.duration / 1_000_000
            if self.has_video and self.audio_path is None and not self.has_audio:
                log.info("%s has no audio track: video only", self.path)

    def run(self, sink: SourceSink, stop: threading.Event, clock: Clock) -> None:
        if self.image is not None:
            sink.frame(self.image, 0.0)
            return
        shifted = _Shifted(sink)
        while not stop.is_set():
            start = clock()
            readers = [
                threading.Thread(
                    target=self._read,
                    args=(self.path, self.audio_path is None, shifted, stop, clock, start),
                    name="edge-xemo-file",
                    daemon=True,
                )
            ]
            if self.audio_path is not None:
                readers.append(
                    threading.Thread(
                        target=self._read,
                        args=(self.audio_path, True, shifted, stop, clock, start),
                        name="edge-xemo-file-audio",
                        daemon=True,
                    )
                )
            for r in readers:
                r.start()
            for r in readers:
                r.join()
            if not self.loop:
                return
            shifted.offset = max(shifted.offset + (clock() - start), shifted.last_t)

    def _read(
        self, path: Path, want_audio: bool, sink: SourceSink, stop: threading.Event, clock: Clock, start: float
    ) -> None:
        import av

        container = _open_container(path)
        try:
            streams = []
            video = container.streams.video[0] if (container.streams.video and path == self.path) else None
            audio = container.streams.audio[0] if (container.streams.audio and want_audio) else None
            if video is not None:
                video.thread_type = "AUTO"
                streams.append(video)
            if audio is not None:
                streams.append(audio)
            if not streams:
                return
            resampler = FrameResampler() if audio else None
            base = container.start_time / 1_000_000 if container.start_time is not None else 0.0
            audio_t = None
            last_t = 0.0
            for packet in container.demux(streams):
                if stop.is_set():
                    return
                for item in packet.decode():
                    if isinstance(item, av.VideoFrame):
                        t = last_t = self._media_time(item, base)
                        if self.realtime:
                            clock.sleep_until(start + t, stop)
                        sink.frame(item.to_ndarray(format="bgr24"), t)
                    else:
                        assert resampler is not None  # decoded audio comes from the audio stream only
                        if audio_t is None:
                            audio_t = self._media_time(item, base)
                        for samples in resampler.push(item):
                            if self.realtime:
                                clock.sleep_until(start + audio_t, stop)
                            sink.audio(samples, audio_t)
                            audio_t += len(samples) / SAMPLE_RATE
            if resampler is not None and audio_t is not None:
                for samples in resampler.flush():
                    sink.audio(samples, audio_t)
                    audio_t += len(samples) / SAMPLE_RATE
            last_t = max(last_t, audio_t or 0.0)
            expected = container.duration / 1_000_000 if container.duration else None
            if expected and not stop.is_set() and last_t < expected - max(1.0, 0.05 * expected):
                sink.status(
                    StatusCode.FILE_TRUNCATED,
                    f"{path}: decoding stopped early at {last_t:.1f} s of {expected:.1f} s; analysed what was readable",
                    level="error",
                )
        except av.error.FFmpegError as e:
            sink.status(
                StatusCode.FILE_TRUNCATED,
                f"{path}: decoding stopped early ({type(e).__name__}); analysed what was readable",
                level="error",
            )
        finally:
            container.close()

    @staticmethod
    def _media_time(item, base: float) -> float:
        """Seconds since the container's start (a file's clock starts at 0)."""
        if item.pts is None:
            return 0.0
        return max(0.0, float(item.pts * item.time_base) - base)
