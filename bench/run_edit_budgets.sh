#!/usr/bin/env bash
# Edit plans under device budgets, one GPU: `canvas edit` on the synthetic Qwen-Image-Edit-2511 folder
# (bench/run_edit_bench.sh writes it) at 1024x1024 with 1 and 3 reference pictures, true CFG 4, EDIT_STEPS
# steps (default 2), under --vram-budget 24, 16, 8 and 4 GiB: the plan auto chose, its predicted and measured
# peaks, and the times. Expects .device/bin.tar.xz as run_h200.sh does; writes budgets.jsonl under $OUT.
set -u
OUT=${OUT:-/tmp/out}
STEPS=${EDIT_STEPS:-2}
MODEL=/tmp/synth-edit
PICTURES=/tmp/edit-pictures
mkdir -p "$OUT" /tmp/canvas /tmp/edit-budgets
[ -x /tmp/canvas/bin/canvas ] || tar -C /tmp/canvas -xJf .device/bin.tar.xz
BIN=/tmp/canvas/bin
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
export PYTHONPATH=/tmp/site
NVIDIA_LIBS=$(python3 -c "import nvidia, os; r=os.path.dirname(nvidia.__path__[0]) + '/nvidia'; print(':'.join(os.path.join(r, d, 'lib') for d in sorted(os.listdir(r)) if os.path.isdir(os.path.join(r, d, 'lib'))))")
export LD_LIBRARY_PATH=$NVIDIA_LIBS:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
export CANVAS_CACHE_DIR=/tmp/canvas-cache
if [ ! -f "$MODEL/.written" ]; then
  rm -rf "$MODEL"
  timeout 240 "$BIN/canvas-synthetic-checkpoint" --output "$MODEL" --pipeline edit-plus --shard-gib 5 \
    --tokenizer models/tiny-qwen-image/tokenizer 2>&1 | tail -1 && touch "$MODEL/.written"
fi
[ -f "$PICTURES/C.png" ] || timeout 60 python3 bench/reference/diffusers_edit_bench.py \
  --model "$MODEL" --pictures-dir "$PICTURES" --refs 1 --output-dir /tmp/edit-budgets --pictures-only
for refs in 1 3; do
  images=()
  for name in $(echo A B C | cut -d' ' -f1-"$refs"); do images+=(--image "$PICTURES/$name.png"); done
  for gib in 24 16 8 4; do
    label="edit_${refs}ref_${gib}gib"
    timeout 150 "$BIN/canvas" edit --model "$MODEL" --device cuda "${images[@]}" --prompt "a lighthouse at dusk" \
      --negative-prompt " " --cfg-scale 4 --steps "$STEPS" --width 1024 --height 1024 --seed 1 \
      --vram-budget "$gib" --output "/tmp/edit-budgets/$label.png" --profile "/tmp/edit-budgets/$label.json" \
      > "/tmp/edit-budgets/$label.log" 2>&1
    rc=$?
    echo "== $label (exit $rc)"
    grep -E "^plan|^  [a-z_]+ |Time:|Memory:|rror|recovery" "/tmp/edit-budgets/$label.log" | cut -c1-220
    python3 bench/edit_report.py "$label" "/tmp/edit-budgets/$label.log" "/tmp/edit-budgets/$label.json" \
      --rc "$rc" --set "refs=$refs" --set "budget_gib=$gib" --set "steps=$STEPS" >> "$OUT/budgets.jsonl"
  done
done
