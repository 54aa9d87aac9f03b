// The machine profile: where its cache lives, its JSON form, and measuring the CPU once, then reading the
// cache, measuring over a corrupt one and surviving one that cannot be written.
#include "planning/machine_profile.h"

#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <optional>

#include "test_util.h"
#include "util/error.h"

namespace canvas {
namespace {

// Sets (or with nullopt unsets) an environment variable for one scope, then restores it.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, std::optional<std::string> value) : name_(name) {
    if (const char* old = std::getenv(name)) previous_ = old;
    set(value);
  }
  ~ScopedEnv() { set(previous_); }
  ScopedEnv(const ScopedEnv&) = delete;
  ScopedEnv& operator=(const ScopedEnv&) = delete;

 private:
  void set(const std::optional<std::string>& value) {
    if (value) {
      ::setenv(name_, value->c_str(), 1);
    } else {
      ::unsetenv(name_);
    }
  }
  const char* name_;
  std::optional<std::string> previous_;
};

nlohmann::json read_json(const std::filesystem::path& path) {
  std::ifstream stream(path);
  return nlohmann::json::parse(stream);
}

void write_text(const std::filesystem::path& path, const std::string& text) {
  std::ofstream(path) << text;
}

void expect_measured(const MachineProfile& profile) {
  for (double figure : {profile.gemm_flops_per_s, profile.host_to_device_pinned_bytes_per_s,
                        profile.host_to_device_pageable_bytes_per_s, profile.host_memcpy_bytes_per_s,
                        profile.host_to_device_staged_bytes_per_s, profile.attention_scores_per_s}) {
    EXPECT_TRUE(std::isfinite(figure) && figure > 0) << figure;
  }
}

TEST(MachineProfile, CacheDirFollowsEnvironmentOrder) {
  ScopedEnv canvas("CANVAS_CACHE_DIR", "/tmp/canvas-cache");
  ScopedEnv xdg("XDG_CACHE_HOME", "/tmp/xdg");
  ScopedEnv home("HOME", "/home/someone");
  EXPECT_EQ(canvas_cache_dir(), "/tmp/canvas-cache");
  {
    ScopedEnv unset_canvas("CANVAS_CACHE_DIR", std::nullopt);
    EXPECT_EQ(canvas_cache_dir(), "/tmp/xdg/ethereal-canvas");
    // A relative XDG_CACHE_HOME is invalid by the spec and ignored.
    ScopedEnv relative_xdg("XDG_CACHE_HOME", "relative/cache");
    EXPECT_EQ(canvas_cache_dir(), "/home/someone/.cache/ethereal-canvas");
    ScopedEnv unset_home("HOME", std::nullopt);
    EXPECT_EQ(canvas_cache_dir(), "");
  }
}

TEST(MachineProfile, JsonRoundTripAndValidation) {
  const MachineProfile profile{"cpu (test, 2 threads), f32", 1.5e11, 2.5e10, 1.25e10, 2.0e10, 7.0e9, 3.0e8};
  const MachineProfile back = MachineProfile::from_json(profile.to_json());
  EXPECT_EQ(back.key, profile.key);
  EXPECT_EQ(back.gemm_flops_per_s, profile.gemm_flops_per_s);
  EXPECT_EQ(back.host_to_device_pinned_bytes_per_s, profile.host_to_device_pinned_bytes_per_s);
  EXPECT_EQ(back.host_to_device_pageable_bytes_per_s, profile.host_to_device_pageable_bytes_per_s);
  EXPECT_EQ(back.host_memcpy_bytes_per_s, profile.host_memcpy_bytes_per_s);
  EXPECT_EQ(back.host_to_device_staged_bytes_per_s, profile.host_to_device_staged_bytes_per_s);
  EXPECT_EQ(back.attention_scores_per_s, profile.attention_scores_per_s);

  nlohmann::json missing = profile.to_json();
  missing.erase("host_memcpy_bytes_per_s");
  EXPECT_THROW(MachineProfile::from_json(missing), Error);
  nlohmann::json negative = profile.to_json();
  negative["gemm_flops_per_s"] = -1.0;
  EXPECT_THROW(MachineProfile::from_json(negative), Error);
  nlohmann::json zero = profile.to_json();
  zero["host_to_device_pinned_bytes_per_s"] = 0;
  EXPECT_THROW(MachineProfile::from_json(zero), Error);
  nlohmann::json text = profile.to_json();
  text["gemm_flops_per_s"] = "fast";
  EXPECT_THROW(MachineProfile::from_json(text), Error);
  EXPECT_THROW(MachineProfile::from_json(nlohmann::json::array()), Error);
}

