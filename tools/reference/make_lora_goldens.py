#!/usr/bin/env python3
"""LoRA and Lightning reference (issue 16, item 4): LoRA files in six key styles and whole-pipeline goldens.

    python3 tools/reference/make_lora_goldens.py           # tests/golden/lora/
    python3 tools/reference/make_lora_goldens.py --check   # regenerate into a temp dir, compare byte for byte

tests/golden/lora/loras/ holds small random LoRA files for the tiny transformers, one per key style
(diffusers/PEFT with lora_adapter_metadata, kohya lora_unet_, lightx2v Lightning, ComfyUI diffusion_model. with
lora_A/lora_B and alpha, LyCORIS lycoris_ with full .diff weights, and a bf16 lightx2v file with the
diffusion_model. prefix for the edit transformer). tests/golden/lora/<case>/ holds one pipeline call each
(text-to-image on models/tiny-qwen-image, one QwenImageEditPlusPipeline call on models/tiny-qwen-image-edit),
with the Lightning scheduler for three of them. tests/golden/lora/README.md, written here too, documents every
file, key, scale rule and tensor.

The generator reads every LoRA file with its own small parser (the rules the README states), merges it into the
transformer's weights by hand and checks that the merged pipeline matches diffusers' run-time LoRA (and diffusers'
fuse_lora weights) for every file diffusers can load; the LyCORIS file, which diffusers cannot load, gets its
goldens from that hand merge alone.
"""

from __future__ import annotations

import argparse
import contextlib
import filecmp
import json
import math
import os
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO_ROOT, describe_safetensors, save_golden, setup_determinism, write_json  # noqa: E402
from make_edit_goldens import load_pipeline as load_edit_pipeline, reduced_areas  # noqa: E402
from make_vision_goldens import picture  # noqa: E402

TEXT_TO_IMAGE_MODEL = "models/tiny-qwen-image"
EDIT_MODEL = "models/tiny-qwen-image-edit"
GOLDENS = "tests/golden/lora"
LORA_FOLDER = "loras"
EDIT_PLUS = "QwenImageEditPlusPipeline"

# Every Linear of a QwenImageTransformerBlock, and the transformer's top-level Linears (diffusers names).
BLOCK_MODULES = ("attn.to_q", "attn.to_k", "attn.to_v", "attn.to_out.0", "attn.add_q_proj", "attn.add_k_proj",
                 "attn.add_v_proj", "attn.to_add_out", "img_mlp.net.0.proj", "img_mlp.net.2", "txt_mlp.net.0.proj",
                 "txt_mlp.net.2", "img_mod.1", "txt_mod.1")
TOP_LEVEL_MODULES = ("img_in", "txt_in", "proj_out", "norm_out.linear", "time_text_embed.timestep_embedder.linear_1",
                     "time_text_embed.timestep_embedder.linear_2")
NUM_LAYERS = 2

# The scheduler of the Qwen-Image-Lightning recipes (ModelTC/Qwen-Image-Lightning generate_with_diffusers.py and
# the diffusers Qwen-Image docs): shift 3 as a constant mu = log(3), no terminal stretch.
LIGHTNING_SCHEDULER = {
    "base_image_seq_len": 256, "base_shift": math.log(3), "invert_sigmas": False, "max_image_seq_len": 8192,
    "max_shift": math.log(3), "num_train_timesteps": 1000, "shift": 1.0, "shift_terminal": None,
    "stochastic_sampling": False, "time_shift_type": "exponential", "use_beta_sigmas": False,
    "use_dynamic_shifting": True, "use_exponential_sigmas": False, "use_karras_sigmas": False,
}


def blocks(modules) -> list[str]:
    return [f"transformer_blocks.{i}.{m}" for i in range(NUM_LAYERS) for m in modules]


ATTENTION_AND_MLP = tuple(m for m in BLOCK_MODULES if not m.endswith("_mod.1"))
LYCORIS_DIFF = ("transformer_blocks.0.attn.to_k", "transformer_blocks.1.img_mlp.net.2", "proj_out")
LYCORIS_DIFF_BIAS = ("transformer_blocks.0.attn.to_k", "transformer_blocks.1.img_mlp.net.2")
COMFY_WITHOUT_ALPHA = tuple(blocks(("img_mod.1", "txt_mod.1")))

