// Host memory facts: the parsers of /proc and cgroup files on fixture text, the walk up a fake cgroup
// tree, and the figures this machine reports, directly and through the CPU backend.
#include "memory/host_memory.h"

#include <gtest/gtest.h>
#include <sys/resource.h>

#include <fstream>
#include <vector>

#include "backend/backend.h"
#include "image/decode.h"
#include "io/png_image.h"
#include "test_util.h"

namespace canvas {
namespace {

constexpr int64_t kGiB = int64_t{1} << 30;
constexpr int64_t kMiB = int64_t{1} << 20;

constexpr const char* kMeminfo =
    "MemTotal:       16318480 kB\n"
    "MemFree:         1234567 kB\n"
    "MemAvailable:    8159240 kB\n"
    "HugePages_Total:       0\n"
    "Hugepagesize:       2048 kB\n";

TEST(HostMemoryParsers, ProcKibFieldsInBytes) {
  EXPECT_EQ(parse_proc_kib_field(kMeminfo, "MemTotal"), int64_t{16318480} * 1024);
  EXPECT_EQ(parse_proc_kib_field(kMeminfo, "MemAvailable"), int64_t{8159240} * 1024);
  // A prefix of a field name is not the field, and a count without the kB unit is not a size.
  EXPECT_EQ(parse_proc_kib_field(kMeminfo, "Mem"), std::nullopt);
  EXPECT_EQ(parse_proc_kib_field(kMeminfo, "HugePages_Total"), std::nullopt);
  EXPECT_EQ(parse_proc_kib_field(kMeminfo, "SwapTotal"), std::nullopt);
  EXPECT_EQ(parse_proc_kib_field("", "MemTotal"), std::nullopt);

  const char* status =
      "Name:\tcanvas\nVmPeak:\t  900 kB\nVmSize:\t  800 kB\nVmHWM:\t  600 kB\nVmRSS:\t  500 kB\n";
  EXPECT_EQ(parse_proc_kib_field(status, "VmRSS"), 500 * 1024);
  EXPECT_EQ(parse_proc_kib_field(status, "VmHWM"), 600 * 1024);
  EXPECT_EQ(parse_proc_kib_field(status, "VmSize"), 800 * 1024);
}

TEST(HostMemoryParsers, ProcKibFieldRejectsGarbage) {
  EXPECT_EQ(parse_proc_kib_field("MemTotal: lots kB\n", "MemTotal"), std::nullopt);
  EXPECT_EQ(parse_proc_kib_field("MemTotal: -5 kB\n", "MemTotal"), std::nullopt);
  EXPECT_EQ(parse_proc_kib_field("MemTotal: 12 34 kB\n", "MemTotal"), std::nullopt);
  EXPECT_EQ(parse_proc_kib_field("MemTotal: 12 MB\n", "MemTotal"), std::nullopt);
  // Past int64 once converted to bytes.
  EXPECT_EQ(parse_proc_kib_field("MemTotal: 9223372036854775 kB\n", "MemTotal"), std::nullopt);
  // No trailing newline on the last line is still a line.
  EXPECT_EQ(parse_proc_kib_field("MemTotal: 1 kB", "MemTotal"), 1024);
}

TEST(HostMemoryParsers, CgroupPathForV2AndV1Controllers) {
  EXPECT_EQ(parse_cgroup_path("0::/user.slice/session-3.scope\n", ""), "/user.slice/session-3.scope");
  EXPECT_EQ(parse_cgroup_path("0::/\n", ""), "/");
  EXPECT_EQ(parse_cgroup_path("0::/user.slice\n", "memory"), std::nullopt);

  const char* v1 =
      "12:cpu,cpuacct:/docker/abc\n"
      "4:memory:/docker/abc:with-colon\n"
      "1:name=systemd:/init.scope\n"
      "0::/docker/unified\n";
  EXPECT_EQ(parse_cgroup_path(v1, "memory"), "/docker/abc:with-colon");
  EXPECT_EQ(parse_cgroup_path(v1, "cpuacct"), "/docker/abc");
  EXPECT_EQ(parse_cgroup_path(v1, ""), "/docker/unified");
  EXPECT_EQ(parse_cgroup_path(v1, "mem"), std::nullopt);
  EXPECT_EQ(parse_cgroup_path(v1, "systemd"), std::nullopt);
  EXPECT_EQ(parse_cgroup_path("garbage\n::\n3:memory\n", "memory"), std::nullopt);
  EXPECT_EQ(parse_cgroup_path("", ""), std::nullopt);
}

TEST(HostMemoryParsers, CgroupBytesAndStatFields) {
  EXPECT_EQ(parse_cgroup_bytes("8589934592\n"), 8 * kGiB);
  // cgroup v1's "unlimited" is a huge count, still a number.
  EXPECT_EQ(parse_cgroup_bytes("9223372036854771712\n"), int64_t{9223372036854771712});
  EXPECT_EQ(parse_cgroup_bytes("max\n"), std::nullopt);
  EXPECT_EQ(parse_cgroup_bytes(""), std::nullopt);
  EXPECT_EQ(parse_cgroup_bytes("12abc"), std::nullopt);
  EXPECT_EQ(parse_cgroup_bytes("-1"), std::nullopt);
  EXPECT_EQ(parse_cgroup_bytes("99999999999999999999"), std::nullopt);

  const char* stat = "anon 100\nfile 200\nactive_file 70\ninactive_file 50\nfile_mapped 9\n";
  EXPECT_EQ(parse_cgroup_stat_field(stat, "inactive_file"), 50);
  EXPECT_EQ(parse_cgroup_stat_field(stat, "file"), 200);
  EXPECT_EQ(parse_cgroup_stat_field(stat, "total_inactive_file"), std::nullopt);
  EXPECT_EQ(parse_cgroup_stat_field("inactive_file many\n", "inactive_file"), std::nullopt);
}

void write_file(const std::filesystem::path& path, const std::string& text) {
  std::filesystem::create_directories(path.parent_path());
  std::ofstream(path) << text;
}

TEST(CgroupMemoryLimit, TightestLimitOverAncestorsLessUnreclaimableUsage) {
  const std::filesystem::path root = test::scratch_dir("cgroup-v2");
  // The leaf sets no limit; its parent's 8 GiB binds it. Of the parent's 4 GiB in use, 1 GiB is inactive
  // page cache that reclaim frees first.
  write_file(root / "a/b/memory.max", "max\n");
  write_file(root / "a/b/memory.current", std::to_string(2 * kGiB));
  write_file(root / "a/memory.max", std::to_string(8 * kGiB));
  write_file(root / "a/memory.current", std::to_string(4 * kGiB));
  write_file(root / "a/memory.stat", "anon 1\ninactive_file " + std::to_string(kGiB) + "\n");
  std::optional<CgroupMemory> memory = cgroup_memory_limit(root, "/a/b", CgroupVersion::V2);
  ASSERT_TRUE(memory.has_value());
  EXPECT_EQ(memory->limit_bytes, 8 * kGiB);
  EXPECT_EQ(memory->available_bytes, 5 * kGiB);

  // A tighter leaf limit wins, with its own (fuller) usage; no memory.stat counts as no page cache.
  write_file(root / "a/b/memory.max", std::to_string(6 * kGiB));
  write_file(root / "a/b/memory.current", std::to_string(5 * kGiB + 512 * kMiB));
  memory = cgroup_memory_limit(root, "/a/b", CgroupVersion::V2);
  ASSERT_TRUE(memory.has_value());
  EXPECT_EQ(memory->limit_bytes, 6 * kGiB);
  EXPECT_EQ(memory->available_bytes, 512 * kMiB);

  // Usage past the limit leaves nothing, not a negative figure.
  write_file(root / "a/b/memory.current", std::to_string(7 * kGiB));
  EXPECT_EQ(cgroup_memory_limit(root, "/a/b", CgroupVersion::V2)->available_bytes, 0);
}

TEST(CgroupMemoryLimit, ContainerRootAndNoLimit) {
  const std::filesystem::path root = test::scratch_dir("cgroup-container");
  // Nothing anywhere: no limit.
  EXPECT_EQ(cgroup_memory_limit(root, "/docker/abc", CgroupVersion::V2), std::nullopt);
  // Inside a container only its own cgroup is mounted, at the root, while the path names the host's.
  write_file(root / "memory.max", std::to_string(2 * kGiB));
  write_file(root / "memory.current", std::to_string(kGiB));
  const std::optional<CgroupMemory> memory = cgroup_memory_limit(root, "/docker/abc", CgroupVersion::V2);
  ASSERT_TRUE(memory.has_value());
  EXPECT_EQ(memory->limit_bytes, 2 * kGiB);
  EXPECT_EQ(memory->available_bytes, kGiB);
  // Garbage in the limit file reads as no limit.
  write_file(root / "memory.max", "garbage");
  EXPECT_EQ(cgroup_memory_limit(root, "/docker/abc", CgroupVersion::V2), std::nullopt);
}

TEST(CgroupMemoryLimit, V1FileNames) {
  const std::filesystem::path root = test::scratch_dir("cgroup-v1");
  write_file(root / "job/memory.limit_in_bytes", std::to_string(4 * kGiB));
  write_file(root / "job/memory.usage_in_bytes", std::to_string(3 * kGiB));
  // v1's hierarchical figure is total_inactive_file; the local inactive_file must not be used.
  write_file(root / "job/memory.stat", "inactive_file 1\ntotal_inactive_file " + std::to_string(kGiB) + "\n");
  write_file(root / "memory.limit_in_bytes", "9223372036854771712\n");
  const std::optional<CgroupMemory> memory = cgroup_memory_limit(root, "/job", CgroupVersion::V1);
  ASSERT_TRUE(memory.has_value());
  EXPECT_EQ(memory->limit_bytes, 4 * kGiB);
  EXPECT_EQ(memory->available_bytes, 2 * kGiB);
  EXPECT_EQ(cgroup_memory_limit(root, "/job", CgroupVersion::V2), std::nullopt);
}

TEST(HostMemoryInfo, PlausibleOnThisMachine) {
  const HostMemoryInfo before = host_memory_info();
  EXPECT_GT(before.total_bytes, 0);
  EXPECT_GT(before.available_bytes, 0);
  EXPECT_LE(before.available_bytes, before.total_bytes);
  EXPECT_GT(before.process_rss_bytes, 0);
  EXPECT_GE(before.process_peak_rss_bytes, before.process_rss_bytes);

  // Touching 64 MiB shows up in the resident set and its peak.
  std::vector<char> touched(64 * kMiB, 1);
  const HostMemoryInfo after = host_memory_info();
  EXPECT_GE(after.process_rss_bytes, before.process_rss_bytes + 48 * kMiB);
  EXPECT_GE(after.process_peak_rss_bytes, after.process_rss_bytes);
  EXPECT_EQ(touched[touched.size() / 2], 1);
}

TEST(HostMemoryInfo, CpuBackendReportsHostMemory) {
  const HostMemoryInfo before = host_memory_info();
  const DeviceMemoryInfo cpu = backend_for(Device::cpu()).memory_info();
  const HostMemoryInfo after = host_memory_info();
  EXPECT_EQ(cpu.total_bytes, before.total_bytes);
  // Other processes allocate meanwhile; the figure must still lie within what was seen around it.
  const int64_t slack = 512 * kMiB;
  EXPECT_GE(cpu.free_bytes, std::min(before.available_bytes, after.available_bytes) - slack);
  EXPECT_LE(cpu.free_bytes, std::max(before.available_bytes, after.available_bytes) + slack);
}

TEST(HostMemoryInfo, PinnedAllocatorRegistry) {
  // This test binary has no GPU backend to register one.
  EXPECT_EQ(registered_pinned_host_allocator(), nullptr);
  Allocator& host = allocator_for(Device::cpu());
  register_pinned_host_allocator(&host);
  EXPECT_EQ(registered_pinned_host_allocator(), &host);
  register_pinned_host_allocator(nullptr);
}

TEST(HostMemoryInfo, DataLimitNarrowsWhatIsAvailable) {
  rlimit saved{};
  ASSERT_EQ(getrlimit(RLIMIT_DATA, &saved), 0);
  std::ifstream status_file("/proc/self/status");
  const std::string status((std::istreambuf_iterator<char>(status_file)), std::istreambuf_iterator<char>());
  const int64_t data = parse_proc_kib_field(status, "VmData").value_or(0);
  rlimit lowered = saved;
  lowered.rlim_cur = static_cast<rlim_t>(data + 256 * kMiB);
  ASSERT_EQ(setrlimit(RLIMIT_DATA, &lowered), 0);
  const HostMemoryInfo info = host_memory_info();
  setrlimit(RLIMIT_DATA, &saved);
  EXPECT_LE(info.available_bytes, 256 * kMiB + kMiB);
  EXPECT_LE(info.total_bytes, data + 256 * kMiB);
}

TEST(HostMemoryLimit, GeneratesUnderADataLimitSmallerThanTheModel) {
  // A synthetic model with few blocks whose f32 weights the CPU uses in place from the mapping: under a
  // data rlimit (which counts the heap and anonymous memory, not mapped files) well below its size, with
  // --ram-budget below its size, the job still runs, reading the weights from the page cache.
  namespace fs = std::filesystem;
  const fs::path folder = test::scratch_dir("host-memory-limit") / "model";
  test::CommandResult written = test::run_built_program(
      "tools/canvas-synthetic-checkpoint",
      "--output " + folder.string() +
          " --layers 2 --heads 2 --text-layers 2 --text-heads 12 --vae-base-dim 4 --dtype f32");
  ASSERT_EQ(written.exit_code, 0) << written.output;
  int64_t model_bytes = 0;
  for (const fs::directory_entry& entry : fs::recursive_directory_iterator(folder))
    if (entry.path().extension() == ".safetensors") model_bytes += static_cast<int64_t>(entry.file_size());
  // Room for the process itself: the libraries' data (about 190 MiB in the CUDA build), OpenBLAS's
  // 128 MiB work buffers (it retries forever when it cannot map one) and the machine profile's buffers.
  const int64_t limit = int64_t{1} << 30;
  ASSERT_GT(model_bytes, 2 * limit) << "the model must dwarf the process's own needs";

  const fs::path image = folder.parent_path() / "generated.png";
  test::CommandResult generated = test::run_command(
      "ulimit -d " + std::to_string(limit / 1024) + " && CANVAS_CACHE_DIR=" + folder.parent_path().string() +
      " exec " + test::built_program("src/canvas").string() + " generate --model " + folder.string() +
      " --prompt 'a lighthouse' --steps 2 --width 64 --height 64 --ram-budget " +
      std::to_string(static_cast<double>(limit) / (1 << 30)) + " --output " + image.string());
  std::printf("[ host limit ] model %.0f MiB, data limit %.0f MiB\n%s",
              static_cast<double>(model_bytes) / kMiB, static_cast<double>(limit) / kMiB,
              generated.output.c_str());
  ASSERT_EQ(generated.exit_code, 0) << generated.output;
  test::expect_contains(generated.output, "mapped from the checkpoint");
  EXPECT_EQ(read_image(image).rgb.width, 64);
}

}  // namespace
}  // namespace canvas
