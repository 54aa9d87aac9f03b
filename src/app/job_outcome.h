// What a finished server job hands to the APIs that answer for it: its images, where they were written and
// the settings each was made with.
#pragma once

#include <cstdint>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace canvas::app {

struct JobImage {
  std::filesystem::path path;  // the PNG under the server's data folder, metadata included
  std::string url;             // where GET serves it, relative to the server: "/v1/jobs/ID/images/0"
  uint64_t seed = 0;
  int64_t width = 0;
  int64_t height = 0;
};

struct JobOutcome {
  std::vector<JobImage> images;
  // The settings the job ran with (app/job_spec.h job_spec_json, with the seeds drawn) and what it measured:
  // timings, the memory plan and any recoveries.
  nlohmann::json parameters = nlohmann::json::object();
  nlohmann::json report = nlohmann::json::object();
};

}  // namespace canvas::app
