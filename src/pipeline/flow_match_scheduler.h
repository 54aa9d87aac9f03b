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

 private:
  FlowMatchSchedulerConfig config_;
  std::vector<float> timesteps_;
  std::vector<float> sigmas_;
};

}  // namespace canvas
