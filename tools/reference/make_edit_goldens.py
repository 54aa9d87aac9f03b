#!/usr/bin/env python3
"""Qwen-Image-Edit reference: the tiny edit model and the image-editing goldens (issue 14, item 9).

    python3 tools/reference/make_edit_goldens.py           # models/tiny-qwen-image-edit/ + tests/golden/edit/
    python3 tools/reference/make_edit_goldens.py --check   # regenerate both into a temp dir, compare byte for byte

models/tiny-qwen-image-edit/ is a complete QwenImageEditPlusPipeline folder in the layout diffusers' save_pretrained
writes; it reuses the text-to-image model's text_encoder, tokenizer, vae and scheduler through relative symlinks
and adds model_index.json, processor/ (the published Qwen-Image-Edit-2511 preprocessor_config.json, tokenizer files
symlinked) and a transformer of its own (zero_cond_t true, like 2511; weights scaled for sensitivity).
tests/golden/edit/<case>/ holds one pipeline call each (input PNGs, golden.json, golden.safetensors, and for cases
needing another transformer flag or pipeline class a model/ folder of symlinks); tests/golden/edit/README.md,
written here too, documents every file and tensor.

The published pipelines work at 384*384 (condition images) and 1024*1024 (VAE images, default output) pixels,
far too slow for CPU tests, so each case patches the pipeline module's CONDITION_IMAGE_SIZE and VAE_IMAGE_SIZE and
wraps its calculate_dimensions so that the default-output call calculate_dimensions(1024 * 1024, ratio) gets the
case's output area instead; golden.json records the three areas.

Two facts of the pinned stack shape the goldens (both in the README):
* transformers 5.24 loads Qwen2VLProcessor's video processor unconditionally and that class needs torchvision, which
  the reference stack must not have; so the harness builds the processor from processor/ itself (image processor
  and tokenizer, no video processor) and hands it to from_pretrained(..., processor=...).
* diffusers 0.42.1 does not pass the processor's mm_token_type_ids to the text encoder, and transformers 5.x then
  falls back to sequential positions arange(L) on all three M-RoPE axes instead of get_rope_index's 3-D positions
  (huggingface/diffusers#14194, fix proposed in #14189). The goldens follow the pinned pipeline; the `*_mrope`
  tensors give the same call with the fix applied (the positions Qwen-Image-Edit was trained with).
"""

from __future__ import annotations

import argparse
import contextlib
import filecmp
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (REPO_ROOT, describe_safetensors, reinit_params, save_golden, setup_determinism,  # noqa: E402
                    write_json)
from make_vision_goldens import picture, preprocessor_config  # noqa: E402

TEXT_TO_IMAGE_MODEL = "models/tiny-qwen-image"
EDIT_MODEL = "models/tiny-qwen-image-edit"
EDIT_GOLDENS = "tests/golden/edit"
# processor/preprocessor_config.json of Qwen/Qwen-Image-Edit-2511 (and 2509).
PUBLISHED_PREPROCESSOR = preprocessor_config(min_pixels=3136, max_pixels=12845056)
IMAGE_TOKEN_ID, VISION_END_ID = 151655, 151653
PROMPT_DROP_TOKENS = 64  # prompt_template_encode_start_idx of both edit pipelines
FULL_AREA = 1024 * 1024  # the pipelines' default output area, and VAE_IMAGE_SIZE of the plus module


# ---------------------------------------------------------------------------------------------
# The processor without torchvision
# ---------------------------------------------------------------------------------------------
def image_only_processor_class():
    from transformers import Qwen2VLProcessor

    class ImageOnlyQwen2VLProcessor(Qwen2VLProcessor):
        """Qwen2VLProcessor with no video processor. transformers 5.24 needs torchvision to load or even type-check
        Qwen2VLVideoProcessor; pictures and text go through the unchanged Qwen2VLProcessor code."""

        def check_argument_for_proper_class(self, argument_name, argument):
            if argument_name == "video_processor" and argument is None:
                return None
            return super().check_argument_for_proper_class(argument_name, argument)

    return ImageOnlyQwen2VLProcessor


def load_processor(folder: Path):
    from transformers import AutoImageProcessor, AutoTokenizer

    image_processor = AutoImageProcessor.from_pretrained(str(folder))
    assert type(image_processor).__name__ == "Qwen2VLImageProcessorPil", type(image_processor).__name__
    return image_only_processor_class()(image_processor=image_processor, tokenizer=AutoTokenizer.from_pretrained(
        str(folder)), video_processor=None)