# name: style, model it fits, LoRA modules, rank (per module where it varies), alpha (None: no alpha for that
# module), seed, gain (the typical relative size of the low-rank output against the layer's own), dtype.
LORAS = {
    "peft": dict(
        style="peft", model=TEXT_TO_IMAGE_MODEL, modules=blocks(BLOCK_MODULES) + list(TOP_LEVEL_MODULES), rank=4,
        alpha=6, seed=1601, gain=0.5, dtype=torch.float32,
        note="diffusers / PEFT: QwenImagePipeline.save_lora_weights of a PEFT adapter (as the diffusers training "
             "scripts save it): `transformer.<module>.lora_A.weight` [r, in] and `.lora_B.weight` [out, r]; r and "
             "lora_alpha only in the safetensors header's `lora_adapter_metadata` JSON (keys `transformer.r`, "
             "`transformer.lora_alpha`, ...); every Linear of both blocks and the six top-level Linears"),
    "kohya": dict(
        style="kohya", model=TEXT_TO_IMAGE_MODEL, modules=blocks(BLOCK_MODULES) + list(TOP_LEVEL_MODULES),
        rank={**{m: 4 for m in blocks(BLOCK_MODULES)}, **{m: 2 for m in TOP_LEVEL_MODULES}},
        alpha={**{m: 2.0 for m in blocks(BLOCK_MODULES)}, **{m: 3.0 for m in TOP_LEVEL_MODULES}}, seed=1602,
        gain=0.5, dtype=torch.float32,
        note="kohya-ss / musubi-tuner: `lora_unet_<module with dots as underscores>.lora_down.weight` [r, in], "
             "`.lora_up.weight` [out, r], `.alpha` (0-d F32); blocks rank 4 alpha 2, top-level rank 2 alpha 3"),
    "lightx2v": dict(
        style="lightx2v", model=TEXT_TO_IMAGE_MODEL, modules=blocks(ATTENTION_AND_MLP), rank=8, alpha=1.0,
        seed=1603, gain=1.0, dtype=torch.float32,
        note="the key style of lightx2v's Qwen-Image-Lightning files (as diffusers' loader, huggingface/diffusers"
             "#12119, and ModelTC/Qwen-Image-Lightning's generate_with_diffusers.py read them): diffusers module "
             "names without prefix, `transformer_blocks.<i>.<module>.lora_down.weight`, `.lora_up.weight`, `.alpha` "
             "(0-d); rank 8 alpha 1, the alpha / rank = 1/8 of the published files (rank 64, alpha 8, as reported "
             "in sgl-project/sglang#17086); here the attention and MLP Linears of every block"),
    "comfy_ab_alpha": dict(
        style="comfy", model=TEXT_TO_IMAGE_MODEL, modules=blocks(BLOCK_MODULES) + ["img_in", "proj_out"], rank=4,
        alpha={m: (None if m in COMFY_WITHOUT_ALPHA else 3.0) for m in blocks(BLOCK_MODULES) + ["img_in",
                                                                                                 "proj_out"]},
        seed=1604, gain=0.5, dtype=torch.float32,
        note="ComfyUI-style: `diffusion_model.<module>.lora_A.weight`, `.lora_B.weight` and `.alpha`; rank 4 alpha "
             "3, except the img_mod.1 / txt_mod.1 modules, which have NO alpha (scale alpha / rank = 1 there)"),
    "lycoris_diff": dict(
        style="lycoris", model=TEXT_TO_IMAGE_MODEL,
        modules=blocks(("attn.to_q", "attn.to_out.0", "attn.add_v_proj", "img_mlp.net.0.proj", "img_mod.1",
                        "txt_mod.1")) + ["txt_in"], rank=4, alpha=8.0, seed=1605, gain=0.7,
        dtype=torch.float32, diff=LYCORIS_DIFF, diff_bias=LYCORIS_DIFF_BIAS, diff_gain=0.3,
        note="LyCORIS LoCon: `lycoris_<module with dots as underscores>.lora_down.weight`, `.lora_up.weight`, "
             "`.alpha` (rank 4 alpha 8), and full differences `lycoris_<module>.diff` [out, in] (+ `.diff_b` [out] "
             "for two of them) for three modules; diffusers 0.42.1 cannot load it"),
    "edit_lightx2v_bf16": dict(
        style="lightx2v_prefixed", model=EDIT_MODEL, modules=blocks(BLOCK_MODULES) + ["img_in", "proj_out"],
        rank=8, alpha=1.0, seed=1606, gain=0.5, dtype=torch.bfloat16,
        note="for the edit transformer (width 24): lightx2v names with the `diffusion_model.` prefix (which "
             "generate_with_diffusers.py also accepts), `diffusion_model.<module>.lora_down.weight`, "
             "`.lora_up.weight`, `.alpha`, every tensor BF16 (lightx2v also publishes *-bf16.safetensors files); "
             "rank 8 alpha 1 (alpha / rank = 1/8, exact in bf16); every Linear of both blocks, img_in, proj_out"),
}


def per_module(value, module: str):
    return value[module] if isinstance(value, dict) else value


# ---------------------------------------------------------------------------------------------
# LoRA factors and files
# ---------------------------------------------------------------------------------------------
def linear_shapes(transformer) -> dict[str, tuple[int, int]]:
    return {name: tuple(m.weight.shape) for name, m in transformer.named_modules() if isinstance(m, torch.nn.Linear)}


def make_factors(spec: dict, shapes: dict) -> dict[str, dict]:
    """Random factors, deterministic in the spec's seed: down ~ N(0, 1/in) (its output O(1) for O(1) inputs) and
    up ~ N(0, (gain * sqrt(r) / alpha)^2), so the scaled low-rank output alpha/r * up(down x) has about `gain` times
    the size of the layer's own output: every LoRA moves the pipeline clearly. Values are rounded to the file's
    dtype here, so the files hold exactly these numbers."""
    g = torch.Generator("cpu").manual_seed(spec["seed"])
    factors = {}
    for module in spec["modules"]:
        out_features, in_features = shapes[module]
        rank, alpha = per_module(spec["rank"], module), per_module(spec["alpha"], module)
        effective_alpha = rank if alpha is None else alpha
        down = torch.randn((rank, in_features), generator=g) / math.sqrt(in_features)
        up = torch.randn((out_features, rank), generator=g) * (spec["gain"] * math.sqrt(rank) / effective_alpha)
        factors[module] = dict(down=down.to(spec["dtype"]), up=up.to(spec["dtype"]), alpha=alpha)
    for module in spec.get("diff", ()):
        out_features, in_features = shapes[module]
        diff = torch.randn((out_features, in_features), generator=g) * (spec["diff_gain"] / math.sqrt(in_features))
        entry = dict(diff=diff.to(spec["dtype"]))
        if module in spec["diff_bias"]:
            entry["diff_b"] = (torch.randn((out_features,), generator=g) * 0.05).to(spec["dtype"])
        factors[module] = entry
    return factors


def flat(module: str) -> str:
    return module.replace(".", "_")


def write_lora(root: Path, name: str, spec: dict, factors: dict) -> None:
    """The file loras/<name>.safetensors in the spec's key style."""
    from safetensors.torch import save_file

    folder = root / GOLDENS / LORA_FOLDER
    style = spec["style"]
    if style == "peft":
        write_peft(root, name, spec, factors)
        return
    prefix, down_key, up_key = {
        "kohya": ("lora_unet_{flat}", "lora_down", "lora_up"),
        "lightx2v": ("{dotted}", "lora_down", "lora_up"),
        "comfy": ("diffusion_model.{dotted}", "lora_A", "lora_B"),
        "lycoris": ("lycoris_{flat}", "lora_down", "lora_up"),
        "lightx2v_prefixed": ("diffusion_model.{dotted}", "lora_down", "lora_up"),
    }[style]
    tensors = {}
    for module, f in factors.items():
        stem = prefix.format(flat=flat(module), dotted=module)
        if "diff" in f:
            tensors[f"{stem}.diff"] = f["diff"]
            if "diff_b" in f:
                tensors[f"{stem}.diff_b"] = f["diff_b"]
            continue
        tensors[f"{stem}.{down_key}.weight"] = f["down"]
        tensors[f"{stem}.{up_key}.weight"] = f["up"]
        if f["alpha"] is not None:
            tensors[f"{stem}.alpha"] = torch.tensor(f["alpha"], dtype=spec["dtype"])  # 0-d
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(folder / f"{name}.safetensors"),
              metadata={"format": "pt"})


