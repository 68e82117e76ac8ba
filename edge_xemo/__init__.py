"""edge-xemo: on-device, real-time, explainable multimodal emotion analysis.

from edge_xemo import Analyzer, AnalyzerOptions, RunningMode, FileSource

options = AnalyzerOptions(running_mode=RunningMode.VIDEO)
with Analyzer.create_from_options(options) as analyzer:
    analyzer.run_sources(FileSource("clip.mp4"))
    for event in analyzer.events():
        print(event.to_json())
"""

import os

# Explicit thread budgets: perception and decoding each get their own threads (onnxruntime intra-op,
# llama.cpp n_threads). A multi-threaded BLAS under them oversubscribes a small CPU (a tiny matrix
# product took 16 ms instead of 0.1 ms on busy cores), so numpy's BLAS runs single-threaded unless
# the user says otherwise. Effective when edge_xemo is imported before numpy.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .analyzer import Analyzer, AnalyzerOptions, RunningMode
    from .core.events import SCHEMA_VERSION, Event
    from .core.types import Cue, Explanation, ModalityResult
    from .io.sources import CameraOptions, CameraSource, FileSource, MicrophoneSource, SourceError

_EXPORTS = {
    "Analyzer": ".analyzer",
    "AnalyzerOptions": ".analyzer",
    "RunningMode": ".analyzer",
    "Event": ".core.events",
    "SCHEMA_VERSION": ".core.events",
    "CameraOptions": ".io.sources",
    "CameraSource": ".io.sources",
    "FileSource": ".io.sources",
    "MicrophoneSource": ".io.sources",
    "SourceError": ".io.sources",
    "Cue": ".core.types",
    "Explanation": ".core.types",
    "ModalityResult": ".core.types",
}
"""The public names, imported on first use (PEP 562): `python -m edge_xemo` installs its stop-signal handlers
before the analyzer's few hundred milliseconds of imports (edge_xemo.__main__)."""
__all__ = [  # as a literal list, for the linters and type checkers that read it
    "Analyzer",
    "AnalyzerOptions",
    "RunningMode",
    "Event",
    "SCHEMA_VERSION",
    "CameraOptions",
    "CameraSource",
    "FileSource",
    "MicrophoneSource",
    "SourceError",
    "Cue",
    "Explanation",
    "ModalityResult",
]


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'edge_xemo' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(_EXPORTS[name], __name__), name)
    globals()[name] = value
    return value


__version__ = "0.1.0"
