// Memory planning for one text-to-image job: gathers the planner's facts (weight bytes from the loaded
// checkpoint, activation peaks from a dry run of this very job on the meta device, the machine's free
// memory and measured speeds), asks for a plan and arranges the weights as it says.
#pragma once

#include <memory>
#include <optional>

#include "planning/planner.h"
#include "models/qwen_image_transformer.h"
#include "pipeline/model_placement.h"
#include "pipeline/recovery.h"

namespace canvas {

struct QwenImageComponents;
class Qwen2_5_VLTextModel;
class QwenImageTransformer2DModel;
class AutoencoderKLQwenImage;
struct TextToImageRequest;

struct MemoryOptions {
  PlanRequest plan;
  std::optional<int64_t> device_budget_bytes;  // replaces the measured free memory of each device
  std::optional<int64_t> host_budget_bytes;    // replaces the measured available host memory
  // Devices beside the components' own that plans may spread over (--devices); all of the same type.
  std::vector<Device> extra_devices;
};

// The weights' arrangement for the current job's shape; kept for the next job when that plans the same.
struct JobMemory {
  // What the plan was made from, for re-evaluating it when a recovery narrows it.
  std::vector<ComponentFacts> facts;
  MachineFacts machine;
  MemoryPlan plan;
  std::string job_key;
  // A sequence-parallel transformer's copies for its further devices (sharing the host weights). Declared
  // before the placements, which point into them and so must go first.
  std::vector<std::unique_ptr<QwenImageTransformer2DModel>> transformer_replicas;
  std::unique_ptr<ComponentPlacement> text_encoder, transformer, vae;

  // The transformer once per device of its placement (the model itself first).
  std::vector<const QwenImageTransformer2DModel*> transformers(const QwenImageComponents& components) const;
  // Every device the plan uses, the primary first.
  std::vector<Device> devices() const;
};

// Each component's weights split the way its executor reads them (blocks, once-read parts, the rest).
ComponentWeights text_encoder_weights(Qwen2_5_VLTextModel& model);
ComponentWeights transformer_weights(QwenImageTransformer2DModel& model);
ComponentWeights vae_weights(AutoencoderKLQwenImage& model);

// The planner's facts for this job. Dry-runs each phase on the meta device, the VAE tiled or not.
std::vector<ComponentFacts> text_to_image_facts(QwenImageComponents& components,
                                                const TextToImageRequest& request, bool vae_tiling = false);
// The free device memory and host memory the plan may use, and the machine's measured speeds.
MachineFacts machine_facts(const QwenImageComponents& components);

// Plans the job and arranges the weights, reusing the previous arrangement when the job has the same
// shape. `degradation` is where the recovery ladder starts the job: the dry runs measure its chunking
// and tiling, and the plan is narrowed to it. Throws canvas::Error when no plan fits (see plan_memory).
JobMemory& prepare_job_memory(QwenImageComponents& components, const TextToImageRequest& request,
                              const Degradation& degradation = {});

// Arranges `component`'s weights as `plan` says, in place of its current arrangement (which must have been
// released), making the transformer's replicas for a sequence-parallel plan.
void arrange_component(QwenImageComponents& components, const std::string& component,
                       const ComponentPlan& plan);

// Hands every device's cached memory back to its driver.
void release_cached_memory(const JobMemory& memory, Device primary);

// Names what a job's recoveries are remembered by: the machine, the model and the job's settings.
std::string recovery_key(const QwenImageComponents& components, const TextToImageRequest& request);

// Stores the transformer's host weights in `precision`, from the loaded checkpoint again. Its
// arrangement must have been released.
void store_transformer_weights(QwenImageComponents& components, WeightPrecision precision);

}  // namespace canvas
