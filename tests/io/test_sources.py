"""Real capture and decoding: files through PyAV, cameras through OpenCV, microphones through PortAudio."""

import subprocess
import threading
import time

import av
import cv2
import numpy as np
import pytest

from edge_xemo.io.audio import to_mono_16k
from edge_xemo.io.sources import CameraOptions, CameraSource, Clock, FileSource, MicrophoneSource, SourceError
from edge_xemo.core.types import SAMPLE_RATE

from conftest import first_frames


class Collect:
    def __init__(self):
        self.frames, self.blocks, self.statuses = [], [], []

    def frame(self, image, t):
        self.frames.append((t, image.shape))

    def audio(self, samples, t, sample_rate=SAMPLE_RATE):
        assert sample_rate == SAMPLE_RATE and samples.dtype == np.float32 and samples.ndim == 1
        self.blocks.append((t, len(samples)))

    def status(self, code, message, level="status"):
        self.statuses.append((code, level, message))

    @property
    def audio_seconds(self):
        return sum(n for _, n in self.blocks) / SAMPLE_RATE


def play(source, seconds=None):
    sink, stop = Collect(), threading.Event()
    th = threading.Thread(target=source.run, args=(sink, stop, Clock()), daemon=True)
    th.start()
    th.join(seconds)
    stop.set()
    th.join(10)
    assert not th.is_alive()
    return sink


def write_wav(path, samples, rate, channels):
    """Write float samples (n,) as a `channels`-channel s16 wav at `rate` with PyAV."""
    layout = "mono" if channels == 1 else "stereo"
    with av.open(str(path), "w") as c:
        s = c.add_stream("pcm_s16le", rate=rate, layout=layout)
        x = np.tile(samples[None, :], (channels, 1)) if channels > 1 else samples[None, :]
        frame = av.AudioFrame.from_ndarray((np.clip(x, -1, 1) * 32767).astype(np.int16).reshape(1, -1) if channels > 1 else (np.clip(x, -1, 1) * 32767).astype(np.int16), format="s16", layout=layout)
        frame.sample_rate = rate
        for p in s.encode(frame):
            c.mux(p)
        for p in s.encode(None):
            c.mux(p)


def test_video_with_separate_audio(demo_video, demo_audio):
    src = FileSource(demo_video, audio_path=demo_audio)
    assert src.has_video and src.has_audio
    sink = play(src)
    ts = [t for t, _ in sink.frames]
    assert len(ts) == 765 and ts == sorted(ts) and ts[0] == 0.0
    assert sink.frames[0][1] == (300, 400, 3)
    audio_t = [t for t, _ in sink.blocks]
    assert audio_t == sorted(audio_t)
    assert sink.audio_seconds == pytest.approx(30.0, abs=0.1)


def test_video_with_its_own_audio_track_lines_up(sample_mp4):
    sink = play(FileSource(sample_mp4))
    assert len(sink.frames) == 116
    assert sink.audio_seconds == pytest.approx(4.64, abs=0.1)
    assert abs(sink.frames[-1][0] - (sink.blocks[-1][0] + sink.blocks[-1][1] / SAMPLE_RATE)) < 0.2


@pytest.mark.parametrize("rate,channels", [(44100, 2), (8000, 1), (48000, 2), (22050, 1)])
def test_audio_file_any_rate_and_layout_becomes_16k_mono(tmp_path, rate, channels):
    t = np.arange(int(rate * 1.5)) / rate
    path = tmp_path / f"tone_{rate}_{channels}.wav"
    write_wav(path, 0.3 * np.sin(2 * np.pi * 220 * t), rate, channels)
    src = FileSource(path)
    assert src.has_audio and not src.has_video
    sink = play(src)
    assert sink.audio_seconds == pytest.approx(1.5, abs=0.02)


def test_realtime_pacing_follows_the_media_clock(demo_audio, tmp_path):
    x = to_mono_16k(np.zeros(1), SAMPLE_RATE)  # smoke: identity at 16 kHz
    assert x.dtype == np.float32
    rate = 16000
    speech = np.zeros(rate, np.float32)
    path = tmp_path / "one_second.wav"
    write_wav(path, speech, rate, 1)
    t0 = time.monotonic()
    play(FileSource(path, realtime=True))
    assert time.monotonic() - t0 >= 0.8


def test_still_image(tmp_path, demo_video):
    cap = cv2.VideoCapture(str(demo_video))
    ok, image = cap.read()
    assert ok
    path = tmp_path / "face.png"
    cv2.imwrite(str(path), image)
    sink = play(FileSource(path))
    assert sink.frames == [(0.0, image.shape)]