def write_peft(root: Path, name: str, spec: dict, factors: dict) -> None:
    """The diffusers training scripts' way: a PEFT adapter on the transformer, its get_peft_model_state_dict and
    LoraConfig.to_dict() handed to QwenImagePipeline.save_lora_weights (sets written as sorted lists, so the
    header is the same on every run)."""
    from diffusers import QwenImagePipeline, QwenImageTransformer2DModel
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    transformer = QwenImageTransformer2DModel.from_pretrained(str(root / spec["model"] / "transformer"),
                                                              torch_dtype=torch.float32)
    config = LoraConfig(r=spec["rank"], lora_alpha=spec["alpha"], target_modules=list(spec["modules"]),
                        init_lora_weights=True)
    transformer.add_adapter(config, adapter_name="default")
    modules = dict(transformer.named_modules())
    with torch.no_grad():
        for module, f in factors.items():
            modules[module].lora_A["default"].weight.copy_(f["down"])
            modules[module].lora_B["default"].weight.copy_(f["up"])
    state = get_peft_model_state_dict(transformer, adapter_name="default")
    assert sorted(state) == sorted(f"{m}.lora_{ab}.weight" for m in factors for ab in "AB"), sorted(state)
    metadata = {k: (sorted(v) if isinstance(v, set) else v) for k, v in transformer.peft_config["default"].to_dict()
                .items()}
    QwenImagePipeline.save_lora_weights(str(root / GOLDENS / LORA_FOLDER), transformer_lora_layers=state,
                                        weight_name=f"{name}.safetensors", transformer_lora_adapter_metadata=metadata)
    sort_header_metadata(root / GOLDENS / LORA_FOLDER / f"{name}.safetensors")


def sort_header_metadata(path: Path) -> None:
    """safetensors writes the header's __metadata__ map in hash order, which changes from run to run once it has
    two entries: rewrite the header with the entries sorted (same JSON, same tensor data)."""
    raw = path.read_bytes()
    size = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8:8 + size])
    header = {"__metadata__": dict(sorted(header.pop("__metadata__").items())), **header}
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # the data section stays 8-byte aligned, as safetensors pads it
    path.write_bytes(len(text).to_bytes(8, "little") + text + raw[8 + size:])


# ---------------------------------------------------------------------------------------------
# The independent reader: the rules of the README
# ---------------------------------------------------------------------------------------------
KEY_PREFIXES = ("transformer.", "diffusion_model.", "lora_unet_", "lycoris_")
KEY_SUFFIXES = {".lora_down.weight": "down", ".lora_A.weight": "down", ".lora_up.weight": "up",
                ".lora_B.weight": "up", ".alpha": "alpha", ".diff_b": "diff_b", ".diff": "diff"}


def read_lora(path: Path, module_names) -> dict[str, dict]:
    """{diffusers module: {down, up, alpha, rank} or {diff, diff_b}} from any of the files' key styles: strip one
    prefix, split off the suffix, map a flattened name (dots as underscores) back through the model's own module
    names. Tensors are returned as float64. PEFT files take r and lora_alpha from the header metadata; the others
    take alpha per module (absent: alpha = rank)."""
    from safetensors import safe_open

    flattened = {flat(m): m for m in module_names}
    assert len(flattened) == len(module_names), "flattened names must be unique"
    entries: dict[str, dict] = {}
    with safe_open(str(path), framework="pt") as f:
        header = f.metadata() or {}
        for key in f.keys():
            stem = key
            for prefix in KEY_PREFIXES:
                if stem.startswith(prefix):
                    stem = stem[len(prefix):]
                    break
            suffix = next(s for s in KEY_SUFFIXES if stem.endswith(s))
            stem = stem[:-len(suffix)]
            module = stem if stem in module_names else flattened[stem]
            entries.setdefault(module, {})[KEY_SUFFIXES[suffix]] = f.get_tensor(key).double()
    peft_metadata = json.loads(header["lora_adapter_metadata"]) if "lora_adapter_metadata" in header else None
    for module, e in entries.items():
        if "down" not in e:
            assert set(e) <= {"diff", "diff_b"}, (module, set(e))
            continue
        e["rank"] = e["down"].shape[0]
        if peft_metadata is not None:  # one r and lora_alpha for every module (the patterns are empty here)
            assert not peft_metadata["transformer.alpha_pattern"] and not peft_metadata["transformer.rank_pattern"]
            assert peft_metadata["transformer.r"] == e["rank"]
            e["alpha"] = float(peft_metadata["transformer.lora_alpha"])
        else:
            e["alpha"] = float(e["alpha"].item()) if "alpha" in e else float(e["rank"])
    return entries


def weight_deltas(loras: list[tuple[dict, float]], ignore_alpha: bool = False) -> dict[str, dict]:
    """{module: {"weight": dW, "bias": db}} (float64) of LoRAs at their adapter weights: dW = weight * alpha / rank
    * up @ down, or weight * diff (and weight * diff_b). ignore_alpha: alpha = rank (what a port that drops the
    alphas would compute)."""
    deltas: dict[str, dict] = {}
    for entries, scale in loras:
        for module, e in entries.items():
            d = deltas.setdefault(module, {})
            if "down" in e:
                ratio = 1.0 if ignore_alpha else e["alpha"] / e["rank"]
                d["weight"] = d.get("weight", 0) + scale * ratio * (e["up"] @ e["down"])
            else:
                d["weight"] = d.get("weight", 0) + scale * e["diff"]
                if "diff_b" in e:
                    d["bias"] = d.get("bias", 0) + scale * e["diff_b"]
    return deltas


@contextlib.contextmanager
def merged(transformer, deltas: dict):
    """The transformer with W + dW (and b + db) in float32 (sum formed in float64, rounded once)."""
    modules = dict(transformer.named_modules())
    saved = {}
    with torch.no_grad():
        for module, d in deltas.items():
            for what, delta in d.items():
                parameter = getattr(modules[module], what)
                saved[(module, what)] = parameter.detach().clone()
                parameter.copy_((parameter.double() + delta).float())
    try:
        yield
    finally:
        with torch.no_grad():
            for (module, what), value in saved.items():
                getattr(modules[module], what).copy_(value)


