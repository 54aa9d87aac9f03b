#!/usr/bin/env python3
"""Goldens for the Qwen2-VL image processor and the Qwen2.5-VL vision tower (issue 14, items 3 and 4).

  python3 tools/reference/make_vision_goldens.py

writes tests/golden/vision/ (see the README.md it writes there):

  processor/       source pictures, the processor's pixel_values and image_grid_thw, one case per
                   preprocessor_config.json (golden.json lists them)
  tower_<config>/  a tiny Qwen2_5_VLForConditionalGeneration (save_pretrained; the text model is only there so
                   the checkpoint has the real layout), the processor output it is fed and the vision tower's
                   output (`model.visual(pixel_values, grid_thw=...).pooler_output`, what the text model receives)

The processor is the one diffusers' QwenImageEditPlusPipeline loads (Qwen2VLProcessor.from_pretrained of the
checkpoint's processor/ folder). transformers 5.24 picks its torchvision backend when torchvision is installed
and the PIL backend (Qwen2VLImageProcessorPil, Image.resize BICUBIC) otherwise; the reference stack has no
torchvision, so these goldens are the PIL backend's, the one whose resize is bit-exact with Pillow.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
import transformers
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import GOLDEN_DIR, dir_size, reinit_params, save_golden, setup_determinism, write_json  # noqa: E402
from make_goldens import legacy_tensor_name  # noqa: E402

OUT_DIR = GOLDEN_DIR / "vision"
CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]


def preprocessor_config(patch_size: int = 14, merge_size: int = 2, **size_keys) -> dict:
    """A processor/preprocessor_config.json as the published Qwen-Image-Edit checkpoints write it; `size_keys` is
    either min_pixels/max_pixels (the published files) or size={shortest_edge, longest_edge} (transformers 5)."""
    return {"do_convert_rgb": True, "do_normalize": True, "do_rescale": True, "do_resize": True,
            "image_mean": CLIP_MEAN, "image_processor_type": "Qwen2VLImageProcessor", "image_std": CLIP_STD,
            "merge_size": merge_size, "patch_size": patch_size, "processor_class": "Qwen2VLProcessor",
            "resample": 3, "rescale_factor": 0.00392156862745098, "temporal_patch_size": 2, **size_keys}


def picture(width: int, height: int, seed: int) -> np.ndarray:
    """A deterministic [height, width, 3] uint8 picture: smooth gradients plus noise, so that bicubic
    overshoot, rounding and clipping all occur."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    base = np.stack([127 + 120 * np.sin(x / (3 + c) + y / (5 + 2 * c) + seed) for c in range(3)], axis=-1)
    return np.clip(base + rng.normal(0, 40, base.shape), 0, 255).astype(np.uint8)


