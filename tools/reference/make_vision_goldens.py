#!/usr/bin/env python3
"""Goldens for the Qwen2-VL image processor, the Qwen2.5-VL vision tower and text with images (issue 14, items 3-5).

  python3 tools/reference/make_vision_goldens.py

writes tests/golden/vision/ (see the README.md it writes there):

  processor/       source pictures, the processor's pixel_values and image_grid_thw, one case per
                   preprocessor_config.json (golden.json lists them)
  tower_<config>/  a tiny Qwen2_5_VLForConditionalGeneration (save_pretrained; the text model is only there so
                   the checkpoint has the real layout), the processor output it is fed and the vision tower's
                   output (`model.visual(pixel_values, grid_thw=...).pooler_output`, what the text model receives)
  text_with_images/ a tiny Qwen2_5_VLForConditionalGeneration of vocabulary 64 and, per case, the expanded ids, the
                   3D M-RoPE positions (get_rope_index) and the final hidden state with the pictures scattered in
  edit_prompt/     Qwen-Image-Edit(-Plus) encode_prompt with pictures on models/tiny-qwen-image (real tokenizer)

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
from common import (GOLDEN_DIR, TINY_PIPELINE_DIR, dir_size, reinit_params, save_golden,  # noqa: E402
                    setup_determinism, write_json)
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


# ---------------------------------------------------------------------------------------------------------------
# Text with images (issue 14 item 5): the joint Qwen2_5_VLModel forward on a tiny model of vocabulary 64
# ---------------------------------------------------------------------------------------------------------------
# Token ids inside the tiny vocabulary; text tokens are drawn from 0..TEXT_VOCAB-1.
TINY_TOKENS = dict(vision_start_token_id=60, vision_end_token_id=61, image_token_id=62, video_token_id=63)
TEXT_VOCAB = 60
TINY_PATCH = 2  # pixel rows of 3 * 2 * 2 * 2 = 24 values keep pixel_values small


def text_with_images_config():
    from transformers import Qwen2_5_VLConfig

    vision = dict(depth=2, hidden_size=16, num_heads=2, intermediate_size=32, out_hidden_size=32, patch_size=TINY_PATCH,
                  window_size=4 * TINY_PATCH, fullatt_block_indexes=[1], hidden_act="silu", in_channels=3,
                  spatial_merge_size=2, temporal_patch_size=2, tokens_per_second=2,
                  rope_parameters={"rope_type": "axial", "rope_theta": 10000.0})
    # head_dim 16: 8 rotary pairs, 2 temporal, 3 height, 3 width, so the spatial rows weigh on the result.
    text = dict(vocab_size=64, hidden_size=32, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2,
                num_key_value_heads=1, hidden_act="silu", max_position_embeddings=1024, rms_norm_eps=1e-6,
                bos_token_id=None, eos_token_id=None, tie_word_embeddings=True,
                rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 3, 3]})
    return Qwen2_5_VLConfig(text_config=text, vision_config=vision, tie_word_embeddings=True, **TINY_TOKENS)


# name -> (layout, notes). A layout is a list of ("text", n) runs of random text tokens, ("picture", width, height)
# for <|vision_start|><|image_pad|><|vision_end|>, or ("bare_picture", width, height) for a lone <|image_pad|>.
TEXT_WITH_IMAGES_CASES = {
    "a_one_picture": ([("text", 7), ("picture", 12, 8), ("text", 5)],
                      "one picture of 4x6 patches (2x3 merged tokens) between text"),
    "b_three_pictures": ([("text", 4), ("picture", 8, 8), ("text", 3), ("picture", 12, 12), ("text", 2),
                          ("picture", 8, 16), ("text", 4)],
                         "three pictures: 4x4, 6x6 (3x3 merged: partial 2x2 windows at the right and bottom) and "
                         "8x4 patches (taller than wide)"),
    "c_picture_at_start": ([("bare_picture", 16, 8), ("text", 6)],
                           "the sequence opens with the image tokens of a 4x8-patch picture (no vision_start)"),
    "d_text_after_last_picture": ([("text", 3), ("picture", 8, 12), ("picture", 24, 8), ("text", 14)],
                                  "two pictures back to back (6x4 and 4x12 patches), then 14 text tokens: text "
                                  "resumes at the largest position + 1, the wide picture's max(h, w)/2 = 6"),
}


def layout_ids(layout: list, rng: np.random.Generator) -> list[int]:
    """Token ids before the processor's expansion: one <|image_pad|> per picture."""
    ids = []
    for run in layout:
        if run[0] == "text":
            ids += rng.integers(0, TEXT_VOCAB, run[1]).tolist()
        elif run[0] == "picture":
            ids += [TINY_TOKENS["vision_start_token_id"], TINY_TOKENS["image_token_id"],
                    TINY_TOKENS["vision_end_token_id"]]
        else:
            ids.append(TINY_TOKENS["image_token_id"])
    return ids