# ---------------------------------------------------------------------------------------------
# Cases
# ---------------------------------------------------------------------------------------------
CASES = {
    "a_peft_64x64": dict(
        loras=[("peft", 1.0)], width=64, height=64, steps=4, seed=41, prompt="a red lighthouse on a rocky coast",
        negative_prompt=None, true_cfg_scale=1.0, lightning=False,
        note="the diffusers/PEFT file at adapter weight 1 (scale lora_alpha / r = 1.5 from the header metadata); "
             "no CFG"),
    "b_kohya_80x48_cfg": dict(
        loras=[("kohya", 0.8)], width=80, height=48, steps=4, seed=42, prompt="a watercolor fox in a snowy forest",
        negative_prompt="blurry, low quality", true_cfg_scale=4.0, lightning=False,
        note="the kohya file at adapter weight 0.8, with CFG (the LoRA acts on both the positive and the negative "
             "prediction); non-square 80x48; ranks 4 and 2, alphas 2 and 3"),
    "c_comfy_48x64": dict(
        loras=[("comfy_ab_alpha", 1.3)], width=48, height=64, steps=3, seed=43, prompt="a bowl of ripe cherries",
        negative_prompt=None, true_cfg_scale=1.0, lightning=False,
        note="the ComfyUI-style lora_A/lora_B + alpha file at adapter weight 1.3 (above 1); portrait 48x64, "
             "3 steps, no CFG"),
    "d_lycoris_64x48": dict(
        loras=[("lycoris_diff", 0.75)], width=64, height=48, steps=4, seed=44, prompt="an old stone bridge at dawn",
        negative_prompt=None, true_cfg_scale=1.0, lightning=False,
        note="the LyCORIS file at weight 0.75: diffusers cannot load it, so the goldens come from the plain "
             "pipeline with W += 0.75 * alpha / rank * up @ down on the LoCon modules and W += 0.75 * diff, "
             "b += 0.75 * diff_b on the full ones, merged by hand"),
    "e_two_loras_64x64": dict(
        loras=[("peft", 0.7), ("kohya", 0.4)], width=64, height=64, steps=4, seed=45,
        prompt="a glass teapot on a wooden table", negative_prompt=None, true_cfg_scale=1.0, lightning=False,
        note="two adapters at once: set_adapters(['peft', 'kohya'], adapter_weights=[0.7, 0.4]); both deltas add"),
    "f_lightning_4steps_64x64": dict(
        loras=[("lightx2v", 1.0)], width=64, height=64, steps=4, seed=46,
        prompt="a tiny astronaut hatching from an egg on the moon", negative_prompt=" ", true_cfg_scale=1.0,
        lightning=True,
        note="the Qwen-Image-Lightning recipe: the lightx2v-style file at weight 1, the Lightning scheduler "
             "(constant mu = log 3, no shift_terminal), true_cfg_scale 1 with negative prompt ' ' (so no CFG), "
             "4 steps"),
    "g_lightning_8steps_96x64": dict(
        loras=[("lightx2v", 1.0)], width=96, height=64, steps=8, seed=47,
        prompt="a neon-lit street in the rain, cinematic composition", negative_prompt=" ", true_cfg_scale=1.0,
        lightning=True, note="the Lightning recipe at 8 steps, 96x64"),
    "h_edit_plus_lightning": dict(
        loras=[("edit_lightx2v_bf16", 0.9)], pipeline=EDIT_PLUS, pictures=[(150, 100)], width=None, height=None,
        steps=4, seed=48, prompt="Make the sky purple and add a small red boat.", negative_prompt=None,
        true_cfg_scale=1.0, lightning=True, condition_area=128 * 72, vae_area=96 * 64, output_area=64 * 64,
        note="QwenImageEditPlusPipeline on the tiny Qwen-Image-Edit-2511-style model (zero_cond_t) with the bf16 "
             "diffusion_model.-prefixed lightx2v-style file at weight 0.9 and the Lightning scheduler, one "
             "150x100 picture, no CFG; the pipeline's areas patched as in tests/golden/edit/ (condition 128*72, "
             "VAE 96*64, output 64*64 -> 64x64)"),
}
# Weights whose merged values (base + every LoRA of the case at its weight) golden.safetensors carries, when the
# case's LoRAs change them: a block attention projection, a block MLP output, a top-level input and output layer,
# a LyCORIS full-difference module.
MERGED_PROBES = ("transformer_blocks.0.attn.to_q", "transformer_blocks.1.txt_mlp.net.2", "img_in", "proj_out",
                 "transformer_blocks.0.attn.to_k")


def relative_change(new: torch.Tensor, ref: torch.Tensor) -> float:
    return ((new.double() - ref.double()).norm() / ref.double().norm()).item()


def figure(value: float) -> float:
    return float(f"{value:.4g}")


def load_case_pipeline(root: Path, spec: dict):
    from diffusers import FlowMatchEulerDiscreteScheduler, QwenImagePipeline

    if spec.get("pipeline") == EDIT_PLUS:
        pipe = load_edit_pipeline(root / EDIT_MODEL)
    else:
        pipe = QwenImagePipeline.from_pretrained(str(root / TEXT_TO_IMAGE_MODEL), dtype=torch.float32)
        pipe.set_progress_bar_config(disable=True)
    if spec["lightning"]:
        pipe.scheduler = FlowMatchEulerDiscreteScheduler.from_config(LIGHTNING_SCHEDULER)
    return pipe


def run(pipe, spec: dict, output_type: str, pictures=None):
    """One call; returns (the first output, [latents after each step])."""
    steps = []
    kwargs = dict(prompt=spec["prompt"], negative_prompt=spec["negative_prompt"], true_cfg_scale=spec["true_cfg_scale"],
                  width=spec["width"], height=spec["height"], num_inference_steps=spec["steps"],
                  generator=torch.Generator("cpu").manual_seed(spec["seed"]), output_type=output_type,
                  callback_on_step_end_tensor_inputs=["latents"],
                  callback_on_step_end=lambda p, i, t, kw: steps.append(kw["latents"].clone()) or {})
    with contextlib.ExitStack() as stack:
        if spec.get("pipeline") == EDIT_PLUS:
            kwargs["image"] = pictures
            stack.enter_context(reduced_areas(spec))
        else:
            kwargs["max_sequence_length"] = 512
        with torch.no_grad():
            output = pipe(**kwargs).images
    if output_type == "latent":
        assert torch.equal(output, steps[-1])
        return output, steps
    return torch.from_numpy(output[0].copy()), steps


