#include "profile/profiler.h"

#include <algorithm>
#include <cstdio>
#include <exception>
#include <string>
#include <tuple>
#include <vector>

#include "backend/backend.h"
#include "memory/host_memory.h"
#include "profile/profile_plot.h"
#include "util/atomic_file.h"
#include "util/format.h"

namespace canvas {

using json = nlohmann::json;

namespace {

using Span1D = std::pair<double, double>;

// The union of `spans` as disjoint spans in time order.
std::vector<Span1D> merge_spans(std::vector<Span1D> spans) {
  std::sort(spans.begin(), spans.end());
  std::vector<Span1D> merged;
  for (const Span1D& span : spans) {
    if (!merged.empty() && span.first <= merged.back().second) {
      merged.back().second = std::max(merged.back().second, span.second);
    } else {
      merged.push_back(span);
    }
  }
  return merged;
}

double total_length(const std::vector<Span1D>& spans) {
  double length = 0;
  for (const auto& [start, end] : spans) length += end - start;
  return length;
}

// Length of the intersection of two merged span lists.
double overlap_length(const std::vector<Span1D>& a, const std::vector<Span1D>& b) {
  double length = 0;
  for (size_t i = 0, j = 0; i < a.size() && j < b.size();) {
    length += std::max(0.0, std::min(a[i].second, b[j].second) - std::max(a[i].first, b[j].first));
    a[i].second < b[j].second ? ++i : ++j;
  }
  return length;
}

std::vector<Span1D> lane_spans(const json& intervals, const std::string& lane) {
  std::vector<Span1D> spans;
  for (const json& interval : intervals) {
    if (interval["lane"] == lane) spans.emplace_back(interval["start"], interval["end"]);
  }
  return merge_spans(std::move(spans));
}

std::string seconds_text(double seconds) {
  char text[32];
  std::snprintf(text, sizeof(text), "%.2f s", seconds);
  return text;
}

// " (in load)" naming the first top-level phase whose peak, as `peak_of` reads it, is the overall `peak`;
// empty when the peak fell outside every phase.
std::string peak_phase(const json& phases, int64_t peak, auto peak_of) {
  for (const json& phase : phases) {
    if (phase["depth"] == 0 && peak_of(phase) == peak)
      return " (in " + phase["name"].get<std::string>() + ")";
  }
  return "";
}

std::vector<std::string> summary_from_json(const json& profile) {
  const json& summary = profile["summary"];
  const json& phases = profile["phases"];
  std::vector<std::string> lines;
  lines.push_back("profile: " + seconds_text(summary["duration_s"]) + ", " +
                  std::to_string(profile["samples"].size()) + " samples, " + std::to_string(phases.size()) +
                  " phases");
  // Three devices at most, to stay within eight lines.
  for (size_t i = 0; i < profile["devices"].size() && i < 3; ++i) {
    const int64_t peak = summary["peak_allocated"][i];
    std::string line =
        profile["devices"][i]["name"].get<std::string>() + ": peak " + format_bytes(peak) + " allocated" +
        peak_phase(phases, peak, [i](const json& phase) { return phase["peak_device_bytes"][i]; });
    // The host's used-by-all counts every process on the machine; host RSS below is this job's share.
    const json& used = summary["peak_used"][i];
    if (!used.is_null() && profile["devices"][i]["name"] != "cpu") {
      line += ", " + format_bytes(used) + " used by all processes";
    }
    lines.push_back(line);
  }
  const int64_t rss = summary["peak_host_rss"];
  lines.push_back("host RSS: peak " + format_bytes(rss) +
                  peak_phase(phases, rss, [](const json& phase) { return phase["peak_host_rss"]; }));

  constexpr int kListedPhases = 6;
  std::string listed;
  int top_level = 0;
  for (const json& phase : phases) {
    if (phase["depth"] != 0) continue;
    if (++top_level > kListedPhases) continue;
    listed += (listed.empty() ? "" : ", ") + phase["name"].get<std::string>() + " " +
              seconds_text(phase["end"].get<double>() - phase["start"].get<double>());
  }
  if (top_level > kListedPhases) listed += " and " + std::to_string(top_level - kListedPhases) + " more";
  if (!listed.empty()) lines.push_back("phases: " + listed);

  if (!summary["copy_compute_overlap"].is_null()) {
    char overlap[128];
    std::snprintf(overlap, sizeof(overlap),
                  "copy %.2f s, compute %.2f s: %.0f%% of copy time overlaps compute",
                  summary["copy_s"].get<double>(), summary["compute_s"].get<double>(),
                  100.0 * summary["copy_compute_overlap"].get<double>());
    lines.push_back(overlap);
  }
  if (const json events = profile.value("events", json::array()); !events.empty()) {
    lines.push_back(std::to_string(events.size()) + " event(s), the first at " +
                    seconds_text(events[0]["t"]) + ": " + events[0]["name"].get<std::string>());
  }
  return lines;
}

}  // namespace

Profiler::Profiler(std::vector<Device> devices, ProfileOptions options)
    : options_(options), start_(std::chrono::steady_clock::now()) {
  devices.push_back(Device::cpu());
  for (Device device : devices) {
    if (std::find(devices_.begin(), devices_.end(), device) == devices_.end()) devices_.push_back(device);
  }
  // Everything that can fail comes before the first listener is set, which only the destructor removes.
  std::vector<Allocator*> allocators;
  for (Device device : devices_) allocators.push_back(&allocator_for(device));
  for (size_t i = 0; i <= devices_.size(); ++i) channels_.push_back(std::make_unique<Channel>());
  for (size_t i = 0; i < devices_.size(); ++i) {
    Channel& channel = *channels_[i];
    channel.current = channel.running_max = allocators[i]->in_use();
    // Busy buckets of a long job; growing past this moves the vector under the allocator's lock.
    channel.points.reserve(size_t{1} << 15);
    channel.points.push_back({0, channel.current, channel.current});
  }
  take_sample(options_.device_memory_interval.count() > 0);
  sampler_ = std::thread([this] { sample_loop(); });

  for (size_t i = 0; i < devices_.size(); ++i) {
    Watch watch{allocators[i], allocators[i]->listener()};
    allocators[i]->set_listener(
        [this, channel = channels_[i].get(), previous = watch.previous](const AllocationEvent& event) {
          record_allocation(*channel, event.in_use_after);
          if (previous) previous(event);
        });
    watches_.push_back(std::move(watch));
  }
}

Profiler::~Profiler() {
  // The allocator calls its listener under the lock set_listener takes, so once this returns no call into
  // this profiler is running or can start.
  for (auto watch = watches_.rbegin(); watch != watches_.rend(); ++watch) {
    watch->allocator->set_listener(watch->previous);
  }
  {
    std::lock_guard lock(stop_mutex_);
    stopping_ = true;
  }
  stop_signal_.notify_all();
  sampler_.join();
}

double Profiler::now_s() const {
  return seconds_at(std::chrono::steady_clock::now());
}

double Profiler::seconds_at(std::chrono::steady_clock::time_point time) const {
  return std::chrono::duration<double>(time - start_).count();
}

void Profiler::record_allocation(Channel& channel, int64_t in_use_after) {
  const int64_t bucket =
      std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - start_)
          .count() /
      kBucketNanoseconds;
  std::lock_guard lock(channel.mutex);
  channel.current = in_use_after;
  channel.running_max = std::max(channel.running_max, in_use_after);
  AllocationPoint* last = channel.points.empty() ? nullptr : &channel.points.back();
  if (last && last->bucket == bucket) {
    last->max_bytes = std::max(last->max_bytes, in_use_after);
    last->last_bytes = in_use_after;
  } else {
    channel.points.push_back({bucket, in_use_after, in_use_after});
  }
}

