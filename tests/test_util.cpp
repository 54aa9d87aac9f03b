#include "test_util.h"

#include <gtest/gtest.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <optional>

#include "image/decode.h"
#include "io/json_config.h"
#include "io/model_layout.h"
#include "pipeline/component_weights.h"
#include "pipeline/transformer_executor.h"

namespace canvas::test {

namespace {

// The build's folders, overridable for test binaries run from a copy of the tree on another machine.
std::filesystem::path folder_from(const char* variable, const char* built_in) {
  const char* value = std::getenv(variable);
  return std::filesystem::path(value ? value : built_in);
}

// How far `actual` strays from `expected`, for max_relative_error and expect_close.
struct Deviation {
  double max_error = 0;          // the largest |actual - expected|
  size_t worst = 0;              // where it is
  double max_magnitude = 0;      // the largest |expected|
  std::optional<size_t> nan_at;  // the first NaN in `actual` where `expected` has a number

  double scale() const { return std::max(max_magnitude, 1e-30); }
  double relative() const { return nan_at ? INFINITY : max_error / scale(); }
};

Deviation deviation(const std::vector<double>& actual, const std::vector<double>& expected) {
  check(actual.size() == expected.size(),
        "comparing " + std::to_string(actual.size()) + " values against " + std::to_string(expected.size()));
  Deviation result;
  for (size_t i = 0; i < expected.size(); ++i) {
    if (std::isnan(expected[i])) continue;
    if (std::isnan(actual[i])) {
      result.nan_at = i;
      return result;
    }
    const double error = std::fabs(actual[i] - expected[i]);
    if (error > result.max_error) {
      result.max_error = error;
      result.worst = i;
    }
    result.max_magnitude = std::max(result.max_magnitude, std::fabs(expected[i]));
  }
  return result;
}

std::vector<double> widened_values(const Tensor& tensor) {
  const std::vector<float> values = tensor.to_floats();
  return {values.begin(), values.end()};
}

}  // namespace

std::filesystem::path source_path(const std::string& relative) {
  return folder_from("CANVAS_SOURCE_DIR", CANVAS_SOURCE_DIR) / relative;
}

std::filesystem::path scratch_dir(const std::string& name) {
  auto dir =
      std::filesystem::path(CANVAS_BINARY_DIR) / "test-scratch" / (name + "-" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir;
}

WeightSource open_golden(const std::string& folder) {
  return WeightSource::open(source_path("tests/golden/" + folder + "/golden.safetensors"));
}

WeightSource open_golden_model(const std::string& folder, bool text_encoder) {
  const std::filesystem::path dir = source_path("tests/golden/" + folder);
  for (const char* name : {"model.safetensors.index.json", "diffusion_pytorch_model.safetensors.index.json",
                           "model.safetensors", "diffusion_pytorch_model.safetensors"}) {
    if (!std::filesystem::exists(dir / name)) continue;
    if (!text_encoder) return WeightSource::open(dir / name);
    return WeightSource::open(dir / name,
                              text_encoder_rewrites(WeightSource::open(dir / name).names(), dir.string()));
  }
  throw Error("no model weights in " + dir.string());
}

nlohmann::json golden_json(const std::string& folder) {
  return read_json_file(source_path("tests/golden/" + folder + "/golden.json"));
}

RgbImage golden_picture(const WeightSource& golden, const std::string& name) {
  const Tensor tensor = golden.get(name);
  RgbImage image;
  image.height = tensor.dim(0);
  image.width = tensor.dim(1);
  const uint8_t* bytes = tensor.data<uint8_t>();
  image.pixels.assign(bytes, bytes + tensor.numel());
  return image;
}

std::vector<std::array<int64_t, 3>> golden_grids(const Tensor& image_grid_thw) {
  std::vector<std::array<int64_t, 3>> grids;
  const int64_t* values = image_grid_thw.data<int64_t>();
  for (int64_t i = 0; i < image_grid_thw.dim(0); ++i)
    grids.push_back({values[3 * i], values[3 * i + 1], values[3 * i + 2]});
  return grids;
}

SamplingSettings golden_sampling(const nlohmann::json& parameters) {
  SamplingSettings sampling;
  sampling.prompt = parameters.at("prompt").get<std::string>();
  if (!parameters.at("negative_prompt").is_null())
    sampling.negative_prompt = parameters["negative_prompt"].get<std::string>();
  sampling.cfg_scale = parameters.at("true_cfg_scale").get<float>();
  sampling.steps = parameters.at("num_inference_steps").get<int>();
  sampling.seed = parameters.at("seed").get<uint64_t>();
  return sampling;
}

TextToImageRequest golden_request(const nlohmann::json& parameters) {
  TextToImageRequest request;
  request.sampling = golden_sampling(parameters);
  request.width = parameters.at("width").get<int64_t>();
  request.height = parameters.at("height").get<int64_t>();
  return request;
}

ImageEditRequest golden_edit_request(const std::string& name) {
  const nlohmann::json parameters = test::golden_json("edit/" + name);
  ImageEditRequest request;
  request.sampling = golden_sampling(parameters);
  if (!parameters.at("width").is_null()) request.width = parameters["width"].get<int64_t>();
  if (!parameters.at("height").is_null()) request.height = parameters["height"].get<int64_t>();
  request.areas = {parameters.at("condition_area").get<int64_t>(), parameters.at("vae_area").get<int64_t>(),
                   parameters.at("output_area").get<int64_t>()};
  for (const nlohmann::json& file : parameters.at("images")) {
    request.images.push_back(
        read_image(test::source_path("tests/golden/edit/" + name + "/" + file.get<std::string>())).rgb);
  }
  return request;
}

namespace {

// A picture of an inpaint golden's folder, without its PNG text (which the request would otherwise carry).
RgbImage inpaint_golden_picture(const std::string& name, const std::string& file) {
  RgbImage picture = read_image(source_path("tests/golden/inpaint/" + name + "/" + file)).rgb;
  picture.text.clear();
  return picture;
}

}  // namespace

ImageToImageRequest golden_image_to_image_request(const std::string& name) {
  const nlohmann::json parameters = golden_json("inpaint/" + name);
  ImageToImageRequest request;
  request.sampling = golden_sampling(parameters);
  if (!parameters.at("do_true_cfg").get<bool>()) request.sampling.cfg_scale = 1.0f;
  if (!parameters.at("requested_width").is_null())
    request.width = parameters["requested_width"].get<int64_t>();
  if (!parameters.at("requested_height").is_null())
    request.height = parameters["requested_height"].get<int64_t>();
  request.strength = parameters.at("strength").get<double>();
  request.image = inpaint_golden_picture(name, parameters.at("image").get<std::string>());
  if (!parameters.at("mask").is_null())
    request.mask = inpaint_golden_picture(name, parameters["mask"].get<std::string>());
  if (!parameters.at("mask_blur").is_null()) request.mask_blur = parameters["mask_blur"].get<float>();
  if (!parameters.at("padding_mask_crop").is_null())
    request.padding_mask_crop = parameters["padding_mask_crop"].get<int64_t>();
  if (!parameters.at("output_area").is_null()) request.edit_area = parameters["output_area"].get<int64_t>();
  return request;
}

std::filesystem::path built_program(const std::string& program) {
  return folder_from("CANVAS_BINARY_DIR", CANVAS_BINARY_DIR) / program;
}

CommandResult run_built_program(const std::string& program, const std::string& arguments) {
  return run_command(built_program(program).string() + " " + arguments);
}

std::string png_text(const RgbImage& image, const std::string& key) {
  for (const PngTextChunk& chunk : image.text)
    if (chunk.key == key) return chunk.text;
  return "";
}

std::vector<float> npy_floats(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  const std::string bytes{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
  const size_t header = 10 + static_cast<uint8_t>(bytes.at(8)) + 256 * static_cast<uint8_t>(bytes.at(9));
  std::vector<float> values((bytes.size() - header) / sizeof(float));
  std::memcpy(values.data(), bytes.data() + header, values.size() * sizeof(float));
  return values;
}

CommandResult run_command(const std::string& command_line) {
  const std::string command = command_line + " 2>&1";
  FILE* pipe = popen(command.c_str(), "r");
  check(pipe != nullptr, "cannot run " + command);
  std::string output;
  std::array<char, 4096> buffer;
  while (size_t count = std::fread(buffer.data(), 1, buffer.size(), pipe))
    output.append(buffer.data(), count);
  int status = pclose(pipe);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, output};
}

double relative_error(const Tensor& actual, const Tensor& expected) {
  check(actual.shape() == expected.shape(),
        "comparing " + shape_str(actual.shape()) + " against " + shape_str(expected.shape()));
  std::vector<float> a = actual.to_floats(), b = expected.to_floats();
  double difference = 0, reference = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    difference += (static_cast<double>(a[i]) - b[i]) * (static_cast<double>(a[i]) - b[i]);
    reference += static_cast<double>(b[i]) * b[i];
  }
  if (std::isnan(difference)) return INFINITY;
  return reference > 0 ? std::sqrt(difference / reference) : std::sqrt(difference);
}

double max_abs_difference(const Tensor& actual, const Tensor& expected) {
  check(actual.shape() == expected.shape(),
        "comparing " + shape_str(actual.shape()) + " against " + shape_str(expected.shape()));
  std::vector<float> a = actual.to_floats(), b = expected.to_floats();
  double largest = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    double difference = std::fabs(static_cast<double>(a[i]) - b[i]);
    if (std::isnan(difference)) return INFINITY;
    largest = std::max(largest, difference);
  }
  return largest;
}

