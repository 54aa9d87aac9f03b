// The planner's facts for one job: each component's weight bytes (as placed on the device, and in each
// precision the plan may store), its activation peak measured by a dry run of this very job on the meta
// device, and the machine's free memory and measured speeds.
#pragma once

#include <string>
#include <vector>

#include "models/lora.h"
#include "pipeline/job_geometry.h"
#include "pipeline/memory_options.h"
#include "pipeline/recovery.h"

namespace canvas {

// The facts of each component, in phase order. The dry runs measure the chunking and tiling that
// `degradation` (where the recovery ladder starts the job) asks for. The LoRAs' tensors count as weights of
// the layers they change, as if every one were computed beside its weight (an upper bound: merged ones
// leave the device once folded in).
std::vector<ComponentFacts> job_facts(const QwenImageModel& model, const JobGeometry& geometry,
                                      const std::string& prompt, const MemoryOptions& options,
                                      const Degradation& degradation = {},
                                      const std::vector<AppliedLora>& loras = {});

// The free device memory and host memory the plan may use, and the machine's measured speeds. Sets up a
// sequence-parallel exchange first when the plan may use one, so the free memory leaves what it keeps.
MachineFacts machine_facts(const QwenImageModel& model, const MemoryOptions& options);

// Whether the transformer's tokens can be shared among `devices` devices (sequence parallelism): its heads
// divide among them, and no zero_cond_t, whose reference-image tokens are modulated apart.
bool can_split_tokens(const QwenImageTransformerConfig& config, int devices);

// What a job's plan depends on: its shape (sizes, steps, guidance, prompt lengths) and the memory options.
std::string plan_key(const JobGeometry& geometry, const std::string& prompt, const MemoryOptions& options);

}  // namespace canvas
