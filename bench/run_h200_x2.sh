#!/usr/bin/env bash
# Two H200s of one host (the nvidia-h200-x2 kind): `canvas generate` on the complete full-size synthetic model,
# CFG 4, on one GPU and split over two (--parallel pipeline, sequence, cfg, and the automatic choice), beside
# diffusers' transformer on one GPU and with Ulysses context parallelism over two, in the same call. Expects
# what run_h200.sh expects: .device/bin.tar.xz (portable binaries) and .whl/ (the diffusers wheel).
#
# Usage: bash bench/run_h200_x2.sh [RES...]   (default: 1328 2048)
# A call may run 600 s and the first one on a machine also writes the 58 GB checkpoint, so give one resolution
# per call: `bash bench/run_h200_x2.sh 1328`, then `bash bench/run_h200_x2.sh 2048`. Whatever no longer fits
# in X2_BUDGET_S (default 570) seconds is skipped and listed in skipped.txt. Results accumulate in
# /tmp/x2-results while the machine stays warm; every call returns all of them (PNGs left out) as
# $OUT/x2_results.tgz, and summary.json beside it: s/step per run and scaling efficiency, single-GPU s/step
# / (2 x two-GPU s/step). X2_CONFIGS picks our runs (default "single pipeline sequence cfg auto"; empty: none),
# X2_REFERENCE=0 skips diffusers, X2_STEPS sets the steps (default 6; s/step is the median after the first).

# NVLink multicast stays off, for NCCL and for PyTorch: setting it up can take a shared host's GPUs out of
# service.
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
set -u
OUT=${OUT:-/tmp/out}
RESULTS=/tmp/x2-results
deadline=$(($(date +%s) + ${X2_BUDGET_S:-570}))
STEPS=${X2_STEPS:-6}
mkdir -p "$OUT" "$RESULTS" /tmp/canvas
tar -C /tmp/canvas -xJf .device/bin.tar.xz
BIN=/tmp/canvas/bin
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
export PYTHONPATH=/tmp/site
# The CUDA runtime libraries come from the machine's PyTorch wheels (cuBLAS, cuDNN, NVRTC, and NCCL, which our
# binaries open at run time through CANVAS_NCCL_LIBRARY).
NVIDIA=$(python3 -c "import nvidia, os; print(os.path.dirname(nvidia.__path__[0]) + '/nvidia')")
NVIDIA_LIBS=$(python3 -c "import os; r='$NVIDIA'; print(':'.join(os.path.join(r, d, 'lib') for d in sorted(os.listdir(r)) if os.path.isdir(os.path.join(r, d, 'lib'))))")
export LD_LIBRARY_PATH=$NVIDIA_LIBS:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
export CANVAS_NCCL_LIBRARY=$NVIDIA/nccl/lib/libnccl.so.2 CANVAS_CACHE_DIR=/tmp/canvas-cache
{
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm --format=csv
  nvidia-smi topo -m
  python3 -c "import torch, diffusers; print('torch', torch.__version__, 'nccl', torch.cuda.nccl.version(), 'diffusers', diffusers.__version__)"
  ls -l "$CANVAS_NCCL_LIBRARY"
} > "$RESULTS/gpu.txt" 2>&1
cat "$RESULTS/gpu.txt"

# within CAP COMMAND...: runs COMMAND under a timeout of CAP seconds or the call's time left, whichever is
# less; skips it (status 124) when under 30 s are left.
within() {
  local cap=$1 left=$((deadline - $(date +%s)))
  shift
  [ "$left" -lt "$cap" ] && cap=$left
  if [ "$cap" -lt 30 ]; then
    echo "skipped, call time spent: $*" | cut -c1-300 | tee -a "$RESULTS/skipped.txt"
    return 124
  fi
  timeout "$cap" "$@"
}

# The complete full-size synthetic model in /tmp/synth-full, written once per machine (as run_h200.sh does).
if [ ! -f /tmp/synth-full/model_index.json ]; then
  start=$(date +%s)
  within 240 "$BIN/canvas-synthetic-checkpoint" --output /tmp/synth-full --shard-gib 5 \
    --tokenizer models/tiny-qwen-image/tokenizer 2>&1 | tail -1
  echo "synthetic checkpoint written in $(($(date +%s) - start)) s"
fi

