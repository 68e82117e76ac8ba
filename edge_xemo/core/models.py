"""Model artifacts: the manifest, locating files, sha256 checks, and ONNX sessions.

Small trained artifacts live in `edge_xemo/models/`, each with a JSON sidecar (the manifest). Large third-party
weights (the GGUF decoder, MiniLM, Silero VAD) live inside registry packages installed by the
install step; their manifest entries name the package and the file inside it. Nothing is ever
downloaded at run time.
"""

from __future__ import annotations

import contextlib
import enum
import hashlib
import importlib.util
import json
import logging
import os
import sys
import threading
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Callable, TypeVar

from .paths import home

log = logging.getLogger(__name__)
T = TypeVar("T")

MODELS_DIR = Path(__file__).resolve().parents[1] / "models"


class Choice(enum.StrEnum):
    """A str enum whose unknown value is a one-line error naming the choices (from a flag or a config file)."""

    @classmethod
    def _missing_(cls, value):
        raise ValueError(f"unknown {cls.__name__.lower()} {value!r}; choose one of {', '.join(cls)}")


class Provider(Choice):
    """Where onnxruntime runs a stage's graphs (`select_providers` maps each to onnxruntime's providers, the CPU
    last); a str, so "cuda" compares equal to its member."""

    AUTO = "auto"
    CPU = "cpu"
    CUDA = "cuda"
    TENSORRT = "tensorrt"


class Precision(Choice):
    """Which variant of a model that ships in several a stage runs (today the VECB: fp32 and int8); DEFAULT:
    each stage's own choice, said in its options' docstring."""

    DEFAULT = "default"
    FP32 = "fp32"
    FP16 = "fp16"
    INT8 = "int8"


@dataclass(frozen=True, slots=True)
class RuntimeOptions:
    """How every model of a stage runs (MediaPipe's BaseOptions for edge-xemo): onnxruntime intra-op (and LiteRT,
    OpenCV, CTranslate2, llama.cpp) threads, the provider, the precision. `AnalyzerOptions.runtime` is handed down
    to each stage whose own `runtime` is None; a stage used alone takes these defaults."""

    threads: int = 1
    provider: Provider = Provider.CPU
    precision: Precision = Precision.DEFAULT

    def __post_init__(self):
        if not isinstance(self.threads, int) or self.threads < 1:
            raise ValueError(f"threads must be a whole number >= 1, got {self.threads!r}")
        object.__setattr__(self, "provider", Provider(self.provider))  # a str from Python code: its member
        object.__setattr__(self, "precision", Precision(self.precision))


RUNTIMES = ("onnxruntime", "opencv", "litert")
"""What runs a graph: onnxruntime (every provider) or OpenCV's DNN module (CPU only) on artifact `<name>`'s
ONNX, or LiteRT (the `litert` extra; CPU only, XNNPACK) on the .tflite it was converted from, artifact
`<name>_tflite`."""


class ModelError(RuntimeError):
    """A model artifact is missing, corrupt or unusable; the message names it."""


def load_optional(what: str, load: Callable[[], T]) -> tuple[T | None, str | None]:
    """An optional model: (it, None), or (None, one line saying why) when its module or its artifact is not
    installed (ImportError, ModelError). Any other error is a bug and propagates. A stage keeps the reasons
    in `missing`; the analyzer reports each as a `model_missing` status."""
    try:
        return load(), None
    except (ImportError, ModelError) as e:
        why = f"{what} unavailable: {str(e).splitlines()[0] if str(e) else type(e).__name__}"
        log.warning("%s", why)
        return None, why


class ChecksumMismatch(ModelError):
    """An artifact's file does not have the sha256 the manifest records (corrupt or replaced)."""


class ExcludedByTerms(ModelError):
    """A non-commercial artifact, left out because the user asked for commercial-use terms only."""


COMMERCIAL_ONLY = "EDGE_XEMO_COMMERCIAL_ONLY"
"""Environment setting (1/true/yes): load only artifacts whose sidecar allows commercial use (`terms`)."""


def commercial_only() -> bool:
    return os.environ.get(COMMERCIAL_ONLY, "").strip().lower() in ("1", "true", "yes")


def excluded_by_terms(entry: dict) -> str | None:
    """Why an artifact may not be used under commercial-only (None when it may): its `terms` say so."""
    terms = entry.get("terms", {})
    if not commercial_only() or terms.get("commercial_use", True):
        return None
    data = ", ".join(terms.get("data", [])) or "data"
    return f"trained on {data} ({terms.get('licence', '?')}): not for commercial use, excluded by {COMMERCIAL_ONLY}"


