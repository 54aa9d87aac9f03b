"""Reference baseline for image editing: diffusers' QwenImageEditPlusPipeline, end to end, on a synthetic
Qwen-Image-Edit-2511 folder (`canvas-synthetic-checkpoint --pipeline edit-plus`), with true CFG.

For each configuration (--refs: how many reference pictures) it runs the whole pipeline once and prints one
line `RESULT {json}` with s/step (the median step after the first; each step timed from the transformer's
first call to callback_on_step_end, both after a device synchronize: pipeline_timing.py), the first step,
the time before the steps (prompt and negative prompt encoded with the pictures, the pictures' VAE
encoding), after them (VAE decode) and end to end (the pipeline call). The first configuration is preceded by an untimed run of
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
import importlib.util
import json
import os
import sys
import time

if os.environ.get("DIFFUSERS_SRC"):
    sys.path.insert(0, os.environ["DIFFUSERS_SRC"])
import torch
from PIL import Image

from pipeline_timing import GiB, Placement, picture, timed_call

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


def run(pipe, images, steps, output=None):
    return timed_call(pipe, device, a.seed, output, image=images, prompt=a.prompt, negative_prompt=a.negative_prompt,
                      true_cfg_scale=a.cfg_scale, num_inference_steps=steps, width=a.width, height=a.height)


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
    placement = Placement(device, a.placement)
    common["to_device_s"] = placement.place(pipe)
    if on_cuda:
        common["allocated_after_placement_GiB"] = torch.cuda.memory_allocated(device) / GiB

    pictures = [Image.open(path).convert("RGB") for path in paths]
    for index, refs in enumerate(int(v) for v in a.refs.split(",")):
        images = pictures[:refs]
        result = dict(common, config=f"edit_{refs}ref", refs=refs, pictures=paths[:refs],
                      picture_sizes=[list(im.size) for im in images])
        output = os.path.join(a.output_dir, f"diffusers_{refs}ref.png") if a.output_dir else None

        def attempt():
            figures = {}
            if index == 0 and a.warmup_steps > 0:
                figures["warmup_e2e_s"] = run(pipe, images, a.warmup_steps)["e2e_s"]
            figures.update(run(pipe, images, a.steps, output))
            return figures

        result.update(placement.run(pipe, result["config"], attempt))
        print("RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
