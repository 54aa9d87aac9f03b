// A job's memory and time profile, for `canvas generate --profile`: what the allocators held over time
// (every allocation, downsampled without losing peaks), host RSS and device free memory sampled in the
// background, the phases the pipeline marks with their peaks, and copy/compute intervals of weight
// streaming. Nothing is hooked unless a Profiler exists.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "backend/backend.h"
#include "memory/allocator.h"

namespace canvas {

struct ProfileOptions {
  // How often host RSS is sampled.
  std::chrono::milliseconds sample_interval{20};
  // How often device free memory is asked of the backends; zero never asks. Each ask is a driver call,
  // so it comes less often than the RSS samples.
  std::chrono::milliseconds device_memory_interval{250};
};

// Numeric attributes of a phase, e.g. {"step", 3} or {"sigma", 0.82}.
using PhaseAttributes = std::vector<std::pair<std::string, double>>;

class Profiler {
 public:
  // Watches the allocators of `devices` and the CPU's (whose allocators must exist; repeats count once)
  // through their listeners, chaining to the listeners already set and putting them back on destruction;
  // profilers on one allocator must therefore end in the reverse order of their start.
  explicit Profiler(std::vector<Device> devices, ProfileOptions options = {});
  ~Profiler();
  Profiler(const Profiler&) = delete;
  Profiler& operator=(const Profiler&) = delete;

  // Phases nest: end() must name the innermost open phase. begin() and end() may come from any thread.
  void begin(const std::string& name, PhaseAttributes attributes = {});
  void end(const std::string& name);

  // Ends its phase when destroyed. A default-constructed Span does nothing, for code that profiles only
  // when given a profiler.
  class Span {
   public:
    Span() = default;
    Span(Span&& other) noexcept
        : profiler_(std::exchange(other.profiler_, nullptr)), name_(std::move(other.name_)) {}
    Span& operator=(Span&&) = delete;
    ~Span() {
      if (profiler_) profiler_->end(name_);
    }

   private:
    friend class Profiler;
    Span(Profiler* profiler, std::string name) : profiler_(profiler), name_(std::move(name)) {}
    Profiler* profiler_ = nullptr;
    std::string name_;
  };
  Span span(std::string name, PhaseAttributes attributes = {});

  // A moment worth seeing on the timeline, e.g. a recovery from an allocation failure, at now_s().
  void event(const std::string& name);

  // An interval measured elsewhere, in now_s() seconds, on a named lane: "copy" and "compute" feed the
  // overlap figure and the plot's lanes.
  void record_interval(const std::string& lane, const std::string& name, double start_s, double end_s);
  // An interval of device work between two device timestamps. It is read once the device has passed
  // both, so recording never waits for the device; to_json() leaves out those it has not passed yet.
  void record_interval(const std::string& lane, const std::string& name, Timestamp start, Timestamp end);

  // Seconds since the profiler started, on the steady clock.
  double now_s() const;

  // The whole profile, safe to take while the job runs. Times are seconds, sizes bytes, and lists per
  // device follow "devices":
  //   devices: [{name, allocator}]
  //   samples: [{t, host_rss, devices: [{allocated, free?, total?}]}]  (free/total when asked)
  //   allocation_peaks: {bucket_s, devices: [[[t, max, last], ...]]}   (one triple per busy bucket)
  //   phases: [{name, depth, start, end, open?, attributes, start_device_bytes, peak_device_bytes,
  //             start_host_rss, peak_host_rss}]                        (by start; open ones end now)
  //   intervals: [{lane, name, start, end}]           (those timed on the device in the order recorded)
  //   events: [{name, t}]                                                 (in the order recorded)
  //   summary: {duration_s, peak_allocated, peak_used (null unless asked), peak_host_rss, copy_s,
  //             compute_s, copy_compute_overlap (null without copies)}
  // Host RSS is sampled, so a phase shorter than the sample interval reports the level last sampled.
  nlohmann::json to_json() const;
  // At most 9 lines: duration, peaks per device and of host RSS with the phase they fell in, top-level
  // phase durations, copy/compute overlap, events.
  std::vector<std::string> summary_lines() const;
  // Writes the profile to `json_path` and its plot beside it (the same name with .svg), both or neither:
  // each goes through an AtomicFile, and the JSON is removed again when the plot cannot be written.
  // Throws canvas::Error naming the file and the system's reason.
  void write_files(const std::filesystem::path& json_path) const;

  // Allocation events are kept at most one per channel and bucket of this length, as the bucket's
  // highest and last in-use figures.
  static constexpr int64_t kBucketNanoseconds = 1'000'000;

 private:
  // One allocation point per bucket: the peak inside it and the level it ended at.
  struct AllocationPoint {
    int64_t bucket;
    int64_t max_bytes;
    int64_t last_bytes;
  };
  // What one allocator (or, as the last channel, host RSS) holds. Allocator channels are written by
  // their listener, which the allocator calls under its own lock; the host channel by the sampler.
  struct Channel {
    std::mutex mutex;
    int64_t current = 0;
    int64_t running_max = 0;  // highest since the innermost open phase began
    std::vector<AllocationPoint> points;
  };
  struct DeviceSample {
    int64_t allocated;
    int64_t free_bytes = -1;  // -1: not asked this sample
    int64_t total_bytes = -1;
  };
  struct Sample {
    double t;
    int64_t host_rss;
    std::vector<DeviceSample> devices;
  };
  struct Phase {
    std::string name;
    PhaseAttributes attributes;
    int depth;
    double start;
    double end = -1;                      // -1 while open
    std::vector<int64_t> start_bytes;     // per channel
    std::vector<int64_t> peak_bytes;      // per channel, once ended
    std::vector<int64_t> enclosing_peak;  // while open: the enclosing phase's peak up to this start
  };
  struct Interval {
    std::string lane;
    std::string name;
    double start;
    double end;
  };
  struct Event {
    std::string name;
    double t;
  };
  struct PendingInterval {
    std::string lane;
    std::string name;
    Timestamp start;
    Timestamp end;
  };
  struct Watch {
    Allocator* allocator;
    std::function<void(const AllocationEvent&)> previous;
  };

  void record_allocation(Channel& channel, int64_t in_use_after);
  void take_sample(bool ask_devices);
  void sample_loop();
  nlohmann::json phases_json() const;
  double seconds_at(std::chrono::steady_clock::time_point time) const;
  // The interval once the device has passed both ends.
  std::optional<Interval> resolve(const PendingInterval& pending) const;

  std::vector<Device> devices_;
  ProfileOptions options_;
  std::chrono::steady_clock::time_point start_;
  std::vector<std::unique_ptr<Channel>> channels_;  // devices_, then host RSS
  std::vector<Watch> watches_;

  mutable std::mutex phases_mutex_;
  std::vector<Phase> open_phases_;
  std::vector<Phase> phases_;
  std::vector<Event> events_;  // under phases_mutex_
  mutable std::mutex intervals_mutex_;
  std::vector<Interval> intervals_;
  std::deque<PendingInterval> pending_;  // oldest first
  mutable std::mutex samples_mutex_;
  std::vector<Sample> samples_;

  std::mutex stop_mutex_;
  std::condition_variable stop_signal_;
  bool stopping_ = false;
  std::thread sampler_;
};

}  // namespace canvas
