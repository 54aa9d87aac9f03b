#!/usr/bin/env bash
# One H200 session: GPU parity tests, then the transformer benchmark beside the diffusers reference in
# the same call. Expects .device/bin.tar.xz (stripped portable binaries built with -DCANVAS_PORTABLE=ON
# -DCANVAS_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90) and .whl/ (diffusers wheel) in the working tree.
# Writes logs and JSON under $OUT.
set -u
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT" /tmp/canvas
tar -C /tmp/canvas -xJf .device/bin.tar.xz
BIN=/tmp/canvas/bin
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
export PYTHONPATH=/tmp/site
# The CUDA runtime libraries come from the machine's PyTorch wheels (cuBLAS, cuDNN, NVRTC).
NVIDIA_LIBS=$(python3 -c "import nvidia, os; r=os.path.dirname(nvidia.__path__[0]) + '/nvidia'; print(':'.join(os.path.join(r, d, 'lib') for d in sorted(os.listdir(r)) if os.path.isdir(os.path.join(r, d, 'lib'))))")
export LD_LIBRARY_PATH=$NVIDIA_LIBS:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm --format=csv | tee "$OUT/gpu.txt"
python3 -c "import torch, diffusers; print('torch', torch.__version__, 'diffusers', diffusers.__version__)" | tee -a "$OUT/gpu.txt"

export CANVAS_SOURCE_DIR=$PWD CANVAS_BINARY_DIR=/tmp/canvas
stage=${1:-all}
if [ "$stage" = all ] || [ "$stage" = tests ]; then
  timeout 240 "$BIN/canvas_cuda_tests" 2>&1 | tee "$OUT/cuda_tests.log" | grep -E "gpu parity|FAILED|PASSED|tests ran"
  timeout 60 "$BIN/canvas" generate --model models/tiny-qwen-image --device cuda --prompt "a red fox in the snow" \
    --steps 8 --width 256 --height 256 --seed 42 --output "$OUT/tiny_cuda.png" 2>&1 | tail -2
fi
if [ "$stage" = all ] || [ "$stage" = bench ]; then
  for res in 1024 1328; do
    timeout 150 python3 bench/reference/diffusers_transformer_bench.py --mode full --res "$res" --txt 128 --reps 5 \
      2>&1 | grep RESULT | tee -a "$OUT/reference.jsonl"
  done
  timeout 60 python3 bench/reference/diffusers_transformer_bench.py --mode h2d 2>&1 | grep RESULT | tee -a "$OUT/reference.jsonl"
  start=$(date +%s%N)
  timeout 200 "$BIN/canvas-synthetic-checkpoint" --output /tmp/synth --components transformer --layers 60 --shard-gib 5 \
    --tokenizer models/tiny-qwen-image/tokenizer 2>&1 | tail -1
  echo "synthetic checkpoint written in $(( ($(date +%s%N) - start) / 1000000 )) ms" | tee "$OUT/synthetic.txt"
  sync; echo 3 > /proc/sys/vm/drop_caches 2>/dev/null || echo "(could not drop the page cache)"
  timeout 200 "$BIN/canvas-bench-transformer" --model /tmp/synth --device cuda --res 1024,1328 --batch 1,2 \
    --text 128 --iters 5 --json "$OUT/ours.json" 2>&1 | tee "$OUT/ours.log" | grep -E "RESULT|error"
fi
# Memory plans on the complete full-size synthetic model at 1024², CFG 4, 4 steps: unconstrained, then
# under a ballast leaving B GiB free, `auto` and the presets that fit, beside diffusers' group offloading
# (block_level, use_stream=True) under the same budget. PLAN_BUDGETS picks the budgets of this call.
plan_run() {  # plan_run LABEL ARGS...
  local label=$1; shift
  timeout 300 "$BIN/canvas" generate --model /tmp/synth-full --device cuda --prompt "a lighthouse at dusk" \
    --width 1024 --height 1024 --steps 4 --cfg-scale 4 --seed 1 --output "$OUT/$label.png" "$@" 2>&1 \
    | tee "$OUT/$label.log" | grep -E "^plan|^  |Time:|Memory:|error" 
  [ -f "$OUT/$label.png" ] && python3 bench/png_report.py "$OUT/$label.png" "$label" | tee -a "$OUT/plans.jsonl" | cut -c1-300
}
synth_full() {  # the complete full-size synthetic model in /tmp/synth-full, written once per machine
  if [ ! -f /tmp/synth-full/model_index.json ]; then
    start=$(date +%s)
    timeout 240 "$BIN/canvas-synthetic-checkpoint" --output /tmp/synth-full --shard-gib 5 \
      --tokenizer models/tiny-qwen-image/tokenizer 2>&1 | tail -1
    echo "synthetic checkpoint written in $(( $(date +%s) - start )) s"
  fi
  export CANVAS_CACHE_DIR=/tmp/canvas-cache
}
if [ "$stage" = plan ]; then
  synth_full
  for budget in ${PLAN_BUDGETS:-unconstrained 24 16 8 4}; do
    if [ "$budget" = unconstrained ]; then
      plan_run unconstrained --strategy bf16_full
      continue
    fi
    python3 bench/reference/ballast.py "$budget" > /tmp/ballast.log 2>&1 &
    ballast=$!
    for _ in $(seq 120); do grep -q READY /tmp/ballast.log && break; sleep 0.5; done
    cat /tmp/ballast.log
    for strategy in ${PLAN_STRATEGIES:-auto}; do plan_run "${strategy}_${budget}GiB" --strategy "$strategy"; done
    kill $ballast; wait $ballast 2>/dev/null
    if [ -n "${PLAN_DIFFUSERS-1}" ]; then
      timeout 300 python3 bench/reference/diffusers_transformer_bench.py --mode group_block --budget "$budget" \
        --res 1024 --txt 128 --reps 3 2>&1 | grep RESULT | tee -a "$OUT/reference.jsonl"
    fi
  done
