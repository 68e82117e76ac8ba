"""Prometheus metrics of the server: throughput, drops, latencies and clients; nothing about a person.

No label carries a face, a cue or an emotion: only stage names, event types and transports.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from ..core.events import Event

STAGES = ("visual_frame_mean", "audio_block_mean", "summarize")
"""The per-window stage timings of a `cues` event that are exported (per-frame and per-block means)."""

# Buckets in seconds: per-frame work is milliseconds, explanations are around a second on a laptop CPU
# (docs/decoder.md: 0.5-1 s median on 2 cores), so both ranges are covered.
FAST = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
SLOW = (0.05, 0.1, 0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0)


class Metrics:
    """Observes every published event and reads the analyzer's and the hub's counters at scrape time."""

    def __init__(self, pipeline, hub):
        self.registry = r = CollectorRegistry()
        self.events = Counter("edge_xemo_events", "Events published, by type.", ["type"], registry=r)
        self.stage = Histogram(
            "edge_xemo_stage_latency_seconds",
            "Per-item stage time (window means).",
            ["stage"],
            buckets=FAST,
            registry=r,
        )
        self.capture = Histogram(
            "edge_xemo_capture_to_cues_seconds",
            "End to end: from a window's last capture to its cues.",
            buckets=SLOW,
            registry=r,
        )
        self.explanation = Histogram(
            "edge_xemo_explanation_latency_seconds",
            "From a window's end to its finished explanation.",
            buckets=SLOW,
            registry=r,
        )
        self.first_token = Histogram(
            "edge_xemo_first_token_seconds",
            "From a window's end to its explanation's first token.",
            buckets=SLOW,
            registry=r,
        )
        self.closed = Counter(
            "edge_xemo_clients_closed", "Client connections closed, by reason.", ["reason"], registry=r
        )
        r.register(_Counters(pipeline, hub))

    def observe(self, event: Event) -> None:
        self.events.labels(event.type).inc()
        lat = event.latency_ms
        if event.type == "cues":
            for stage in STAGES:
                if stage in lat:
                    self.stage.labels(stage).observe(lat[stage] / 1e3)
            if "capture_to_cues" in lat:
                self.capture.observe(max(0.0, lat["capture_to_cues"]) / 1e3)
        elif event.type == "explanation":
            if "window_to_explanation" in lat:
                self.explanation.observe(lat["window_to_explanation"] / 1e3)
            if "window_to_first_token" in lat:
                self.first_token.observe(lat["window_to_first_token"] / 1e3)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _Counters:
    """The analyzer's stats and the hub's client state, read when Prometheus scrapes."""

    STATS = (
        "frames",
        "audio_blocks",
        "windows",
        "explanations",
        "cancelled",
        "errors",
        "frames_dropped",
        "audio_dropped",
        "frames_paused",
        "audio_paused",
    )

    def __init__(self, pipeline, hub):
        self.pipeline, self.hub = pipeline, hub

    def collect(self):
        analyzer = self.pipeline.analyzer
        stats = analyzer.stats if analyzer is not None else {}
        for name in self.STATS:
            yield CounterMetricFamily(f"edge_xemo_{name}", f"Analyzer counter {name}.", value=stats.get(name, 0))
        clients = GaugeMetricFamily("edge_xemo_clients", "Connected clients, by transport.", labels=["transport"])
        counts = {"ws": 0, "sse": 0}
        for c in self.hub.clients:
            counts[c.transport] = counts.get(c.transport, 0) + 1
        for transport, n in counts.items():
            clients.add_metric([transport], n)
        yield clients
        yield CounterMetricFamily(
            "edge_xemo_client_drops", "Events dropped from slow clients' queues.", value=self.hub.dropped()
        )
        yield GaugeMetricFamily(
            "edge_xemo_paused",
            "1 while analysis is paused.",
            value=1 if analyzer is not None and analyzer.paused else 0,
        )
