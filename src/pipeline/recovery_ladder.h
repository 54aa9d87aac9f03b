// Runs a job's phases under the recovery ladder (pipeline/recovery.h): each attempt that runs out of
// memory is retried after releasing cached memory, then one rung lower, until a rung fits or none is
// left. The weights' arrangement (QwenImageComponents::memory) is rebuilt for each retry, since a
// failure can leave a stream part way round its ring.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "pipeline/recovery.h"

namespace canvas {

struct QwenImageComponents;
class ComponentPlacement;
class Profiler;

enum class JobPhase { Plan, TextEncode, Denoise, VaeDecode };

class RecoveryLadder {
 public:
  // `memory_key` names the job's settings (see recovery_key); what an earlier job with them needed is
  // where this one starts. `image_tokens` sizes the token chunks. Each recovery is also an event on
  // `profiler`'s timeline, when there is one.
  RecoveryLadder(QwenImageComponents& components, std::string memory_key, int64_t image_tokens,
                 std::function<void(const std::string&)> on_recovery, Profiler* profiler = nullptr);

  // Runs `attempt` until it completes. Throws OutOfMemoryError naming what `where` needed once the
  // phase has no rung left; any other error passes through at once.
  void run(JobPhase phase, const std::string& where, const std::function<void()>& attempt);

  const Degradation& degradation() const { return degradation_; }
  // Each failure recovered from and what was done, in order; a remembered start comes first.
  const std::vector<std::string>& recoveries() const { return recoveries_; }
  // Weight bytes streamed by arrangements the ladder replaced.
  int64_t bytes_streamed_by_replaced() const { return bytes_streamed_by_replaced_; }
  // Remembers the rungs taken for the next job with the same settings.
  void remember() const;

 private:
  // Takes `phase`'s next rung; a description of it, or empty when none is left.
  std::string lower(JobPhase phase);
  std::unique_ptr<ComponentPlacement>& placement_of(const std::string& component);
  // Drops a component's arrangement and gives its memory back to the devices.
  void release(const std::string& component);
  void release_cached_memory();
  // Replaces a component's arrangement with one for `plan` (the old one's memory going back first).
  void rearrange(const std::string& component, ComponentPlan plan);
  // The most of a component's blocks (fewer than now) that the device's free memory holds beside its
  // activations, with its arrangement released; 0 when even one does not fit.
  int resident_blocks_that_fit(const std::string& component);
  std::string lower_text_encoder();
  std::string lower_transformer();
  std::string lower_vae();

  QwenImageComponents& components_;
  std::string memory_key_;
  int64_t image_tokens_;
  std::function<void(const std::string&)> on_recovery_;
  Profiler* profiler_;
  Degradation degradation_;
  Degradation remembered_;
  std::vector<std::string> recoveries_;
  int64_t bytes_streamed_by_replaced_ = 0;
};

}  // namespace canvas
