#!/usr/bin/env bash
# LoRAs and Lightning at full size, one GPU (#16): the Qwen-Image-Lightning recipe (a fixed scheduler shift of 3,
# no CFG) with a random LoRA of the published files' key set (rank 64, alpha 8; make_bench_lora.py) on the
# synthetic text-to-image folder, at 1328x1328 in 8 and 4 steps.
#   - diffusers: QwenImagePipeline + load_lora_weights, warm (a second call), unfused and after fuse_lora();
#   - canvas generate --lora ... --preset lightning-8|4 --batch-count 2: the second image is the warm one (the
#     model loaded and its weights, LoRA merged, kept on the device by the first);
#   - the LoRA computed beside streamed weights: lightning-8 at 1328x1328 under an 8 GiB device budget, with
#     and without the LoRA (s/step).
# Expects what run_inpaint_bench.sh expects (.device/bin.tar.xz, .whl/); runs the CUDA LoRA parity test first.
#
# Usage: bash bench/run_lora_bench.sh
#   LORA_REFERENCE=0   skips diffusers
#   LORA_PARITY=0      skips the parity test
#   LORA_BUDGET_S=560  seconds for the whole script
#
# Returns in $OUT: cuda_lora_tests.log, results.jsonl (RESULT lines: diffusers' from diffusers_lora_bench.py,
# ours from edit_report.py on the warm image's profile), summary.json, gpu.txt and lora_bench.tgz (logs and
# profiles; no PNGs).
set -u
MODEL=/tmp/synth-full
LORA=/tmp/bench-lora.safetensors
WORK=/tmp/lora-bench
PROMPT="a lighthouse on a cliff at dusk, watercolor"
source bench/device_setup.sh "${LORA_BUDGET_S:-560}"
rm -rf "$WORK"
mkdir -p "$WORK"

if [ "${LORA_PARITY:-1}" != 0 ]; then
  CANVAS_SOURCE_DIR=$PWD CANVAS_BINARY_DIR=/tmp/canvas timeout -k 10 "$(left 90)" "$BIN/canvas_cuda_tests" \
    --gtest_filter='*CudaLora*' > "$OUT/cuda_lora_tests.log" 2>&1
  echo "LoRA parity tests: exit $?"
  grep -E "gpu parity|FAILED|PASSED|tests ran" "$OUT/cuda_lora_tests.log"
fi

write_synthetic "$MODEL" 55 /tmp/synth-edit
[ -f "$LORA" ] || timeout -k 10 "$(left 120)" python3 bench/reference/make_bench_lora.py --model "$MODEL" --output "$LORA"

if [ "${LORA_REFERENCE:-1}" != 0 ]; then
  timeout -k 10 "$(left 280)" python3 bench/reference/diffusers_lora_bench.py --model "$MODEL" --lora "$LORA" \
    --steps 8,4 --size 1328 --prompt "$PROMPT" --seed 1 --output-dir "$WORK" > "$WORK/diffusers.log" 2>&1
  grep -E "^RESULT" "$WORK/diffusers.log" | tee -a "$OUT/results.jsonl" | cut -c1-400
  grep -E "Error|error" "$WORK/diffusers.log" | tail -3
fi

# canvas_run LABEL IMAGE ARGS...: one `canvas generate` at 1328x1328, seed 1, reported through edit_report.py
# from the profile of image IMAGE of its batch (2: the warm one).
canvas_run() {
  local label=$1 image=$2 start rc wall_ms
  shift 2
  start=$(date +%s%N)
  timeout -k 10 "$(left 150)" "$BIN/canvas" generate --model "$MODEL" --device cuda --prompt "$PROMPT" --width 1328 \
    --height 1328 --seed 1 --output "$WORK/canvas_$label.png" --profile "$WORK/canvas_$label.json" "$@" \
    > "$WORK/canvas_$label.log" 2>&1
  rc=$?
  wall_ms=$((($(date +%s%N) - start) / 1000000))
  grep -E "^plan|^  [a-z_]+ |Time:|Memory:|LoRA|rror" "$WORK/canvas_$label.log" | cut -c1-300
  local profile="$WORK/canvas_$label.json"
  [ "$image" = 1 ] || profile="$WORK/canvas_$label-$image.json"
  python3 bench/edit_report.py "$label" "$WORK/canvas_$label.log" "$profile" --rc "$rc" \
    --wall "$((wall_ms / 1000)).$(printf %03d $((wall_ms % 1000)))" | tee -a "$OUT/results.jsonl" | cut -c1-400
}
canvas_run lightning8_1328 2 --lora "$LORA" --preset lightning-8 --batch-count 2
canvas_run lightning4_1328 2 --lora "$LORA" --preset lightning-4 --batch-count 2
canvas_run streamed8gib_lora 1 --lora "$LORA" --preset lightning-8 --vram-budget 8
canvas_run streamed8gib_nolora 1 --preset lightning-8 --vram-budget 8

summarize "$OUT/results.jsonl" | tee "$OUT/summary.json"
tar -C "$WORK" -czf "$OUT/lora_bench.tgz" --exclude='*.png' .
