"""Reference baseline for inpainting and img2img: diffusers' QwenImageInpaintPipeline and
QwenImageImg2ImgPipeline, end to end, on a synthetic Qwen-Image folder (`canvas-synthetic-checkpoint`, the
text-to-image pipeline).

Configurations (--configs):
  inpaint  the picture with a mask over its central region (the middle half of each side: a quarter of the
           picture is repainted), --inpaint-strength (default 0.85), true CFG --cfg-scale with
           --negative-prompt;
  img2img  the picture alone, --img2img-strength (default 0.6), true CFG only when --img2img-cfg-scale > 1
           (default 1: unguided), then with --negative-prompt.
Each is labelled <name>_<width> (or <name>_<width>x<height> when not square), e.g. inpaint_1024. The strength
keeps the last min(steps * strength, steps) of --steps (default 8: 7 inpainting steps, 5 img2img steps).

For each configuration it runs the pipeline once and prints one line `RESULT {json}` with s/step (the median
step after the first), the first step, the time before the steps (prompt encoding, the picture's VAE
encoding), after them (VAE decode) and end to end (the pipeline call); pipeline_timing.py says how steps are
timed and where the pipeline runs. The first configuration is preceded by an untimed run of --warmup-steps,
so that every figure is a warm one; its end to end is reported as warmup_e2e_s.

The picture and the mask are generated deterministically and written to --pictures-dir as picture.png and
mask.png (RGB, --width x --height) before anything is loaded, so that `canvas inpaint` and `canvas generate
--image` read the same files. Both pipelines share one loaded set of components (from_pipe).

The same script checks a shrunk folder on a CPU (`--device cpu --dtype float32`, small --width/--height).

  python3 bench/reference/diffusers_inpaint_bench.py --model /tmp/synth-full --steps 8
"""
import argparse
import json
import os
import sys
import time

if os.environ.get("DIFFUSERS_SRC"):
    sys.path.insert(0, os.environ["DIFFUSERS_SRC"])
import numpy as np
import torch
from PIL import Image

from pipeline_timing import GiB, Placement, picture, timed_call

p = argparse.ArgumentParser()
p.add_argument("--model", default="/tmp/synth-full")
p.add_argument("--pictures-dir", default="/tmp/inpaint-pictures")
p.add_argument("--configs", default="inpaint,img2img", help="comma-separated: inpaint, img2img")
p.add_argument("--prompt", default="A red hot air balloon over a lighthouse on the coast at dusk")
p.add_argument("--negative-prompt", default="blurry, low quality, distorted")
p.add_argument("--cfg-scale", type=float, default=4.0, help="inpainting's true_cfg_scale")
p.add_argument("--img2img-cfg-scale", type=float, default=1.0,
               help="img2img's true_cfg_scale; above 1 it guides with --negative-prompt")
p.add_argument("--inpaint-strength", type=float, default=0.85)
p.add_argument("--img2img-strength", type=float, default=0.6)
p.add_argument("--steps", type=int, default=8)
p.add_argument("--warmup-steps", type=int, default=2, help="untimed run before the first configuration; 0: none")
p.add_argument("--width", type=int, default=1024, help="the picture's width, and so the working width")
p.add_argument("--height", type=int, default=1024)
p.add_argument("--seed", type=int, default=1)
p.add_argument("--device", default="cuda")
p.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float16", "float32"])
p.add_argument("--placement", default="auto", choices=["auto", "device", "model_cpu_offload"],
               help="auto: on the device, falling back to model CPU offload on running out of device memory")
p.add_argument("--output-dir", default=None, help="where to write each configuration's image (optional)")
p.add_argument("--pictures-only", action="store_true", help="write the picture and the mask and stop")
a = p.parse_args()
device = torch.device(a.device)
on_cuda = device.type == "cuda"
CONFIGS = ("inpaint", "img2img")


