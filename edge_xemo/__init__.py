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

from .analyzer import Analyzer, AnalyzerOptions, RunningMode
from .core.events import SCHEMA_VERSION, Event
from .core.types import Cue, Explanation, ModalityResult
from .io.sources import CameraOptions, CameraSource, FileSource, MicrophoneSource, SourceError

__all__ = [
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
__version__ = "0.1.0"
