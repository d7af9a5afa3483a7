#!/usr/bin/env bash
# The GPU check of issue 21: one script, at most ~8 minutes on one H100, printing one JSON line last.
#   1. training speed at LLaVA-1.5-7B's shapes, bf16, LoRA r 128: hadpo against TRL (pairs/s, peak GPU memory,
#      MFU), through the train-speed benchmark (needs `make bench` for TRL; without it hadpo alone);
#   2. yes/no evaluation speed (logits mode against generate mode) at LLaVA-1.5-7B's shapes, through the
#      eval-speed benchmark;
#   3. `hadpo train` on a small random LLaVA for a few steps: plain, under FSDP2 and under DeepSpeed ZeRO-3
#      (configs/accelerate/fsdp2.yaml, zero3.yaml on one process), each engine's losses compared with the plain
#      run's (needs `make deepspeed` for ZeRO-3; without it that part says so).
#
#   bash benchmarks/speed/gpu_check.sh              # on a GPU machine
#   bash benchmarks/speed/gpu_check.sh --dry-run    # its own plumbing on a CPU: tiny models, 2 gloo processes
#                                                   # with HADPO_CPU_SHARDING=1 for the engines; figures mean nothing
# It runs from the repository root whatever the working directory; the benchmark modules it calls are the
# variables below (override them from the environment if they move).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

TRAIN_SPEED="${TRAIN_SPEED:-benchmarks.speed.train_speed}"
EVAL_SPEED="${EVAL_SPEED:-benchmarks.speed.eval_speed}"
ACCELERATE_CONFIGS="${ACCELERATE_CONFIGS:-configs/accelerate}"
PYTHON="${PYTHON:-.venv/bin/python}"
ACCELERATE="${ACCELERATE:-$(dirname "$PYTHON")/accelerate}"
HADPO="${HADPO:-$(dirname "$PYTHON")/hadpo}"
ENGINE_STEPS="${ENGINE_STEPS:-4}"
TOLERANCE="${TOLERANCE:-1e-3}"  # |engine loss - plain loss| per step (GPU kernels are not bitwise reproducible)

DRY_RUN=0
[[ "${1:-}" == "--dry-run" ]] && DRY_RUN=1
WORK="$(mktemp -d "${TMPDIR:-/tmp}/hadpo-gpu-check.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
START=$SECONDS
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"

last_json() { grep '^{' "$1" | tail -n 1 || true; }
has() { "$PYTHON" -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('$1') is None)"; }

if [[ $DRY_RUN == 1 ]]; then
    DEVICE=cpu; SIDES="hadpo"; has trl && SIDES="hadpo trl"
    TRAIN_ARGS=(--model tiny --device cpu --runs 1 --steps 1 --warmup 1 --batch-size 2)
    EVAL_ARGS=(--model tiny --device cpu --images 2 --runs 1 --batch-size 12)
    PROCESSES=2; export HADPO_CPU_SHARDING=1; USE_CPU=true
else
    DEVICE=cuda; SIDES="hadpo"; has trl && SIDES="hadpo trl"
    TRAIN_ARGS=(--model llava15-7b --device cuda --dtype bfloat16 --batch-size 4 --runs 1 --steps 4 --warmup 2
                --lora-r 128)
    # 3 runs a mode: the median leaves out the first (logits) run, which pays CUDA's start-up
    EVAL_ARGS=(--model llava15-7b --device cuda --images 8 --runs 3 --batch-size 24)
    PROCESSES=1; USE_CPU=false
fi

# 1 and 2: the speed benchmarks, their JSON lines kept.
"$PYTHON" -m "$TRAIN_SPEED" "${TRAIN_ARGS[@]}" --sides $SIDES --json > "$WORK/train_speed.log" 2>&1 \
    || echo '{"error": "train speed failed, see its log"}' >> "$WORK/train_speed.log"
"$PYTHON" -m "$EVAL_SPEED" "${EVAL_ARGS[@]}" --json > "$WORK/eval_speed.log" 2>&1 \
    || echo '{"error": "eval speed failed, see its log"}' >> "$WORK/eval_speed.log"

