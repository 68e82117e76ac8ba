"""Cost of the voice stage per 1 s of real speech: VAD, frame prosody, window measures + cues, the
whole path (20 ms blocks through `process_block`, one 2 s window summarized per 1 s hop, without
and with the AECB bridge when installed),
and the optional transcript's real-time factor. One onnxruntime / CTranslate2 thread.

Speech: pyannote-audio's sample.wav ($EDGE_XEMO_HOME/demo) or Debian pocketsphinx-testdata.

    pytest benchmarks/bench_audio.py --benchmark-only --benchmark-columns=median,iqr,ops
    python benchmarks/bench_audio.py          # medians and p95 in ms per second of audio, ASR RTF
    python benchmarks/bench_audio.py --vad-graphs   # Silero's chunk graph vs the shipped sequence graph
"""

from __future__ import annotations

import itertools
import math
import os
import sys
import time
import wave
from pathlib import Path

import numpy as np
import pytest

from edge_xemo.core.models import ModelError
from edge_xemo.core.paths import demo_audio
from edge_xemo.voice.prosody import analyze_frames
from edge_xemo.core.types import SAMPLE_RATE
from edge_xemo.io.audio import Conditioner
from edge_xemo.voice.vad import CHUNK, SileroVad
from edge_xemo.voice.stage import VoicePerception, VoiceOptions

SOURCES = (demo_audio(),
           Path("/usr/share/pocketsphinx/test/data/librivox/sense_and_sensibility_01_austen_64kb-0870.wav"))
BLOCK = 320  # 20 ms, a typical capture block


def speech() -> np.ndarray:
    for path in SOURCES:
        if path.exists():
            with wave.open(str(path)) as w:
                x = np.frombuffer(w.readframes(w.getnframes()), np.int16).astype(np.float32) / 32768
            return x[7 * SAMPLE_RATE :] if len(x) > 20 * SAMPLE_RATE else x  # sample.wav: skip 7 s of silence
    pytest.skip("no real speech: install pyannote's sample.wav (install step) or pocketsphinx-testdata")


