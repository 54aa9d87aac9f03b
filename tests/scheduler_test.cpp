#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <string>
#include <vector>

#include "io/json_config.h"
#include "io/safetensors.h"
#include "pipeline/flow_match_scheduler.h"
#include "test_util.h"
#include "util/error.h"

namespace canvas {
namespace {

// The reference schedules and Euler steps (tests/golden/README.md, section scheduler/).
const SafetensorsFile& golden() {
  static const SafetensorsFile file =
      SafetensorsFile::open(test::source_path("tests/golden/scheduler/golden.safetensors"));
  return file;
}

const nlohmann::json& manifest() {
  static const nlohmann::json json = read_json_file(test::source_path("tests/golden/scheduler/golden.json"));
  return json;
}

std::vector<float> golden_values(const std::string& name) {
  return golden().tensor(name).to_floats();
}

FlowMatchSchedulerConfig qwen_image_config() {
  return FlowMatchSchedulerConfig::from_json(manifest().at("scheduler_config"),
                                             "golden.json scheduler_config");
}

constexpr double kRelativeTolerance = 1e-6;

// Element by element: relative for values above 1, absolute below (sigmas and timesteps span both).
void expect_matches_diffusers(const std::string& what, const std::vector<float>& ours,
                              const std::vector<float>& reference,
                              double relative_tolerance = kRelativeTolerance) {
  ASSERT_EQ(ours.size(), reference.size()) << what;
  for (size_t i = 0; i < ours.size(); ++i) {
    const double scale = std::max(1.0, static_cast<double>(std::fabs(reference[i])));
    EXPECT_LE(std::fabs(static_cast<double>(ours[i]) - reference[i]), relative_tolerance * scale)
        << what << "[" << i << "]: " << ours[i] << " vs diffusers " << reference[i];
  }
}

TEST(Scheduler, ShiftMatchesThePipeline) {
  const FlowMatchSchedulerConfig config = qwen_image_config();
  for (const nlohmann::json& entry : manifest().at("cases")) {
    const int64_t width = entry.at("width").get<int64_t>();
    const int64_t height = entry.at("height").get<int64_t>();
    const int64_t image_seq_len = (height / 16) * (width / 16);
    ASSERT_EQ(image_seq_len, entry.at("image_seq_len").get<int64_t>());
    // Python's float repr round-trips, so the reference's mu is known to the last bit.
    EXPECT_EQ(FlowMatchEulerDiscreteScheduler::calculate_shift(image_seq_len, config),
              entry.at("mu").get<double>())
        << entry.at("key");
  }
}

TEST(Scheduler, TimestepsAndSigmasMatchDiffusers) {
  FlowMatchEulerDiscreteScheduler scheduler(qwen_image_config());
  ASSERT_FALSE(manifest().at("cases").empty());
  for (const nlohmann::json& entry : manifest().at("cases")) {
    const std::string key = entry.at("key").get<std::string>();
    scheduler.set_timesteps(entry.at("steps").get<int>(), entry.at("mu").get<double>());
    expect_matches_diffusers(key + ".timesteps", scheduler.timesteps(), golden_values(key + ".timesteps"));
    expect_matches_diffusers(key + ".sigmas", scheduler.sigmas(), golden_values(key + ".sigmas"));
  }
}

TEST(Scheduler, EulerStepMatchesDiffusers) {
  const nlohmann::json& euler = manifest().at("euler");
  const nlohmann::json* schedule = nullptr;
  for (const nlohmann::json& entry : manifest().at("cases")) {
    if (entry.at("key") == euler.at("schedule")) schedule = &entry;
  }
  ASSERT_NE(schedule, nullptr);
  FlowMatchEulerDiscreteScheduler scheduler(qwen_image_config());
  scheduler.set_timesteps(schedule->at("steps").get<int>(), schedule->at("mu").get<double>());

  const Tensor sample = golden().tensor("euler.sample");
  const Tensor model_output = golden().tensor("euler.model_output");
  const Tensor stepped = scheduler.step(model_output, euler.at("step_index").get<int>(), sample);
  EXPECT_EQ(stepped.dtype(), DType::F32);
  EXPECT_EQ(stepped.shape(), sample.shape());
  expect_matches_diffusers("euler.prev_sample", stepped.to_floats(), golden_values("euler.prev_sample"));

  // The pipeline's loop: every step feeds the next.
  const Tensor expected_steps = golden().tensor("euler.loop_all_steps");
  Tensor latents = sample;
  for (int step = 0; step < static_cast<int>(scheduler.timesteps().size()); ++step) {
    latents = scheduler.step(model_output, step, latents);
    expect_matches_diffusers("euler.loop_all_steps[" + std::to_string(step) + "]", latents.to_floats(),
                             expected_steps.select(0, step).to_floats());
  }
}

// Values printed by diffusers 0.42.1 for schedules the Qwen-Image config does not reach: static shift,
// the linear time shift, and a stretch after a static shift.
TEST(Scheduler, OtherShiftModesMatchDiffusers) {
  FlowMatchSchedulerConfig static_shift;
  static_shift.shift = 3.0;
  FlowMatchEulerDiscreteScheduler static_scheduler(static_shift);
  static_scheduler.set_timesteps(4, std::nullopt);
  expect_matches_diffusers("static shift sigmas", static_scheduler.sigmas(),
                           {1.0f, 0.8999999761581421f, 0.75f, 0.5f, 0.0f});
  expect_matches_diffusers("static shift timesteps", static_scheduler.timesteps(),
                           {1000.0f, 900.0f, 750.0f, 500.0f});

  FlowMatchSchedulerConfig linear;
  linear.use_dynamic_shifting = true;
  linear.time_shift_type = TimeShiftType::Linear;
  FlowMatchEulerDiscreteScheduler linear_scheduler(linear);
  linear_scheduler.set_timesteps(5, 0.8);
  expect_matches_diffusers(
      "linear shift sigmas", linear_scheduler.sigmas(),
      {1.0f, 0.7619048357009888f, 0.5454545617103577f, 0.3478260934352875f, 0.1666666567325592f, 0.0f});
  expect_matches_diffusers(
      "linear shift timesteps", linear_scheduler.timesteps(),
      {1000.0f, 761.9048461914062f, 545.45458984375f, 347.8260803222656f, 166.66665649414062f});

  FlowMatchSchedulerConfig stretched;
  stretched.shift = 2.5;
  stretched.shift_terminal = 0.1;
  FlowMatchEulerDiscreteScheduler stretched_scheduler(stretched);
  stretched_scheduler.set_timesteps(3, std::nullopt);
  expect_matches_diffusers("stretched sigmas", stretched_scheduler.sigmas(),
                           {1.0f, 0.6625000238418579f, 0.10000002384185791f, 0.0f});
  expect_matches_diffusers("stretched timesteps", stretched_scheduler.timesteps(),
                           {1000.0f, 662.5f, 100.0000228881836f});
}

TEST(Scheduler, OneStepWithoutTerminalGoesStraightToZero) {
  FlowMatchEulerDiscreteScheduler scheduler(FlowMatchSchedulerConfig{});
  scheduler.set_timesteps(1, std::nullopt);
  EXPECT_EQ(scheduler.sigmas(), (std::vector<float>{1.0f, 0.0f}));
  EXPECT_EQ(scheduler.timesteps(), (std::vector<float>{1000.0f}));
}

// diffusers 0.42.1 on the CPU, step 1 of the 4-step Qwen-Image schedule at mu 0.5, with bf16 tensors: torch
// rounds the step size to bf16 before the multiply and the product to bf16 after it.
TEST(Scheduler, Bf16StepRoundsLikeTorch) {
  FlowMatchEulerDiscreteScheduler scheduler(qwen_image_config());
  scheduler.set_timesteps(4, 0.5);
  const Tensor model_output =
      Tensor::from_floats(std::vector<float>{1.0f, -2.75f, 0.3333f, 100.0f}, {4}).to(DType::BF16);
  const Tensor sample = Tensor::from_floats(std::vector<float>{0.1f, 0.2f, -0.7f, 3.0f}, {4}).to(DType::BF16);
  const Tensor stepped = scheduler.step(model_output, 1, sample);
  EXPECT_EQ(stepped.dtype(), DType::BF16);
  EXPECT_EQ(stepped.to_floats(), (std::vector<float>{-0.21875f, 1.078125f, -0.8046875f, -28.875f}));
}

TEST(Scheduler, ReadsTheConfigFileWithDefaults) {
  const auto path = test::scratch_dir("scheduler_config") / "scheduler_config.json";
  std::ofstream(path) << R"({"use_dynamic_shifting": true, "shift_terminal": null, "max_shift": 0.9,
                             "time_shift_type": "linear", "num_train_timesteps": 500})";
  const FlowMatchSchedulerConfig config = FlowMatchSchedulerConfig::from_file(path);
  EXPECT_TRUE(config.use_dynamic_shifting);
  EXPECT_FALSE(config.shift_terminal.has_value());
  EXPECT_EQ(config.max_shift, 0.9);
  EXPECT_EQ(config.time_shift_type, TimeShiftType::Linear);
  EXPECT_EQ(config.num_train_timesteps, 500);
  EXPECT_EQ(config.base_shift, 0.5);
  EXPECT_EQ(config.base_image_seq_len, 256);
  EXPECT_EQ(config.max_image_seq_len, 4096);
  EXPECT_EQ(config.shift, 1.0);