fi
# The profiler's cost: the plan stage's job, 12 steps, without and with --profile, alternating
# PROFILE_REPEATS times (default 4: a streamed run's s/step varies by about 5% from run to run),
# unconstrained and under --vram-budget B (streamed blocks, so copies are timed too); PROFILE_BUDGETS picks
# the budgets. Adds each budget's s/step both ways and the overlap measured to profile_overhead.jsonl.
if [ "$stage" = profile ]; then
  synth_full
  for budget in ${PROFILE_BUDGETS:-unconstrained 16}; do
    limit=(); [ "$budget" = unconstrained ] || limit=(--vram-budget "$budget")
    for repeat in $(seq "${PROFILE_REPEATS:-4}"); do
      for profile in off on; do
        flag=(); [ "$profile" = on ] && flag=(--profile "$OUT/profile_$budget.json")
        timeout 400 "$BIN/canvas" generate --model /tmp/synth-full --device cuda --prompt "a lighthouse at dusk" \
          --width 1024 --height 1024 --steps 12 --cfg-scale 4 --seed 1 "${limit[@]}" "${flag[@]}" \
          --output "$OUT/profile_${profile}${repeat}_$budget.png" > "$OUT/profile_${profile}${repeat}_$budget.log" 2>&1
      done
    done
    python3 - "$budget" "$OUT/profile_$budget.json" "$OUT"/profile_off[0-9]*_"$budget".png "$OUT"/profile_on[0-9]*_"$budget".png \
      <<'PY' | tee -a "$OUT/profile_overhead.jsonl"
import json, statistics, sys
sys.path.insert(0, "bench")
from png_report import canvas_metadata
def s_per_step(png):  # the median step after the first, as png_report.py reports it
    steps = sorted(canvas_metadata(png)["timings_s"]["per_step"][1:])
    return steps[len(steps) // 2]
runs = {mode: [s_per_step(png) for png in sys.argv[3:] if f"profile_{mode}" in png] for mode in ("off", "on")}
off, on = statistics.median(runs["off"]), statistics.median(runs["on"])
summary = json.load(open(sys.argv[2]))["summary"]
print("RESULT " + json.dumps({"budget": sys.argv[1], "off_s_per_step": off, "on_s_per_step": on,
                              "overhead": on / off - 1, "runs_s_per_step": runs,
                              "copy_compute_overlap": summary["copy_compute_overlap"]}))
PY
  done
fi
# Mid-job pressure: under a ballast leaving PRESSURE_BUDGET GiB free, the plan stage's job (8 steps, with
# --profile) runs undisturbed, then while bench/reference/pressure.py takes all but PRESSURE_LEAVE GiB of
# the free memory as soon as the job has placed PRESSURE_TRIGGER GiB, then once more with the grabber
# gone (starting from the rungs the squeezed job needed).
if [ "$stage" = pressure ]; then
  synth_full
  python3 bench/reference/ballast.py "${PRESSURE_BUDGET:-24}" > /tmp/ballast.log 2>&1 &
  ballast=$!
  for _ in $(seq 120); do grep -q READY /tmp/ballast.log && break; sleep 0.5; done
  cat /tmp/ballast.log
  pressure_job() {  # pressure_job LABEL ARGS...
    local label=$1; shift
    timeout 400 "$BIN/canvas" generate --model /tmp/synth-full --device cuda --prompt "a lighthouse at dusk" \
      --width 1024 --height 1024 --steps 8 --cfg-scale 4 --seed 1 "$@" \
      --profile "$OUT/$label.json" --output "$OUT/$label.png" > "$OUT/$label.log" 2>&1
    grep -E "^plan|^  |Memory recovery|Time:|Memory:|rror" "$OUT/$label.log" | cut -c1-400
    [ -f "$OUT/$label.png" ] && python3 bench/png_report.py "$OUT/$label.png" "$label" | tee -a "$OUT/plans.jsonl" | cut -c1-300
  }
  pressure_job undisturbed --forget-recoveries
  python3 bench/reference/pressure.py "${PRESSURE_TRIGGER:-4}" "${PRESSURE_LEAVE:-1}" > "$OUT/grabber.log" 2>&1 &
  grabber=$!
  for _ in $(seq 120); do grep -q READY "$OUT/grabber.log" && break; sleep 0.5; done
  pressure_job pressure --forget-recoveries
  cat "$OUT/grabber.log"
  kill $grabber; wait $grabber 2>/dev/null
  pressure_job remembered
  kill $ballast; wait $ballast 2>/dev/null
fi
if [ "$stage" = e2e ]; then
  # Whole text-to-image at 1328² / 50 steps / CFG 4 on a complete full-size synthetic model (58 GB on disk).
  df -h /tmp | tail -1
  timeout 200 "$BIN/canvas-synthetic-checkpoint" --output /tmp/synth-full --shard-gib 5 \
    --tokenizer models/tiny-qwen-image/tokenizer 2>&1 | tail -3
  sync; echo 3 > /proc/sys/vm/drop_caches 2>/dev/null || echo "(could not drop the page cache)"
  timeout 300 "$BIN/canvas" generate --model /tmp/synth-full --device cuda --prompt "a lighthouse at dusk" \
    --width 1328 --height 1328 --steps 50 --cfg-scale 4 --seed 1 --output "$OUT/e2e_1328.png" 2>&1 | tail -3
fi