class ArtifactStatus(enum.StrEnum):
    """What `verify_all` found for one artifact."""

    OK = "ok"
    MISSING = "missing"
    MISMATCH = "mismatch"
    EXCLUDED = "excluded"
    """Its terms forbid commercial use and the user asked for commercial-use artifacts only."""
    ABSENT = "absent"
    """An `optional` artifact that is not installed (an opt-in install step builds it)."""


@dataclass(frozen=True, slots=True)
class Artifact:
    """One manifest entry resolved to a path on this machine."""

    name: str
    path: Path
    sha256: str | None
    entry: dict


def load_manifest(folder: Path = MODELS_DIR) -> dict:
    """The manifest: the union of the JSON sidecars `<name>.json` in the models folder.

    Each sidecar describes one artifact: `name`, `file`, `sha256`, `source`, `licence`,
    `inputs`/`outputs`, what it was trained on and its measured metrics; `package` (the file lies
    inside that installed package) or `home: true` (built by the install step into $EDGE_XEMO_HOME);
    `optional: true` marks one that only an opt-in install step provides.
    """
    artifacts = {}
    for sidecar in sorted(folder.glob("*.json")):
        try:
            entry = json.loads(sidecar.read_text())
        except json.JSONDecodeError as e:
            raise ModelError(f"model sidecar {sidecar} is not valid JSON: {e}") from e
        artifacts[entry.get("name", sidecar.stem)] = entry
    return {"schema_version": 1, "artifacts": artifacts}


def _package_dir(package: str) -> Path | None:
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None:
        return None
    if spec.submodule_search_locations:
        return Path(list(spec.submodule_search_locations)[0])
    return Path(spec.origin).parent if spec.origin else None


def resolve(name: str, manifest: dict | None = None) -> Artifact:
    """Find artifact `name` on disk (override folder $EDGE_XEMO_MODELS first)."""
    manifest = manifest if manifest is not None else load_manifest()
    entry = manifest.get("artifacts", {}).get(name)
    if entry is None:
        known = ", ".join(sorted(manifest.get("artifacts", {}))) or "none"
        raise ModelError(f"unknown model artifact {name!r} (manifest lists: {known})")
    why = excluded_by_terms(entry)
    if why:
        raise ExcludedByTerms(f"model artifact {name!r} {why}")
    file = entry["file"]
    override = os.environ.get("EDGE_XEMO_MODELS")
    candidates = [Path(override) / Path(file).name] if override else []
    if entry.get("home"):
        candidates.append(home() / file)
    elif "package" in entry:
        pkg_dir = _package_dir(entry["package"])
        if pkg_dir is not None:
            candidates.append(pkg_dir / file)
    else:
        candidates.append(MODELS_DIR / file)
    for c in candidates:
        if c.exists():
            return Artifact(name, c, entry.get("sha256"), entry)
    hint = " (run the README's install step)" if ("package" in entry or entry.get("home")) else ""
    if entry.get("optional"):
        hint = f" (optional: {entry.get('source', {}).get('install', 'see its sidecar')})"
    raise ModelError(f"model artifact {name!r} not found at {candidates[-1]}{hint}")


_verified: dict[tuple[str, int, float], str] = {}
_verified_lock = threading.Lock()


def sha256_of(path: Path) -> str:
    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime)
    with _verified_lock:
        if key in _verified:
            return _verified[key]
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    digest = h.hexdigest()
    with _verified_lock:
        _verified[key] = digest
    return digest


_used: dict[str, Path] = {}


def used_artifacts() -> dict[str, dict[str, str]]:
    """Every artifact this process has resolved through `verified_path`: {name: {file, sha256}} (for run
    reports). Files the manifest records no sha256 for are hashed here, when a report asks, not at load."""
    with _verified_lock:
        used = sorted(_used.items())
    return {name: {"file": str(path), "sha256": sha256_of(path)} for name, path in used}


def verified_path(name: str, manifest: dict | None = None) -> Path:
    """Resolve artifact `name` and check its sha256 against the manifest."""
    art = resolve(name, manifest)
    with _verified_lock:
        _used[name] = art.path
    if art.sha256:
        actual = sha256_of(art.path)
        if actual != art.sha256:
            raise ChecksumMismatch(
                f"model artifact {name!r} at {art.path} has sha256 {actual[:12]}..., "
                f"the manifest expects {art.sha256[:12]}...: the file is corrupt or was replaced"
            )
    return art.path


