// The job profiler: phase peaks from allocator events, background samples, downsampling that keeps peaks,
// copy/compute overlap, the JSON and SVG files, and detaching from the allocators.
#include "memory/profiler.h"

#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <fstream>
#include <iterator>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "memory/profile_plot.h"
#include "tensor/tensor.h"
#include "test_util.h"

namespace canvas {
namespace {

using json = nlohmann::json;
constexpr int64_t kMiB = 1024 * 1024;

ProfileOptions fast_sampling() {
  ProfileOptions options;
  options.sample_interval = std::chrono::milliseconds(2);
  options.device_memory_interval = std::chrono::milliseconds(2);
  return options;
}

const json& phase_named(const json& profile, const std::string& name) {
  for (const json& phase : profile["phases"]) {
    if (phase["name"] == name) return phase;
  }
  throw std::runtime_error("no phase named " + name);
}

std::string read_file(const std::filesystem::path& path) {
  std::ifstream stream(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(stream), {});
}

TEST(Profiler, PhasesNestAndRecordTheirPeaks) {
  Profiler profiler({});
  ASSERT_EQ(profiler.to_json()["devices"][0]["name"], "cpu");
  {
    Profiler::Span load = profiler.span("load");
    {
      Profiler::Span step = profiler.span("step 3", {{"step", 3}});
      Tensor held = Tensor::empty({16 * kMiB}, DType::F32);  // 64 MiB
    }
    Profiler::Span after = profiler.span("after release");
  }
  profiler.begin("still open");
  const json profile = profiler.to_json();

  const json& load = phase_named(profile, "load");
  const json& step = phase_named(profile, "step 3");
  const json& after = phase_named(profile, "after release");
  EXPECT_EQ(load["depth"], 0);
  EXPECT_EQ(step["depth"], 1);
  EXPECT_EQ(after["depth"], 1);
  EXPECT_EQ(step["attributes"]["step"], 3);
  EXPECT_GE(step["peak_device_bytes"][0].get<int64_t>() - step["start_device_bytes"][0].get<int64_t>(),
            64 * kMiB);
  EXPECT_GE(load["peak_device_bytes"][0].get<int64_t>() - load["start_device_bytes"][0].get<int64_t>(),
            64 * kMiB);
  // The tensor was gone before this phase began, so its peak must not carry over from its sibling.
  EXPECT_LT(after["peak_device_bytes"][0].get<int64_t>() - after["start_device_bytes"][0].get<int64_t>(),
            64 * kMiB);
  EXPECT_LE(step["start"].get<double>(), step["end"].get<double>());
  EXPECT_GE(step["start"].get<double>(), load["start"].get<double>());
  EXPECT_LE(step["end"].get<double>(), load["end"].get<double>());
  EXPECT_GT(load["peak_host_rss"].get<int64_t>(), 0);

  const json& open = phase_named(profile, "still open");
  EXPECT_EQ(open["open"], true);
  profiler.end("still open");
  EXPECT_FALSE(phase_named(profiler.to_json(), "still open").contains("open"));
}

TEST(Profiler, EndMustNameTheInnermostPhase) {
  Profiler profiler({});
  profiler.begin("outer");
  profiler.begin("inner");
  EXPECT_THROW(profiler.end("outer"), Error);
  profiler.end("inner");
  profiler.end("outer");
  EXPECT_THROW(profiler.end("outer"), Error);
}

TEST(Profiler, SamplesArriveInTimeOrder) {
  Profiler profiler({}, fast_sampling());
  std::this_thread::sleep_for(std::chrono::milliseconds(60));
  const json samples = profiler.to_json()["samples"];
  ASSERT_GE(samples.size(), 3u);
  for (size_t i = 1; i < samples.size(); ++i) {
    EXPECT_GE(samples[i]["t"].get<double>(), samples[i - 1]["t"].get<double>());
  }
  for (const json& sample : samples) {
    EXPECT_GT(sample["host_rss"].get<int64_t>(), 0);
    ASSERT_EQ(sample["devices"].size(), 1u);
    EXPECT_GE(sample["devices"][0]["allocated"].get<int64_t>(), 0);
  }
  const json& first = samples[0]["devices"][0];
  ASSERT_TRUE(first.contains("free"));
  EXPECT_LE(first["free"].get<int64_t>(), first["total"].get<int64_t>());
}

TEST(Profiler, DownsamplingKeepsThePeak) {
  Allocator& cpu = allocator_for(Device::cpu());
  Profiler profiler({});
  const int64_t base = cpu.in_use();
  constexpr int kPairs = 2000;
  const double start = profiler.now_s();
  for (int i = 0; i < kPairs; ++i) {
    auto small = cpu.allocate(64 * 1024);
    if (i == kPairs / 2) {
      auto spike = cpu.allocate(48 * kMiB);
    }
  }
  const double elapsed_ms = (profiler.now_s() - start) * 1000;
  const json profile = profiler.to_json();
  const json& points = profile["allocation_peaks"]["devices"][0];
  // At most one point per bucket the loop touched, plus the one taken at the start.
  EXPECT_LE(points.size(), static_cast<size_t>(std::ceil(elapsed_ms)) + 2);
  EXPECT_LT(points.size(), static_cast<size_t>(2 * kPairs));
  int64_t highest = 0;
  for (const json& point : points) {
    highest = std::max(highest, point[1].get<int64_t>());
    EXPECT_GE(point[1].get<int64_t>(), point[2].get<int64_t>());
  }
  EXPECT_GE(highest, base + 48 * kMiB + 64 * 1024);
  EXPECT_EQ(profile["summary"]["peak_allocated"][0], highest);
  EXPECT_EQ(points.back()[2], base);
}

TEST(Profiler, CopyComputeOverlapIsTheShareOfCopyTime) {
  Profiler profiler({});
  EXPECT_TRUE(profiler.to_json()["summary"]["copy_compute_overlap"].is_null());
  profiler.record_interval("copy", "block 0", 0.0, 1.0);
  profiler.record_interval("compute", "block 0", 0.5, 2.0);
  EXPECT_DOUBLE_EQ(profiler.to_json()["summary"]["copy_compute_overlap"].get<double>(), 0.5);

  // A copy nothing computes beside, and a compute interval overlapping another: the union counts once.
  profiler.record_interval("copy", "block 1", 3.0, 4.0);
  profiler.record_interval("compute", "block 1", 1.5, 2.5);
  profiler.record_interval("other", "ignored", 0.0, 10.0);
  const json summary = profiler.to_json()["summary"];
  EXPECT_DOUBLE_EQ(summary["copy_compute_overlap"].get<double>(), 0.25);
  EXPECT_DOUBLE_EQ(summary["copy_s"].get<double>(), 2.0);
  EXPECT_DOUBLE_EQ(summary["compute_s"].get<double>(), 2.0);
  const std::vector<std::string> lines = profiler.summary_lines();
  EXPECT_NE(lines.back().find("25% of copy time overlaps compute"), std::string::npos) << lines.back();
}

TEST(Profiler, SummaryNamesThePhaseOfThePeak) {
  Profiler profiler({});
  profiler.begin("load");
  profiler.end("load");
  {
    Profiler::Span decode = profiler.span("vae_decode");
    Tensor held = Tensor::empty({16 * kMiB}, DType::F32);
  }
  const std::vector<std::string> lines = profiler.summary_lines();
  ASSERT_LE(lines.size(), 8u);
  std::string text;
  for (const std::string& line : lines) text += line + "\n";
  EXPECT_NE(text.find("cpu: peak"), std::string::npos) << text;
  EXPECT_NE(text.find("allocated (in vae_decode)"), std::string::npos) << text;
  EXPECT_NE(text.find("phases: load"), std::string::npos) << text;
  EXPECT_EQ(text.find("copy time"), std::string::npos) << text;
}

TEST(Profiler, WritesJsonAndSvgFiles) {
  const std::filesystem::path dir = test::scratch_dir("profiler");
  Profiler profiler({}, fast_sampling());
  {
    Profiler::Span phase = profiler.span("text <&> encode");
    Tensor held = Tensor::empty({kMiB}, DType::F32);
    profiler.record_interval("copy", "block", 0.0, profiler.now_s());
    profiler.record_interval("compute", "block", 0.0, profiler.now_s());
  }
  profiler.write_json(dir / "profile.json");
  profiler.write_svg(dir / "profile.svg");

  const json profile = json::parse(read_file(dir / "profile.json"));
  for (const char* field : {"devices", "samples", "allocation_peaks", "phases", "intervals", "summary"}) {
    EXPECT_TRUE(profile.contains(field)) << field;
  }
  for (const char* field : {"duration_s", "peak_allocated", "peak_used", "peak_host_rss", "copy_s",
                            "compute_s", "copy_compute_overlap"}) {
    EXPECT_TRUE(profile["summary"].contains(field)) << field;
  }
  EXPECT_EQ(phase_named(profile, "text <&> encode")["depth"], 0);
  EXPECT_EQ(profile["intervals"].size(), 2u);

  const std::string svg = read_file(dir / "profile.svg");
  EXPECT_EQ(svg.rfind("<svg", 0), 0u);
  EXPECT_EQ(svg.substr(svg.size() - 7), "</svg>\n");
  EXPECT_NE(svg.find("text &lt;&amp;&gt; encode"), std::string::npos);
  EXPECT_EQ(svg.find("<&>"), std::string::npos);
  EXPECT_NE(svg.find("host RSS"), std::string::npos);
  EXPECT_NE(svg.find("cpu allocated"), std::string::npos);
  EXPECT_NE(svg.find(">compute<"), std::string::npos);
  // The host's used-by-all figure is left out; a GPU's is drawn.
  EXPECT_EQ(svg.find("used by all"), std::string::npos);
  json as_gpu = profile;
  as_gpu["devices"][0]["name"] = "cuda:0";
  EXPECT_NE(render_profile_svg(as_gpu).find("cuda:0 used by all"), std::string::npos);

  EXPECT_EQ(std::distance(std::filesystem::directory_iterator(dir), {}), 2) << "temporary files left behind";
}

TEST(Profiler, StopsSamplingPromptly) {
  const auto start = std::chrono::steady_clock::now();
  {
    ProfileOptions options;
    options.sample_interval = std::chrono::seconds(30);
    Profiler profiler({Device::cpu(), Device::cpu()}, options);
    EXPECT_EQ(profiler.to_json()["devices"].size(), 1u);
  }
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(5));
}

TEST(Profiler, ChainsToAndRestoresThePreviousListener) {
  Allocator& cpu = allocator_for(Device::cpu());
  ASSERT_FALSE(cpu.listener());
  int events = 0;
  cpu.set_listener([&](const AllocationEvent&) { ++events; });
  {
    Profiler profiler({});
    cpu.allocate(kMiB);
    EXPECT_EQ(events, 2);
    EXPECT_GE(profiler.to_json()["summary"]["peak_allocated"][0].get<int64_t>(), cpu.in_use() + kMiB);
  }
  cpu.allocate(kMiB);
  EXPECT_EQ(events, 4);
  cpu.set_listener(nullptr);
  { Profiler profiler({}); }
  EXPECT_FALSE(cpu.listener());
  cpu.allocate(kMiB);
}

}  // namespace
}  // namespace canvas
