// One request's run of a pipeline, apart from the loaded model it reads: the job's options and geometry,
// the weights' arrangement, the recovery ladder, its timings and what watches it. A pipeline is a list of
// phases (pipeline/qwen_image_phases.h) that Job::run runs in order, each timed, marked on the profiler and
// preceded by a look at the cancellation; within a phase, each unit of work is an attempt under the
// recovery ladder.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "pipeline/job_geometry.h"
#include "pipeline/memory_options.h"
#include "pipeline/recovery_ladder.h"
#include "profile/profiler.h"
#include "tensor/tensor.h"
#include "util/cancellation.h"

namespace canvas {

// Called after each denoising step with the number of steps done and the total.
using StepCallback = std::function<void(int done, int total)>;
// Called after each denoising step, after the StepCallback, with the step's estimate of the clean latents
// (flow matching's x0 = x_t - sigma_t * v, v the guided prediction): [1, z_dim, h, w] f32 on the host, in
// the model's normalized latent space, over the job's latent grid. For live previews (app/latent_preview.h);
// the estimate is only made when this is set, and never changes the latents.
using PreviewCallback = std::function<void(int done, int total, const Tensor& denoised)>;
// Called once the job's memory plan is made, before any work on the device.
using PlanCallback = std::function<void(const MemoryPlan& plan)>;

// What a caller watches and steers a job with; every member may be left empty.
struct JobObservers {
  StepCallback on_step;
  PreviewCallback on_preview;
  PlanCallback on_plan;
  std::function<void(const std::string& recovery)> on_recovery;
  Profiler* profiler = nullptr;  // marks the job's phases and steps
  // Looked at before each phase and each step: once requested, the job stops there with CancelledError.
  const Cancellation* cancellation = nullptr;
};

struct PhaseTimings {
  double seconds[kJobPhases] = {};  // by JobPhase; the plan phase includes the dry runs and arranging
  std::vector<double> step_s;

  double of(JobPhase phase) const { return seconds[static_cast<int>(phase)]; }
};

// What a finished job hands back.
struct JobResult {
  Tensor image;    // [H, W, 3] f32 in [0, 1]: the reference's output_type="np"
  Tensor latents;  // packed latents after the last step: the reference's output_type="latent"
  bool used_cfg = false;
  std::string negative_prompt;          // what the unconditional pass encoded, when used_cfg
  int64_t prompt_truncated_tokens = 0;  // cut past max_sequence_length, as the reference cuts them
  PhaseTimings timings;
  MemoryPlan plan;                      // how the job held its weights, after any recovery
  std::vector<std::string> recoveries;  // each allocation failure recovered from, and the rung taken
  int64_t bytes_streamed = 0;           // transformer weights copied to the device during the job
  int64_t page_locked_bytes = 0;        // of the transformer's streamed weights, locked in place by the end
  // Linear layers the job's LoRAs change, and how many of them had the LoRAs folded into their weights
  // (the rest computed them beside the weights).
  int lora_layers = 0;
  int lora_layers_merged = 0;
  // The components whose weights an earlier job left arranged as this one planned them (taken over with
  // its arrangement, or one by one): none was placed again.
  std::vector<std::string> reused_components;
};

// One entry of a pipeline's list: the phase and the work that runs it.
struct JobPhaseStep {
  JobPhase phase;
  std::function<void()> run;
};

// Names what a job's recoveries are remembered by: the machine, the model and the job's settings.
std::string recovery_key(const QwenImageModel& model, const JobGeometry& geometry, const std::string& prompt,
                         const MemoryOptions& options);

class Job {
 public:
  // `prompt` is the one the planner's dry run encodes (its length shapes the text tokens); `loras` change
  // the weights the job computes with. A `cache` offers the arrangement an earlier job kept, and takes this
  // job's when it completes.
  Job(const QwenImageModel& model, JobGeometry geometry, std::string prompt, std::vector<AppliedLora> loras,
      MemoryOptions options, JobObservers observers, ArrangementCache* cache = nullptr);
  ~Job();
  Job(const Job&) = delete;
  Job& operator=(const Job&) = delete;

  const QwenImageModel& model() const { return model_; }
  const JobGeometry& geometry() const { return geometry_; }
  const JobObservers& observers() const { return observers_; }
  // The weights' arrangement; from the plan phase on. A recovery can replace its placements: look each up
  // again after an attempt rather than keeping it.
  WeightArrangement& weights();

  // Runs the phases in order, then completes the job (see complete()).
  void run(const std::vector<JobPhaseStep>& phases);
  // The plan phase's work: plans the job's memory and arranges the weights, or takes over the cache's
  // arrangement when it was made for the same job shape and options.
  void arrange_weights();
  // Runs `attempt` under the recovery ladder within the current phase (`where` names it in messages).
  void attempt(const std::string& where, const std::function<void()>& attempt);
  // Stops with CancelledError when cancellation was requested.
  void check_cancelled() const;
  // Where the recovery ladder stands (the dry runs and arrangements follow it).
  const Degradation& degradation() const { return ladder_.degradation(); }

  const PhaseTimings& timings() const { return timings_; }
  PhaseTimings& timings() { return timings_; }
  const std::vector<std::string>& recoveries() const { return ladder_.recoveries(); }
  // Once the job has run: the plan its weights followed, after any recovery, and the weight bytes streamed
  // to the device.
  const MemoryPlan& plan() const { return final_plan_; }
  int64_t bytes_streamed() const { return bytes_streamed_; }
  // Once the job has run: fills in what every pipeline's result reports about it (guidance, timings, plan,
  // recoveries, bytes streamed).
  void report(JobResult& result) const;

 private:
  // Keeps the final plan and figures, remembers the rungs taken and hands the arrangement to the cache.
  void complete();

  const QwenImageModel& model_;
  JobGeometry geometry_;
  std::string prompt_;
  std::vector<AppliedLora> loras_;
  MemoryOptions options_;
  JobObservers observers_;
  ArrangementCache* cache_;
  std::unique_ptr<WeightArrangement> arrangement_;
  RecoveryLadder ladder_;
  JobPhase phase_ = JobPhase::Plan;
  PhaseTimings timings_;
  std::vector<std::unique_ptr<BudgetScope>> budgets_;
  MemoryPlan final_plan_;
  int64_t bytes_streamed_ = 0;
  int64_t page_locked_bytes_ = 0;
  int lora_layers_ = 0;
  int lora_layers_merged_ = 0;
  std::vector<std::string> reused_components_;
};

}  // namespace canvas