def verify_all(manifest: dict | None = None) -> list[tuple[str, ArtifactStatus, str]]:
    """Check every artifact; returns (name, status, detail) rows."""
    manifest = manifest if manifest is not None else load_manifest()
    rows = []
    for name in sorted(manifest.get("artifacts", {})):
        try:
            path = verified_path(name, manifest)
            rows.append((name, ArtifactStatus.OK, str(path)))
        except ChecksumMismatch as e:
            rows.append((name, ArtifactStatus.MISMATCH, str(e)))
        except ExcludedByTerms as e:
            rows.append((name, ArtifactStatus.EXCLUDED, str(e)))
        except ModelError as e:
            optional = manifest["artifacts"][name].get("optional", False)
            rows.append((name, ArtifactStatus.ABSENT if optional else ArtifactStatus.MISSING, str(e)))
    return rows


def available_providers() -> list[str]:
    import onnxruntime as ort

    return list(ort.get_available_providers())


def select_providers(provider: str = Provider.AUTO) -> tuple[list[str], str | None]:
    """Map a provider choice to onnxruntime providers; returns (providers, fallback note or None)."""
    provider = Provider(provider)
    have = available_providers()
    wanted = {
        "auto": ["TensorrtExecutionProvider", "CUDAExecutionProvider"],
        "cpu": [],
        "cuda": ["CUDAExecutionProvider"],
        "tensorrt": ["TensorrtExecutionProvider", "CUDAExecutionProvider"],
    }[provider]
    chosen = [p for p in wanted if p in have] + ["CPUExecutionProvider"]
    note = None
    if provider in ("cuda", "tensorrt") and wanted[0] not in have:
        note = f"{wanted[0]} is not available in this onnxruntime build; fell back to {chosen[0]}"
    return chosen, note


TRT_CACHE = home() / "tensorrt"
"""Where TensorRT keeps the engines it builds from our graphs, and its timing cache: the first session of
a graph on a GPU builds its engine (seconds to minutes); later sessions load it from here."""


def provider_options(providers: list[str], cache: Path = TRT_CACHE) -> list[dict[str, str]]:
    """onnxruntime's per-provider options for `providers`: TensorRT's engine and timing caches in `cache`
    (fp32: the graphs' parity was measured there, so TensorRT's fp16 stays off); defaults for the rest."""
    trt = {
        "trt_engine_cache_enable": "True",
        "trt_engine_cache_path": str(cache),
        "trt_timing_cache_enable": "True",
        "trt_timing_cache_path": str(cache),
    }
    return [trt if p == "TensorrtExecutionProvider" else {} for p in providers]


def onnx_session(path: str, threads: int = 1, provider: str = "cpu", initializers: dict | None = None):
    """An onnxruntime session with explicit intra-op threads, cached per (path, threads, provider); a graph whose
    weights are declared external gets them from `initializers` (name -> array; such sessions are not cached)."""
    if initializers is None:
        return _cached_session(path, threads, provider)
    return _new_session(path, threads, provider, initializers)


@lru_cache(maxsize=32)
def _cached_session(path: str, threads: int, provider: str):
    return _new_session(path, threads, provider, None)


def _new_session(path: str, threads: int, provider: str, initializers: dict | None):
    try:
        import onnxruntime as ort
    except ImportError as e:  # pragma: no cover - onnxruntime is a hard dependency
        raise RuntimeError("onnxruntime is required: pip install onnxruntime") from e
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = max(1, int(threads))
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    model: str | bytes = path
    if initializers is not None:  # the graph is read as bytes so that onnxruntime does not look for its data file
        opts.add_external_initializers(
            list(initializers), [ort.OrtValue.ortvalue_from_numpy(v) for v in initializers.values()]
        )
        model = Path(path).read_bytes()
    providers, note = select_providers(provider)
    if note:
        log.warning(note)
    if "TensorrtExecutionProvider" in providers:
        TRT_CACHE.mkdir(parents=True, exist_ok=True)
    try:
        return ort.InferenceSession(
            model, sess_options=opts, providers=providers, provider_options=provider_options(providers)
        )
    except Exception as e:
        raise ModelError(f"cannot load ONNX model {path}: {str(e).splitlines()[0]}") from e


