#include "memory/host_memory.h"

#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <charconv>
#include <fstream>
#include <limits>
#include <sstream>

namespace canvas {

namespace {

std::atomic<Allocator*> g_pinned_host_allocator{nullptr};

// The whole file, read as a stream: /proc and /sys files report a size of zero.
std::optional<std::string> read_text(const std::filesystem::path& path) {
  std::ifstream file(path);
  if (!file) return std::nullopt;
  std::ostringstream text;
  text << file.rdbuf();
  if (file.bad()) return std::nullopt;
  return text.str();
}

std::string_view trim(std::string_view text) {
  const size_t begin = text.find_first_not_of(" \t\r\n");
  if (begin == std::string_view::npos) return {};
  return text.substr(begin, text.find_last_not_of(" \t\r\n") - begin + 1);
}

// A non-negative decimal count filling all of `text` but surrounding whitespace.
std::optional<int64_t> parse_count(std::string_view text) {
  text = trim(text);
  int64_t value = 0;
  const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (text.empty() || error != std::errc() || end != text.data() + text.size() || value < 0) {
    return std::nullopt;
  }
  return value;
}

// The rest of the first line that starts with `key` followed by `separator`.
std::optional<std::string_view> value_after(std::string_view text, std::string_view key, char separator) {
  while (!text.empty()) {
    const size_t line_end = std::min(text.find('\n'), text.size());
    const std::string_view line = text.substr(0, line_end);
    if (line.size() > key.size() && line.starts_with(key) && line[key.size()] == separator) {
      return line.substr(key.size() + 1);
    }
    text.remove_prefix(std::min(line_end + 1, text.size()));
  }
  return std::nullopt;
}

struct CgroupFiles {
  const char* limit;
  const char* usage;
  // Inactive page cache, hierarchical (descendants included) like the usage figure.
  const char* inactive_file_stat;
};

CgroupFiles cgroup_files(CgroupVersion version) {
  if (version == CgroupVersion::V2) return {"memory.max", "memory.current", "inactive_file"};
  return {"memory.limit_in_bytes", "memory.usage_in_bytes", "total_inactive_file"};
}

std::optional<int64_t> read_cgroup_bytes(const std::filesystem::path& file) {
  const std::optional<std::string> text = read_text(file);
  return text ? parse_cgroup_bytes(*text) : std::nullopt;
}

}  // namespace

void register_pinned_host_allocator(Allocator* allocator) {
  g_pinned_host_allocator.store(allocator);
}

Allocator* registered_pinned_host_allocator() {
  return g_pinned_host_allocator.load();
}

std::optional<int64_t> parse_proc_kib_field(std::string_view text, std::string_view field) {
  std::optional<std::string_view> value = value_after(text, field, ':');
  if (!value) return std::nullopt;
  std::string_view number = trim(*value);
  if (!number.ends_with("kB")) return std::nullopt;
  number.remove_suffix(2);
  const std::optional<int64_t> kib = parse_count(number);
  if (!kib || *kib > std::numeric_limits<int64_t>::max() / 1024) return std::nullopt;
  return *kib * 1024;
}

std::optional<std::string> parse_cgroup_path(std::string_view text, std::string_view controller) {
  while (!text.empty()) {
    const size_t line_end = std::min(text.find('\n'), text.size());
    const std::string_view line = text.substr(0, line_end);
    text.remove_prefix(std::min(line_end + 1, text.size()));
    // hierarchy-id:controller-list:path; the path itself may contain colons.
    const size_t first = line.find(':');
    const size_t second = first == std::string_view::npos ? first : line.find(':', first + 1);
    if (second == std::string_view::npos) continue;
    const std::string_view hierarchy = line.substr(0, first);
    std::string_view controllers = line.substr(first + 1, second - first - 1);
    const std::string path(trim(line.substr(second + 1)));
    if (path.empty()) continue;
    if (controller.empty()) {
      if (hierarchy == "0" && controllers.empty()) return path;
      continue;
    }
    while (!controllers.empty()) {
      const size_t comma = std::min(controllers.find(','), controllers.size());
      if (controllers.substr(0, comma) == controller) return path;
      controllers.remove_prefix(std::min(comma + 1, controllers.size()));
    }
  }
  return std::nullopt;
}

std::optional<int64_t> parse_cgroup_bytes(std::string_view text) {
  return parse_count(text);
}

std::optional<int64_t> parse_cgroup_stat_field(std::string_view text, std::string_view field) {
  const std::optional<std::string_view> value = value_after(text, field, ' ');
  return value ? parse_count(*value) : std::nullopt;
}

std::optional<CgroupMemory> cgroup_memory_limit(const std::filesystem::path& root, std::string_view path,
                                                CgroupVersion version) {
  const CgroupFiles files = cgroup_files(version);
  std::optional<CgroupMemory> tightest;
  std::filesystem::path relative = std::filesystem::path(path).relative_path();
  while (true) {
    const std::filesystem::path dir = root / relative;
    if (const std::optional<int64_t> limit = read_cgroup_bytes(dir / files.limit)) {
      // The usage includes page cache, e.g. of memory-mapped checkpoints, which the kernel drops before
      // it reclaims anything else; only the rest is memory the limit has truly lost.
      const std::optional<std::string> stat = read_text(dir / "memory.stat");
      const int64_t inactive_file =
          stat ? parse_cgroup_stat_field(*stat, files.inactive_file_stat).value_or(0) : 0;
      const int64_t usage = read_cgroup_bytes(dir / files.usage).value_or(0);
      const CgroupMemory level{*limit,
                               std::max<int64_t>(0, *limit - std::max<int64_t>(0, usage - inactive_file))};
      tightest = tightest ? CgroupMemory{std::min(tightest->limit_bytes, level.limit_bytes),
                                         std::min(tightest->available_bytes, level.available_bytes)}
                          : level;
    }
    if (relative.empty()) return tightest;
    relative = relative.parent_path();
  }
}

HostMemoryInfo host_memory_info() {
  HostMemoryInfo info;
  const std::string meminfo = read_text("/proc/meminfo").value_or("");
  const int64_t page_bytes = sysconf(_SC_PAGESIZE);
  info.total_bytes = parse_proc_kib_field(meminfo, "MemTotal").value_or(sysconf(_SC_PHYS_PAGES) * page_bytes);
  // Free pages without the reclaimable cache: an underestimate, only for kernels before MemAvailable.
  info.available_bytes =
      parse_proc_kib_field(meminfo, "MemAvailable").value_or(sysconf(_SC_AVPHYS_PAGES) * page_bytes);

  // A v1 memory hierarchy wins over the v2 line: hybrid systems list both, and keep memory on v1. An
  // unlimited v1 cgroup reports a huge limit, which the min with the RAM figures absorbs.
  if (const std::optional<std::string> self = read_text("/proc/self/cgroup")) {
    std::optional<CgroupMemory> cgroup;
    if (const std::optional<std::string> v1 = parse_cgroup_path(*self, "memory")) {
      cgroup = cgroup_memory_limit("/sys/fs/cgroup/memory", *v1, CgroupVersion::V1);
    } else if (const std::optional<std::string> v2 = parse_cgroup_path(*self, "")) {
      cgroup = cgroup_memory_limit("/sys/fs/cgroup", *v2, CgroupVersion::V2);
    }
    if (cgroup) {
      info.total_bytes = std::min(info.total_bytes, cgroup->limit_bytes);
      info.available_bytes = std::min(info.available_bytes, cgroup->available_bytes);
    }
  }

  const std::string status = read_text("/proc/self/status").value_or("");
  info.process_rss_bytes = parse_proc_kib_field(status, "VmRSS").value_or(0);
  info.process_peak_rss_bytes = parse_proc_kib_field(status, "VmHWM").value_or(0);
  // An address-space limit fails allocations (mmap included) once the process's mappings reach it; a
  // data limit once its private writable memory (VmData: the heap and anonymous mappings, not the
  // mapped checkpoint) does.
  auto narrow_by_rlimit = [&](int resource, std::string_view counted_field) {
    rlimit limit{};
    if (getrlimit(resource, &limit) != 0 || limit.rlim_cur == RLIM_INFINITY) return;
    const int64_t bytes =
        static_cast<int64_t>(std::min<rlim_t>(limit.rlim_cur, std::numeric_limits<int64_t>::max()));
    const int64_t counted = parse_proc_kib_field(status, counted_field).value_or(0);
    info.total_bytes = std::min(info.total_bytes, bytes);
    info.available_bytes = std::min(info.available_bytes, std::max<int64_t>(0, bytes - counted));
  };
  narrow_by_rlimit(RLIMIT_AS, "VmSize");
  narrow_by_rlimit(RLIMIT_DATA, "VmData");
  info.available_bytes = std::clamp<int64_t>(info.available_bytes, 0, info.total_bytes);
  return info;
}

}  // namespace canvas