def expand_image_pads(ids: list[int], grid: torch.Tensor, merge_size: int = 2) -> list[int]:
    """What the processor does to the text: the i-th <|image_pad|> becomes prod(grid[i]) / merge_size^2 copies."""
    image_token, expanded, image = TINY_TOKENS["image_token_id"], [], 0
    for token in ids:
        copies = int(grid[image].prod()) // merge_size ** 2 if token == image_token else 1
        image += token == image_token
        expanded += [token] * copies
    assert image == len(grid)
    return expanded


def joint_forward(model, input_ids: torch.Tensor, pixel_values, grid, position_ids=None) -> torch.Tensor:
    """hidden_states[-1] of the full model with the pictures scattered in; mm_token_type_ids marks the image tokens
    (what the processor returns), which transformers 5 needs to compute the 3D positions itself."""
    mm_token_type_ids = (input_ids == TINY_TOKENS["image_token_id"]).int()
    with torch.no_grad():
        out = model(input_ids=input_ids, attention_mask=torch.ones_like(input_ids), pixel_values=pixel_values,
                    image_grid_thw=grid, mm_token_type_ids=mm_token_type_ids, position_ids=position_ids,
                    output_hidden_states=True)
    return out.hidden_states[-1]


def relative_change(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / b.norm()).item()


