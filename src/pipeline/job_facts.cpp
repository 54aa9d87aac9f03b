#include "pipeline/job_facts.h"

#include <algorithm>

#include "backend/backend.h"
#include "backend/communicator.h"
#include "memory/host_memory.h"
#include "memory/host_page_locks.h"
#include "models/meta_weights.h"
#include "pipeline/component_weights.h"
#include "pipeline/edit_prompt_encoder.h"
#include "pipeline/prompt_encoder.h"
#include "pipeline/transformer_executor.h"
#include "planning/dry_run.h"

namespace canvas {

namespace {

// A transformer-block linear the fp8 and nf4 plans store quantized
// (QwenImageTransformerBlock::quantize_weights).
bool is_quantized_in_blocks(const std::string& name, const Tensor& tensor) {
  return tensor.ndim() == 2 && name.ends_with(".weight");
}

int64_t quantized_bytes(const Tensor& tensor, WeightPrecision precision) {
  const int64_t elements = tensor.numel();
  if (precision == WeightPrecision::Fp8) return elements + static_cast<int64_t>(sizeof(float));
  return (elements + 1) / 2 + (elements + 63) / 64 * static_cast<int64_t>(sizeof(float));
}

int64_t placed_bytes(const Tensor& tensor, const std::string& name, Device device, DType compute_dtype) {
  return storage_bytes(nn::placed_dtype(tensor, name, device, compute_dtype), tensor.numel());
}

// Adds the host memory the arrangement's own copies of a network's weights take, by the precision of the
// transformer blocks: weights converted to their placed dtype, and the linears quantization replaces (those
// `in_blocks` says are in quantized blocks). Weights used as mapped cost nothing.
template <typename Network>
void count_host_copies(Network& network, Device device, DType compute_dtype,
                       const std::function<bool(const std::string&)>& in_blocks, ComponentFacts& facts) {
  network.visit([&](const std::string& name, Tensor& tensor) {
    const DType placed = nn::placed_dtype(tensor, name, device, compute_dtype);
    const int64_t converted = placed != tensor.dtype() ? storage_bytes(placed, tensor.numel()) : 0;
    const bool quantized = in_blocks(name) && is_quantized_in_blocks(name, tensor);
    facts.host_copy_bytes[0] += converted;
    for (int p = 1; p < kWeightPrecisions; ++p)
      facts.host_copy_bytes[p] +=
          quantized ? quantized_bytes(tensor, static_cast<WeightPrecision>(p)) : converted;
  });
}

BlockFacts block_facts(const std::function<void(const nn::ParameterVisitor&)>& visit, Device device,
                       DType compute_dtype, bool quantizable) {
  BlockFacts facts;
  visit([&](const std::string& name, Tensor& tensor) {
    const int64_t lossless = placed_bytes(tensor, name, device, compute_dtype);
    facts.bytes[0] += lossless;
    for (int p = 1; p < kWeightPrecisions; ++p) {
      facts.bytes[p] += quantizable && is_quantized_in_blocks(name, tensor)
                            ? quantized_bytes(tensor, static_cast<WeightPrecision>(p))
                            : lossless;
    }
  });
  return facts;
}

int64_t shared_bytes(const std::function<void(const nn::ParameterVisitor&)>& visit, Device device,
                     DType compute_dtype) {
  int64_t total = 0;
  visit([&](const std::string& name, Tensor& tensor) {
    total += placed_bytes(tensor, name, device, compute_dtype);
  });
  return total;
}

// The bytes a plan may use on `device`: the budget asked for, else what is free, less the backend's scratch
// (outside what a dry run of the ops sees).
int64_t device_budget(Device device, const MemoryOptions& options, const HostMemoryInfo& host) {
  Backend& backend = backend_for(device);
  const int64_t scratch = backend.scratch_reserve_bytes();
  // A budget is the allocator's limit for the job; what is already held counts against it.
  if (options.device_budget_bytes)
    return *options.device_budget_bytes - allocator_for(device).in_use() - scratch;
  if (device.is_cpu()) return host.available_bytes - scratch;
  backend.release_cached_memory();
  return backend.memory_info().free_bytes - scratch;
}

// The text encoder's facts; `text_tokens` receives each prompt's embedding length for the next phase.
ComponentFacts text_encoder_facts(const QwenImageModel& model, const JobGeometry& geometry,
                                  const std::string& prompt, const std::vector<AppliedLora>& loras,
                                  std::vector<int64_t>& text_tokens) {
  const Device device = model.device;
  const DType dtype = model.activation_dtype;
  // A working copy: the dry run swaps meta tensors into it.
  Qwen2_5_VLTextModel text_encoder = *model.text_encoder;
  attach_loras(loras, text_encoder);
  ComponentFacts text;
  text.component = Component::TextEncoder;
  text.shared_bytes = shared_bytes([&](const auto& v) { text_encoder.visit_shared(v); }, device, dtype);
  count_host_copies(
      text_encoder, device, dtype, [](const std::string&) { return false; }, text);
  for (auto& layer : text_encoder.layers())
    text.blocks.push_back(block_facts([&](const auto& v) { layer.visit("", v); }, device, dtype, false));
  text.passes = geometry.guidance_halves();
  const bool edits = !geometry.references.empty();
  {
    nn::MetaWeightsScope meta(text_encoder, component_label(Component::TextEncoder));
    OwnerScope owner({component_label(Component::TextEncoder), -1, MemoryRole::Activations});
    if (edits) {
      // The pictures' rows as the vision encoder hands them on.
      Qwen2_5_VLImageEmbeds pictures;
      int64_t rows = 0;
      for (const ReferencePicture& picture : geometry.references) {
        pictures.grid_thw.push_back(picture.grid_thw);
        rows += image_token_count(picture.grid_thw,
                                  model.configs.vision_language->vision_config.spatial_merge_size);
      }
      pictures.embeds = Tensor::empty({rows, model.configs.text_encoder.hidden_size}, dtype, Device::meta());
      QwenImageEditPromptEncoder encoder(edit_prompt_template(geometry.kind), model.tokenizer, text_encoder,
                                         *model.configs.vision_language, nullptr, geometry.text_positions);
      text.activation_bytes = measure_activation_peak([&] {
        text_tokens.push_back(encoder.encode(prompt, pictures, dtype).embeds.dim(1));
        if (geometry.guided)
          text_tokens.push_back(encoder.encode(geometry.negative_prompt, pictures, dtype).embeds.dim(1));
      });
    } else {
      QwenImagePromptEncoder encoder(model.tokenizer, text_encoder);
      text.activation_bytes = measure_activation_peak([&] {
        text_tokens.push_back(encoder.encode(prompt, geometry.max_sequence_length, dtype).embeds.dim(1));
        if (geometry.guided) {
          text_tokens.push_back(
              encoder.encode(geometry.negative_prompt, geometry.max_sequence_length, dtype).embeds.dim(1));
        }
      });
    }
  }
  // Two flops per weight per token; the template adds its system tokens to the prompt's.
  const double templated_tokens =
      static_cast<double>(text_tokens.front() + (edits ? QwenImageEditPromptEncoder::kTemplateTokens
                                                       : QwenImagePromptEncoder::kTemplateTokens));
  double layer_parameters = 0;
  for (auto& layer : text_encoder.layers())
    layer.visit("",
                [&](const std::string&, Tensor& t) { layer_parameters += static_cast<double>(t.numel()); });
  text.flops_per_pass = 2.0 * templated_tokens * layer_parameters;
  return text;
}

// The denoising phase's activation peak on one device, measured by a dry run of one step on the meta device.
// With `devices` > 1 the tokens are shared as a sequence-parallel job shares them, every device on the meta
// device at once: its peak holds all of theirs, and one device's is the share of it.
int64_t transformer_activation_peak(QwenImageTransformer2DModel& transformer,
                                    const std::vector<ImageShape>& img_shapes,
                                    const std::vector<int64_t>& text_tokens, int steps, DType dtype,
                                    int devices) {
  const QwenImageTransformerConfig& config = transformer.config();
  nn::MetaWeightsScope meta(transformer, component_label(Component::Transformer));
  ComponentPlan mapped;
  mapped.component = Component::Transformer;
  mapped.residency = Residency::Mapped;
  std::vector<ComponentWeights> replicas{transformer_weights(transformer)};
  std::unique_ptr<ComponentPlacement> no_streaming;
  if (devices == 1) {
    no_streaming = std::make_unique<ComponentPlacement>(Device::meta(), std::move(replicas.front()), mapped);
  } else {
    mapped.spread = Spread::Sequence;
    DeviceShare share;
    share.device = Device::meta();
    share.blocks = share.resident_blocks = static_cast<int>(transformer.blocks().size());
    mapped.shares.assign(static_cast<size_t>(devices), share);
    replicas.resize(static_cast<size_t>(devices), replicas.front());
    no_streaming = std::make_unique<ComponentPlacement>(Device::meta(), std::move(replicas), mapped);
  }
  OwnerScope owner({component_label(Component::Transformer), -1, MemoryRole::Activations});
  const int64_t peak = measure_activation_peak([&] {
    TransformerExecutor executor(std::vector<const QwenImageTransformer2DModel*>(devices, &transformer),
                                 *no_streaming, img_shapes, dtype);
    executor.precompute_modulation(std::vector<float>(static_cast<size_t>(steps), 1.0f));
    std::vector<TransformerCondition> conditions;
    for (int64_t tokens : text_tokens) {
      conditions.push_back({Tensor::empty({1, tokens, config.joint_attention_dim}, dtype, Device::meta()),
                            {},
                            transformer.rotary(img_shapes, tokens, Device::meta(), dtype)});
    }
    // The output's tokens and any reference pictures' after them, as the edit pipelines concatenate them.
    int64_t image_tokens = 0;
    for (const ImageShape& shape : img_shapes) image_tokens += shape.tokens();
    Tensor latents = Tensor::empty({1, image_tokens, config.in_channels}, dtype, Device::meta());
    executor.set_conditions(std::move(conditions));
    executor.predict(0, latents);
  });
  return (peak + devices - 1) / devices;
}

ComponentFacts transformer_facts(const QwenImageModel& model, const JobGeometry& geometry,
                                 const MemoryOptions& options, int64_t feed_forward_chunk,
                                 const std::vector<AppliedLora>& loras,
                                 const std::vector<int64_t>& text_tokens) {
  const Device device = model.device;
  const DType dtype = model.activation_dtype;
  QwenImageTransformer2DModel transformer = *model.transformer;
  attach_loras(loras, transformer);
  transformer.enable_forward_chunking(feed_forward_chunk);
  const QwenImageTransformerConfig& config = transformer.config();
  ComponentFacts denoise;
  denoise.component = Component::Transformer;
  denoise.quantizable = true;
  denoise.shared_bytes = shared_bytes([&](const auto& v) { transformer.visit_shared(v); }, device, dtype);
  count_host_copies(
      transformer, device, dtype,
      [](const std::string& name) { return name.starts_with("transformer_blocks."); }, denoise);
  for (auto& block : transformer.blocks()) {
    auto visit_if = [&](bool modulation) {
      return [&block, modulation](const nn::ParameterVisitor& v) {
        block.visit("", [&](const std::string& name, Tensor& t) {
          if (is_modulation(name) == modulation) v(name, t);
        });
      };
    };
    BlockFacts every_step = block_facts(visit_if(false), device, dtype, true);
    BlockFacts once = block_facts(visit_if(true), device, dtype, true);
    std::copy(std::begin(once.bytes), std::end(once.bytes), std::begin(every_step.once_bytes));
    denoise.blocks.push_back(every_step);
  }
  const int halves = geometry.guidance_halves();
  denoise.passes = (geometry.steps - geometry.first_step) * halves;
  denoise.passes_per_weight_read = halves;
  const std::vector<ImageShape>& img_shapes = geometry.img_shapes;
  // Every pass runs the reference pictures' tokens beside the output's.
  const int64_t image_tokens = geometry.sequence_image_tokens();
  denoise.activation_bytes =
      transformer_activation_peak(transformer, img_shapes, text_tokens, geometry.steps, dtype, /*devices=*/1);
  // Per block: the image and text streams' linears (12 dim^2 weights each) on their own tokens, and
  // attention's two L x L x dim products over the joint sequence.
  const double dim = static_cast<double>(config.inner_dim());
  double flops = 0;
  for (int64_t tokens : text_tokens) {
    const double joint = static_cast<double>(image_tokens + tokens);
    flops +=
        static_cast<double>(config.num_layers) * (2.0 * joint * 12.0 * dim * dim + 4.0 * joint * joint * dim);
  }
  denoise.flops_per_pass = flops / static_cast<double>(text_tokens.size());
  double scores = 0;
  for (int64_t tokens : text_tokens) {
    const double joint = static_cast<double>(image_tokens + tokens);
    scores += static_cast<double>(config.num_layers * config.num_attention_heads) * joint * joint;
  }
  denoise.attention_scores_per_pass = scores / static_cast<double>(text_tokens.size());

  const int64_t longest_text = *std::max_element(text_tokens.begin(), text_tokens.end());
  denoise.boundary_bytes = storage_bytes(dtype, (image_tokens + longest_text) * config.inner_dim());
  denoise.pipeline_splittable = true;
  const int devices = 1 + static_cast<int>(options.extra_devices.size());
  if (can_split_tokens(config, devices)) {
    denoise.attention_heads = static_cast<int>(config.num_attention_heads);
    denoise.sequence_devices = devices;
    denoise.sequence_activation_bytes =
        transformer_activation_peak(transformer, img_shapes, text_tokens, geometry.steps, dtype, devices);
  }
  if (devices == denoise.passes_per_weight_read && devices > 1) {
    denoise.guidance_activation_bytes =
        transformer_activation_peak(transformer, img_shapes, {longest_text}, geometry.steps, dtype, 1);
  }
  return denoise;
}

// The VAE's facts: it decodes the output and first encodes each picture (an edit's references, img2img's
// source), one at a time. Both runs are its phase: its peak is the larger of theirs.
ComponentFacts vae_facts(const QwenImageModel& model, const JobGeometry& geometry,
                         const Degradation& degradation) {
  AutoencoderKLQwenImage vae = *model.vae;
  ComponentFacts facts;
  facts.component = Component::Vae;
  facts.shared_bytes = shared_bytes([&](const auto& v) { vae.visit(v); }, model.device, model.vae_dtype);
  count_host_copies(
      vae, model.device, model.vae_dtype, [](const std::string&) { return false; }, facts);
  // Edit-inpainting's reference latents are its source's: one encode.
  facts.passes = 1 + (geometry.encodes_source ? 1 : static_cast<int>(geometry.references.size()));
  nn::MetaWeightsScope meta(vae, component_label(Component::Vae));
  OwnerScope owner({component_label(Component::Vae), -1, MemoryRole::Activations});
  facts.activation_bytes = measure_activation_peak([&] {
    Tensor latents =
        Tensor::empty({1, geometry.latent_channels, geometry.latent_height, geometry.latent_width},
                      model.vae_dtype, Device::meta());
    Tensor normalized = vae.denormalize_latents(latents);
    if (degradation.vae_decode_tiling) {
      vae.tiled_decode(normalized, VaeTiling{});
    } else {
      vae.decode(normalized);
    }
  });
  auto picture = [&](const PixelSize& size) {
    return Tensor::empty({1, vae.config().input_channels, size.height, size.width}, model.vae_dtype,
                         Device::meta());
  };
  const std::optional<VaeTiling> encode_tiling = vae_encode_tiling(degradation);
  // The source's posterior is sampled: its logvar is kept, where the references take the mean alone.
  if (geometry.encodes_source) {
    facts.activation_bytes = std::max(facts.activation_bytes, measure_activation_peak([&] {
                                        vae.encode(picture({geometry.width, geometry.height}), encode_tiling);
                                      }));
  } else {
    for (const ReferencePicture& reference : geometry.references) {
      facts.activation_bytes =
          std::max(facts.activation_bytes,
                   measure_activation_peak([&] { vae.encode_mean(picture(reference.vae), encode_tiling); }));
    }
  }
  return facts;
}

// The vision encoder's facts: one run over every picture's patches.
ComponentFacts vision_encoder_facts(const QwenImageModel& model, const JobGeometry& geometry) {
  const Device device = model.device;
  const DType dtype = model.activation_dtype;
  Qwen2_5_VisionTransformerPretrainedModel tower = *model.vision_encoder;
  const Qwen2_5_VLVisionConfig& config = tower.config();
  ComponentFacts vision;
  vision.component = Component::VisionEncoder;
  vision.shared_bytes = shared_bytes([&](const auto& v) { tower.visit_shared(v); }, device, dtype);
  count_host_copies(
      tower, device, dtype, [](const std::string&) { return false; }, vision);
  for (auto& block : tower.blocks())
    vision.blocks.push_back(block_facts([&](const auto& v) { block.visit("", v); }, device, dtype, false));
  std::vector<std::array<int64_t, 3>> grids;
  int64_t patches = 0;
  double squared_patches = 0;
  for (const ReferencePicture& picture : geometry.references) {
    grids.push_back(picture.grid_thw);
    const int64_t count = picture.grid_thw[0] * picture.grid_thw[1] * picture.grid_thw[2];
    patches += count;
    squared_patches += static_cast<double>(count) * static_cast<double>(count);
  }
  {
    nn::MetaWeightsScope meta(tower, component_label(Component::VisionEncoder));
    OwnerScope owner({component_label(Component::VisionEncoder), -1, MemoryRole::Activations});
    const int64_t patch_values =
        config.in_channels * config.temporal_patch_size * config.patch_size * config.patch_size;
    vision.activation_bytes = measure_activation_peak([&] {
      tower.forward(Tensor::empty({patches, patch_values}, dtype, Device::meta()), grids, dtype);
    });
  }
  // Two flops per weight per patch, and attention's two products bounded by whole-picture attention in
  // every block (the window blocks attend less).
  double block_parameters = 0;
  for (auto& block : tower.blocks())
    block.visit("",
                [&](const std::string&, Tensor& t) { block_parameters += static_cast<double>(t.numel()); });
  const double depth = static_cast<double>(config.depth);
  vision.flops_per_pass = 2.0 * static_cast<double>(patches) * block_parameters +
                          4.0 * squared_patches * static_cast<double>(config.hidden_size) * depth;
  vision.attention_scores_per_pass = squared_patches * static_cast<double>(config.num_heads) * depth;
  return vision;
}

// A job's pictures as they shape its plan: the vision tower's grids, the reference latents and the source
// an img2img job starts from.
std::string references_key(const JobGeometry& geometry) {
  std::string key;
  if (geometry.encodes_source) key += "/source@" + std::to_string(geometry.first_step);
  for (const ReferencePicture& picture : geometry.references) {
    key += "/ref" + std::to_string(picture.grid_thw[1]) + "x" + std::to_string(picture.grid_thw[2]) + ":" +
           std::to_string(picture.vae.width) + "x" + std::to_string(picture.vae.height);
  }
  return key;
}

// What streamed weights may lock of the checkpoint's pages: --pin-budget, else as much as leaves a quarter
// of the host's memory available to everything else (locked pages cannot be reclaimed). The plan locks no
// more than it streams.
int64_t page_lock_budget(Device device, const MemoryOptions& options, const HostMemoryInfo& host) {
  if (device.is_cpu() || !host_page_locks().available()) return 0;
  if (options.page_lock_budget_bytes) return *options.page_lock_budget_bytes;
  return std::max<int64_t>(0, host.available_bytes - host.total_bytes / 4);
}

}  // namespace

bool can_split_tokens(const QwenImageTransformerConfig& config, int devices) {
  return devices > 1 && !config.zero_cond_t && config.num_attention_heads % devices == 0;
}

std::vector<ComponentFacts> job_facts(const QwenImageModel& model, const JobGeometry& geometry,
                                      const std::string& prompt, const MemoryOptions& options,
                                      const Degradation& degradation, const std::vector<AppliedLora>& loras) {
  std::vector<ComponentFacts> facts;
  if (!geometry.references.empty()) {
    check(model.vision_encoder != nullptr, "an edit job needs the model's vision encoder");
    facts.push_back(vision_encoder_facts(model, geometry));
  }
  std::vector<int64_t> text_tokens;
  facts.push_back(text_encoder_facts(model, geometry, prompt, loras, text_tokens));
  facts.push_back(
      transformer_facts(model, geometry, options, degradation.feed_forward_chunk, loras, text_tokens));
  facts.push_back(vae_facts(model, geometry, degradation));
  return facts;
}

MachineFacts machine_facts(const QwenImageModel& model, const MemoryOptions& options) {
  MachineFacts machine;
  machine.device = model.device;
  machine.device_is_host = model.device.is_cpu();
  HostMemoryInfo host = host_memory_info();
  machine.host_budget = options.host_budget_bytes.value_or(host.available_bytes);
  machine.page_lock_budget = page_lock_budget(model.device, options, host);
  std::vector<Device> devices{model.device};
  devices.insert(devices.end(), options.extra_devices.begin(), options.extra_devices.end());
  if (can_split_tokens(model.configs.transformer, static_cast<int>(devices.size())) &&
      (options.plan.parallelism == Parallelism::Auto || options.plan.parallelism == Parallelism::Sequence)) {
    machine.exchange = shared_communicator(devices)->description();
  }
  machine.device_budget = device_budget(model.device, options, host);
  for (const Device& device : options.extra_devices) {
    check(device.type == model.device.type && device != model.device,
          "--devices must name distinct devices of one kind, got " + model.device.str() + " and " +
              device.str());
    machine.extra_pools.push_back({device, device_budget(device, options, host)});
  }
  machine.profile = machine_profile(model.device, model.activation_dtype);
  if (!machine.extra_pools.empty())
    machine.interconnect_bytes_per_s = interconnect_bytes_per_s(model.device, options.extra_devices.front());
  return machine;
}

std::string plan_key(const JobGeometry& geometry, const std::string& prompt, const MemoryOptions& options) {
  auto budget = [](const std::optional<int64_t>& bytes) { return bytes ? std::to_string(*bytes) : "-"; };
  std::string devices;
  for (const Device& device : options.extra_devices) devices += device.str() + ",";
  return std::string(strategy_name(options.plan.strategy)) + "/" +
         std::string(lora_apply_name(options.lora_apply)) + "/" +
         std::string(parallelism_name(options.plan.parallelism)) + "/" + devices + "/" +
         std::string(quality_name(options.plan.quality)) + "/" + budget(options.device_budget_bytes) + "/" +
         budget(options.host_budget_bytes) + "/" + budget(options.page_lock_budget_bytes) + "/" +
         std::to_string(geometry.width) + "x" + std::to_string(geometry.height) + "/" +
         std::to_string(geometry.steps) + "/" + (geometry.guided ? "cfg" : "nocfg") + "/" +
         std::to_string(geometry.max_sequence_length) + "/" + std::to_string(prompt.size()) + "/" +
         std::to_string(geometry.guided ? geometry.negative_prompt.size() : 1) + references_key(geometry);
}

}  // namespace canvas