double max_relative_error(const Tensor& actual, const Tensor& expected) {
  check(actual.shape() == expected.shape(),
        "comparing " + shape_str(actual.shape()) + " against " + shape_str(expected.shape()));
  return deviation(widened_values(actual), widened_values(expected)).relative();
}

void expect_close(const std::vector<double>& actual, const std::vector<double>& expected, double tolerance,
                  std::source_location where) {
  const char* file = where.file_name();
  const int line = static_cast<int>(where.line());
  if (actual.size() != expected.size()) {
    ADD_FAILURE_AT(file, line) << actual.size() << " values against " << expected.size() << " expected";
    return;
  }
  const Deviation found = deviation(actual, expected);
  if (found.nan_at) {
    ADD_FAILURE_AT(file, line) << "element " << *found.nan_at << " is NaN where " << expected[*found.nan_at]
                               << " is expected";
  } else if (!(found.max_error <= tolerance * found.scale())) {
    ADD_FAILURE_AT(file, line) << "max abs error " << found.max_error << " at element " << found.worst << " ("
                               << actual[found.worst] << " against " << expected[found.worst]
                               << "), relative error " << found.relative()
                               << " (over the largest reference magnitude, " << found.max_magnitude
                               << ") > tolerance " << tolerance;
  }
}

void expect_close(const Tensor& actual, const Tensor& expected, double tolerance,
                  std::source_location where) {
  if (actual.shape() != expected.shape()) {
    ADD_FAILURE_AT(where.file_name(), static_cast<int>(where.line()))
        << "shape " << shape_str(actual.shape()) << " against " << shape_str(expected.shape());
    return;
  }
  expect_close(widened_values(actual), widened_values(expected), tolerance, where);
}