def test_to_mono_16k_handles_stereo_int_and_nan():
    x = np.stack([np.full(4410, 1000, np.int16), np.full(4410, -1000, np.int16)], axis=1)
    y = to_mono_16k(x, 44100)
    assert abs(len(y) - 1600) <= 32 and np.allclose(y[100:-100], 0, atol=1e-3)
    z = to_mono_16k(np.array([np.nan, np.inf, 0.5], np.float32), SAMPLE_RATE)
    assert np.isfinite(z).all()


@pytest.mark.parametrize("content,match", [(None, "not found"), (b"", "empty"), (b"hello, not a video\n" * 50, "not a readable media file")])
def test_bad_files_raise_one_clear_error(tmp_path, content, match):
    path = tmp_path / "bad.mp4"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(SourceError, match=match):
        FileSource(path)


def test_camera_on_a_video_file_and_the_reconnect_path(demo_video):
    """OpenCV VideoCapture on a real file: when it runs out, the source reconnects (reopens) once."""
    cam = CameraSource(CameraOptions(device=str(demo_video), width=None, height=None, reconnect_s=2.0, max_reconnects=1))
    sink = play(cam, seconds=60)
    ts = [t for t, _ in sink.frames]
    assert len(ts) == 2 * 765 and ts == sorted(ts)
    codes = [c for c, _, _ in sink.statuses]
    assert codes == ["camera_lost", "camera_reconnected", "camera_lost"]
    assert sink.statuses[-1][1] == "error" and cam.reconnects == 1


def test_no_camera_is_a_clear_error():
    with pytest.raises(SourceError, match="no camera"):
        CameraSource(CameraOptions(device=9))


def test_unknown_microphone_name_lists_the_choices(virtual_microphone):
    with pytest.raises(SourceError, match="no microphone named 'no-such-mic'"):
        MicrophoneSource("no-such-mic")


def test_microphone_capture_through_portaudio(virtual_microphone, demo_audio):
    """A real wav played into a PulseAudio null sink, captured through PortAudio in real time."""
    mic = MicrophoneSource("pulse", block_s=0.1)
    sink, stop = Collect(), threading.Event()
    th = threading.Thread(target=mic.run, args=(sink, stop, Clock()), daemon=True)
    player = subprocess.Popen(["paplay", f"--device={virtual_microphone}", str(demo_audio)])
    try:
        th.start()
        deadline = time.monotonic() + 20
        while not sink.blocks and time.monotonic() < deadline:
            time.sleep(0.01)
        assert sink.blocks, "no audio block arrived"
        time.sleep(3.0)
        stop.set()
        th.join(5)
    finally:
        player.kill()
    ts = [t for t, _ in sink.blocks]
    assert ts == sorted(ts) and len(set(ts)) == len(ts)
    span = ts[-1] + sink.blocks[-1][1] / SAMPLE_RATE - ts[0]
    assert sink.audio_seconds == pytest.approx(span, rel=0.05)
    assert sink.audio_seconds == pytest.approx(3.0, rel=0.1)


def test_a_flapping_camera_backs_off_and_is_reported_with_counts(demo_video, tmp_path):
    """A 'camera' that delivers 4 frames and is gone again (a 4-frame file): waits grow, reports thin out."""
    short = first_frames(demo_video, tmp_path / "flap.mp4", 4)
    cam = CameraSource(CameraOptions(device=str(short), width=None, height=None, reconnect_s=2.0))
    sink = play(cam, seconds=9)
    lost = [m for c, _, m in sink.statuses if c == "camera_lost"]
    # without backoff it would reopen hundreds of times in 9 s; with 1, 2, 4 s waits a handful
    assert 3 <= cam.reconnects <= 6
    assert len(lost) < cam.reconnects + 1 and any("times in a row" in m for m in lost)


def test_a_looping_replay_keeps_time_going_forward(tmp_path):
    """`FileSource(loop=True)`: each pass of a 1 s wav is timed after the last, in real time."""
    path = tmp_path / "tone.wav"
    write_wav(path, 0.1 * np.sin(np.linspace(0, 2 * np.pi * 440, SAMPLE_RATE)), SAMPLE_RATE, 1)
    with pytest.raises(ValueError, match="loop needs realtime"):
        FileSource(path, loop=True)
    sink = play(FileSource(path, realtime=True, loop=True), seconds=2.6)
    ts = [t for t, _ in sink.blocks]
    ends = [t + n / SAMPLE_RATE for t, n in sink.blocks]
    assert all(b >= a_end - 1e-6 for a_end, b in zip(ends, ts[1:]))  # no overlap, never backwards
    assert 2.0 <= sink.audio_seconds <= 3.2  # about 2.6 s of audio in 2.6 s: paced, and more than one pass
