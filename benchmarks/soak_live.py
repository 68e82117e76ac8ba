"""Soak: `edge-xemo live` for 30 minutes on a network camera and a microphone, the way a kiosk runs.

The camera is the demo clip served as MJPEG over HTTP on 127.0.0.1 (tests/faults/mjpeg_camera.py,
25 frames/s, looping); the microphone is a PulseAudio null sink's monitor with the demo's real
speech played into it in a loop. Every 10 s it samples the process's RSS, threads and open files;
every minute it prints them with the minute's explanations, drops and cancellations (from the JSONL).
The report gives the RSS slope after a warm-up (least squares, MB per hour), the ranges of threads
and files, the per-minute counts, the latency percentiles, and how the final SIGINT went. Not part of
the test suite (30 minutes).

    .venv/bin/python benchmarks/soak_live.py --minutes 30 --out runs/soak_live.json
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "tests" / "faults"), str(REPO / "benchmarks")]
from mjpeg_camera import Camera  # noqa: E402
from soak import WARMUP_S, percentiles, proc_sample  # noqa: E402

from edge_xemo.core.paths import demo_audio, demo_video  # noqa: E402

SINK = "edge_xemo_soak"


def virtual_microphone() -> None:
    """A PulseAudio null sink whose monitor is the default capture device (as tests/conftest.py makes it)."""
    if subprocess.run(["pulseaudio", "--check"]).returncode != 0:
        subprocess.run(["pulseaudio", "-D", "--exit-idle-time=-1"], capture_output=True)
        time.sleep(1)
    if SINK not in subprocess.run(["pactl", "list", "short", "sinks"], capture_output=True, text=True).stdout:
        subprocess.run(["pactl", "load-module", "module-null-sink", f"sink_name={SINK}"], check=True, capture_output=True)
    subprocess.run(["pactl", "set-default-sink", SINK], check=True)
    subprocess.run(["pactl", "set-default-source", f"{SINK}.monitor"], check=True)


def read_events(path: Path, offset: int) -> tuple[list[dict], int]:
    """The complete lines written since `offset`, and the new offset."""
    with open(path, "rb") as f:
        f.seek(offset)
        data = f.read()
    end = data.rfind(b"\n") + 1
    return [json.loads(line) for line in data[:end].splitlines()], offset + end


def minute_counts(events: list[dict]) -> dict:
    codes = [e.get("code") for e in events if e["type"] in ("status", "error")]
    return {"explanations": sum(e["type"] == "explanation" for e in events),
            "windows": sum(e["type"] == "cues" for e in events),
            "drop_reports": codes.count("dropped"), "cancelled": codes.count("explanation_cancelled"),
            "errors": sum(e["type"] == "error" for e in events)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=30.0)
    ap.add_argument("--out", type=Path, default=REPO / "runs" / "soak_live.json")
    args = ap.parse_args()
    video, audio = demo_video(), demo_audio()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    jsonl, log = args.out.with_suffix(".jsonl"), args.out.with_suffix(".log")
    virtual_microphone()
    speech = subprocess.Popen(["bash", "-c", f"while true; do paplay --device={SINK} '{audio}' || sleep 1; done"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    camera = Camera(video).start()
    proc = subprocess.Popen([sys.executable, "-m", "edge_xemo", "live", "--camera", camera.url, "--mic", "default",
                             "--threads", "1", "--jsonl", str(jsonl), "--quiet"], cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=open(log, "w"))
    samples, minutes, offset = [], [], 0
    capture_ms, explain_ms = [], []
    last = {"drops": [0, 0], "cancelled": 0}
    t0 = time.monotonic()
    try:
        while time.monotonic() - t0 < args.minutes * 60:
            time.sleep(10)
            if proc.poll() is not None:
                raise SystemExit(f"edge-xemo live ended early ({proc.returncode}): {log.read_text()[-2000:]}")
            samples.append({"t_s": round(time.monotonic() - t0, 1), **proc_sample(proc.pid)})
            if len(samples) % 6 == 0:
                events, offset = read_events(jsonl, offset)
                for e in events:
                    lat = e.get("latency_ms", {})
                    if e["type"] == "cues" and "capture_to_cues" in lat:
                        capture_ms.append(lat["capture_to_cues"])
                    if e["type"] == "explanation" and "window_to_explanation" in lat:
                        explain_ms.append(lat["window_to_explanation"])
                    if e.get("code") == "dropped":
                        last["drops"] = [e["frames_dropped"], e["audio_dropped"]]
                row = {"minute": len(minutes) + 1, **samples[-1], **minute_counts(events),
                       "frames_dropped_total": last["drops"][0], "audio_dropped_total": last["drops"][1]}
                minutes.append(row)
                print(json.dumps(row), flush=True)
    finally:
        proc.send_signal(signal.SIGINT)
        t_stop = time.monotonic()
        try:
            rc = proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            rc = "killed after 30 s"
        stop_s = time.monotonic() - t_stop
        camera.kill()
        os.killpg(speech.pid, signal.SIGKILL)
    tail, _ = read_events(jsonl, offset)
    steady = [s for s in samples if s["t_s"] >= WARMUP_S]
    hours = np.array([s["t_s"] for s in steady]) / 3600
    rss = np.array([s["rss_mb"] for s in steady])
    report = {
        "minutes": args.minutes, "exit": {"code": rc, "seconds_after_sigint": round(stop_s, 2),
                                          "last_event": tail[-1] if tail else None},
        "rss_mb": {"first": samples[0]["rss_mb"], "after_warmup": float(rss[0]) if len(rss) else None,
                   "last": samples[-1]["rss_mb"], "max": max(s["rss_mb"] for s in samples),
                   "slope_mb_per_hour_after_warmup": float(np.polyfit(hours, rss, 1)[0]) if len(steady) >= 3 else None},
        "threads": {"min": min(s["threads"] for s in samples), "max": max(s["threads"] for s in samples)},
        "fds": {"min": min(s["fds"] for s in samples), "max": max(s["fds"] for s in samples)},
        "per_minute": {k: {"min": min(m[k] for m in minutes), "median": float(np.median([m[k] for m in minutes])),
                           "max": max(m[k] for m in minutes)} for k in ("explanations", "windows")} if minutes else {},
        "totals": {"drop_reports": sum(m["drop_reports"] for m in minutes), "cancelled": sum(m["cancelled"] for m in minutes),
                   "errors": sum(m["errors"] for m in minutes), "frames_dropped": last["drops"][0],
                   "audio_dropped": last["drops"][1]},
        "latency_ms": {"capture_to_cues": percentiles(capture_ms), "window_to_explanation": percentiles(explain_ms)},
        "load_average": os.getloadavg()[0],
        "minutes_rows": minutes, "samples": samples,
    }
    args.out.write_text(json.dumps(report, indent=1))
    print(json.dumps({k: v for k, v in report.items() if k not in ("samples", "minutes_rows")}, indent=1))


if __name__ == "__main__":
    main()
