"""Writes a random LoRA for a full-size Qwen-Image transformer, in the key style of the published lightx2v
Qwen-Image-Lightning files: `transformer_blocks.N.<module>.lora_down.weight` [rank, in] and `.lora_up.weight`
[out, rank] in bf16, with a scalar `.alpha`, on every linear layer of every block (attention, feed-forwards
and the two modulations). Rank 64 with alpha 8 by default, as those files have. The sizes come from the
model folder's transformer/config.json, so the file fits the synthetic checkpoint it is made for.

  python3 bench/reference/make_bench_lora.py --model /tmp/synth-full --output /tmp/bench-lora.safetensors
"""
import argparse
import json
import os
import time

import torch
from safetensors.torch import save_file

p = argparse.ArgumentParser()
p.add_argument("--model", default="/tmp/synth-full")
p.add_argument("--output", default="/tmp/bench-lora.safetensors")
p.add_argument("--rank", type=int, default=64)
p.add_argument("--alpha", type=float, default=8.0)
p.add_argument("--seed", type=int, default=7)
a = p.parse_args()

config = json.load(open(os.path.join(a.model, "transformer", "config.json")))
dim = config["num_attention_heads"] * config["attention_head_dim"]
modules = {name: (dim, dim) for name in ("attn.to_q", "attn.to_k", "attn.to_v", "attn.to_out.0", "attn.add_q_proj",
                                         "attn.add_k_proj", "attn.add_v_proj", "attn.to_add_out")}
modules.update({"img_mlp.net.0.proj": (dim, 4 * dim), "img_mlp.net.2": (4 * dim, dim),
                "txt_mlp.net.0.proj": (dim, 4 * dim), "txt_mlp.net.2": (4 * dim, dim),
                "img_mod.1": (dim, 6 * dim), "txt_mod.1": (dim, 6 * dim)})
begin = time.perf_counter()
generator = torch.Generator().manual_seed(a.seed)
tensors = {}
for block in range(config["num_layers"]):
    for module, (in_features, out_features) in modules.items():
        key = f"transformer_blocks.{block}.{module}"
        down = torch.randn(a.rank, in_features, generator=generator) / in_features ** 0.5
        up = torch.randn(out_features, a.rank, generator=generator) * 0.02
        tensors[key + ".lora_down.weight"] = down.to(torch.bfloat16)
        tensors[key + ".lora_up.weight"] = up.to(torch.bfloat16)
        tensors[key + ".alpha"] = torch.tensor(a.alpha, dtype=torch.float32)
save_file(tensors, a.output)
count = sum(t.numel() for t in tensors.values())
print(f"wrote {a.output}: {len(tensors)} tensors, {count / 1e6:.0f} M parameters, "
      f"{os.path.getsize(a.output) / 2**30:.2f} GiB in {time.perf_counter() - begin:.1f} s", flush=True)