def load_pipeline(model_dir: Path):
    import diffusers

    class_name = read_json(model_dir / "model_index.json")["_class_name"]
    pipe = getattr(diffusers, class_name).from_pretrained(str(model_dir), processor=load_processor(
        model_dir / "processor"), dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    return pipe


# ---------------------------------------------------------------------------------------------
# Model folders (symlinks plus a few small JSON files)
# ---------------------------------------------------------------------------------------------
def symlink(link: Path, target: Path) -> None:
    """A relative symlink at `link` to `target` (both absolute paths inside the same tree)."""
    link.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(os.path.relpath(target, link.parent), link)


def model_index(pipeline_class: str) -> dict:
    import diffusers

    return {"_class_name": pipeline_class, "_diffusers_version": diffusers.__version__,
            "processor": ["transformers", "Qwen2VLProcessor"],
            "scheduler": ["diffusers", "FlowMatchEulerDiscreteScheduler"],
            "text_encoder": ["transformers", "Qwen2_5_VLForConditionalGeneration"],
            "tokenizer": ["transformers", "Qwen2Tokenizer"],
            "transformer": ["diffusers", "QwenImageTransformer2DModel"],
            "vae": ["diffusers", "AutoencoderKLQwenImage"]}


# Narrower than the text-to-image transformer (head_dim 12, RoPE axes 4+4+4) to keep the file at 215 kB.
EDIT_TRANSFORMER = dict(num_attention_heads=2, attention_head_dim=12, axes_dims_rope=(4, 4, 4), joint_attention_dim=32,
                        num_layers=2)
SEED_EDIT_TRANSFORMER = 1005
ATTENTION_OUTPUT_GAIN, QK_NORM_GAIN, TEXT_VALUE_GAIN = 3.0, 2.0, 2.0


def build_edit_transformer():
    """A tiny QwenImageTransformer2DModel (EDIT_TRANSFORMER) with zero_cond_t and random weights, scaled
    so that the output tokens depend clearly on the reference tokens and the prompt: with the plain gain-1 init the
    attention is nearly uniform and its small contribution barely moves the prediction (another picture moved
    the final latents by 2 %, a changed prompt by 0.4 %). Attention output projections x3, per-head q/k RMSNorm
    gains x2 (logits x4), text value projection x2; with these every sensitivity figure of every case is > 0.1."""
    import tiny_models

    model = tiny_models.build_transformer(seed=SEED_EDIT_TRANSFORMER, zero_cond_t=True, **EDIT_TRANSFORMER)
    # the same draws as build_transformer's own re-initialisation, with the projections scaled
    reinit_params(model, seed=SEED_EDIT_TRANSFORMER, gain=1.0, bias_std=0.05,
                  overrides={"attn.to_out.0.weight": ATTENTION_OUTPUT_GAIN,
                             "attn.to_add_out.weight": ATTENTION_OUTPUT_GAIN,
                             "attn.add_v_proj.weight": TEXT_VALUE_GAIN})
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name.endswith(("norm_q.weight", "norm_k.weight", "norm_added_q.weight", "norm_added_k.weight")):
                parameter.mul_(QK_NORM_GAIN)
    return model


def write_case_transformer(folder: Path, source: Path, zero_cond_t: bool) -> None:
    """transformer/: the edit transformer's config with zero_cond_t set, its weights by symlink (the flag adds no
    parameter)."""
    config = read_json(source / "config.json")
    config["zero_cond_t"] = zero_cond_t
    write_json(folder / "config.json", config)
    symlink(folder / "diffusion_pytorch_model.safetensors", source / "diffusion_pytorch_model.safetensors")


def read_json(path: Path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def write_edit_model(root: Path) -> None:
    source, folder = root / TEXT_TO_IMAGE_MODEL, root / EDIT_MODEL
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    write_json(folder / "model_index.json", model_index("QwenImageEditPlusPipeline"))
    for name in ("scheduler", "text_encoder", "tokenizer", "vae"):
        symlink(folder / name, source / name)
    write_json(folder / "processor" / "preprocessor_config.json", PUBLISHED_PREPROCESSOR)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        symlink(folder / "processor" / name, source / "tokenizer" / name)
    build_edit_transformer().save_pretrained(str(folder / "transformer"), safe_serialization=True)


def write_case_model(root: Path, case_folder: Path, pipeline_class: str, zero_cond_t: bool) -> None:
    """<case>/model/: the edit model with another pipeline class and/or transformer flag."""
    edit = root / EDIT_MODEL
    folder = case_folder / "model"
    folder.mkdir(parents=True)
    write_json(folder / "model_index.json", model_index(pipeline_class))
    for name in ("processor", "scheduler", "text_encoder", "tokenizer", "vae"):
        symlink(folder / name, edit / name)
    write_case_transformer(folder / "transformer", edit / "transformer", zero_cond_t)


# ---------------------------------------------------------------------------------------------
# Cases
# ---------------------------------------------------------------------------------------------
PLUS, LEGACY = "QwenImageEditPlusPipeline", "QwenImageEditPipeline"
CASES = {
    "a_plus_1picture": dict(
        pipeline=PLUS, zero_cond_t=True, pictures=[(150, 100)], seed=21, steps=3, true_cfg_scale=4.0,
        prompt="Make the sky purple and add a small red boat.",
        other_prompt="Make the sky orange and add a small green boat.", negative_prompt=None, width=None,
        height=None, condition_area=128 * 72, vae_area=96 * 64, output_area=64 * 64,
        note="Qwen-Image-Edit-2511 style (zero_cond_t); true_cfg_scale 4 without a negative prompt, so no CFG; "
             "default output size; the 4x10-patch condition grid (2x5 merged units) leaves two partial 4x4-unit "
             "attention windows"),
    "b_plus_3pictures_cfg": dict(
        pipeline=PLUS, zero_cond_t=True, pictures=[(96, 60), (60, 100), (150, 54)], seed=22, steps=2,
        true_cfg_scale=4.0, prompt="Put the cat from picture 2 on the sofa from picture 1, painted like picture 3.",
        other_prompt="Put the dog from picture 2 on the sofa from picture 1, painted like picture 3.",
        negative_prompt="blurry, low quality", width=88, height=72, condition_area=64 * 64, vae_area=64 * 32,
        output_area=64 * 64,
        note="three pictures (landscape, portrait, wide) with condition and VAE sizes that differ; CFG; explicit "
             "width 88 / height 72, floored to multiples of 16 (80x64)"),
    "c_plus_2509_2pictures_cfg": dict(
        pipeline=PLUS, zero_cond_t=False, pictures=[(64, 112), (150, 50)], seed=23, steps=2, true_cfg_scale=4.0,
        prompt="Replace the background of picture 1 with the beach of picture 2.",
        other_prompt="Replace the background of picture 1 with the forest of picture 2.", negative_prompt=" ",
        width=None, height=None, condition_area=64 * 32, vae_area=64 * 32, output_area=64 * 64,
        note="Qwen-Image-Edit-2509 style (zero_cond_t off, same weights); CFG with negative prompt ' '; default "
             "size from the LAST picture (wide); condition images under min_pixels, so the processor scales them up"),
    "d_edit_legacy_cfg": dict(
        pipeline=LEGACY, zero_cond_t=False, pictures=[(100, 80)], seed=24, steps=2, true_cfg_scale=4.0,
        prompt="Turn it into a winter scene.", other_prompt="Turn it into a summer scene.",
        negative_prompt="blurry", width=None, height=None, condition_area=64 * 64, vae_area=64 * 64,
        output_area=64 * 64,
        note="the original single-picture QwenImageEditPipeline: the picture is resized once to the output-area "
             "size and that one image feeds both the processor and the VAE (so its three areas are one)"),
}


def case_model(name: str, spec: dict) -> str:
    """Repository-relative path of the model folder a case loads."""
    if spec["pipeline"] == PLUS and spec["zero_cond_t"]:
        return EDIT_MODEL
    return f"{EDIT_GOLDENS}/{name}/model"


def pipeline_module(pipeline_class: str):
    from diffusers.pipelines.qwenimage import pipeline_qwenimage_edit, pipeline_qwenimage_edit_plus

    return pipeline_qwenimage_edit_plus if pipeline_class == PLUS else pipeline_qwenimage_edit


def target_size(module, area: int, width: int, height: int) -> tuple[int, int]:
    """(width, height) = the module's calculate_dimensions(area, width / height) (multiples of 32)."""
    return tuple(module.calculate_dimensions(area, width / height)[:2])


@contextlib.contextmanager
def reduced_areas(spec: dict):
    """Patch the pipeline module's sizes for this case (see the module docstring)."""
    module = pipeline_module(spec["pipeline"])
    original = module.calculate_dimensions
    saved = {name: getattr(module, name) for name in ("CONDITION_IMAGE_SIZE", "VAE_IMAGE_SIZE")
             if hasattr(module, name)}
    assert FULL_AREA not in (spec["condition_area"], spec["vae_area"])

    def calculate_dimensions(target_area, ratio):
        return original(spec["output_area"] if target_area == FULL_AREA else target_area, ratio)

    module.calculate_dimensions = calculate_dimensions
    if saved:
        module.CONDITION_IMAGE_SIZE, module.VAE_IMAGE_SIZE = spec["condition_area"], spec["vae_area"]
    try:
        yield
    finally:
        module.calculate_dimensions = original
        for name, value in saved.items():
            setattr(module, name, value)


@contextlib.contextmanager
def spied(obj, name: str, record: list):
    """Replace obj.name by a wrapper appending (args, kwargs, result) to `record`."""
    original = getattr(obj, name)

    def spy(*args, **kwargs):
        result = original(*args, **kwargs)
        record.append((args, kwargs, result))
        return result

    setattr(obj, name, spy)
    try:
        yield
    finally:
        delattr(obj, name)


@contextlib.contextmanager
def hooked(module, hook, pre: bool = False):
    handle = (module.register_forward_pre_hook(hook, with_kwargs=True) if pre
              else module.register_forward_hook(hook, with_kwargs=True))
    try:
        yield
    finally:
        handle.remove()


def with_mm_token_type_ids(module, args, kwargs):
    """The fix of huggingface/diffusers#14189: the text encoder also gets the processor's mm_token_type_ids
    (1 at <|image_pad|>, 0 elsewhere; checked against the processor in check_processor_call)."""
    kwargs = dict(kwargs, mm_token_type_ids=(kwargs["input_ids"] == IMAGE_TOKEN_ID).to(torch.int64))
    return args, kwargs


def run(pipe, spec: dict, pictures: list, output_type: str, prompt: str | None = None, mrope: bool = False,
        capture: bool = False):
    """One pipeline call. With capture, also return the intermediates (dict)."""
    kwargs = dict(image=pictures if spec["pipeline"] == PLUS else pictures[0], prompt=prompt or spec["prompt"],
                  negative_prompt=spec["negative_prompt"], true_cfg_scale=spec["true_cfg_scale"],
                  num_inference_steps=spec["steps"], width=spec["width"], height=spec["height"],
                  generator=torch.Generator("cpu").manual_seed(spec["seed"]), output_type=output_type)
    record = {"encode_prompt": [], "prepare_latents": [], "text_encoder": [], "visual": [], "rotary": [],
              "transformer": []}
    te = pipe.text_encoder
    with contextlib.ExitStack() as stack:
        stack.enter_context(reduced_areas(spec))
        if mrope:
            stack.enter_context(hooked(te, with_mm_token_type_ids, pre=True))
        if capture:
            stack.enter_context(spied(pipe, "encode_prompt", record["encode_prompt"]))
            stack.enter_context(spied(pipe, "prepare_latents", record["prepare_latents"]))
            stack.enter_context(hooked(te, lambda m, a, k: record["text_encoder"].append(dict(k)), pre=True))
            stack.enter_context(hooked(te.model.visual, lambda m, a, k, o: record["visual"].append(o.pooler_output)))
            stack.enter_context(hooked(te.model.language_model.rotary_emb,
                                       lambda m, a, k, o: record["rotary"].append(a[1].clone())))
            stack.enter_context(hooked(pipe.transformer, lambda m, a, k, o: record["transformer"].append((k, o[0]))))
        with torch.no_grad():
            images = pipe(**kwargs).images
    return (images, record) if capture else images


def relative_change(new: torch.Tensor, ref: torch.Tensor) -> float:
    return ((new.double() - ref.double()).norm() / ref.double().norm()).item()


def rope_index_reference(input_ids: list[int], grids: list[list[int]], merge: int = 2) -> np.ndarray:
    """Qwen2.5-VL's 3-D positions for one unpadded sequence, written out independently of transformers: text
    tokens count up on all three axes; the (h/merge)*(w/merge) <|image_pad|> tokens of one picture get
    (start, start + row, start + col), row-major, where start = the position the next text token would have had;
    the text after the picture resumes at start + max(h, w)/merge."""
    positions, position, grid_iter, i = [], 0, iter(grids), 0
    while i < len(input_ids):
        if input_ids[i] != IMAGE_TOKEN_ID:
            positions.append((position, position, position))
            position, i = position + 1, i + 1
            continue
        _, h, w = next(grid_iter)
        h, w = h // merge, w // merge
        positions += [(position, position + r, position + c) for r in range(h) for c in range(w)]
        i += h * w
        position += max(h, w)
    return np.array(positions, dtype=np.int64).T


def processor_text(pipe, spec: dict, prompt: str) -> str:
    """The text the pipeline gives the processor: its template around the picture markers and the prompt."""
    if spec["pipeline"] == LEGACY:
        return pipe.prompt_template_encode.format(prompt)
    markers = "".join(f"Picture {i + 1}: <|vision_start|><|image_pad|><|vision_end|>"
                      for i in range(len(spec["pictures"])))
    return pipe.prompt_template_encode.format(markers + prompt)


def check_processor_call(pipe, spec: dict, record: dict) -> None:
    """processor(text=processor_text(...), images=condition images) gives the captured input ids, and its
    mm_token_type_ids are what with_mm_token_type_ids passes."""
    prompts = [spec["prompt"]] + ([spec["negative_prompt"]] if len(record["encode_prompt"]) == 2 else [])
    for call, prompt in enumerate(prompts):
        images = record["encode_prompt"][call][1]["image"]
        outputs = pipe.processor(text=[processor_text(pipe, spec, prompt)], images=images, padding=True,
                                 return_tensors="pt")
        captured = record["text_encoder"][call]
        assert torch.equal(outputs["input_ids"], captured["input_ids"])
        assert torch.equal(outputs["pixel_values"], captured["pixel_values"])
        assert torch.equal(outputs["mm_token_type_ids"], (captured["input_ids"] == IMAGE_TOKEN_ID).to(torch.int64))


def picture_files(folder: Path, spec: dict) -> tuple[list[str], list[Image.Image]]:
    files, images = [], []
    for index, (width, height) in enumerate(spec["pictures"]):
        name = f"picture_{index}.png"
        Image.fromarray(picture(width, height, seed=spec["seed"] * 10 + index)).save(folder / name)
        files.append(name)
        with Image.open(folder / name) as image:  # what the C++ side decodes
            images.append(image.convert("RGB"))
    return files, images


def check_resizes(pictures: list, condition_sizes: list, vae_sizes: list, condition_images: list,
                  vae_images: list) -> None:
    """README note 2, recomputed with Pillow and numpy alone: each resize is a Lanczos resize of the decoded
    picture (legacy: of its only picture, to one size), and the VAE image is float32 x / 255 * 2 - 1."""
    for picture_image, condition_size, vae_size, condition, vae in zip(pictures, condition_sizes, vae_sizes,
                                                                       condition_images, vae_images):
        assert np.array_equal(np.asarray(picture_image.resize(condition_size, Image.LANCZOS)), np.asarray(condition))
        pixels = np.asarray(picture_image.resize(vae_size, Image.LANCZOS)).astype(np.float32) / np.float32(255)
        expected = (np.float32(2) * pixels - np.float32(1)).transpose(2, 0, 1)[None, :, None]
        assert np.array_equal(expected, vae.numpy())


def text_encoder_tensors(pipe, record: dict, prefix: str, call: int) -> dict:
    """input ids, M-RoPE ids and the positions the pinned text encoder really used, for encode_prompt call `call`."""
    inputs = record["text_encoder"][call]
    ids, mask, grid = inputs["input_ids"], inputs["attention_mask"], inputs["image_grid_thw"]
    assert bool(mask.all()), "single prompts are never padded"
    length = ids.shape[1]
    assert torch.equal(record["rotary"][call], torch.arange(length).view(1, 1, -1).expand(3, 1, -1)), (
        "the pinned pipeline is expected to run the text model on sequential positions")
    mm_types = (ids == IMAGE_TOKEN_ID).to(torch.int64)
    position_ids, _ = pipe.text_encoder.model.get_rope_index(ids, mm_types, image_grid_thw=grid, attention_mask=mask)
    assert np.array_equal(position_ids[:, 0].numpy(), rope_index_reference(ids[0].tolist(), grid.tolist()))
    return {f"{prefix}input_ids": ids, f"{prefix}position_ids": position_ids}


def generate_case(root: Path, name: str, spec: dict) -> dict:
    folder = root / EDIT_GOLDENS / name
    folder.mkdir(parents=True)
    model = case_model(name, spec)
    if model != EDIT_MODEL:
        write_case_model(root, folder, spec["pipeline"], spec["zero_cond_t"])
    pipe = load_pipeline(root / model)
    assert type(pipe).__name__ == spec["pipeline"] and pipe.transformer.config.zero_cond_t == spec["zero_cond_t"]
    files, pictures = picture_files(folder, spec)
    module = pipeline_module(spec["pipeline"])
    do_cfg = spec["true_cfg_scale"] > 1 and spec["negative_prompt"] is not None

    latents, record = run(pipe, spec, pictures, "latent", capture=True)
    image = run(pipe, spec, pictures, "np")
    latents_mrope, record_mrope = run(pipe, spec, pictures, "latent", mrope=True, capture=True)
    check_processor_call(pipe, spec, record)

    # --- what the pipeline computed ---
    condition_images = record["encode_prompt"][0][1]["image"]
    condition_images = condition_images if isinstance(condition_images, list) else [condition_images]
    prepare_args = record["prepare_latents"][0][0]
    vae_images = prepare_args[0] if isinstance(prepare_args[0], list) else [prepare_args[0]]
    noise, image_latents = record["prepare_latents"][0][2]
    out_h, out_w = prepare_args[3], prepare_args[4]
    encoder_inputs = record["text_encoder"][0]
    visual_calls = len(record["visual"])
    assert visual_calls == (2 if do_cfg else 1) and all(torch.equal(v, record["visual"][0]) for v in record["visual"])
    assert len(record["encode_prompt"]) == visual_calls and len(record["text_encoder"]) == visual_calls
    first_kwargs, noise_pred = record["transformer"][0]
    assert torch.equal(first_kwargs["hidden_states"], torch.cat([noise, image_latents], dim=1))

    # sizes: what the patched module computes, checked against the images it produced
    if spec["pipeline"] == PLUS:
        condition_sizes = [target_size(module, spec["condition_area"], *p.size) for p in pictures]
        vae_sizes = [target_size(module, spec["vae_area"], *p.size) for p in pictures]
    else:
        condition_sizes = vae_sizes = [target_size(module, spec["output_area"], *pictures[0].size)]
    assert [c.size for c in condition_images] == condition_sizes
    assert [tuple(v.shape[-1:-3:-1]) for v in vae_images] == vae_sizes
    size_source = pictures[-1] if spec["pipeline"] == PLUS else pictures[0]  # the last picture / the only one
    default_w, default_h = target_size(module, spec["output_area"], *size_source.size)
    assert (out_w, out_h) == ((spec["width"] or default_w) // 16 * 16, (spec["height"] or default_h) // 16 * 16)

    check_resizes(pictures, condition_sizes, vae_sizes, condition_images, vae_images)

    tensors = {f"condition_image_{i}": torch.from_numpy(np.asarray(c).copy()) for i, c in enumerate(condition_images)}
    tensors.update({f"vae_image_{i}": v for i, v in enumerate(vae_images)})
    tensors.update(pixel_values=encoder_inputs["pixel_values"], image_grid_thw=encoder_inputs["image_grid_thw"],
                   image_embeds=record["visual"][0], image_latents=image_latents, noise=noise,
                   noise_pred_step0=noise_pred, latents=latents, latents_mrope=latents_mrope,
                   image=torch.from_numpy(image[0]), prompt_embeds=record["encode_prompt"][0][2][0],
                   prompt_embeds_mrope=record_mrope["encode_prompt"][0][2][0])
    tensors.update(text_encoder_tensors(pipe, record, "", 0))
    for _, _, (_, mask) in record["encode_prompt"]:
        assert mask is None, "a single unpadded prompt gives no mask"
    if do_cfg:
        tensors.update(negative_prompt_embeds=record["encode_prompt"][1][2][0],
                       negative_prompt_embeds_mrope=record_mrope["encode_prompt"][1][2][0])
        tensors.update(text_encoder_tensors(pipe, record, "negative_", 1))
    # The mrope run used get_rope_index's positions, and the prompt embeddings depend on them.
    for call in range(visual_calls):
        expected = tensors[("negative_" if call else "") + "position_ids"]
        assert torch.equal(record_mrope["rotary"][call], expected)
    assert torch.equal(record_mrope["prepare_latents"][0][2][0], noise)

    float32_errors = check_recipe(pipe, spec, tensors, dict(img_shapes=first_kwargs["img_shapes"], out_h=out_h,
                                                            out_w=out_w))
    sensitivity = measure_sensitivity(pipe, spec, pictures, tensors, record)
    sensitivity["mrope_vs_sequential_prompt_embeds"] = relative_change(tensors["prompt_embeds_mrope"],
                                                                       tensors["prompt_embeds"])
    sensitivity["mrope_vs_sequential_latents"] = relative_change(latents_mrope, latents)
    sensitivity = {k: float(f"{v:.4g}") for k, v in sensitivity.items()}

    grids = encoder_inputs["image_grid_thw"].tolist()
    meta = {
        "pipeline_class": spec["pipeline"], "model": model, "zero_cond_t": spec["zero_cond_t"], "note": spec["note"],
        "images": files, "picture_sizes": [list(p.size) for p in pictures], "prompt": spec["prompt"],
        "negative_prompt": spec["negative_prompt"], "true_cfg_scale": spec["true_cfg_scale"], "do_true_cfg": do_cfg,
        "num_inference_steps": spec["steps"], "width": spec["width"], "height": spec["height"], "seed": spec["seed"],
        "generator": "torch.Generator('cpu').manual_seed(seed)", "max_sequence_length": 512,
        "condition_area": spec["condition_area"], "vae_area": spec["vae_area"], "output_area": spec["output_area"],
        "condition_sizes": [list(s) for s in condition_sizes],
        "processor_sizes": [[w * 14, h * 14] for _, h, w in grids], "image_grid_thw": grids,
        "vae_sizes": [list(s) for s in vae_sizes], "output_width": out_w, "output_height": out_h,
        "image_seq_len": noise.shape[1],
        "img_shapes": [list(s) for s in first_kwargs["img_shapes"][0]],
        "image_tokens": [t * h * w // 4 for t, h, w in grids], "prompt_tokens": tensors["input_ids"].shape[1],
        "prompt_embeds_tokens": tensors["prompt_embeds"].shape[1], "drop_tokens": PROMPT_DROP_TOKENS,
        "timesteps": [float(t) for t in pipe.scheduler.timesteps],
        "sigmas": [float(s) for s in pipe.scheduler.sigmas], "sensitivity": sensitivity,
        "float32_vs_float64": {k: float(f"{v:.3g}") for k, v in sorted(float32_errors.items())},
        "processor_text": processor_text(pipe, spec, spec["prompt"]),
        "negative_processor_text": processor_text(pipe, spec, spec["negative_prompt"]) if do_cfg else None,
    }
    save_golden(folder, tensors, meta)
    print(f"{name}: output {out_w}x{out_h}, condition {condition_sizes}, vae {vae_sizes}, grids {grids}, "
          f"sensitivity {sensitivity}", flush=True)
    return meta


def recompute(pipe, spec: dict, tensors: dict, sizes: dict, dtype: torch.dtype) -> dict:
    """The README's recipe, followed with the components alone, in `dtype`, from the golden inputs (pixel_values,
    input ids, position ids, VAE images, seed): tower, text model on both position schemes, VAE encoding, noise,
    schedule, denoising loop with CFG, decoding. Returns the recomputed goldens (float64 copies)."""
    te, vae, transformer, scheduler = pipe.text_encoder, pipe.vae, pipe.transformer, pipe.scheduler
    for module in (te, vae, transformer):
        module.to(dtype)
    out_h, out_w, img_shapes = sizes["out_h"], sizes["out_w"], sizes["img_shapes"]
    mean = torch.tensor(vae.config.latents_mean, dtype=dtype).view(1, 16, 1, 1, 1)
    std = torch.tensor(vae.config.latents_std, dtype=dtype).view(1, 16, 1, 1, 1)
    result = {}

    def pack(z):  # [1, 16, 1, h, w] -> [1, h/2 * w/2, 64]
        h, w = z.shape[-2:]
        return z.view(1, 16, h // 2, 2, w // 2, 2).permute(0, 2, 4, 1, 3, 5).reshape(1, h // 2 * (w // 2), 64)

    def encode(ids, positions):
        embeds = te.get_input_embeddings()(ids)
        embeds[ids == IMAGE_TOKEN_ID] = result["image_embeds"]
        hidden = te.model.language_model(inputs_embeds=embeds, position_ids=positions).last_hidden_state
        return hidden[:, PROMPT_DROP_TOKENS:]

    with torch.no_grad():
        result["image_embeds"] = te.model.visual(tensors["pixel_values"].to(dtype),
                                                 grid_thw=tensors["image_grid_thw"]).pooler_output
        for prefix in ["", "negative_"] if "negative_input_ids" in tensors else [""]:
            ids = tensors[prefix + "input_ids"]
            result[prefix + "prompt_embeds"] = encode(ids, None)
            result[prefix + "prompt_embeds_mrope"] = encode(ids, tensors[prefix + "position_ids"])
        references = [pack((vae.encode(tensors[f"vae_image_{i}"].to(dtype)).latent_dist.mode() - mean) / std)
                      for i in range(len(spec["pictures"]))]
        image_latents = result["image_latents"] = torch.cat(references, dim=1)
        generator = torch.Generator("cpu").manual_seed(spec["seed"])
        noise = torch.randn((1, 1, 16, out_h // 8, out_w // 8), generator=generator).transpose(1, 2)
        result["noise"] = pack(noise.to(dtype))
        config = scheduler.config
        mu = pipeline_module(spec["pipeline"]).calculate_shift(
            result["noise"].shape[1], config.base_image_seq_len, config.max_image_seq_len, config.base_shift,
            config.max_shift)
        tokens = result["noise"].shape[1]
        for suffix in ("", "_mrope"):
            scheduler.set_timesteps(sigmas=np.linspace(1.0, 1 / spec["steps"], spec["steps"]), mu=mu)
            latents = result["noise"]
            for step, t in enumerate(scheduler.timesteps):
                def predict(prompt):
                    return transformer(hidden_states=torch.cat([latents, image_latents], dim=1),
                                       timestep=t.expand(1).to(dtype) / 1000,
                                       encoder_hidden_states=result[prompt + suffix], encoder_hidden_states_mask=None,
                                       img_shapes=img_shapes)[0]
                full = predict("prompt_embeds")
                if step == 0 and not suffix:
                    result["noise_pred_step0"] = full
                noise_pred = full[:, :tokens]
                if "negative_input_ids" in tensors:
                    negative = predict("negative_prompt_embeds")[:, :tokens]
                    combined = negative + spec["true_cfg_scale"] * (noise_pred - negative)
                    noise_pred = combined * (noise_pred.norm(dim=-1, keepdim=True) /
                                             combined.norm(dim=-1, keepdim=True))
                latents = latents + (scheduler.sigmas[step + 1] - scheduler.sigmas[step]).to(dtype) * noise_pred
            result["latents" + suffix] = latents
        z = result["latents"].view(1, out_h // 16, out_w // 16, 16, 2, 2).permute(0, 3, 1, 4, 2, 5)
        z = z.reshape(1, 16, 1, out_h // 8, out_w // 8) * std + mean
        result["image"] = (vae.decode(z).sample[:, :, 0] / 2 + 0.5).clamp(0, 1)[0].permute(1, 2, 0)
    for module in (te, vae, transformer):
        module.to(torch.float32)
    return {name: value.double() for name, value in result.items()}


def check_recipe(pipe, spec: dict, tensors: dict, sizes: dict) -> dict:
    """The recipe in float32 reproduces every golden float tensor; in float64 it shows how far float32 itself
    is from exact (max |difference| / max |value|, per tensor), a floor for any port's agreement."""
    float32 = recompute(pipe, spec, tensors, sizes, torch.float32)
    float64 = recompute(pipe, spec, tensors, sizes, torch.float64)
    errors = {}
    for name, value in float32.items():
        golden = tensors[name].double()
        scale = golden.abs().max().item()
        assert (value - golden).abs().max().item() <= 1e-5 * scale, (name, (value - golden).abs().max().item())
        errors[name] = (float64[name] - golden).abs().max().item() / scale
    return errors


def measure_sensitivity(pipe, spec: dict, pictures: list, tensors: dict, record: dict) -> dict:
    """The goldens must move clearly when an input moves (asserted; the figures go into golden.json)."""
    others = [Image.fromarray(picture(*p.size, seed=spec["seed"] * 10 + 100 + i)) for i, p in enumerate(pictures)]
    one_other = [others[0]] + pictures[1:]
    latents_other, record_other = run(pipe, spec, one_other, "latent", capture=True)
    embeds_other = record_other["encode_prompt"][0][2][0]
    ids = tensors["input_ids"][0, PROMPT_DROP_TOKENS:]
    after_pictures = int((ids == VISION_END_ID).nonzero().max()) + 1
    latents_prompt, record_prompt = run(pipe, spec, pictures, "latent", prompt=spec["other_prompt"], capture=True)
    embeds_prompt = record_prompt["encode_prompt"][0][2][0]
    assert embeds_prompt.shape == tensors["prompt_embeds"].shape, "the other prompt must have as many tokens"
    figures = {
        "other_picture_0_prompt_embeds": relative_change(embeds_other, tensors["prompt_embeds"]),
        "other_picture_0_prompt_embeds_text_after_pictures": relative_change(
            embeds_other[:, after_pictures:], tensors["prompt_embeds"][:, after_pictures:]),
        "other_picture_0_latents": relative_change(latents_other, tensors["latents"]),
        "other_prompt_prompt_embeds": relative_change(embeds_prompt, tensors["prompt_embeds"]),
        "other_prompt_latents": relative_change(latents_prompt, tensors["latents"]),
    }
    # Reference tokens: the first transformer call with every picture's VAE latents replaced.
    _, record_refs = run(pipe, spec, others, "latent", capture=True)
    other_image_latents = record_refs["prepare_latents"][0][2][1]
    kwargs = dict(record["transformer"][0][0])
    tokens = tensors["noise"].shape[1]
    kwargs["hidden_states"] = torch.cat([tensors["noise"], other_image_latents], dim=1)
    with torch.no_grad():
        moved = pipe.transformer(**kwargs)[0]
        figures["other_image_latents_noise_pred_step0"] = relative_change(
            moved[:, :tokens], tensors["noise_pred_step0"][:, :tokens])
        # zero_cond_t: the same call with the flag flipped
        flag = pipe.transformer.zero_cond_t
        for module in [pipe.transformer, *pipe.transformer.transformer_blocks]:
            module.zero_cond_t = not flag
        flipped = pipe.transformer(**record["transformer"][0][0])[0]
        for module in [pipe.transformer, *pipe.transformer.transformer_blocks]:
            module.zero_cond_t = flag
    figures["zero_cond_t_flipped_noise_pred_step0"] = relative_change(flipped[:, :tokens],
                                                                      tensors["noise_pred_step0"][:, :tokens])
    for key in ("other_picture_0_prompt_embeds", "other_picture_0_latents", "other_prompt_prompt_embeds",
                "other_prompt_latents", "other_image_latents_noise_pred_step0"):
        assert figures[key] > 0.05, (key, figures[key])
    assert figures["other_picture_0_prompt_embeds_text_after_pictures"] > 0.01, figures
    assert figures["zero_cond_t_flipped_noise_pred_step0"] > 0.01, figures
    return figures


# ---------------------------------------------------------------------------------------------
# README
# ---------------------------------------------------------------------------------------------
TENSORS = {
    "condition_image_<i>": "U8 [h, w, 3]: picture i after the pipeline's Lanczos resize to condition_sizes[i] (the PIL "
                           "image the processor receives); legacy: the resize to the output-area size",
    "pixel_values": "F32 [sum(grid_h*grid_w), 1176]: the processor's output for all condition images, concatenated "
                    "in picture order (rows = patches, see tests/golden/vision/README.md)",
    "image_grid_thw": "I64 [n_pictures, 3]: (t, h, w) patch grid per picture, t = 1",
    "image_embeds": "F32 [sum(grid_h*grid_w)/4, 32]: `text_encoder.model.visual(pixel_values, grid_thw)"
                    ".pooler_output`, the rows that replace the <|image_pad|> embeddings (same for both prompts)",
    "input_ids": "I64 [1, L]: the prompt's token ids after <|image_pad|> expansion (grid_h*grid_w/4 copies per "
                 "picture); the text is golden.json's `processor_text`",
    "position_ids": "I64 [3, 1, L]: `model.get_rope_index(input_ids, mm_token_type_ids, image_grid_thw)`, the "
                    "3-D M-RoPE positions (temporal, height, width). The PINNED pipeline does NOT use them (it "
                    "runs the text model on arange(L) on all three axes); `*_mrope` tensors do",
    "prompt_embeds": "F32 [1, L - 64, 32]: `encode_prompt(...)`: hidden_states[-1] (post-norm) with the first 64 "
                     "tokens dropped; the pinned stack's sequential positions",
    "prompt_embeds_mrope": "F32 [1, L - 64, 32]: the same with `position_ids` (mm_token_type_ids passed, the fix "
                           "of huggingface/diffusers#14189)",
    "negative_input_ids, negative_position_ids, negative_prompt_embeds, negative_prompt_embeds_mrope":
        "the same for the negative prompt (with the same pictures); only when golden.json's do_true_cfg",
    "vae_image_<i>": "F32 [1, 3, 1, H_i, W_i] in [-1, 1]: picture i after the Lanczos resize to vae_sizes[i], "
                     "x / 255 * 2 - 1, what vae.encode receives",
    "image_latents": "F32 [1, sum((H_i/16)*(W_i/16)), 64]: the reference tokens: per picture vae.encode(...)"
                     ".latent_dist.mode() (the mean), (z - latents_mean) / latents_std, packed; concatenated "
                     "along tokens in picture order",
    "noise": "F32 [1, (H/16)*(W/16), 64]: the initial packed latents, randn((1, 1, 16, H/8, W/8), "
             "generator=torch.Generator('cpu').manual_seed(seed)) packed (VAE encoding draws nothing)",
    "noise_pred_step0": "F32 [1, (H/16)*(W/16) + sum((H_i/16)*(W_i/16)), 64]: the transformer's output at the first "
                        "step, conditional pass, FULL length (the pipeline keeps only the first (H/16)*(W/16) "
                        "rows); inputs: hidden_states = cat([noise, image_latents], 1), timestep = timesteps[0] / "
                        "1000, encoder_hidden_states = prompt_embeds, mask None, img_shapes from golden.json",
    "latents": "F32 [1, (H/16)*(W/16), 64]: `pipe(..., output_type='latent').images`, packed final latents",
    "latents_mrope": "F32 [1, (H/16)*(W/16), 64]: the same call with mm_token_type_ids passed to the text encoder",
    "image": "F32 [H, W, 3] in [0, 1]: `pipe(..., output_type='np').images[0]`",
}

JSON_KEYS = {
    "pipeline_class / model": "the diffusers class and the repository-relative folder to load",
    "images": "the input PNG files (RGB 8-bit) in picture order; picture_sizes = their (width, height)",
    "prompt, negative_prompt, true_cfg_scale, num_inference_steps, seed, max_sequence_length": "the call's "
        "arguments (negative_prompt null = not passed); do_true_cfg = true_cfg_scale > 1 and a negative prompt",
    "width, height": "the explicit output size passed (null = default, from the picture's aspect ratio)",
    "condition_area, vae_area, output_area": "the areas the patched module used in place of 384*384, 1024*1024 "
        "and the default-output 1024*1024 (legacy pipeline: only output_area exists; the other two repeat it)",
    "condition_sizes, vae_sizes": "[width, height] per picture = calculate_dimensions(area, width / height)",
    "processor_sizes, image_grid_thw": "[width, height] after the processor's smart_resize, and its patch grids",
    "output_width, output_height": "the generated image's size (explicit size floored to a multiple of 16)",
    "img_shapes": "the transformer's img_shapes[0]: (1, H/16, W/16) of the output, then one per picture",
    "processor_text, negative_processor_text": "the exact strings given to the processor (template, picture "
        "markers, prompt); the negative one null without CFG",
    "prompt_tokens, prompt_embeds_tokens, drop_tokens, image_tokens": "L, L - 64, 64, and the <|image_pad|> "
        "count per picture",
    "image_seq_len, timesteps, sigmas": "the output token count (H/16)*(W/16) that sets the schedule's shift mu, "
        "and the scheduler's timesteps (0..1000 scale) and sigmas (ending with 0)",
    "sensitivity": "relative L2 changes, see below",
    "float32_vs_float64": "per float tensor, max |float64 recipe - golden| / max |golden|: the recipe above run in "
        "float64 from the same inputs; how far float32 itself is from exact, so a float32 port should land "
        "within a small multiple of it (1e-4 relative is ample)",
}

README_NOTES = """
## How an edit call computes (diffusers {diffusers} QwenImageEditPlusPipeline / QwenImageEditPipeline)

1. **Sizes.** `calculate_dimensions(area, ratio)`: `w = sqrt(area * ratio)`, `h = w / ratio`, each rounded to a
   multiple of 32 with Python's `round` (halves to even), ratio = picture width / height. Plus pipeline, per
   picture: condition size from the condition area, VAE size from the VAE area. Output: the explicit width/height
   or calculate_dimensions(output area, ratio of the LAST picture), then floored to a multiple of 16. Legacy
   pipeline: one size, calculate_dimensions(output area, ratio of the picture), used for the picture's single
   resize (condition and VAE image alike) and as the default output size.
2. **Resizes.** Each resize starts from the decoded picture: `PIL.Image.resize((w, h), LANCZOS)` (diffusers'
   VaeImageProcessor, reducing_gap None; the plus pipeline resizes each picture twice, the legacy one once, and
   its VAE step's resize to the same size is a copy). The condition image then goes through the Qwen2-VL
   processor (its own smart_resize with BICUBIC to multiples of 28, rescale, CLIP normalisation, patches: see
   tests/golden/vision/README.md); the VAE image becomes float32 `x / 255 * 2 - 1`, [1, 3, 1, H, W]. The
   generator recomputes both resizes with Pillow alone and asserts equality.
3. **Prompt text** (`processor_text`): the system template, then in the user turn `Picture 1: <|vision_start|>`
   `<|image_pad|><|vision_end|>` for each picture (plus pipeline; numbered from 1, no separator) or one bare
   `<|vision_start|><|image_pad|><|vision_end|>` (legacy), then the prompt. The processor repeats each
   `<|image_pad|>` grid_t*grid_h*grid_w/4 times. One prompt is never padded, so the mask is all ones and
   encode_prompt returns mask None.
4. **Text encoder.** Token embeddings, with the `<|image_pad|>` rows replaced in order by `image_embeds`; the
   two language-model layers; `hidden_states[-1]` (after the final norm); the first 64 tokens (the system prompt)
   dropped. **Positions:** diffusers {diffusers} passes no `mm_token_type_ids`, so transformers {transformers}
   uses `arange(L)` on all three M-RoPE axes (the goldens assert this), i.e. plain 1-D RoPE as for
   text-to-image: `prompt_embeds`, `latents` and `image` are computed that way. Qwen-Image-Edit was trained with
   Qwen2.5-VL's 3-D positions (`position_ids`: text counts up; the picture's tokens get (s, s + row, s + col) with
   s the next text position; the text after it resumes at s + max(grid_h, grid_w)/2), which transformers 4.x
   computed and huggingface/diffusers#14189 restores: `*_mrope` tensors are the same calls with them.
5. **Reference latents.** `vae.encode(vae_image).latent_dist.mode()` (the mean: no sampling, the generator is not
   used), `(z - latents_mean) / latents_std`, packed like the noise (tests/golden/README.md note 1), concatenated
   over the pictures along tokens.
6. **Noise and schedule** as for text-to-image: noise = packed randn((1, 1, 16, H/8, W/8)) from the seeded
   generator; sigmas = linspace(1, 1/N, N); mu = calculate_shift over the OUTPUT tokens only ((H/16)*(W/16)).
7. **Transformer.** hidden_states = cat([latents, image_latents], dim 1); img_shapes[0] = [(1, H/16, W/16),
   (1, H_i/16, W_i/16) per picture]: RoPE frame position = index in img_shapes, text positions start after the
   largest of all images (tests/golden/README.md note 4). zero_cond_t (2511; note 6 there): the output tokens are
   modulated with timestep t, every reference token with timestep 0. Only the first (H/16)*(W/16) output rows
   are kept as noise_pred.
8. **CFG** (do_true_cfg): the negative prompt is encoded with the same pictures; the combination and the
   per-token norm rescale are text-to-image's (tests/golden/README.md note 9).
9. **Output**: unpack, `z * latents_std + latents_mean`, vae.decode, `(x / 2 + 0.5).clamp(0, 1)`.

The generator follows steps 4-9 with the components alone (no pipeline), from the golden inputs, and asserts
that it reproduces every float tensor (to 1e-5 of its largest value): this list is complete.

## Loading

`QwenImageEditPlusPipeline.from_pretrained(folder)` loads every component but `processor/`: transformers
{transformers} loads Qwen2VLProcessor's video processor unconditionally, and that class needs torchvision, which the
reference stack must not have (its image processor would switch to the torchvision backend, whose resize differs
from Pillow's). The harness builds the processor from `processor/` itself (`AutoImageProcessor` ->
`Qwen2VLImageProcessorPil`, `AutoTokenizer` -> the tokenizer the symlinks point at, no video processor) and passes
it: `from_pretrained(folder, processor=processor, dtype=torch.float32)`.

## Area patches

Per case, before the call: `pipeline_qwenimage_edit_plus.CONDITION_IMAGE_SIZE = condition_area`,
`VAE_IMAGE_SIZE = vae_area`, and the module's `calculate_dimensions` wrapped so that a target area of 1024*1024
(the default-output call) becomes `output_area` (the legacy module has only the last one).
"""


def tensor_section(folder: Path) -> list[str]:
    lines = []
    for name, dtype, shape in describe_safetensors(folder / "golden.safetensors"):
        lines.append(f"  * `{name}`: {dtype} {shape}")
    return lines


def write_readme(root: Path, metas: dict) -> None:
    import diffusers
    import transformers

    golden = root / EDIT_GOLDENS
    lines = ["# Image-editing goldens (Qwen-Image-Edit)", "",
             "Written by `python3 tools/reference/make_edit_goldens.py` (this file too); diffusers "
             f"{diffusers.__version__}, transformers {transformers.__version__}, torch "
             f"{torch.__version__.split('+')[0]}, CPU float32, 1 thread. `--check` regenerates into a temporary "
             "folder and compares byte for byte.", "",
             f"## `{EDIT_MODEL}/`", "",
             "A complete `QwenImageEditPlusPipeline` folder (save_pretrained layout): `model_index.json` (with the "
             "`processor` entry), `processor/preprocessor_config.json` (Qwen-Image-Edit-2511's: min_pixels 3136, "
             "max_pixels 12845056, patch 14, merge 2, temporal patch 2, CLIP mean/std, resample 3 = BICUBIC) with "
             "`tokenizer.json` and `tokenizer_config.json` symlinked from the tokenizer, `transformer/` "
             "(save_pretrained: 2 layers, 2 heads of dim 12, axes_dims_rope [4, 4, 4], joint_attention_dim 32, "
             "`zero_cond_t: true` like 2511; random weights with the attention output projections x3, the q/k "
             "RMSNorm gains x2 and the text value projection x2, so that the output depends clearly on the "
             "reference tokens and the prompt). `text_encoder/`, `tokenizer/`, `vae/` and "
             f"`scheduler/` are relative symlinks to `{TEXT_TO_IMAGE_MODEL}/` (see tests/golden/README.md; the text "
             "encoder's 2-block vision tower: hidden 16, 2 heads, patch 14, window 112, full attention in block 1).",
             "", "A case needing another transformer flag or pipeline class has `model/`: the same symlinks, its own "
             "`model_index.json` and `transformer/config.json` (weights symlinked: zero_cond_t adds no parameter).",
             README_NOTES.format(diffusers=diffusers.__version__, transformers=transformers.__version__).rstrip(), "",
             "## Files of a case", "",
             "`picture_<i>.png` (inputs), `golden.json`, `golden.safetensors` and maybe `model/`.", "",
             "golden.json:", ""]
    lines += [f"* `{k}`: {v}" for k, v in JSON_KEYS.items()]
    lines += ["", "golden.safetensors (H, W: output size; H_i, W_i: VAE size of picture i; L: prompt tokens):", ""]
    lines += [f"* `{k}`: {v}" for k, v in TENSORS.items()]
    lines += ["", "Sensitivity (golden.json `sensitivity`, relative L2 change of a golden when one input moves; "
              "the generator asserts > 0.05 for every prompt_embeds, latents and image-latents figure and > 0.01 "
              "for the text-after-pictures and zero_cond_t ones):", "",
              "* `other_picture_0_*`: picture 0 replaced by another picture of its size (seed + 100): "
              "prompt_embeds (all tokens, and only the text tokens after the last picture), final latents",
              "* `other_prompt_*`: the prompt with one or two words changed (same token count): prompt_embeds, "
              "latents",
              "* `other_image_latents_noise_pred_step0`: the first transformer call with every picture's reference "
              "latents replaced (prompt, noise and timestep kept): the output tokens",
              "* `zero_cond_t_flipped_noise_pred_step0`: the same call with the transformer's zero_cond_t flipped",
              "* `mrope_vs_sequential_*`: the `*_mrope` tensors against the pinned ones", "",
              "## Cases", ""]
    for name, meta in metas.items():
        lines += [f"### `{name}/`", "", f"{meta['pipeline_class']}, model `{meta['model']}`: {meta['note']}.", "",
                  f"* pictures {meta['picture_sizes']} -> condition {meta['condition_sizes']} -> processor "
                  f"{meta['processor_sizes']} (grids {meta['image_grid_thw']}); VAE {meta['vae_sizes']}; output "
                  f"{meta['output_width']}x{meta['output_height']}; areas {meta['condition_area']} / "
                  f"{meta['vae_area']} / {meta['output_area']}",
                  f"* {meta['num_inference_steps']} steps, seed {meta['seed']}, true_cfg_scale "
                  f"{meta['true_cfg_scale']}, negative_prompt {json.dumps(meta['negative_prompt'])}, CFG "
                  f"{'yes' if meta['do_true_cfg'] else 'no'}; L = {meta['prompt_tokens']}",
                  "* sensitivity: " + ", ".join(f"{k} {v}" for k, v in meta["sensitivity"].items()), ""]
        lines += tensor_section(golden / name) + [""]
    lines += ["## Sizes", "", f"* `{EDIT_GOLDENS}/`: {tree_bytes(golden) / 1e6:.2f} MB",
              f"* `{EDIT_MODEL}/`: {tree_bytes(root / EDIT_MODEL) / 1e3:.1f} kB (symlinks not followed)", ""]
    (golden / "README.md").write_text("\n".join(lines), encoding="utf-8")


# ---------------------------------------------------------------------------------------------
# Driver
# ---------------------------------------------------------------------------------------------
def tree_entries(folder: Path) -> dict[str, Path]:
    """Relative path -> path of every file and symlink under folder (symlinks not followed)."""
    out = {}
    for current, dirs, files in os.walk(folder):
        for entry in dirs + files:
            path = Path(current) / entry
            if path.is_symlink() or path.is_file():
                out[str(path.relative_to(folder))] = path
    return out


def tree_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in tree_entries(folder).values() if not p.is_symlink())


def generate(root: Path) -> None:
    setup_determinism()
    start = time.time()
    write_edit_model(root)
    check_edit_model(root)
    golden = root / EDIT_GOLDENS
    if golden.exists():
        shutil.rmtree(golden)
    metas = {name: generate_case(root, name, spec) for name, spec in CASES.items()}
    write_readme(root, metas)
    total = tree_bytes(golden) + tree_bytes(root / EDIT_MODEL)
    print(f"{time.time() - start:.1f}s; {EDIT_GOLDENS} + {EDIT_MODEL}: {total / 1e6:.2f} MB")
    assert total < 2.1e6, total


def check_edit_model(root: Path) -> None:
    """The folder loads as a QwenImageEditPlusPipeline and edits at a small size."""
    from diffusers import QwenImageEditPlusPipeline

    pipe = load_pipeline(root / EDIT_MODEL)
    assert isinstance(pipe, QwenImageEditPlusPipeline) and pipe.transformer.config.zero_cond_t
    spec = dict(CASES["a_plus_1picture"], steps=2)
    image = run(pipe, spec, [Image.fromarray(picture(150, 100, seed=0))], "np")
    assert image.shape == (1, 64, 64, 3) and 0 <= image.min() and image.max() <= 1 and image.std() > 0.01


def compare(old_root: Path, new_root: Path) -> list[str]:
    diffs = []
    for sub in (EDIT_MODEL, EDIT_GOLDENS):
        old, new = tree_entries(old_root / sub), tree_entries(new_root / sub)
        diffs += [f"only in {old_root / sub}: {p}" for p in sorted(old.keys() - new.keys())]
        diffs += [f"only in new: {sub}/{p}" for p in sorted(new.keys() - old.keys())]
        for p in sorted(old.keys() & new.keys()):
            a, b = old[p], new[p]
            if a.is_symlink() or b.is_symlink():
                same = a.is_symlink() and b.is_symlink() and os.readlink(a) == os.readlink(b)
            else:
                same = filecmp.cmp(a, b, shallow=False)
            if not same:
                diffs.append(f"differs: {sub}/{p}")
    return diffs


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
        os.symlink(REPO_ROOT / TEXT_TO_IMAGE_MODEL, root / TEXT_TO_IMAGE_MODEL)
        generate(root)
        diffs = compare(REPO_ROOT, root)
    for line in diffs:
        print(line)
    print("check:", "OK (bit-identical)" if not diffs else f"{len(diffs)} differences")
    sys.exit(1 if diffs else 0)


if __name__ == "__main__":
    main()
