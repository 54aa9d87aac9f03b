"""Reference baseline for serving: diffusers' QwenImagePipeline loaded once and kept on the device, as a
diffusers-based server holds it, making one image after another. Prints `RESULT {json}` with the load and
placement times, the first image's time and the images per minute over --jobs warm images (each its own
seed), end to end (prompt encoding, steps, decode, PIL image).

  python3 bench/reference/diffusers_serve_bench.py --model /tmp/synth-full --jobs 10 --size 1024 --steps 8
"""
import argparse
import json
import os
import sys
import time

if os.environ.get("DIFFUSERS_SRC"):
    sys.path.insert(0, os.environ["DIFFUSERS_SRC"])
import torch  # noqa: E402

p = argparse.ArgumentParser()
p.add_argument("--model", default="/tmp/synth-full")
p.add_argument("--jobs", type=int, default=10)
p.add_argument("--size", type=int, default=1024)
p.add_argument("--steps", type=int, default=8)
p.add_argument("--cfg-scale", type=float, default=1.0)
p.add_argument("--prompt", default="a lighthouse on a cliff at dusk, watercolor")
a = p.parse_args()

import diffusers  # noqa: E402
import transformers  # noqa: E402
from diffusers import QwenImagePipeline  # noqa: E402

device = torch.device("cuda")
start = time.perf_counter()
pipe = QwenImagePipeline.from_pretrained(a.model, torch_dtype=torch.bfloat16)
load_s = time.perf_counter() - start
start = time.perf_counter()
pipe.to(device)
torch.cuda.synchronize()
to_device_s = time.perf_counter() - start


def image(seed):
    start = time.perf_counter()
    pipe(prompt=a.prompt, width=a.size, height=a.size, num_inference_steps=a.steps, true_cfg_scale=a.cfg_scale,
         generator=torch.Generator("cpu").manual_seed(seed))
    torch.cuda.synchronize()
    return time.perf_counter() - start


first_s = image(0)
start = time.perf_counter()
each = [image(seed) for seed in range(1, a.jobs + 1)]
total = time.perf_counter() - start
print("RESULT " + json.dumps({
    "tool": "diffusers", "config": f"serve_{a.size}", "model": a.model, "steps": a.steps, "size": a.size,
    "cfg_scale": a.cfg_scale, "jobs": a.jobs, "load_host_s": load_s, "to_device_s": to_device_s,
    "first_image_s": first_s, "image_s": each, "jobs_per_minute": 60 * a.jobs / total,
    "device_peak_gib": torch.cuda.max_memory_allocated() / (1 << 30), "gpu": torch.cuda.get_device_name(),
    "torch": torch.__version__, "diffusers": diffusers.__version__, "transformers": transformers.__version__}),
    flush=True)
