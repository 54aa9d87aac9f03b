"""Reference baseline for image editing: diffusers' QwenImageEditPlusPipeline, end to end, on a synthetic
Qwen-Image-Edit-2511 folder (`canvas-synthetic-checkpoint --pipeline edit-plus`), with true CFG.

For each configuration (--refs: how many reference pictures) it runs the whole pipeline once and prints one
line `RESULT {json}` with s/step (the median step after the first; each step timed from the transformer's
first call to callback_on_step_end, both after a device synchronize), the first step, the time before the
steps (prompt and negative prompt encoded with the pictures, the pictures' VAE encoding), after them (VAE
decode) and end to end (the pipeline call). The first configuration is preceded by an untimed run of
--warmup-steps, so that every figure is a warm one; its end to end is reported as warmup_e2e_s.

The pictures are generated deterministically and written to --pictures-dir as A.png, B.png, ... before
anything is loaded, so that `canvas edit` can read the same files; configuration k uses the first k.

Placement: the whole pipeline on the device when it fits (bf16 Qwen-Image-Edit-2511 is ~58 GB); if loading
it or a run fails for device memory, everything goes back to the host and the runs continue (the failed
one again) under enable_model_cpu_offload(). Each line's "placement" says which ("device" or
"model_cpu_offload"), and "device_oom" what failed first.

The same script checks a shrunk folder on a CPU (`--device cpu --dtype float32`). Without torchvision
(the project's reference stack), transformers cannot build Qwen2VLProcessor's video processor, which edits
never use; the processor is then loaded by the same from_pretrained with the video processor left out
("processor": "without_video_processor" in the result).

  python3 bench/reference/diffusers_edit_bench.py --model /tmp/synth-edit --steps 4 --refs 1,3
"""
import argparse
import gc
import importlib.util
import json
import os
import statistics
import sys
import time

if os.environ.get("DIFFUSERS_SRC"):
    sys.path.insert(0, os.environ["DIFFUSERS_SRC"])
import numpy as np
import torch
from PIL import Image

GiB = 1 << 30
p = argparse.ArgumentParser()
p.add_argument("--model", default="/tmp/synth-edit")
p.add_argument("--pictures-dir", default="/tmp/edit-pictures")
p.add_argument("--pictures", default="1024x768,768x1152,1280x720",
               help="WIDTHxHEIGHT of each generated picture (A, B, C, ...): different aspect ratios")
p.add_argument("--refs", default="1,3", help="configurations: how many of the pictures each one edits with")
p.add_argument("--prompt", default="Put the lighthouse of picture 1 on the coast at dusk, in watercolor")
p.add_argument("--negative-prompt", default="blurry, low quality, distorted")
p.add_argument("--cfg-scale", type=float, default=4.0, help="true_cfg_scale")
p.add_argument("--steps", type=int, default=4)
p.add_argument("--warmup-steps", type=int, default=2, help="untimed run before the first configuration; 0: none")
p.add_argument("--width", type=int, default=1024)
p.add_argument("--height", type=int, default=1024)
p.add_argument("--seed", type=int, default=1)
p.add_argument("--device", default="cuda")
p.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float16", "float32"])
p.add_argument("--placement", default="auto", choices=["auto", "device", "model_cpu_offload"],
               help="auto: on the device, falling back to model CPU offload on running out of device memory")
p.add_argument("--output-dir", default=None, help="where to write each configuration's image (optional)")
p.add_argument("--pictures-only", action="store_true", help="write the pictures and stop")
a = p.parse_args()
device = torch.device(a.device)
on_cuda = device.type == "cuda"


def synchronize():
    if on_cuda:
        torch.cuda.synchronize(device)


def picture(width, height, seed):
    """A deterministic RGB picture: smooth colour waves plus noise, so that it is neither flat nor pure noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    base = np.stack([127 + 110 * np.sin(x / (23 + 7 * c) + y / (31 + 5 * c) + seed) for c in range(3)], axis=-1)
    return Image.fromarray(np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8))


def write_pictures():
    os.makedirs(a.pictures_dir, exist_ok=True)
    paths = []
    for index, size in enumerate(a.pictures.split(",")):
        width, height = (int(v) for v in size.lower().split("x"))
        path = os.path.join(a.pictures_dir, chr(ord("A") + index) + ".png")
        picture(width, height, index + 1).save(path)
        paths.append(path)
    return paths


def processor_without_video(folder):
    """Qwen2VLProcessor.from_pretrained(folder) with its video processor left out (it needs torchvision)."""
    import transformers.processing_utils as processing
    from transformers import Qwen2VLProcessor
    check_class = processing.ProcessorMixin.check_argument_for_proper_class
    auto_video = processing.MODALITY_TO_AUTOPROCESSOR_MAPPING["video_processor"]
    load_video = auto_video.__dict__["from_pretrained"]
    processing.ProcessorMixin.check_argument_for_proper_class = \
        lambda self, name, arg: None if arg is None else check_class(self, name, arg)
    auto_video.from_pretrained = classmethod(lambda cls, *args, **kwargs: None)
    try:
        return Qwen2VLProcessor.from_pretrained(folder)
    finally:
        processing.ProcessorMixin.check_argument_for_proper_class = check_class
        auto_video.from_pretrained = load_video


class StepTimer:
    """A step runs from the transformer's first call (the conditional pass) to callback_on_step_end."""

    def __init__(self):
        self.start = None
        self.first_start = None
        self.last_end = None
        self.steps = []

    def before_transformer(self, module, args, kwargs):
        if self.start is None:
            synchronize()
            self.start = time.perf_counter()
            self.first_start = self.first_start or self.start

    def on_step_end(self, pipe, step, timestep, callback_kwargs):
        synchronize()
        self.last_end = time.perf_counter()
        self.steps.append(self.last_end - self.start)
        self.start = None
        return {}


