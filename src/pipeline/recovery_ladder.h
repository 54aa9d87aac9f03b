// Runs a job's attempts under the recovery ladder (pipeline/recovery.h): each attempt that runs out of
// memory is retried after releasing cached memory, then one rung lower, until a rung fits or none is
// left. The component's placement is rebuilt for each retry, since a failure can leave a stream part way
// round its ring.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "pipeline/recovery.h"
#include "pipeline/weight_arrangement.h"

namespace canvas {

class Profiler;

// In the order a job runs them; a text-to-image job skips the vision and VAE encoding.
enum class JobPhase { Plan, VisionEncode, TextEncode, VaeEncode, Denoise, VaeDecode };
inline constexpr int kJobPhases = 6;
// "plan", "vision_encode", "text_encode", "vae_encode", "denoise", "vae_decode": the profiler's span names
// and the metadata's keys.
std::string_view phase_name(JobPhase phase);

class RecoveryLadder {
 public:
  // `arrangement` is the job's (absent until planned, replaced by the ladder's rungs). `memory_key` names
  // the job's settings (see recovery_key); what an earlier job with them needed is where this one starts.
  // `image_tokens` sizes the token chunks. Each recovery is also an event on `profiler`'s timeline.
  RecoveryLadder(std::unique_ptr<WeightArrangement>& arrangement, Device device, std::string memory_key,
                 int64_t image_tokens, std::function<void(const std::string&)> on_recovery,
                 Profiler* profiler = nullptr);

  // Runs `attempt` until it completes. Throws OutOfMemoryError naming what `where` needed once the
  // phase has no rung left; any other error passes through at once.
  void run(JobPhase phase, const std::string& where, const std::function<void()>& attempt);
  // What the first rung also frees: weights parked for later jobs (ArrangementCache); returns their bytes.
  void set_release_parked(std::function<int64_t()> release_parked) {
    release_parked_ = std::move(release_parked);
  }

  const Degradation& degradation() const { return degradation_; }
  // Each failure recovered from and what was done, in order; a remembered start comes first.
  const std::vector<std::string>& recoveries() const { return recoveries_; }
  // Weight bytes streamed by placements the ladder replaced.
  int64_t bytes_streamed_by_replaced() const { return bytes_streamed_by_replaced_; }
  // Remembers the rungs taken for the next job with the same settings, unless a failure was injected
  // (CANVAS_FAIL_ALLOC): rungs a test forced must not change later real jobs.
  void remember() const;

 private:
  // Takes `phase`'s next rung; a description of it, or empty when none is left.
  std::string lower(JobPhase phase);
  // Releases a component's placement and arranges it again as `part` says.
  void rearrange(const ComponentPlan& part);
  // What `device` can still give: its free memory less the backend's scratch, within the allocator's budget.
  static int64_t free_bytes(Device device);
  // Whether every device of the job has twice `bytes` free.
  bool has_room_for(int64_t bytes);
  // The most of a component's blocks (fewer than now) that the device's free memory holds beside its
  // activations, with its placement released; 0 when even one does not fit.
  int resident_blocks_that_fit(Component component);
  // Streams more of an encoder's layers (the vision or the text encoder).
  std::string lower_encoder(Component encoder, std::optional<int>& resident_blocks);
  std::string lower_transformer();
  std::string lower_vae(JobPhase phase);

  std::unique_ptr<WeightArrangement>& arrangement_;
  Device device_;
  std::string memory_key_;
  int64_t image_tokens_;
  std::function<void(const std::string&)> on_recovery_;
  std::function<int64_t()> release_parked_;
  Profiler* profiler_;
  Degradation degradation_;
  Degradation remembered_;
  bool injected_failure_ = false;
  std::vector<std::string> recoveries_;
  int64_t bytes_streamed_by_replaced_ = 0;
};

}  // namespace canvas