ours() {  # ours RES CONFIG: one job, its log and PNG, and LABEL.json with s/step and the printed plan
  local res=$1 config=$2 label="ours_${2}_$1" args
  case $config in
    single) args=(--devices 0 --parallel none) ;;
    pipeline) args=(--devices 0,1 --parallel pipeline) ;;
    sequence) args=(--devices 0,1 --parallel sequence) ;;
    cfg) args=(--devices 0,1 --parallel cfg) ;;
    auto) args=(--devices 0,1) ;;
    *) echo "unknown configuration $config" >&2; return 1 ;;
  esac
  rm -f "$RESULTS/$label.png"
  within 240 "$BIN/canvas" generate --model /tmp/synth-full --prompt "a lighthouse at dusk" --width "$res" \
    --height "$res" --steps "$STEPS" --cfg-scale 4 --seed 1 "${args[@]}" --output "$RESULTS/$label.png" \
    > "$RESULTS/$label.log" 2>&1
  echo "$label: exit status $?"
  grep -E "^plan|^  |Time:|rror" "$RESULTS/$label.log" | cut -c1-300
  python3 - "$RESULTS/$label" "$res" "$config" "${args[*]}" > "$RESULTS/$label.json" <<'PY'
import json, os, sys
sys.path.insert(0, "bench")
from png_report import canvas_metadata
base, res, config, args = sys.argv[1:]
log = open(base + ".log", errors="replace").read().splitlines()
run = {"label": os.path.basename(base), "res": int(res), "config": config, "args": args,
       "printed_plan": [line for line in log if line.startswith(("plan", "  "))], "log_tail": log[-5:]}
try:
    meta = canvas_metadata(base + ".png")
    steps = meta["timings_s"]["per_step"]
    steady = sorted(steps[1:] or steps)  # the first step also builds the GEMM and attention plans
    run.update(s_per_step=steady[len(steady) // 2], per_step_s=steps, timings_s=meta["timings_s"],
               memory=meta.get("memory"), plan=meta.get("memory_plan", {}).get("lines"))
except (OSError, SystemExit, KeyError) as error:
    run["error"] = f"{type(error).__name__}: {error}"
print(json.dumps(run, indent=1))
PY
  python3 -c "import json, sys; r = json.load(open(sys.argv[1])); print(r['label'], 's/step', r.get('s_per_step'), r.get('error', ''))" \
    "$RESULTS/$label.json"
}

resolutions=("$@")
[ $# -eq 0 ] && resolutions=(1328 2048)
for res in "${resolutions[@]}"; do
  for config in ${X2_CONFIGS-single pipeline sequence cfg auto}; do ours "$res" "$config"; done
  if [ "${X2_REFERENCE:-1}" != 0 ]; then
    within 300 python3 -m torch.distributed.run --nproc_per_node 2 bench/reference/diffusers_context_parallel.py \
      --res "$res" --txt 128 --reps 5 > "$RESULTS/reference_$res.log" 2>&1
    echo "reference $res: exit status $?"
    grep RESULT "$RESULTS/reference_$res.log" | tee -a "$RESULTS/reference.jsonl" | cut -c1-300
  fi
done

# Scaling efficiency per resolution from every run so far (the latest of each kind).
python3 - "$RESULTS" <<'PY' | tee "$RESULTS/summary.json"
import glob, json, os, sys
results = sys.argv[1]
ours, reference = {}, {}
for path in sorted(glob.glob(f"{results}/ours_*.json"), key=os.path.getmtime):
    try:
        run = json.load(open(path))
        ours[(run["res"], run["config"])] = run
    except ValueError:
        pass
if os.path.exists(f"{results}/reference.jsonl"):
    for line in open(f"{results}/reference.jsonl"):
        run = json.loads(line.split("RESULT ", 1)[1])
        reference[(run["res"], run["mode"])] = run
def efficiency(single, parallel):
    return single / (2 * parallel) if single and parallel else None
summary = {}
for res in sorted({key[0] for key in ours} | {key[0] for key in reference}):
    single = ours.get((res, "single"), {}).get("s_per_step")
    entry = {"ours": {"single_s_per_step": single}}
    for config in ("pipeline", "sequence", "cfg", "auto"):
        s = ours.get((res, config), {}).get("s_per_step")
        entry["ours"][config] = {"s_per_step": s, "scaling_efficiency": efficiency(single, s)}
    one = reference.get((res, "single"), {}).get("fwd_s")
    two = reference.get((res, "ulysses"), {}).get("fwd_s")
    # diffusers' figures are per forward; a CFG step is two of them.
    entry["diffusers"] = {"single_s_per_forward": one, "ulysses_s_per_forward": two,
                          "single_s_per_step": 2 * one if one else None,
                          "ulysses_s_per_step": 2 * two if two else None,
                          "scaling_efficiency": efficiency(one, two)}
    summary[str(res)] = entry
print(json.dumps(summary, indent=1))
PY
cp "$RESULTS/summary.json" "$OUT/"
tar -C /tmp -czf "$OUT/x2_results.tgz" --exclude='*.png' x2-results