# 3: a small random LLaVA and pairs on disk, then the same recipe plain and under each engine.
WORK="$WORK" "$PYTHON" - <<'EOF'
import os
from pathlib import Path
import torch
from benchmarks.speed.harness import build_model
from benchmarks.speed.trainers import make_pairs
work = Path(os.environ["WORK"])
model, processor = build_model("tiny", "cpu", torch.float32)
model.save_pretrained(work / "model"); processor.save_pretrained(work / "model")
(work / "data").mkdir(parents=True, exist_ok=True)
make_pairs(work / "data", processor, 16, model.config.vision_config.image_size, 20)
EOF
cat > "$WORK/recipe.yaml" <<EOF
model_name_or_path: $WORK/model
pairs: $WORK/data/pairs.jsonl
per_device_train_batch_size: 4
max_steps: $ENGINE_STEPS
learning_rate: 1.0e-3
lora_r: 8
lora_alpha: 16
reference: copy
save_strategy: "no"
report_to: none
disable_tqdm: true
use_cpu: $USE_CPU
EOF
engine_config() {  # the shipped config, set to this machine's processes and fp32 (for comparable losses)
    "$PYTHON" - "$1" "$2" "$PROCESSES" "$USE_CPU" <<'EOF'
import sys, yaml
source, target, processes, use_cpu = sys.argv[1:]
values = yaml.safe_load(open(source))
values.update(num_processes=int(processes), mixed_precision="no", use_cpu=use_cpu == "true")
yaml.safe_dump(values, open(target, "w"))
EOF
}
run_engine() {  # name, accelerate config or "" for the plain run
    local name=$1 config=$2 started=$SECONDS
    if [[ -z "$config" ]]; then
        "$HADPO" train "$WORK/recipe.yaml" "output_dir=$WORK/$name" > "$WORK/$name.log" 2>&1 || true
    else
        engine_config "$config" "$WORK/$name.accelerate.yaml"
        "$ACCELERATE" launch --config_file "$WORK/$name.accelerate.yaml" "$HADPO" train "$WORK/recipe.yaml" \
            "output_dir=$WORK/$name" "per_device_train_batch_size=$((4 / PROCESSES))" > "$WORK/$name.log" 2>&1 || true
    fi
    echo $((SECONDS - started)) > "$WORK/$name.seconds"
}
run_engine plain ""  # 4 pairs per step; each engine run keeps 4 over its processes (2 gloo ones on a CPU)
run_engine fsdp2 "$ACCELERATE_CONFIGS/fsdp2.yaml"
if has deepspeed; then run_engine zero3 "$ACCELERATE_CONFIGS/zero3.yaml"; fi

WORK="$WORK" DEVICE="$DEVICE" TOLERANCE="$TOLERANCE" ELAPSED=$((SECONDS - START)) DRY_RUN=$DRY_RUN \
TRAIN_JSON="$(last_json "$WORK/train_speed.log")" EVAL_JSON="$(last_json "$WORK/eval_speed.log")" "$PYTHON" - <<'EOF'
import json, os
from pathlib import Path
work = Path(os.environ["WORK"])
def losses(name):
    state = work / name / "trainer_state.json"
    if not state.is_file():
        log = (work / f"{name}.log").read_text(errors="replace").splitlines() if (work / f"{name}.log").exists() else []
        return None, ([line for line in log if "error" in line.lower()] or log or ["not run"])[-1][-300:]
    return [e["loss"] for e in json.loads(state.read_text())["log_history"] if "loss" in e], None
def parsed(text):
    try:
        return json.loads(text) if text else {"error": "no JSON line"}
    except ValueError:
        return {"error": text[-300:]}
plain, plain_error = losses("plain")
engines = {"plain": {"losses": plain, "error": plain_error}}
for name in ("fsdp2", "zero3"):
    values, error = losses(name)
    entry = {"losses": values, "error": error if (work / f"{name}.log").exists() else "deepspeed not installed"}
    if values and plain and len(values) == len(plain):
        entry["max_abs_diff"] = max(abs(a - b) for a, b in zip(values, plain))
        entry["matches_plain"] = entry["max_abs_diff"] <= float(os.environ["TOLERANCE"])
    if (work / f"{name}.seconds").exists():
        entry["seconds"] = int((work / f"{name}.seconds").read_text())
    engines[name] = entry
print(json.dumps({
    "check": "gpu_check", "dry_run": os.environ["DRY_RUN"] == "1", "device": os.environ["DEVICE"],
    "train_speed": parsed(os.environ["TRAIN_JSON"]), "eval_speed": parsed(os.environ["EVAL_JSON"]),
    "engines": engines, "tolerance": float(os.environ["TOLERANCE"]), "seconds": int(os.environ["ELAPSED"]),
}))
EOF