class OneSecond:
    """Feeds the next second of a looping clip as 20 ms blocks and summarizes the last 2 s window."""

    def __init__(self, x: np.ndarray, options: VoiceOptions | None = None):
        self.x, self.an = x, VoicePerception(options or VoiceOptions(use_bridge=False))
        self.pos, self.t, self.obs, self.i = 0, 0.0, [], 0
        self.conditioner, self.kept = Conditioner(), []  # as the pipeline conditions audio where it enters

    def __call__(self):
        for _ in range(SAMPLE_RATE // BLOCK):
            if self.pos + BLOCK > len(self.x):
                self.pos = 0
            block = self.conditioner.block(self.x[self.pos : self.pos + BLOCK], SAMPLE_RATE, self.t, self.i)
            self.kept.append(block.samples)
            self.obs.append(self.an.process_block(block))
            self.pos, self.t, self.i = self.pos + BLOCK, self.t + BLOCK / SAMPLE_RATE, self.i + 1
        self.obs, self.kept = self.obs[-2 * SAMPLE_RATE // BLOCK :], self.kept[-2 * SAMPLE_RATE // BLOCK :]
        return self.an.summarize(np.concatenate(self.kept), self.obs[0].t, self.obs, self.obs[0].t, self.t)


def vad_one_second(vad: SileroVad, x: np.ndarray, t: float):
    """One second of speech through `accept` in 20 ms blocks (about one chunk scored per 1.6 blocks),
    from source time `t`: call it with t = 0, 1, 2, ... so that the stream continues."""
    for i in range(0, SAMPLE_RATE, BLOCK):
        vad.accept(x[i : i + BLOCK], t + i / SAMPLE_RATE)


def vad_graphs(rounds: int = 6, block_chunks: int = 2) -> None:
    """The shipped sequence graph (every chunk of a block in one call) against the package's chunk
    graph silero_vad.onnx (one call per chunk), on the same speech, alternating, one thread."""
    from edge_xemo.core.models import onnx_session, verified_path

    x = speech()
    chunks = x[: len(x) // CHUNK * CHUNK].reshape(-1, CHUNK)
    chunk_graph = onnx_session(str(verified_path("silero_vad").with_name("silero_vad.onnx")))
    sr = np.array(SAMPLE_RATE, np.int64)

    def by_chunk() -> np.ndarray:
        state, context, out = np.zeros((2, 1, 128), np.float32), np.zeros(64, np.float32), []
        for c in chunks:
            p, state = chunk_graph.run(None, {"input": np.concatenate([context, c])[None], "state": state, "sr": sr})
            context = c[-64:]
            out.append(p[0, 0])
        return np.array(out)

    def by_block() -> np.ndarray:
        vad = SileroVad()
        return np.concatenate([vad.probabilities(chunks[i : i + block_chunks].ravel())
                               for i in range(0, len(chunks), block_chunks)])

    times: dict[str, list[float]] = {"chunk graph, a call per chunk": [], f"sequence graph, {block_chunks} chunks a call": []}
    for _ in range(rounds):
        for (name, ms), fn in zip(times.items(), (by_chunk, by_block)):
            t0 = time.perf_counter()
            fn()
            ms.append((time.perf_counter() - t0) * 1e3 / len(chunks))
    sys.stdout.write(f"Silero VAD, {len(chunks)} chunks of speech, {rounds} alternating rounds, "
                     f"load average {os.getloadavg()[0]:.2f}\n")
    for name, ms in times.items():
        sys.stdout.write(f"{name:36s} {np.median(ms):.3f} ms a chunk (median of rounds)\n")
    diff = np.abs(by_chunk() - by_block()).max()
    sys.stdout.write(f"max |difference| of the speech probabilities: {diff:.1e}\n")


def test_vad_per_second(benchmark):
    x, vad = speech()[:SAMPLE_RATE], SileroVad()
    seconds = itertools.count()
    benchmark(lambda: vad_one_second(vad, x, next(seconds)))


def test_frame_prosody_per_second(benchmark):
    x = speech()[: SAMPLE_RATE + 2000]
    benchmark(analyze_frames, x)


@pytest.mark.parametrize("bridge", [False, True], ids=["cues", "cues+aecb"])
def test_whole_audio_path_per_second(benchmark, bridge):
    step = OneSecond(speech(), VoiceOptions(use_bridge=bridge))
    if bridge and not step.an.has_bridge:
        pytest.skip("the AECB artifact is not installed")
    for _ in range(12):  # past the baseline warm-up, so cues are computed as in steady state
        step()
    benchmark(step)


def test_asr_real_time_factor(benchmark):
    pytest.importorskip("faster_whisper", reason="faster-whisper (asr extra) is not installed")
    from edge_xemo.voice.asr import Transcriber

    try:
        tr = Transcriber()
    except ModelError as e:
        pytest.skip(str(e))
    x = speech()[: 5 * SAMPLE_RATE]
    benchmark.pedantic(tr.transcribe, args=(x,), rounds=3, iterations=1)
    benchmark.extra_info["rtf"] = tr.last_rtf


def _stats(fn, n: int) -> tuple[float, float, float]:
    """Median and p95 wall ms, and median process CPU ms (robust to a machine shared with other jobs)."""
    ts, cpu = [], []
    for _ in range(n):
        t, c = time.perf_counter(), time.process_time()
        fn()
        ts.append((time.perf_counter() - t) * 1000)
        cpu.append((time.process_time() - c) * 1000)
    return float(np.median(ts)), float(np.percentile(ts, 95)), float(np.median(cpu))


def main(n: int = 60) -> None:
    x = speech()
    vad, seconds = SileroVad(), itertools.count()
    rows = {
        "vad": _stats(lambda: vad_one_second(vad, x[:SAMPLE_RATE], next(seconds)), n),
        "frame prosody": _stats(lambda: analyze_frames(x[: SAMPLE_RATE + 2000]), n),
    }
    with_bridge = OneSecond(x, VoiceOptions(use_bridge=True))
    if with_bridge.an.has_bridge:
        for _ in range(12):
            with_bridge()
        rows["whole path + AECB"] = _stats(with_bridge, n)
    step = OneSecond(x)
    for _ in range(12):
        step()
    parts: list[dict] = []
    rows["whole path"] = _stats(lambda: parts.append(step().latency_ms), n)
    for stage in ("vad", "prosody", "measure", "cues"):
        # latency_ms sums the 2 s window's blocks: halve the block stages for one second's share
        per_s = [p[stage] / (2 if stage in ("vad", "prosody") else 1) for p in parts]
        rows[f"  of which {stage}"] = (float(np.median(per_s)), float(np.percentile(per_s, 95)), math.nan)
    for name, (med, p95, cpu) in rows.items():
        print(f"{name:22s} median {med:7.2f} ms, p95 {p95:7.2f} ms wall, median {cpu:6.2f} ms CPU per second of audio")
    try:
        from edge_xemo.voice.asr import Transcriber, TranscriberOptions

        for threads in (1, 2):
            tr = Transcriber(TranscriberOptions(), threads=threads)
            tr.transcribe(x[: 5 * SAMPLE_RATE])
            rtfs = []
            for _ in range(3):
                tr.transcribe(x[: 5 * SAMPLE_RATE])
                rtfs.append(tr.last_rtf)
            print(f"ASR tiny.en int8, {threads} thread(s): real-time factor median {np.median(rtfs):.3f} (5 s of speech)")
    except (ImportError, RuntimeError, ModelError) as e:
        print(f"ASR: skipped ({str(e).splitlines()[0]})")


if __name__ == "__main__":
    vad_graphs() if "--vad-graphs" in sys.argv else main()
