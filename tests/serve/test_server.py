"""`edge-xemo serve` as a client sees it: auth, limits, the same events over WebSocket and SSE, control,
metrics, schema (a real server process replaying the demo clip in real time)."""

from __future__ import annotations

import json
import threading
import time

import pytest

for module in ("starlette", "uvicorn", "websockets", "prometheus_client"):
    pytest.importorskip(module, reason="the serve extra is not installed")

from edge_xemo.client import Client, ProtocolError, ServerClosed, sse_events  # noqa: E402
from edge_xemo.core import events as ev  # noqa: E402
from serving import replay_args, server, start_server  # noqa: E402,F401 (server: a fixture)


def closed_code(fn) -> int | None:
    with pytest.raises(ServerClosed) as e:
        fn()
    return e.value.code


def test_health_readiness_and_the_token_gates(server):
    status, body = server.get("/healthz")
    assert status == 200
    status, body = server.get("/readyz")
    ready = json.loads(body)
    assert status == 200 and ready["components"] == {"models": "ready", "replay_video": "ready", "replay_audio": "ready"}
    for path in ("/metrics", "/v1/info", "/v1/schema", "/v1/events/latest"):
        assert server.get(path)[0] == 401, path
        assert server.get(path, "not-the-token")[0] == 401, path
        assert server.get(path, server.tokens["read"])[0] == 200, path
    info = json.loads(server.get("/v1/info", server.tokens["read"])[1])
    assert info["schema_version"] == ev.SCHEMA_VERSION and info["auth"] is True
    assert {"aecb", "face_detector"} <= set(info["run"]["models"])  # what the run uses, with sha256
    assert all(len(m["sha256"]) == 64 for m in info["run"]["models"].values())


def test_websocket_auth_no_token_bad_token_and_bad_origin(server):
    assert closed_code(lambda: Client(server.ws, None)) == 4401
    assert closed_code(lambda: Client(server.ws, "x" * 43)) == 4401
    assert closed_code(lambda: Client(server.ws, server.tokens["admin"], origin="http://evil.example")) == 403
    with Client(server.ws, server.tokens["read"], origin=server.http) as c:  # the page's own origin passes
        assert c.scopes == ["read"] and c.hello["auth_required"] is True


def test_an_oversized_message_closes_the_connection(server):
    with Client(server.ws, server.tokens["read"]) as c:
        c.send_raw(json.dumps({"type": "ping", "pad": "x" * 10_000}))
        assert closed_code(lambda: c.ping()) == 1009


def test_too_many_clients_are_refused_and_the_count_frees_up(server):
    clients = [Client(server.ws, server.tokens["read"]) for _ in range(4)]  # the fixture allows 4
    try:
        assert closed_code(lambda: Client(server.ws, server.tokens["read"])) == 4429
    finally:
        for c in clients:
            c.close()
    time.sleep(0.5)
    with Client(server.ws, server.tokens["read"]) as c:
        assert c.ping() < 5


def test_authentication_must_come_in_time(server):
    from websockets.sync.client import connect

    with connect(server.ws) as raw:
        assert json.loads(raw.recv(5))["type"] == "hello"
        t0 = time.monotonic()
        with pytest.raises(Exception) as e:
            raw.recv(15)
        assert e.value.rcvd.code == 4408 and 4 < time.monotonic() - t0 < 10