def gen_text_with_images() -> dict:
    from transformers import Qwen2_5_VLForConditionalGeneration

    folder = OUT_DIR / "text_with_images"
    seed = 21
    torch.manual_seed(seed)
    model = Qwen2_5_VLForConditionalGeneration(text_with_images_config()).to(torch.float32).eval()
    # Strong attention (q/k gains) so that positions and image rows move the later tokens clearly.
    reinit_params(model, seed=seed, gain=1.0, bias_std=0.2, gain_param_std=0.3,
                  overrides={"attn.qkv.weight": 2.0, "q_proj.weight": 3.0, "k_proj.weight": 3.0,
                             "mlp.down_proj.weight": 1.5})
    processor_config = preprocessor_config(patch_size=TINY_PATCH, min_pixels=16, max_pixels=1 << 16)
    rng = np.random.default_rng(seed)
    tensors, cases = {}, []
    for case_index, (name, (layout, notes)) in enumerate(TEXT_WITH_IMAGES_CASES.items()):
        sizes = [(run[1], run[2]) for run in layout if run[0] != "text"]
        images = [picture(w, h, seed=seed + 10 * case_index + i) for i, (w, h) in enumerate(sizes)]
        pixel_values, grid = run_processor(processor_config, images)
        ids = layout_ids(layout, rng)
        input_ids = torch.tensor([expand_image_pads(ids, grid)])
        mm_token_type_ids = (input_ids == TINY_TOKENS["image_token_id"]).int()
        position_ids, _ = model.model.get_rope_index(input_ids, mm_token_type_ids, image_grid_thw=grid)
        hidden = joint_forward(model, input_ids, pixel_values, grid)
        # The forward used exactly these positions.
        assert torch.equal(joint_forward(model, input_ids, pixel_values, grid, position_ids=position_ids), hidden)
        image_embeds = tower_output(model, pixel_values, grid)

        # The hidden state must depend on the pictures and on the 3D positions, from the first image token on
        # (tokens before it cannot see the pictures: the model is causal).
        first_image = int(mm_token_type_ids[0].nonzero()[0])
        others = [picture(w, h, seed=seed + 100 + 10 * case_index + i) for i, (w, h) in enumerate(sizes)]
        other_hidden = joint_forward(model, input_ids, run_processor(processor_config, others)[0], grid)
        picture_change = relative_change(other_hidden[:, first_image:], hidden[:, first_image:])
        sequential = torch.arange(input_ids.shape[1]).view(1, 1, -1).expand(3, 1, -1)
        sequential_hidden = joint_forward(model, input_ids, pixel_values, grid, position_ids=sequential)
        position_change = relative_change(sequential_hidden[:, first_image:], hidden[:, first_image:])
        print(f"text_with_images {name}: L={input_ids.shape[1]} grids {grid.tolist()}; another picture changes the "
              f"hidden state by {picture_change:.3f}, sequential positions by {position_change:.3f}")
        assert picture_change > 0.3, picture_change
        assert position_change > 0.05, position_change

        # get_rope_index with padding: masked tokens get position 0, the others count as if the padding were not there.
        padded_ids = torch.cat([torch.zeros(1, 3, dtype=torch.long), input_ids, torch.zeros(1, 2, dtype=torch.long)],
                               dim=1)
        padded_mask = (torch.arange(padded_ids.shape[1]) >= 3) & (torch.arange(padded_ids.shape[1]) < 3 +
                                                                  input_ids.shape[1])
        padded_mask = padded_mask.long().view(1, -1)
        padded_positions, _ = model.model.get_rope_index(
            padded_ids, (padded_ids == TINY_TOKENS["image_token_id"]).int(), image_grid_thw=grid,
            attention_mask=padded_mask)
        assert torch.equal(padded_positions[:, :, 3:3 + input_ids.shape[1]], position_ids)

        tensors.update({f"{name}.input_ids_unexpanded": torch.tensor([ids]), f"{name}.input_ids": input_ids,
                        f"{name}.position_ids": position_ids, f"{name}.pixel_values": pixel_values,
                        f"{name}.image_grid_thw": grid, f"{name}.image_embeds": image_embeds,
                        f"{name}.last_hidden_state": hidden, f"{name}.padded_input_ids": padded_ids,
                        f"{name}.padded_attention_mask": padded_mask, f"{name}.padded_position_ids": padded_positions})
        cases.append({"name": name, "notes": notes, "picture_sizes": sizes, "grids": grid.tolist(),
                      "length": input_ids.shape[1], "other_picture_relative_change": round(picture_change, 4),
                      "sequential_positions_relative_change": round(position_change, 4)})

    model.save_pretrained(str(folder), safe_serialization=True)
    (folder / "generation_config.json").unlink(missing_ok=True)
    write_json(folder / "preprocessor_config.json", processor_config)
    save_golden(folder, tensors, {
        "cases": cases, "seed": seed, "tokens": TINY_TOKENS,
        "call": "model(input_ids, attention_mask=ones, pixel_values, image_grid_thw, mm_token_type_ids=(input_ids == "
                "image_token_id), output_hidden_states=True).hidden_states[-1]; position_ids = "
                "model.model.get_rope_index(input_ids, mm_token_type_ids, image_grid_thw)[0]; image_embeds = "
                "model.model.visual(pixel_values, grid_thw).pooler_output"})
    return {"cases": cases}