void Profiler::take_sample(bool ask_devices) {
  Sample sample{now_s(), host_memory_info().process_rss_bytes, {}};
  for (size_t i = 0; i < devices_.size(); ++i) {
    DeviceSample device{};
    {
      std::lock_guard lock(channels_[i]->mutex);
      device.allocated = channels_[i]->current;
    }
    if (ask_devices) {
      try {
        const DeviceMemoryInfo info = backend_for(devices_[i]).memory_info();
        device.free_bytes = info.free_bytes;
        device.total_bytes = info.total_bytes;
      } catch (const std::exception&) {
        // A device that cannot report leaves this sample without its free memory; the job goes on.
      }
    }
    sample.devices.push_back(device);
  }
  {
    Channel& host = *channels_.back();
    std::lock_guard lock(host.mutex);
    host.current = sample.host_rss;
    host.running_max = std::max(host.running_max, sample.host_rss);
  }
  std::lock_guard lock(samples_mutex_);
  samples_.push_back(std::move(sample));
}

void Profiler::sample_loop() {
  const auto device_interval = options_.device_memory_interval;
  auto last_device_ask = std::chrono::steady_clock::now();
  std::unique_lock lock(stop_mutex_);
  while (!stop_signal_.wait_for(lock, options_.sample_interval, [this] { return stopping_; })) {
    lock.unlock();
    const auto now = std::chrono::steady_clock::now();
    const bool ask_devices = device_interval.count() > 0 && now - last_device_ask >= device_interval;
    if (ask_devices) last_device_ask = now;
    take_sample(ask_devices);
    lock.lock();
  }
}

