#!/usr/bin/env bash
# Image editing at full size, one GPU: diffusers' QwenImageEditPlusPipeline and `canvas edit` on the same
# synthetic Qwen-Image-Edit-2511 folder (random bf16 weights, 58 GB), the same pictures and settings: a
# 1024x1024 output from 1 and from 3 reference pictures (A.png 1024x768, B.png 768x1152, C.png 1280x720,
# generated deterministically), true CFG 4 with a negative prompt, EDIT_STEPS steps (default 4; s/step is the
# median step after the first). Expects what run_h200.sh expects: .device/bin.tar.xz (portable binaries built
# with -DCANVAS_PORTABLE=ON -DCANVAS_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90) and .whl/ (the diffusers wheel).
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
OUT=${OUT:-/tmp/out}
deadline=$(($(date +%s) + ${EDIT_BUDGET_S:-540}))
STEPS=${EDIT_STEPS:-4}
REFS=${EDIT_REFS:-1 3}
MODEL=/tmp/synth-edit
PICTURES=/tmp/edit-pictures
WORK=/tmp/edit-bench
PROMPT="Put the lighthouse of picture 1 on the coast at dusk, in watercolor"
NEGATIVE="blurry, low quality, distorted"
rm -rf "$WORK"
mkdir -p "$OUT" "$WORK" /tmp/canvas
tar -C /tmp/canvas -xJf .device/bin.tar.xz
BIN=/tmp/canvas/bin
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1
# The CUDA runtime libraries come from the machine's PyTorch wheels (cuBLAS, cuDNN, NVRTC).
NVIDIA_LIBS=$(python3 -c "import nvidia, os; r=os.path.dirname(nvidia.__path__[0]) + '/nvidia'; print(':'.join(os.path.join(r, d, 'lib') for d in sorted(os.listdir(r)) if os.path.isdir(os.path.join(r, d, 'lib'))))")
export LD_LIBRARY_PATH=$NVIDIA_LIBS:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
export CANVAS_CACHE_DIR=/tmp/canvas-cache
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm --format=csv | tee "$OUT/gpu.txt"
python3 -c "import torch, diffusers, transformers; print('torch', torch.__version__, 'diffusers', diffusers.__version__, 'transformers', transformers.__version__)" | tee -a "$OUT/gpu.txt"

left() {  # left SECONDS: the timeout for the next stage, at most SECONDS, never past the deadline
  local remaining=$((deadline - $(date +%s)))
  echo $((remaining < $1 ? (remaining > 1 ? remaining : 1) : $1))
}

# The folder is written once per machine: 57.7 GB (53.7 GiB), the text-to-image folder's 56.3 GB plus the
# 1.35 GB vision tower. run_h200.sh's /tmp/synth-full goes first if both would not fit on the disk.
# model_index.json comes first, so a folder counts as written only once the tool has finished it.
if [ ! -f "$MODEL/.written" ]; then
  rm -rf "$MODEL"
  free_gib=$(df -BG --output=avail /tmp | tail -1 | tr -dc 0-9)
  if [ "$free_gib" -lt 56 ] && [ -d /tmp/synth-full ]; then
    echo "removing /tmp/synth-full: ${free_gib} GiB free"; rm -rf /tmp/synth-full
  fi
  df -h /tmp | tail -1 | tee -a "$OUT/gpu.txt"
  start=$(date +%s)
  timeout "$(left 240)" "$BIN/canvas-synthetic-checkpoint" --output "$MODEL" --pipeline edit-plus --shard-gib 5 \
    --tokenizer models/tiny-qwen-image/tokenizer 2>&1 | tail -4
  [ "${PIPESTATUS[0]}" = 0 ] && touch "$MODEL/.written"
  echo "synthetic edit checkpoint written in $(($(date +%s) - start)) s" | tee -a "$OUT/gpu.txt"
fi

refs_csv=$(echo $REFS | tr ' ' ',')
reference_args=(--model "$MODEL" --pictures-dir "$PICTURES" --refs "$refs_csv" --steps "$STEPS" --width 1024
  --height 1024 --cfg-scale 4 --seed 1 --prompt "$PROMPT" --negative-prompt "$NEGATIVE" --output-dir "$WORK")
if [ "${EDIT_REFERENCE:-1}" = 0 ]; then
  timeout 60 python3 bench/reference/diffusers_edit_bench.py "${reference_args[@]}" --pictures-only
else
  timeout "$(left 330)" python3 bench/reference/diffusers_edit_bench.py "${reference_args[@]}" \
    > "$WORK/diffusers.log" 2>&1
  grep -E "^RESULT" "$WORK/diffusers.log" | tee -a "$OUT/results.jsonl" | cut -c1-400
  grep -E "Error|error" "$WORK/diffusers.log" | tail -3
fi

for refs in $REFS; do
  images=()
  for name in $(echo A B C D E F | cut -d' ' -f1-"$refs"); do images+=(--image "$PICTURES/$name.png"); done
  start=$(date +%s%N)
  timeout "$(left 150)" "$BIN/canvas" edit --model "$MODEL" --device cuda "${images[@]}" --prompt "$PROMPT" \
    --negative-prompt "$NEGATIVE" --cfg-scale 4 --steps "$STEPS" --width 1024 --height 1024 --seed 1 \
    --output "$WORK/canvas_${refs}ref.png" --profile "$WORK/canvas_${refs}ref.json" > "$WORK/canvas_${refs}ref.log" 2>&1
  rc=$?
  wall_ms=$((($(date +%s%N) - start) / 1000000))
  grep -E "^plan|^  [a-z_]+ |Time:|Memory:|rror" "$WORK/canvas_${refs}ref.log" | cut -c1-300
  python3 bench/edit_report.py "edit_${refs}ref" "$WORK/canvas_${refs}ref.log" "$WORK/canvas_${refs}ref.json" \
    --rc "$rc" --wall "$((wall_ms / 1000)).$(printf %03d $((wall_ms % 1000)))" --set "refs=$refs" \
    --set "steps=$STEPS" | tee -a "$OUT/results.jsonl" | cut -c1-400
done

python3 - "$OUT/results.jsonl" <<'PY' | tee "$OUT/summary.json"
import json, sys
rows = [json.loads(line[len("RESULT "):]) for line in open(sys.argv[1]) if line.startswith("RESULT ")]
summary = {}
for row in rows:
    entry = summary.setdefault(row["config"], {})
    entry[row["tool"]] = {key: row.get(key) for key in ("s_per_step", "first_step_s", "before_steps_s",
                          "after_steps_s", "e2e_s", "placement", "error") if row.get(key) is not None}
for entry in summary.values():
    ours, theirs = entry.get("canvas", {}), entry.get("diffusers", {})
    for key in ("s_per_step", "e2e_s"):
        if key in ours and key in theirs:
            entry["ours_over_diffusers_" + key] = ours[key] / theirs[key]
print(json.dumps(summary, indent=1))
PY
tar -C "$WORK" -czf "$OUT/edit_bench.tgz" --exclude='*.png' .
