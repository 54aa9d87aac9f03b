#!/usr/bin/env bash
# Before/after s/step of one change on one GPU, in one device call: two builds of `canvas` (stripped portable
# binaries in .device/before/bin.tar.xz and .device/after/bin.tar.xz, built with -DCANVAS_PORTABLE=ON
# -DCANVAS_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90) run the same job, alternately, REPEATS times: the complete
# full-size synthetic model, 1024², CFG 4, STEPS steps, bf16_full. Writes each run's figures (bench/png_report.py)
# to $OUT/ab.jsonl and the medians to $OUT/ab_summary.json.
set -u
OUT=${OUT:-/tmp/out}
REPEATS=${REPEATS:-3}
STEPS=${STEPS:-8}
mkdir -p "$OUT"
for build in before after; do
  mkdir -p "/tmp/ab/$build" && tar -C "/tmp/ab/$build" -xJf ".device/$build/bin.tar.xz"
done
NVIDIA_LIBS=$(python3 -c "import nvidia, os; r=os.path.dirname(nvidia.__path__[0]) + '/nvidia'; print(':'.join(os.path.join(r, d, 'lib') for d in sorted(os.listdir(r)) if os.path.isdir(os.path.join(r, d, 'lib'))))")
export LD_LIBRARY_PATH=$NVIDIA_LIBS:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
export CANVAS_CACHE_DIR=/tmp/canvas-cache
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
if [ ! -f /tmp/synth-full/model_index.json ]; then
  timeout 240 /tmp/ab/after/bin/canvas-synthetic-checkpoint --output /tmp/synth-full --shard-gib 5 \
    --tokenizer models/tiny-qwen-image/tokenizer 2>&1 | tail -1
fi
for repeat in $(seq "$REPEATS"); do
  for build in before after; do
    label="${build}_${repeat}"
    timeout 240 "/tmp/ab/$build/bin/canvas" generate --model /tmp/synth-full --device cuda --strategy bf16_full \
      --prompt "a lighthouse at dusk" --width 1024 --height 1024 --steps "$STEPS" --cfg-scale 4 --seed 1 \
      --output "$OUT/$label.png" > "$OUT/$label.log" 2>&1
    tail -2 "$OUT/$label.log"
    python3 bench/png_report.py "$OUT/$label.png" "$label" | sed 's/^RESULT //' >> "$OUT/ab.jsonl"
    rm -f "$OUT/$label.png"
  done
done
python3 - "$OUT" <<'PY'
import json, statistics, sys
out = sys.argv[1]
runs = [json.loads(line) for line in open(f"{out}/ab.jsonl")]
summary = {}
for build in ("before", "after"):
    # Each run's s/step is the median of its steps after the first (png_report.py); the summary takes the
    # median over the runs.
    per_run = [run["s_per_step"] for run in runs if run["label"].startswith(build)]
    summary[build] = {"median_s_per_step": statistics.median(per_run), "runs_s_per_step": per_run}
summary["after_over_before"] = summary["after"]["median_s_per_step"] / summary["before"]["median_s_per_step"]
json.dump(summary, open(f"{out}/ab_summary.json", "w"), indent=1)
print(json.dumps(summary))
PY