TEST(MachineProfile, MeasuresCpuOnceThenReadsTheCache) {
  const std::filesystem::path dir = test::scratch_dir("machine-profile") / "nested";
  ScopedEnv cache("CANVAS_CACHE_DIR", dir.string());
  const auto start = std::chrono::steady_clock::now();
  const MachineProfile measured = machine_profile(Device::cpu(), DType::F32);
  const double measure_seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  expect_measured(measured);
  test::expect_contains(measured.key, "cpu (");
  test::expect_contains(measured.key, "f32");
  // On the CPU an upload is a host memcpy, measured once.
  EXPECT_EQ(measured.host_to_device_pinned_bytes_per_s, measured.host_memcpy_bytes_per_s);
  std::cout << "[ measured ] " << measured.to_json().dump() << " in " << measure_seconds << " s\n";

  const std::filesystem::path file = dir / "machine_profiles.json";
  ASSERT_TRUE(std::filesystem::exists(file));
  const nlohmann::json stored = read_json(file);
  EXPECT_EQ(stored["profiles"][measured.key], measured.to_json());
  // The atomic write leaves no temporary behind.
  EXPECT_EQ(std::distance(std::filesystem::directory_iterator(dir), std::filesystem::directory_iterator()),
            1);

  // Measured figures are never bit-identical twice: equal ones come from the cache.
  const auto again_start = std::chrono::steady_clock::now();
  const MachineProfile cached = machine_profile(Device::cpu(), DType::F32);
  const double cached_seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - again_start).count();
  EXPECT_EQ(cached.to_json(), measured.to_json());
  EXPECT_LT(cached_seconds, measure_seconds / 4);

  // An edited entry is what comes back, and another dtype is a profile of its own.
  nlohmann::json edited = stored;
  edited["profiles"][measured.key]["gemm_flops_per_s"] = 12345.0;
  write_text(file, edited.dump());
  EXPECT_EQ(machine_profile(Device::cpu(), DType::F32).gemm_flops_per_s, 12345.0);
  const MachineProfile bf16 = machine_profile(Device::cpu(), DType::BF16);
  expect_measured(bf16);
  EXPECT_NE(bf16.key, measured.key);
  const nlohmann::json both = read_json(file)["profiles"];
  EXPECT_EQ(both.size(), 2u);
  EXPECT_EQ(both[measured.key]["gemm_flops_per_s"], 12345.0);
}

TEST(MachineProfile, CorruptOrStaleCacheIsMeasuredOverAndRewritten) {
  const std::filesystem::path dir = test::scratch_dir("machine-profile-corrupt");
  ScopedEnv cache("CANVAS_CACHE_DIR", dir.string());
  const std::filesystem::path file = dir / "machine_profiles.json";

  write_text(file, "{\"version\": 1, \"profiles\": {\"trunc");
  const MachineProfile measured = machine_profile(Device::cpu(), DType::F32);
  expect_measured(measured);
  EXPECT_EQ(read_json(file)["profiles"][measured.key], measured.to_json());

  // A damaged entry, and an entry of another cache version, are measured over too.
  nlohmann::json damaged = read_json(file);
  damaged["profiles"][measured.key]["gemm_flops_per_s"] = "fast";
  write_text(file, damaged.dump());
  expect_measured(machine_profile(Device::cpu(), DType::F32));
  nlohmann::json stale = read_json(file);
  stale["version"] = 0;
  stale["profiles"][measured.key]["gemm_flops_per_s"] = 12345.0;
  write_text(file, stale.dump());
  const MachineProfile remeasured = machine_profile(Device::cpu(), DType::F32);
  EXPECT_NE(remeasured.gemm_flops_per_s, 12345.0);
  EXPECT_EQ(read_json(file)["version"], 4);
}

TEST(MachineProfile, UnwritableCacheStillGivesAProfile) {
  const std::filesystem::path dir = test::scratch_dir("machine-profile-unwritable");
  // A cache folder below a regular file can never be created.
  write_text(dir / "file", "x");
  ScopedEnv cache("CANVAS_CACHE_DIR", (dir / "file" / "cache").string());
  expect_measured(machine_profile(Device::cpu(), DType::F32));
  EXPECT_FALSE(std::filesystem::exists(dir / "file" / "cache"));
}

}  // namespace
}  // namespace canvas
