"""Backpressure: a client that never reads loses its oldest events and is closed as stalled, while the
others get every event in order and the server's memory stays bounded.

The server is the real app under uvicorn in this process; the producer publishes the events of a real
analysis of the demo clip, again and again, at 200 events/s (a live analyzer makes about 3).
"""

from __future__ import annotations

import json
import resource
import socket
import threading
import time

import pytest

for module in ("starlette", "uvicorn", "websockets", "prometheus_client"):
    pytest.importorskip(module, reason="the serve extra is not installed")

import uvicorn  # noqa: E402

from edge_xemo.analyzer import Analyzer, AnalyzerOptions, RunningMode  # noqa: E402
from edge_xemo.client import Client  # noqa: E402
from edge_xemo.io.sources import FileSource  # noqa: E402
from edge_xemo.serve.app import AppConfig, ServerLimits, create_app  # noqa: E402
from edge_xemo.serve.auth import Tokens  # noqa: E402
from edge_xemo.serve.hub import EventHub  # noqa: E402
from edge_xemo.serve.metrics import Metrics  # noqa: E402
from edge_xemo.serve.pipeline import Pipeline  # noqa: E402
from edge_xemo.serve.server import _Server  # noqa: E402
from serving import DEMO_AUDIO, DEMO_VIDEO  # noqa: E402

RATE, SECONDS, QUEUE = 200, 8, 64


@pytest.fixture(scope="module")
def recorded():
    """The events of a real perception-only analysis of the demo clip (VIDEO mode)."""
    for f in (DEMO_VIDEO, DEMO_AUDIO):
        if not f.exists():
            pytest.skip(f"{f} is absent (demo media comes from scripts/install.sh)")
    out = []
    with Analyzer.create_from_options(AnalyzerOptions(running_mode=RunningMode.VIDEO, judgement=None, decoder=None)) as a:
        a.run_sources(FileSource(DEMO_VIDEO, audio_path=DEMO_AUDIO))
        out = list(a.events())
    assert len(out) > 30
    return out


def _never_reading_client(port: int, token: str) -> socket.socket:
    """A WebSocket client on a raw socket with a 4 KiB receive buffer that authenticates, subscribes,
    and never reads again (websockets' sans-I/O protocol makes the bytes)."""
    from websockets.client import ClientProtocol
    from websockets.uri import parse_uri

    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    protocol = ClientProtocol(parse_uri(f"ws://127.0.0.1:{port}/v1/ws"))
    protocol.send_request(protocol.connect())
    for message in (None, {"type": "auth", "token": token}, {"type": "subscribe"}):
        if message is not None:
            protocol.send_text(json.dumps(message).encode())
        sock.sendall(b"".join(protocol.data_to_send()))
        while not protocol.events_received():  # the handshake answer, hello, auth_ok, subscribed
            protocol.receive_data(sock.recv(65536))
    return sock


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS")) / 1024


def test_a_client_that_never_reads_is_dropped_from_and_closed_while_the_others_keep_up(recorded):
    tokens = Tokens(admin="a" * 32, read="r" * 32)
    hub = EventHub(ring=256, client_queue=QUEUE)
    pipeline = Pipeline([], AnalyzerOptions(judgement=None, decoder=None), hub)  # not started: the test publishes
    metrics = Metrics(pipeline, hub)
    hub.on_publish = metrics.observe
    app = create_app(AppConfig(tokens, ServerLimits(send_timeout_s=2.0, client_queue=QUEUE)), hub, pipeline, metrics)
    # accepted sockets inherit the listener's send buffer: 32 KiB instead of the kernel's autotuned
    # megabytes, so a client that stops reading blocks the server's sends within seconds, not minutes
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 32768)
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    server = _Server(uvicorn.Config(app, log_level="warning", lifespan="off", ws="websockets-sansio"), hub)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    url = f"ws://127.0.0.1:{port}/v1/ws"
    stuck = _never_reading_client(port, tokens.read)
    try:
        received: dict[int, list[int]] = {0: [], 1: []}
        readers = [Client(url, tokens.read) for _ in range(2)]
        for r in readers:
            r.subscribe()

        def read(i: int) -> None:
            for e in readers[i].events(timeout=5):
                received[i].append(e["seq"])

        threads = [threading.Thread(target=read, args=(i,), daemon=True) for i in range(2)]
        for t in threads:
            t.start()
        time.sleep(0.5)
        rss0, queued, published = rss_mb(), [], 0
        t0 = time.monotonic()
        while time.monotonic() - t0 < SECONDS:
            hub.publish(recorded[published % len(recorded)])
            published += 1
            if published % 50 == 0:
                queued.append(max((len(c) for c in hub.clients), default=0))
            time.sleep(max(0.0, t0 + published / RATE - time.monotonic()))
        rss1 = rss_mb()
        for t in threads:
            t.join(30)
        text = metrics.render().decode()
    finally:
        server.should_exit = True
        thread.join(10)
        stuck.close()
    first = received[0][0]
    for seqs in received.values():
        assert seqs == list(range(first, first + published)), "a reading client lost or reordered events"
    assert max(queued) <= QUEUE
    dropped = float(next(line.split()[-1] for line in text.splitlines() if line.startswith("edge_xemo_client_drops_total")))
    assert dropped > 0
    assert 'edge_xemo_clients_closed_total{reason="stalled"} 1.0' in text
    # what was published would be ~5 MB of JSON per client; a stuck client costs at most its queue
    assert rss1 - rss0 < 40, f"RSS grew {rss1 - rss0:.1f} MB"
    print(f"published {published}, dropped {dropped:.0f}, max queued {max(queued)}, RSS {rss0:.0f} -> {rss1:.0f} MB,"
          f" peak {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")