def run(pipe, images, steps, output=None):
    timer = StepTimer()
    hook = pipe.transformer.register_forward_pre_hook(timer.before_transformer, with_kwargs=True)
    generator = torch.Generator(device="cpu").manual_seed(a.seed)
    try:
        synchronize()
        begin = time.perf_counter()
        image = pipe(image=images, prompt=a.prompt, negative_prompt=a.negative_prompt, true_cfg_scale=a.cfg_scale,
                     num_inference_steps=steps, width=a.width, height=a.height, generator=generator,
                     callback_on_step_end=timer.on_step_end).images[0]
        synchronize()
        end = time.perf_counter()
    finally:
        hook.remove()
    if output:
        image.save(output)
    steady = sorted(timer.steps[1:] or timer.steps)
    return {"s_per_step": steady[len(steady) // 2], "first_step_s": timer.steps[0], "per_step_s": timer.steps,
            "mean_step_after_first_s": statistics.mean(steady), "before_steps_s": timer.first_start - begin,
            "after_steps_s": end - timer.last_end, "e2e_s": end - begin, "image_size": list(image.size)}


def is_device_oom(error):
    return isinstance(error, torch.OutOfMemoryError) or "out of memory" in str(error).lower()


def offload(pipe):
    pipe.to("cpu")
    gc.collect()
    if on_cuda:
        torch.cuda.empty_cache()
    pipe.enable_model_cpu_offload(device=device)


def main():
    paths = write_pictures()
    if a.pictures_only:
        return
    import diffusers
    import transformers
    from diffusers import QwenImageEditPlusPipeline
    common = {"tool": "diffusers", "model": a.model, "width": a.width, "height": a.height, "steps": a.steps,
              "true_cfg_scale": a.cfg_scale, "seed": a.seed, "dtype": a.dtype, "device": str(device),
              "torch": torch.__version__, "diffusers": diffusers.__version__, "transformers": transformers.__version__}
    if on_cuda:
        common["gpu"] = torch.cuda.get_device_name(device)
    extra = {}
    processor_loading = "from_pretrained"
    if importlib.util.find_spec("torchvision") is None:
        extra["processor"] = processor_without_video(os.path.join(a.model, "processor"))
        processor_loading = "without_video_processor"
    common["processor"] = processor_loading

    begin = time.perf_counter()
    pipe = QwenImageEditPlusPipeline.from_pretrained(a.model, torch_dtype=getattr(torch, a.dtype), **extra)
    pipe.set_progress_bar_config(disable=True)
    common["load_host_s"] = time.perf_counter() - begin
    common["pipeline_class"] = type(pipe).__name__
    placement, device_oom = ("device" if a.placement == "auto" else a.placement), None
    begin = time.perf_counter()
    if placement == "device":
        try:
            pipe.to(device)
        except Exception as error:  # noqa: BLE001 - only device-memory failures fall back
            if a.placement != "auto" or not is_device_oom(error):
                raise
            device_oom = f"loading: {type(error).__name__}: {str(error)[:200]}"
            placement = "model_cpu_offload"
    # Outside the except clause, whose traceback would keep the failed attempt's device tensors alive.
    if placement == "model_cpu_offload":
        offload(pipe)
    synchronize()
    common["to_device_s"] = time.perf_counter() - begin
    if on_cuda:
        common["allocated_after_placement_GiB"] = torch.cuda.memory_allocated(device) / GiB

    pictures = [Image.open(path).convert("RGB") for path in paths]
    for index, refs in enumerate(int(v) for v in a.refs.split(",")):
        images = pictures[:refs]
        result = dict(common, config=f"edit_{refs}ref", refs=refs, pictures=paths[:refs],
                      picture_sizes=[list(im.size) for im in images])
        output = os.path.join(a.output_dir, f"diffusers_{refs}ref.png") if a.output_dir else None
        while True:
            if on_cuda:
                torch.cuda.reset_peak_memory_stats(device)
            try:
                if index == 0 and a.warmup_steps > 0:
                    result["warmup_e2e_s"] = run(pipe, images, a.warmup_steps)["e2e_s"]
                result.update(run(pipe, images, a.steps, output))
                break
            except Exception as error:  # noqa: BLE001 - only device-memory failures fall back
                if placement != "device" or a.placement != "auto" or not is_device_oom(error):
                    result["error"] = f"{type(error).__name__}: {str(error)[:300]}"
                    break
                device_oom = f"{result['config']}: {type(error).__name__}: {str(error)[:200]}"
            placement = "model_cpu_offload"
            offload(pipe)
        result["placement"] = placement
        result["device_oom"] = device_oom
        if on_cuda:
            result["peak_allocated_GiB"] = torch.cuda.max_memory_allocated(device) / GiB
        print("RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
