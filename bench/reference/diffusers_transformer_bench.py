"""(Copied from the project's shared/reference-bench/ so it travels with the repo to the GPU host.)
Reference baseline: diffusers' QwenImageTransformer2DModel (random bf16 weights, full 20B config)
timed on one GPU, unconstrained and under a VRAM ballast that leaves BUDGET_GIB free.
Run on a CUDA machine with diffusers importable (a carried wheel, or DIFFUSERS_SRC=an unpacked src/).
Modes: h2d, full, fp8_layerwise, group_block, group_leaf, sequential. Prints one line: RESULT {json}."""
import json, os, sys, time, argparse
if os.environ.get("DIFFUSERS_SRC"): sys.path.insert(0, os.environ["DIFFUSERS_SRC"])
import torch
from qwen_transformer_setup import build as build_model, inputs as make_inputs

GiB = 1 << 30
p = argparse.ArgumentParser()
p.add_argument("--mode", required=True)
p.add_argument("--res", type=int, default=1024)
p.add_argument("--txt", type=int, default=128)
p.add_argument("--budget", type=float, default=24.0)
p.add_argument("--reps", type=int, default=3)
p.add_argument("--layers", type=int, default=60)
a = p.parse_args()
dev = torch.device("cuda")


def ballast():
    free, total = torch.cuda.mem_get_info()
    take = free - int(a.budget * GiB)
    return torch.empty(take, dtype=torch.uint8, device=dev) if take > 0 else None

def timeit(m, kw):
    with torch.no_grad():
        t0 = time.time(); m(**kw); torch.cuda.synchronize(); first = time.time() - t0
        ts = []
        for _ in range(a.reps):
            s, e = torch.cuda.Event(True), torch.cuda.Event(True)
            s.record(); m(**kw); e.record(); torch.cuda.synchronize(); ts.append(s.elapsed_time(e) / 1000)
    ts.sort()
    return first, ts[len(ts) // 2]

res = dict(mode=a.mode, res=a.res, txt=a.txt, layers=a.layers)
try:
    if a.mode == "h2d":
        n = 4 * GiB
        for pinned in (False, True):
            h = torch.empty(n, dtype=torch.uint8, pin_memory=pinned); h.fill_(1)
            d = torch.empty(n, dtype=torch.uint8, device=dev)
            d.copy_(h); torch.cuda.synchronize()
            t0 = time.time(); d.copy_(h, non_blocking=pinned); torch.cuda.synchronize()
            res["h2d_GBps_pinned" if pinned else "h2d_GBps_pageable"] = n / (time.time() - t0) / 1e9
        del h, d
    elif a.mode in ("full", "fp8_layerwise"):
        m = build_model(dev, a.layers)
        res["params"] = sum(t.numel() for t in m.parameters())
        if a.mode == "fp8_layerwise":
            m.enable_layerwise_casting(storage_dtype=torch.float8_e4m3fn, compute_dtype=torch.bfloat16)
        torch.cuda.reset_peak_memory_stats()
        res["weights_GiB_on_gpu"] = torch.cuda.memory_allocated() / GiB
        res["first_s"], res["fwd_s"] = timeit(m, make_inputs(dev, a.res, a.txt))
        res["peak_GiB"] = torch.cuda.max_memory_allocated() / GiB
    elif a.mode.startswith("group_") or a.mode == "sequential":
        from diffusers.hooks import apply_group_offloading
        m = build_model(dev, a.layers).to("cpu")
        torch.cuda.empty_cache()
        b = ballast()
        t0 = time.time()
        if a.mode == "group_block":
            apply_group_offloading(m, onload_device=dev, offload_device=torch.device("cpu"),
                                   offload_type="block_level", num_blocks_per_group=1, use_stream=True)
        elif a.mode == "group_leaf":
            apply_group_offloading(m, onload_device=dev, offload_device=torch.device("cpu"),
                                   offload_type="leaf_level", use_stream=True)
        elif a.mode == "sequential":
            from accelerate import cpu_offload
            cpu_offload(m, execution_device=dev)
        res["setup_s"] = time.time() - t0
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        res["first_s"], res["fwd_s"] = timeit(m, make_inputs(dev, a.res, a.txt))
        res["peak_GiB_excl_ballast"] = (torch.cuda.max_memory_allocated() - base) / GiB
except Exception as ex:
    res["error"] = f"{type(ex).__name__}: {str(ex)[:300]}"
print("RESULT " + json.dumps(res), flush=True)
