#!/usr/bin/env bash
# Inpainting and img2img at full size, one GPU: first the GPU parity tests of img2img, inpainting and editing
# (canvas_cuda_tests *CudaImg2Img* and *CudaEdit*, against the tiny models' goldens), then diffusers'
# QwenImageInpaintPipeline and QwenImageImg2ImgPipeline beside `canvas inpaint` and `canvas generate --image`
# on the same synthetic Qwen-Image folder (text-to-image, random bf16 weights, 56 GB), the same 1024x1024
# picture and mask (a quarter of the picture, in its middle; generated deterministically) and the same
# settings:
#   inpaint_1024   strength 0.85, true CFG 4 with a negative prompt;
#   img2img_1024   strength 0.6, unguided (CFG scale 1);
# INPAINT_STEPS steps (default 8, of which strength 0.85 keeps the last 7 and 0.6 the last 5; s/step is the
# median step after the first), seed 1. Expects what bench/device_setup.sh expects:
# .device/bin.tar.xz (portable binaries) and .whl/ (the diffusers wheel).
#
# Usage: bash bench/run_inpaint_bench.sh   (expected about 5 minutes on an H100, writing the folder included)
#   INPAINT_STEPS=N        denoising steps of every run, before the strength's cut (default 8)
#   INPAINT_REFERENCE=0    skips diffusers (its picture and mask are still written)
#   INPAINT_PARITY=0       skips the GPU parity tests
#   INPAINT_BUDGET_S=540   seconds for the whole script; a stage's timeout is what is left of it
#
# Returns in $OUT: cuda_tests.log (the parity tests' output), results.jsonl (one RESULT line per tool and
# configuration, diffusers' from bench/reference/diffusers_inpaint_bench.py, ours from bench/edit_report.py),
# summary.json (s/step and end to end of both, side by side), gpu.txt, and inpaint_bench.tgz (the logs and
# our --profile JSON; no PNGs).
set -u
STEPS=${INPAINT_STEPS:-8}
MODEL=/tmp/synth-full
PICTURES=/tmp/inpaint-pictures
WORK=/tmp/inpaint-bench
PROMPT="A red hot air balloon over a lighthouse on the coast at dusk"
NEGATIVE="blurry, low quality, distorted"
INPAINT_STRENGTH=0.85
IMG2IMG_STRENGTH=0.6
source bench/device_setup.sh "${INPAINT_BUDGET_S:-540}"
rm -rf "$WORK"
mkdir -p "$WORK"

if [ "${INPAINT_PARITY:-1}" != 0 ]; then
  CANVAS_SOURCE_DIR=$PWD CANVAS_BINARY_DIR=/tmp/canvas timeout -k 10 "$(left 150)" "$BIN/canvas_cuda_tests" \
    --gtest_filter='*CudaImg2Img*:*CudaEdit*' > "$OUT/cuda_tests.log" 2>&1
  echo "parity tests: exit $?"
  grep -E "gpu parity|FAILED|PASSED|tests ran" "$OUT/cuda_tests.log"
fi

# 56.3 GB (52.4 GiB), run_h200.sh's folder. The edit folder (/tmp/synth-edit) goes first if both would not
# fit on the disk.
write_synthetic "$MODEL" 55 /tmp/synth-edit

reference_args=(--model "$MODEL" --pictures-dir "$PICTURES" --steps "$STEPS" --width 1024 --height 1024
  --cfg-scale 4 --img2img-cfg-scale 1 --inpaint-strength "$INPAINT_STRENGTH" --img2img-strength "$IMG2IMG_STRENGTH"
  --seed 1 --prompt "$PROMPT" --negative-prompt "$NEGATIVE" --output-dir "$WORK")
if [ "${INPAINT_REFERENCE:-1}" = 0 ]; then
  timeout 60 python3 bench/reference/diffusers_inpaint_bench.py "${reference_args[@]}" --pictures-only
else
  timeout -k 10 "$(left 300)" python3 bench/reference/diffusers_inpaint_bench.py "${reference_args[@]}" \
    > "$WORK/diffusers.log" 2>&1
  grep -E "^RESULT" "$WORK/diffusers.log" | tee -a "$OUT/results.jsonl" | cut -c1-400
  grep -E "Error|error" "$WORK/diffusers.log" | tail -3
fi

# canvas_run LABEL STRENGTH COMMAND ARGS...: one `canvas` job on the folder at 1024x1024, seed 1, reported
# through edit_report.py.
canvas_run() {
  local label=$1 strength=$2 start rc wall_ms
  shift 2
  start=$(date +%s%N)
  timeout -k 10 "$(left 150)" "$BIN/canvas" "$@" --model "$MODEL" --device cuda --image "$PICTURES/picture.png" \
    --strength "$strength" --prompt "$PROMPT" --steps "$STEPS" --width 1024 --height 1024 --seed 1 \
    --output "$WORK/canvas_$label.png" --profile "$WORK/canvas_$label.json" > "$WORK/canvas_$label.log" 2>&1
  rc=$?
  wall_ms=$((($(date +%s%N) - start) / 1000000))
  grep -E "^plan|^  [a-z_]+ |Time:|Memory:|rror" "$WORK/canvas_$label.log" | cut -c1-300
  python3 bench/edit_report.py "$label" "$WORK/canvas_$label.log" "$WORK/canvas_$label.json" --rc "$rc" \
    --wall "$((wall_ms / 1000)).$(printf %03d $((wall_ms % 1000)))" --set "strength=$strength" \
    --set "steps=$STEPS" | tee -a "$OUT/results.jsonl" | cut -c1-400
}
canvas_run inpaint_1024 "$INPAINT_STRENGTH" inpaint --mask "$PICTURES/mask.png" --cfg-scale 4 \
  --negative-prompt "$NEGATIVE"
canvas_run img2img_1024 "$IMG2IMG_STRENGTH" generate --cfg-scale 1

summarize "$OUT/results.jsonl" | tee "$OUT/summary.json"
tar -C "$WORK" -czf "$OUT/inpaint_bench.tgz" --exclude='*.png' .