# ---------------------------------------------------------------------------------------------------------------
# Qwen-Image-Edit prompt encoding with pictures, on models/tiny-qwen-image (real tokenizer, 151936 tokens)
# ---------------------------------------------------------------------------------------------------------------
# The processor/preprocessor_config.json of the published Qwen-Image-Edit checkpoints.
EDIT_PROCESSOR_CONFIG = preprocessor_config(min_pixels=3136, max_pixels=12845056)


def edit_processor():
    """Qwen2VLProcessor as QwenImageEdit(Plus)Pipeline loads it, less its video processor: that one needs torchvision,
    which the reference stack has none of (Qwen2VLProcessor.from_pretrained fails without it). Pictures and text go
    through the inherited code unchanged."""

    class Qwen2VLProcessorWithoutVideo(transformers.Qwen2VLProcessor):
        def __init__(self, image_processor, tokenizer):
            super().__init__(image_processor, tokenizer)

    with tempfile.TemporaryDirectory() as folder:
        write_json(Path(folder) / "preprocessor_config.json", EDIT_PROCESSOR_CONFIG)
        image_processor = transformers.AutoImageProcessor.from_pretrained(folder)
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(TINY_PIPELINE_DIR / "tokenizer"))
    return Qwen2VLProcessorWithoutVideo(image_processor, tokenizer)


class ForwardMmTokenTypeIds:
    """While active, the text encoder receives mm_token_type_ids computed from input_ids as the processor computes
    them. diffusers 0.42.1's edit pipelines drop the processor's mm_token_type_ids, and transformers >= 5 then falls
    back to sequential positions 0..L-1 for the whole prompt, pictures included (diffusers issue #14194, fix
    proposed in PR #14189); with the field, the pictures get the 3D M-RoPE positions the model was trained with."""

    def __init__(self, text_encoder):
        self.text_encoder = text_encoder

    def __enter__(self):
        forward, image_token = self.text_encoder.forward, self.text_encoder.config.image_token_id

        def forward_with_token_types(*args, **kwargs):
            kwargs.setdefault("mm_token_type_ids", (kwargs["input_ids"] == image_token).int())
            return forward(*args, **kwargs)

        self.text_encoder.forward = forward_with_token_types

    def __exit__(self, *exc):
        del self.text_encoder.forward


# Picture sets (width, height); a set is stored once and shared by the prompts that use it, as a pipeline encodes its
# prompt and negative prompt with the same pictures.
EDIT_PICTURE_SETS = {"two": [(84, 56), (56, 112)], "one": [(70, 70)], "none": []}
# name -> (pipeline class name, picture set, prompt)
EDIT_PROMPT_CASES = {
    "plus_two_pictures": ("QwenImageEditPlusPipeline", "two", "Put the cat from picture 1 on the sofa of picture 2, 夕阳"),
    "plus_two_pictures_blank": ("QwenImageEditPlusPipeline", "two", " "),
    "plus_no_picture": ("QwenImageEditPlusPipeline", "none", "A red bicycle"),
    "edit_one_picture": ("QwenImageEditPipeline", "one", "Make it look like winter"),
}


