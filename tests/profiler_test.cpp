// The job profiler: phase peaks from allocator events, background samples, downsampling that keeps peaks,
// copy/compute overlap, intervals timed on the device and those of streamed weights, the JSON and SVG
// files, and detaching from the allocators.
#include "profile/profiler.h"

#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <fstream>
#include <iterator>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "pipeline/model_placement.h"
#include "profile/profile_plot.h"
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
  test::expect_contains(lines.back(), "25% of copy time overlaps compute");
}

// A device timestamp the test resolves by hand.
class ManualTimestamp final : public DeviceTimestamp {
 public:
  std::optional<std::chrono::steady_clock::time_point> time() override { return when; }
  std::optional<std::chrono::steady_clock::time_point> when;
};

TEST(Profiler, DeviceIntervalsWaitUntilTheDeviceHasPassedThem) {
  Profiler profiler({});
  const auto now = std::chrono::steady_clock::now();
  const double now_s = profiler.now_s();
  auto start = std::make_shared<ManualTimestamp>(), end = std::make_shared<ManualTimestamp>();
  start->when = now;
  profiler.record_interval("copy", "block 0", start, end);
  auto passed = std::make_shared<ManualTimestamp>();
  passed->when = now + std::chrono::milliseconds(100);
  profiler.record_interval("compute", "block 0", start, passed);
  json intervals = profiler.to_json()["intervals"];
  ASSERT_EQ(intervals.size(), 1u);
  EXPECT_EQ(intervals[0]["lane"], "compute");
  EXPECT_TRUE(profiler.to_json()["summary"]["copy_compute_overlap"].is_null());

  end->when = now + std::chrono::milliseconds(250);
  intervals = profiler.to_json()["intervals"];
  ASSERT_EQ(intervals.size(), 2u);
  EXPECT_EQ(intervals[0]["lane"], "copy");
  EXPECT_EQ(intervals[1]["lane"], "compute");
  // Read on the profiler's clock: the start is the moment taken just before now_s().
  EXPECT_LE(intervals[0]["start"].get<double>(), now_s);
  EXPECT_GT(intervals[0]["start"].get<double>(), now_s - 0.1);
  EXPECT_NEAR(intervals[0]["end"].get<double>() - intervals[0]["start"].get<double>(), 0.25, 1e-6);
  EXPECT_NEAR(profiler.to_json()["summary"]["copy_compute_overlap"].get<double>(), 0.4, 1e-6);
}

// The intervals on one lane of a profile, in the order recorded.
std::vector<json> lane_of(const json& profile, const std::string& lane) {
  std::vector<json> intervals;
  for (const json& interval : profile["intervals"]) {
    if (interval["lane"] == lane) intervals.push_back(interval);
  }
  return intervals;
}

TEST(Profiler, StreamedBlocksRecordEachCopyAndEachBlocksCompute) {
  constexpr int kBlocks = 5, kResident = 2, kPasses = 3;
  constexpr int64_t kDim = 64;
  test::TestComponent component(kBlocks, kDim, DType::F32);
  ComponentPlacement placement(Device::cpu(), component.weights(), component.plan(kResident, 2));
  Profiler profiler({});
  placement.set_profiler(&profiler);
  {
    Profiler::Span phase = profiler.span("denoise");
    component.run_phase(placement, kPasses, [&](int block) {
      Tensor x = Tensor::zeros({4, kDim}, DType::F32);
      ops::linear(x, component.block_weight(block));
    });
  }
  const json profile = profiler.to_json();

  // Each block's once-read weights, then the blocks of every pass, in order.
  std::vector<std::string> expected;
  for (int i = 0; i < kBlocks; ++i) expected.push_back("transformer block " + std::to_string(i));
  for (int pass = 0; pass < kPasses; ++pass) {
    for (int i = 0; i < kBlocks; ++i) expected.push_back("transformer block " + std::to_string(i));
  }
  const std::vector<json> compute = lane_of(profile, "compute");
  ASSERT_EQ(compute.size(), expected.size());
  for (size_t i = 0; i < compute.size(); ++i) EXPECT_EQ(compute[i]["name"], expected[i]) << i;

  // Every once-read group crosses once, then the streamed blocks cyclically: one copy per upload.
  std::vector<std::string> streamed;
  for (int i = 0; i < kBlocks; ++i) {
    if (!block_is_resident(i, kBlocks, kResident))
      streamed.push_back("transformer block " + std::to_string(i));
  }
  const int64_t once_bytes = kBlocks * kDim * 4, pass_bytes = kDim * kDim * 4;
  const int64_t pass_uploads = (placement.bytes_streamed() - once_bytes) / pass_bytes;
  EXPECT_GE(pass_uploads, kPasses * static_cast<int64_t>(streamed.size()));
  const std::vector<json> copies = lane_of(profile, "copy");
  ASSERT_EQ(copies.size(), static_cast<size_t>(kBlocks + pass_uploads));
  for (size_t i = 0; i < copies.size(); ++i) {
    EXPECT_EQ(copies[i]["name"], i < kBlocks ? expected[i] : streamed[(i - kBlocks) % streamed.size()]) << i;
  }

  // Each lane's intervals follow one another within the phase.
  const json& phase = phase_named(profile, "denoise");
  for (const std::vector<json>* lane : {&compute, &copies}) {
    double previous_end = phase["start"];
    for (const json& interval : *lane) {
      EXPECT_LE(previous_end, interval["start"].get<double>());
      EXPECT_LE(interval["start"].get<double>(), interval["end"].get<double>());
      previous_end = interval["end"];
    }
    EXPECT_LE(previous_end, phase["end"].get<double>());
  }
  // The CPU copies between blocks, never beside one.
  EXPECT_GT(profile["summary"]["copy_s"].get<double>(), 0.0);
  EXPECT_EQ(profile["summary"]["copy_compute_overlap"].get<double>(), 0.0);
}