def case_mu(pipe, image_seq_len: int) -> float:
    """The pipeline's calculate_shift on the scheduler config (constant log 3 for the Lightning config)."""
    config = pipe.scheduler.config
    return sys.modules[type(pipe).__module__].calculate_shift(image_seq_len, config.base_image_seq_len,
                                                               config.max_image_seq_len, config.base_shift,
                                                               config.max_shift)


def case_pictures(folder: Path, spec: dict) -> tuple[list | None, list[str]]:
    """The edit case's input PNGs (what the C++ side decodes) and their file names; (None, []) for text-to-image."""
    if spec.get("pipeline") != EDIT_PLUS:
        return None, []
    files, pictures = [], []
    for index, size in enumerate(spec["pictures"]):
        files.append(f"picture_{index}.png")
        Image.fromarray(picture(*size, seed=spec["seed"] * 10 + index)).save(folder / files[-1])
        with Image.open(folder / files[-1]) as image:
            pictures.append(image.convert("RGB"))
    return pictures, files


def other_weights_of(weights: list[float]) -> list[float]:
    """The adapter weights of the sensitivity run: half of each."""
    return [w / 2 for w in weights]


def diffusers_run(pipe, spec: dict, pictures, lora_folder: Path, base_state: dict, hand: dict) -> tuple[dict, dict]:
    """The goldens from diffusers' run-time LoRA (load_lora_weights, set_adapters), checked against the hand merge
    (`hand`: its latents, image, other-weights latents and merged state dict); leaves the transformer as loaded."""
    transformer, names = pipe.transformer, [n for n, _ in spec["loras"]]
    weights = [w for _, w in spec["loras"]]
    for n in names:
        pipe.load_lora_weights(str(lora_folder / f"{n}.safetensors"), adapter_name=n)
    pipe.set_adapters(names, adapter_weights=weights)
    latents, steps = run(pipe, spec, "latent", pictures)
    image, _ = run(pipe, spec, "np", pictures)
    pipe.set_adapters(names, adapter_weights=other_weights_of(weights))
    other_latents, _ = run(pipe, spec, "latent", pictures)
    pipe.set_adapters(names, adapter_weights=weights)
    pipe.fuse_lora(components=["transformer"], lora_scale=1.0, adapter_names=names)
    fused = {k.replace(".base_layer", ""): v.detach().clone() for k, v in transformer.state_dict().items()
             if "lora_" not in k}
    pipe.unfuse_lora(components=["transformer"])
    pipe.unload_lora_weights()
    # unfusing subtracts the deltas again, which need not give the base weights back bit for bit
    assert max((v - base_state[k]).abs().max().item() for k, v in transformer.state_dict().items()) < 1e-6
    transformer.load_state_dict(base_state)
    assert sorted(fused) == sorted(hand["state"])
    checks = {"hand_merge_vs_diffusers_latents_max_abs": (hand["latents"] - latents).abs().max().item(),
              "hand_merge_vs_diffusers_image_max_abs": (hand["image"] - image).abs().max().item(),
              "hand_merge_vs_diffusers_other_weights_latents_max_abs":
                  (hand["other_latents"] - other_latents).abs().max().item(),
              "fuse_lora_vs_hand_merge_weights_max_abs": max((fused[k] - v).abs().max().item()
                                                             for k, v in hand["state"].items())}
    assert max(v for k, v in checks.items() if k.startswith("hand_")) < 2e-5, checks
    assert checks["fuse_lora_vs_hand_merge_weights_max_abs"] < 1e-6, checks
    return dict(latents=latents, steps=steps, image=image), checks


def diffusers_load_error(pipe, path: Path) -> str:
    try:
        pipe.load_lora_weights(str(path), adapter_name="rejected")
    except (ValueError, KeyError) as error:
        return f"{type(error).__name__}: {str(error).splitlines()[0][:160]}"
    raise AssertionError(f"diffusers is expected to reject {path.name}")


def measure_sensitivity(pipe, spec: dict, pictures, entries: list, latents, base_latents) -> dict:
    """The latents must move clearly without the LoRAs, at other weights and with every alpha ignored (asserted)."""
    transformer = pipe.transformer
    other = [(e, w) for (e, _), w in zip(entries, other_weights_of([w for _, w in entries]))]
    variants = {"other_weights_latents": weight_deltas(other),
                "alpha_ignored_latents": weight_deltas(entries, ignore_alpha=True)}
    if len(entries) > 1:
        variants.update({f"only_{n}_latents": weight_deltas([entry]) for (n, _), entry in zip(spec["loras"], entries)})
    figures = {"without_lora_latents": relative_change(base_latents, latents)}
    for key, deltas in variants.items():
        with merged(transformer, deltas):
            figures[key] = relative_change(run(pipe, spec, "latent", pictures)[0], latents)
    figures = {k: figure(v) for k, v in figures.items()}
    assert figures["without_lora_latents"] > 0.1, figures
    assert all(v > 0.05 for k, v in figures.items() if k.startswith(("other_", "only_"))), figures
    if any(e["alpha"] != e["rank"] for file_entries, _ in entries for e in file_entries.values() if "down" in e):
        assert figures["alpha_ignored_latents"] > 0.05, figures
    return figures