void expect_contains(std::string_view text, std::string_view part, std::source_location where) {
  if (text.find(part) != std::string_view::npos) return;
  ADD_FAILURE_AT(where.file_name(), static_cast<int>(where.line())) << "'" << part << "' is not in: " << text;
}

QwenImageTransformer2DModel load_golden_transformer(const std::string& folder) {
  return QwenImageTransformer2DModel(
      QwenImageTransformerConfig::from_file(source_path("tests/golden/" + folder) / "config.json"),
      open_golden_model(folder));
}

std::vector<ImageShape> first_sample_shapes(const nlohmann::json& img_shapes) {
  std::vector<ImageShape> shapes;
  for (const auto& shape : img_shapes.at(0)) {
    shapes.push_back({shape.at(0).get<int64_t>(), shape.at(1).get<int64_t>(), shape.at(2).get<int64_t>()});
  }
  return shapes;
}

FileSizeLimit::FileSizeLimit(uint64_t bytes) {
  rlimit limit{};
  check(::getrlimit(RLIMIT_FSIZE, &limit) == 0, std::string("getrlimit: ") + std::strerror(errno));
  previous_limit_ = limit.rlim_cur;
  previous_handler_ = std::signal(SIGXFSZ, SIG_IGN);
  limit.rlim_cur = bytes;
  check(::setrlimit(RLIMIT_FSIZE, &limit) == 0, std::string("setrlimit: ") + std::strerror(errno));
}

FileSizeLimit::~FileSizeLimit() {
  rlimit limit{};
  ::getrlimit(RLIMIT_FSIZE, &limit);
  limit.rlim_cur = previous_limit_;
  ::setrlimit(RLIMIT_FSIZE, &limit);
  std::signal(SIGXFSZ, previous_handler_);
}

std::string error_of(const std::function<void()>& action) {
  try {
    action();
  } catch (const Error& error) {
    return error.what();
  }
  ADD_FAILURE() << "expected a canvas::Error";
  return "";
}

app::RequestError request_error_of(const std::function<void()>& action) {
  try {
    action();
  } catch (const app::RequestError& error) {
    return error;
  }
  ADD_FAILURE() << "expected an app::RequestError";
  return app::RequestError(0, "", "");
}

TestComponent::TestComponent(int blocks, int64_t dim, DType dtype)
    : weights_{Component::Transformer, {}, {}, {}} {
  auto group = [&](int block, const Shape& shape) {
    tensors_.push_back(Tensor::zeros(shape, dtype));
    return WeightGroup{{"transformer", block, MemoryRole::Weights}, {&tensors_.back()}, {}};
  };
  weights_.shared = group(-1, {dim});
  for (int i = 0; i < blocks; ++i) {
    weights_.blocks.push_back(group(i, {dim, dim}));
    weights_.once_blocks.push_back(group(i, {dim}));
  }
}

