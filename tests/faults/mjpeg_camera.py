"""A network camera on loopback: an MJPEG stream over HTTP (multipart/x-mixed-replace, as IP cameras
and `motion` serve it) replaying a clip in a loop at its own frame rate.

Run it as its own process so a test can make the camera disappear (kill it) and come back (start it
again on the same port):

    python tests/faults/mjpeg_camera.py CLIP.mp4 --port 8080 [--fps 25] [--width 640]
"""

from __future__ import annotations

import argparse
import random
import socket
import subprocess
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

BOUNDARY = "edgexemoframe"


def jpeg_frames(clip: Path, width: int, limit: int) -> list[bytes]:
    """The clip's first `limit` frames, scaled to `width`, as JPEG bytes."""
    import cv2

    cap = cv2.VideoCapture(str(clip))
    frames = []
    while len(frames) < limit:
        ok, image = cap.read()
        if not ok:
            break
        h = round(image.shape[0] * width / image.shape[1])
        frames.append(cv2.imencode(".jpg", cv2.resize(image, (width, h)), [cv2.IMWRITE_JPEG_QUALITY, 85])[1].tobytes())
    cap.release()
    if not frames:
        raise SystemExit(f"mjpeg_camera: no frames in {clip}")
    return frames


def serve(clip: Path, port: int, fps: float, width: int, limit: int, corrupt_every: int = 0) -> None:
    frames = jpeg_frames(clip, width, limit)
    if corrupt_every:  # a JPEG header and the start of a frame, then noise: no decoder can make a picture of it
        noise = bytes(random.Random(0).getrandbits(8) for _ in range(4000))
        frames = [f[:600] + noise if (i + 1) % corrupt_every == 0 else f for i, f in enumerate(frames)]

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server's name)
            self.send_response(200)
            self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY}")
            self.send_header("Cache-Control", "no-cache")
            self.end_headers()
            t0, i = time.monotonic(), 0
            try:
                while True:
                    jpg = frames[i % len(frames)]
                    self.wfile.write(f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpg)}\r\n\r\n".encode())
                    self.wfile.write(jpg + b"\r\n")
                    i += 1
                    time.sleep(max(0.0, t0 + i / fps - time.monotonic()))
            except (BrokenPipeError, ConnectionResetError):
                pass

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    print(f"serving {len(frames)} frames on {server.server_address[1]}", flush=True)
    server.serve_forever()


class Camera:
    """The camera as a child process: `start()`, `kill()` (it disappears), `start()` again (it comes back)."""

    def __init__(self, clip: Path, port: int | None = None, fps: float = 25.0, width: int = 640, frames: int = 750,
                 corrupt_every: int = 0):
        self.clip, self.fps, self.width, self.frames, self.corrupt_every = clip, fps, width, frames, corrupt_every
        self.port = port or free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def start(self, timeout: float = 30.0) -> "Camera":
        self.proc = subprocess.Popen([sys.executable, __file__, str(self.clip), "--port", str(self.port),
                                      "--fps", str(self.fps), "--width", str(self.width), "--frames", str(self.frames),
                                      "--corrupt-every", str(self.corrupt_every)],
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        line = self.proc.stdout.readline()  # printed once it listens
        if not line.startswith("serving"):
            self.kill()
            raise RuntimeError(f"the MJPEG camera did not start on port {self.port}")
        return self

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.proc = None

    def __enter__(self) -> "Camera":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.kill()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("clip", type=Path)
    ap.add_argument("--port", type=int, default=8080)
    ap.add_argument("--fps", type=float, default=25.0)
    ap.add_argument("--width", type=int, default=640)
    ap.add_argument("--frames", type=int, default=750, help="frames of the clip kept (the loop's length)")
    ap.add_argument("--corrupt-every", type=int, default=0, help="make every Nth frame undecodable (0: none)")
    a = ap.parse_args()
    serve(a.clip, a.port, a.fps, a.width, a.frames, a.corrupt_every)