def generate_case(root: Path, name: str, spec: dict, lora_entries: dict) -> dict:
    folder = root / GOLDENS / name
    folder.mkdir(parents=True)
    pipe = load_case_pipeline(root, spec)
    pictures, picture_files = case_pictures(folder, spec)
    transformer = pipe.transformer
    base_state = {k: v.detach().clone() for k, v in transformer.state_dict().items()}
    names, weights = [n for n, _ in spec["loras"]], [w for _, w in spec["loras"]]
    entries = [(lora_entries[n], w) for n, w in spec["loras"]]
    loadable = all(LORAS[n]["style"] != "lycoris" for n in names)

    base_latents, _ = run(pipe, spec, "latent", pictures)
    deltas = weight_deltas(entries)
    hand = {}
    with merged(transformer, deltas):
        hand["latents"], hand["steps"] = run(pipe, spec, "latent", pictures)
        hand["image"], _ = run(pipe, spec, "np", pictures)
        hand["state"] = {k: v.detach().clone() for k, v in transformer.state_dict().items()}
    with merged(transformer, weight_deltas([(e, w) for (e, _), w in zip(entries, other_weights_of(weights))])):
        hand["other_latents"], _ = run(pipe, spec, "latent", pictures)
    if loadable:
        result, checks = diffusers_run(pipe, spec, pictures, root / GOLDENS / LORA_FOLDER, base_state, hand)
        checks = {k: figure(v) for k, v in checks.items()}
    else:
        result = hand
        checks = {"diffusers_load_error": diffusers_load_error(pipe, root / GOLDENS / LORA_FOLDER /
                                                               f"{names[0]}.safetensors")}
    latents, image = result["latents"], result["image"]
    sensitivity = measure_sensitivity(pipe, spec, pictures, entries, latents, base_latents)

    tensors = {"latents": latents, "latents_per_step": torch.stack(result["steps"]), "image": image,
               "latents_without_lora": base_latents}
    for module in MERGED_PROBES:
        for what, delta in deltas.get(module, {}).items():
            tensors[f"merged.{module}.{what}"] = hand["state"][f"{module}.{what}"]
    meta = {
        "pipeline_class": spec.get("pipeline", "QwenImagePipeline"),
        "model": EDIT_MODEL if spec.get("pipeline") == EDIT_PLUS else TEXT_TO_IMAGE_MODEL, "note": spec["note"],
        "loras": [{"file": f"{LORA_FOLDER}/{n}.safetensors", "adapter_name": n, "adapter_weight": w,
                   "style": LORAS[n]["style"]} for n, w in spec["loras"]],
        "set_adapters": {"adapter_names": names, "adapter_weights": weights}, "loaded_by_diffusers": loadable,
        "prompt": spec["prompt"], "negative_prompt": spec["negative_prompt"], "true_cfg_scale": spec["true_cfg_scale"],
        "do_true_cfg": spec["true_cfg_scale"] > 1 and spec["negative_prompt"] is not None,
        "width": spec["width"], "height": spec["height"], "num_inference_steps": spec["steps"], "seed": spec["seed"],
        "generator": "torch.Generator('cpu').manual_seed(seed)",
        "scheduler": "lightning" if spec["lightning"] else "model",
        "scheduler_config": {k: v for k, v in pipe.scheduler.config.items() if not k.startswith("_")},
        "mu": case_mu(pipe, latents.shape[1]), "image_seq_len": latents.shape[1],
        "timesteps": [float(t) for t in pipe.scheduler.timesteps], "sigmas": [float(s) for s in pipe.scheduler.sigmas],
        "latents_layout": "packed [1, (H/16)*(W/16), 64] (output_type 'latent')",
        "sensitivity": sensitivity, "other_weights": other_weights_of(weights), "checks": checks,
        "merged_probes": sorted(k for k in tensors if k.startswith("merged.")),
    }
    if spec.get("pipeline") == EDIT_PLUS:
        meta.update(images=picture_files, picture_sizes=[list(p) for p in spec["pictures"]],
                    condition_area=spec["condition_area"], vae_area=spec["vae_area"],
                    output_area=spec["output_area"], output_width=image.shape[1], output_height=image.shape[0])
    else:
        meta["max_sequence_length"] = 512
    assert image.shape[0] * image.shape[1] // 256 == latents.shape[1]
    if spec["lightning"]:  # the Lightning shift: mu = log 3, e / (e + (1/s - 1)) in float32, no terminal stretch
        assert meta["mu"] == math.log(3)
        s_in = np.linspace(1.0, 1 / spec["steps"], spec["steps"]).astype(np.float32)
        e = np.float32(math.exp(meta["mu"]))
        assert np.array_equal(pipe.scheduler.sigmas[:-1].numpy(), e / (e + (np.float32(1) / s_in - np.float32(1))))
    save_golden(folder, tensors, meta)
    print(f"{name}: {image.shape[1]}x{image.shape[0]}, sensitivity {sensitivity}, checks {checks}", flush=True)
    return meta


# ---------------------------------------------------------------------------------------------
# README
# ---------------------------------------------------------------------------------------------
README_RULES = """
## What the engine must do

These are the rules of the generator's own reader (`read_lora`, `weight_deltas` in
`tools/reference/make_lora_goldens.py`); for every file diffusers can load, the generator checks that merging
by these rules gives diffusers' run-time LoRA pipeline (final latents and image within a few 1e-6, see each
case's `checks`) and diffusers' `fuse_lora` weights (within 1.2e-7).

1. **Keys -> module.** Strip one prefix (`transformer.`, `diffusion_model.`, `lora_unet_`, `lycoris_`), split off
   the suffix (`.lora_down.weight` / `.lora_A.weight` = down [r, in]; `.lora_up.weight` / `.lora_B.weight` = up
   [out, r]; `.alpha` 0-d; `.diff` [out, in]; `.diff_b` [out]). What is left is the diffusers module name
   (`transformer_blocks.0.attn.to_out.0`), or for `lora_unet_` / `lycoris_` that name with every `.` turned into
   `_` (`transformer_blocks_0_attn_to_out_0`): map it back through the model's own Linear names flattened the
   same way (unique for Qwen-Image; diffusers instead re-splits with a list of protected words, same result).
2. **Scale.** Per module: `W += w * (alpha / rank) * up @ down`, with `w` the adapter weight
   (`set_adapters(..., adapter_weights=...)`), `rank = down.shape[0]` and `alpha`:
   * kohya, lightx2v, ComfyUI, LyCORIS: the module's `.alpha` tensor; a module WITHOUT `.alpha` uses
     alpha = rank (scale 1; comfy_ab_alpha.safetensors has such modules);
   * diffusers / PEFT (`transformer.<module>.lora_A.weight`): `lora_alpha` and `r` from the safetensors header's
     `lora_adapter_metadata` JSON string (keys `transformer.lora_alpha`, `transformer.r`; per-module
     `transformer.alpha_pattern` / `transformer.rank_pattern`, empty here); a PEFT file without that metadata
     means alpha = rank.
   Ranks may differ between modules of one file (kohya.safetensors: 4 in the blocks, 2 top-level).
   LyCORIS full differences: `W += w * diff`, `b += w * diff_b`. Several LoRAs add their deltas. The text
   encoder is never touched (QwenImageLoraLoaderMixin loads only the transformer); with CFG the LoRA acts on both
   the positive and the negative pass.
3. **Merged or run-time.** Merging into the weights (f32, delta formed in f64 and rounded once here) and the
   run-time side path `y = W x + b + w * (alpha / rank) * up (down x)` (diffusers/PEFT) agree to a few 1e-6 on
   the final latents: either passes a 1e-4 test.
4. **diffusers' conversions** (0.42.1 `_convert_non_diffusers_qwen_lora_to_diffusers`, used for every non-PEFT
   file): it folds alpha / rank into the factors (`down * scale_down`, `up * scale_up`, powers of two moved
   between them) and then loads them with alpha = rank. For the bf16 file that multiplication happens in bf16,
   exact here because alpha / rank = 1/8 (as in the published Lightning files: rank 64, alpha 8); an engine
   should convert to f32 first and scale there.
5. **Lightning scheduler** (`scheduler: "lightning"`, config in golden.json `scheduler_config`):
   FlowMatchEulerDiscreteScheduler.from_config with base_shift = max_shift = log 3, use_dynamic_shifting,
   time_shift_type exponential, shift_terminal None. mu = calculate_shift(...) = log 3 for every size, so
   sigma = e / (e + (1 / s - 1)) with e = float32(exp(log 3)) = 3 and s = linspace(1, 1/N, N) cast to float32,
   all in float32 (bit for bit, asserted; = 3 s / (1 + 2 s)), NO shift_terminal stretch, then the final 0;
   timesteps = sigma * 1000. 4 steps: sigmas [1, 0.9, 0.75, 0.5, 0]. Everything else is the plain pipeline
   (tests/golden/README.md, pipeline/).
"""

