"""Soak: `edge-xemo serve --replay` of the demo clip in a loop with three WebSocket clients.

Samples the server's RSS, open file descriptors and threads every 10 s, and reports the RSS slope
after a warm-up (least squares, MB per hour), the clients' event counts and drops, and latency
percentiles: capture to cues and window to explanation (the server's own timings) and server to
client (the event's wall_time to its arrival). Not part of the test suite (30 minutes).

    .venv/bin/python benchmarks/soak.py --minutes 30 --out runs/soak.json
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from edge_xemo.client import Client  # noqa: E402
from edge_xemo.core.paths import demo_audio, demo_video  # noqa: E402

WARMUP_S = 120.0
"""Samples before this are left out of the slope: models, caches and the replay ring fill in the first minute."""


def proc_sample(pid: int) -> dict:
    with open(f"/proc/{pid}/status") as f:
        status = dict(line.split(":", 1) for line in f)
    return {"rss_mb": int(status["VmRSS"].split()[0]) / 1024, "threads": int(status["Threads"]),
            "fds": len(os.listdir(f"/proc/{pid}/fd"))}


def percentiles(xs: list[float]) -> dict:
    if not xs:
        return {}
    a = np.asarray(xs)
    return {"n": len(xs), "p50": float(np.percentile(a, 50)), "p95": float(np.percentile(a, 95)),
            "p99": float(np.percentile(a, 99)), "max": float(a.max())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=30.0)
    ap.add_argument("--clients", type=int, default=3)
    ap.add_argument("--out", type=Path, default=REPO / "runs" / "soak.json")
    args = ap.parse_args()
    video, audio = demo_video(), demo_audio()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    tokens_file = args.out.with_suffix(".tokens.json")
    tokens_file.unlink(missing_ok=True)
    log = open(args.out.with_suffix(".log"), "w")
    server = subprocess.Popen([sys.executable, "-m", "edge_xemo", "serve", "--replay", str(video), "--audio", str(audio),
                               "--loop", "--port", str(port), "--token-file", str(tokens_file), "--threads", "1"],
                              cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
    while not tokens_file.exists():
        time.sleep(0.2)
    token = json.loads(tokens_file.read_text())["read"]
    url = f"ws://127.0.0.1:{port}/v1/ws"
    stop = threading.Event()
    counts = [dict(events=0, explanations=0, gaps=0) for _ in range(args.clients)]
    delivery_ms: list[float] = []
    capture_ms: list[float] = []
    explain_ms: list[float] = []

    def client(i: int) -> None:
        for _ in range(100):  # the server may still be loading
            try:
                c = Client(url, token)
                break
            except OSError:
                time.sleep(1)
        with c:
            c.subscribe()  # every type, so a gap in seq is a dropped event
            last = None
            while not stop.is_set():
                for e in c.events(timeout=1.0):
                    counts[i]["events"] += 1
                    if last is not None and e["seq"] != last + 1:
                        counts[i]["gaps"] += 1
                    last = e["seq"]
                    if i == 0:
                        delivery_ms.append((time.time() - e["wall_time"]) * 1e3)
                        lat = e.get("latency_ms", {})
                        if e["type"] == "cues" and "capture_to_cues" in lat:
                            capture_ms.append(lat["capture_to_cues"])
                        if e["type"] == "explanation" and "window_to_explanation" in lat:
                            explain_ms.append(lat["window_to_explanation"])
                    if e["type"] == "explanation":
                        counts[i]["explanations"] += 1
                    if stop.is_set():
                        break

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(args.clients)]
    for t in threads:
        t.start()
    samples, t0 = [], time.monotonic()
    load0 = os.getloadavg()
    try:
        while time.monotonic() - t0 < args.minutes * 60:
            samples.append({"t_s": round(time.monotonic() - t0, 1), **proc_sample(server.pid)})
            time.sleep(10)
    finally:
        stop.set()
        for t in threads:
            t.join(10)
        server.send_signal(signal.SIGTERM)
        rc = server.wait(60)
    steady = [s for s in samples if s["t_s"] >= WARMUP_S]
    t = np.array([s["t_s"] for s in steady]) / 3600
    rss = np.array([s["rss_mb"] for s in steady])
    slope = float(np.polyfit(t, rss, 1)[0]) if len(steady) >= 3 else None
    report = {
        "minutes": args.minutes, "clients": args.clients, "server_exit": rc,
        "load_average_start_end": [load0[0], os.getloadavg()[0]],
        "rss_mb": {"first": samples[0]["rss_mb"], "after_warmup": rss[0] if len(rss) else None,
                   "last": samples[-1]["rss_mb"], "max": max(s["rss_mb"] for s in samples),
                   "slope_mb_per_hour_after_warmup": slope},
        "fds": {"min": min(s["fds"] for s in samples), "max": max(s["fds"] for s in samples)},
        "threads": {"min": min(s["threads"] for s in samples), "max": max(s["threads"] for s in samples)},
        "clients_seen": counts,
        "latency_ms": {"capture_to_cues": percentiles(capture_ms), "window_to_explanation": percentiles(explain_ms),
                       "server_to_client": percentiles(delivery_ms)},
        "samples": samples,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1))
    print(json.dumps({k: v for k, v in report.items() if k != "samples"}, indent=1))


if __name__ == "__main__":
    main()