def central_mask(width, height):
    """White (repainted) over the middle half of each side, black elsewhere."""
    mask = np.zeros((height, width, 3), dtype=np.uint8)
    mask[height // 4:height - height // 4, width // 4:width - width // 4] = 255
    return Image.fromarray(mask)


def write_pictures():
    os.makedirs(a.pictures_dir, exist_ok=True)
    picture_path = os.path.join(a.pictures_dir, "picture.png")
    mask_path = os.path.join(a.pictures_dir, "mask.png")
    picture(a.width, a.height, 1).save(picture_path)
    central_mask(a.width, a.height).save(mask_path)
    return picture_path, mask_path


def settings(name):
    """The configuration's pipeline call (without image and steps) and what its result line records."""
    inpaints = name == "inpaint"
    cfg_scale = a.cfg_scale if inpaints else a.img2img_cfg_scale
    guided = cfg_scale > 1
    call = {"prompt": a.prompt, "negative_prompt": a.negative_prompt if guided else None,
            "true_cfg_scale": cfg_scale, "strength": a.inpaint_strength if inpaints else a.img2img_strength,
            "width": a.width, "height": a.height}
    record = {"true_cfg_scale": cfg_scale, "guided": guided, "negative_prompt": call["negative_prompt"],
              "strength": call["strength"]}
    return call, record


def main():
    configs = a.configs.split(",")
    unknown = [name for name in configs if name not in CONFIGS]
    if unknown:
        sys.exit(f"unknown configurations {unknown}; choose from {list(CONFIGS)}")
    picture_path, mask_path = write_pictures()
    if a.pictures_only:
        return
    if a.output_dir:
        os.makedirs(a.output_dir, exist_ok=True)
    import diffusers
    import transformers
    from diffusers import QwenImageImg2ImgPipeline, QwenImageInpaintPipeline
    common = {"tool": "diffusers", "model": a.model, "width": a.width, "height": a.height, "steps": a.steps,
              "prompt": a.prompt, "seed": a.seed, "dtype": a.dtype, "device": str(device),
              "torch": torch.__version__, "diffusers": diffusers.__version__, "transformers": transformers.__version__}
    if on_cuda:
        common["gpu"] = torch.cuda.get_device_name(device)

    begin = time.perf_counter()
    inpaint_pipe = QwenImageInpaintPipeline.from_pretrained(a.model, torch_dtype=getattr(torch, a.dtype))
    common["load_host_s"] = time.perf_counter() - begin
    pipes = {"inpaint": inpaint_pipe, "img2img": QwenImageImg2ImgPipeline.from_pipe(inpaint_pipe, torch_dtype=getattr(torch, a.dtype))}
    for pipe in pipes.values():
        pipe.set_progress_bar_config(disable=True)
    placement = Placement(device, a.placement)
    common["to_device_s"] = placement.place(inpaint_pipe)
    if on_cuda:
        common["allocated_after_placement_GiB"] = torch.cuda.memory_allocated(device) / GiB

    source = Image.open(picture_path).convert("RGB")
    mask = Image.open(mask_path).convert("RGB")
    for index, name in enumerate(configs):
        pipe = pipes[name]
        call, record = settings(name)
        call["image"] = source
        if name == "inpaint":
            call["mask_image"] = mask
        label = f"{name}_{a.width}" if a.width == a.height else f"{name}_{a.width}x{a.height}"
        result = dict(common, config=label, pipeline_class=type(pipe).__name__, picture=picture_path,
                      mask=mask_path if name == "inpaint" else None, **record)
        output = os.path.join(a.output_dir, f"diffusers_{label}.png") if a.output_dir else None

        def attempt():
            figures = {}
            if index == 0 and a.warmup_steps > 0:
                figures["warmup_e2e_s"] = timed_call(pipe, device, a.seed, num_inference_steps=a.warmup_steps,
                                                     **call)["e2e_s"]
            figures.update(timed_call(pipe, device, a.seed, output, num_inference_steps=a.steps, **call))
            figures["denoised_steps"] = len(figures["per_step_s"])
            return figures

        result.update(placement.run(pipe, label, attempt))
        print("RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
