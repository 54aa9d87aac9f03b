// How much host memory this process can still get, as the memory planner needs it: the kernel's view
// (/proc/meminfo) narrowed by the container's cgroup limit and the process's address-space and data
// rlimits, which are what actually end a run that asks for too much.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>

#include "memory/allocator.h"

namespace canvas {

struct HostMemoryInfo {
  int64_t total_bytes = 0;      // RAM this process may use at most
  int64_t available_bytes = 0;  // of which it can still allocate without swapping or being killed
  int64_t process_rss_bytes = 0;
  int64_t process_peak_rss_bytes = 0;
};

HostMemoryInfo host_memory_info();

// Page-locked host memory, which DMA engines read directly. A GPU backend registers its pinned allocator
// when it starts, so device-independent code (planning/machine_profile.h) can stage through it without
// linking that backend. nullptr until one is registered.
void register_pinned_host_allocator(Allocator* allocator);
Allocator* registered_pinned_host_allocator();

// ---- parsers of the kernel's files, separate so tests can feed them fixture text ----

// The "<field>: <n> kB" line of /proc/meminfo or /proc/self/status, in bytes; nullopt when the field is
// missing or malformed.
std::optional<int64_t> parse_proc_kib_field(std::string_view text, std::string_view field);

// This process's cgroup path from /proc/self/cgroup text: with an empty `controller` the cgroup v2 line
// ("0::/path"), else the v1 hierarchy whose controller list names it ("4:memory:/path").
std::optional<std::string> parse_cgroup_path(std::string_view text, std::string_view controller);

// The byte count of a cgroup file such as memory.max or memory.current; nullopt for "max" (no limit) and
// for text that is not a count.
std::optional<int64_t> parse_cgroup_bytes(std::string_view text);

// A "<field> <n>" line of a cgroup memory.stat file.
std::optional<int64_t> parse_cgroup_stat_field(std::string_view text, std::string_view field);

enum class CgroupVersion { V1, V2 };

struct CgroupMemory {
  int64_t limit_bytes;
  int64_t available_bytes;  // the limit less the memory that reclaim cannot free
};

// The tightest memory limit on the cgroup `path` under the hierarchy mounted at `root`, over the cgroup and
// its ancestors (a parent's limit binds its children); nullopt when none sets one. Levels whose files are
// missing are skipped: inside a container the path names the host's hierarchy, of which only the
// container's own subtree is mounted, at `root`.
std::optional<CgroupMemory> cgroup_memory_limit(const std::filesystem::path& root, std::string_view path,
                                                CgroupVersion version);

}  // namespace canvas
