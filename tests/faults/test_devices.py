"""What real devices do to `edge-xemo live`: a network camera that goes away (for a while, for good)
or sends a frame that cannot be decoded, a microphone whose device disappears and comes back, a
process stalled long enough for the audio buffer to overflow, and a JSONL target on a full disk.

Each case states the time it allows and checks the exit code, complete JSON lines, the one status or
error event that says what happened, and a stderr without a traceback.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time


from faulting import assert_clean_stderr, camera, live_args, need_demo, speech, start  # noqa: F401 (fixtures)
from conftest import DEMO_VIDEO
from mjpeg_camera import Camera

STOP_S = 3.0
"""Every run here ends with SIGINT and must be gone within this many seconds."""


def faces(events: list[dict]) -> int:
    return sum(1 for e in events if e["type"] == "cues" and e.get("faces"))


def voiced(events: list[dict]) -> int:
    return sum(1 for e in events if e["type"] == "cues" and e.get("audio_s", 0) > 0)


def stop(run) -> list[dict]:
    rc, took = run.signal(signal.SIGINT, timeout=30)
    assert rc == 130 and took <= STOP_S, (rc, took, run.err()[-1500:])
    assert_clean_stderr(run)
    events = run.events()
    assert events[-1]["code"] == "stopped", events[-1]
    return events


def test_the_camera_goes_away_and_comes_back(tmp_path, speech):
    need_demo()
    cam = Camera(DEMO_VIDEO).start()
    run = start(tmp_path, *live_args(cam, speech, "--cues-only"))
    try:
        run.wait_for(lambda evs: faces(evs) >= 2, 60, "faces from the camera")
        cam.kill()
        run.wait_for(lambda evs: "camera_lost" in [e.get("code") for e in evs], 10, "camera_lost")
        time.sleep(2.0)
        cam.start()
        events = run.wait_for(lambda evs: "camera_reconnected" in [e.get("code") for e in evs], 15, "camera_reconnected")
        seen = faces(events)
        run.wait_for(lambda evs: faces(evs) >= seen + 2, 15, "faces after the camera came back")
        events = stop(run)
        assert not [e for e in events if e["type"] == "error"], [e for e in events if e["type"] == "error"]
        assert voiced(events) > 0  # the microphone went on meanwhile
    finally:
        run.kill()
        cam.kill()


def test_the_camera_goes_away_for_good(tmp_path, speech):
    need_demo()
    cam = Camera(DEMO_VIDEO).start()
    run = start(tmp_path, *live_args(cam, speech, "--cues-only", "--reconnect", "2"))
    try:
        run.wait_for(lambda evs: faces(evs) >= 2, 60, "faces from the camera")
        cam.kill()
        t = time.monotonic()
        rc = run.proc.wait(2 + 1 + STOP_S)  # the reconnect budget, the first try's wait, the stop
        took = time.monotonic() - t
        assert rc == 1, (rc, run.err())
        events = run.events()
        errors = [e for e in events if e["type"] == "error"]
        assert [e["code"] for e in errors] == ["camera_lost"], errors
        assert run.err().strip().splitlines()[-1].startswith("edge-xemo: error: camera"), run.err()
        assert_clean_stderr(run)
        print(f"camera gone for good: exit {rc} {took:.1f} s after it went")
    finally:
        run.kill()
        cam.kill()


def test_the_camera_stalls(tmp_path):
    """The camera's process stopped: its connection stays open and nothing comes (each read or reopen
    waits for the network timeout). Lost, then back once it goes on; a Ctrl-C during a stall still
    ends the run within STOP_S."""
    need_demo()
    with Camera(DEMO_VIDEO) as cam:
        run = start(tmp_path, *live_args(cam, None, "--cues-only"))
        try:
            run.wait_for(lambda evs: faces(evs) >= 2, 60, "faces from the camera")
            os.kill(cam.proc.pid, signal.SIGSTOP)
            run.wait_for(lambda evs: "camera_lost" in [e.get("code") for e in evs], 10, "camera_lost")
            os.kill(cam.proc.pid, signal.SIGCONT)
            events = run.wait_for(lambda evs: "camera_reconnected" in [e.get("code") for e in evs], 15, "camera_reconnected")
            seen = faces(events)
            run.wait_for(lambda evs: faces(evs) >= seen + 2, 15, "faces after the stall")
            os.kill(cam.proc.pid, signal.SIGSTOP)
            time.sleep(0.5)  # inside a read that waits for the network
            rc, took = run.signal(signal.SIGINT, timeout=30)
            assert rc == 130 and took <= STOP_S, (rc, took, run.err()[-1500:])
            events = run.events()
            assert not [e for e in events if e["type"] == "error"]
            print(f"Ctrl-C during a camera stall: exit {rc} in {took:.2f} s; stderr: {run.err().strip()!r}")
        finally:
            run.kill()
            os.kill(cam.proc.pid, signal.SIGCONT)


def test_frames_that_do_not_decode(tmp_path):
    need_demo()
    with Camera(DEMO_VIDEO, corrupt_every=25) as cam:  # one bad frame a second
        run = start(tmp_path, *live_args(cam, None, "--cues-only"))
        try:
            run.wait_for(lambda evs: faces(evs) >= 4, 60, "faces between bad frames")
            events = stop(run)
        finally:
            run.kill()
    codes = [e.get("code") for e in events]
    assert "bad_frame" in codes and "camera_lost" not in codes, codes
    assert not [e for e in events if e["type"] == "error"]


def _null_sink_module(sink: str) -> str | None:
    out = subprocess.run(["pactl", "list", "short", "modules"], capture_output=True, text=True).stdout
    return next((line.split()[0] for line in out.splitlines() if f"sink_name={sink}" in line), None)


def _restore_microphone(sink: str) -> None:
    """The session's virtual microphone as conftest made it (a sound server, the null sink, the defaults)."""
    for _ in range(50):
        if subprocess.run(["pulseaudio", "--check"]).returncode == 0:
            break
        subprocess.run(["pulseaudio", "-D", "--exit-idle-time=-1"], capture_output=True)
        time.sleep(0.1)
    if _null_sink_module(sink) is None:
        subprocess.run(["pactl", "load-module", "module-null-sink", f"sink_name={sink}"], capture_output=True)
    subprocess.run(["pactl", "set-default-sink", sink])
    subprocess.run(["pactl", "set-default-source", f"{sink}.monitor"])


