// Helpers shared by the test suite: where the committed test data lives, and tensor comparisons.
#pragma once

#include <gtest/gtest.h>

#include <array>
#include <deque>
#include <filesystem>
#include <functional>
#include <nlohmann/json.hpp>
#include <source_location>
#include <string>
#include <string_view>
#include <vector>

#include "app/job_spec.h"
#include "io/png_image.h"
#include "io/weight_source.h"
#include "pipeline/request.h"
#include "pipeline/text_to_image.h"
#include "tensor/tensor.h"

namespace canvas::test {

// A path inside the source tree, e.g. source_path("tests/golden/tokenizer").
std::filesystem::path source_path(const std::string& relative);
// A fresh, empty scratch folder for one test; removed when the process exits cleanly.
std::filesystem::path scratch_dir(const std::string& name);

// The tensors and parameters of a golden folder under tests/golden/ (see tests/golden/README.md).
WeightSource open_golden(const std::string& folder);
// The model weights saved beside a golden (not golden.safetensors). Text-encoder checkpoints get their
// names mapped to the canonical style, as the model layout does for real checkpoints.
WeightSource open_golden_model(const std::string& folder, bool text_encoder = false);
nlohmann::json golden_json(const std::string& folder);
// A picture stored in a golden as U8 [H, W, 3].
RgbImage golden_picture(const WeightSource& golden, const std::string& name);
// The (t, h, w) rows of a golden's image_grid_thw, I64 [images, 3].
std::vector<std::array<int64_t, 3>> golden_grids(const Tensor& image_grid_thw);

// The prompt, negative prompt, CFG scale, steps and seed a golden's golden.json describes.
SamplingSettings golden_sampling(const nlohmann::json& parameters);

// The request a pipeline golden's golden.json describes (prompt, negative prompt, CFG, size, steps, seed).
TextToImageRequest golden_request(const nlohmann::json& parameters);

// The request an edit golden's golden.json describes (tests/golden/edit/<name>/), pictures read from its
// folder.
ImageEditRequest golden_edit_request(const std::string& name);

// The request an img2img / inpainting golden's golden.json describes (tests/golden/inpaint/<name>/), picture
// and mask read from its folder. img2img and inpainting guide as text-to-image does (cfg > 1), so an
// unguided reference call runs at scale 1.
ImageToImageRequest golden_image_to_image_request(const std::string& name);

struct CommandResult {
  int exit_code;       // -1 when the process did not exit normally
  std::string output;  // stdout and stderr together
};
// Runs one of the build's executables (path relative to the build folder) with a shell-quoted argument
// string.
CommandResult run_built_program(const std::string& program, const std::string& arguments);
// Where that executable is.
std::filesystem::path built_program(const std::string& program);
// Runs a shell command line.
CommandResult run_command(const std::string& command);
// The text of a PNG's chunk `key` ("parameters", "canvas"), or "" when it has none.
std::string png_text(const RgbImage& image, const std::string& key);
// The values of a .npy file that write_npy wrote (little-endian float32 after the header).
std::vector<float> npy_floats(const std::filesystem::path& path);

// A transformer golden's model, and the image shapes of its first sample (golden.json's img_shapes).
QwenImageTransformer2DModel load_golden_transformer(const std::string& folder);
std::vector<ImageShape> first_sample_shapes(const nlohmann::json& img_shapes);

// While it lives, files cannot grow past `bytes` (RLIMIT_FSIZE) and a write past it fails with EFBIG ("File
// too large") instead of raising SIGXFSZ: a full disk that needs no root and no mount, for testing write
// errors.
class FileSizeLimit {
 public:
  explicit FileSizeLimit(uint64_t bytes);
  ~FileSizeLimit();
  FileSizeLimit(const FileSizeLimit&) = delete;
  FileSizeLimit& operator=(const FileSizeLimit&) = delete;