void Profiler::begin(const std::string& name, PhaseAttributes attributes) {
  Phase phase{name, std::move(attributes), 0, now_s(), -1, {}, {}, {}};
  std::lock_guard lock(phases_mutex_);
  phase.depth = static_cast<int>(open_phases_.size());
  for (const auto& channel : channels_) {
    std::lock_guard channel_lock(channel->mutex);
    phase.start_bytes.push_back(channel->current);
    phase.enclosing_peak.push_back(channel->running_max);
    channel->running_max = channel->current;
  }
  open_phases_.push_back(std::move(phase));
}

void Profiler::end(const std::string& name) {
  const double end = now_s();
  std::lock_guard lock(phases_mutex_);
  check(!open_phases_.empty() && open_phases_.back().name == name,
        "profiler: ending phase '" + name + "', but the innermost open phase is '" +
            (open_phases_.empty() ? std::string() : open_phases_.back().name) + "'");
  Phase phase = std::move(open_phases_.back());
  open_phases_.pop_back();
  phase.end = end;
  for (size_t i = 0; i < channels_.size(); ++i) {
    std::lock_guard channel_lock(channels_[i]->mutex);
    phase.peak_bytes.push_back(channels_[i]->running_max);
    channels_[i]->running_max = std::max(channels_[i]->running_max, phase.enclosing_peak[i]);
  }
  phase.enclosing_peak.clear();
  phases_.push_back(std::move(phase));
}

void Profiler::event(const std::string& name) {
  const double t = now_s();
  std::lock_guard lock(phases_mutex_);
  events_.push_back({name, t});
}

Profiler::Span Profiler::span(std::string name, PhaseAttributes attributes) {
  begin(name, std::move(attributes));
  return Span(this, std::move(name));
}

void Profiler::record_interval(const std::string& lane, const std::string& name, double start_s,
                               double end_s) {
  std::lock_guard lock(intervals_mutex_);
  intervals_.push_back({lane, name, start_s, end_s});
}

void Profiler::record_interval(const std::string& lane, const std::string& name, Timestamp start,
                               Timestamp end) {
  std::lock_guard lock(intervals_mutex_);
  pending_.push_back({lane, name, std::move(start), std::move(end)});
  // Oldest first, so intervals_ keeps the order recorded and a call asks the device only up to the first
  // interval it has not passed; the rest wait for a later call, or for to_json().
  while (!pending_.empty()) {
    std::optional<Interval> interval = resolve(pending_.front());
    if (!interval) break;
    intervals_.push_back(std::move(*interval));
    pending_.pop_front();
  }
}

std::optional<Profiler::Interval> Profiler::resolve(const PendingInterval& pending) const {
  // The end first: until the device has passed it, the start need not be asked.
  const std::optional<std::chrono::steady_clock::time_point> end = pending.end->time();
  if (!end) return std::nullopt;
  const std::optional<std::chrono::steady_clock::time_point> start = pending.start->time();
  if (!start) return std::nullopt;
  return Interval{pending.lane, pending.name, seconds_at(*start), seconds_at(*end)};
}

json Profiler::phases_json() const {
  const double now = now_s();
  std::vector<Phase> phases;
  {
    std::lock_guard lock(phases_mutex_);
    phases = phases_;
    // An open phase's peak so far: the running peak since the innermost began, widened outward by what
    // each enclosing phase held before its open child started.
    std::vector<int64_t> peak(channels_.size());
    for (size_t i = 0; i < channels_.size(); ++i) {
      std::lock_guard channel_lock(channels_[i]->mutex);
      peak[i] = channels_[i]->running_max;
    }
    for (auto open = open_phases_.rbegin(); open != open_phases_.rend(); ++open) {
      Phase phase = *open;
      phase.peak_bytes = peak;
      for (size_t i = 0; i < peak.size(); ++i) peak[i] = std::max(peak[i], open->enclosing_peak[i]);
      phases.push_back(std::move(phase));
    }
  }
  std::stable_sort(phases.begin(), phases.end(), [](const Phase& a, const Phase& b) {
    return std::tie(a.start, a.depth) < std::tie(b.start, b.depth);
  });
  json result = json::array();
  for (const Phase& phase : phases) {
    const size_t host = channels_.size() - 1;
    json attributes = json::object();
    for (const auto& [key, value] : phase.attributes) attributes[key] = value;
    json entry = {
        {"name", phase.name},
        {"depth", phase.depth},
        {"start", phase.start},
        {"end", phase.end < 0 ? now : phase.end},
        {"attributes", attributes},
        {"start_device_bytes", std::vector<int64_t>(phase.start_bytes.begin(), phase.start_bytes.end() - 1)},
        {"peak_device_bytes", std::vector<int64_t>(phase.peak_bytes.begin(), phase.peak_bytes.end() - 1)},
        {"start_host_rss", phase.start_bytes[host]},
        {"peak_host_rss", phase.peak_bytes[host]}};
    if (phase.end < 0) entry["open"] = true;
    result.push_back(std::move(entry));
  }
  return result;
}

