// A `canvas serve` service run in-process for the serve tests: the tiny text-to-image and edit models under
// a --models folder, a data folder of its own, any free port, and an HTTP client to it.
#pragma once

#include <gtest/gtest.h>
#include <httplib.h>

#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <thread>

#include "app/service.h"

namespace canvas::test {

class ServeFixture : public ::testing::Test {
 protected:
  // Starts the service over a fresh folder named after the test.
  void SetUp() override;
  void TearDown() override;

  // Starts it again (a restart) on the same folders, with `options` changed by `adjust`.
  void start(const std::function<void(app::ServiceOptions&)>& adjust = {});
  void stop();

  httplib::Client& client() { return *client_; }
  // The status and the JSON body of a request.
  std::pair<int, nlohmann::json> get(const std::string& path);
  std::pair<int, nlohmann::json> post(const std::string& path, const nlohmann::json& body);
  // Submits a native job and returns its id (failing the test unless it was queued).
  std::string submit(const nlohmann::json& body);
  // Polls the job until it ends (at most two minutes) and returns its status.
  nlohmann::json wait_for_end(const std::string& id);
  // The PNG at `url` (a job's image), decoded.
  DecodedImage image_at(const std::string& url);

  std::filesystem::path folder_;
  std::filesystem::path data_dir() const { return folder_ / "data"; }
  std::unique_ptr<app::Service> service_;

 private:
  std::unique_ptr<std::thread> serving_;
  std::unique_ptr<httplib::Client> client_;
  std::function<void(app::ServiceOptions&)> adjust_;
};

// A small text-to-image request on the tiny model.
nlohmann::json small_generate(uint64_t seed, int steps = 2);
// `path`'s bytes.
std::string read_file_bytes(const std::filesystem::path& path);
// A picture in PNG bytes, base64: w x h of a smooth gradient.
std::string picture_base64(int64_t width, int64_t height);

}  // namespace canvas::test