  const FlowMatchSchedulerConfig qwen = qwen_image_config();
  EXPECT_EQ(qwen.shift_terminal, 0.02);
  EXPECT_EQ(qwen.max_image_seq_len, 8192);
  EXPECT_EQ(qwen.time_shift_type, TimeShiftType::Exponential);
}

TEST(Scheduler, RejectsOptionsItDoesNotImplement) {
  for (const char* option : {"use_karras_sigmas", "use_exponential_sigmas", "use_beta_sigmas",
                             "stochastic_sampling", "invert_sigmas"}) {
    nlohmann::json json = manifest().at("scheduler_config");
    json[option] = true;
    const FlowMatchSchedulerConfig config = FlowMatchSchedulerConfig::from_json(json, "test config");
    const std::string message = test::error_of([&] { FlowMatchEulerDiscreteScheduler scheduler(config); });
    test::expect_contains(message, option);
  }

  nlohmann::json unknown_shift = manifest().at("scheduler_config");
  unknown_shift["time_shift_type"] = "cubic";
  const std::string message =
      test::error_of([&] { FlowMatchSchedulerConfig::from_json(unknown_shift, "test config"); });
  test::expect_contains(message, "cubic");
}

TEST(Scheduler, RejectsImpossibleRequests) {
  FlowMatchEulerDiscreteScheduler scheduler(qwen_image_config());
  const Tensor latents = Tensor::zeros({1, 4, 64}, DType::F32);
  test::expect_contains(test::error_of([&] { scheduler.step(latents, 0, latents); }), "before set_timesteps");
  test::expect_contains(test::error_of([&] { scheduler.set_timesteps(4, std::nullopt); }), "mu");
  test::expect_contains(test::error_of([&] { scheduler.set_timesteps(1, 0.5); }), "at least 2 steps");
  test::expect_contains(test::error_of([&] { scheduler.set_timesteps(0, 0.5); }), "at least 1");

  scheduler.set_timesteps(4, 0.5);
  test::expect_contains(test::error_of([&] { scheduler.step(latents, 4, latents); }), "outside");
  test::expect_contains(test::error_of([&] { scheduler.step(latents, -1, latents); }), "outside");
  const Tensor other = Tensor::zeros({1, 5, 64}, DType::F32);
  test::expect_contains(test::error_of([&] { scheduler.step(latents, 0, other); }), "differ in shape");
}

}  // namespace
}  // namespace canvas