def gen_edit_prompts() -> dict:
    import diffusers
    from tiny_models import load_pipeline

    folder = OUT_DIR / "edit_prompt"
    base = load_pipeline()
    processor = edit_processor()
    pictures = {name: [picture(w, h, seed=40 + 10 * index + i) for i, (w, h) in enumerate(sizes)]
                for index, (name, sizes) in enumerate(EDIT_PICTURE_SETS.items())}
    others = {name: [picture(w, h, seed=140 + 10 * index + i) for i, (w, h) in enumerate(sizes)]
              for index, (name, sizes) in enumerate(EDIT_PICTURE_SETS.items())}
    tensors = {f"pictures.{name}.{i}": torch.from_numpy(image)
               for name, images in pictures.items() for i, image in enumerate(images)}
    cases = []
    for name, (pipeline_name, picture_set, prompt) in EDIT_PROMPT_CASES.items():
        pipe = getattr(diffusers, pipeline_name)(scheduler=base.scheduler, vae=base.vae, text_encoder=base.text_encoder,
                                                 tokenizer=base.tokenizer, processor=processor,
                                                 transformer=base.transformer)

        def image_argument(images: list[np.ndarray]):
            """The pipeline's `image`: a list of pictures for EditPlus, one picture for Edit, None for none."""
            if not images:
                return None
            pil_images = [Image.fromarray(image) for image in images]
            return pil_images if pipeline_name == "QwenImageEditPlusPipeline" else pil_images[0]

        def encode(images: list[np.ndarray], fixed: bool = True) -> torch.Tensor:
            with torch.no_grad():
                if not fixed:
                    return pipe.encode_prompt(prompt, image=image_argument(images), device="cpu")[0]
                with ForwardMmTokenTypeIds(pipe.text_encoder):
                    embeds, mask = pipe.encode_prompt(prompt, image=image_argument(images), device="cpu")
            assert mask is None or bool(mask.all())
            return embeds

        images = pictures[picture_set]
        embeds = encode(images)
        # The ids the text encoder sees, as _get_qwen_prompt_embeds builds them.
        pictures_text = ""
        if pipeline_name == "QwenImageEditPlusPipeline":
            pictures_text = "".join(f"Picture {i + 1}: <|vision_start|><|image_pad|><|vision_end|>"
                                    for i in range(len(images)))
        inputs = processor(text=[pipe.prompt_template_encode.format(pictures_text + prompt)],
                           images=[Image.fromarray(image) for image in images] or None, padding=True,
                           return_tensors="pt")
        assert embeds.shape[1] == inputs["input_ids"].shape[1] - pipe.prompt_template_encode_start_idx
        case = {"name": name, "pipeline": pipeline_name, "pictures": picture_set,
                "picture_sizes": EDIT_PICTURE_SETS[picture_set], "prompt": prompt,
                "drop_idx": pipe.prompt_template_encode_start_idx, "prompt_template_encode": pipe.prompt_template_encode}
        tensors.update({f"{name}.input_ids": inputs["input_ids"], f"{name}.prompt_embeds": embeds})
        if images:
            tensors[f"{name}.image_grid_thw"] = inputs["image_grid_thw"]
            case["diffusers_0_42_sequential_positions_relative_change"] = round(
                relative_change(encode(images, fixed=False), embeds), 4)
            case["other_picture_relative_change"] = round(relative_change(encode(others[picture_set]), embeds), 4)
            print(f"edit_prompt {name}: grids {inputs['image_grid_thw'].tolist()}, embeds {list(embeds.shape)}; another "
                  f"picture changes them by {case['other_picture_relative_change']:.3f}, diffusers' sequential "
                  f"positions by {case['diffusers_0_42_sequential_positions_relative_change']:.3f}")
            assert case["other_picture_relative_change"] > 0.1, case
        cases.append(case)
    write_json(folder / "preprocessor_config.json", EDIT_PROCESSOR_CONFIG)
    save_golden(folder, tensors, {
        "cases": cases, "model": "models/tiny-qwen-image (text_encoder, tokenizer)",
        "call": "Pipeline(..., processor=Qwen2VLProcessor(image_processor, tokenizer)).encode_prompt(prompt, "
                "image=pictures, device='cpu') with mm_token_type_ids forwarded to the text encoder (diffusers PR "
                "#14189); input_ids = processor(text=[template.format(pictures_text + prompt)], images=pictures)"})
    return {"cases": cases}


