"""What the whole-pipeline reference benchmarks share (diffusers_edit_bench.py, diffusers_inpaint_bench.py):
the deterministic pictures, one pipeline call timed step by step, and where the pipeline runs.

A step runs from the transformer's first call (the conditional pass) to callback_on_step_end, both after a
device synchronize; s/step is the median step after the first. The pipeline runs on the device when it
fits; under "auto", if placing it or a run fails for device memory, everything goes back to the host and
the runs continue (the failed one again) under enable_model_cpu_offload().
"""
import gc
import statistics
import time

import numpy as np
import torch
from PIL import Image

GiB = 1 << 30


def picture(width, height, seed):
    """A deterministic RGB picture: smooth colour waves plus noise, so that it is neither flat nor pure noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    base = np.stack([127 + 110 * np.sin(x / (23 + 7 * c) + y / (31 + 5 * c) + seed) for c in range(3)], axis=-1)
    return Image.fromarray(np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8))


def synchronize(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class StepTimer:
    """A step runs from the transformer's first call (the conditional pass) to callback_on_step_end."""

    def __init__(self, device):
        self.device = device
        self.start = None
        self.first_start = None
        self.last_end = None
        self.steps = []

    def before_transformer(self, module, args, kwargs):
        if self.start is None:
            synchronize(self.device)
            self.start = time.perf_counter()
            self.first_start = self.first_start or self.start

    def on_step_end(self, pipe, step, timestep, callback_kwargs):
        synchronize(self.device)
        self.last_end = time.perf_counter()
        self.steps.append(self.last_end - self.start)
        self.start = None
        return {}


def timed_call(pipe, device, seed, output=None, **call):
    """pipe(**call) once, with torch.Generator('cpu').manual_seed(seed), each step timed; the image is saved to
    `output` when given. Returns s/step (the median step after the first), the first step, every step, the
    time before the steps (prompt encoding, the pictures' VAE encoding), after them (VAE decode) and end to
    end (the pipeline call)."""
    timer = StepTimer(device)
    hook = pipe.transformer.register_forward_pre_hook(timer.before_transformer, with_kwargs=True)
    generator = torch.Generator(device="cpu").manual_seed(seed)
    try:
        synchronize(device)
        begin = time.perf_counter()
        image = pipe(generator=generator, callback_on_step_end=timer.on_step_end, **call).images[0]
        synchronize(device)
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


class Placement:
    """Where the pipelines run: "device", "model_cpu_offload", or "auto" (the device, falling back to model
    CPU offload on running out of device memory). Pipelines made with from_pipe share their components, so
    one placement serves them all; offloading hooks belong to one pipeline and are made again for the one
    that runs next."""

    def __init__(self, device, requested):
        self.device = device
        self.requested = requested
        self.current = "device" if requested == "auto" else requested
        self.device_oom = None  # what failed first for device memory
        self.offloaded = None  # the pipeline whose hooks offload the components

    def place(self, pipe):
        """Puts the components where they run; returns the seconds it took."""
        begin = time.perf_counter()
        if self.current == "device":
            try:
                pipe.to(self.device)
            except Exception as error:  # noqa: BLE001 - only device-memory failures fall back
                if self.requested != "auto" or not is_device_oom(error):
                    raise
                self.device_oom = f"loading: {type(error).__name__}: {str(error)[:200]}"
                self.current = "model_cpu_offload"
        # Outside the except clause, whose traceback would keep the failed attempt's device tensors alive.
        self._offload(pipe)
        synchronize(self.device)
        return time.perf_counter() - begin

    def _offload(self, pipe):
        if self.current != "model_cpu_offload" or self.offloaded is pipe:
            return
        pipe.to("cpu")
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
        pipe.enable_model_cpu_offload(device=self.device)
        self.offloaded = pipe

    def run(self, pipe, label, attempt):
        """attempt() (one or more timed calls of `pipe`) until it succeeds, or fails for anything but device
        memory on the device under "auto"; returns its figures, or "error", with the placement it ran under,
        what failed first for device memory and the device's peak."""
        result = {}
        while True:
            self._offload(pipe)
            if self.device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(self.device)
            try:
                result.update(attempt())
                break
            except Exception as error:  # noqa: BLE001 - only device-memory failures fall back
                if self.current != "device" or self.requested != "auto" or not is_device_oom(error):
                    result["error"] = f"{type(error).__name__}: {str(error)[:300]}"
                    break
                self.device_oom = f"{label}: {type(error).__name__}: {str(error)[:200]}"
            self.current = "model_cpu_offload"
        result["placement"] = self.current
        result["device_oom"] = self.device_oom
        if self.device.type == "cuda":
            result["peak_allocated_GiB"] = torch.cuda.max_memory_allocated(self.device) / GiB
        return result
