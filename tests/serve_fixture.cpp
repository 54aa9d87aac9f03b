#include "serve_fixture.h"

#include <fstream>
#include <iterator>

#include "image/decode.h"
#include "io/png_image.h"
#include "test_util.h"
#include "util/base64.h"

namespace canvas::test {

void ServeFixture::SetUp() {
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  folder_ = scratch_dir(std::string("serve-") + info->name());
  std::filesystem::create_directories(folder_ / "models");
  std::filesystem::create_directories(folder_ / "loras");
  std::filesystem::create_directory_symlink(source_path("models/tiny-qwen-image"),
                                            folder_ / "models" / "tiny");
  std::filesystem::create_directory_symlink(source_path("models/tiny-qwen-image-edit"),
                                            folder_ / "models" / "tiny-edit");
  start();
}

void ServeFixture::TearDown() {
  stop();
}

void ServeFixture::start(const std::function<void(app::ServiceOptions&)>& adjust) {
  if (adjust) adjust_ = adjust;
  app::ServiceOptions options;
  options.model_folders = {folder_ / "models"};
  options.lora_folder = folder_ / "loras";
  options.data_dir = data_dir();
  options.server.port = 0;
  options.runner.preview_every = 1;
  if (adjust_) adjust_(options);
  service_ = std::make_unique<app::Service>(options);
  serving_ = std::make_unique<std::thread>([service = service_.get()] { service->run(); });
  client_ = std::make_unique<httplib::Client>("127.0.0.1", service_->port());
  client_->set_read_timeout(180);
  // The server accepts once listening: wait for it.
  for (int attempt = 0; attempt < 200; ++attempt) {
    if (client_->Get("/v1/health")) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

void ServeFixture::stop() {
  if (!service_) return;
  service_->stop();
  serving_->join();
  service_.reset();
  serving_.reset();
  client_.reset();
}

std::pair<int, nlohmann::json> ServeFixture::get(const std::string& path) {
  httplib::Result result = client_->Get(path);
  if (!result) return {-1, nullptr};
  return {result->status, nlohmann::json::parse(result->body, nullptr, false)};
}

std::pair<int, nlohmann::json> ServeFixture::post(const std::string& path, const nlohmann::json& body) {
  httplib::Result result = client_->Post(path, body.dump(), "application/json");
  if (!result) return {-1, nullptr};
  return {result->status, nlohmann::json::parse(result->body, nullptr, false)};
}

std::string ServeFixture::submit(const nlohmann::json& body) {
  const auto [status, reply] = post("/v1/jobs", body);
  EXPECT_EQ(status, 202) << reply.dump();
  return reply.value("id", "");
}

nlohmann::json ServeFixture::wait_for_end(const std::string& id) {
  for (int attempt = 0; attempt < 1200; ++attempt) {
    const auto [status, job] = get("/v1/jobs/" + id);
    EXPECT_EQ(status, 200) << job.dump();
    const std::string state = job.value("state", "");
    if (state == "done" || state == "failed" || state == "cancelled") return job;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ADD_FAILURE() << "job " << id << " did not end";
  return nullptr;
}

DecodedImage ServeFixture::image_at(const std::string& url) {
  httplib::Result result = client_->Get(url);
  EXPECT_TRUE(result && result->status == 200) << url;
  if (!result) return {};
  const std::vector<uint8_t> bytes(result->body.begin(), result->body.end());
  return decode_image(bytes, url);
}

nlohmann::json small_generate(uint64_t seed, int steps) {
  return {{"prompt", "a red fox"}, {"width", 32}, {"height", 32}, {"steps", steps}, {"seed", seed}};
}

std::string read_file_bytes(const std::filesystem::path& path) {
  std::ifstream file(path, std::ios::binary);
  EXPECT_TRUE(file.good()) << path;
  return {std::istreambuf_iterator<char>(file), std::istreambuf_iterator<char>()};
}

std::string picture_base64(int64_t width, int64_t height) {
  RgbImage image;
  image.width = width;
  image.height = height;
  for (int64_t y = 0; y < height; ++y) {
    for (int64_t x = 0; x < width; ++x) {
      image.pixels.push_back(static_cast<uint8_t>(x * 255 / std::max<int64_t>(width - 1, 1)));
      image.pixels.push_back(static_cast<uint8_t>(y * 255 / std::max<int64_t>(height - 1, 1)));
      image.pixels.push_back(static_cast<uint8_t>((x + y) % 256));
    }
  }
  return base64_encode(encode_png(image));
}

}  // namespace canvas::test
