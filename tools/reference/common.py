"""Shared helpers for the Qwen-Image reference harness (tiny_models.py, make_goldens.py).

Everything here runs on the CPU in float32 and is deterministic.
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import numpy as np
import torch

REPO_ROOT = Path(__file__).resolve().parents[2]
TINY_PIPELINE_DIR = REPO_ROOT / "models" / "tiny-qwen-image"
GOLDEN_DIR = REPO_ROOT / "tests" / "golden"


def _default_shared_dir() -> Path:
    # shared/ sits beside the checkout on developer and CI machines; /work/shared on the lead's machine.
    for cand in (REPO_ROOT.parent / "shared", Path("/work/shared")):
        if (cand / "qwen-tokenizer" / "tokenizer.json").exists():
            return cand
    return REPO_ROOT.parent / "shared"


SHARED_TOKENIZER_DIR = Path(os.environ.get("QWEN_TOKENIZER_DIR", _default_shared_dir() / "qwen-tokenizer"))


def setup_determinism() -> None:
    """Call once at start-up: single thread-independent, deterministic CPU float32 math."""
    torch.use_deterministic_algorithms(True)
    torch.set_default_dtype(torch.float32)
    # Fixed thread count so reductions split the same way on every machine.
    torch.set_num_threads(1)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    # Keep the library output quiet (progress bars, advice).
    try:
        from diffusers.utils import logging as dlog

        dlog.set_verbosity_error()
        dlog.disable_progress_bar()
    except Exception:  # pragma: no cover
        pass
    try:
        from transformers.utils import logging as tlog

        tlog.set_verbosity_error()
    except Exception:  # pragma: no cover
        pass


def seed_all(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


# Names of 1-D (or broadcast-shaped) parameters that are norm gains and so belong near 1.
_GAIN_SUFFIXES = ("norm.weight", "gamma", "ln_q.weight", "norm1.weight", "norm2.weight", "norm_q.weight",
                  "norm_k.weight", "norm_added_q.weight", "norm_added_k.weight", "layernorm.weight",
                  "input_layernorm.weight", "post_attention_layernorm.weight", "txt_norm.weight")


def reinit_params(module: torch.nn.Module, seed: int, gain: float = 1.0, bias_std: float = 0.05,
                  gain_param_std: float = 0.1, embedding_std: float = 1.0,
                  overrides: dict[str, float] | None = None) -> None:
    """Re-initialise every parameter with a nonzero random normal, deterministically.

    * matrices / conv kernels: N(0, (gain / sqrt(fan_in))^2) so activations stay O(1)
      (fan_in = numel / out_features);
    * embeddings (name contains "embed_tokens"): N(0, embedding_std^2);
    * norm gains (see _GAIN_SUFFIXES): 1 + N(0, gain_param_std^2);
    * every other 1-D parameter (biases): N(0, bias_std^2).
    `overrides` maps a name suffix to a multiplier applied to the matrix std (e.g. to shrink an output conv).
    Parameters are visited in `named_parameters()` order with one generator, so the result depends only on seed.
    """
    g = torch.Generator("cpu").manual_seed(seed)
    overrides = overrides or {}
    with torch.no_grad():
        for name, p in module.named_parameters():
            shape = p.shape
            if "embed_tokens" in name or name.endswith("addition_t_embedding.weight"):
                v = torch.randn(shape, generator=g, dtype=torch.float32) * embedding_std
            elif name.endswith(_GAIN_SUFFIXES) or (p.dim() >= 1 and p.numel() == shape[0] and name.endswith("weight")
                                                   and "norm" in name):
                v = 1.0 + torch.randn(shape, generator=g, dtype=torch.float32) * gain_param_std
            elif p.numel() == shape[0]:  # 1-D: bias
                v = torch.randn(shape, generator=g, dtype=torch.float32) * bias_std
            else:
                fan_in = p.numel() // shape[0]
                mult = 1.0
                for suf, m in overrides.items():
                    if name.endswith(suf):
                        mult = m
                v = torch.randn(shape, generator=g, dtype=torch.float32) * (gain * mult / fan_in ** 0.5)
            p.copy_(v.to(p.dtype))


def save_golden(folder: Path, tensors: dict[str, torch.Tensor], meta: dict) -> None:
    """Write golden.safetensors (contiguous CPU tensors) and golden.json (sorted keys, 2-space indent)."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    clean = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    save_file(clean, str(folder / "golden.safetensors"), metadata={"format": "pt"})
    with open(folder / "golden.json", "w", encoding="utf-8") as f:
        json.dump(meta, f, indent=2, ensure_ascii=False, sort_keys=True)
        f.write("\n")


