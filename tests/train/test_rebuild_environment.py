"""The rebuild records what an artifact's bytes may depend on, and names what changed since the shipped build."""

from __future__ import annotations

import json

from train.rebuild import BUILT_WITH, environment, environment_changes


def test_environment_records_cpu_flags_cores_and_package_versions():
    env = environment()
    assert env["cpus"] >= 1 and env["python"].count(".") == 2
    assert "numpy" in env["packages"] and "onnxruntime" in env["packages"]
    assert all(f.startswith(("avx", "amx", "fma", "f16c")) for f in env["cpu_vector_flags"])


def test_environment_changes_name_cpu_flags_and_packages():
    built = {"python": "3.11.2", "machine": "x86_64", "cpus": 2, "cpu_vector_flags": ["avx2", "fma"],
             "packages": {"torch": "2.13.0", "numpy": "2.4.6"}}
    now = {"python": "3.11.2", "machine": "x86_64", "cpus": 2, "cpu_vector_flags": ["avx2", "avx512f", "fma"],
           "packages": {"torch": "2.13.0", "numpy": "2.4.7", "onnx": "1.23.2"}}
    assert environment_changes(built, now) == ["CPU flags +avx512f", "numpy 2.4.6 -> 2.4.7", "onnx absent -> 1.23.2"]
    assert environment_changes(now, now) == []


def test_the_shipped_artifacts_build_environment_is_committed():
    built = json.loads(BUILT_WITH.read_text())
    assert {"cpu_vector_flags", "packages", "cpus"} <= set(built)
