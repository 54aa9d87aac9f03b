# shellcheck shell=bash
# The setup the one-call device benchmarks share (run_edit_bench.sh, run_inpaint_bench.sh), sourced from the
# repository root: `source bench/device_setup.sh BUDGET_SECONDS`. With OUT (default /tmp/out) it
# - unpacks .device/bin.tar.xz (scripts/build_device_binaries.sh: stripped portable binaries and the few
#   shared libraries they need) into /tmp/canvas, as BIN=/tmp/canvas/bin;
# - installs the carried diffusers wheel (.whl/) into /tmp/site, on PYTHONPATH;
# - points LD_LIBRARY_PATH at the CUDA runtime libraries of the machine's PyTorch wheels, and sets
#   CANVAS_CACHE_DIR=/tmp/canvas-cache;
# - writes the GPU and the reference stack's versions to $OUT/gpu.txt;
# and defines left, write_synthetic and summarize (below). The deadline is BUDGET_SECONDS from now.
OUT=${OUT:-/tmp/out}
deadline=$(($(date +%s) + $1))
mkdir -p "$OUT" /tmp/canvas
tar -C /tmp/canvas -xJf .device/bin.tar.xz
BIN=/tmp/canvas/bin
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1
# The CUDA runtime libraries come from the machine's PyTorch wheels (cuBLAS, cuDNN, NVRTC).
NVIDIA_LIBS=$(python3 -c "import nvidia, os; r=os.path.dirname(nvidia.__path__[0]) + '/nvidia'; print(':'.join(os.path.join(r, d, 'lib') for d in sorted(os.listdir(r)) if os.path.isdir(os.path.join(r, d, 'lib'))))")
export LD_LIBRARY_PATH=/tmp/canvas/lib:$NVIDIA_LIBS:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
export CANVAS_CACHE_DIR=/tmp/canvas-cache
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm --format=csv | tee "$OUT/gpu.txt"
python3 -c "import torch, diffusers, transformers; print('torch', torch.__version__, 'diffusers', diffusers.__version__, 'transformers', transformers.__version__)" | tee -a "$OUT/gpu.txt"

left() {  # left SECONDS: the timeout for the next stage, at most SECONDS, never past the deadline
  local remaining=$((deadline - $(date +%s)))
  echo $((remaining < $1 ? (remaining > 1 ? remaining : 1) : $1))
}

# write_synthetic FOLDER GIB OTHER [ARGS...]: the full-size synthetic folder `canvas-synthetic-checkpoint
# --output FOLDER --shard-gib 5 ARGS` (random bf16 weights), written once per machine. It needs about GIB
# GiB of /tmp; when less is free, the other benchmark's folder OTHER goes first. model_index.json comes
# first, so a folder counts as written only once the tool has finished it (FOLDER/.written).
write_synthetic() {
  local folder=$1 needed_gib=$2 other=$3 start free_gib
  shift 3
  [ -f "$folder/.written" ] && return
  rm -rf "$folder"
  free_gib=$(df -BG --output=avail /tmp | tail -1 | tr -dc 0-9)
  if [ "$free_gib" -lt "$needed_gib" ] && [ -d "$other" ]; then
    echo "removing $other: ${free_gib} GiB free"; rm -rf "$other"
  fi
  df -h /tmp | tail -1 | tee -a "$OUT/gpu.txt"
  start=$(date +%s)
  timeout -k 10 "$(left 240)" "$BIN/canvas-synthetic-checkpoint" --output "$folder" --shard-gib 5 \
    --tokenizer models/tiny-qwen-image/tokenizer "$@" 2>&1 | tail -4
  [ "${PIPESTATUS[0]}" = 0 ] && touch "$folder/.written"
  echo "synthetic checkpoint $folder written in $(($(date +%s) - start)) s" | tee -a "$OUT/gpu.txt"
}

# summarize RESULTS.jsonl: each configuration's figures of both tools side by side, and ours over
# diffusers' for s/step and end to end, as JSON on stdout.
summarize() {
  python3 - "$1" <<'PY'
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
}
