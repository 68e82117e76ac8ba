"""edge-xemo: on-device, real-time, explainable multimodal emotion analysis.

    from edge_xemo import Analyzer, AnalyzerOptions, RunningMode, FileSource

    options = AnalyzerOptions(running_mode=RunningMode.VIDEO)
    with Analyzer.create_from_options(options) as analyzer:
        analyzer.run_sources(FileSource("clip.mp4"))
        for event in analyzer.events():
            print(event.to_json())
"""

from .analyzer import Analyzer, AnalyzerOptions, RunningMode
from .events import SCHEMA_VERSION, Event
from .sources import CameraOptions, CameraSource, FileSource, MicrophoneSource, SourceError
from .types import Cue, Explanation, ModalityResult

__all__ = [
    "Analyzer", "AnalyzerOptions", "RunningMode", "Event", "SCHEMA_VERSION",
    "CameraOptions", "CameraSource", "FileSource", "MicrophoneSource", "SourceError",
    "Cue", "Explanation", "ModalityResult",
]
__version__ = "0.1.0"
