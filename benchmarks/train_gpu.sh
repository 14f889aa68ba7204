#!/usr/bin/env bash
# Train every shipped model on one GPU in one call of at most 10 minutes, then evaluate what it made.
#
#   python benchmarks/pack_training_data.py --out pack                    # here, once (~50 MB)
#   FACESR_DATA=pack/data FACESR_CACHE=pack/cache bash benchmarks/train_gpu.sh OUT    # on the GPU machine
#
# OUT gets one folder per model (final.safetensors: the last step's weights, log.jsonl with steps/s
# and samples/s) and summary.json (each model's eval on the evaluation faces, its steps and wall time).
# MINUTES scales every run's time budget (default 1: 8.5 minutes of training in all). DRY_RUN=1 runs
# each recipe for a few tiny steps on the CPU, to check the script without a GPU.
set -euo pipefail
OUT=${1:?usage: bash benchmarks/train_gpu.sh OUT}
MINUTES=${MINUTES:-1}
PY=${PYTHON:-python}
mkdir -p "$OUT"

if [ "${DRY_RUN:-0}" = 1 ]; then
    common=(--device cpu --batches tensor --steps 3 --batch 4 --patch 64 --eval-every 3 --bank-variants 1)
    budget() { echo 0; }
    big=() small=() gan=()
else
    common=(--device cuda --bank-variants 1 --steps 1000000 --eval-every 2000)
    budget() { "$PY" -c "print($1 * $MINUTES)"; }
    big=(--batch 64 --patch 128)     # srresnet, srgan: ~42 steps/s on an H200
    small=(--batch 128 --patch 128)  # lite: ~125 steps/s
    gan=(--batch 32 --patch 128)
fi

run() {  # NAME MINUTES ARGS...
    local name=$1 minutes; minutes=$(budget "$2"); shift 2
    local limit=()
    [ "$minutes" != 0 ] && limit=(--time-budget "$minutes")
    echo "== $name (${minutes} min)"
    "$PY" -m facesr train --out "$OUT/$name" "${common[@]}" "${limit[@]}" "$@"
}

run lite 1.5 --model lite --degradations call --lr 5e-4 "${small[@]}"
run lite-photo 1.5 --model lite --degradations photo --lr 5e-4 "${small[@]}"
run srresnet 3 --model srresnet --degradations photo --lr 2e-4 "${big[@]}"
run srgan 1.5 --model srgan --init "$OUT/srresnet/final.safetensors" --degradations photo --lr 1e-4 "${gan[@]}"
run lite-gan 1 --model lite-gan --init "$OUT/lite/final.safetensors" --degradations call --lr 1e-4 "${gan[@]}"

"$PY" - "$OUT" <<'PY'
import json, sys
from pathlib import Path
from facesr.weights import read_metadata
out = Path(sys.argv[1])
summary = {}
for run in sorted(p for p in out.iterdir() if (p / "final.safetensors").is_file()):
    meta = read_metadata(run / "final.safetensors")
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()] if (run / "log.jsonl").is_file() else []
    rates = [r["steps_per_s"] for r in log if r.get("steps_per_s")]
    summary[run.name] = {"steps": int(meta["steps"]), "wall_s": int(meta["train_wall_s"]), "hardware": meta.get("hardware"),
                         "eval": json.loads(meta["eval"]) if "eval" in meta else None,
                         "steps_per_s": max(rates) if rates else None}
(out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
print(json.dumps(summary, indent=2))
PY