JSON_KEYS = {
    "pipeline_class, model": "the diffusers class and the repository-relative model folder",
    "loras": "[{file (relative to tests/golden/lora/), adapter_name, adapter_weight, style}] in load order",
    "set_adapters": "the set_adapters call (adapter_names, adapter_weights)",
    "loaded_by_diffusers": "false for the LyCORIS case: its goldens come from the hand merge",
    "prompt, negative_prompt, true_cfg_scale, do_true_cfg, width, height, num_inference_steps, seed, generator, "
    "max_sequence_length": "the call (edit: width/height null, images, picture_sizes, the patched areas and the "
                           "output size)",
    "scheduler, scheduler_config, mu, timesteps, sigmas, image_seq_len": "'model' (the model's scheduler) or "
        "'lightning' (the config above); the shift and the schedule the call used (N + 1 sigmas)",
    "latents_layout": "the latents are PACKED [1, (H/16)*(W/16), 64] (output_type 'latent')",
    "sensitivity": "relative L2 change of the final latents against: no LoRA (without_lora_latents, asserted > "
        "0.1), the LoRAs at other_weights (half the weights; asserted > 0.05), every alpha "
        "ignored (alpha = rank; asserted > 0.05 where some alpha differs from its rank), each LoRA alone "
        "(two-LoRA case)",
    "checks": "hand merge vs diffusers' run-time LoRA (max abs on latents, image, other weights) and diffusers' "
        "fuse_lora weights vs the hand merge; the LyCORIS case records diffusers' load error instead",
    "merged_probes": "the merged.* tensors present",
}

TENSORS = {
    "latents": "F32 [1, T, 64]: final packed latents (output_type 'latent')",
    "latents_per_step": "F32 [N, 1, T, 64]: latents after each step (callback_on_step_end); the last is `latents`",
    "image": "F32 [H, W, 3] in [0, 1]: output_type 'np', first image",
    "latents_without_lora": "F32 [1, T, 64]: the same call without any LoRA",
    "merged.<module>.weight / .bias": "F32: the module's weight (bias) after merging every LoRA of the case at "
        "its weight (probes: transformer_blocks.0.attn.to_q, transformer_blocks.1.txt_mlp.net.2, img_in, "
        "proj_out, transformer_blocks.0.attn.to_k, where the case's LoRAs change them)",
}


def write_readme(golden: Path, metas: dict, summaries: dict) -> None:
    import diffusers
    import peft
    import transformers

    lines = ["# LoRA and Lightning goldens", "",
             "Written by `python3 tools/reference/make_lora_goldens.py` (this file too); diffusers "
             f"{diffusers.__version__}, peft {peft.__version__}, transformers {transformers.__version__}, torch "
             f"{torch.__version__.split('+')[0]}, CPU float32, 1 thread. `--check` regenerates into a temporary "
             "folder and compares byte for byte.", README_RULES.rstrip(), "", "## LoRA files (`loras/`)", "",
             "Random but sensitive factors (down ~ N(0, 1/in), up scaled so that alpha / rank * up (down x) is "
             "about `gain` times the layer's own output, see `make_factors`). `loras.json` lists, per file, every "
             "module with its rank and alpha (null: no `.alpha` key), the full-difference modules and the header "
             "metadata: the expected result of a parser.", ""]
    for name, spec in LORAS.items():
        alphas = sorted({str(per_module(spec["alpha"], m)).replace("None", "none (= rank)") for m in spec["modules"]})
        ranks = sorted({per_module(spec["rank"], m) for m in spec["modules"]})
        honoured = ("not loadable by diffusers" if spec["style"] == "lycoris" else
                    "diffusers honours alpha (header metadata)" if spec["style"] == "peft" else
                    "diffusers honours alpha (folded into the factors)")
        lines.append(f"* `{name}.safetensors` ({str(spec['dtype']).replace('torch.', '')}, "
                     f"{summaries[name]['tensors']} tensors, for `{spec['model']}`): {spec['note']}. "
                     f"{len(spec['modules'])} low-rank modules, rank {'/'.join(map(str, ranks))}, alpha "
                     f"{'/'.join(alphas)}; {honoured}.")
    lines += ["", "## Files of a case", "", "`golden.json`, `golden.safetensors` (edit: `picture_0.png`, the input "
              "picture, RGB 8-bit).", "", "golden.json:", ""]
    lines += [f"* `{k}`: {v}" for k, v in JSON_KEYS.items()]
    lines += ["", "golden.safetensors (T = (H/16)*(W/16) tokens, N steps):", ""]
    lines += [f"* `{k}`: {v}" for k, v in TENSORS.items()]
    lines += ["", "## Cases", ""]
    for name, meta in metas.items():
        loras = ", ".join(f"`{l['file']}` x {l['adapter_weight']}" for l in meta["loras"])
        lines += [f"### `{name}/`", "", f"{meta['pipeline_class']} on `{meta['model']}`: {meta['note']}.", "",
                  f"* LoRAs: {loras}; {'loaded by diffusers' if meta['loaded_by_diffusers'] else 'merged by hand'}",
                  f"* {meta['image_seq_len']} tokens, {meta['num_inference_steps']} steps, seed {meta['seed']}, "
                  f"true_cfg_scale {meta['true_cfg_scale']}, negative prompt {json.dumps(meta['negative_prompt'])}, "
                  f"CFG {'yes' if meta['do_true_cfg'] else 'no'}, scheduler {meta['scheduler']}",
                  "* sensitivity: " + ", ".join(f"{k} {v}" for k, v in meta["sensitivity"].items()),
                  "* checks: " + ", ".join(f"{k} {v}" for k, v in meta["checks"].items()), ""]
        for tensor, dtype, shape in describe_safetensors(golden / name / "golden.safetensors"):
            lines.append(f"  * `{tensor}`: {dtype} {shape}")
        lines.append("")
    lines += ["## Size", "", f"`{GOLDENS}/`: {tree_bytes(golden) / 1e6:.2f} MB", ""]
    (golden / "README.md").write_text("\n".join(lines), encoding="utf-8")