def test_three_clients_see_the_same_sequence_and_sse_agrees(server):
    """Each client gets every event in seq order; where they overlap the objects are identical."""
    got: dict[int, list[dict]] = {}

    def read(i: int) -> None:
        with Client(server.ws, server.tokens["read"]) as c:
            c.subscribe()
            got[i] = _until(c, time.monotonic() + 8)

    threads = [threading.Thread(target=read, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    seqs = [[e["seq"] for e in got[i]] for i in range(3)]
    for s in seqs:
        assert len(s) > 10 and s == list(range(s[0], s[0] + len(s)))  # nothing missing, nothing reordered
    lo, hi = max(s[0] for s in seqs), min(s[-1] for s in seqs)
    assert hi - lo > 5
    common = [[e for e in got[i] if lo <= e["seq"] <= hi] for i in range(3)]
    assert common[0] == common[1] == common[2]
    for e in common[0]:
        ev.validate(e)
    replayed = []
    for event_id, name, d in sse_events(server.http, server.tokens["read"], last_event_id=lo - 1):
        replayed.append(d)
        assert event_id == d["seq"] and name == d["type"]
        if d["seq"] >= hi:
            break
    assert replayed == common[0]
    assert {"cues", "explanation"} <= {e["type"] for e in common[0]}


def _until(client: Client, deadline: float) -> list[dict]:
    out = []
    for e in client.events(timeout=3):
        out.append(e)
        if time.monotonic() > deadline:
            break
    return out


def test_subscription_filters_types_and_thins_cues(server):
    with Client(server.ws, server.tokens["read"]) as c:
        with pytest.raises(ProtocolError, match="unknown event types"):
            c.subscribe(types=["selfies"])
        reply = c.subscribe(types=["cues"], max_hz=0.4)
        assert reply["types"] == ["cues"]
        events = _until(c, time.monotonic() + 6)
    assert events and {e["type"] for e in events} == {"cues"}
    # the replay makes one cues event a second for its one face; at 0.4 Hz at most every 2.5 s passes
    assert len(events) <= 3


def test_control_needs_the_admin_scope_and_pause_stops_the_cues(server):
    with Client(server.ws, server.tokens["read"]) as c:
        with pytest.raises(ProtocolError, match="admin"):
            c.control("pause")
    assert server.get("/v1/control/pause", server.tokens["read"], method="POST")[0] == 403
    with Client(server.ws, server.tokens["admin"]) as c:
        c.subscribe(types=["cues", "status"])
        try:
            assert c.control("pause")["paused"] is True
            events = _until(c, time.monotonic() + 4)
            codes = [e.get("code") for e in events if e["type"] == "status"]
            assert "paused" in codes
            after = events[[e.get("code") for e in events].index("paused") + 1:]
            assert not [e for e in after if e["type"] == "cues" and e["t_start"] > events[0]["t_end"] + 1]
            ready = json.loads(server.get("/readyz")[1])
            assert set(ready["components"].values()) <= {"ready", "paused"}
            status, body = server.get("/v1/control/reset_baseline?face_id=0", server.tokens["admin"], method="POST")
            assert status == 200
        finally:
            assert c.control("resume")["paused"] is False
        events = _until(c, time.monotonic() + 4)
    assert "resumed" in [e.get("code") for e in events]
    assert "baseline_reset" in [e.get("code") for e in events]
    assert any(e["type"] == "cues" for e in events)


def test_metrics_and_schema(server):
    text = server.get("/metrics", server.tokens["read"])[1].decode()
    for name in ("edge_xemo_frames_total", "edge_xemo_events_total", "edge_xemo_stage_latency_seconds_bucket",
                 "edge_xemo_capture_to_cues_seconds_count", "edge_xemo_explanation_latency_seconds_count",
                 "edge_xemo_clients", "edge_xemo_client_drops_total"):
        assert name in text, name
    frames = float(next(line.split()[-1] for line in text.splitlines() if line.startswith("edge_xemo_frames_total")))
    assert frames > 50
    assert "face_id" not in text and "happy" not in text  # nothing about a person
    schema = json.loads(server.get("/v1/schema", server.tokens["read"])[1])
    assert schema["$schema"].endswith("2020-12/schema")
    assert [v["title"] for v in schema["oneOf"]] == list(ev.EVENT_TYPES)
    latest = json.loads(server.get("/v1/events/latest", server.tokens["read"])[1])
    assert latest["events"]["cues"]["type"] == "cues" and latest["last_seq"] >= latest["events"]["cues"]["seq"]


def test_a_non_loopback_host_without_a_token_is_refused(tmp_path):
    s = start_server(tmp_path, "--host", "0.0.0.0", "--no-auth", "--cues-only", "--replay", "/nonexistent.mp4")
    assert s.proc.wait(60) == 2
    assert "not a loopback address" in s.log.read_text()


def test_a_token_file_others_can_read_is_refused(tmp_path):
    token_file = tmp_path / "tokens.json"
    token_file.write_text(json.dumps({"admin": "a" * 32, "read": "r" * 32}))
    token_file.chmod(0o644)
    s = start_server(tmp_path, "--cues-only", *replay_args(), token_file=token_file)
    assert s.proc.wait(60) == 2
    log = s.log.read_text()
    assert "readable by others" in log and "Traceback" not in log


def test_the_token_file_appears_whole_and_a_concurrent_one_is_kept(tmp_path, monkeypatch):
    """`load_or_create` links a fully written file into place (a reader polling for it never reads it empty, as
    this suite's own server start did now and then); when another server created the file in between, that one
    is kept and read."""
    import os

    from edge_xemo.serve import auth

    path = tmp_path / "serve" / "tokens.json"
    tokens, created = auth.load_or_create(path)
    assert created and json.loads(path.read_text()) == {"admin": tokens.admin, "read": tokens.read}
    assert os.stat(path).st_mode & 0o777 == 0o600 and sorted(p.name for p in path.parent.iterdir()) == ["tokens.json"]
    assert auth.load_or_create(path) == (tokens, False)

    other = tmp_path / "other.json"
    theirs = {"admin": "a" * 32, "read": "r" * 32}

    def another_server_first(src, dst):
        fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(theirs, f)
        raise FileExistsError(dst)

    monkeypatch.setattr(auth.os, "link", another_server_first)
    kept, created = auth.load_or_create(other)
    assert not created and (kept.admin, kept.read) == (theirs["admin"], theirs["read"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other.json", "serve"]
