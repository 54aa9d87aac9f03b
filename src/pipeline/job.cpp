#include "pipeline/job.h"

#include <chrono>

#include "backend/backend.h"
#include "pipeline/job_facts.h"

namespace canvas {

std::string recovery_key(const QwenImageModel& model, const JobGeometry& geometry, const std::string& prompt,
                         const MemoryOptions& options) {
  return backend_for(model.device).description() + "|" + model.configs.layout.root.string() + "|" +
         std::string(dtype_name(model.activation_dtype)) + "|" + plan_key(geometry, prompt, options);
}

Job::Job(const QwenImageModel& model, JobGeometry geometry, std::string prompt,
         std::vector<AppliedLora> loras, MemoryOptions options, JobObservers observers,
         ArrangementCache* cache)
    : model_(model),
      geometry_(std::move(geometry)),
      prompt_(std::move(prompt)),
      loras_(std::move(loras)),
      options_(std::move(options)),
      observers_(std::move(observers)),
      cache_(cache),
      ladder_(arrangement_, model.device, recovery_key(model_, geometry_, prompt_, options_),
              geometry_.sequence_image_tokens(), observers_.on_recovery, observers_.profiler) {
  // An allocation failure first gives back the weights parked for later jobs.
  if (cache_) {
    ladder_.set_release_parked([cache = cache_] {
      int64_t bytes = 0;
      for (const std::unique_ptr<WeightArrangement>& parked : cache->parked)
        bytes += parked->resident_weight_bytes();
      cache->parked.clear();
      return bytes;
    });
  }
}

// A job that fails part way leaves its weights mid-phase (placed, or a stream part way round its ring): its
// arrangement goes with it instead of to the cache.
Job::~Job() = default;

WeightArrangement& Job::weights() {
  check(arrangement_ != nullptr, "the job's weights are arranged by its plan phase, which has not run");
  return *arrangement_;
}

void Job::run(const std::vector<JobPhaseStep>& phases) {
  using Clock = std::chrono::steady_clock;
  for (const JobPhaseStep& step : phases) {
    check_cancelled();
    phase_ = step.phase;
    Profiler::Span span = observers_.profiler ? observers_.profiler->span(std::string(phase_name(step.phase)))
                                              : Profiler::Span();
    const Clock::time_point start = Clock::now();
    step.run();
    timings_.seconds[static_cast<int>(step.phase)] +=
        std::chrono::duration<double>(Clock::now() - start).count();
  }
  complete();
}

namespace {

// The bytes of weights `device` holds now: between jobs, the previous arrangement's, which a new plan may
// take over or free.
int64_t weight_bytes_held(Device device) {
  int64_t bytes = 0;
  for (const auto& [owner, held] : allocator_for(device).usage_by_owner())
    if (owner.role == MemoryRole::Weights) bytes += held;
  return bytes;
}

}  // namespace

void Job::arrange_weights() {
  attempt("plan", [&] {
    const std::string key = plan_key(geometry_, prompt_, options_) + "/" + degradation().to_json().dump() +
                            "/" + loras_identity(loras_);
    reused_components_.clear();
    std::vector<std::unique_ptr<WeightArrangement>> earlier;
    if (cache_) {
      if (cache_->arrangement && cache_->arrangement->key() == key &&
          &cache_->arrangement->model() == &model_) {
        arrangement_ = std::move(cache_->arrangement);
        for (const ComponentPlan& part : arrangement_->plan().components)
          reused_components_.push_back(component_label(part.component));
        return;
      }
      if (cache_->arrangement) earlier.push_back(std::move(cache_->arrangement));
      for (std::unique_ptr<WeightArrangement>& parked : cache_->parked) earlier.push_back(std::move(parked));
      cache_->parked.clear();
    }
    std::vector<ComponentFacts> facts =
        job_facts(model_, geometry_, prompt_, options_, degradation(), loras_);
    MachineFacts machine = machine_facts(model_, options_);
    if (!earlier.empty()) {
      // What earlier jobs' arrangements hold is the new plan's to use: taken over, parked or freed.
      machine.device_budget += weight_bytes_held(machine.device);
      for (DevicePool& pool : machine.extra_pools) pool.budget += weight_bytes_held(pool.device);
    }
    MemoryPlan plan = plan_memory(facts, machine, options_.plan);
    if (degradation().any()) {
      apply_degradation(degradation(), plan);
      plan = evaluate_plan(facts, machine, plan);
    }
    // Parked weights may use what the plan leaves of the device (one device's plans only).
    const int64_t slack = machine.extra_pools.empty()
                              ? std::max<int64_t>(machine.device_budget - plan.predicted_peak_bytes, 0)
                              : 0;
    arrangement_ = std::make_unique<WeightArrangement>(model_, key, std::move(facts), std::move(machine),
                                                       std::move(plan), degradation().feed_forward_chunk,
                                                       loras_, options_.lora_apply, &earlier, slack);
    for (Component component : arrangement_->adopted())
      reused_components_.push_back(component_label(component));
    if (cache_) cache_->parked = std::move(earlier);
  });
  for (const Device& device : arrangement_->devices()) {
    Allocator& allocator = allocator_for(device);
    budgets_.push_back(std::make_unique<BudgetScope>(allocator, options_.device_budget_bytes));
    // The job's peak, not the planning's or an earlier job's.
    allocator.reset_peak();
  }
  if (observers_.on_plan) observers_.on_plan(arrangement_->plan());
}

void Job::attempt(const std::string& where, const std::function<void()>& attempt) {
  ladder_.run(phase_, where, attempt);
}

void Job::check_cancelled() const {
  if (observers_.cancellation) observers_.cancellation->throw_if_requested();
}

void Job::complete() {
  final_plan_ = arrangement_->plan();
  lora_layers_ = arrangement_->lora_layers();
  lora_layers_merged_ = arrangement_->lora_layers_merged();
  bytes_streamed_ = ladder_.bytes_streamed_by_replaced();
  if (arrangement_->placed(Component::Transformer)) {
    bytes_streamed_ += arrangement_->placement(Component::Transformer).bytes_streamed();
    page_locked_bytes_ = arrangement_->placement(Component::Transformer).page_locked_bytes();
  }
  ladder_.remember();
  if (cache_) cache_->arrangement = std::move(arrangement_);
}

void Job::report(JobResult& result) const {
  result.used_cfg = geometry_.guided;
  result.negative_prompt = geometry_.negative_prompt;
  result.timings = timings_;
  result.plan = final_plan_;
  result.recoveries = recoveries();
  result.bytes_streamed = bytes_streamed_;
  result.page_locked_bytes = page_locked_bytes_;
  result.lora_layers = lora_layers_;
  result.reused_components = reused_components_;
  result.lora_layers_merged = lora_layers_merged_;
}

}  // namespace canvas
