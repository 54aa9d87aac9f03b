#include "cli/job_command.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <sstream>

#include "app/lora_records.h"
#include "app/prepared_job.h"
#include "app/sampling_presets.h"
#include "app/seed_option.h"
#include "backend/backend.h"
#include "cli/cancellation_signals.h"
#include "cli/job_inputs.h"
#include "cli/lora_job.h"
#include "cli/progress_bar.h"
#include "io/npy.h"
#include "io/png_image.h"
#include "memory/host_memory.h"
#include "pipeline/recovery.h"
#include "pipeline/text_to_image.h"
#include "profile/profiler.h"
#include "util/format.h"

#ifdef CANVAS_HAS_CUDA
#include "backend/cuda/cuda_backend.h"
#endif

namespace canvas::cli {

namespace {

// A batch makes at most this many images: more is a script's loop, not one command.
constexpr int kMaxBatchCount = 100;

// The files one image of a batch writes.
struct ImageFiles {
  std::filesystem::path output;
  std::optional<std::filesystem::path> profile;
  std::optional<std::filesystem::path> latents;
};

// The files of image `index` of a batch of `count`: the given names, or with "-N" (1-based) before the
// extension when the batch has several images.
ImageFiles batch_files(const ImageFiles& given, int index, int count) {
  if (count == 1) return given;
  auto numbered = [&](const std::filesystem::path& path) {
    std::filesystem::path name = path;
    name.replace_filename(path.stem().string() + "-" + std::to_string(index + 1) + path.extension().string());
    return name;
  };
  ImageFiles files{numbered(given.output), std::nullopt, std::nullopt};
  if (given.profile) files.profile = numbered(*given.profile);
  if (given.latents) files.latents = numbered(*given.latents);
  return files;
}

// A non-negative index after `prefix`, or nullopt.
std::optional<int> device_index(const std::string& name, const std::string& prefix) {
  if (name.rfind(prefix, 0) != 0) return std::nullopt;
  const std::string digits = name.substr(prefix.size());
  if (digits.empty() || digits.size() > 4 || digits.find_first_not_of("0123456789") != std::string::npos)
    return std::nullopt;
  return std::stoi(digits);
}

// --devices: CUDA indices ("0,1"), or device names; cpu:N names simulated pools (host memory with a budget
// of its own) for trying multi-device plans without GPUs.
std::vector<Device> parse_device_list(const std::string& list) {
  check(!list.empty() && list.back() != ',' && list.front() != ',',
        "--devices needs a comma-separated list, e.g. 0,1; got '" + list + "'");
  std::vector<Device> devices;
  std::stringstream stream(list);
  std::string entry;
  while (std::getline(stream, entry, ',')) {
    if (std::optional<int> index = device_index(entry, "")) {
      devices.push_back(Device::cuda(*index));
    } else if (std::optional<int> host = device_index(entry, "cpu:")) {
      devices.push_back({DeviceType::CPU, *host});
    } else {
      devices.push_back(parse_device(entry));
    }
    check(std::count(devices.begin(), devices.end(), devices.back()) == 1,
          "--devices names " + devices.back().str() + " twice");
    check(devices.back().type == devices.front().type, "--devices mixes " + devices.front().str() + " and " +
                                                           devices.back().str() +
                                                           ": name devices of one kind");
  }
  return devices;
}

// --device names the device that holds the latents, which --devices names first; both given must agree.
std::vector<Device> job_devices(const JobOptions& options) {
  if (!options.devices) return {parse_device(options.device.value_or("cpu"))};
  std::vector<Device> devices = parse_device_list(*options.devices);
  if (options.device) {
    const Device named = parse_device(*options.device);
    check(named == devices.front(), "--device " + *options.device + " and --devices " + *options.devices +
                                        " disagree: the first of --devices holds the latents; give it "
                                        "alone, or --device " +
                                        devices.front().str());
  }
  return devices;
}

// Each device keeps a scratch reserve outside the plan (its backend's workspaces): a --vram-budget must leave
// room beyond it.
void check_budget_leaves_room(const std::optional<int64_t>& budget, const std::vector<Device>& devices) {
  if (!budget) return;
  for (const Device& device : devices) {
    const int64_t scratch = backend_for(device).scratch_reserve_bytes();
    check(*budget > scratch, "--vram-budget " + format_bytes(*budget) + " leaves nothing for the job on " +
                                 device.str() + ": " + format_bytes(scratch) +
                                 " of it is reserved for the backend's scratch; give more than that");
  }
}

// The plan's budget line gives what is left to plan with; this says where the rest of a --vram-budget went.
std::string budget_split_line(int64_t budget, Device device) {
  return "  --vram-budget " + format_bytes(budget) + " requested per device, " +
         format_bytes(backend_for(device).scratch_reserve_bytes()) + " reserved for scratch on " +
         device.str();
}

// The image first, then the profile: a profile that cannot be written must not cost the image.
std::optional<std::string> write_profile_files(const Profiler& profiler, const std::filesystem::path& path) {
  try {
    profiler.write_files(path);
  } catch (const Error& error) {
    return error.what();
  }
  return std::nullopt;
}

}  // namespace

Device parse_device(const std::string& name) {
  if (name == "cpu") return Device::cpu();
  if (name == "cuda") return Device::cuda(0);
  if (std::optional<int> index = device_index(name, "cuda:")) return Device::cuda(*index);
  throw Error("unknown device '" + name + "': use cpu, cuda or cuda:N");
}

std::optional<DType> parse_precision(const std::optional<std::string>& name) {
  if (!name) return std::nullopt;
  if (*name == "f32") return DType::F32;
  if (*name == "bf16") return DType::BF16;
  if (*name == "f16") return DType::F16;
  throw Error("unknown precision '" + *name + "': use f32, bf16 or f16");
}

std::optional<int64_t> budget_bytes(const std::optional<double>& gib, const char* option) {
  if (!gib) return std::nullopt;
  check(std::isfinite(*gib) && *gib > 0 && *gib < 1e6,
        std::string(option) + " must be a positive number of GiB");
  return static_cast<int64_t>(*gib * 1024.0 * 1024.0 * 1024.0);
}

std::optional<int64_t> pin_budget_bytes(const std::optional<double>& gib) {
  if (gib && *gib == 0) return 0;
  return budget_bytes(gib, "--pin-budget");
}

void prepare_device(Device device) {
  if (device.is_cpu()) return;
#ifdef CANVAS_HAS_CUDA
  int devices = register_cuda_backends();
  check(devices > 0, "no usable CUDA device: " + cuda_unavailable_reason());
  check(device.index < devices,
        "there is no " + device.str() + ": " + std::to_string(devices) + " CUDA device(s) found");
#else
  throw Error("this build has no CUDA backend; rebuild with -DCANVAS_CUDA=ON or use --device cpu");
#endif
}

void add_job_options(CLI::App& command, JobOptions& options, const std::string& negative_prompt_help) {
  command
      .add_option(
          "--model", options.model,
          "Model: a diffusers folder, a Hugging Face cache folder (models--Org--Name) or a snapshot, or "
          "a single-file transformer (.safetensors or ComfyUI-GGUF .gguf) with --text-encoder and --vae")
      ->required();
  command.add_option(
      "--text-encoder", options.text_encoder,
      "With a single-file --model: a diffusers Qwen-Image folder or its text_encoder folder (the "
      "tokenizer and scheduler come from the same diffusers folder)");
  command.add_option("--vae", options.vae,
                     "With a single-file --model: a diffusers Qwen-Image folder or its vae folder");
  command.add_option("--prompt", options.prompt, "What to draw")->required();
  command.add_option("--negative-prompt", options.negative_prompt, negative_prompt_help);
  CLI::Option* cfg_scale =
      command
          .add_option("--cfg-scale", options.cfg_scale, "True classifier-free guidance scale; 1 turns it off")
          ->capture_default_str();
  CLI::Option* steps = command.add_option("--steps", options.steps, "Denoising steps")->capture_default_str();
  command
      .add_option(
          "--lora", options.loras,
          "Apply a LoRA (.safetensors with diffusers, PEFT, kohya, ComfyUI, LyCORIS or lightx2v keys) "
          "at STRENGTH (default 1); repeat for several")
      ->type_name("FILE[:STRENGTH]")
      ->allow_extra_args(false);
  command
      .add_option("--lora-apply", options.lora_apply,
                  "How LoRAs meet the weights: auto folds them into the weights the plan holds whole in "
                  "lossless storage and computes them beside the rest (streamed, quantized or mapped "
                  "weights); runtime always computes them beside the weights")
      ->type_name("auto|runtime")
      ->capture_default_str();
  CLI::Option* scheduler_shift = command.add_option(
      "--scheduler-shift", options.scheduler_shift,
      "Sample with this fixed shift of the schedule instead of the model's own (3 for the Lightning LoRAs)");
  command
      .add_option("--preset", options.preset,
                  "Sample as a distilled LoRA (--lora) was made to, each setting unless given: " +
                      app::sampling_presets_description())
      ->check(CLI::IsMember(app::sampling_preset_names()));
  // The preset fills in what the command line left out, so everything after parsing sees the settings
  // the job runs with.
  command.parse_complete_callback([&options, steps, cfg_scale, scheduler_shift] {
    if (!options.preset) return;
    const app::SamplingPreset& preset = app::sampling_preset(*options.preset);
    if (steps->count() == 0) options.steps = preset.steps;
    if (cfg_scale->count() == 0) options.cfg_scale = preset.cfg_scale;
    if (scheduler_shift->count() == 0) options.scheduler_shift = preset.scheduler_shift;
  });
  command.add_option(
      "--seed", options.seed,
      "Random seed, 0 to 18446744073709551615; -1 (the default) draws a random one, as in A1111, "
      "and records it in the image");
  command.add_option("--device", options.device, "cpu, cuda or cuda:N (default cpu)");
  command.add_option("--devices", options.devices,
                     "Several devices to spread the job over, the first holding the latents: CUDA indices "
                     "(0,1) or names (cuda:0,cuda:1; cpu:0,cpu:1 simulates pools in host memory)");
  command
      .add_option("--parallel", options.parallel,
                  "How to use several --devices: auto, none (the first only), components (each component "
                  "whole on one device), pipeline (the transformer's blocks split across devices), sequence "
                  "(each device a share of the tokens) or cfg (each guidance half on a device of its own)")
      ->capture_default_str();
  command.add_option("--precision", options.precision,
                     "Activation precision: f32, bf16 or f16 (default: f32 on the CPU, bf16 on a GPU)");
  command
      .add_option("--strategy", options.strategy,
                  "How to hold the models in memory: auto, bf16_full, fp8, nf4, model_offload or "
                  "sequential_offload")
      ->capture_default_str();
  command
      .add_option("--quality", options.quality,
                  "The lowest weight precision auto may choose: lossless, fp8 or 4bit")
      ->capture_default_str();
  command.add_option("--vram-budget", options.vram_budget_gib,
                     "GiB of device memory to plan for, on each device (default: what each has free)");
  command.add_option(
      "--pin-budget", options.pin_budget_gib,
      "GiB of the checkpoint's pages that streamed weights may lock in place for direct copies "
      "to the GPU; 0 turns it off (default: what leaves a quarter of the host's memory free)");
  command.add_option("--ram-budget", options.ram_budget_gib,
                     "GiB of host memory to plan for (default: what the host has available)");
  command.add_option("--profile", options.profile,
                     "Write a memory and time profile of the job to this .json file, and its plot beside it "
                     "as .svg");
  command.add_flag("--forget-recoveries", options.forget_recoveries,
                   "Start from the top of the recovery ladder instead of where an earlier job with the "
                   "same settings ran out of memory");
  command.add_option("--save-latents", options.save_latents,
                     "Also write the final packed latents to this .npy file (float32 [1, tokens, 64]: the "
                     "reference pipeline's output_type=\"latent\")");
  command.add_option("--output", options.output, "Where to write the PNG")->required();
  command
      .add_option("--batch-count", options.batch_count,
                  "Images to make one after another with seeds counting up from --seed, the model loaded "
                  "once; with several, each file name gains -1, -2, ... before its extension")
      ->capture_default_str();
}

app::JobSpec job_spec(const JobOptions& options) {
  app::JobSpec spec;
  SamplingSettings& settings = spec.sampling;
  settings.prompt = options.prompt;
  settings.negative_prompt = options.negative_prompt;
  settings.cfg_scale = options.cfg_scale;
  settings.steps = options.steps;
  settings.seed = app::seed_from_option(options.seed);
  for (const std::string& lora : options.loras) settings.loras.push_back(LoraChoice::parse(lora));
  settings.scheduler_shift = options.scheduler_shift;
  spec.preset = options.preset;
  spec.batch_count = options.batch_count;
  spec.strategy = options.strategy;
  spec.quality = options.quality;
  spec.lora_apply = parse_lora_apply(options.lora_apply);
  if (options.preset && settings.loras.empty()) {
    std::fprintf(stderr,
                 "warning: --preset %s is meant for a Lightning LoRA (give it with --lora): without one, %d "
                 "steps of the base model give a rough picture\n",
                 options.preset->c_str(), settings.steps);
  }
  if (options.negative_prompt && options.cfg_scale <= 1.0f) {
    std::fprintf(stderr,
                 "warning: --negative-prompt is ignored: --cfg-scale %.2f turns guidance off (give a "
                 "scale above 1 to steer away from it)\n",
                 options.cfg_scale);
  }
  return spec;
}

int run_job_command(const JobOptions& options, const app::JobSpec& spec) {
  using Clock = std::chrono::steady_clock;
  Clock::time_point start = Clock::now();
  check(options.batch_count >= 1 && options.batch_count <= kMaxBatchCount,
        "--batch-count must be between 1 and " + std::to_string(kMaxBatchCount) + ", got " +
            std::to_string(options.batch_count));
  const std::filesystem::path output(options.output);
  check(output.extension() == ".png" || output.extension() == ".PNG",
        "--output must name a .png file, got '" + options.output + "'");
  std::optional<std::filesystem::path> profile_path;
  if (options.profile) {
    profile_path = *options.profile;
    check(profile_path->extension() == ".json",
          "--profile must name a .json file, got '" + *options.profile + "'");
  }
  // Each is recorded in the image's metadata, which must be valid UTF-8.
  check_utf8(options.prompt, "the prompt");
  if (options.negative_prompt) check_utf8(*options.negative_prompt, "the negative prompt");
  check_utf8(options.model, "the --model path");
  check_utf8(options.text_encoder, "the --text-encoder path");
  check_utf8(options.vae, "the --vae path");

  std::optional<std::filesystem::path> latents_path;
  if (options.save_latents) {
    latents_path = *options.save_latents;
    check(latents_path->extension() == ".npy",
          "--save-latents must name a .npy file, got '" + *options.save_latents + "'");
  }
  std::vector<ImageFiles> files;
  for (int index = 0; index < options.batch_count; ++index) {
    files.push_back(batch_files({output, profile_path, latents_path}, index, options.batch_count));
    check_writable_file(files.back().output, "--output");
    if (files.back().profile) {
      check_writable_file(*files.back().profile, "--profile");
      check_writable_file(std::filesystem::path(*files.back().profile).replace_extension(".svg"),
                          "--profile's plot");
    }
    if (files.back().latents) check_writable_file(*files.back().latents, "--save-latents");
  }
  const std::vector<Device> devices = job_devices(options);
  const Device device = devices.front();
  std::optional<DType> precision = parse_precision(options.precision);
  for (const Device& each : devices) prepare_device(each);
  const std::optional<int64_t> device_budget = budget_bytes(options.vram_budget_gib, "--vram-budget");
  check_budget_leaves_room(device_budget, devices);
  std::unique_ptr<Profiler> profiler = profile_path ? std::make_unique<Profiler>(devices) : nullptr;
  std::optional<Profiler::Span> load_span;
  if (profiler) load_span.emplace(profiler->span("load"));

  MemoryOptions memory = app::job_memory_options(spec);
  memory.plan.parallelism = parse_parallelism(options.parallel);
  memory.extra_devices.assign(devices.begin() + 1, devices.end());
  memory.device_budget_bytes = device_budget;
  memory.host_budget_bytes = budget_bytes(options.ram_budget_gib, "--ram-budget");
  memory.page_lock_budget_bytes = pin_budget_bytes(options.pin_budget_gib);
  QwenImageConfigs configs = read_qwen_image_configs(options.model, {options.text_encoder, options.vae});
  // Check the request before spending time on the weights.
  const app::PreparedJob command = app::prepare_job(spec, configs);
  for (const std::string& note : command.notes) std::fprintf(stderr, "note: %s\n", note.c_str());
  const TextToImageRequest& settings = command.settings;
  check_lora_files(settings.sampling.loras);
  // Read against the model's layers now, so that a file that cannot be applied costs a moment, not a load.
  std::optional<app::LoraRecordsInBackground> lora_records;
  std::optional<std::vector<LoraRecord>> lora_record_list;
  if (!settings.sampling.loras.empty())
    lora_records.emplace(read_loras(settings.sampling.loras, configs.transformer, configs.text_encoder));
  std::fprintf(stderr, "Loading %s\n", options.model.c_str());
  const QwenImageModel model = load_qwen_image(std::move(configs), device, precision);
  double load_s = std::chrono::duration<double>(Clock::now() - start).count();
  load_span.reset();

  const Cancellation& cancellation = cli_cancellation();
  cancellation.throw_if_requested();

  ArrangementCache cache;
  // Image `index` of the batch: the first counts the loading in its time and profile.
  auto run_image = [&](int index) -> int {
    const ImageFiles& image_files = files[static_cast<size_t>(index)];
    const uint64_t seed = settings.sampling.seed + static_cast<uint64_t>(index);
    const Clock::time_point image_start = index == 0 ? start : Clock::now();
    if (index > 0 && profiler) {
      // Profilers chain the allocators' listeners: the last image's must end before the next one starts.
      profiler.reset();
      profiler = std::make_unique<Profiler>(devices);
    }
    ProgressBar progress("Denoising");
    JobObservers observers;
    observers.on_step = [&](int done, int total) { progress.update(done, total); };
    // The job stops at its next phase or step once a first SIGINT or SIGTERM asks it to.
    observers.cancellation = &cancellation;
    observers.on_plan = [&](const MemoryPlan& plan) {
      std::vector<std::string> lines = plan.describe();
      if (device_budget) lines.insert(lines.begin() + 1, budget_split_line(*device_budget, device));
      for (const std::string& line : lines) std::fprintf(stderr, "%s\n", line.c_str());
    };
    observers.on_recovery = [](const std::string& recovery) {
      std::fprintf(stderr, "\nMemory recovery: %s\n", recovery.c_str());
    };
    if (options.forget_recoveries) RecoveryMemory::forget(command.recovery_key(model, memory));
    observers.profiler = profiler.get();
    JobResult result = command.run(model, memory, observers, seed, &cache);
    progress.finish();
    if (result.prompt_truncated_tokens > 0) {
      std::fprintf(stderr, "warning: the prompt was cut to %lld tokens; its last %lld tokens were not used\n",
                   static_cast<long long>(settings.max_sequence_length),
                   static_cast<long long>(result.prompt_truncated_tokens));
    }

    GenerationRecord record;
    record.model = options.model;
    std::string peaks;
    for (const Device& each : devices) {
      record.device += (record.device.empty() ? "" : ",") + each.str();
      record.device_peak_bytes = std::max(record.device_peak_bytes, allocator_for(each).peak());
      peaks += (peaks.empty() ? "" : ", ") + each.str() + " peak " + format_bytes(allocator_for(each).peak());
    }
    record.precision = std::string(dtype_name(model.activation_dtype));
    record.task = command.task;
    record.request = settings;
    record.request.sampling.seed = seed;
    record.inputs = command.inputs;
    // Hashed once, beside the first image; every image of the batch records them.
    if (lora_records && !lora_record_list) lora_record_list = lora_records->get();
    if (lora_record_list) record.loras = *lora_record_list;
    record.lora_apply = memory.lora_apply;
    record.preset = options.preset;
    record.task_settings = command.task_settings;
    record.result = &result;
    record.load_s = index == 0 ? load_s : 0.0;
    record.total_s = std::chrono::duration<double>(Clock::now() - image_start).count();
    record.host_peak_rss_bytes = host_memory_info().process_peak_rss_bytes;
    if (profiler) record.profile_summary = profiler->summary_lines();
    const RgbImage image = app::generated_image(record);
    cancellation.throw_if_requested();
    write_png(image_files.output, image);
    std::optional<std::string> profile_error;
    if (profiler) profile_error = write_profile_files(*profiler, *image_files.profile);

    if (image_files.latents) write_npy(*image_files.latents, result.latents);

    std::string sampling = result.used_cfg ? "" : ", no guidance";
    if (settings.sampling.scheduler_shift) {
      char shift[48];
      std::snprintf(shift, sizeof(shift), ", scheduler shift %g", *settings.sampling.scheduler_shift);
      sampling += shift;
    }
    if (options.preset) sampling += ", preset " + *options.preset;
    std::fprintf(stderr, "Wrote %s (%lldx%lld, seed %llu, %d steps, cfg %.2f%s)\n",
                 image_files.output.c_str(), static_cast<long long>(image.width),
                 static_cast<long long>(image.height), static_cast<unsigned long long>(seed),
                 settings.sampling.steps, settings.sampling.cfg_scale, sampling.c_str());
    if (!settings.sampling.loras.empty())
      std::fprintf(stderr, "%s\n", lora_summary_line(settings.sampling.loras, result).c_str());
    // Every phase the job ran (text-to-image runs no vision or VAE encoding), then the whole command.
    std::string times = "Time: load " + format_seconds(record.load_s);
    for (int phase = 0; phase < kJobPhases; ++phase) {
      const JobPhase each = static_cast<JobPhase>(phase);
      if (each != JobPhase::Plan && result.timings.of(each) == 0.0) continue;
      std::string name(phase_name(each));
      std::replace(name.begin(), name.end(), '_', ' ');
      if (name.starts_with("vae")) name.replace(0, 3, "VAE");
      times += ", " + name + " " + format_seconds(result.timings.of(each));
    }
    std::fprintf(stderr, "%s, total %s\n", times.c_str(), format_seconds(record.total_s).c_str());
    // The plan covers weights and activations; each backend's scratch (GEMM blocks, convolution columns)
    // stays within the reserve taken off the budget, and the measured peak includes it.
    std::fprintf(
        stderr,
        "Memory: %s (planned %s + up to %s of backend scratch), host peak RSS %s + %s of checkpoint pages "
        "locked in place, %s of weights streamed\n",
        peaks.c_str(), format_bytes(result.plan.predicted_peak_bytes).c_str(),
        format_bytes(backend_for(device).scratch_reserve_bytes()).c_str(),
        format_bytes(record.host_peak_rss_bytes).c_str(), format_bytes(result.page_locked_bytes).c_str(),
        format_bytes(result.bytes_streamed).c_str());
    if (profile_error) {
      std::fprintf(stderr, "error: the image was written to %s, but the profile was not: %s\n",
                   image_files.output.c_str(), profile_error->c_str());
      return kProfileNotWrittenExitCode;
    }
    if (profiler) {
      std::fprintf(stderr, "Profile: %s and %s\n", image_files.profile->c_str(),
                   std::filesystem::path(*image_files.profile).replace_extension(".svg").c_str());
      for (const std::string& line : record.profile_summary) std::fprintf(stderr, "  %s\n", line.c_str());
    }
    return 0;
  };
  for (int index = 0; index < options.batch_count; ++index) {
    if (const int code = run_image(index); code != 0) return code;
  }
  return 0;
}

}  // namespace canvas::cli
