#!/usr/bin/env python3
"""img2img, inpainting and edit-inpainting reference (issue 15): building-block and pipeline goldens.

    python3 tools/reference/make_inpaint_goldens.py           # tests/golden/inpaint/
    python3 tools/reference/make_inpaint_goldens.py --check   # regenerate into a temp dir, compare byte for byte

tests/golden/inpaint/blocks/ holds the pure image and scheduler building blocks, from Pillow, numpy and the
scheduler alone: diffusers' VaeImageProcessor steps for masks (grey conversion, Lanczos resize, binarize, the
padding_mask_crop crop region, the "fill" and "crop" resize modes, apply_overlay, blur), torch's nearest
interpolation to the latent grid, scale_noise and the strength -> first-timestep cut.
tests/golden/inpaint/<case>/ holds one whole pipeline call each (QwenImageImg2ImgPipeline and
QwenImageInpaintPipeline on models/tiny-qwen-image, QwenImageEditInpaintPipeline on models/tiny-qwen-image-edit)
with every intermediate. tests/golden/inpaint/README.md, written here too, documents every file and tensor and
the exact algorithm of each pipeline; the generator re-runs that algorithm with the components alone and asserts
that it reproduces the pipeline bit for bit.
"""

from __future__ import annotations

import argparse
import contextlib
import filecmp
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageOps

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO_ROOT, describe_safetensors, save_golden, setup_determinism  # noqa: E402
from make_edit_goldens import load_processor, with_mm_token_type_ids  # noqa: E402
from make_vision_goldens import picture  # noqa: E402

TEXT_TO_IMAGE_MODEL = "models/tiny-qwen-image"
EDIT_MODEL = "models/tiny-qwen-image-edit"
GOLDENS = "tests/golden/inpaint"
FULL_AREA = 1024 * 1024
IMG2IMG, INPAINT, EDIT_INPAINT = "QwenImageImg2ImgPipeline", "QwenImageInpaintPipeline", "QwenImageEditInpaintPipeline"


# ---------------------------------------------------------------------------------------------
# Inputs
# ---------------------------------------------------------------------------------------------
def soft_mask(width: int, height: int, shapes: list, tint=(255, 255, 255)) -> Image.Image:
    """An RGB mask: `shapes` ((kind, box) with kind "ellipse" or "rectangle", box in pixels) drawn in `tint` on
    black at 4x and Lanczos-reduced, so that its edges hold every grey level (binarization and the crop
    region's zero test both see partial pixels)."""
    big = Image.new("RGB", (width * 4, height * 4))
    draw = ImageDraw.Draw(big)
    for kind, (x0, y0, x1, y1) in shapes:
        getattr(draw, kind)((x0 * 4, y0 * 4, x1 * 4, y1 * 4), fill=tint)
    return big.resize((width, height), Image.LANCZOS)


def save_png(folder: Path, name: str, image: Image.Image) -> Image.Image:
    """Writes the PNG and returns what the C++ side decodes from it (load_image: convert("RGB"))."""
    image.save(folder / name)
    with Image.open(folder / name) as reread:
        return reread.convert("RGB")


def u8(image: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.asarray(image).copy())


def vae_input(pixels: np.ndarray) -> torch.Tensor:
    """VaeImageProcessor.preprocess after the resize: float32 x / 255, then 2 x - 1, [1, 3, H, W]."""
    unit = pixels.astype(np.float32) / np.float32(255)
    return torch.from_numpy((np.float32(2) * unit - np.float32(1)).transpose(2, 0, 1)[None].copy())


def relative_change(new: torch.Tensor, ref: torch.Tensor) -> float:
    return ((new.double() - ref.double()).norm() / ref.double().norm()).item()


