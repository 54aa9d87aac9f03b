#include "pipeline/recovery_ladder.h"

#include <algorithm>
#include <chrono>
#include <cstdio>

#include "backend/backend.h"
#include "profile/profiler.h"
#include "util/format.h"

namespace canvas {

namespace {

// Token chunks below this cost more in launches than they save in memory.
constexpr int64_t kSmallestChunk = 64;
// Plain retries of one attempt past its last rung, while the devices have room for what failed.
constexpr int kRetriesWithRoom = 2;

std::string blocks_line(const ComponentPlan& plan, const char* unit) {
  return component_label(plan.component) + ": " + std::to_string(plan.resident_blocks) + " " + unit +
         " on the device, " + std::to_string(plan.streamed_blocks) + " streamed";
}

// What a phase is called in a recovery message.
const char* phase_description(JobPhase phase) {
  switch (phase) {
    case JobPhase::Plan:
      return "planning";
    case JobPhase::VisionEncode:
      return "vision encoding";
    case JobPhase::TextEncode:
      return "text encoding";
    case JobPhase::VaeEncode:
      return "VAE encoding";
    case JobPhase::Denoise:
      return "denoising";
    case JobPhase::VaeDecode:
      return "VAE decoding";
  }
  return "job";
}

// The component whose placement a phase runs on.
std::optional<Component> component_of(JobPhase phase) {
  switch (phase) {
    case JobPhase::Plan:
      return std::nullopt;
    case JobPhase::VisionEncode:
      return Component::VisionEncoder;
    case JobPhase::TextEncode:
      return Component::TextEncoder;
    case JobPhase::Denoise:
      return Component::Transformer;
    case JobPhase::VaeEncode:
    case JobPhase::VaeDecode:
      return Component::Vae;
  }
  return std::nullopt;
}

}  // namespace

std::string_view phase_name(JobPhase phase) {
  switch (phase) {
    case JobPhase::Plan:
      return "plan";
    case JobPhase::VisionEncode:
      return "vision_encode";
    case JobPhase::TextEncode:
      return "text_encode";
    case JobPhase::VaeEncode:
      return "vae_encode";
    case JobPhase::Denoise:
      return "denoise";
    case JobPhase::VaeDecode:
      return "vae_decode";
  }
  return "job";
}

RecoveryLadder::RecoveryLadder(std::unique_ptr<WeightArrangement>& arrangement, Device device,
                               std::string memory_key, int64_t image_tokens,
                               std::function<void(const std::string&)> on_recovery, Profiler* profiler)
    : arrangement_(arrangement),
      device_(device),
      memory_key_(std::move(memory_key)),
      image_tokens_(image_tokens),
      on_recovery_(std::move(on_recovery)),
      profiler_(profiler) {
  if (std::optional<Degradation> remembered = RecoveryMemory::recall(memory_key_)) {
    degradation_ = remembered_ = *remembered;
    std::string line = "starting where an earlier job with these settings recovered:";
    for (const std::string& rung : remembered_.describe()) line += " [" + rung + "]";
    recoveries_.push_back(line);
    if (on_recovery_) on_recovery_(line);
  }
}

void RecoveryLadder::run(JobPhase phase, const std::string& where, const std::function<void()>& attempt) {
  using Clock = std::chrono::steady_clock;
  bool released = false;
  int retries_with_room = 0;
  for (;;) {
    const Clock::time_point attempt_start = Clock::now();
    try {
      attempt();
      return;
    } catch (const OutOfMemoryError& error) {
      const Clock::time_point failed_at = Clock::now();
      injected_failure_ |= error.injected();
      std::string rung;
      // Whether the retry keeps the plan (a release or a plain retry) rather than taking a rung.
      bool kept_plan = !released;
      if (kept_plan) {
        released = true;
        rung = "released cached memory";
        if (const int64_t parked = release_parked_ ? release_parked_() : 0; parked > 0)
          rung += " and " + format_bytes(parked) + " of weights parked for later jobs";
      } else {
        rung = lower(phase);
        // With no rung left, a failure while the devices have room for the request (a transient one, or
        // fragmentation) is worth a few plain retries: the CPU has no rungs below its mapped weights.
        if (rung.empty() && retries_with_room < kRetriesWithRoom && has_room_for(error.requested_bytes())) {
          ++retries_with_room;
          kept_plan = true;
          rung = "retried: the device has room for it";
        }
        if (rung.empty()) {
          const int64_t needed = error.in_use_bytes() + error.requested_bytes();
          throw OutOfMemoryError(
              std::string(phase_description(phase)) + " (" + where +
                  ") does not fit even on the lowest rung of the recovery ladder: it needed at least " +
                  format_bytes(needed) +
                  (error.limit_bytes() >= 0 ? " with " + format_bytes(error.limit_bytes()) + " available"
                                            : std::string()) +
                  " (" + error.what() + ")",
              error.requested_bytes(), error.in_use_bytes(), error.limit_bytes());
        }
      }
      // A failure can leave the phase's streams part way round their rings: a rung that kept the plan
      // still rebuilds the arrangement.
      if (const std::optional<Component> component = component_of(phase);
          component && kept_plan && arrangement_)
        rearrange(arrangement_->plan().component(*component));
      if (arrangement_) {
        arrangement_->release_cached_memory();
      } else {
        backend_for(device_).release_cached_memory();
      }
      // What the failure cost: the attempt's work lost, and rearranging the weights for the retry.
      char cost[96];
      std::snprintf(cost, sizeof(cost), " (%.2f s lost, %.2f s to rearrange)",
                    std::chrono::duration<double>(failed_at - attempt_start).count(),
                    std::chrono::duration<double>(Clock::now() - failed_at).count());
      recoveries_.push_back(where + ": " + error.what() + " -> " + rung + cost);
      if (profiler_) profiler_->event("recovery: " + recoveries_.back());
      if (on_recovery_) on_recovery_(recoveries_.back());
    }
  }
}

std::string RecoveryLadder::lower(JobPhase phase) {
  if (!arrangement_) return {};
  switch (phase) {
    case JobPhase::Plan:
      return {};
    case JobPhase::VisionEncode:
      return lower_encoder(Component::VisionEncoder, degradation_.vision_encoder_resident_blocks);
    case JobPhase::TextEncode:
      return lower_encoder(Component::TextEncoder, degradation_.text_encoder_resident_blocks);
    case JobPhase::Denoise:
      return lower_transformer();
    case JobPhase::VaeEncode:
    case JobPhase::VaeDecode:
      return lower_vae(phase);
  }
  return {};
}

void RecoveryLadder::rearrange(const ComponentPlan& part) {
  const ComponentPlan arranged = part;  // `part` may be the plan's own entry, which the release keeps
  bytes_streamed_by_replaced_ += arrangement_->release(arranged.component);
  arrangement_->arrange(arranged);
}

int64_t RecoveryLadder::free_bytes(Device device) {
  Backend& backend = backend_for(device);
  const Allocator& allocator = allocator_for(device);
  int64_t free = backend.memory_info().free_bytes - backend.scratch_reserve_bytes();
  if (std::optional<int64_t> budget = allocator.budget()) free = std::min(free, *budget - allocator.in_use());
  return free;
}

bool RecoveryLadder::has_room_for(int64_t bytes) {
  const std::vector<Device> devices = arrangement_ ? arrangement_->devices() : std::vector<Device>{device_};
  return std::all_of(devices.begin(), devices.end(),
                     [&](Device device) { return free_bytes(device) >= 2 * std::max<int64_t>(bytes, 1); });
}

int RecoveryLadder::resident_blocks_that_fit(Component component) {
  bytes_streamed_by_replaced_ += arrangement_->release(component);
  const WeightArrangement& arrangement = *arrangement_;
  MemoryPlan trial = arrangement.plan();
  for (int resident = trial.component(component).resident_blocks - 1; resident > 0; --resident) {
    ComponentPlan& part = trial.component(component);
    const int blocks = part.resident_blocks + part.streamed_blocks;
    part.residency = Residency::Offloaded;
    part.resident_blocks = resident;
    part.streamed_blocks = blocks - resident;
    const MemoryPlan evaluated = evaluate_plan(arrangement.facts(), arrangement.machine(), trial);
    bool fits = true;
    for (const DeviceShare& share : evaluated.component(component).shares)
      fits &= share.phase_peak_bytes <= free_bytes(share.device);  // with the placement gone
    if (fits) return resident;
  }
  return 0;
}

std::string RecoveryLadder::lower_encoder(Component encoder, std::optional<int>& resident_blocks) {
  const ComponentPlan& plan = arrangement_->plan().component(encoder);
  if (plan.residency == Residency::Mapped || plan.resident_blocks == 0) return {};
  resident_blocks = resident_blocks_that_fit(encoder);
  MemoryPlan narrowed = arrangement_->plan();
  apply_degradation(degradation_, narrowed);
  rearrange(narrowed.component(encoder));
  return blocks_line(narrowed.component(encoder), encoder == Component::TextEncoder ? "layers" : "blocks");
}

std::string RecoveryLadder::lower_transformer() {
  MemoryPlan narrowed = arrangement_->plan();
  const ComponentPlan plan = narrowed.component(Component::Transformer);
  std::string taken;
  if (plan.residency != Residency::Mapped && plan.resident_blocks > 0) {
    degradation_.transformer_resident_blocks = resident_blocks_that_fit(Component::Transformer);
    apply_degradation(degradation_, narrowed);
    taken = blocks_line(narrowed.component(Component::Transformer), "blocks");
  } else if (const int64_t chunk = degradation_.feed_forward_chunk == 0
                                       ? std::max(kSmallestChunk, image_tokens_ / 4)
                                       : degradation_.feed_forward_chunk / 4;
             chunk >= kSmallestChunk && chunk < image_tokens_ &&
             (degradation_.feed_forward_chunk == 0 || chunk < degradation_.feed_forward_chunk)) {
    degradation_.feed_forward_chunk = chunk;
    arrangement_->set_feed_forward_chunk(chunk);
    taken = "transformer: feed-forward in chunks of " + std::to_string(chunk) + " tokens";
  } else {
    const Quality quality = arrangement_->plan().quality;
    WeightPrecision next = plan.precision;
    if (plan.precision == WeightPrecision::Lossless && quality != Quality::Lossless) {
      next = WeightPrecision::Fp8;
    } else if (plan.precision == WeightPrecision::Fp8 && quality == Quality::FourBit) {
      next = WeightPrecision::Nf4;
    }
    if (next == plan.precision) return {};
    degradation_.transformer_precision = next;
    apply_degradation(degradation_, narrowed);
    // The placement points into the host weights it replaces: it goes first.
    bytes_streamed_by_replaced_ += arrangement_->release(Component::Transformer);
    arrangement_->store_transformer_weights(next);
    taken = "transformer: " + std::string(precision_name(next)) + " weights";
  }
  rearrange(narrowed.component(Component::Transformer));
  return taken;
}

std::string RecoveryLadder::lower_vae(JobPhase phase) {
  // Tiling is lossy (tiles blend over their overlaps), so it is given up per phase: an encode that
  // failed leaves the decode whole until that fails too.
  bool& tiling =
      phase == JobPhase::VaeEncode ? degradation_.vae_encode_tiling : degradation_.vae_decode_tiling;
  if (!tiling) {
    tiling = true;
    rearrange(arrangement_->plan().component(Component::Vae));
    return phase == JobPhase::VaeEncode ? "vae: tiled encode" : "vae: tiled decode";
  }
  if (degradation_.vae_on_cpu || device_.is_cpu()) return {};
  degradation_.vae_on_cpu = true;
  MemoryPlan narrowed = arrangement_->plan();
  apply_degradation(degradation_, narrowed);
  rearrange(narrowed.component(Component::Vae));
  return "vae: runs on the CPU";
}

void RecoveryLadder::remember() const {
  if (injected_failure_ || degradation_ == remembered_) return;
  RecoveryMemory::remember(memory_key_, degradation_);
}

}  // namespace canvas
