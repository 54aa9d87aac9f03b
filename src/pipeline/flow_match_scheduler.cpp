#include "pipeline/flow_match_scheduler.h"

#include <algorithm>
#include <cmath>
#include <utility>

#include "backend/ops.h"
#include "io/json_config.h"
#include "util/error.h"
#include "util/no_fused_multiply_add.h"

namespace canvas {

namespace {

TimeShiftType parse_time_shift_type(const std::string& name, const std::filesystem::path& file) {
  if (name == "exponential") return TimeShiftType::Exponential;
  if (name == "linear") return TimeShiftType::Linear;
  throw Error("key \"time_shift_type\" in '" + file.string() +
              "' should be \"exponential\" or \"linear\", not \"" + name + "\"");
}

void reject_option(bool enabled, const std::string& option) {
  check(!enabled,
        "the scheduler config sets " + option +
            ", which this FlowMatchEulerDiscreteScheduler does not implement (Qwen-Image leaves it off)");
}

// numpy.linspace(1.0, 1.0 / steps, steps) in float64: start + i * step, each operation rounded, and the
// endpoint stored exactly.
std::vector<double> pipeline_sigmas(int steps) {
  const double stop = 1.0 / steps;
  std::vector<double> values(static_cast<size_t>(steps), 1.0);
  if (steps == 1) return values;
  const double increment = (stop - 1.0) / (steps - 1);
  for (int i = 0; i < steps; ++i) values[static_cast<size_t>(i)] = static_cast<double>(i) * increment + 1.0;
  values.back() = stop;
  return values;
}

// The time shift maps sigma to n / (n + (1 / sigma - 1)), with n = exp(mu) or mu. numpy rounds the Python
// float n to float32 when it meets the float32 sigmas.
float time_shift_numerator(TimeShiftType type, double mu) {
  return static_cast<float>(type == TimeShiftType::Exponential ? std::exp(mu) : mu);
}

// Rounds a value to what it becomes in `dtype`, widened back to f32.
float rounded_to(float value, DType dtype) {
  switch (dtype) {
    case DType::BF16:
      return bf16_to_f32(f32_to_bf16(value));
    case DType::F16:
      return f16_to_f32(f32_to_f16(value));
    default:
      return value;
  }
}

}  // namespace

FlowMatchSchedulerConfig FlowMatchSchedulerConfig::from_json(const nlohmann::json& json,
                                                             const std::filesystem::path& file) {
  FlowMatchSchedulerConfig config;
  config.num_train_timesteps = config_int_or(json, "num_train_timesteps", config.num_train_timesteps, file);
  config.shift = config_float_or(json, "shift", config.shift, file);
  config.use_dynamic_shifting =
      config_bool_or(json, "use_dynamic_shifting", config.use_dynamic_shifting, file);
  config.base_shift = config_float_or(json, "base_shift", config.base_shift, file);
  config.max_shift = config_float_or(json, "max_shift", config.max_shift, file);
  config.base_image_seq_len = config_int_or(json, "base_image_seq_len", config.base_image_seq_len, file);
  config.max_image_seq_len = config_int_or(json, "max_image_seq_len", config.max_image_seq_len, file);
  config.invert_sigmas = config_bool_or(json, "invert_sigmas", config.invert_sigmas, file);
  if (json.contains("shift_terminal") && !json.at("shift_terminal").is_null()) {
    config.shift_terminal = config_float(json, "shift_terminal", file);
  }
  config.use_karras_sigmas = config_bool_or(json, "use_karras_sigmas", config.use_karras_sigmas, file);
  config.use_exponential_sigmas =
      config_bool_or(json, "use_exponential_sigmas", config.use_exponential_sigmas, file);
  config.use_beta_sigmas = config_bool_or(json, "use_beta_sigmas", config.use_beta_sigmas, file);
  config.time_shift_type =
      parse_time_shift_type(config_string_or(json, "time_shift_type", "exponential", file), file);
  config.stochastic_sampling = config_bool_or(json, "stochastic_sampling", config.stochastic_sampling, file);
  check(config.num_train_timesteps > 0,
        "key \"num_train_timesteps\" in '" + file.string() + "' must be positive");
  return config;
}

FlowMatchSchedulerConfig FlowMatchSchedulerConfig::from_file(const std::filesystem::path& path) {
  return from_json(read_json_file(path), path);
}

FlowMatchEulerDiscreteScheduler::FlowMatchEulerDiscreteScheduler(const FlowMatchSchedulerConfig& config)
    : config_(config) {
  reject_option(config.use_karras_sigmas, "use_karras_sigmas");
  reject_option(config.use_exponential_sigmas, "use_exponential_sigmas");
  reject_option(config.use_beta_sigmas, "use_beta_sigmas");
  reject_option(config.stochastic_sampling, "stochastic_sampling");
  reject_option(config.invert_sigmas, "invert_sigmas");
  check(config.num_train_timesteps > 0, "num_train_timesteps must be positive");
}

double FlowMatchEulerDiscreteScheduler::calculate_shift(int64_t image_seq_len,
                                                        const FlowMatchSchedulerConfig& config) {
  check(config.max_image_seq_len != config.base_image_seq_len,
        "the scheduler config's base_image_seq_len and max_image_seq_len are equal, so mu is undefined");
  const double slope = (config.max_shift - config.base_shift) /
                       static_cast<double>(config.max_image_seq_len - config.base_image_seq_len);
  const double intercept = config.base_shift - slope * static_cast<double>(config.base_image_seq_len);
  return static_cast<double>(image_seq_len) * slope + intercept;
}

FlowMatchSchedulerConfig FlowMatchSchedulerConfig::with_fixed_shift(double fixed_shift) const {
  check(std::isfinite(fixed_shift) && fixed_shift > 0.0 && fixed_shift <= 100.0,
        "the scheduler shift must be above 0 and at most 100, got " + std::to_string(fixed_shift));
  FlowMatchSchedulerConfig config = *this;
  config.shift = 1.0;
  config.use_dynamic_shifting = true;
  config.base_shift = config.max_shift = std::log(fixed_shift);
  config.shift_terminal.reset();
  config.time_shift_type = TimeShiftType::Exponential;
  return config;
}

int FlowMatchSchedulerConfig::min_steps() const {
  return shift_terminal.has_value() && *shift_terminal != 0.0 ? 2 : 1;
}

void FlowMatchEulerDiscreteScheduler::set_timesteps(int steps, std::optional<double> mu) {
  check(steps >= 1, "the number of steps must be at least 1, got " + std::to_string(steps));
  const bool stretch = config_.shift_terminal.has_value() && *config_.shift_terminal != 0.0;
  check(steps >= config_.min_steps(),
        "with shift_terminal set, at least 2 steps are needed (one step gives NaN sigmas)");
  check(!config_.use_dynamic_shifting || mu.has_value(), "mu must be given when use_dynamic_shifting is set");

  // numpy float32 from here on: the float64 sigmas are cast, and Python scalars are rounded to float32
  // before they meet the array.
  const float shift = static_cast<float>(config_.shift);
  const float shift_minus_one = static_cast<float>(config_.shift - 1.0);
  std::vector<float> shifted;
  shifted.reserve(static_cast<size_t>(steps));
  for (double sigma_in : pipeline_sigmas(steps)) {
    const float sigma = static_cast<float>(sigma_in);
    if (config_.use_dynamic_shifting) {
      // diffusers raises (1 / sigma - 1) to the power 1, which leaves it exact.
      const float odds = 1.0f / sigma - 1.0f;
      const float numerator = time_shift_numerator(config_.time_shift_type, *mu);
      shifted.push_back(numerator / (numerator + odds));
    } else {
      shifted.push_back((shift * sigma) / (1.0f + shift_minus_one * sigma));
    }
  }

  if (stretch) {
    const float last_gap = 1.0f - shifted.back();
    const float scale_factor = last_gap / static_cast<float>(1.0 - *config_.shift_terminal);
    for (float& value : shifted) value = 1.0f - (1.0f - value) / scale_factor;
  }

  const float train_timesteps = static_cast<float>(config_.num_train_timesteps);
  timesteps_.clear();
  for (float sigma : shifted) timesteps_.push_back(sigma * train_timesteps);
  sigmas_ = std::move(shifted);
  sigmas_.push_back(0.0f);
}

Tensor FlowMatchEulerDiscreteScheduler::step(const Tensor& model_output, int step_index,
                                             const Tensor& sample) const {
  check(!timesteps_.empty(), "scheduler step before set_timesteps");
  check(step_index >= 0 && step_index < static_cast<int>(timesteps_.size()),
        "scheduler step " + std::to_string(step_index) + " outside the " + std::to_string(timesteps_.size()) +
            " steps set");
  check(model_output.shape() == sample.shape(), "scheduler step: model output " +
                                                    shape_str(model_output.shape()) + " and sample " +
                                                    shape_str(sample.shape()) + " differ in shape");
  const DType dtype = model_output.dtype();
  check(dtype == DType::F32 || dtype == DType::BF16 || dtype == DType::F16,
        "scheduler step: model output must be F32, BF16 or F16, got " + std::string(dtype_name(dtype)));

  const size_t index = static_cast<size_t>(step_index);
  const float step_size = sigmas_[index + 1] - sigmas_[index];
  const Tensor displacement = ops::scale(model_output, rounded_to(step_size, dtype));
  const Tensor sample_f32 = sample.dtype() == DType::F32 ? sample : ops::cast(sample, DType::F32);
  const Tensor updated = ops::add(sample_f32, displacement);
  return dtype == DType::F32 ? updated : ops::cast(updated, dtype);
}

Tensor FlowMatchEulerDiscreteScheduler::scale_noise(const Tensor& sample, int sigma_index,
                                                    const Tensor& noise) const {
  check(!sigmas_.empty(), "scale_noise before set_timesteps");
  check(sigma_index >= 0 && sigma_index < static_cast<int>(sigmas_.size()),
        "scale_noise at sigma " + std::to_string(sigma_index) + " of the " + std::to_string(sigmas_.size()) +
            " sigmas set");
  check(sample.shape() == noise.shape() && sample.dtype() == noise.dtype(),
        "scale_noise: sample " + shape_str(sample.shape()) + " " + std::string(dtype_name(sample.dtype())) +
            " and noise " + shape_str(noise.shape()) + " " + std::string(dtype_name(noise.dtype())) +
            " differ");
  const DType dtype = sample.dtype();
  check(dtype == DType::F32 || dtype == DType::BF16 || dtype == DType::F16,
        "scale_noise: the sample must be F32, BF16 or F16, got " + std::string(dtype_name(dtype)));
  // The reference casts the sigmas to the sample's dtype and computes 1.0 - sigma in it.
  const float sigma = rounded_to(sigmas_[static_cast<size_t>(sigma_index)], dtype);
  const float one_minus_sigma = rounded_to(1.0f - sigma, dtype);
  return ops::add(ops::scale(noise, sigma), ops::scale(sample, one_minus_sigma));
}

int FlowMatchEulerDiscreteScheduler::first_step_for_strength(int steps, double strength) {
  check(steps >= 1, "the number of steps must be at least 1, got " + std::to_string(steps));
  check(strength >= 0.0 && strength <= 1.0,
        "the strength must lie in [0, 1], got " + std::to_string(strength));
  const double kept = std::min(static_cast<double>(steps) * strength, static_cast<double>(steps));
  const int start = static_cast<int>(std::max(static_cast<double>(steps) - kept, 0.0));
  check(steps - start >= 1, "strength " + std::to_string(strength) + " of " + std::to_string(steps) +
                                " steps leaves no step to run; raise the strength or the steps");
  return start;
}

}  // namespace canvas