# ---------------------------------------------------------------------------------------------
# Driver
# ---------------------------------------------------------------------------------------------
def write_loras(root: Path) -> tuple[dict, dict]:
    """Writes loras/*.safetensors; returns ({name: read_lora entries}, {name: keys and header metadata})."""
    from diffusers import QwenImageTransformer2DModel

    folder = root / GOLDENS / LORA_FOLDER
    folder.mkdir(parents=True)
    shapes, module_names = {}, {}
    for model in (TEXT_TO_IMAGE_MODEL, EDIT_MODEL):
        transformer = QwenImageTransformer2DModel.from_pretrained(str(root / model / "transformer"),
                                                                  torch_dtype=torch.float32)
        shapes[model] = linear_shapes(transformer)
        module_names[model] = set(shapes[model])
    entries, summaries = {}, {}
    for name, spec in LORAS.items():
        factors = make_factors(spec, shapes[spec["model"]])
        write_lora(root, name, spec, factors)
        entries[name] = read_lora(folder / f"{name}.safetensors", module_names[spec["model"]])
        # the reader gives back exactly the factors written, with the intended alphas
        assert sorted(entries[name]) == sorted(factors), name
        for module, f in factors.items():
            e = entries[name][module]
            for key in ("down", "up", "diff", "diff_b"):
                if key in f:
                    assert torch.equal(e[key], f[key].double()), (name, module, key)
            if "down" in f:
                rank = per_module(spec["rank"], module)
                alpha = f["alpha"] if f["alpha"] is not None else rank
                assert e["rank"] == rank and e["alpha"] == alpha, (name, module, e["alpha"], alpha)
        summaries[name] = dict(header=safetensors_metadata(folder / f"{name}.safetensors"),
                               tensors=len(describe_safetensors(folder / f"{name}.safetensors")))
    return entries, summaries


def safetensors_metadata(path: Path) -> dict:
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        return json.loads(f.read(n)).get("__metadata__", {})


def tree_files(folder: Path) -> dict[str, Path]:
    return {str(p.relative_to(folder)): p for p in sorted(folder.rglob("*")) if p.is_file()}


def tree_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in tree_files(folder).values())


def generate(root: Path) -> None:
    setup_determinism()
    # the two-LoRA case loads a second adapter on purpose
    warnings.filterwarnings("ignore", message="Already found a `peft_config` attribute")
    start = time.time()
    golden = root / GOLDENS
    if golden.exists():
        shutil.rmtree(golden)
    golden.mkdir(parents=True)
    entries, summaries = write_loras(root)
    metas = {name: generate_case(root, name, spec, entries) for name, spec in CASES.items()}
    write_json(golden / "loras.json", lora_manifest(summaries))
    write_readme(root / GOLDENS, metas, summaries)
    total = tree_bytes(golden)
    print(f"{time.time() - start:.1f}s; {GOLDENS}: {total / 1e6:.2f} MB")
    assert total < 2e6, total


def lora_manifest(summaries: dict) -> dict:
    """loras.json: per file, its style, model, rank / alpha per module, header metadata and keys."""
    out = {}
    for name, spec in LORAS.items():
        lora_modules = list(spec["modules"])
        out[name] = dict(
            file=f"{LORA_FOLDER}/{name}.safetensors", style=spec["style"], model=spec["model"],
            dtype=str(spec["dtype"]).replace("torch.", ""), note=spec["note"],
            low_rank={m: {"rank": per_module(spec["rank"], m), "alpha": per_module(spec["alpha"], m)}
                      for m in lora_modules},
            full_difference={m: {"bias": m in spec.get("diff_bias", ())} for m in spec.get("diff", ())},
            header_metadata=summaries[name]["header"], tensor_count=summaries[name]["tensors"])
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true",
                        help="regenerate into a temporary folder and compare byte for byte with the repository")
    args = parser.parse_args(argv)
    if not args.check:
        generate(REPO_ROOT)
        return
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "models").mkdir()
        for model in (TEXT_TO_IMAGE_MODEL, EDIT_MODEL):
            os.symlink(REPO_ROOT / model, root / model)
        generate(root)
        old, new = tree_files(REPO_ROOT / GOLDENS), tree_files(root / GOLDENS)
        diffs = [f"only in one tree: {p}" for p in sorted(old.keys() ^ new.keys())]
        diffs += [f"differs: {p}" for p in sorted(old.keys() & new.keys())
                  if not filecmp.cmp(old[p], new[p], shallow=False)]
    for line in diffs:
        print(line)
    print("check:", "OK (bit-identical)" if not diffs else f"{len(diffs)} differences")
    sys.exit(1 if diffs else 0)


if __name__ == "__main__":
    main()
