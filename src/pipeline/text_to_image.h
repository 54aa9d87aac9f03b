// Text-to-image with Qwen-Image (QwenImagePipeline.__call__): encode the prompt, denoise seeded noise
// with flow-matching Euler steps and true classifier-free guidance, decode with the VAE.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "profile/profiler.h"
#include "pipeline/components.h"

namespace canvas {

struct TextToImageRequest {
  std::string prompt;
  // With cfg_scale > 1 and no negative prompt, " " is used, as the Qwen-Image examples do.
  std::optional<std::string> negative_prompt;
  float cfg_scale = 4.0f;
  int steps = 50;
  int64_t width = 1024;
  int64_t height = 1024;
  uint64_t seed = 0;
  int64_t max_sequence_length = 512;
};

struct PhaseTimings {
  double plan_s = 0;  // planning (dry runs included) and arranging the weights
  double text_encode_s = 0;
  double denoise_s = 0;
  double vae_decode_s = 0;
  std::vector<double> step_s;
};

struct TextToImageResult {
  Tensor image;    // [H, W, 3] f32 in [0, 1]: the reference's output_type="np"
  Tensor latents;  // packed latents after the last step: the reference's output_type="latent"
  bool used_cfg = false;
  std::string negative_prompt;  // what the unconditional pass encoded, when used_cfg
  PhaseTimings timings;
  MemoryPlan plan;                      // how the job held its weights, after any recovery
  std::vector<std::string> recoveries;  // each allocation failure recovered from, and the rung taken
  int64_t bytes_streamed = 0;           // transformer weights copied to the device during the job
};

// Called after each denoising step with the number of steps done and the total.
using StepCallback = std::function<void(int done, int total)>;
// Called once the job's memory plan is made, before any work on the device.
using PlanCallback = std::function<void(const MemoryPlan& plan)>;

// Checks a request against the model: sizes, steps, guidance. Throws canvas::Error with the reason.
void validate_request(const TextToImageRequest& request, const QwenImageComponents& components);

// What a caller watches a job with; every member may be left empty.
struct JobObservers {
  StepCallback on_step;
  PlanCallback on_plan;
  std::function<void(const std::string& recovery)> on_recovery;
  Profiler* profiler = nullptr;  // marks the job's phases and steps
};

// Plans the job's memory (components.memory_options), then runs it.
TextToImageResult text_to_image(QwenImageComponents& components, const TextToImageRequest& request,
                                const JobObservers& observers = {});

// [H, W, 3] floats in [0, 1] to 8-bit RGB, rounding as the reference's numpy_to_pil does.
std::vector<uint8_t> image_to_rgb8(const Tensor& image);

}  // namespace canvas