json Profiler::to_json() const {
  const double duration = now_s();
  json profile;
  profile["duration_s"] = duration;
  json summary = {{"duration_s", duration}};

  json devices = json::array();
  json peaks = json::array();
  for (size_t i = 0; i < devices_.size(); ++i) {
    devices.push_back({{"name", devices_[i].str()}, {"allocator", watches_[i].allocator->name()}});
    json points = json::array();
    int64_t peak = 0;
    {
      std::lock_guard lock(channels_[i]->mutex);
      for (const AllocationPoint& point : channels_[i]->points) {
        const double t = static_cast<double>(point.bucket * kBucketNanoseconds) * 1e-9;
        points.push_back({t, point.max_bytes, point.last_bytes});
        peak = std::max(peak, point.max_bytes);
      }
    }
    peaks.push_back(std::move(points));
    summary["peak_allocated"].push_back(peak);
  }
  profile["devices"] = std::move(devices);

  std::vector<int64_t> peak_used(devices_.size(), -1);
  int64_t peak_rss = 0;
  json samples = json::array();
  {
    std::lock_guard lock(samples_mutex_);
    for (const Sample& sample : samples_) {
      json entry = {{"t", sample.t}, {"host_rss", sample.host_rss}, {"devices", json::array()}};
      for (size_t i = 0; i < sample.devices.size(); ++i) {
        const DeviceSample& device = sample.devices[i];
        json device_entry = {{"allocated", device.allocated}};
        if (device.free_bytes >= 0) {
          device_entry["free"] = device.free_bytes;
          device_entry["total"] = device.total_bytes;
          peak_used[i] = std::max(peak_used[i], device.total_bytes - device.free_bytes);
        }
        entry["devices"].push_back(std::move(device_entry));
      }
      peak_rss = std::max(peak_rss, sample.host_rss);
      samples.push_back(std::move(entry));
    }
  }
  profile["samples"] = std::move(samples);
  profile["allocation_peaks"] = {{"bucket_s", static_cast<double>(kBucketNanoseconds) * 1e-9},
                                 {"devices", std::move(peaks)}};
  for (int64_t used : peak_used) summary["peak_used"].push_back(used < 0 ? json() : json(used));
  summary["peak_host_rss"] = peak_rss;

  profile["phases"] = phases_json();
  json events = json::array();
  {
    std::lock_guard lock(phases_mutex_);
    for (const Event& event : events_) events.push_back({{"name", event.name}, {"t", event.t}});
  }
  profile["events"] = std::move(events);
  json intervals = json::array();
  {
    auto add = [&intervals](const Interval& interval) {
      intervals.push_back({{"lane", interval.lane},
                           {"name", interval.name},
                           {"start", interval.start},
                           {"end", interval.end}});
    };
    std::lock_guard lock(intervals_mutex_);
    for (const Interval& interval : intervals_) add(interval);
    for (const PendingInterval& pending : pending_) {
      if (std::optional<Interval> interval = resolve(pending)) add(*interval);
    }
  }
  const std::vector<Span1D> copy = lane_spans(intervals, "copy");
  const std::vector<Span1D> compute = lane_spans(intervals, "compute");
  summary["copy_s"] = total_length(copy);
  summary["compute_s"] = total_length(compute);
  summary["copy_compute_overlap"] =
      copy.empty() ? json() : json(overlap_length(copy, compute) / std::max(total_length(copy), 1e-12));
  profile["intervals"] = std::move(intervals);
  profile["summary"] = std::move(summary);
  return profile;
}

std::vector<std::string> Profiler::summary_lines() const {
  return summary_from_json(to_json());
}

void Profiler::write_files(const std::filesystem::path& json_path) const {
  const json profile = to_json();
  const std::string json_text = profile.dump() + "\n";
  const std::string svg_text = render_profile_svg(profile);
  AtomicFile json_file(json_path);
  AtomicFile svg_file(std::filesystem::path(json_path).replace_extension(".svg"));
  json_file.append(json_text.data(), json_text.size());
  svg_file.append(svg_text.data(), svg_text.size());
  json_file.commit();
  try {
    svg_file.commit();
  } catch (const Error&) {
    std::error_code ignored;
    std::filesystem::remove(json_path, ignored);
    throw;
  }
}

}  // namespace canvas