def run_processor(config: dict, images: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    """pixel_values and image_grid_thw as the pipeline's `self.processor(images=...)` computes them."""
    with tempfile.TemporaryDirectory() as folder:
        write_json(Path(folder) / "preprocessor_config.json", config)
        processor = transformers.AutoImageProcessor.from_pretrained(folder)
    assert type(processor).__name__ == "Qwen2VLImageProcessorPil", (
        f"{type(processor).__name__}: with torchvision installed transformers switches to its torchvision backend, "
        "whose float resize differs from Pillow's; the reference stack (requirements.txt) has no torchvision")
    out = processor(images=[Image.fromarray(image) for image in images], return_tensors="pt")
    return out["pixel_values"].to(torch.float32), out["image_grid_thw"].to(torch.int64)


# name -> (picture width, height, preprocessor config, what the case checks)
PROCESSOR_CASES = {
    "a_in_range": (70, 45, preprocessor_config(min_pixels=56 * 56, max_pixels=28 * 28 * 16),
                   "70x45: round() ties to even (70/28 = 2.5 -> 2), no clamp"),
    "b_max_clamp": (200, 120, preprocessor_config(min_pixels=56 * 56, max_pixels=28 * 28 * 6),
                    "200x120 over max_pixels: floor(height / beta / factor) * factor"),
    "c_min_clamp": (30, 20, preprocessor_config(min_pixels=4000, max_pixels=28 * 28 * 16),
                    "30x20 under min_pixels: ceil(height * beta / factor) * factor (upscaling)"),
    "d_size_keys_tall": (50, 90, preprocessor_config(size={"shortest_edge": 3136, "longest_edge": 6000}),
                         "50x90 (portrait), limits given as size={shortest_edge, longest_edge}"),
    "e_patch8_exact": (48, 32, preprocessor_config(patch_size=4, min_pixels=64, max_pixels=4096),
                       "48x32, patch_size 4 (factor 8): already a multiple of the factor, so no resampling"),
}


def gen_processor() -> dict:
    folder = OUT_DIR / "processor"
    tensors, cases = {}, []
    for index, (name, (width, height, config, note)) in enumerate(PROCESSOR_CASES.items()):
        image = picture(width, height, seed=index)
        pixel_values, grid = run_processor(config, [image])
        tensors[f"{name}.image"] = torch.from_numpy(image)
        tensors[f"{name}.pixel_values"] = pixel_values
        tensors[f"{name}.image_grid_thw"] = grid
        cases.append({"name": name, "width": width, "height": height, "preprocessor_config": config,
                      "note": note, "image_grid_thw": grid.tolist()})
    save_golden(folder, tensors, {"cases": cases, "transformers": transformers.__version__,
                                  "call": "AutoImageProcessor.from_pretrained(dir)(images=[PIL image])"})
    return {"cases": cases}


# name -> (vision_config overrides, legacy names, picture sizes (width, height), seed, notes)
TOWER_CONFIGS = {
    "a_partial_windows": (
        dict(depth=4, hidden_size=32, num_heads=2, intermediate_size=48, out_hidden_size=24, patch_size=4,
             window_size=24, fullatt_block_indexes=[1, 3]),
        False, [(40, 56), (48, 24)], 11,
        "two images: 14x10 patches (7x5 merged, 3x3-unit windows: partial ones at the right and bottom) and "
        "6x12 patches (3x6 merged, windows exactly full: transformers pads a whole empty window and drops it); "
        "blocks 1 and 3 attend over each whole image"),
    "b_legacy_names_h4": (
        dict(depth=3, hidden_size=32, num_heads=4, intermediate_size=40, out_hidden_size=40, patch_size=6,
             window_size=24, fullatt_block_indexes=[0]),
        True, [(84, 60)], 12,
        "one image of 10x14 patches (5x7 merged, 2x2-unit windows), head_dim 8, block 0 full attention; "
        "checkpoint in the older layout (flat config.json with in_chans, tensors visual.* and model.*)"),
}


def tower_model_config(overrides: dict):
    from transformers import Qwen2_5_VLConfig

    vision = dict(hidden_act="silu", in_channels=3, spatial_merge_size=2, temporal_patch_size=2,
                  tokens_per_second=2, rope_parameters={"rope_type": "axial", "rope_theta": 10000.0}, **overrides)
    text_head_dim = overrides["out_hidden_size"] // 2
    text = dict(vocab_size=64, hidden_size=overrides["out_hidden_size"], intermediate_size=32, num_hidden_layers=1,
                num_attention_heads=2, num_key_value_heads=1, hidden_act="silu", max_position_embeddings=1024,
                rms_norm_eps=1e-6, tie_word_embeddings=True,
                rope_parameters={"rope_type": "default", "rope_theta": 1000000.0,
                                 "mrope_section": _mrope_section(text_head_dim)})
    return Qwen2_5_VLConfig(text_config=text, vision_config=vision, tie_word_embeddings=True)


def _mrope_section(head_dim: int) -> list[int]:
    half = head_dim // 2
    return [half - 2 * (half // 3), half // 3, half // 3]


def save_legacy(model, folder: Path) -> None:
    """The older layout of the published Qwen-Image text_encoder/: a flat config.json (vision_config with
    in_chans) and tensors named visual.* / model.*."""
    from make_goldens import flatten_qwen25vl_config
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    tensors = {legacy_tensor_name(k): v.detach().contiguous() for k, v in model.state_dict().items()
               if k != "lm_head.weight"}
    save_file(tensors, str(folder / "model.safetensors"), metadata={"format": "pt"})
    write_json(folder / "config.json", flatten_qwen25vl_config(model.config.to_dict(), "float32"))


def tower_output(model, pixel_values: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model.model.visual(pixel_values, grid_thw=grid).pooler_output


def gen_tower(name: str, overrides: dict, legacy: bool, sizes: list, seed: int, notes: str) -> dict:
    from transformers import Qwen2_5_VLForConditionalGeneration

    folder = OUT_DIR / f"tower_{name}"
    config = tower_model_config(overrides)
    torch.manual_seed(seed)
    model = Qwen2_5_VLForConditionalGeneration(config).to(torch.float32).eval()
    # Larger than default gains: with 1/sqrt(fan_in) weights the attention is nearly uniform and the residual
    # stream barely changes, so an error in the windows or the rotary would hardly show.
    reinit_params(model, seed=seed, gain=1.0, bias_std=0.2, gain_param_std=0.3,
                  overrides={"attn.qkv.weight": 2.0, "attn.proj.weight": 1.5, "mlp.down_proj.weight": 1.5})
    processor_config = preprocessor_config(patch_size=overrides["patch_size"], min_pixels=64, max_pixels=1 << 20)
    images = [picture(w, h, seed=seed + i) for i, (w, h) in enumerate(sizes)]
    pixel_values, grid = run_processor(processor_config, images)
    output = tower_output(model, pixel_values, grid)

    # The golden must depend on the picture: another picture of the same sizes must change it clearly.
    other = [picture(w, h, seed=seed + 100 + i) for i, (w, h) in enumerate(sizes)]
    other_output = tower_output(model, run_processor(processor_config, other)[0], grid)
    change = ((other_output - output).norm() / output.norm()).item()
    print(f"tower_{name}: another picture changes the output by {change:.3f} (relative L2)")
    assert change > 0.3, change
    # And on the windows: the same tower with full attention in every block must give another output.
    visual = model.model.visual
    window_blocks = visual.fullatt_block_indexes
    visual.fullatt_block_indexes = list(range(overrides["depth"]))
    window_change = ((tower_output(model, pixel_values, grid) - output).norm() / output.norm()).item()
    visual.fullatt_block_indexes = window_blocks
    print(f"tower_{name}: full attention in every block changes the output by {window_change:.3f}")
    assert window_change > 0.05, window_change

    # How far float32 itself is from exact here: a port cannot be expected to come closer than this.
    exact = tower_output(model.to(torch.float64), pixel_values.double(), grid)
    model.to(torch.float32)
    float32_error = ((output.double() - exact).abs().max() / exact.abs().max()).item()
    print(f"tower_{name}: the float32 reference is within {float32_error:.2g} of float64 (max relative)")

    if legacy:
        save_legacy(model, folder)
    else:
        model.save_pretrained(str(folder), safe_serialization=True)
        (folder / "generation_config.json").unlink(missing_ok=True)
    reloaded = Qwen2_5_VLForConditionalGeneration.from_pretrained(str(folder), dtype=torch.float32).eval()
    assert torch.equal(tower_output(reloaded, pixel_values, grid), output)
    write_json(folder / "preprocessor_config.json", processor_config)
    pictures = {f"picture_{i}": torch.from_numpy(image) for i, image in enumerate(images)}
    save_golden(folder, {"pixel_values": pixel_values, "image_grid_thw": grid, "image_embeds": output, **pictures},
                {"config": name, "notes": notes, "picture_sizes": sizes, "seed": seed,
                 "other_picture_relative_change": round(change, 4),
                 "all_full_attention_relative_change": round(window_change, 4),
                 "float32_vs_float64_max_relative": float(f"{float32_error:.3g}"),
                 "call": "model.model.visual(pixel_values, grid_thw=image_grid_thw).pooler_output"})
    return {"notes": notes, "grid": grid.tolist(), "embeds": list(output.shape)}


def write_readme(processor: dict, towers: dict) -> None:
    lines = ["# Vision goldens (Qwen2-VL image processor, Qwen2.5-VL vision tower)", "",
             "Written by `python3 tools/reference/make_vision_goldens.py` (this file too); transformers "
             f"{transformers.__version__}, torch {torch.__version__.split('+')[0]}, CPU float32, 1 thread.", "",
             "The processor is transformers' PIL backend (`Qwen2VLImageProcessorPil`), the one AutoImageProcessor "
             "gives for `image_processor_type: Qwen2VLImageProcessor` without torchvision (the reference stack "
             "has none); its resize is Pillow's BICUBIC.", "",
             "## processor/", "",
             "`golden.safetensors`: per case `<case>.image` (U8 [H, W, 3], the picture given as a PIL image), "
             "`<case>.pixel_values` (F32 [grid_h*grid_w, 3*2*patch*patch]) and `<case>.image_grid_thw` (I64 [1, 3]); "
             "`golden.json` holds each case's preprocessor_config.json.", ""]
    for case in processor["cases"]:
        lines.append(f"* `{case['name']}`: {case['note']}; grid {case['image_grid_thw'][0]}")
    lines += ["", "## tower_<config>/", "",
              "A tiny `Qwen2_5_VLForConditionalGeneration` (random weights, scaled so the output depends clearly on "
              "the picture; golden.json gives the relative change another picture makes), its "
              "`preprocessor_config.json`, and `golden.safetensors`: the pictures `picture_<i>` (U8 [H, W, 3]), "
              "`pixel_values` and `image_grid_thw` (the processor's for all of them, concatenated) and "
              "`image_embeds` = `model.model.visual(pixel_values, grid_thw).pooler_output` "
              "[sum(t*h*w)/4, out_hidden_size].", ""]
    for name, info in towers.items():
        lines.append(f"* `tower_{name}`: {info['notes']}; grids {info['grid']}, image_embeds {info['embeds']}")
    lines += ["", f"Total size: {dir_size(OUT_DIR) / 1e6:.2f} MB", ""]
    (OUT_DIR / "README.md").write_text("\n".join(lines), encoding="utf-8")


def main() -> None:
    setup_determinism()
    processor = gen_processor()
    towers = {name: gen_tower(name, *spec) for name, spec in TOWER_CONFIGS.items()}
    write_readme(processor, towers)
    size = dir_size(OUT_DIR)
    print(f"{OUT_DIR}: {size / 1e6:.2f} MB")
    assert size < 1.5e6, size


if __name__ == "__main__":
    main()