def test_the_microphone_goes_away_and_comes_back(tmp_path, speech):
    """Its PulseAudio module unloaded then loaded again (PulseAudio moves the stream to a stand-in
    source and back: blocks pause, nothing ends), then the sound server killed and restarted (PortAudio
    ends the stream: `microphone_lost`, reopened, `microphone_reconnected`). Audio windows go on after each."""
    run = start(tmp_path, *live_args(None, speech, "--cues-only"))
    try:
        run.wait_for(lambda evs: voiced(evs) >= 2, 60, "audio windows")
        subprocess.run(["pactl", "unload-module", _null_sink_module(speech)], check=True)
        time.sleep(2.0)
        _restore_microphone(speech)
        seen = voiced(run.events())
        run.wait_for(lambda evs: voiced(evs) >= seen + 3, 20, "audio after the module came back")
        subprocess.run(["pulseaudio", "-k"], check=True)
        time.sleep(1.0)
        _restore_microphone(speech)
        events = run.wait_for(lambda evs: "microphone_reconnected" in [e.get("code") for e in evs], 20, "microphone_reconnected")
        seen = voiced(events)
        run.wait_for(lambda evs: voiced(evs) >= seen + 3, 20, "audio after the sound server came back")
        rc, took = run.signal(signal.SIGINT, timeout=30)
        assert rc == 130 and took <= STOP_S, (rc, took)
        assert_clean_stderr(run, libraries=True)
        events = run.events()
        codes = [e.get("code") for e in events]
        assert "microphone_lost" in codes and codes[-1] == "stopped", codes
        assert not [e for e in events if e["type"] == "error"], [e for e in events if e["type"] == "error"]
    finally:
        run.kill()
        _restore_microphone(speech)


def test_a_stalled_process_goes_on(tmp_path, camera, speech):
    """SIGSTOP for 2 s (every thread stalls: the consumer of the audio callback and of the camera): the
    queues drop their oldest items (a `dropped` status; PulseAudio buffers the audio, so PortAudio
    reports no overflow here) and capture goes on."""
    run = start(tmp_path, *live_args(camera, speech, "--cues-only"))
    try:
        run.wait_for(lambda evs: voiced(evs) >= 2, 60, "audio windows")
        os.kill(run.proc.pid, signal.SIGSTOP)
        time.sleep(2.0)
        os.kill(run.proc.pid, signal.SIGCONT)
        seen = len(run.events())
        run.wait_for(lambda evs: voiced(evs[seen:]) >= 3 and faces(evs[seen:]) >= 3, 20, "windows after the stall")
        events = stop(run)
        assert not [e for e in events if e["type"] == "error"], [e for e in events if e["type"] == "error"]
        codes = [e.get("code") for e in events]
        print(f"after a 2 s stall: audio_overflow {codes.count('audio_overflow')}, dropped {codes.count('dropped')}")
    finally:
        run.kill()


def _full_disk(tmp_path):
    """A 32 KiB tmpfs (root can mount one here), else /dev/full (every write fails at once)."""
    mount = tmp_path / "small"
    mount.mkdir()
    ok = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=32k", "tmpfs", str(mount)], capture_output=True).returncode == 0
    return (mount / "events.jsonl", mount) if ok else (None, None)


def test_the_jsonl_target_fills_up(tmp_path, camera, speech):
    target, mount = _full_disk(tmp_path)
    try:
        path = target or "/dev/full"
        run = start(tmp_path, *live_args(camera, speech, "--cues-only"), "--jsonl", str(path), "--quiet",
                    jsonl=False, name="full")
        rc = run.proc.wait(90)
        lines = [line for line in run.err().splitlines() if line.strip()]
        assert rc == 1, (rc, lines)
        assert len(lines) == 1 and lines[0].startswith("edge-xemo: error: cannot write events to"), lines
        assert "No space left on device" in lines[0], lines
        if target is not None:
            data = target.read_text()
            assert data.endswith("\n"), data[-200:]
            events = [json.loads(line) for line in data.splitlines()]  # complete lines, all of them
            assert len(events) >= 5
            print(f"full disk: {len(events)} events ({len(data)} bytes) kept, then exit {rc}")
    finally:
        if mount is not None:
            subprocess.run(["umount", str(mount)])