TEST(Profiler, PlacementsWithoutAProfilerRecordNothing) {
  test::TestComponent component(3, 16, DType::F32);
  Profiler profiler({});
  ComponentPlacement never(Device::cpu(), component.weights(), component.plan(1, 1));
  component.run_phase(never, 2, [](int) {});
  ComponentPlacement detached(Device::cpu(), component.weights(), component.plan(1, 1));
  detached.set_profiler(&profiler);
  detached.set_profiler(nullptr);
  component.run_phase(detached, 2, [](int) {});
  EXPECT_GT(detached.bytes_streamed(), 0);
  EXPECT_TRUE(profiler.to_json()["intervals"].empty());
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
  test::expect_contains(text, "cpu: peak");
  test::expect_contains(text, "allocated (in vae_decode)");
  test::expect_contains(text, "phases: load");
  EXPECT_EQ(text.find("copy time"), std::string::npos) << text;
}

TEST(Profiler, EventsAreTimedSummarizedAndDrawn) {
  Profiler profiler({});
  const double before = profiler.now_s();
  profiler.event("recovery: step 2 -> <fewer blocks>");
  profiler.event("recovery: step 3");
  const nlohmann::json profile = profiler.to_json();
  ASSERT_EQ(profile["events"].size(), 2u);
  EXPECT_EQ(profile["events"][0]["name"], "recovery: step 2 -> <fewer blocks>");
  EXPECT_GE(profile["events"][0]["t"].get<double>(), before);
  EXPECT_LE(profile["events"][0]["t"].get<double>(), profile["events"][1]["t"].get<double>());
  std::string text;
  for (const std::string& line : profiler.summary_lines()) text += line + "\n";
  test::expect_contains(text, "2 event(s), the first at");
  // Drawn with their names as tooltips, escaped.
  const std::string svg = render_profile_svg(profile);
  test::expect_contains(svg, "<title>recovery: step 2 -&gt; &lt;fewer blocks&gt;</title>");
  test::expect_contains(svg, "<title>recovery: step 3</title>");
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
  profiler.write_files(dir / "profile.json");

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
  test::expect_contains(svg, "text &lt;&amp;&gt; encode");
  EXPECT_EQ(svg.find("<&>"), std::string::npos);
  test::expect_contains(svg, "host RSS");
  test::expect_contains(svg, "cpu allocated");
  test::expect_contains(svg, ">compute<");
  // The host's used-by-all figure is left out; a GPU's is drawn.
  EXPECT_EQ(svg.find("used by all"), std::string::npos);
  json as_gpu = profile;
  as_gpu["devices"][0]["name"] = "cuda:0";
  test::expect_contains(render_profile_svg(as_gpu), "cuda:0 used by all");

  EXPECT_EQ(std::distance(std::filesystem::directory_iterator(dir), {}), 2) << "temporary files left behind";
}

TEST(Profiler, WritesBothFilesOrNeither) {
  const std::filesystem::path dir = test::scratch_dir("profiler-neither");
  Profiler profiler({}, fast_sampling());
  // A folder where the plot should go: the JSON is written first, then taken back.
  std::filesystem::create_directory(dir / "profile.svg");
  const std::string message = test::error_of([&] { profiler.write_files(dir / "profile.json"); });
  EXPECT_NE(message.find("profile.svg"), std::string::npos) << message;
  EXPECT_FALSE(std::filesystem::exists(dir / "profile.json"));
  // Nothing but the folder remains: no temporary files.
  EXPECT_EQ(std::distance(std::filesystem::directory_iterator(dir), std::filesystem::directory_iterator()),
            1);
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
