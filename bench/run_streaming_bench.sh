#!/usr/bin/env bash
# Streaming and placing weights at PCIe speed (#18), one GPU, on the full-size synthetic text-to-image folder
# (page cache warm), 1024x1024, true CFG 4, 4 steps, seed 1, `auto`:
#   - unconstrained (every component resident: the placement rate);
#   - under a VRAM ballast (bench/reference/ballast.py) leaving 24, 16, 8 and 4 GiB free, with the checkpoint's
#     pages locked in place (the default page-lock budget), and at 8 GiB with --pin-budget 0 (the staging ring
#     alone) beside it;
#   - diffusers' group offloading of the transformer (block level, use_stream=True) under the smallest ballast:
#     its speed does not depend on the budget once one group fits.
# Each of ours reports s/step (profile), the plan's prediction, host peak RSS and the bytes locked in place.
# Expects .device/bin.tar.xz (scripts/build_device_binaries.sh) and .whl/.
#
# Usage: bash bench/run_streaming_bench.sh
#   STREAM_BUDGETS="24 16 8 4"   the ballasts of this call (GiB left free)
#   STREAM_BUDGET_S=560          seconds for the whole script
# Returns in $OUT: results.jsonl, summary lines, gpu.txt and stream_bench.tgz (logs and profiles).
set -u
MODEL=/tmp/synth-full
WORK=/tmp/stream-bench
PROMPT="a lighthouse on a cliff at dusk, watercolor"
source bench/device_setup.sh "${STREAM_BUDGET_S:-560}"
rm -rf "$WORK"
mkdir -p "$WORK"
write_synthetic "$MODEL" 55 /tmp/synth-edit
free -g | tee -a "$OUT/gpu.txt"

canvas_run() {  # canvas_run LABEL ARGS...
  local label=$1 start rc wall_ms
  shift
  start=$(date +%s%N)
  timeout -k 10 "$(left 120)" "$BIN/canvas" generate --model "$MODEL" --device cuda --prompt "$PROMPT" \
    --width 1024 --height 1024 --steps 4 --cfg-scale 4 --seed 1 --output "$WORK/$label.png" \
    --profile "$WORK/$label.json" "$@" > "$WORK/$label.log" 2>&1
  rc=$?
  wall_ms=$((($(date +%s%N) - start) / 1000000))
  grep -E "^plan|^  transformer|Time:|Memory:|copy .* compute|rror" "$WORK/$label.log" | cut -c1-330
  python3 bench/edit_report.py "$label" "$WORK/$label.log" "$WORK/$label.json" --rc "$rc" \
    --wall "$((wall_ms / 1000)).$(printf %03d $((wall_ms % 1000)))" | tee -a "$OUT/results.jsonl" | cut -c1-300
}

with_ballast() {  # with_ballast GIB COMMAND...: runs COMMAND while a ballast leaves GIB GiB of the GPU free
  local gib=$1 ballast
  shift
  python3 bench/reference/ballast.py "$gib" > "$WORK/ballast.log" 2>&1 &
  ballast=$!
  for _ in $(seq 120); do grep -q READY "$WORK/ballast.log" && break; sleep 0.5; done
  cat "$WORK/ballast.log"
  "$@"
  kill "$ballast"
  wait "$ballast" 2>/dev/null
}

canvas_run unconstrained
budgets=${STREAM_BUDGETS:-24 16 8 4}
for gib in $budgets; do
  with_ballast "$gib" canvas_run "auto_${gib}GiB"
  [ "$gib" = 8 ] && with_ballast 8 canvas_run "auto_8GiB_no_locking" --pin-budget 0
done
smallest=$(echo "$budgets" | tr ' ' '\n' | sort -n | head -1)
(cd bench/reference && timeout -k 10 "$(left 200)" python3 diffusers_transformer_bench.py --mode group_block \
  --budget "$smallest" --res 1024 --txt 128 --reps 2) 2>&1 | grep RESULT | tee -a "$OUT/results.jsonl"
tar -C "$WORK" -czf "$OUT/stream_bench.tgz" --exclude='*.png' .
