"""Faults under `edge-xemo serve`: a camera that goes away and comes back, a file corrupt part-way
through, SIGTERM during an explanation. The server stays up or stops cleanly, clients are told."""

from __future__ import annotations

import signal
import time

import pytest

for module in ("starlette", "uvicorn", "websockets"):
    pytest.importorskip(module, reason="the serve extra is not installed")

from conftest import first_frames  # noqa: E402
from edge_xemo.client import Client, ServerClosed  # noqa: E402
from serving import DEMO_VIDEO, replay_args, start_server  # noqa: E402


def statuses(client: Client, wanted: set[str], seconds: float) -> list[str]:
    """Codes of the status/error events that come within `seconds`, until every code in `wanted` came."""
    codes, deadline = [], time.monotonic() + seconds
    for e in client.events(timeout=seconds):
        if e["type"] in ("status", "error"):
            codes.append(e["code"])
        if wanted <= set(codes) or time.monotonic() > deadline:
            break
    return codes


@pytest.fixture
def short_clip(tmp_path):
    """Two seconds of the demo clip: a 'camera' (OpenCV on a file) that runs dry and is reopened."""
    if not DEMO_VIDEO.exists():
        pytest.skip(f"{DEMO_VIDEO} is absent (demo media comes from scripts/install.sh)")
    return first_frames(DEMO_VIDEO, tmp_path / "camera.mp4", 50)


def test_a_camera_that_goes_away_and_comes_back(tmp_path, short_clip):
    server = start_server(tmp_path, "--camera", str(short_clip), "--no-audio", "--cues-only")
    try:
        server.wait_ready()
        with Client(server.ws, server.tokens["read"]) as c:
            c.subscribe(types=["status", "error"])
            codes = statuses(c, {"camera_lost", "camera_reconnected"}, 30)
        assert {"camera_lost", "camera_reconnected"} <= set(codes), codes
        assert server.get("/healthz")[0] == 200 and server.proc.poll() is None
    finally:
        assert server.stop() == 0


def test_a_file_corrupt_part_way_through(tmp_path):
    replay_args()  # skips without the demo media
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(DEMO_VIDEO.read_bytes()[:300_000])  # about 10 s of the 30 s clip
    server = start_server(tmp_path, "--replay", str(cut), "--cues-only")
    try:
        server.wait_ready()
        with Client(server.ws, server.tokens["read"]) as c:
            c.subscribe(types=["status", "error"])
            codes = statuses(c, {"file_truncated"}, 40)
        assert "file_truncated" in codes
        assert server.get("/healthz")[0] == 200 and server.proc.poll() is None
        time.sleep(4)
        assert server.get("/readyz")[0] == 503  # the replay has ended: nothing is being analysed
    finally:
        assert server.stop() == 0
    assert "Traceback" not in server.log.read_text()


def test_sigterm_during_an_explanation_stops_cleanly(tmp_path):
    server = start_server(tmp_path, *replay_args())
    try:
        server.wait_ready()
        with Client(server.ws, server.tokens["read"]) as c:
            c.subscribe(types=["cues", "explanation", "status"])
            seen = []
            for e in c.events(timeout=30):
                seen.append(e["type"])
                if seen.count("explanation") >= 1 and e["type"] == "cues":
                    break  # the next window's explanation is under way about now
            t0 = time.monotonic()
            server.proc.send_signal(signal.SIGTERM)
            codes = []
            with pytest.raises(ServerClosed) as closed:
                for e in c.events(timeout=20):
                    codes.append(e.get("code"))
        assert "server_stopping" in codes
        assert closed.value.code in (1001, 1012)
        assert server.proc.wait(20) == 0 and time.monotonic() - t0 < 20
    finally:
        server.stop()
    log = server.log.read_text()
    assert "Traceback" not in log