# ---------------------------------------------------------------------------------------------
# Blocks: Pillow, torch and scheduler facts
# ---------------------------------------------------------------------------------------------
def check_grey_formula() -> None:
    """PIL convert("L") of RGB is (R*19595 + G*38470 + B*7471 + 0x8000) >> 16 for every one of the 2^24 colours
    (not the documented R*299/1000 + G*587/1000 + B*114/1000, which rounds differently)."""
    codes = np.arange(1 << 24, dtype=np.uint32)
    rgb = np.stack([codes >> 16, (codes >> 8) & 255, codes & 255], axis=-1).astype(np.uint8).reshape(4096, 4096, 3)
    grey = np.asarray(Image.fromarray(rgb).convert("L")).reshape(-1).astype(np.uint32)
    r, g, b = codes >> 16, (codes >> 8) & 255, codes & 255
    assert np.array_equal(grey, (r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16)
    documented = (r * 299 + g * 587 + b * 114) // 1000
    assert not np.array_equal(grey, documented)


def get_timesteps_table(scheduler) -> list:
    """[N, strength, t_start, steps kept] from the pipelines' own get_timesteps (null t_start: the pipeline
    raises, no step left)."""
    from diffusers import QwenImageImg2ImgPipeline

    class Holder:
        pass

    holder = Holder()
    holder.scheduler = scheduler
    table = []
    for steps in (1, 2, 3, 4, 5, 7, 10, 20, 25, 28, 50):
        for strength in (0.0, 0.05, 0.1, 0.25, 0.3, 0.33, 0.5, 0.56, 0.6, 0.7, 0.75, 0.8, 0.9, 0.95, 0.99, 1.0):
            with np.errstate(invalid="ignore"):  # one step with shift_terminal: NaN sigmas, same cut
                scheduler.set_timesteps(sigmas=np.linspace(1.0, 1 / steps, steps), mu=0.8)
            timesteps, kept = QwenImageImg2ImgPipeline.get_timesteps(holder, steps, strength, "cpu")
            t_start = steps - kept
            assert scheduler.begin_index == t_start and len(timesteps) == kept
            table.append([steps, strength, t_start if kept >= 1 else None, kept])
    return table


def interpolate_cases(generator: torch.Generator) -> tuple[dict, list]:
    """torch.nn.functional.interpolate(x, size) (mode nearest) of a [1, 1, 19, 27] tensor to sizes covering
    its three code paths (same size, exactly twice, any other ratio)."""
    source = torch.rand((1, 1, 19, 27), generator=generator)
    tensors, sizes = {"interpolate_source": source}, [(8, 12), (5, 7), (38, 54), (19, 27), (21, 10), (57, 31)]
    for h, w in sizes:
        tensors[f"interpolate_{h}x{w}"] = torch.nn.functional.interpolate(source, size=(h, w))
    return tensors, [list(s) for s in sizes]


def scale_noise_cases(scheduler, generator: torch.Generator) -> tuple[dict, list]:
    """scheduler.scale_noise(sample, timestep, noise) with begin_index set (so the sigma is sigmas[index]), in
    float32 and bfloat16."""
    scheduler.set_timesteps(sigmas=np.linspace(1.0, 1 / 7, 7), mu=0.6)
    sample = torch.randn((1, 1, 16, 4, 6), generator=generator) * 2
    noise = torch.randn((1, 1, 16, 4, 6), generator=generator)
    tensors = {"scale_noise_sample": sample, "scale_noise_noise": noise, "scale_noise_sigmas": scheduler.sigmas}
    indices = [0, 1, 3, 6, 7]
    for index in indices:
        scheduler.set_begin_index(index)
        timestep = scheduler.timesteps[index:index + 1] if index < 7 else torch.tensor([0.0])
        tensors[f"scale_noise_f32_{index}"] = scheduler.scale_noise(sample, timestep, noise)
        tensors[f"scale_noise_bf16_{index}"] = scheduler.scale_noise(sample.bfloat16(), timestep, noise.bfloat16())
    return tensors, indices


def blocks(root: Path) -> None:
    from diffusers import FlowMatchEulerDiscreteScheduler
    from diffusers.image_processor import VaeImageProcessor

    folder = root / GOLDENS / "blocks"
    folder.mkdir(parents=True)
    check_grey_formula()
    mask_processor = VaeImageProcessor(vae_scale_factor=16, vae_latent_channels=16, do_normalize=False,
                                       do_binarize=True, do_convert_grayscale=True)
    image_processor = VaeImageProcessor(vae_scale_factor=16, vae_latent_channels=16)
    assert mask_processor.config.resample == "lanczos" and mask_processor.config.reducing_gap is None

    photo = save_png(folder, "picture.png", Image.fromarray(picture(70, 50, seed=501)))
    masks = {
        "mask_soft": save_png(folder, "mask_soft.png", soft_mask(70, 50, [("ellipse", (18, 10, 47, 38))],
                                                                     tint=(255, 190, 230))),
        "mask_corner": save_png(folder, "mask_corner.png", soft_mask(70, 50, [("rectangle", (61, 2, 69, 9))])),
        "mask_tall": save_png(folder, "mask_tall.png", soft_mask(70, 50, [("ellipse", (30, 1, 38, 49))])),
    }
    tensors = {"picture_grey": u8(photo.convert("L"))}
    tensors.update({f"{name}_grey": u8(mask.convert("L")) for name, mask in masks.items()})

    # Gaussian blur (VaeImageProcessor.blur = ImageFilter.GaussianBlur(radius)) on the RGB mask and picture.
    blur_radii = [0.5, 1, 2.5, 4, 40]
    for radius in blur_radii:
        key = str(radius).replace(".", "p")
        tensors[f"blur_{key}_mask_soft"] = u8(VaeImageProcessor.blur(masks["mask_soft"], radius))
        if radius in (1, 40):
            tensors[f"blur_{key}_picture"] = u8(VaeImageProcessor.blur(photo, radius))
    tensors["invert_mask_soft"] = u8(ImageOps.invert(masks["mask_soft"]))

    # get_crop_region (padding_mask_crop)
    crop_cases = []
    for mask_name, width, height, pad in (("mask_soft", 64, 48, 0), ("mask_soft", 48, 64, 8), ("mask_soft", 96, 32, 4),
                                          ("mask_corner", 64, 64, 4), ("mask_corner", 32, 96, 3),
                                          ("mask_tall", 96, 32, 2), ("mask_tall", 64, 48, 30)):
        region = VaeImageProcessor.get_crop_region(masks[mask_name], width, height, pad=pad)
        crop_cases.append(dict(mask=mask_name, width=width, height=height, pad=pad, region=[int(v) for v in region]))

    # resize modes of VaeImageProcessor.resize for PIL pictures (fill stretches edge rows with Resample boxes)
    resize_cases = []
    for mode in ("fill", "crop"):  # "default" is Image.resize (tests/golden/image/)
        for width, height in ((48, 48), (96, 32), (64, 48), (70, 50)):
            name = f"resize_{mode}_{width}x{height}"
            tensors[name] = u8(image_processor.resize(photo, height, width, resize_mode=mode))
            resize_cases.append(dict(mode=mode, width=width, height=height, expected=name))
    # Resample boxes alone: zero-extent edge boxes like _resize_and_fill's (which uses BICUBIC), and general ones.
    box_cases = []
    for index, (size, box) in enumerate((((70, 5), (0, 0, 70, 0)), ((70, 4), (0, 50, 70, 50)), ((3, 50), (0, 0, 0, 50)),
                                         ((6, 50), (70, 0, 70, 50)), ((33, 21), (10.5, 3.25, 60, 44.75)),
                                         ((90, 12), (5, 5, 65, 45)), ((20, 60), (0, 10, 70, 30)))):
        name = f"box_{index}"
        tensors[name] = u8(photo.resize(size, Image.LANCZOS, box=box))
        box_cases.append(dict(width=size[0], height=size[1], box=list(box), expected=name))

    # The mask processor and the image processor, with and without a crop region.
    preprocess_cases = []
    for mask_name, width, height, pad in (("mask_soft", 64, 48, None), ("mask_soft", 48, 64, 8),
                                          ("mask_tall", 96, 32, 2), ("mask_corner", 64, 64, 4)):
        crop = (None if pad is None else
                [int(v) for v in VaeImageProcessor.get_crop_region(masks[mask_name], width, height, pad=pad)])
        mode = "default" if crop is None else "fill"
        name = f"preprocess_{mask_name}_{width}x{height}" + ("" if pad is None else f"_pad{pad}")
        processed = mask_processor.preprocess(masks[mask_name], height=height, width=width, resize_mode=mode,
                                              crops_coords=crop)
        assert torch.equal(processed, (processed > 0.5).float())
        tensors[name + "_mask"] = (processed > 0.5).to(torch.uint8)  # 0/1, stored as U8
        image = image_processor.preprocess(photo, height=height, width=width, resize_mode=mode, crops_coords=crop)
        expected_pixels = np.asarray(image_processor.resize(photo.crop(crop) if crop else photo, height, width,
                                                            resize_mode=mode))
        assert torch.equal(image, vae_input(expected_pixels)), "preprocess = resize, x / 255 * 2 - 1"
        if mask_name == "mask_soft" and crop:
            tensors[name + "_image"] = image
        preprocess_cases.append(dict(mask=mask_name, width=width, height=height, crop=crop, resize_mode=mode,
                                     expected=name))
        if crop is None:  # binarize: v / 255 >= 0.5 in float32, i.e. grey level >= 128
            grey = np.asarray(masks[mask_name].resize((width, height), Image.LANCZOS).convert("L"))
            assert np.array_equal(tensors[name + "_mask"][0, 0].numpy(), (grey >= 128).astype(np.float32))

    # apply_overlay(mask, init_image, image, crop_coords)
    generated = {size: Image.fromarray(picture(*size, seed=502 + size[0])) for size in ((64, 48), (48, 64))}
    overlay_cases = []
    for mask_name, size, crop in (("mask_soft", (64, 48), None), ("mask_soft", (48, 64), [15, 0, 51, 48]),
                                  ("mask_corner", (64, 48), [55, 0, 70, 11])):
        if crop is None:
            source = generated[size].resize(photo.size, Image.LANCZOS)
            tensors[f"overlay_{mask_name}_generated"] = u8(source)
        else:
            source = generated[size]
        name = f"overlay_{mask_name}_{size[0]}x{size[1]}" + ("_crop" if crop else "")
        tensors[name] = u8(image_processor.apply_overlay(masks[mask_name], photo, source, crop))
        overlay_cases.append(dict(mask=mask_name, generated=f"generated_{size[0]}x{size[1]}" if crop else
                                  f"overlay_{mask_name}_generated", crop=crop, expected=name))
    for size, image in generated.items():
        tensors[f"generated_{size[0]}x{size[1]}"] = u8(image)

    generator = torch.Generator("cpu").manual_seed(503)
    interpolate, interpolate_sizes = interpolate_cases(generator)
    tensors.update(interpolate)
    scheduler = FlowMatchEulerDiscreteScheduler.from_pretrained(str(root / TEXT_TO_IMAGE_MODEL / "scheduler"))
    noise_tensors, noise_indices = scale_noise_cases(scheduler, generator)
    tensors.update(noise_tensors)
    meta = dict(masks={name: f"{name}.png" for name in masks}, picture="picture.png",
                blur_radii=blur_radii, crop_regions=crop_cases, resize_cases=resize_cases, box_cases=box_cases,
                preprocess_cases=preprocess_cases, overlay_cases=overlay_cases, interpolate_sizes=interpolate_sizes,
                scale_noise_indices=noise_indices, scale_noise_mu=0.6, scale_noise_steps=7,
                get_timesteps=get_timesteps_table(scheduler))
    save_golden(folder, tensors, meta)


# ---------------------------------------------------------------------------------------------
# Pipeline cases
# ---------------------------------------------------------------------------------------------
ELLIPSE = [("ellipse", (30, 14, 78, 52))]
CASES = {
    "a_img2img": dict(
        pipeline=IMG2IMG, picture=(80, 56), mask=None, width=64, height=48, strength=0.6, steps=5, seed=31,
        prompt="a lighthouse on a cliff at dusk", other_prompt=None, negative_prompt=None, true_cfg_scale=4.0,
        note="img2img without CFG (true_cfg_scale 4 but no negative prompt); the 80x56 picture is resized to "
             "64x48; strength 0.6 of 5 steps keeps the last 3"),
    "b_img2img_cfg": dict(
        pipeline=IMG2IMG, picture=(72, 72), mask=None, width=64, height=64, strength=0.6, steps=4, seed=32,
        prompt="a watercolor fox in a forest", negative_prompt="blurry, low quality", true_cfg_scale=4.0,
        note="img2img with CFG; strength 0.6 of 4 steps: init_timestep 2.4, t_start int(1.6) = 1, 3 steps"),
    "c_inpaint": dict(
        pipeline=INPAINT, picture=(100, 70), mask=(100, 70, ELLIPSE), width=80, height=48, strength=1.0, steps=3,
        seed=33, prompt="a red fox in the snow", negative_prompt=None, true_cfg_scale=4.0,
        note="inpaint, strength 1 (pure noise start), no CFG, non-square 80x48 from a 100x70 picture"),
    "d_inpaint_blur_cfg": dict(
        pipeline=INPAINT, picture=(50, 84), mask=(50, 84, [("ellipse", (8, 20, 40, 60))]), mask_blur=3, width=48,
        height=80, strength=0.7, steps=10, seed=34, prompt="a bouquet of sunflowers", negative_prompt="dark",
        true_cfg_scale=3.0,
        note="inpaint, strength 0.7 of 10 steps (t_start 3, 7 steps), CFG, portrait 48x80, the mask blurred first with "
             "VaeImageProcessor.blur(mask, 3) (then binarized by the pipeline)"),
    "e_inpaint_crop": dict(
        pipeline=INPAINT, picture=(120, 90), mask=(120, 90, [("rectangle", (84, 12, 104, 30)),
                                                            ("ellipse", (76, 24, 96, 44))]),
        padding_mask_crop=6, width=64, height=48, strength=0.8, steps=5, seed=35, prompt="a hot air balloon",
        negative_prompt=None, true_cfg_scale=4.0,
        note="inpaint with padding_mask_crop 6: the crop region around the mask (aspect 64:48) is cut from the "
             "picture and the mask, resized with resize_mode 'fill', inpainted at 64x48, and pasted back with "
             "apply_overlay (output_type must be 'pil'); strength 0.8 of 5 steps (t_start 1)"),
    "f_edit_inpaint_cfg": dict(
        pipeline=EDIT_INPAINT, picture=(100, 80), mask=(100, 80, [("ellipse", (40, 16, 90, 60))]), width=None,
        height=None, output_area=96 * 64, strength=0.75, steps=4, seed=36, prompt="Turn the flowers into snow.",
        negative_prompt="blurry", true_cfg_scale=4.0,
        note="QwenImageEditInpaintPipeline on the tiny Qwen-Image-Edit-2511-style model (zero_cond_t): size from "
             "calculate_dimensions(area, 100/80) = 96x64 (area patched from 1024*1024 to 96*64); the resized "
             "picture is the Qwen2-VL condition image, the VAE image, the reference tokens and the blend target; "
             "CFG; strength 0.75 of 4 steps (t_start 1)"),
}


@contextlib.contextmanager
def patched(obj, name: str, replacement):
    original = getattr(obj, name)
    setattr(obj, name, replacement(original))
    try:
        yield
    finally:
        setattr(obj, name, original)


@contextlib.contextmanager
def recording(pipe, spec: dict, record: dict):
    """Spies: generator draws (in order), posterior samples, scale_noise and blend inputs, the mask and image
    processors' outputs, prepare_latents, prepare_mask_latents, encode_prompt, the last latents and the
    pictures handed to apply_overlay."""
    from diffusers.models.autoencoders import vae as vae_module

    module = sys.modules[type(pipe).__module__]

    def draw_spy(label):
        def wrap(original):
            def spy(shape, generator=None, device=None, dtype=None, layout=None):
                out = original(shape, generator=generator, device=device, dtype=dtype, layout=layout)
                record["draws"].append([label, list(shape)])
                return out
            return spy
        return wrap

    def method_spy(key):
        def wrap(original):
            def spy(*args, **kwargs):
                out = original(*args, **kwargs)
                record[key].append((args, kwargs, out))
                return out
            return spy
        return wrap

    def posterior_spy(original):
        def spy(self, generator=None):
            out = original(self, generator)
            record["posterior"].append((self.mean.clone(), self.logvar.clone(), out.clone()))
            return out
        return spy

    with contextlib.ExitStack() as stack:
        stack.enter_context(patched(module, "randn_tensor", draw_spy("noise")))
        stack.enter_context(patched(vae_module, "randn_tensor", draw_spy("posterior sample")))
        stack.enter_context(patched(vae_module.DiagonalGaussianDistribution, "sample", posterior_spy))
        for key in ("prepare_latents", "encode_prompt", "_unpack_latents"):
            stack.enter_context(patched(pipe, key, method_spy(key)))
        stack.enter_context(patched(pipe.scheduler, "scale_noise", method_spy("scale_noise")))
        stack.enter_context(patched(pipe.image_processor, "preprocess", method_spy("image_preprocess")))
        stack.enter_context(patched(pipe.image_processor, "numpy_to_pil", method_spy("numpy_to_pil")))
        stack.enter_context(patched(pipe.image_processor, "apply_overlay", method_spy("apply_overlay")))
        if spec["pipeline"] != IMG2IMG:
            stack.enter_context(patched(pipe, "prepare_mask_latents", method_spy("prepare_mask_latents")))
            stack.enter_context(patched(pipe.mask_processor, "preprocess", method_spy("mask_preprocess")))
        if spec["pipeline"] == EDIT_INPAINT:
            original = module.calculate_dimensions
            stack.enter_context(patched(module, "calculate_dimensions", lambda _: lambda area, ratio: original(
                spec["output_area"] if area == FULL_AREA else area, ratio)))
        yield


RECORD_KEYS = ("draws", "posterior", "prepare_latents", "encode_prompt", "_unpack_latents", "scale_noise",
               "image_preprocess", "numpy_to_pil", "apply_overlay", "prepare_mask_latents", "mask_preprocess", "steps")


def run(pipe, spec: dict, image, mask, output_type: str, prompt: str | None = None, mrope: bool = False,
        masked_image_latents=None):
    record = {key: [] for key in RECORD_KEYS}
    kwargs = dict(prompt=prompt or spec["prompt"], negative_prompt=spec["negative_prompt"], image=image,
                  true_cfg_scale=spec["true_cfg_scale"], strength=spec["strength"],
                  num_inference_steps=spec["steps"], generator=torch.Generator("cpu").manual_seed(spec["seed"]),
                  output_type=output_type, callback_on_step_end_tensor_inputs=["latents"],
                  callback_on_step_end=lambda p, i, t, kw: record["steps"].append(kw["latents"].clone()) or {})
    if spec["pipeline"] != EDIT_INPAINT:
        kwargs.update(width=spec["width"], height=spec["height"])
    if mask is not None:
        kwargs.update(mask_image=mask, padding_mask_crop=spec.get("padding_mask_crop"))
    if masked_image_latents is not None:
        kwargs.update(masked_image_latents=masked_image_latents)
    with contextlib.ExitStack() as stack:
        stack.enter_context(recording(pipe, spec, record))
        if mrope:
            handle = pipe.text_encoder.register_forward_pre_hook(with_mm_token_type_ids, with_kwargs=True)
            stack.callback(handle.remove)
        with torch.no_grad():
            images = pipe(**kwargs).images
    return images, record


def load_pipeline(spec: dict, root: Path):
    import diffusers

    cls = getattr(diffusers, spec["pipeline"])
    if spec["pipeline"] == EDIT_INPAINT:
        folder = root / EDIT_MODEL
        pipe = cls.from_pretrained(str(folder), processor=load_processor(folder / "processor"), dtype=torch.float32)
    else:
        pipe = cls.from_pretrained(str(root / TEXT_TO_IMAGE_MODEL), dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def pack(z: torch.Tensor) -> torch.Tensor:
    """[1, 1, 16, h, w] or [1, 16, 1, h, w] -> [1, h/2 * w/2, 64] (QwenImagePipeline._pack_latents)."""
    h, w = z.shape[-2:]
    return z.reshape(1, 16, h // 2, 2, w // 2, 2).permute(0, 2, 4, 1, 3, 5).reshape(1, h // 2 * (w // 2), 64)


def recompute(pipe, spec: dict, t: dict, sizes: dict) -> dict:
    """README's algorithm with the components alone, from the golden inputs (processed image and mask, prompt
    embeddings, seed). Returns the recomputed tensors, which must equal the pipeline's bit for bit."""
    vae, transformer, scheduler = pipe.vae, pipe.transformer, pipe.scheduler
    height, width = sizes["height"], sizes["width"]
    h, w = height // 8, width // 8
    mean = torch.tensor(vae.config.latents_mean).view(1, 16, 1, 1, 1)
    inverse_std = 1.0 / torch.tensor(vae.config.latents_std).view(1, 16, 1, 1, 1)
    out = {}
    generator = torch.Generator("cpu").manual_seed(spec["seed"])
    with torch.no_grad():
        posterior = vae.encode(t["init_image"].unsqueeze(2)).latent_dist
        out["posterior_mean"], out["posterior_logvar"] = posterior.mean, posterior.logvar
        draw = torch.randn(posterior.mean.shape, generator=generator, dtype=torch.float32)
        out["image_latents_sample"] = posterior.mean + torch.exp(0.5 * posterior.logvar) * draw
        out["image_latents_normalized"] = (out["image_latents_sample"] - mean) * inverse_std
        x0 = out["image_latents"] = pack(out["image_latents_normalized"])
        noise = pack(torch.randn((1, 1, 16, h, w), generator=generator, dtype=torch.float32))
        out["noise"] = noise
        steps = spec["steps"]
        mu = sizes["mu"]
        scheduler.set_timesteps(sigmas=np.linspace(1.0, 1 / steps, steps), mu=mu)
        t_start = int(max(steps - min(steps * spec["strength"], steps), 0))
        sigmas = scheduler.sigmas
        out["timesteps"] = scheduler.timesteps[t_start:]

        def noised(index):
            return sigmas[index] * noise + (1.0 - sigmas[index]) * x0

        latents = out["initial_latents"] = noised(t_start)
        mask = None
        if spec["pipeline"] != IMG2IMG:
            mask_latents = torch.nn.functional.interpolate(t["mask_condition"], size=(h, w))
            out["mask_latents"] = mask_latents
            mask = out["mask"] = pack(mask_latents.repeat(1, 16, 1, 1))
        references = x0 if spec["pipeline"] == EDIT_INPAINT else None
        per_step = []
        for i in range(t_start, steps):
            timestep = scheduler.timesteps[i].expand(1) / 1000

            def predict(prompt_key):
                hidden = latents if references is None else torch.cat([latents, references], dim=1)
                return transformer(hidden_states=hidden, timestep=timestep, encoder_hidden_states=t[prompt_key],
                                   encoder_hidden_states_mask=None, img_shapes=sizes["img_shapes"],
                                   return_dict=False)[0][:, :latents.shape[1]]
            prediction = predict("prompt_embeds")
            if "negative_prompt_embeds" in t:
                negative = predict("negative_prompt_embeds")
                combined = negative + spec["true_cfg_scale"] * (prediction - negative)
                prediction = combined * (prediction.norm(dim=-1, keepdim=True) / combined.norm(dim=-1, keepdim=True))
            latents = latents + (sigmas[i + 1] - sigmas[i]) * prediction
            if mask is not None:
                proper = noised(i + 1) if i + 1 < steps else x0
                latents = (1 - mask) * proper + mask * latents
            per_step.append(latents)
        out["latents_per_step"] = torch.stack(per_step)
        out["latents"] = latents
        z = latents.view(1, h // 2, w // 2, 16, 2, 2).permute(0, 3, 1, 4, 2, 5).reshape(1, 16, 1, h, w)
        z = z / inverse_std + mean
        out["image"] = (vae.decode(z).sample[:, :, 0] / 2 + 0.5).clamp(0, 1)[0].permute(1, 2, 0)
    return out


def case_sizes(pipe, spec: dict, record: dict) -> dict:
    args = record["prepare_latents"][0][0]
    height, width = args[4], args[5]
    config = pipe.scheduler.config
    module = sys.modules[type(pipe).__module__]
    seq = (height // 16) * (width // 16)
    mu = module.calculate_shift(seq, config.base_image_seq_len, config.max_image_seq_len, config.base_shift,
                                config.max_shift)
    shapes = [(1, height // 16, width // 16)]
    if spec["pipeline"] == EDIT_INPAINT:
        shapes.append((1, height // 16, width // 16))
    return dict(height=height, width=width, mu=mu, img_shapes=[shapes], image_seq_len=seq)


def generate_case(root: Path, name: str, spec: dict) -> dict:
    folder = root / GOLDENS / name
    folder.mkdir(parents=True)
    pipe = load_pipeline(spec, root)
    image = save_png(folder, "image.png", Image.fromarray(picture(*spec["picture"], seed=spec["seed"] * 10)))
    mask = None
    if spec["mask"] is not None:
        mask_file = save_png(folder, "mask.png", soft_mask(*spec["mask"]))
        mask = pipe.mask_processor.blur(mask_file, spec["mask_blur"]) if spec.get("mask_blur") else mask_file
    crop = spec.get("padding_mask_crop") is not None
    final_type = "pil" if crop else "np"

    output, record = run(pipe, spec, image, mask, final_type)
    if not crop:
        latents, _ = run(pipe, spec, image, mask, "latent")
        assert torch.equal(latents, record["_unpack_latents"][0][0][0]), "latent and np runs disagree"
    latents = record["_unpack_latents"][0][0][0]
    assert torch.equal(latents, record["steps"][-1])
    sizes = case_sizes(pipe, spec, record)
    height, width = sizes["height"], sizes["width"]
    h, w = height // 8, width // 8

    # --- draws of the generator, in order ---
    expected_draws = [["posterior sample", [1, 16, 1, h, w]], ["noise", [1, 1, 16, h, w]]]
    if spec["pipeline"] != IMG2IMG:
        expected_draws.append(["posterior sample", [1, 16, 1, h, w]])  # the masked image: encoded, never used
    assert record["draws"] == expected_draws, record["draws"]
    if spec["pipeline"] != IMG2IMG:
        # masked_image_latents (the third draw) never reach the result: pass latents instead, nothing changes
        skipped, _ = run(pipe, spec, image, mask, "latent" if not crop else "pil",
                         masked_image_latents=torch.zeros(1, 16, 1, h, w))
        if not crop:
            assert torch.equal(skipped, latents)

    init_image = record["image_preprocess"][-1][2]
    mean, logvar, sample = record["posterior"][0]
    tensors = dict(init_image=init_image, posterior_mean=mean, posterior_logvar=logvar, image_latents_sample=sample,
                   prompt_embeds=record["encode_prompt"][0][2][0], latents=latents,
                   latents_per_step=torch.stack(record["steps"]))
    first_noise_call = record["scale_noise"][0]
    tensors["initial_latents"] = pack(first_noise_call[2])
    tensors["noise"] = pack(first_noise_call[0][2])
    tensors["image_latents_normalized"] = first_noise_call[0][0].transpose(1, 2)
    tensors["image_latents"] = pack(tensors["image_latents_normalized"])
    if len(record["encode_prompt"]) == 2:
        tensors["negative_prompt_embeds"] = record["encode_prompt"][1][2][0]
    for _, _, (_, embeds_mask) in record["encode_prompt"]:
        assert embeds_mask is None
    if spec["pipeline"] != IMG2IMG:
        tensors["mask_condition"] = record["mask_preprocess"][0][2]
        tensors["mask"] = record["prepare_mask_latents"][0][2][0]
        packed_latents, packed_noise, packed_image_latents = record["prepare_latents"][0][2]
        assert torch.equal(packed_noise, tensors["noise"]) and torch.equal(packed_image_latents,
                                                                           tensors["image_latents"])
        # the last step's blend takes the clean image latents where the mask is 0
        keep = tensors["mask"] < 0.5
        assert torch.equal(latents[keep], tensors["image_latents"][keep])
    if crop:
        tensors["image"] = torch.from_numpy(record["numpy_to_pil"][0][0][0][0].copy())
        overlay_args = record["apply_overlay"][0][0]
        tensors["image_generated"] = u8(overlay_args[2])
        tensors["image_overlaid"] = u8(output[0])
        crop_region = [int(v) for v in overlay_args[3]]
        assert output[0].size == image.size
    else:
        tensors["image"] = torch.from_numpy(output[0].copy())
        crop_region = None

    # --- the algorithm of the README, with the components alone ---
    recomputed = recompute(pipe, spec, tensors, sizes)
    for key, value in recomputed.items():
        expected = tensors.get(key)
        if key == "timesteps":
            tensors["timesteps"] = value
            continue
        if key in ("mask_latents",):
            tensors[key] = value
            continue
        assert torch.equal(value, expected), (name, key, (value - expected).abs().max().item())

    if not crop:  # init_image is then the Lanczos resize of the picture (edit-inpaint: its only resize), converted
        resized = np.asarray(image.resize((width, height), Image.LANCZOS))
        assert torch.equal(tensors.pop("init_image"), vae_input(resized))

    # --- edit: the M-RoPE variant ---
    if spec["pipeline"] == EDIT_INPAINT:
        latents_mrope, record_mrope = run(pipe, spec, image, mask, "latent", mrope=True)
        tensors["latents_mrope"] = latents_mrope
        tensors["prompt_embeds_mrope"] = record_mrope["encode_prompt"][0][2][0]
        tensors["negative_prompt_embeds_mrope"] = record_mrope["encode_prompt"][1][2][0]
        tensors["condition_image"] = u8(record["encode_prompt"][0][1]["image"])
        assert not torch.equal(tensors["prompt_embeds_mrope"], tensors["prompt_embeds"])

    sensitivity = measure_sensitivity(pipe, spec, image, mask, tensors)
    meta = {
        "pipeline_class": spec["pipeline"], "model": EDIT_MODEL if spec["pipeline"] == EDIT_INPAINT else
        TEXT_TO_IMAGE_MODEL, "note": spec["note"], "image": "image.png", "picture_size": list(image.size),
        "mask": "mask.png" if spec["mask"] else None, "mask_blur": spec.get("mask_blur"),
        "padding_mask_crop": spec.get("padding_mask_crop"), "crop_region": crop_region,
        "resize_mode": "fill" if crop else "default", "prompt": spec["prompt"],
        "negative_prompt": spec["negative_prompt"], "true_cfg_scale": spec["true_cfg_scale"],
        "do_true_cfg": "negative_prompt_embeds" in tensors, "strength": spec["strength"],
        "num_inference_steps": spec["steps"], "seed": spec["seed"], "width": width, "height": height,
        "requested_width": spec["width"], "requested_height": spec["height"], "output_area": spec.get("output_area"),
        "generator": "torch.Generator('cpu').manual_seed(seed)", "generator_draws": record["draws"],
        "t_start": spec["steps"] - len(tensors["timesteps"]), "mu": sizes["mu"],
        "image_seq_len": sizes["image_seq_len"], "img_shapes": [list(s) for s in sizes["img_shapes"][0]],
        "timesteps": [float(v) for v in tensors["timesteps"]],
        "sigmas": [float(v) for v in pipe.scheduler.sigmas], "sensitivity": sensitivity,
        "output_type": final_type,
    }
    save_golden(folder, tensors, meta)
    print(f"{name}: {width}x{height}, t_start {meta['t_start']}, draws {record['draws']}, sensitivity {sensitivity}",
          flush=True)
    return meta


def measure_sensitivity(pipe, spec: dict, image, mask, tensors: dict) -> dict:
    """The goldens must move clearly when an input moves (asserted)."""
    other_image = Image.fromarray(picture(*image.size, seed=spec["seed"] * 10 + 1))
    run_type = "latent" if not spec.get("padding_mask_crop") else "pil"

    def final_latents(image_, mask_):
        _, record = run(pipe, spec, image_, mask_, run_type)
        return record["steps"][-1]

    latents = tensors["latents"]
    moved = final_latents(other_image, mask)
    figures = {"other_image_latents": relative_change(moved, latents)}
    if mask is not None:
        inside = tensors["mask"] > 0.5
        figures["other_image_latents_inside_mask"] = relative_change(moved[inside], latents[inside])
        other_mask = soft_mask(*spec["mask"][:2], [("rectangle", (4, 4, mask.size[0] // 2, mask.size[1] // 2))])
        figures["other_mask_latents"] = relative_change(final_latents(image, other_mask), latents)
    figures = {k: float(f"{v:.4g}") for k, v in figures.items()}
    assert figures["other_image_latents"] > 0.05, figures
    if mask is not None:
        assert figures["other_image_latents_inside_mask"] > 0.02, figures
        assert figures["other_mask_latents"] > 0.05, figures
    return figures


# ---------------------------------------------------------------------------------------------
# README
# ---------------------------------------------------------------------------------------------
README_ALGORITHM = """
## How the pipelines compute (diffusers {diffusers}, CPU float32)

H, W: the working size; h = H/8, w = W/8 the latent grid; T = (H/16)*(W/16) packed tokens; x0 the packed
image latents; `pack` is QwenImagePipeline._pack_latents (tests/golden/README.md note 1). Elementwise float32
operations round once each (torch CPU kernels fuse nothing).

1. **Size.** img2img / inpaint: `height`, `width` as given (default 1024), the image processor resizes to
   (W - W % 16, H - H % 16) and the latents use h = 2 * (H // 16), w = 2 * (W // 16). Edit-inpaint ignores
   height/width: `calculate_dimensions(1024 * 1024, picture_width / picture_height)` (w = sqrt(area * ratio),
   h = w / ratio, each `round(x / 32) * 32`, Python's round: halves to even), then floored to multiples of 16;
   the picture is first resized to that size with `PIL.Image.resize(LANCZOS)` and THAT picture is the Qwen2-VL
   condition image, the VAE input (its resize to the same size is a copy) and `apply_overlay`'s original.
2. **Crop region** (padding_mask_crop only): `get_crop_region(mask_image, W, H, pad)` (blocks/ `crop_regions`):
   the bounding box of the mask's nonzero grey (convert("L")) pixels, grown by pad and clipped to the picture,
   then grown along one axis to the aspect W:H (integer arithmetic of the reference, clipped and shifted to stay
   inside). resize_mode becomes "fill" (else "default").
3. **Image**: `VaeImageProcessor.preprocess`: crop to the region (PIL crop), resize (default:
   `resize((W, H), LANCZOS)`; fill: `_resize_and_fill`, whose bars use BICUBIC, see blocks/), float32
   `x / 255`, then `2 x - 1`: [1, 3, H, W] (`init_image`).
4. **Mask** (inpaint, edit-inpaint): the mask processor (do_normalize False, do_binarize True,
   do_convert_grayscale True, resample lanczos, reducing_gap None) on the mask as given (an RGB PIL picture
   here, as load_image returns): crop, resize in the same mode ON THE RGB PICTURE, convert("L")
   ((R*19595 + G*38470 + B*7471 + 0x8000) >> 16), float32 v / 255, binarize (< 0.5 -> 0, >= 0.5 -> 1, i.e.
   v >= 128): `mask_condition` [1, 1, H, W]. Latent mask: `torch.nn.functional.interpolate(mask_condition,
   size=(h, w))` (nearest: source index = min(floor(dst * (float)in / out), in - 1) in float32; exactly 8x here,
   so source = 8 * dst) = `mask_latents` [1, 1, h, w], repeated to 16 channels and packed: `mask` [1, T, 64].
   `--mask-blur N` is `VaeImageProcessor.blur(mask, N)` (PIL GaussianBlur) applied by the caller to the mask
   picture BEFORE the pipeline (case d): the pipeline then binarizes the blurred mask.
5. **Prompt**: img2img and inpaint: QwenImagePipeline.encode_prompt (text-to-image). Edit-inpaint: the legacy
   QwenImageEditPipeline encoding with the one resized picture (tests/golden/edit/ case d_edit_legacy_cfg);
   diffusers {diffusers} passes no mm_token_type_ids, so transformers {transformers} runs the text model on
   sequential positions; `*_mrope` tensors are the same call with the 3-D M-RoPE positions (the fix of
   huggingface/diffusers#14189; see tests/golden/edit/README.md).
6. **Schedule**: sigmas = linspace(1, 1/N, N), mu = calculate_shift(T) (QwenImagePipeline's), set_timesteps:
   `timesteps`, `sigmas` as for text-to-image (N + 1 sigmas). Then get_timesteps(N, strength):
   init_timestep = min(N * strength, N), t_start = int(max(N - init_timestep, 0)) in Python floats (double;
   25 * 0.56 = 14.000000000000002, so t_start = 10, not 11), timesteps[t_start:] (N - t_start steps; the
   pipeline raises when none is left), set_begin_index(t_start). blocks/ `get_timesteps` tabulates it.
7. **Generator draws**, all from the one `torch.Generator('cpu').manual_seed(seed)`, in this order
   (golden.json `generator_draws`):
   a. the image posterior's sample: randn([1, 16, 1, h, w]) float32;
   b. the noise: randn([1, 1, 16, h, w]) float32;
   c. inpaint and edit-inpaint only: the posterior sample of the masked image `init_image * (mask_condition <
      0.5)`, which prepare_mask_latents encodes and samples but the loop never reads (masked_image_latents is
      for 64-channel inpainting transformers). Nothing is drawn after it and the result does not depend on it
      (the generator asserts: passing masked_image_latents instead changes nothing), so a port skips this VAE
      encode and draw.
   With 16 latent channels every draw is a multiple of 16 values, where torch.randn in bfloat16 equals the
   float32 draw cast to bfloat16.
8. **Image latents**: posterior = vae.encode(init_image[:, :, None]): mean, logvar (clamped to [-30, 20]);
   sample = mean + exp(0.5 * logvar) * draw_a (`image_latents_sample`; four roundings: 0.5 * logvar, exp, the
   product, the sum); normalized = (sample - latents_mean) * (1 / latents_std), the reciprocal formed in float32
   first (`image_latents_normalized`; NOT a division by latents_std, which differs in the last bit);
   x0 = pack(normalized) (`image_latents`).
9. **Initial latents** (scale_noise at the first kept step): sigma = sigmas[t_start]; latents = sigma * noise +
   (1 - sigma) * x0 (`initial_latents`; 1 - sigma rounded to float32 first; packing commutes with it).
10. **Loop**, i = t_start .. N - 1 (absolute indices into timesteps and sigmas): the transformer at timestep
    timesteps[i] / 1000 (edit-inpaint: hidden_states = cat([latents, x0], 1), img_shapes [(1, H/16, W/16),
    (1, H/16, W/16)], zero_cond_t as the model says, only the first T output rows kept); CFG exactly as
    text-to-image (combination, per-token norm rescale); scheduler.step: latents + (sigmas[i + 1] - sigmas[i]) *
    prediction. Inpaint and edit-inpaint then blend: proper = sigmas[i + 1] * noise + (1 - sigmas[i + 1]) * x0
    (scale_noise at the NEXT step) when i + 1 < N, else the clean x0; latents = (1 - mask) * proper +
    mask * latents. The mask is 0 or 1, so this selects exactly: the final latents equal x0 bit for bit where
    the mask is 0 (asserted). img2img has no blend. `latents_per_step[k]` = latents after step t_start + k
    (after the blend).
11. **Output**: unpack, z / (1 / latents_std) + latents_mean, vae.decode, (x / 2 + 0.5).clamp(0, 1): `image`
    [H, W, 3] (output_type 'np'). padding_mask_crop (output_type must be 'pil'): `image_generated` =
    numpy_to_pil(image) ((x * 255).round() to uint8), then `apply_overlay(mask_image, picture, image_generated,
    crop_region)` -> `image_overlaid` at the picture's size; mask_image is the mask as passed (blurred if it was,
    never binarized). apply_overlay (blocks/): the generated picture resized into the region with resize_mode
    "crop" (`_resize_and_crop`) and pasted on black, then the original composited over it with alpha =
    255 - L(mask): Pillow's integer RGBa premultiply (DIV255(c * a) = ((t >> 8) + t) >> 8 with t = c * a + 128),
    unpremultiply (a in 1..254: min(255 * c' / a, 255)) and alpha_composite over an opaque background
    (((t >> 8) + t) >> 8 >> 7 with t = src * a * 128 + dst * (255 - a) * 128 + (128 << 7)).

The generator re-runs steps 7 to 11 with the components alone from `init_image`, `mask_condition` and the prompt
embeddings, and asserts that every tensor equals the pipeline's bit for bit: the list is complete.

Engine building blocks per step (tests/inpaint_blocks_test.cpp checks each against these goldens):
2 `vae_image_processor::get_crop_region`; 3 `vae_image_processor::preprocess` (and `crop`, `resize` with
`ResizeMode`); 4 `vae_image_processor::preprocess_mask`, `pack_mask_latents` (`interpolate_nearest`),
`gaussian_blur`, `invert`, `mask_from_alpha`; 6 `FlowMatchEulerDiscreteScheduler::first_step_for_strength`;
7-8 `sample_latent_distribution` (draw a) then `TorchGenerator::randn` (draw b),
`AutoencoderKLQwenImage::normalize_latents_by_inverse_std`, `pack_latents`; 9 and 10
`FlowMatchEulerDiscreteScheduler::scale_noise`, `blend_masked_latents`; 11 `vae_image_processor::apply_overlay`.

Edit-inpaint with padding_mask_crop is not covered: the reference computes the crop region on the mask at its
own size but crops the picture after resizing it to the calculated size, and pastes back with a mask of the
original size, so it only works when the picture already has the calculated size.
"""

BLOCK_NOTES = """
## blocks/

Inputs: `picture.png` (70x50), `mask_soft.png` (a tinted soft ellipse), `mask_corner.png` (a small square at the
right edge), `mask_tall.png` (a thin full-height ellipse); all RGB with antialiased edges. golden.json lists every
case with the name of its expected tensor.

* `picture_grey`, `<mask>_grey`: U8 [h, w]: convert("L"). The generator checks
  (R*19595 + G*38470 + B*7471 + 0x8000) >> 16 against Pillow for all 2^24 colours.
* `blur_<r>_mask_soft`, `blur_<r>_picture`: U8 [50, 70, 3]: `VaeImageProcessor.blur(image, r)` =
  `ImageFilter.GaussianBlur(r)`: Pillow's three extended box blurs per axis (libImaging/BoxBlur.c), r in
  golden.json `blur_radii` ("p" for the point in names), 40 being wider than the picture.
* `invert_mask_soft`: U8: `ImageOps.invert` (255 - v per channel).
* `crop_regions`: `get_crop_region(mask, width, height, pad)` -> [x1, y1, x2, y2] (json only).
* `resize_<mode>_<W>x<H>`: U8 [H, W, 3]: `VaeImageProcessor.resize(picture, H, W, resize_mode=mode)`. "fill"
  (`_resize_and_fill`): the picture fitted inside with LANCZOS and centred on black; the bars are
  `fitted.resize(bar size, box=(0, 0, W, 0))` (and the bottom / left / right equivalents): a source box of zero
  height at the edge, and NO filter argument, so Pillow's default BICUBIC: each bar row blends the two rows
  nearest the edge with weights bicubic(0.5) and bicubic(1.5). "crop" (`_resize_and_crop`): covering with
  LANCZOS, centred, the overflow cut.
* `box_<i>`: U8: `picture.resize((width, height), LANCZOS, box=box)` (`box_cases`).
* `preprocess_<mask>_<W>x<H>[_pad<p>]_mask`: U8 [1, 1, H, W]: the mask processor's preprocess (crop region from
  the pad, "fill" when cropping), whose float32 0/1 values are stored as bytes; `..._image` (one case): F32
  [1, 3, H, W]: the image processor's preprocess of the picture with the same crop and mode; for the others the
  generator asserts it is the resize followed by x / 255 * 2 - 1 (`preprocess_cases`).
* `overlay_<mask>_<W>x<H>[_crop]`: U8 [50, 70, 3]: `apply_overlay(mask, picture, generated, crop)`; `generated_<W>x
  <H>` (U8) the generated pictures for crop cases, `overlay_<mask>_generated` (U8 [50, 70, 3]) for the
  uncropped one (`overlay_cases`).
* `interpolate_source`: F32 [1, 1, 19, 27] uniform; `interpolate_<h>x<w>`: `F.interpolate(source, size=(h, w))`
  (nearest), sizes covering torch's three index rules (same size, exactly 2x, any other).
* `scale_noise_sample`, `scale_noise_noise`: F32 [1, 1, 16, 4, 6]; `scale_noise_sigmas`: the scheduler's sigmas for
  7 steps, mu 0.6; `scale_noise_f32_<i>` / `scale_noise_bf16_<i>`: scheduler.scale_noise(sample, noise) with
  begin index i (sigma = sigmas[i]; i = 7 is the final 0), in float32 and with bfloat16 inputs (sigma, 1 - sigma,
  both products and the sum each rounded to bfloat16).
* `get_timesteps`: [N, strength, t_start, steps kept] from the pipelines' get_timesteps (json only).
"""

TENSORS = {
    "init_image": "F32 [1, 3, H, W] in [-1, 1]: the image processor's output (step 3), what vae.encode receives; "
                  "crop case only (elsewhere it is x / 255 * 2 - 1 of image.png's Lanczos resize to W x H, asserted)",
    "mask_condition": "F32 [1, 1, H, W] of 0/1: the mask processor's output (step 4); inpaint, edit-inpaint",
    "mask_latents": "F32 [1, 1, h, w]: interpolate(mask_condition, (h, w)) nearest",
    "mask": "F32 [1, T, 64]: mask_latents repeated to 16 channels and packed, the blend weight",
    "posterior_mean, posterior_logvar": "F32 [1, 16, 1, h, w]: vae.encode(init_image).latent_dist (logvar clamped)",
    "image_latents_sample": "F32 [1, 16, 1, h, w]: latent_dist.sample(generator), the first draw",
    "image_latents_normalized": "F32 [1, 16, 1, h, w]: (sample - latents_mean) * (1 / latents_std)",
    "image_latents": "F32 [1, T, 64]: x0, the packed normalized latents",
    "noise": "F32 [1, T, 64]: the second draw, randn([1, 1, 16, h, w]) packed",
    "timesteps": "F32 [N - t_start]: the kept timesteps (0..1000 scale); golden.json has them and all sigmas",
    "initial_latents": "F32 [1, T, 64]: scale_noise(x0, sigmas[t_start], noise), the loop's start",
    "prompt_embeds, negative_prompt_embeds": "F32 [1, L, 32]: encode_prompt (negative only with CFG); mask None",
    "latents_per_step": "F32 [N - t_start, 1, T, 64]: latents after each step (after the blend)",
    "latents": "F32 [1, T, 64]: the final packed latents (output_type 'latent')",
    "image": "F32 [H, W, 3] in [0, 1]: output_type 'np' (crop case: the decoded picture before the overlay)",
    "image_generated": "U8 [H, W, 3]: crop case: numpy_to_pil(image), what apply_overlay pastes",
    "image_overlaid": "U8 [picture height, picture width, 3]: crop case: the pipeline's PIL output",
    "condition_image": "U8 [H, W, 3]: edit-inpaint: the resized picture the Qwen2-VL processor receives",
    "prompt_embeds_mrope, negative_prompt_embeds_mrope, latents_mrope": "edit-inpaint: the same with 3-D M-RoPE "
        "positions for the text encoder (step 5)",
}

JSON_KEYS = {
    "pipeline_class, model": "the diffusers class and the repository-relative model folder",
    "image, mask, picture_size": "input PNGs (RGB 8-bit, read with convert('RGB')) and the picture's (width, height)",
    "mask_blur": "VaeImageProcessor.blur radius applied to the mask picture before the call, or null",
    "padding_mask_crop, crop_region, resize_mode": "the call's padding_mask_crop, the region get_crop_region "
        "gave [x1, y1, x2, y2], and the resize mode it implies",
    "prompt, negative_prompt, true_cfg_scale, do_true_cfg, strength, num_inference_steps, seed": "the call",
    "width, height": "the working size H, W; requested_width/height what was passed (null: edit-inpaint's own); "
        "output_area: edit-inpaint's area in place of 1024*1024",
    "generator_draws": "[what, shape] of every draw from the generator, in order (step 7)",
    "t_start, timesteps, sigmas, mu, image_seq_len, img_shapes": "the cut, the kept timesteps, all N + 1 sigmas, "
        "the shift, T and the transformer's img_shapes",
    "sensitivity": "relative L2 change of the final latents when the picture (whole and inside the mask) or the "
        "mask moves; asserted > 0.05 (> 0.02 inside the mask)",
    "output_type": "'np', or 'pil' for the crop case",
}


def write_readme(root: Path, metas: dict) -> None:
    import diffusers
    import transformers

    golden = root / GOLDENS
    lines = ["# img2img, inpainting and edit-inpainting goldens", "",
             "Written by `python3 tools/reference/make_inpaint_goldens.py` (this file too); diffusers "
             f"{diffusers.__version__}, transformers {transformers.__version__}, torch "
             f"{torch.__version__.split('+')[0]}, Pillow {Image.__version__}, CPU float32, 1 thread. `--check` "
             "regenerates into a temporary folder and compares byte for byte.",
             README_ALGORITHM.format(diffusers=diffusers.__version__, transformers=transformers.__version__).rstrip(),
             BLOCK_NOTES.rstrip(), "", "## Files of a pipeline case", "",
             "`image.png`, `mask.png` (inpaint), `golden.json`, `golden.safetensors`.", "", "golden.json:", ""]
    lines += [f"* `{k}`: {v}" for k, v in JSON_KEYS.items()]
    lines += ["", "golden.safetensors:", ""]
    lines += [f"* `{k}`: {v}" for k, v in TENSORS.items()]
    lines += ["", "## Cases", ""]
    for name, meta in metas.items():
        lines += [f"### `{name}/`", "", f"{meta['pipeline_class']} on `{meta['model']}`: {meta['note']}.", "",
                  f"* picture {meta['picture_size'][0]}x{meta['picture_size'][1]} -> {meta['width']}x"
                  f"{meta['height']}; strength {meta['strength']}, {meta['num_inference_steps']} steps, t_start "
                  f"{meta['t_start']}; seed {meta['seed']}; CFG {'yes' if meta['do_true_cfg'] else 'no'}"
                  + (f"; crop region {meta['crop_region']}" if meta["crop_region"] else ""),
                  "* draws: " + ", ".join(f"{what} {shape}" for what, shape in meta["generator_draws"]),
                  "* sensitivity: " + ", ".join(f"{k} {v}" for k, v in meta["sensitivity"].items()), ""]
        for tensor, dtype, shape in describe_safetensors(golden / name / "golden.safetensors"):
            lines.append(f"  * `{tensor}`: {dtype} {shape}")
        lines.append("")
    lines += ["## Size", "", f"`{GOLDENS}/`: {tree_bytes(golden) / 1e6:.2f} MB", ""]
    (golden / "README.md").write_text("\n".join(lines), encoding="utf-8")


# ---------------------------------------------------------------------------------------------
# Driver
# ---------------------------------------------------------------------------------------------
def tree_files(folder: Path) -> dict[str, Path]:
    return {str(p.relative_to(folder)): p for p in sorted(folder.rglob("*")) if p.is_file()}


def tree_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in tree_files(folder).values())


def generate(root: Path) -> None:
    setup_determinism()
    start = time.time()
    golden = root / GOLDENS
    if golden.exists():
        shutil.rmtree(golden)
    golden.mkdir(parents=True)
    blocks(root)
    metas = {name: generate_case(root, name, spec) for name, spec in CASES.items()}
    write_readme(root, metas)
    total = tree_bytes(golden)
    print(f"{time.time() - start:.1f}s; {GOLDENS}: {total / 1e6:.2f} MB")
    assert total < 1.6e6, total


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
        diffs += [f"differs: {p}" for p in sorted(old.keys() & new.keys()) if not filecmp.cmp(old[p], new[p],
                                                                                              shallow=False)]
    for line in diffs:
        print(line)
    print("check:", "OK (bit-identical)" if not diffs else f"{len(diffs)} differences")
    sys.exit(1 if diffs else 0)


if __name__ == "__main__":
    main()
