#include "app/job_runner.h"

#include <chrono>

#include "app/latent_preview.h"
#include "app/lora_records.h"
#include "app/prepared_job.h"
#include "io/png_image.h"
#include "memory/allocator.h"
#include "memory/host_memory.h"
#include "util/base64.h"

namespace canvas::app {

namespace {

using Clock = std::chrono::steady_clock;

// One image of a job's batch, as the device left it.
struct ImageRun {
  JobResult result;
  uint64_t seed = 0;
  double total_s = 0;
  double load_s = 0;
  int64_t device_peak_bytes = 0;
  std::vector<std::string> profile_summary;
};

// What the history and the APIs report of a job beyond its settings.
nlohmann::json report_json(const std::vector<ImageRun>& runs, const std::vector<std::string>& notes) {
  nlohmann::json images = nlohmann::json::array();
  for (const ImageRun& run : runs) {
    nlohmann::json phases = nlohmann::json::object();
    for (int phase = 0; phase < kJobPhases; ++phase)
      phases[std::string(phase_name(static_cast<JobPhase>(phase)))] = run.result.timings.seconds[phase];
    images.push_back({{"seed", run.seed},
                      {"load_s", run.load_s},
                      {"total_s", run.total_s},
                      {"phases_s", phases},
                      {"steps_s", run.result.timings.step_s},
                      {"plan", run.result.plan.describe()},
                      {"recoveries", run.result.recoveries},
                      {"bytes_streamed", run.result.bytes_streamed},
                      {"page_locked_bytes", run.result.page_locked_bytes},
                      {"reused_components", run.result.reused_components},
                      {"device_peak_bytes", run.device_peak_bytes},
                      {"lora_layers", run.result.lora_layers},
                      {"lora_layers_merged", run.result.lora_layers_merged}});
  }
  return {{"images", images}, {"notes", notes}};
}

}  // namespace

JobRunner::JobRunner(const ModelRegistry& models, ModelResidency& residency, RunnerSettings settings)
    : models_(models), residency_(residency), settings_(std::move(settings)) {}

std::filesystem::path JobRunner::image_path(const std::string& id, int index) const {
  return settings_.data_dir / "images" / (id + "-" + std::to_string(index) + ".png");
}

std::function<JobOutcome()> JobRunner::operator()(QueuedJob& job) {
  const JobSpec& spec = job.spec();
  const Clock::time_point start = Clock::now();
  const ModelEntry entry = models_.find(spec.model);
  std::shared_ptr<const QwenImageModel> model = residency_.acquire(entry);
  const double load_s = std::chrono::duration<double>(Clock::now() - start).count();
  auto prepared = std::make_shared<PreparedJob>(prepare_job(spec, model->configs));
  for (const std::string& note : prepared->notes) job.emit("note", {{"text", note}});
  std::shared_ptr<LoraRecordsInBackground> lora_records;
  if (!spec.sampling.loras.empty()) {
    lora_records = std::make_shared<LoraRecordsInBackground>(
        read_loras(spec.sampling.loras, model->configs.transformer, model->configs.text_encoder));
  }
  MemoryOptions memory = job_memory_options(spec);
  memory.device_budget_bytes = settings_.device_budget_bytes;
  memory.host_budget_bytes = settings_.host_budget_bytes;
  memory.page_lock_budget_bytes = settings_.page_lock_budget_bytes;

  auto runs = std::make_shared<std::vector<ImageRun>>();
  std::vector<double> step_seconds;
  for (int index = 0; index < spec.batch_count; ++index) {
    const Clock::time_point image_start = index == 0 ? start : Clock::now();
    Clock::time_point step_start = Clock::now();
    JobObservers observers;
    observers.cancellation = &job.cancellation();
    observers.on_plan = [&](const MemoryPlan& plan) {
      residency_.note_plan(plan.describe());
      job.emit("plan", {{"image", index + 1}, {"lines", plan.describe()}});
    };
    observers.on_recovery = [&](const std::string& recovery) {
      residency_.note_recovery(recovery);
      job.emit("recovery", {{"text", recovery}});
    };
    observers.on_step = [&](int done, int total) {
      const Clock::time_point now = Clock::now();
      step_seconds.push_back(std::chrono::duration<double>(now - step_start).count());
      step_start = now;
      double mean = 0;
      for (double seconds : step_seconds) mean += seconds;
      mean /= static_cast<double>(step_seconds.size());
      // The steps left of this image and of the images after it; decoding is not counted.
      const int left = total - done + (spec.batch_count - index - 1) * total;
      job.emit("step", {{"image", index + 1},
                        {"images", spec.batch_count},
                        {"step", done},
                        {"steps", total},
                        {"eta_s", mean * left}});
    };
    if (settings_.preview_every > 0) {
      observers.on_preview = [&](int done, int total, const Tensor& denoised) {
        if (done % settings_.preview_every != 0 && done != total) return;
        job.emit("preview", {{"image", index + 1},
                             {"step", done},
                             {"png_base64", base64_encode(encode_png(latent_preview(denoised)))}});
      };
    }
    ImageRun run;
    run.seed = spec.sampling.seed + static_cast<uint64_t>(index);
    allocator_for(residency_.device()).reset_peak();
    run.result = prepared->run(*model, memory, observers, run.seed, &residency_.arrangements());
    run.device_peak_bytes = allocator_for(residency_.device()).peak();
    run.load_s = index == 0 ? load_s : 0.0;
    run.total_s = std::chrono::duration<double>(Clock::now() - image_start).count();
    runs->push_back(std::move(run));
  }

  // The host's share, once the device is free for the next job: the records, PNGs and files.
  return [this, id = job.id(), spec, entry, model, prepared, lora_records, runs] {
    std::vector<LoraRecord> loras = lora_records ? lora_records->get() : std::vector<LoraRecord>{};
    JobOutcome outcome;
    outcome.parameters = job_spec_json(spec);
    outcome.parameters["model"] = entry.id;
    outcome.report = report_json(*runs, prepared->notes);
    std::filesystem::create_directories(settings_.data_dir / "images");
    for (size_t index = 0; index < runs->size(); ++index) {
      const ImageRun& run = (*runs)[index];
      GenerationRecord record;
      record.task = prepared->task;
      record.model = entry.id;
      record.device = residency_.device().str();
      record.precision = std::string(dtype_name(model->activation_dtype));
      record.request = prepared->settings;
      record.request.sampling.seed = run.seed;
      record.inputs = prepared->inputs;
      record.loras = loras;
      record.lora_apply = spec.lora_apply;
      record.preset = spec.preset;
      record.task_settings = prepared->task_settings;
      record.result = &run.result;
      record.load_s = run.load_s;
      record.total_s = run.total_s;
      record.device_peak_bytes = run.device_peak_bytes;
      record.host_peak_rss_bytes = host_memory_info().process_peak_rss_bytes;
      const RgbImage image = generated_image(record);
      const std::filesystem::path path = image_path(id, static_cast<int>(index));
      write_png(path, image);
      outcome.images.push_back(
          {path, "/v1/jobs/" + id + "/images/" + std::to_string(index), run.seed, image.width, image.height});
    }
    return outcome;
  };
}

}  // namespace canvas::app
