// diffusers' FlowMatchEulerDiscreteScheduler as QwenImagePipeline drives it: the pipeline passes
// sigmas = linspace(1, 1/steps, steps) and a resolution-dependent shift mu, the scheduler shifts and
// stretches them, and each step is one Euler update along the predicted velocity.
//
// The schedule is computed with the reference's exact roundings: linspace in double, then everything
// in float (numpy float32 for the shift and stretch, torch float32 for timesteps = sigmas * 1000).
#pragma once

#include <cstdint>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "tensor/tensor.h"

namespace canvas {

enum class TimeShiftType { Exponential, Linear };

// scheduler_config.json. Missing keys take diffusers' defaults.
struct FlowMatchSchedulerConfig {
  int64_t num_train_timesteps = 1000;
  double shift = 1.0;
  bool use_dynamic_shifting = false;
  double base_shift = 0.5;
  double max_shift = 1.15;
  int64_t base_image_seq_len = 256;
  int64_t max_image_seq_len = 4096;
  bool invert_sigmas = false;
  std::optional<double> shift_terminal;
  bool use_karras_sigmas = false;
  bool use_exponential_sigmas = false;
  bool use_beta_sigmas = false;
  TimeShiftType time_shift_type = TimeShiftType::Exponential;
  bool stochastic_sampling = false;

  // `file` only names the source in error messages.
  // The fewest steps set_timesteps accepts: 2 when shift_terminal stretches the schedule (one step would
  // divide by zero), else 1.
  int min_steps() const;
  // This schedule with a fixed shift, as the Lightning recipes sample: dynamic shifting with base_shift =
  // max_shift = ln(shift), so mu = ln(shift) at every resolution, exponential time shift, no
  // shift_terminal. Throws canvas::Error unless 0 < shift <= 100.
  FlowMatchSchedulerConfig with_fixed_shift(double shift) const;

  static FlowMatchSchedulerConfig from_json(const nlohmann::json& json, const std::filesystem::path& file);
  static FlowMatchSchedulerConfig from_file(const std::filesystem::path& path);
};

class FlowMatchEulerDiscreteScheduler {
 public:
  // Throws canvas::Error for options this port does not implement (karras, exponential or beta sigmas,
  // stochastic sampling, inverted sigmas) rather than sampling with a different schedule.
  explicit FlowMatchEulerDiscreteScheduler(const FlowMatchSchedulerConfig& config);

  // The pipeline's mu for a packed latent sequence of `image_seq_len` tokens: linear in the length,
  // base_shift at base_image_seq_len and max_shift at max_image_seq_len (extrapolated beyond them).
  static double calculate_shift(int64_t image_seq_len, const FlowMatchSchedulerConfig& config);

  // `mu` is required with dynamic shifting and ignored without it. With shift_terminal set, at least two
  // steps are needed: diffusers stretches one step by 0/0 and samples NaN.
  void set_timesteps(int steps, std::optional<double> mu);

  // On the 0..1000 scale, one per step.
  const std::vector<float>& timesteps() const { return timesteps_; }
  // One per step plus the final 0.
  const std::vector<float>& sigmas() const { return sigmas_; }

  // prev = sample + (sigmas[i + 1] - sigmas[i]) * model_output. As in the reference, the sum is formed in
  // f32 and returned in model_output's dtype; the product is rounded to model_output's dtype, with the
  // step size rounded to it first (torch's CPU arithmetic for a low-precision tensor times an f32 scalar).
  Tensor step(const Tensor& model_output, int step_index, const Tensor& sample) const;

  // The forward process of flow matching (scale_noise), at sigmas()[sigma_index]:
  // sigma * noise + (1 - sigma) * sample, in sample's dtype (F32, BF16 or F16) with torch's roundings: sigma
  // rounded to the dtype, 1 - sigma formed and rounded in it, then both products and the sum. The img2img
  // and inpainting pipelines call it with set_begin_index, so the sigma is the one of an index, not of a
  // timestep: the first kept step's for the initial latents, the next step's for the inpainting blend;
  // sigma_index = steps (the final 0) returns `sample`.
  Tensor scale_noise(const Tensor& sample, int sigma_index, const Tensor& noise) const;

  // The img2img and inpainting pipelines' get_timesteps: of `steps` scheduled steps, `strength` keeps the
  // last min(steps * strength, steps), i.e. they start at index t_start = int(max(steps - steps * strength,
  // 0)), in double precision as Python computes it (25 * 0.56 = 14.000000000000002 gives 10, not 11). The
  // denoising loop then runs indices t_start .. steps - 1 of timesteps() and sigmas(). Throws canvas::Error
  // for a strength outside [0, 1] or one that leaves no step, as the reference raises.
  static int first_step_for_strength(int steps, double strength);

 private:
  FlowMatchSchedulerConfig config_;
  std::vector<float> timesteps_;
  std::vector<float> sigmas_;
};

}  // namespace canvas