 private:
  uint64_t previous_limit_;
  void (*previous_handler_)(int);
};

// Runs `action`, which must throw canvas::Error, and returns the message (a test failure if it does not).
std::string error_of(const std::function<void()>& action);
// Runs `action`, which must throw app::RequestError, and returns it (a test failure if it does not).
app::RequestError request_error_of(const std::function<void()>& action);

// Same shape, dtype and bytes, wherever the tensors live.
bool bit_identical(const Tensor& a, const Tensor& b);

// A component for weight-placement tests, named "transformer": `blocks` blocks, each a [dim, dim] weight
// every pass reads and a [dim] weight read once, and a shared [dim] weight; zeroed host tensors of `dtype`.
class TestComponent {
 public:
  TestComponent(int blocks, int64_t dim, DType dtype);
  TestComponent(const TestComponent&) = delete;
  TestComponent& operator=(const TestComponent&) = delete;

  const ComponentWeights& weights() const { return weights_; }
  int blocks() const { return static_cast<int>(weights_.blocks.size()); }
  // An offloaded plan keeping `resident` blocks on the device and streaming the rest through `slots`.
  ComponentPlan plan(int resident, int slots) const;
  // The weight block `index` reads every pass: on the device between its gates.
  const Tensor& block_weight(int index) const { return *weights_.blocks[index].tensors[0]; }
  // A job's phase as the transformer executor drives it: each block's once-read weights, then `passes`
  // passes over the blocks, calling `compute(block)` between each block's gates.
  void run_phase(ComponentPlacement& placement, int passes, const std::function<void(int)>& compute) const;

 private:
  std::deque<Tensor> tensors_;  // the groups point into it
  ComponentWeights weights_;
};

// The full-size Qwen-Image layout written as a sparse all-zero checkpoint into scratch folder `name`, loaded
// for the host and described as a bf16 job on cuda:0: planning facts need no GPU, only the placed dtypes.
// `pipeline` is the synthetic tool's --pipeline (text-to-image, or edit-plus for Qwen-Image-Edit-2511).
QwenImageModel full_size_planning_model(const std::string& name,
                                        const std::string& pipeline = "text-to-image");

// A suite of whole jobs on the tiny model (models/tiny-qwen-image) on the CPU, with the request of the
// pipeline golden c_96x64_cfg4_neg_seed123. The model and the unconstrained job's result are made once per
// suite, and recoveries are remembered in a cache folder of the suite's own.
class TinyPipelineSuite : public ::testing::Test {
 protected:
  static void SetUpTestSuite();
  static void TearDownTestSuite();

  static QwenImageModel* model_;
  static TextToImageRequest request_;
  static JobResult* reference_;  // the job with no memory options
};
// One H200 with `budget_bytes` free and 100 GiB of host memory, at the speeds measured on it
// (bench/RESULTS.md, 2026-11-28): a machine to plan for without one.
MachineFacts h200_machine(int64_t budget_bytes);

// The transformer's prediction (forward's) with its tokens split across `devices` by the sequence-parallel
// executor; devices may repeat (ranks sharing a GPU exchange by copies). The weights must already be where
// the ranks compute: the placement is mapped and moves nothing.
Tensor sequence_parallel_forward(QwenImageTransformer2DModel& model, const std::vector<Device>& devices,
                                 const Tensor& hidden_states, const Tensor& encoder_hidden_states,
                                 const Tensor& encoder_hidden_states_mask, float timestep,
                                 const std::vector<ImageShape>& img_shapes);

// ||actual - expected||_2 / ||expected||_2 over all elements; shapes must match.
double relative_error(const Tensor& actual, const Tensor& expected);
double max_abs_difference(const Tensor& actual, const Tensor& expected);
// max |actual - expected| / max |expected|: one scale for the whole tensor, so elements near zero do not
// dominate. Infinite when `actual` holds a NaN where `expected` has a number; NaN references are skipped.
double max_relative_error(const Tensor& actual, const Tensor& expected);

// Expects max_relative_error(actual, expected) <= tolerance; on failure, reports the largest absolute and
// relative error and the element where it is (or the first NaN), at the caller's line.
void expect_close(const std::vector<double>& actual, const std::vector<double>& expected, double tolerance,
                  std::source_location where = std::source_location::current());
void expect_close(const Tensor& actual, const Tensor& expected, double tolerance,
                  std::source_location where = std::source_location::current());

// Expects `text` to contain `part`; on failure, prints both at the caller's line.
void expect_contains(std::string_view text, std::string_view part,
                     std::source_location where = std::source_location::current());

}  // namespace canvas::test
