#include "pipeline/text_to_image.h"

#include <chrono>
#include <cmath>
#include <memory>

#include "backend/backend.h"
#include "pipeline/flow_match_scheduler.h"
#include "pipeline/latent_packing.h"
#include "pipeline/prompt_encoder.h"
#include "pipeline/recovery_ladder.h"
#include "pipeline/torch_generator.h"
#include "pipeline/transformer_executor.h"

namespace canvas {

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// Largest side the pipeline accepts: 4096 pixels keeps the rotary position tables (4096 entries in the
// reference) and the token count within what the models were built for.
constexpr int64_t kMaxSide = 4096;

// true CFG with the norm rescale: the guided prediction keeps the conditional prediction's norm per token.
Tensor guided_prediction(const Tensor& cond, const Tensor& uncond, float cfg_scale) {
  Tensor combined = ops::add(uncond, ops::scale(ops::sub(cond, uncond), cfg_scale));
  return ops::mul(combined, ops::div(ops::vector_norm(cond), ops::vector_norm(combined)));
}

}  // namespace

void validate_request(const TextToImageRequest& request, const QwenImageComponents& components) {
  int64_t multiple = components.pixel_multiple();
  check(request.width > 0 && request.height > 0 && request.width <= kMaxSide && request.height <= kMaxSide,
        "width and height must be between " + std::to_string(multiple) + " and " + std::to_string(kMaxSide) +
            ", got " + std::to_string(request.width) + "x" + std::to_string(request.height));
  check(request.width % multiple == 0 && request.height % multiple == 0,
        "width and height must be multiples of " + std::to_string(multiple) + ", got " +
            std::to_string(request.width) + "x" + std::to_string(request.height) + " (try " +
            std::to_string(std::max<int64_t>(multiple, request.width / multiple * multiple)) + "x" +
            std::to_string(std::max<int64_t>(multiple, request.height / multiple * multiple)) + ")");
  check(request.steps >= 1 && request.steps <= 1000,
        "steps must be between 1 and 1000, got " + std::to_string(request.steps));
  check(std::isfinite(request.cfg_scale) && request.cfg_scale >= 0.0f && request.cfg_scale <= 100.0f,
        "cfg scale must be between 0 and 100");
  check(request.max_sequence_length >= 1 && request.max_sequence_length <= 1024,
        "max sequence length must be between 1 and 1024");
}

namespace {

// A job that fails part way leaves its weights mid-phase (placed, or a stream part way round its ring):
// the arrangement is dropped so the next job plans from the checkpoint again.
class ArrangementGuard {
 public:
  explicit ArrangementGuard(QwenImageComponents& components) : components_(components) {}
  ~ArrangementGuard() {
    if (completed_) return;
    components_.drop_arrangement();
  }
  ArrangementGuard(const ArrangementGuard&) = delete;
  ArrangementGuard& operator=(const ArrangementGuard&) = delete;
  void complete() { completed_ = true; }

 private:
  QwenImageComponents& components_;
  bool completed_ = false;
};

}  // namespace

