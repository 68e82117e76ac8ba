"""Export helpers shared by every `export/` script: ONNX fp32 / fp16 / int8, parity, sidecars.

Every artifact is written to a temporary file beside its final name and renamed only after its
parity check passed, so a failed export never leaves a half-written or wrong file in
`edge_xemo/models/` (the temporary file is removed). Written tolerances (max absolute difference
of every output against the reference, over all check inputs):

- fp32 ONNX vs PyTorch: FP32_TOL = 1e-4
- fp16 ONNX (fp32 inputs/outputs kept) vs PyTorch or fp32 ONNX: FP16_TOL = 1e-2
- int8 dynamic quantization vs fp32: no universal bound; each stage states its own (INT8_TOL is a
  default for outputs of order 1, such as probabilities) and may judge decisions instead.

    report = export_fp32(model, {"x": x}, MODELS / "vecb.onnx", ["tokens"], dynamic_axes={"x": {0: "batch"}})
    to_fp16(MODELS / "vecb.onnx", MODELS / "vecb_fp16.onnx", check_feeds=[{"x": x.numpy()}])
    quantize_int8(MODELS / "vecb.onnx", MODELS / "vecb_int8.onnx", check_feeds=[...], tolerance=0.05)
    write_sidecar(MODELS / "vecb.onnx", source=..., licence=..., trained_on=..., how=..., metrics=...)
"""

from __future__ import annotations

import contextlib
import json
import os
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np

FP32_TOL = 1e-4
FP16_TOL = 1e-2
INT8_TOL = 5e-2
OPSET = 17


class ParityError(RuntimeError):
    """An exported artifact disagrees with its reference beyond the stated tolerance; names it."""


@dataclass(frozen=True, slots=True)
class Parity:
    artifact: str
    max_abs_diff: dict[str, float]  # output name -> max |onnx - reference| over all check inputs
    tolerance: float
    n_inputs: int

    @property
    def ok(self) -> bool:
        return all(d <= self.tolerance for d in self.max_abs_diff.values())

    def as_dict(self) -> dict:
        return asdict(self) | {"ok": self.ok}


@contextlib.contextmanager
def staged(path: str | Path):
    """Yield a temporary path beside `path`; rename it to `path` on success, delete it on any error."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        for leftover in (tmp, tmp.with_name(tmp.name + ".data")):
            leftover.unlink(missing_ok=True)


def _session(path: str | Path, threads: int = 1):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])


def _run(sess, feeds: dict) -> dict[str, np.ndarray]:
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(names, feeds)))


def run_session(path: str | Path, feeds: dict[str, np.ndarray], threads: int = 1) -> dict[str, np.ndarray]:
    """Outputs (by name) of an ONNX file on CPU; used for parity checks, not at run time."""
    return _run(_session(path, threads), feeds)


def check_parity(path: str | Path, feeds: list[dict], expected: list[dict], tolerance: float,
                 artifact: str | None = None) -> Parity:
    """Compare the ONNX file's outputs with `expected` (same order); ParityError when beyond `tolerance`."""
    name = artifact or Path(path).name
    if not feeds:
        raise ValueError(f"parity check of {name} needs at least one input")
    try:
        sess = _session(path)
    except Exception as e:
        raise ParityError(f"{name} does not load in onnxruntime: {str(e).splitlines()[0]}") from e
    diffs: dict[str, float] = {}
    for i, (feed, ref) in enumerate(zip(feeds, expected, strict=True)):
        try:
            got = _run(sess, feed)
        except Exception as e:  # onnxruntime raises its own error types for bad shapes/dtypes
            raise ParityError(f"{name} fails on check input {i}: {str(e).splitlines()[0]}") from e
        for k, want in ref.items():
            if k not in got:
                raise ParityError(f"{name}: ONNX graph has no output {k!r} (it has {', '.join(got)})")
            if got[k].shape != np.shape(want):
                raise ParityError(f"{name}: output {k!r} has shape {got[k].shape}, the reference {np.shape(want)}")
            d = float(np.max(np.abs(got[k].astype(np.float64) - np.asarray(want, np.float64)), initial=0.0))
            diffs[k] = max(diffs.get(k, 0.0), d if np.isfinite(d) else float("inf"))
    report = Parity(name, diffs, tolerance, len(feeds))
    if not report.ok:
        worst = max(diffs, key=diffs.get)
        raise ParityError(f"{name} fails parity: output {worst!r} differs by {diffs[worst]:.3g} "
                          f"> tolerance {tolerance:g} over {len(feeds)} inputs; artifact not written")
    return report


def torch_outputs(model, feeds: list[dict], output_names: list[str]) -> list[dict]:
    """PyTorch reference outputs for each feed dict (its values passed positionally, in order)."""
    import torch

    model.eval()
    refs = []
    with torch.no_grad():
        for feed in feeds:
            out = model(*[torch.from_numpy(np.asarray(v)) for v in feed.values()])
            out = out if isinstance(out, (tuple, list)) else (out,)
            refs.append({n: o.detach().cpu().numpy() for n, o in zip(output_names, out, strict=True)})
    return refs


