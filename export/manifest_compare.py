"""Rebuilt vs committed: compare every shipped sidecar's metrics with a committed version of it.

    python -m export.manifest_compare                       # working tree vs git HEAD
    python -m export.manifest_compare --ref v0.1 --out DIR  # DIR/compare.json + DIR/compare.md

Each numeric leaf under a sidecar's `metrics` and `losses` is classed by its name and judged:

- count (n, windows, positives, n_inputs, crops, rows, steps, n_*): equal;
- value (losses, MAE, errors; other unbounded numbers): within REL_TOL relative + ABS_FLOOR;
- rate (any other committed value in [0, 1]: accuracy, F1, agreement, recall): within RATE_TOL absolute;
- parity (parity, diff, max_abs, cosine): below the sibling `tolerance` when the sidecar states one,
  otherwise reported (each export fails on its own parity tolerance before it writes anything);
- timing (ms, seconds, speed, and the load average they were taken at) and predicted-label histograms:
  reported, not judged.

A metric the rebuilt sidecar lacks is "not re-measured" (e.g. a hand-run check), one it adds is "new";
neither fails. Any "outside" fails. sha256 equality is reported per artifact: conversions of
third-party weights are expected byte-identical, trained artifacts are not.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / "edge_xemo" / "models"
RATE_TOL = 0.05
REL_TOL, ABS_FLOOR = 0.15, 0.02
COUNT_KEYS = {"n", "windows", "positives", "n_inputs", "crops", "rows", "steps", "processes"}
COMPARED = ("metrics", "losses")


@dataclass(frozen=True, slots=True)
class Row:
    artifact: str
    metric: str
    kind: str  # count | rate | value | parity | timing | reported
    committed: float | None
    rebuilt: float | None
    status: str  # ok | outside | reported | not re-measured | new


def leaves(d, prefix: str = "") -> dict[str, float]:
    """Numeric leaves of nested dicts/lists, keyed by a dotted path (booleans and strings left out)."""
    items = d.items() if isinstance(d, dict) else enumerate(d) if isinstance(d, list) else ()
    out = {}
    for k, v in items:
        key = f"{prefix}.{k}" if prefix else str(k)
        if isinstance(v, (dict, list)):
            out |= leaves(v, key)
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            out[key] = v
    return out


def kind_of(path: str, committed: float) -> str:
    parts = path.lower().split(".")
    last = parts[-1]
    # timings and the machine's load while they were taken (minilm records load_average_1min) are reported only
    if any(re.search(r"(^|_)(ms|seconds|speed|latency|load_average)($|_)", p) for p in parts) or "first_token" in path:
        return "timing"
    if "labels" in parts or last == "tolerance":
        return "reported"
    if isinstance(committed, int) and (last in COUNT_KEYS or last.startswith("n_")):
        return "count"
    if any(w in p for p in parts for w in ("diff", "max_abs", "cosine")) or \
            ("parity" in path.lower() and not any(w in last for w in ("agreement", "accuracy"))):
        return "parity"
    if any(w in p for p in parts for w in ("loss", "mae", "error")):
        return "value"
    return "rate" if 0.0 <= committed <= 1.0 and isinstance(committed, float) else "value"


def judge(kind: str, committed: float, rebuilt: float, tolerance: float | None) -> str:
    if kind == "count":
        return "ok" if rebuilt == committed else "outside"
    if kind == "rate":
        return "ok" if abs(rebuilt - committed) <= RATE_TOL else "outside"
    if kind == "value":
        return "ok" if abs(rebuilt - committed) <= REL_TOL * abs(committed) + ABS_FLOOR else "outside"
    if kind == "parity" and tolerance is not None:
        return "ok" if abs(rebuilt) <= tolerance else "outside"
    return "reported"


def compare_entry(name: str, committed: dict, rebuilt: dict) -> list[Row]:
    old = {k: v for part in COMPARED for k, v in leaves(committed.get(part) or {}, part).items()}
    new = {k: v for part in COMPARED for k, v in leaves(rebuilt.get(part) or {}, part).items()}
    rows = []
    for path in sorted(old.keys() | new.keys()):
        c, r = old.get(path), new.get(path)
        kind = kind_of(path, c if c is not None else r)
        if r is None or c is None:
            rows.append(Row(name, path, kind, c, r, "not re-measured" if r is None else "new"))
            continue
        tol = new.get(path.rsplit(".", 2)[0] + ".tolerance") if kind == "parity" else None
        rows.append(Row(name, path, kind, c, r, judge(kind, c, r, tol)))
    return rows


def committed_sidecars(ref: str = "HEAD", models: Path = MODELS) -> dict[str, dict]:
    """{file name: sidecar} of edge_xemo/models/*.json at a git revision."""
    rel = models.relative_to(ROOT).as_posix()
    listing = subprocess.run(["git", "-C", str(ROOT), "ls-tree", "--name-only", f"{ref}:{rel}"],
                             capture_output=True, text=True)
    if listing.returncode:
        raise RuntimeError(f"cannot read {rel} at git revision {ref!r}: {listing.stderr.strip()}")
    out = {}
    for fname in listing.stdout.split():
        if fname.endswith(".json"):
            text = subprocess.run(["git", "-C", str(ROOT), "show", f"{ref}:{rel}/{fname}"],
                                  capture_output=True, text=True, check=True).stdout
            out[fname] = json.loads(text)
    return out


def compare(ref: str = "HEAD", models: Path = MODELS) -> dict:
    """The comparison of the sidecars in `models` with those at `ref` (rows, sha256 per artifact, counts)."""
    old = committed_sidecars(ref, models)
    rows, sha = [], {}
    for fname, entry in sorted(old.items()):
        path = models / fname
        if not path.exists():
            sha[entry.get("name", fname)] = "missing"
            continue
        new = json.loads(path.read_text())
        name = entry.get("name", path.stem)
        sha[name] = "identical" if new.get("sha256") == entry.get("sha256") else "different"
        rows += compare_entry(name, entry, new)
    counts = {s: sum(r.status == s for r in rows) for s in ("ok", "outside", "reported", "not re-measured", "new")}
    return {"ref": ref, "tolerances": {"rate_abs": RATE_TOL, "value_rel": REL_TOL, "value_abs_floor": ABS_FLOOR},
            "sha256": sha, "counts": counts, "rows": [asdict(r) for r in rows]}


def markdown(report: dict) -> str:
    def fmt(v):
        return "-" if v is None else f"{v:.4g}" if isinstance(v, float) else str(v)

    lines = [f"# Rebuilt vs committed ({report['ref']})", "",
             "sha256: " + ", ".join(f"{k} {v}" for k, v in report["sha256"].items()), "",
             "Counts: " + ", ".join(f"{k} {v}" for k, v in report["counts"].items()), "",
             "| artifact | metric | kind | committed | rebuilt | status |", "|---|---|---|---|---|---|"]
    lines += [f"| {r['artifact']} | {r['metric']} | {r['kind']} | {fmt(r['committed'])} | {fmt(r['rebuilt'])} | "
              f"{r['status']} |" for r in report["rows"] if r["kind"] not in ("timing", "reported")]
    return "\n".join(lines) + "\n"


def write_report(report: dict, out: Path) -> str:
    out.mkdir(parents=True, exist_ok=True)
    (out / "compare.json").write_text(json.dumps(report, indent=1))
    (out / "compare.md").write_text(markdown(report))
    c = report["counts"]
    same = [k for k, v in report["sha256"].items() if v == "identical"]
    return (f"{c['ok']} metrics within tolerance, {c['outside']} outside, {c['not re-measured']} not re-measured; "
            f"byte-identical: {', '.join(same) or 'none'}; {out / 'compare.md'}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Compare the shipped sidecars' metrics with a committed version")
    ap.add_argument("--ref", default="HEAD", help="git revision holding the committed sidecars")
    ap.add_argument("--out", default=str(ROOT / "runs" / "compare"), help="folder for compare.json and compare.md")
    args = ap.parse_args(argv)
    try:
        report = compare(args.ref)
    except RuntimeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(write_report(report, Path(args.out)))
    return 1 if report["counts"]["outside"] else 0


if __name__ == "__main__":
    sys.exit(main())
