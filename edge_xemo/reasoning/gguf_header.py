"""GGUF header reading without llama.cpp: metadata and tensor locations of a model file.

The decoder checks a model's architecture and finds `token_embd.weight` with it before (and apart
from) loading the model into a llama.cpp session.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

from ..core.models import ModelError

_GGUF_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}


@dataclass(frozen=True, slots=True)
class GGUFHeader:
    """What the decoder needs from a GGUF header: scalar/string metadata and where tensors lie."""

    metadata: dict
    tensors: dict[str, tuple[int, tuple[int, ...], int]]
    """name -> (ggml type, dims (fastest first), absolute byte offset of the data)."""

    @property
    def architecture(self) -> str:
        return str(self.metadata.get("general.architecture", "unknown"))


def read_gguf_header(path: Path) -> GGUFHeader:
    """Parse a GGUF header (arrays are skipped); ModelError if the file is not a readable GGUF."""
    meta, infos = {}, []
    try:
        with open(path, "rb") as f:
            if f.read(4) != b"GGUF":
                raise ModelError(f"decoder model {path} is not a GGUF file")
            _version, n_tensors, n_kv = struct.unpack("<IQQ", f.read(20))
            if n_kv > 1 << 16 or n_tensors > 1 << 20:
                raise ValueError("implausible header counts")

            def string() -> str:
                (n,) = struct.unpack("<Q", f.read(8))
                if n > 1 << 20:
                    raise ValueError("implausible string length")
                return f.read(n).decode("utf-8")

            def value(kind: int):
                if kind == 8:
                    return string()
                if kind == 9:
                    elem, count = struct.unpack("<IQ", f.read(12))
                    if elem in _GGUF_SCALARS:
                        f.seek(struct.calcsize(_GGUF_SCALARS[elem]) * count, 1)
                    else:
                        for _ in range(count):
                            value(elem)
                    return None
                if kind in _GGUF_SCALARS:
                    fmt = _GGUF_SCALARS[kind]
                    return struct.unpack(fmt, f.read(struct.calcsize(fmt)))[0]
                raise ValueError(f"unknown value type {kind}")

            for _ in range(n_kv):
                key = string()
                (kind,) = struct.unpack("<I", f.read(4))
                v = value(kind)
                if v is not None:
                    meta[key] = v
            for _ in range(n_tensors):
                name = string()
                (n_dims,) = struct.unpack("<I", f.read(4))
                dims = struct.unpack(f"<{n_dims}Q", f.read(8 * n_dims))
                kind, offset = struct.unpack("<IQ", f.read(12))
                infos.append((name, kind, dims, offset))
            align = int(meta.get("general.alignment", 32))
            start = (f.tell() + align - 1) // align * align
    except ModelError:
        raise
    except (OSError, ValueError, struct.error, UnicodeDecodeError) as e:
        raise ModelError(f"decoder model {path} is a corrupt GGUF file: {e}") from e
    return GGUFHeader(meta, {name: (kind, dims, start + off) for name, kind, dims, off in infos})