class _CpuSession:
    """The `get_inputs()` / `run()` surface of an onnxruntime session over another CPU runtime, inputs and
    outputs by the names the artifact's sidecar lists. Not shared: each one owns its network, and a lock
    keeps calls one at a time (a network holds its tensors between calls)."""

    def __init__(self, entry: dict):
        self._inputs = [_Port(i["name"]) for i in entry["inputs"]]
        self._outputs = [o["name"] for o in entry["outputs"]]
        self._lock = threading.Lock()

    def get_inputs(self) -> list["_Port"]:
        return self._inputs

    def run(self, output_names: list[str] | None, feeds: dict) -> list:
        with self._lock:
            return self._forward(output_names or self._outputs, feeds)

    def _forward(self, output_names: list[str], feeds: dict) -> list:
        raise NotImplementedError


class OpenCvSession(_CpuSession):
    """An ONNX graph run by OpenCV's DNN module. Sets OpenCV's thread count, which is process-wide."""

    def __init__(self, path: str, entry: dict, threads: int = 1):
        import cv2

        try:
            self._net = cv2.dnn.readNetFromONNX(path)
        except cv2.error as e:
            raise ModelError(f"OpenCV cannot load ONNX model {path}: {str(e).strip().splitlines()[-1]}") from e
        cv2.setNumThreads(max(1, int(threads)))
        super().__init__(entry)

    def _forward(self, output_names: list[str], feeds: dict) -> list:
        for key, value in feeds.items():
            self._net.setInput(value, key)
        return list(self._net.forward(output_names))


class LiteRtSession(_CpuSession):
    """A .tflite graph run by LiteRT's interpreter (its XNNPACK delegate)."""

    def __init__(self, path: str, entry: dict, threads: int = 1):
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError as e:
            raise ModelError(
                "the litert runtime needs the ai-edge-litert package: pip install 'edge-xemo[litert]'"
            ) from e
        try:
            self._interp = Interpreter(model_path=path, num_threads=max(1, int(threads)))
            with _native_stderr_dropped():  # LiteRT's one-off "INFO: Created ... XNNPACK delegate" line
                self._interp.allocate_tensors()
        except (ValueError, RuntimeError) as e:
            raise ModelError(f"LiteRT cannot load {path}: {str(e).strip().splitlines()[0]}") from e
        super().__init__(entry)
        self._index = {
            d["name"]: d["index"] for d in self._interp.get_input_details() + self._interp.get_output_details()
        }
        missing = [n for n in [p.name for p in self._inputs] + self._outputs if n not in self._index]
        if missing:
            raise ModelError(f"{path} has no tensor named {', '.join(missing)} (its sidecar lists them)")

    def _forward(self, output_names: list[str], feeds: dict) -> list:
        for key, value in feeds.items():
            self._interp.set_tensor(self._index[key], value)
        self._interp.invoke()
        return [self._interp.get_tensor(self._index[n]) for n in output_names]


@contextlib.contextmanager
def _native_stderr_dropped():
    """Send what native code writes to file descriptor 2 meanwhile to /dev/null (Python's own errors still raise)."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def litert_installed() -> bool:
    """Whether the `litert` extra (ai-edge-litert) is installed."""
    return importlib.util.find_spec("ai_edge_litert") is not None


@dataclass(frozen=True, slots=True)
class _Port:
    name: str


def load_session(name: str, threads: int = 1, provider: str = "cpu", runtime: str = "onnxruntime"):
    """Verified session for manifest artifact `name`: onnxruntime's on its ONNX (cached per path, threads
    and provider), or a new `OpenCvSession` on the same ONNX (runtime="opencv"), or a new `LiteRtSession` on
    artifact `<name>_tflite` (runtime="litert"). The last two run on the CPU: `provider` is not used."""
    if runtime not in RUNTIMES:
        raise ValueError(f"unknown runtime {runtime!r}; choose one of {', '.join(RUNTIMES)}")
    manifest = load_manifest()
    if runtime == "litert":
        name = f"{name}_tflite"
    path = str(verified_path(name, manifest))
    if runtime == "opencv":
        return OpenCvSession(path, manifest["artifacts"][name], threads)
    if runtime == "litert":
        return LiteRtSession(path, manifest["artifacts"][name], threads)
    return onnx_session(path, threads, provider)


def runs_on_cpu(provider: str) -> bool:
    """True when onnxruntime would run `provider`'s sessions on the CPU (no GPU provider is available)."""
    return select_providers(provider)[0][0] == "CPUExecutionProvider"