def write_readme(processor: dict, towers: dict, text_with_images: dict, edit_prompts: dict) -> None:
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
    lines += ["", "## text_with_images/", "",
              "Text and pictures through the whole `Qwen2_5_VLModel` (vision tower, image rows scattered into the "
              "token embeddings, 3D M-RoPE positions from `get_rope_index`, text model) of a tiny "
              "`Qwen2_5_VLForConditionalGeneration` with a vocabulary of 64 (vision_start 60, vision_end 61, "
              "image_pad 62, video_pad 63; text tokens random in 0..59), patch_size 2, text head_dim 16 with "
              "mrope_section [2, 3, 3]; saved with `save_pretrained` beside its `preprocessor_config.json`. "
              "`golden.safetensors` holds per case: `input_ids_unexpanded` (one image_pad per picture), `input_ids` "
              "(expanded as the processor does: prod(grid) / 4 copies), `position_ids` [3, 1, L] "
              "(`model.model.get_rope_index(input_ids, mm_token_type_ids, image_grid_thw)`), `pixel_values`, "
              "`image_grid_thw`, `image_embeds` (the tower's output) and `last_hidden_state` (`hidden_states[-1]`, "
              "post-norm, of the forward with `mm_token_type_ids`); and `padded_input_ids`, `padded_attention_mask`, "
              "`padded_position_ids`: the same ids with 3 padding tokens before and 2 after, masked out, through "
              "get_rope_index (masked tokens get position 0). golden.json gives how much another picture and "
              "sequential positions change the hidden state from the first image token on.", ""]
    for case in text_with_images["cases"]:
        lines.append(f"* `{case['name']}`: {case['notes']}; grids {case['grids']}, L = {case['length']}, another "
                     f"picture changes the hidden state by {case['other_picture_relative_change']}, sequential "
                     f"positions by {case['sequential_positions_relative_change']}")
    lines += ["", "## edit_prompt/", "",
              "Qwen-Image-Edit prompt encoding with pictures on `models/tiny-qwen-image` (real tokenizer, text "
              "encoder with its vision tower): diffusers' `QwenImageEditPlusPipeline` / `QwenImageEditPipeline` "
              "`encode_prompt(prompt, image=pictures)`, with the processor of the published checkpoints "
              "(`preprocessor_config.json` here; `Qwen2VLProcessor` less its video processor, which needs "
              "torchvision). **diffusers 0.42.1 drops the processor's `mm_token_type_ids`, and transformers 5 then "
              "gives every token the sequential position 0..L-1, pictures included** (diffusers issue #14194); the "
              "goldens forward it (PR #14189), so the pictures get the 3D M-RoPE positions the model was trained "
              "with, as transformers 4.x computed them. golden.json records how far the unfixed pipeline is. "
              "Per case: `input_ids` (the processor's, expanded), `prompt_embeds` (the first 64 template tokens "
              "dropped) and, for cases with pictures, `image_grid_thw`; the pictures are `pictures.<set>.<i>` (U8 [H, W, "
              "3]), a set shared by the prompts that use it.", ""]
    for case in edit_prompts["cases"]:
        extra = ""
        if case["picture_sizes"]:
            extra = (f"; another picture changes the embeds by {case['other_picture_relative_change']}, diffusers "
                     f"0.42.1's sequential positions by "
                     f"{case['diffusers_0_42_sequential_positions_relative_change']}")
        lines.append(f"* `{case['name']}`: {case['pipeline']}, pictures `{case['pictures']}` {case['picture_sizes']}, prompt "
                     f"{case['prompt']!r}{extra}")
    lines += ["", f"Total size: {dir_size(OUT_DIR) / 1e6:.2f} MB", ""]
    (OUT_DIR / "README.md").write_text("\n".join(lines), encoding="utf-8")


def main() -> None:
    setup_determinism()
    processor = gen_processor()
    towers = {name: gen_tower(name, *spec) for name, spec in TOWER_CONFIGS.items()}
    text_with_images = gen_text_with_images()
    edit_prompts = gen_edit_prompts()
    write_readme(processor, towers, text_with_images, edit_prompts)
    size = dir_size(OUT_DIR)
    print(f"{OUT_DIR}: {size / 1e6:.2f} MB")
    assert size < 1.8e6, size
    for added in ("text_with_images", "edit_prompt"):
        assert dir_size(OUT_DIR / added) < 200e3, (added, dir_size(OUT_DIR / added))


if __name__ == "__main__":
    main()
