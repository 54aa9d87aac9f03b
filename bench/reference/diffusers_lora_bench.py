"""Reference baseline for LoRAs and Lightning: diffusers' QwenImagePipeline with a LoRA from load_lora_weights
and the Qwen-Image-Lightning scheduler (FlowMatchEulerDiscreteScheduler with base_shift = max_shift = ln 3,
no shift_terminal), true_cfg_scale 1, on a full-size synthetic folder (`canvas-synthetic-checkpoint`) and a
random LoRA of the published files' key set (bench/reference/make_bench_lora.py: rank 64, alpha 8).

For each configuration (--steps: 8,4) it runs the whole pipeline twice, untimed then timed, so that every
figure is warm (the pipeline already on the device, as a server holds it), and prints one line `RESULT {json}`
with s/step, the time before and after the steps and end to end (bench/reference/pipeline_timing.py). It does
so with the LoRA as diffusers leaves it after load_lora_weights (PEFT layers computing it beside the weights,
"variant": "unfused"), then again after pipe.fuse_lora() ("fused"), the faster of the two.

  python3 bench/reference/diffusers_lora_bench.py --model /tmp/synth-full --lora /tmp/bench-lora.safetensors
"""
import argparse
import json
import math
import os
import sys
import time

if os.environ.get("DIFFUSERS_SRC"):
    sys.path.insert(0, os.environ["DIFFUSERS_SRC"])
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch  # noqa: E402

from pipeline_timing import Placement, timed_call  # noqa: E402

p = argparse.ArgumentParser()
p.add_argument("--model", default="/tmp/synth-full")
p.add_argument("--lora", default="/tmp/bench-lora.safetensors")
p.add_argument("--steps", default="8,4", help="configurations: the Lightning step counts")
p.add_argument("--size", type=int, default=1328)
p.add_argument("--prompt", default="a lighthouse on a cliff at dusk, watercolor")
p.add_argument("--seed", type=int, default=1)
p.add_argument("--device", default="cuda")
p.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float16", "float32"])
p.add_argument("--placement", default="auto", choices=["auto", "device", "model_cpu_offload"])
p.add_argument("--variants", default="unfused,fused")
p.add_argument("--output-dir", default=None)
a = p.parse_args()
device = torch.device(a.device)

# The Qwen-Image-Lightning recipe's scheduler (its README's scheduler_config).
LIGHTNING = {"base_image_seq_len": 256, "base_shift": math.log(3), "invert_sigmas": False,
             "max_image_seq_len": 8192, "max_shift": math.log(3), "num_train_timesteps": 1000, "shift": 1.0,
             "shift_terminal": None, "stochastic_sampling": False, "time_shift_type": "exponential",
             "use_beta_sigmas": False, "use_dynamic_shifting": True, "use_exponential_sigmas": False,
             "use_karras_sigmas": False}


def main():
    import diffusers
    import transformers
    from diffusers import FlowMatchEulerDiscreteScheduler, QwenImagePipeline
    common = {"tool": "diffusers", "model": a.model, "lora": a.lora, "width": a.size, "height": a.size,
              "true_cfg_scale": 1.0, "seed": a.seed, "dtype": a.dtype, "torch": torch.__version__,
              "diffusers": diffusers.__version__, "transformers": transformers.__version__}
    if device.type == "cuda":
        common["gpu"] = torch.cuda.get_device_name(device)
    begin = time.perf_counter()
    pipe = QwenImagePipeline.from_pretrained(a.model, torch_dtype=getattr(torch, a.dtype))
    pipe.scheduler = FlowMatchEulerDiscreteScheduler.from_config(LIGHTNING)
    pipe.set_progress_bar_config(disable=True)
    common["load_host_s"] = time.perf_counter() - begin
    begin = time.perf_counter()
    pipe.load_lora_weights(a.lora)
    common["load_lora_s"] = time.perf_counter() - begin
    placement = Placement(device, a.placement)
    common["to_device_s"] = placement.place(pipe)

    for variant in a.variants.split(","):
        if variant == "fused":
            begin = time.perf_counter()
            pipe.fuse_lora()
            common["fuse_lora_s"] = time.perf_counter() - begin
        for steps in (int(v) for v in a.steps.split(",")):
            config = f"lightning{steps}_{a.size}"
            call = dict(prompt=a.prompt, true_cfg_scale=1.0, num_inference_steps=steps, width=a.size,
                        height=a.size)
            output = os.path.join(a.output_dir, f"diffusers_{config}_{variant}.png") if a.output_dir else None

            def attempt():
                warm = timed_call(pipe, device, a.seed, **call)
                return dict(timed_call(pipe, device, a.seed, output, **call), warmup_e2e_s=warm["e2e_s"])

            # The fused run is the one to beat: summaries compare "diffusers" with ours.
            tool = "diffusers" if variant == "fused" else "diffusers-unfused"
            result = dict(common, tool=tool, config=config, variant=variant, steps=steps)
            result.update(placement.run(pipe, config, attempt))
            print("RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
