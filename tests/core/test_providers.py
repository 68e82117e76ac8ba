"""onnxruntime provider choice: the order asked for, the CPU fallback, TensorRT's engine cache."""

import pytest

from edge_xemo.core import models
from edge_xemo.core.models import provider_options, select_providers

GPU_BUILD = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]


@pytest.mark.parametrize("provider, chosen", [
    ("auto", GPU_BUILD), ("tensorrt", GPU_BUILD), ("cuda", GPU_BUILD[1:]), ("cpu", GPU_BUILD[2:])])
def test_a_gpu_build_gets_the_providers_asked_for_with_the_cpu_last(monkeypatch, provider, chosen):
    monkeypatch.setattr(models, "available_providers", lambda: GPU_BUILD)
    assert select_providers(provider) == (chosen, None)


def test_a_cpu_build_falls_back_to_the_cpu_and_says_so(monkeypatch):
    monkeypatch.setattr(models, "available_providers", lambda: ["CPUExecutionProvider"])
    providers, note = select_providers("tensorrt")
    assert providers == ["CPUExecutionProvider"] and "TensorrtExecutionProvider is not available" in note
    with pytest.raises(ValueError, match="unknown provider"):
        select_providers("rocm")


def test_tensorrt_keeps_its_engines_and_timings_in_the_cache_and_the_others_take_defaults(tmp_path):
    trt, cuda, cpu = provider_options(GPU_BUILD, tmp_path)
    assert trt == {"trt_engine_cache_enable": "True", "trt_engine_cache_path": str(tmp_path),
                   "trt_timing_cache_enable": "True", "trt_timing_cache_path": str(tmp_path)}
    assert cuda == {} and cpu == {}
    assert "trt_fp16_enable" not in trt  # fp32, where the graphs' parity was measured