ComponentPlan TestComponent::plan(int resident, int slots) const {
  ComponentPlan plan;
  plan.component = weights_.component;
  plan.residency = Residency::Offloaded;
  plan.resident_blocks = resident;
  plan.streamed_blocks = blocks() - resident;
  plan.slots = slots;
  return plan;
}

void TestComponent::run_phase(ComponentPlacement& placement, int passes,
                              const std::function<void(int)>& compute) const {
  placement.begin_phase();
  for (int i = 0; i < blocks(); ++i) {
    placement.before_once(i);
    placement.after_once(i);
  }
  for (int pass = 0; pass < passes; ++pass) {
    for (int i = 0; i < blocks(); ++i) {
      placement.before_block(i);
      compute(i);
      placement.after_block(i);
    }
  }
  placement.end_phase();
}

bool bit_identical(const Tensor& a, const Tensor& b) {
  Tensor host_a = a.to(Device::cpu()).contiguous(), host_b = b.to(Device::cpu()).contiguous();
  return host_a.shape() == host_b.shape() && host_a.dtype() == host_b.dtype() &&
         std::memcmp(host_a.raw_data(), host_b.raw_data(), static_cast<size_t>(host_a.nbytes())) == 0;
}

Tensor sequence_parallel_forward(QwenImageTransformer2DModel& model, const std::vector<Device>& devices,
                                 const Tensor& hidden_states, const Tensor& encoder_hidden_states,
                                 const Tensor& encoder_hidden_states_mask, float timestep,
                                 const std::vector<ImageShape>& img_shapes) {
  ComponentPlan plan;
  plan.component = Component::Transformer;
  plan.residency = Residency::Mapped;
  plan.spread = Spread::Sequence;
  std::vector<ComponentWeights> replicas;
  for (const Device& device : devices) {
    DeviceShare share;
    share.device = device;
    share.blocks = share.resident_blocks = static_cast<int>(model.blocks().size());
    plan.shares.push_back(share);
    replicas.push_back(transformer_weights(model));
  }
  ComponentPlacement placement(devices.front(), std::move(replicas), plan);
  const DType dtype = hidden_states.dtype();
  TransformerExecutor executor(std::vector<const QwenImageTransformer2DModel*>(devices.size(), &model),
                               placement, img_shapes, dtype);
  placement.begin_phase();
  executor.precompute_modulation({timestep});
  const TransformerCondition condition{
      encoder_hidden_states, encoder_hidden_states_mask,
      model.rotary(img_shapes, encoder_hidden_states.dim(1), devices.front(), dtype)};
  executor.set_conditions({condition});
  Tensor prediction = executor.predict(0, hidden_states).front();
  placement.end_phase();
  return prediction;
}

QwenImageModel full_size_planning_model(const std::string& name, const std::string& pipeline) {
  const std::filesystem::path folder = scratch_dir(name) / "qwen-image-zeros";
  const CommandResult written =
      run_built_program("tools/canvas-synthetic-checkpoint",
                        "--output " + folder.string() + " --zeros --shard-gib 5 --pipeline " + pipeline);
  check(written.exit_code == 0, "writing the full-size checkpoint failed: " + written.output);
  QwenImageModel model = load_qwen_image(folder, Device::cpu());
  model.device = Device::cuda(0);
  model.activation_dtype = DType::BF16;
  return model;
}

QwenImageModel* TinyPipelineSuite::model_ = nullptr;
TextToImageRequest TinyPipelineSuite::request_;
JobResult* TinyPipelineSuite::reference_ = nullptr;

void TinyPipelineSuite::SetUpTestSuite() {
  const std::string suite = ::testing::UnitTest::GetInstance()->current_test_suite()->name();
  setenv("CANVAS_CACHE_DIR", scratch_dir(suite + "_cache").c_str(), 1);
  model_ = new QwenImageModel(load_qwen_image(source_path("models/tiny-qwen-image"), Device::cpu()));
  request_ = golden_request(golden_json("pipeline/c_96x64_cfg4_neg_seed123"));
  reference_ = new JobResult(text_to_image(*model_, request_, {}));
}

void TinyPipelineSuite::TearDownTestSuite() {
  delete reference_;
  delete model_;
  reference_ = nullptr;
  model_ = nullptr;
}

MachineFacts h200_machine(int64_t budget_bytes) {
  MachineFacts machine;
  machine.device = Device::cuda(0);
  machine.device_budget = budget_bytes;
  machine.host_budget = int64_t{100} << 30;
  machine.profile = {"NVIDIA H200 (test)", 767e12, 55e9, 7e9, 15e9, 20e9};
  return machine;
}

}  // namespace canvas::test
