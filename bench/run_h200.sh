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
if [ "$stage" = e2e ]; then
  # Whole text-to-image at 1328² / 50 steps / CFG 4 on a complete full-size synthetic model (58 GB on disk).
  df -h /tmp | tail -1
  timeout 200 "$BIN/canvas-synthetic-checkpoint" --output /tmp/synth-full --shard-gib 5 \
    --tokenizer models/tiny-qwen-image/tokenizer 2>&1 | tail -3
  sync; echo 3 > /proc/sys/vm/drop_caches 2>/dev/null || echo "(could not drop the page cache)"
  timeout 300 "$BIN/canvas" generate --model /tmp/synth-full --device cuda --prompt "a lighthouse at dusk" \
    --width 1328 --height 1328 --steps 50 --cfg-scale 4 --seed 1 --output "$OUT/e2e_1328.png" 2>&1 | tail -3
fi
