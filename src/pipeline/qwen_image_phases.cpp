#include "pipeline/qwen_image_phases.h"

#include <algorithm>
#include <chrono>
#include <cmath>

#include "image/resample.h"
#include "image/vae_image_processor.h"
#include "pipeline/edit_prompt_encoder.h"
#include "pipeline/image_latents.h"
#include "pipeline/latent_packing.h"
#include "pipeline/qwen2_vl_image_processor.h"
#include "pipeline/torch_generator.h"
#include "pipeline/transformer_executor.h"

namespace canvas {

namespace {

// Fails naming `what` when `tensor` holds a NaN or an infinity: the job would otherwise finish with a black
// image. Copies the values to the host, a small tensor once per step.
void check_finite(const Tensor& tensor, const std::string& what, DType activation_dtype) {
  const std::vector<float> values = tensor.to_floats();
  if (std::all_of(values.begin(), values.end(), [](float value) { return std::isfinite(value); })) return;
  throw Error(what + " holds NaN or Inf values: the checkpoint's weights may hold them" +
              (activation_dtype == DType::F16 ? ", or the f16 activations overflowed (try --precision bf16)"
                                              : std::string()));
}

// Starts `component`'s part of the current attempt on its placement (which a recovery may have rebuilt, so
// it is looked up each time) and returns it; the phase ends it once its attempts are done.
ComponentPlacement& begin_component_phase(Job& job, Component component) {
  ComponentPlacement& placement = job.weights().placement(component);
  placement.set_profiler(job.observers().profiler);
  placement.begin_phase();
  return placement;
}

// The next seeded noise of `generator` over the job's latent grid, as the pipelines draw it
// ([1, 1, C, h, w]), packed into tokens in `dtype` on the model's device.
Tensor packed_noise(TorchGenerator& generator, const Job& job, DType dtype) {
  const JobGeometry& geometry = job.geometry();
  const Tensor noise =
      generator.randn({1, 1, geometry.latent_channels, geometry.latent_height, geometry.latent_width});
  return pack_latents(
             noise.view({1, geometry.latent_channels, geometry.latent_height, geometry.latent_width}))
      .to(dtype)
      .to(job.model().device);
}

// The phases of an edit take the pictures the job was sized (and planned) for.
void check_picture_count(const JobGeometry& geometry, const std::vector<RgbImage>& pictures) {
  check(pictures.size() == geometry.references.size(),
        "the job was sized for " + std::to_string(geometry.references.size()) + " pictures, got " +
            std::to_string(pictures.size()));
}

// True CFG with the norm rescale: the guided prediction keeps the conditional prediction's norm per token.
Tensor guided_prediction(const Tensor& cond, const Tensor& uncond, float cfg_scale) {
  Tensor combined = ops::add(uncond, ops::scale(ops::sub(cond, uncond), cfg_scale));
  return ops::mul(combined, ops::div(ops::vector_norm(cond), ops::vector_norm(combined)));
}

// Flow matching's estimate of the clean latents at `step`, from the velocity v predicted there:
// x0 = x_t - sigma_t * v. Formed in f32 as the scheduler forms its Euler step, x_t + (0 - sigma_t) * v, so
// after the last step, whose next sigma is 0, it is exactly the final latents of an f32 job. Unpacked to
// the latent grid and copied to the host for the job's preview listener.
Tensor denoised_latents(const FlowMatchEulerDiscreteScheduler& scheduler, int step, const Tensor& prediction,
                        const Tensor& latents, const JobGeometry& geometry) {
  const float sigma = scheduler.sigmas()[static_cast<size_t>(step)];
  const Tensor x0 = ops::add(latents.to(DType::F32), ops::scale(prediction.to(DType::F32), -sigma));
  return unpack_latents(x0, geometry.latent_height, geometry.latent_width).to(Device::cpu());
}

}  // namespace

PromptEmbeddings encode_prompts(Job& job, const std::string& prompt, const Qwen2_5_VLImageEmbeds* pictures) {
  const QwenImageModel& model = job.model();
  const JobGeometry& geometry = job.geometry();
  const DType dtype = model.activation_dtype;
  PromptEmbeddings prompts;
  job.attempt("text encoder", [&] {
    ComponentPlacement& placement = begin_component_phase(job, Component::TextEncoder);
    OwnerScope owner({component_label(Component::TextEncoder), -1, MemoryRole::Activations});
    if (pictures) {
      QwenImageEditPromptEncoder encoder(edit_prompt_template(geometry.kind), model.tokenizer,
                                         job.weights().text_encoder(), *model.configs.vision_language,
                                         &placement, geometry.text_positions);
      prompts.positive = encoder.encode(prompt, *pictures, dtype);
      if (geometry.guided) prompts.negative = encoder.encode(geometry.negative_prompt, *pictures, dtype);
    } else {
      QwenImagePromptEncoder encoder(model.tokenizer, job.weights().text_encoder(), &placement);
      prompts.positive = encoder.encode(prompt, geometry.max_sequence_length, dtype);
      if (geometry.guided)
        prompts.negative = encoder.encode(geometry.negative_prompt, geometry.max_sequence_length, dtype);
    }
  });
  job.weights().placement(Component::TextEncoder).end_phase();
  check_finite(prompts.positive.embeds, "the text encoder's embedding of the prompt", dtype);
  if (geometry.guided)
    check_finite(prompts.negative.embeds, "the text encoder's embedding of the negative prompt", dtype);
  return prompts;
}

Qwen2_5_VLImageEmbeds encode_pictures(Job& job, const std::vector<RgbImage>& pictures) {
  const QwenImageModel& model = job.model();
  const JobGeometry& geometry = job.geometry();
  check_picture_count(geometry, pictures);
  std::vector<RgbImage> condition_images;
  for (size_t i = 0; i < pictures.size(); ++i) {
    const PixelSize size = geometry.references[i].condition;
    condition_images.push_back(resize(pictures[i], size.width, size.height, ResampleFilter::Lanczos));
  }
  const Qwen2VLImageFeatures features = preprocess_images(condition_images, *model.configs.image_processor);
  for (size_t i = 0; i < pictures.size(); ++i) {
    check(features.image_grid_thw[i] == geometry.references[i].grid_thw,
          "the image processor's grid for picture " + std::to_string(i + 1) +
              " differs from the one the job was planned with");
  }
  Qwen2_5_VLImageEmbeds embeddings;
  embeddings.grid_thw = features.image_grid_thw;
  job.attempt("vision encoder", [&] {
    ComponentPlacement& placement = begin_component_phase(job, Component::VisionEncoder);
    OwnerScope owner({component_label(Component::VisionEncoder), -1, MemoryRole::Activations});
    embeddings.embeds = job.weights().vision_encoder().forward(features.pixel_values, features.image_grid_thw,
                                                               model.activation_dtype, &placement);
  });
  job.weights().placement(Component::VisionEncoder).end_phase();
  check_finite(embeddings.embeds, "the vision encoder's embedding of the pictures", model.activation_dtype);
  return embeddings;
}

Tensor encode_reference_latents(Job& job, const std::vector<RgbImage>& pictures) {
  const QwenImageModel& model = job.model();
  const JobGeometry& geometry = job.geometry();
  check_picture_count(geometry, pictures);
  std::vector<Tensor> packed;
  job.attempt("vae encode", [&] {
    packed.clear();
    const bool on_cpu = job.degradation().vae_on_cpu;
    begin_component_phase(job, Component::Vae);
    OwnerScope owner({component_label(Component::Vae), -1, MemoryRole::Activations});
    const AutoencoderKLQwenImage& vae = job.weights().vae();
    const Device device = on_cpu ? Device::cpu() : model.device;
    for (size_t i = 0; i < pictures.size(); ++i) {
      const PixelSize size = geometry.references[i].vae;
      // VaeImageProcessor.preprocess: Lanczos to the VAE size, then [0, 255] -> [-1, 1].
      const Tensor image =
          vae_image_processor::preprocess(pictures[i], size.width, size.height,
                                          vae_image_processor::ResizeMode::Default, std::nullopt)
              .to(model.vae_dtype)
              .to(device);
      Tensor latents = vae.normalize_latents(vae.encode_mean(image, vae_encode_tiling(job.degradation())));
      packed.push_back(pack_latents(latents).to(model.activation_dtype).to(model.device));
    }
  });
  job.weights().placement(Component::Vae).end_phase();
  Tensor references = ops::concat(packed, 1);
  check_finite(references, "the VAE's encoding of the pictures", model.vae_dtype);
  return references;
}

SourceLatents encode_source_latents(Job& job, const Tensor& picture, uint64_t seed) {
  const QwenImageModel& model = job.model();
  const JobGeometry& geometry = job.geometry();
  check(picture.ndim() == 4 && picture.dim(2) == geometry.height && picture.dim(3) == geometry.width,
        "the job was sized for a " + std::to_string(geometry.width) + "x" + std::to_string(geometry.height) +
            " picture, got " + shape_str(picture.shape()));
  SourceLatents source;
  job.attempt("vae encode", [&] {
    const bool on_cpu = job.degradation().vae_on_cpu;
    begin_component_phase(job, Component::Vae);
    OwnerScope owner({component_label(Component::Vae), -1, MemoryRole::Activations});
    const AutoencoderKLQwenImage& vae = job.weights().vae();
    const Device device = on_cpu ? Device::cpu() : model.device;
    // A retry draws again from the start.
    TorchGenerator generator(seed);
    const Tensor sample = sample_latent_distribution(
        vae.encode(picture.to(model.vae_dtype).to(device), vae_encode_tiling(job.degradation())), generator);
    source.image_latents = pack_latents(vae.normalize_latents_by_inverse_std(sample))
                               .to(model.activation_dtype)
                               .to(model.device);
    source.noise = packed_noise(generator, job, model.activation_dtype);
  });
  job.weights().placement(Component::Vae).end_phase();
  check_finite(source.image_latents, "the VAE's encoding of the picture", model.vae_dtype);
  return source;
}

Tensor denoise(Job& job, const PromptEmbeddings& prompts, uint64_t seed, float cfg_scale,
               const Tensor& reference_latents, const SourceLatents* source) {
  using Clock = std::chrono::steady_clock;
  const QwenImageModel& model = job.model();
  const JobGeometry& geometry = job.geometry();
  const DType dtype = model.activation_dtype;
  Profiler* profiler = job.observers().profiler;
  OwnerScope owner({component_label(Component::Transformer), -1, MemoryRole::Activations});
  FlowMatchEulerDiscreteScheduler scheduler(geometry.scheduler);
  scheduler.set_timesteps(geometry.steps, FlowMatchEulerDiscreteScheduler::calculate_shift(
                                              geometry.image_tokens(), geometry.scheduler));
  const std::vector<float>& timesteps = scheduler.timesteps();
  std::vector<float> sigma_timesteps;
  // The reference passes t / 1000 in the latents' dtype.
  for (float timestep : timesteps) sigma_timesteps.push_back(timestep / 1000.0f);

  const QwenImageTransformer2DModel& transformer = *model.transformer;
  TransformerExecutor executor(job.weights().transformers(), job.weights().placement(Component::Transformer),
                               geometry.img_shapes, dtype);
  Tensor latents;
  const int first_step = source ? geometry.first_step : 0;
  job.attempt("denoise setup", [&] {
    if (source) {
      latents = scheduler.scale_noise(source->image_latents, first_step, source->noise);
    } else {
      TorchGenerator generator(seed);
      latents = packed_noise(generator, job, dtype);
    }
    // Rotary tables depend only on the sizes, so each prompt's are built once for all steps.
    std::vector<TransformerCondition> conditions;
    for (const PromptEmbedding* prompt : {&prompts.positive, &prompts.negative}) {
      if (prompt == &prompts.negative && !geometry.guided) break;
      conditions.push_back(
          {prompt->embeds,
           {},
           transformer.rotary(geometry.img_shapes, prompt->embeds.dim(1), model.device, dtype)});
    }
    ComponentPlacement& placement = begin_component_phase(job, Component::Transformer);
    executor.set_placement(placement, job.weights().transformers());
    executor.set_conditions(std::move(conditions));
    executor.precompute_modulation(sigma_timesteps);
  });

  // The edit pipelines' torch.cat([latents, image_latents], dim=1) before every pass.
  auto with_references = [&](const Tensor& noisy) {
    if (!reference_latents.defined()) return noisy;
    const Tensor parts[] = {noisy, reference_latents};
    return ops::concat(parts, 1);
  };
  // The inpainting blend's target after `step`: x0 noised to the next step, or x0 after the last.
  const bool blends = source && source->mask.defined();
  const int steps = static_cast<int>(timesteps.size());
  auto image_latents_after = [&](int step) {
    return step + 1 < steps ? scheduler.scale_noise(source->image_latents, step + 1, source->noise)
                            : source->image_latents;
  };
  const int steps_run = steps - first_step;
  const PreviewCallback& on_preview = job.observers().on_preview;
  for (int step = first_step; step < steps; ++step) {
    const int done = step - first_step + 1;
    job.check_cancelled();
    Profiler::Span step_span = profiler ? profiler->span("step", {{"step", done}}) : Profiler::Span();
    const Clock::time_point step_start = Clock::now();
    Tensor next_latents;
    Tensor denoised;  // the step's x0 estimate, made only for a preview listener
    // A retry starts again from `latents`, which only a completed step replaces.
    job.attempt("step " + std::to_string(done), [&] {
      ComponentPlacement& placement = job.weights().placement(Component::Transformer);
      // A placement the ladder rebuilt is new to the profiler and to the executor.
      if (!placement.in_phase()) placement.set_profiler(profiler);
      placement.begin_phase(/*once_read_done=*/true);
      executor.set_placement(placement, job.weights().transformers());
      std::vector<Tensor> predictions = executor.predict(step, with_references(latents));
      // The reference pictures' tokens are context: only the output's are denoised.
      for (Tensor& prediction : predictions) prediction = prediction.slice(1, 0, latents.dim(1)).contiguous();
      Tensor prediction =
          geometry.guided ? guided_prediction(predictions[0], predictions[1], cfg_scale) : predictions[0];
      // Inpainting's preview shows the whole estimate, before the blend below.
      if (on_preview) denoised = denoised_latents(scheduler, step, prediction, latents, geometry);
      next_latents = scheduler.step(prediction, step, latents);
      if (blends) next_latents = blend_masked_latents(source->mask, image_latents_after(step), next_latents);
    });
    check_finite(next_latents, "the latents after denoising step " + std::to_string(done), dtype);
    latents = next_latents;
    job.timings().step_s.push_back(std::chrono::duration<double>(Clock::now() - step_start).count());
    if (job.observers().on_step) job.observers().on_step(done, steps_run);
    if (on_preview) on_preview(done, steps_run, denoised);
  }
  job.weights().placement(Component::Transformer).end_phase();
  return latents;
}

Tensor decode_latents(Job& job, const Tensor& latents) {
  const QwenImageModel& model = job.model();
  const JobGeometry& geometry = job.geometry();
  Tensor image;
  job.attempt("vae decode", [&] {
    const bool on_cpu = job.degradation().vae_on_cpu;
    begin_component_phase(job, Component::Vae);
    OwnerScope owner({component_label(Component::Vae), -1, MemoryRole::Activations});
    const AutoencoderKLQwenImage& vae = job.weights().vae();
    // On the CPU rung nothing more may be asked of the device, not even for unpacking.
    Tensor unpacked = unpack_latents(on_cpu ? latents.to(Device::cpu()) : latents, geometry.latent_height,
                                     geometry.latent_width)
                          .to(model.vae_dtype);
    Tensor normalized = vae.denormalize_latents(unpacked);
    Tensor decoded = job.degradation().vae_decode_tiling ? vae.tiled_decode(normalized, VaeTiling{})
                                                         : vae.decode(normalized);
    // VaeImageProcessor.postprocess: [-1, 1] -> [0, 1], clamped, channels last. x * 0.5 is exact, so this
    // rounds as the reference's x / 2 + 0.5 does.
    Tensor channels_last = decoded.select(0, 0).permute({1, 2, 0}).contiguous();
    std::vector<float> values = channels_last.to_floats();
    for (float& value : values) value = std::clamp(value * 0.5f + 0.5f, 0.0f, 1.0f);
    image = Tensor::from_floats(values, channels_last.shape());
  });
  job.weights().placement(Component::Vae).end_phase();
  return image;
}

}  // namespace canvas