def write_json(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2, ensure_ascii=False, sort_keys=True)
        f.write("\n")


def dir_size(path: Path) -> int:
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())


def describe_safetensors(path: Path) -> list[tuple[str, str, list[int]]]:
    """[(name, dtype, shape)] of a safetensors file, in file order (sorted by name)."""
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(n))
    out = []
    for k in sorted(header):
        if k == "__metadata__":
            continue
        out.append((k, header[k]["dtype"], header[k]["shape"]))
    return out


class TorchCpuRandnModel:
    """Pure numpy/python model of torch.randn(..., generator=torch.Generator("cpu").manual_seed(seed),
    dtype=torch.float32) - used to check (and document) what a C++ port must do.

    * one mt19937 stream seeded with init_genrand(seed) (numpy's legacy seeding is the same);
    * numel >= 16 ("vector" path): numel float uniforms u = (draw & 0xFFFFFF) * 2^-24, Box-Muller on blocks of
      16 (out[j] = r cos th, out[j+8] = r sin th, r = sqrt(-2 ln(1 - u[j])), th = 2 pi u[j+8], j < 8) in float32;
      if numel % 16 != 0 the last 16 outputs are recomputed from 16 FRESH uniforms;
    * numel < 16 ("scalar" path): per element, at::normal_distribution<double>: return the cached value if
      there is one, else u1, u2 = 53-bit doubles from two draws each ((hi << 32 | lo) & (2^53 - 1)) * 2^-53,
      r = sqrt(-2 log1p(-u2)), th = 2 pi u1, cache r sin th, return r cos th; cast to float32.
      The cache lives in the generator and survives vector-path calls.
    torch evaluates the vector path with SLEEF vector log/sin/cos, so this model (numpy float32 libm) matches it
    to a few ulp, and the scalar path bit for bit.
    """

    def __init__(self, seed: int):
        bg = np.random.MT19937(0)
        bg._legacy_seeding(seed)
        self._bg = bg
        self._cache: float | None = None

    def _draw(self, n: int) -> np.ndarray:
        return self._bg.random_raw(n).astype(np.uint64)

    def _fill16(self, d: np.ndarray) -> np.ndarray:
        out = d.copy()
        for j in range(8):
            r = np.sqrt(np.float32(-2.0) * np.log(np.float32(1.0) - d[j]))
            th = np.float32(2.0 * np.pi) * d[j + 8]
            out[j] = r * np.cos(th)
            out[j + 8] = r * np.sin(th)
        return out

    def randn(self, shape) -> np.ndarray:
        import math

        n = int(np.prod(shape))
        if n >= 16:
            u = ((self._draw(n) & np.uint64(0xFFFFFF)).astype(np.float64) * 2.0 ** -24).astype(np.float32)
            data = u.copy()
            for i in range(0, n - 15, 16):
                data[i:i + 16] = self._fill16(u[i:i + 16])
            if n % 16:
                tail = ((self._draw(16) & np.uint64(0xFFFFFF)).astype(np.float64) * 2.0 ** -24).astype(np.float32)
                data[n - 16:] = self._fill16(tail)
            return data.reshape(shape)
        out = []
        for _ in range(n):
            if self._cache is not None:
                out.append(self._cache)
                self._cache = None
                continue
            hi1, lo1, hi2, lo2 = (int(x) for x in self._draw(4))
            u1 = (((hi1 << 32) | lo1) & ((1 << 53) - 1)) * 2.0 ** -53
            u2 = (((hi2 << 32) | lo2) & ((1 << 53) - 1)) * 2.0 ** -53
            r = math.sqrt(-2.0 * math.log1p(-u2))
            th = 2.0 * math.pi * u1
            self._cache = r * math.sin(th)
            out.append(r * math.cos(th))
        return np.array(out, dtype=np.float32).reshape(shape)
