#!/usr/bin/env bash
# Image editing at full size, one GPU: diffusers' QwenImageEditPlusPipeline and `canvas edit` on the same
# synthetic Qwen-Image-Edit-2511 folder (random bf16 weights, 58 GB), the same pictures and settings: a
# 1024x1024 output from 1 and from 3 reference pictures (A.png 1024x768, B.png 768x1152, C.png 1280x720,
# generated deterministically), true CFG 4 with a negative prompt, EDIT_STEPS steps (default 4; s/step is the
# median step after the first). Expects what bench/device_setup.sh expects: .device/bin.tar.xz (portable
# binaries) and .whl/ (the diffusers wheel).
#
# Usage: bash bench/run_edit_bench.sh   (expected 5-6 minutes on an H100, writing the folder included)
#   EDIT_STEPS=N         denoising steps of every run (default 4)
#   EDIT_REFS="1 3"      the configurations: how many of the pictures each edits with
#   EDIT_REFERENCE=0     skips diffusers (its pictures are still written)
#   EDIT_BUDGET_S=540    seconds for the whole script; a stage's timeout is what is left of it
#
# Returns in $OUT: results.jsonl (one RESULT line per tool and configuration, diffusers' from
# bench/reference/diffusers_edit_bench.py, ours from bench/edit_report.py), summary.json (s/step and end to
# end of both, side by side), gpu.txt, and edit_bench.tgz (the logs, our --profile JSON and plots; no PNGs).
set -u
STEPS=${EDIT_STEPS:-4}
REFS=${EDIT_REFS:-1 3}
MODEL=/tmp/synth-edit
PICTURES=/tmp/edit-pictures
WORK=/tmp/edit-bench
PROMPT="Put the lighthouse of picture 1 on the coast at dusk, in watercolor"
NEGATIVE="blurry, low quality, distorted"
source bench/device_setup.sh "${EDIT_BUDGET_S:-540}"
rm -rf "$WORK"
mkdir -p "$WORK"

# 57.7 GB (53.7 GiB): the text-to-image folder's 56.3 GB plus the 1.35 GB vision tower. The text-to-image
# folder (/tmp/synth-full) goes first if both would not fit on the disk.
write_synthetic "$MODEL" 56 /tmp/synth-full --pipeline edit-plus

refs_csv=$(echo $REFS | tr ' ' ',')
reference_args=(--model "$MODEL" --pictures-dir "$PICTURES" --refs "$refs_csv" --steps "$STEPS" --width 1024
  --height 1024 --cfg-scale 4 --seed 1 --prompt "$PROMPT" --negative-prompt "$NEGATIVE" --output-dir "$WORK")
if [ "${EDIT_REFERENCE:-1}" = 0 ]; then
  timeout 60 python3 bench/reference/diffusers_edit_bench.py "${reference_args[@]}" --pictures-only
else
  timeout -k 10 "$(left 330)" python3 bench/reference/diffusers_edit_bench.py "${reference_args[@]}" \
    > "$WORK/diffusers.log" 2>&1
  grep -E "^RESULT" "$WORK/diffusers.log" | tee -a "$OUT/results.jsonl" | cut -c1-400
  grep -E "Error|error" "$WORK/diffusers.log" | tail -3
fi

for refs in $REFS; do
  images=()
  for name in $(echo A B C D E F | cut -d' ' -f1-"$refs"); do images+=(--image "$PICTURES/$name.png"); done
  start=$(date +%s%N)
  timeout -k 10 "$(left 150)" "$BIN/canvas" edit --model "$MODEL" --device cuda "${images[@]}" --prompt "$PROMPT" \
    --negative-prompt "$NEGATIVE" --cfg-scale 4 --steps "$STEPS" --width 1024 --height 1024 --seed 1 \
    --output "$WORK/canvas_${refs}ref.png" --profile "$WORK/canvas_${refs}ref.json" > "$WORK/canvas_${refs}ref.log" 2>&1
  rc=$?
  wall_ms=$((($(date +%s%N) - start) / 1000000))
  grep -E "^plan|^  [a-z_]+ |Time:|Memory:|rror" "$WORK/canvas_${refs}ref.log" | cut -c1-300
  python3 bench/edit_report.py "edit_${refs}ref" "$WORK/canvas_${refs}ref.log" "$WORK/canvas_${refs}ref.json" \
    --rc "$rc" --wall "$((wall_ms / 1000)).$(printf %03d $((wall_ms % 1000)))" --set "refs=$refs" \
    --set "steps=$STEPS" | tee -a "$OUT/results.jsonl" | cut -c1-400
done

summarize "$OUT/results.jsonl" | tee "$OUT/summary.json"
tar -C "$WORK" -czf "$OUT/edit_bench.tgz" --exclude='*.png' .