TextToImageResult text_to_image(QwenImageComponents& components, const TextToImageRequest& request,
                                const JobObservers& observers) {
  validate_request(request, components);
  ArrangementGuard arrangement(components);
  const DType dtype = components.activation_dtype;
  Profiler* profiler = observers.profiler;
  auto span = [profiler](const char* name, PhaseAttributes attributes = {}) {
    return profiler ? profiler->span(name, std::move(attributes)) : Profiler::Span();
  };
  const QwenImageTransformerConfig& transformer_config = components.transformer->config();
  const int64_t latent_channels = transformer_config.in_channels / 4;
  const int64_t scale = components.vae_scale_factor();
  const int64_t latent_height = 2 * (request.height / (scale * 2));
  const int64_t latent_width = 2 * (request.width / (scale * 2));
  const std::vector<ImageShape> img_shapes = {{1, latent_height / 2, latent_width / 2}};

  TextToImageResult result;
  RecoveryLadder ladder(components, recovery_key(components, request), img_shapes[0].tokens(),
                        observers.on_recovery, profiler);
  Clock::time_point phase_start = Clock::now();
  ladder.run(JobPhase::Plan, "plan", [&] {
    Profiler::Span phase = span("plan");
    prepare_job_memory(components, request, ladder.degradation());
  });
  // The arrangement may be rebuilt by a recovery: always reached through the components.
  auto memory = [&components]() -> JobMemory& { return *components.memory; };
  std::vector<std::unique_ptr<BudgetScope>> budgets;
  for (const Device& device : memory().devices()) {
    Allocator& allocator = allocator_for(device);
    budgets.push_back(
        std::make_unique<BudgetScope>(allocator, components.memory_options.device_budget_bytes));
    // The job's peak, not the planning's or an earlier job's.
    allocator.reset_peak();
  }
  result.timings.plan_s = seconds_since(phase_start);
  if (observers.on_plan) observers.on_plan(memory().plan);

  phase_start = Clock::now();
  PromptEmbedding positive, negative;
  result.used_cfg = request.cfg_scale > 1.0f;
  if (result.used_cfg) result.negative_prompt = request.negative_prompt.value_or(" ");
  {
    Profiler::Span phase = span("text_encode");
    ladder.run(JobPhase::TextEncode, "text encoder", [&] {
      ComponentPlacement& placement = *memory().text_encoder;
      placement.set_profiler(profiler);
      placement.begin_phase();
      QwenImagePromptEncoder prompt_encoder(components.tokenizer, *components.text_encoder, &placement);
      OwnerScope owner({"text_encoder", -1, MemoryRole::Activations});
      positive = prompt_encoder.encode(request.prompt, request.max_sequence_length, dtype);
      if (result.used_cfg)
        negative = prompt_encoder.encode(result.negative_prompt, request.max_sequence_length, dtype);
    });
    memory().text_encoder->end_phase();
  }
  result.timings.text_encode_s = seconds_since(phase_start);

  phase_start = Clock::now();
  Tensor latents;
  {
    Profiler::Span phase = span("denoise");
    OwnerScope owner({"transformer", -1, MemoryRole::Activations});
    FlowMatchEulerDiscreteScheduler scheduler(components.scheduler_config);
    const int64_t image_tokens = img_shapes[0].tokens();
    scheduler.set_timesteps(request.steps, FlowMatchEulerDiscreteScheduler::calculate_shift(
                                               image_tokens, components.scheduler_config));
    const std::vector<float>& timesteps = scheduler.timesteps();
    std::vector<float> sigma_timesteps;
    // The reference passes t / 1000 in the latents' dtype.
    for (float timestep : timesteps) sigma_timesteps.push_back(timestep / 1000.0f);

    const QwenImageTransformer2DModel& transformer = *components.transformer;
    TransformerExecutor executor(memory().transformers(components), *memory().transformer, img_shapes, dtype);
    ladder.run(JobPhase::Denoise, "denoise setup", [&] {
      TorchGenerator generator(request.seed);
      Tensor noise = generator.randn({1, 1, latent_channels, latent_height, latent_width});
      latents = pack_latents(noise.view({1, latent_channels, latent_height, latent_width}))
                    .to(dtype)
                    .to(components.device);
      // Rotary tables depend only on the sizes, so each prompt's are built once for all steps.
      std::vector<TransformerCondition> conditions = {
          {positive.embeds,
           {},
           transformer.rotary(img_shapes, positive.embeds.dim(1), components.device, dtype)}};
      if (result.used_cfg) {
        conditions.push_back(
            {negative.embeds,
             {},
             transformer.rotary(img_shapes, negative.embeds.dim(1), components.device, dtype)});
      }
      memory().transformer->set_profiler(profiler);
      memory().transformer->begin_phase();
      executor.set_placement(*memory().transformer, memory().transformers(components));
      executor.set_conditions(std::move(conditions));
      executor.precompute_modulation(sigma_timesteps);
    });

    for (int step = 0; step < static_cast<int>(timesteps.size()); ++step) {
      Profiler::Span step_span = span("step", {{"step", step + 1}});
      Clock::time_point step_start = Clock::now();
      Tensor next_latents;
      // A retry starts again from `latents`, which only a completed step replaces.
      ladder.run(JobPhase::Denoise, "step " + std::to_string(step + 1), [&] {
        ComponentPlacement& placement = *memory().transformer;
        // A placement the ladder rebuilt is new to the profiler and to the executor.
        if (!placement.in_phase()) placement.set_profiler(profiler);
        placement.begin_phase(/*once_read_done=*/true);
        executor.set_placement(placement, memory().transformers(components));
        std::vector<Tensor> predictions = executor.predict(step, latents);
        Tensor prediction = result.used_cfg
                                ? guided_prediction(predictions[0], predictions[1], request.cfg_scale)
                                : predictions[0];
        next_latents = scheduler.step(prediction, step, latents);
      });
      latents = next_latents;
      result.timings.step_s.push_back(seconds_since(step_start));
      if (observers.on_step) observers.on_step(step + 1, static_cast<int>(timesteps.size()));
    }
    memory().transformer->end_phase();
    result.bytes_streamed = ladder.bytes_streamed_by_replaced() + memory().transformer->bytes_streamed();
  }
  result.latents = latents;
  result.timings.denoise_s = seconds_since(phase_start);

  phase_start = Clock::now();
  {
    Profiler::Span phase = span("vae_decode");
    ladder.run(JobPhase::VaeDecode, "vae decode", [&] {
      const bool on_cpu = ladder.degradation().vae_on_cpu;
      memory().vae->set_profiler(profiler);
      memory().vae->begin_phase();
      OwnerScope vae_owner({"vae", -1, MemoryRole::Activations});
      // On the CPU rung nothing more may be asked of the device, not even for unpacking.
      Tensor unpacked =
          unpack_latents(on_cpu ? latents.to(Device::cpu()) : latents, latent_height, latent_width)
              .to(components.vae_dtype);
      Tensor normalized = components.vae->denormalize_latents(unpacked);
      Tensor decoded = ladder.degradation().vae_tiling ? components.vae->tiled_decode(normalized, VaeTiling{})
                                                       : components.vae->decode(normalized);
      // VaeImageProcessor.postprocess: [-1, 1] -> [0, 1], clamped, channels last. x * 0.5 is exact, so
      // this rounds as the reference's x / 2 + 0.5 does.
      Tensor channels_last = decoded.select(0, 0).permute({1, 2, 0}).contiguous();
      std::vector<float> values = channels_last.to_floats();
      for (float& value : values) value = std::clamp(value * 0.5f + 0.5f, 0.0f, 1.0f);
      result.image = Tensor::from_floats(values, channels_last.shape());
    });
    memory().vae->end_phase();
  }
  result.timings.vae_decode_s = seconds_since(phase_start);
  result.plan = memory().plan;
  result.recoveries = ladder.recoveries();
  ladder.remember();
  arrangement.complete();
  return result;
}

std::vector<uint8_t> image_to_rgb8(const Tensor& image) {
  check(image.ndim() == 3 && image.dim(2) == 3,
        "image_to_rgb8 takes [H, W, 3], got " + shape_str(image.shape()));
  std::vector<float> values = image.to_floats();
  std::vector<uint8_t> pixels(values.size());
  for (size_t i = 0; i < values.size(); ++i) {
    // numpy's round() rounds half to even; nearbyint does the same in the default rounding mode.
    pixels[i] = static_cast<uint8_t>(std::nearbyint(std::clamp(values[i], 0.0f, 1.0f) * 255.0f));
  }
  return pixels;
}

}  // namespace canvas