def export_fp32(model, example: dict, path: str | Path, output_names: list[str], *,
                dynamic_axes: dict | None = None, check_feeds: list[dict] | None = None,
                tolerance: float = FP32_TOL, opset: int = OPSET, dynamo: bool = False) -> Parity:
    """torch.onnx.export, weights inside the file, then parity vs PyTorch.

    dynamo=False (default): the TorchScript exporter, byte-stable across runs with the same versions
    (deprecated by torch but still shipped in 2.13); dynamo=True: the torch.export-based exporter
    (needs onnxscript; slower; for models the TorchScript tracer cannot handle).
    `example` maps input names to example tensors (in the model's argument order); `check_feeds`
    (numpy dicts) default to the example. Raises ParityError and writes nothing when parity fails.
    """
    import torch

    path = Path(path)
    feeds = check_feeds or [{k: v.detach().cpu().numpy() for k, v in example.items()}]
    model.eval()
    expected = torch_outputs(model, feeds, output_names)
    kw = {"external_data": False} if dynamo else {"do_constant_folding": True}
    with staged(path) as tmp, warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torch\.onnx.*|export\.onnx_tools")
        torch.onnx.export(model, tuple(example.values()), str(tmp), input_names=list(example),
                          output_names=output_names, dynamic_axes=dynamic_axes, opset_version=opset,
                          dynamo=dynamo, **kw)
        return check_parity(tmp, feeds, expected, tolerance, path.name)


def _reference(src: Path, feeds: list[dict], expected: list[dict] | None) -> list[dict]:
    return expected if expected is not None else [run_session(src, f) for f in feeds]


def to_fp16(src: str | Path, dst: str | Path, *, check_feeds: list[dict], expected: list[dict] | None = None,
            tolerance: float = FP16_TOL) -> Parity:
    """fp16 weights and compute, fp32 inputs/outputs kept (onnxruntime.transformers.float16, the
    onnxconverter-common converter shipped inside onnxruntime). Parity vs `expected` (default: `src`)."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    src, dst = Path(src), Path(dst)
    expected = _reference(src, check_feeds, expected)
    model = convert_float_to_float16(onnx.load(str(src)), keep_io_types=True)
    with staged(dst) as tmp:
        onnx.save(model, str(tmp))
        return check_parity(tmp, check_feeds, expected, tolerance, dst.name)


def quantize_int8(src: str | Path, dst: str | Path, *, check_feeds: list[dict], expected: list[dict] | None = None,
                  tolerance: float = INT8_TOL, per_channel: bool = False, op_types: list[str] | None = None,
                  judge: Callable[[Path], None] | None = None) -> Parity:
    """Dynamic int8 weight quantization (onnxruntime.quantization.quantize_dynamic) with parity.

    `judge(tmp_path)` may add a stage-specific acceptance test (raise ParityError to reject).
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic

    src, dst = Path(src), Path(dst)
    expected = _reference(src, check_feeds, expected)
    with staged(dst) as tmp:
        quantize_dynamic(str(src), str(tmp), weight_type=QuantType.QInt8, per_channel=per_channel,
                         op_types_to_quantize=op_types)
        report = check_parity(tmp, check_feeds, expected, tolerance, dst.name)
        if judge is not None:
            judge(tmp)
        return report


def graph_io(path: str | Path) -> dict:
    """Inputs and outputs read from the ONNX graph: name, shape (ints or symbolic names), dtype."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)

    def describe(values):
        rows = []
        for v in values:
            t = v.type.tensor_type
            shape = [d.dim_param or (d.dim_value if d.HasField("dim_value") else "?") for d in t.shape.dim]
            dtype = onnx.helper.tensor_dtype_to_np_dtype(t.elem_type).name if t.elem_type else "unknown"
            rows.append({"name": v.name, "shape": shape, "dtype": dtype})
        return rows

    inits = {i.name for i in model.graph.initializer}
    return {"inputs": describe([i for i in model.graph.input if i.name not in inits]),
            "outputs": describe(model.graph.output)}


def kept_metrics(entry: dict, digest: str) -> dict:
    """The metrics of an existing sidecar entry that still describe the artifact: all of them while its
    sha256 is `digest`, none once the bytes changed (a rebuilt artifact is measured again)."""
    return dict(entry.get("metrics") or {}) if entry.get("sha256") == digest else {}


def write_sidecar(artifact: str | Path, name: str | None = None, *, source, licence: str, trained_on, how,
                  metrics: dict, sidecar_dir: str | Path | None = None, **extra) -> Path:
    """Write or update `<sidecar_dir>/<name>.json` (default: beside the artifact, name = file stem).

    sha256, file and inputs/outputs (ONNX: read from the graph) are always recomputed; keys of an
    existing sidecar that are not given here (labels, notes, ...) are kept; `metrics` is merged into
    the old metrics only while the file's bytes are unchanged (metrics of other bytes are dropped).
    """
    from edge_xemo.core.models import sha256_of

    artifact = Path(artifact)
    name = name or artifact.stem
    folder = Path(sidecar_dir) if sidecar_dir is not None else artifact.parent
    path = folder / f"{name}.json"
    entry = json.loads(path.read_text()) if path.exists() else {}
    io = graph_io(artifact) if artifact.suffix == ".onnx" else {}
    digest = sha256_of(artifact)
    entry.update({"name": name, "file": artifact.name, "sha256": digest, **io, "source": source,
                  "licence": licence, "trained_on": trained_on, "how": how,
                  "metrics": {**kept_metrics(entry, digest), **metrics}, **extra})
    with staged(path) as tmp:
        tmp.write_text(json.dumps(entry, indent=1) + "\n")
    return path
