"""Reference for the two-GPU benchmark: diffusers' QwenImageTransformer2DModel (random bf16 weights, full 20B
config) timed per forward on one GPU, then with Ulysses context parallelism over every GPU of the torchrun job
(ContextParallelConfig(ulysses_degree=WORLD_SIZE), transformer.enable_parallelism: each GPU holds all weights
and a 1/N slice of the sequence). Model and inputs come from qwen_transformer_setup.py, as for diffusers_transformer_bench.py.
Run: torchrun --nproc_per_node 2 diffusers_context_parallel.py --res 1328
Rank 0 prints one line per mode: RESULT {json}, with fwd_s the median wall time of a forward across all ranks."""
import argparse
import json
import os
import sys
import time

if os.environ.get("DIFFUSERS_SRC"): sys.path.insert(0, os.environ["DIFFUSERS_SRC"])
import torch
import torch.distributed as dist
from diffusers import ContextParallelConfig
from qwen_transformer_setup import build, inputs

GiB = 1 << 30
p = argparse.ArgumentParser()
p.add_argument("--res", type=int, default=1328)
p.add_argument("--txt", type=int, default=128)
p.add_argument("--reps", type=int, default=5)
p.add_argument("--layers", type=int, default=60)
a = p.parse_args()

rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
dev = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
torch.cuda.set_device(dev)
dist.init_process_group("nccl", device_id=dev)




def timed_forward(m, kw, ranks):
    """Wall time of one forward started together on every rank (the others wait), the slowest rank's."""
    torch.cuda.synchronize(); dist.barrier(); torch.cuda.synchronize()
    t0 = time.perf_counter()
    if rank in ranks:
        m(**kw)
    torch.cuda.synchronize()
    took = torch.tensor([time.perf_counter() - t0], device=dev)
    dist.all_reduce(took, op=dist.ReduceOp.MAX)
    return took.item()


def measure(m, kw, mode, ranks, **extra):
    res = dict(mode=mode, res=a.res, txt=a.txt, layers=a.layers, gpus=len(ranks), **extra)
    try:
        torch.cuda.reset_peak_memory_stats()
        with torch.no_grad():
            res["first_s"] = timed_forward(m, kw, ranks)
            ts = sorted(timed_forward(m, kw, ranks) for _ in range(a.reps))
        res["fwd_s"] = ts[len(ts) // 2]
        res["fwd_s_all"] = ts
        res["peak_GiB_rank0"] = torch.cuda.max_memory_allocated() / GiB
    except Exception as ex:
        res["error"] = f"{type(ex).__name__}: {str(ex)[:300]}"
    if rank == 0:
        print("RESULT " + json.dumps(res), flush=True)


m = build(dev, a.layers)
kw = inputs(dev, a.res, a.txt, torch.Generator(device=dev).manual_seed(1))  # the same inputs on every rank
measure(m, kw, "single", ranks={0})
# Plain Ulysses needs the image and text sequences to split evenly; 1328² has 83² = 6889 image tokens.
uneven = any(n % world for n in ((a.res // 16) ** 2, a.txt))
try:
    m.enable_parallelism(config=ContextParallelConfig(ulysses_degree=world, ulysses_anything=uneven))
    measure(m, kw, "ulysses", ranks=set(range(world)), ulysses_degree=world, ulysses_anything=uneven)
except Exception as ex:
    if rank == 0:
        print("RESULT " + json.dumps(dict(mode="ulysses", res=a.res, error=f"{type(ex).__name__}: {str(ex)[:300]}")),
              flush=True)
dist.destroy_process_group()
