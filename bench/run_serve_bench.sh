#!/usr/bin/env bash
# `canvas serve` at full size, one GPU (#23), on the synthetic text-to-image folder:
#   - the command line's `canvas generate` (load, place, compute) for the same job, cold and again;
#   - the server: the first job on a model and the second (the weights kept on the device), a job of another
#     size (the components taken over), 10 jobs at 1024x1024 submitted at once (jobs per minute), and a
#     second model whose text encoder and VAE are the first's files (held once; GET /v1/memory);
#   - diffusers' QwenImagePipeline kept on the device, 10 images one after another (jobs per minute).
# 8 steps, CFG 1. Expects .device/bin.tar.xz (scripts/build_device_binaries.sh) and .whl/.
#
# Usage: bash bench/run_serve_bench.sh
#   SERVE_REFERENCE=0   skips diffusers
#   SERVE_BUDGET_S=560  seconds for the whole script
# Returns in $OUT: results.jsonl, gpu.txt and serve_bench.tgz (logs).
set -u
MODEL=/tmp/synth-full
WORK=/tmp/serve-bench
PROMPT="a lighthouse on a cliff at dusk, watercolor"
source bench/device_setup.sh "${SERVE_BUDGET_S:-560}"
rm -rf "$WORK"
mkdir -p "$WORK/models/qwen-image-b"
write_synthetic "$MODEL" 55 /tmp/synth-edit
# Two models: the folder itself, and one whose every component is a link to the folder's (the text encoder
# and the VAE are found identical from the files; the transformer is loaded again, as another model's would).
ln -s "$MODEL" "$WORK/models/qwen-image"
for entry in "$MODEL"/*; do ln -s "$entry" "$WORK/models/qwen-image-b/"; done

for run in cold warm; do
  start=$(date +%s%N)
  timeout -k 10 "$(left 150)" "$BIN/canvas" generate --model "$MODEL" --device cuda --prompt "$PROMPT" \
    --width 1024 --height 1024 --steps 8 --cfg-scale 1 --seed 1 --output "$WORK/cli_$run.png" \
    > "$WORK/cli_$run.log" 2>&1
  rc=$?
  wall=$((($(date +%s%N) - start) / 1000000))
  grep -E "^Time:|^Memory:|rror" "$WORK/cli_$run.log" | cut -c1-300
  echo "RESULT {\"tool\": \"canvas-cli\", \"config\": \"cli_$run\", \"rc\": $rc, \"wall_s\": $((wall / 1000)).$(printf %03d $((wall % 1000)))}" \
    | tee -a "$OUT/results.jsonl"
done

"$BIN/canvas" serve --models "$WORK/models" --data "$WORK/data" --device cuda --port 7861 \
  > "$WORK/serve.log" 2>&1 &
server=$!
for _ in $(seq 600); do grep -q "^Serving" "$WORK/serve.log" && break; sleep 0.1; done
timeout -k 10 "$(left 300)" python3 bench/serve_bench_client.py http://127.0.0.1:7861 --model qwen-image \
  --other-model qwen-image-b --jobs 10 --size 1024 --steps 8 2>&1 | tee -a "$OUT/results.jsonl" | cut -c1-400
kill -TERM "$server"
wait "$server"

if [ "${SERVE_REFERENCE:-1}" != 0 ]; then
  timeout -k 10 "$(left 240)" python3 bench/reference/diffusers_serve_bench.py --model "$MODEL" --jobs 10 \
    --size 1024 --steps 8 > "$WORK/diffusers.log" 2>&1
  grep -E "^RESULT" "$WORK/diffusers.log" | tee -a "$OUT/results.jsonl" | cut -c1-400
  grep -E "Error|error" "$WORK/diffusers.log" | tail -3
fi
tar -C "$WORK" -czf "$OUT/serve_bench.tgz" --exclude='*.png' --exclude=models --exclude=data .
