#include "pipeline/job_memory.h"

#include <algorithm>

#include "backend/backend.h"
#include "backend/communicator.h"
#include "planning/dry_run.h"
#include "memory/host_memory.h"
#include "models/meta_weights.h"
#include "pipeline/components.h"
#include "pipeline/latent_packing.h"
#include "pipeline/prompt_encoder.h"
#include "pipeline/text_to_image.h"
#include "pipeline/transformer_executor.h"

namespace canvas {

namespace {

bool is_weight_scale(const std::string& name) {
  return name.ends_with(nn::kWeightScaleSuffix);
}

// The dtype a weight has once placed: off the CPU, f32 and f16 floats are stored in the component's
// compute dtype so every GEMM runs on matching operands (nn::place_weights' rule).
DType placed_dtype(const Tensor& tensor, const std::string& name, Device device, DType compute_dtype) {
  bool float_to_convert =
      (tensor.dtype() == DType::F32 || tensor.dtype() == DType::F16) && !is_weight_scale(name);
  return !device.is_cpu() && float_to_convert ? compute_dtype : tensor.dtype();
}

// Converts a model's host weights to their placed dtypes, so placing and streaming copy them as they are.
template <typename Model>
void convert_host_weights(Model& model, Device device, DType compute_dtype) {
  model.visit([&](const std::string& name, Tensor& weight) {
    DType dtype = placed_dtype(weight, name, device, compute_dtype);
    if (dtype != weight.dtype()) weight = weight.to(dtype);
  });
}

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

// Adds the host memory the arrangement's own copies of a model's weights take, by the precision of the
// transformer blocks: weights converted to their placed dtype, and the linears quantization replaces
// (those `in_blocks` says are in quantized blocks). Weights used as mapped cost nothing.
template <typename Model>
void count_host_copies(Model& model, Device device, DType compute_dtype,
                       const std::function<bool(const std::string&)>& in_blocks, ComponentFacts& facts) {
  model.visit([&](const std::string& name, Tensor& tensor) {
    const DType placed = placed_dtype(tensor, name, device, compute_dtype);
    const int64_t converted = placed != tensor.dtype() ? storage_bytes(placed, tensor.numel()) : 0;
    const bool quantized = in_blocks(name) && is_quantized_in_blocks(name, tensor);
    facts.host_copy_bytes[0] += converted;
    for (int p = 1; p < kWeightPrecisions; ++p)
      facts.host_copy_bytes[p] +=
          quantized ? quantized_bytes(tensor, static_cast<WeightPrecision>(p)) : converted;
  });
}

template <typename Visit>
BlockFacts block_facts(const Visit& visit, Device device, DType compute_dtype, bool quantizable) {
  BlockFacts facts;
  visit([&](const std::string& name, Tensor& tensor) {
    int64_t lossless = storage_bytes(placed_dtype(tensor, name, device, compute_dtype), tensor.numel());
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
    total += storage_bytes(placed_dtype(tensor, name, device, compute_dtype), tensor.numel());
  });
  return total;
}

WeightGroup group_of(const std::string& component, int block,
                     const std::function<void(const nn::ParameterVisitor&)>& visit) {
  WeightGroup group{{component, block, MemoryRole::Weights}, {}};
  visit([&](const std::string&, Tensor& tensor) { group.tensors.push_back(&tensor); });
  return group;
}

// The transformer's adaLN projections are read once per job (TransformerExecutor), the rest every step.
bool is_modulation(const std::string& name) {
  return name.starts_with("img_mod.") || name.starts_with("txt_mod.");
}

// What a plan depends on: the job's shape and the memory options.
std::string job_key(const TextToImageRequest& request, const MemoryOptions& options) {
  auto budget = [](const std::optional<int64_t>& bytes) { return bytes ? std::to_string(*bytes) : "-"; };
  std::string devices;
  for (const Device& device : options.extra_devices) devices += device.str() + ",";
  return std::string(strategy_name(options.plan.strategy)) + "/" +
         std::string(parallelism_name(options.plan.parallelism)) + "/" + devices + "/" +
         std::string(quality_name(options.plan.quality)) + "/" + budget(options.device_budget_bytes) + "/" +
         budget(options.host_budget_bytes) + "/" + std::to_string(request.width) + "x" +
         std::to_string(request.height) + "/" + std::to_string(request.steps) + "/" +
         (request.cfg_scale > 1.0f ? "cfg" : "nocfg") + "/" + std::to_string(request.max_sequence_length) +
         "/" + std::to_string(request.prompt.size()) + "/" +
         std::to_string(request.negative_prompt.value_or(" ").size());
}

// The layout the plan gives the transformer's storage: quantizes the host copies of its blocks.
void quantize_transformer(QwenImageTransformer2DModel& transformer, WeightPrecision precision) {
  if (precision == WeightPrecision::Lossless) return;
  transformer.quantize_block_weights(precision == WeightPrecision::Fp8 ? WeightFormat::Fp8PerTensor
                                                                       : WeightFormat::Nf4);
}

}  // namespace

ComponentWeights text_encoder_weights(Qwen2_5_VLTextModel& model) {
  ComponentWeights weights{"text_encoder", {}, {}, {}};
  weights.shared = group_of("text_encoder", -1, [&](const auto& v) { model.visit_shared(v); });
  for (size_t i = 0; i < model.layers().size(); ++i) {
    weights.blocks.push_back(group_of("text_encoder", static_cast<int>(i),
                                      [&](const auto& v) { model.layers()[i].visit("", v); }));
  }
  return weights;
}

ComponentWeights transformer_weights(QwenImageTransformer2DModel& model) {
  ComponentWeights weights{"transformer", {}, {}, {}};
  weights.shared = group_of("transformer", -1, [&](const auto& v) { model.visit_shared(v); });
  for (size_t i = 0; i < model.blocks().size(); ++i) {
    WeightGroup every_step{{"transformer", static_cast<int>(i), MemoryRole::Weights}, {}};
    WeightGroup once = every_step;
    model.blocks()[i].visit("", [&](const std::string& name, Tensor& tensor) {
      (is_modulation(name) ? once : every_step).tensors.push_back(&tensor);
    });
    weights.blocks.push_back(std::move(every_step));
    weights.once_blocks.push_back(std::move(once));
  }
  return weights;
}

ComponentWeights vae_weights(AutoencoderKLQwenImage& model) {
  return {"vae", group_of("vae", -1, [&](const auto& v) { model.visit(v); }), {}, {}};
}

namespace {

// Whether the transformer's tokens can be shared among `devices` devices (sequence parallelism): its heads
// divide among them, and no zero_cond_t, whose reference-image tokens are modulated apart.
bool can_split_tokens(const QwenImageTransformerConfig& config, int devices) {
  return devices > 1 && !config.zero_cond_t && config.num_attention_heads % devices == 0;
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

}  // namespace

MachineFacts machine_facts(const QwenImageComponents& components) {
  const MemoryOptions& options = components.memory_options;
  MachineFacts machine;
  machine.device = components.device;
  machine.device_is_host = components.device.is_cpu();
  HostMemoryInfo host = host_memory_info();
  machine.host_budget = options.host_budget_bytes.value_or(host.available_bytes);
  // A sequence-parallel plan's exchange is set up first, so the free memory measured leaves what the
  // collective library keeps on each device.
  std::vector<Device> devices{components.device};
  devices.insert(devices.end(), options.extra_devices.begin(), options.extra_devices.end());
  if (can_split_tokens(components.transformer->config(), static_cast<int>(devices.size())) &&
      (options.plan.parallelism == Parallelism::Auto || options.plan.parallelism == Parallelism::Sequence)) {
    machine.exchange = shared_communicator(devices)->description();
  }
  machine.device_budget = device_budget(components.device, options, host);
  for (const Device& device : options.extra_devices) {
    check(device.type == components.device.type && device != components.device,
          "--devices must name distinct devices of one kind, got " + components.device.str() + " and " +
              device.str());
    machine.extra_pools.push_back({device, device_budget(device, options, host)});
  }
  machine.profile = machine_profile(components.device, components.activation_dtype);
  if (!machine.extra_pools.empty())
    machine.interconnect_bytes_per_s =
        interconnect_bytes_per_s(components.device, options.extra_devices.front());
  return machine;
}

namespace {

// The text encoder's facts; `text_tokens` receives each prompt's embedding length for the next phase.
ComponentFacts text_encoder_facts(QwenImageComponents& components, const TextToImageRequest& request,
                                  std::vector<int64_t>& text_tokens) {
  const Device device = components.device;
  const DType dtype = components.activation_dtype;
  const bool guided = request.cfg_scale > 1.0f;
  ComponentFacts text;
  Qwen2_5_VLTextModel& text_encoder = *components.text_encoder;
  text.name = "text_encoder";
  text.shared_bytes = shared_bytes([&](const auto& v) { text_encoder.visit_shared(v); }, device, dtype);
  count_host_copies(
      text_encoder, device, dtype, [](const std::string&) { return false; }, text);
  for (auto& layer : text_encoder.layers())
    text.blocks.push_back(block_facts([&](const auto& v) { layer.visit("", v); }, device, dtype, false));
  text.passes = guided ? 2 : 1;
  {
    nn::MetaWeightsScope meta(text_encoder, "text_encoder");
    QwenImagePromptEncoder encoder(components.tokenizer, text_encoder);
    OwnerScope owner({"text_encoder", -1, MemoryRole::Activations});
    text.activation_bytes = measure_activation_peak([&] {
      text_tokens.push_back(encoder.encode(request.prompt, request.max_sequence_length, dtype).embeds.dim(1));
      if (guided) {
        text_tokens.push_back(
            encoder.encode(request.negative_prompt.value_or(" "), request.max_sequence_length, dtype)
                .embeds.dim(1));
      }
    });
  }
  // Two flops per weight per token; the template adds its system tokens to the prompt's.
  const double templated_tokens =
      static_cast<double>(text_tokens.front() + QwenImagePromptEncoder::kTemplateTokens);
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
  nn::MetaWeightsScope meta(transformer, "transformer");
  ComponentPlan mapped;
  mapped.name = "transformer";
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
  OwnerScope owner({"transformer", -1, MemoryRole::Activations});
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
    Tensor latents =
        Tensor::empty({1, img_shapes.front().tokens(), config.in_channels}, dtype, Device::meta());
    executor.set_conditions(std::move(conditions));
    executor.predict(0, latents);
  });
  return (peak + devices - 1) / devices;
}

ComponentFacts transformer_facts(QwenImageComponents& components, const TextToImageRequest& request,
                                 const std::vector<int64_t>& text_tokens) {
  const Device device = components.device;
  const DType dtype = components.activation_dtype;
  const bool guided = request.cfg_scale > 1.0f;
  ComponentFacts denoise;
  QwenImageTransformer2DModel& transformer = *components.transformer;
  const QwenImageTransformerConfig& config = transformer.config();
  denoise.name = "transformer";
  denoise.quantizable = true;
  denoise.shared_bytes = shared_bytes([&](const auto& v) { transformer.visit_shared(v); }, device, dtype);
  count_host_copies(
      transformer, device, dtype,
      [](const std::string& name) { return name.starts_with("transformer_blocks."); }, denoise);
  for (auto& block : transformer.blocks()) {
    BlockFacts every_step = block_facts(
        [&](const nn::ParameterVisitor& v) {
          block.visit("", [&](const std::string& name, Tensor& t) {
            if (!is_modulation(name)) v(name, t);
          });
        },
        device, dtype, true);
    BlockFacts once = block_facts(
        [&](const nn::ParameterVisitor& v) {
          block.visit("", [&](const std::string& name, Tensor& t) {
            if (is_modulation(name)) v(name, t);
          });
        },
        device, dtype, true);
    std::copy(std::begin(once.bytes), std::end(once.bytes), std::begin(every_step.once_bytes));
    denoise.blocks.push_back(every_step);
  }
  const int halves = guided ? 2 : 1;
  denoise.passes = request.steps * halves;
  denoise.passes_per_weight_read = halves;
  const int64_t scale = components.vae_scale_factor();
  const int64_t latent_height = 2 * (request.height / (scale * 2));
  const int64_t latent_width = 2 * (request.width / (scale * 2));
  const std::vector<ImageShape> img_shapes = {{1, latent_height / 2, latent_width / 2}};
  const int64_t image_tokens = img_shapes[0].tokens();
  denoise.activation_bytes =
      transformer_activation_peak(transformer, img_shapes, text_tokens, request.steps, dtype, /*devices=*/1);
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

  const int64_t longest_text = *std::max_element(text_tokens.begin(), text_tokens.end());
  denoise.boundary_bytes = storage_bytes(dtype, (image_tokens + longest_text) * config.inner_dim());
  denoise.pipeline_splittable = true;
  const int devices = 1 + static_cast<int>(components.memory_options.extra_devices.size());
  if (can_split_tokens(config, devices)) {
    denoise.attention_heads = static_cast<int>(config.num_attention_heads);
    denoise.sequence_devices = devices;
    denoise.sequence_activation_bytes =
        transformer_activation_peak(transformer, img_shapes, text_tokens, request.steps, dtype, devices);
  }
  if (devices == denoise.passes_per_weight_read && devices > 1) {
    denoise.guidance_activation_bytes =
        transformer_activation_peak(transformer, img_shapes, {longest_text}, request.steps, dtype, 1);
  }
  return denoise;
}

ComponentFacts vae_facts(QwenImageComponents& components, const TextToImageRequest& request, bool tiled) {
  const int64_t scale = components.vae_scale_factor();
  const int64_t latent_height = 2 * (request.height / (scale * 2));
  const int64_t latent_width = 2 * (request.width / (scale * 2));
  ComponentFacts decode;
  AutoencoderKLQwenImage& vae = *components.vae;
  decode.name = "vae";
  decode.shared_bytes =
      shared_bytes([&](const auto& v) { vae.visit(v); }, components.device, components.vae_dtype);
  count_host_copies(
      vae, components.device, components.vae_dtype, [](const std::string&) { return false; }, decode);
  {
    nn::MetaWeightsScope meta(vae, "vae");
    OwnerScope owner({"vae", -1, MemoryRole::Activations});
    decode.activation_bytes = measure_activation_peak([&] {
      Tensor latents = Tensor::empty({1, vae.config().z_dim, latent_height, latent_width},
                                     components.vae_dtype, Device::meta());
      Tensor normalized = vae.denormalize_latents(latents);
      if (tiled) {
        vae.tiled_decode(normalized, VaeTiling{});
      } else {
        vae.decode(normalized);
      }
    });
  }
  return decode;
}

}  // namespace

std::vector<ComponentFacts> text_to_image_facts(QwenImageComponents& components,
                                                const TextToImageRequest& request, bool vae_tiling) {
  std::vector<int64_t> text_tokens;
  ComponentFacts text = text_encoder_facts(components, request, text_tokens);
  return {text, transformer_facts(components, request, text_tokens),
          vae_facts(components, request, vae_tiling)};
}

JobMemory& prepare_job_memory(QwenImageComponents& components, const TextToImageRequest& request,
                              const Degradation& degradation) {
  std::string key = job_key(request, components.memory_options) + "/" + degradation.to_json().dump();
  if (components.memory && components.memory->job_key == key) return *components.memory;
  // The previous arrangement goes first: its device memory is part of what the new plan may use.
  components.drop_arrangement();
  components.transformer->enable_forward_chunking(degradation.feed_forward_chunk);

  std::vector<ComponentFacts> facts = text_to_image_facts(components, request, degradation.vae_tiling);
  MachineFacts machine = machine_facts(components);
  MemoryPlan plan = plan_memory(facts, machine, components.memory_options.plan);
  if (degradation.any()) {
    apply_degradation(degradation, plan);
    plan = evaluate_plan(facts, machine, plan);
  }

  const Device device = components.device;
  convert_host_weights(*components.text_encoder, device, components.activation_dtype);
  convert_host_weights(*components.transformer, device, components.activation_dtype);
  convert_host_weights(*components.vae, device, components.vae_dtype);
  quantize_transformer(*components.transformer, plan.component("transformer").precision);

  components.memory = std::make_unique<JobMemory>();
  JobMemory& memory = *components.memory;
  memory.facts = std::move(facts);
  memory.machine = machine;
  memory.plan = plan;
  memory.job_key = key;
  for (const char* component : {"text_encoder", "transformer", "vae"})
    arrange_component(components, component, plan.component(component));
  return memory;
}

void arrange_component(QwenImageComponents& components, const std::string& component,
                       const ComponentPlan& plan) {
  JobMemory& memory = *components.memory;
  const Device device = components.device;
  if (component == "text_encoder") {
    memory.text_encoder =
        std::make_unique<ComponentPlacement>(device, text_encoder_weights(*components.text_encoder), plan);
  } else if (component == "vae") {
    memory.vae = std::make_unique<ComponentPlacement>(device, vae_weights(*components.vae), plan);
  } else {
    check(component == "transformer", "no component named '" + component + "' to arrange");
    memory.transformer.reset();
    memory.transformer_replicas.clear();
    if (!is_replicated(plan.spread)) {
      memory.transformer =
          std::make_unique<ComponentPlacement>(device, transformer_weights(*components.transformer), plan);
      return;
    }
    // Copies of the model share its host weights; each device's placement swaps in its own device copies.
    std::vector<ComponentWeights> replicas{transformer_weights(*components.transformer)};
    for (size_t share = 1; share < plan.shares.size(); ++share) {
      memory.transformer_replicas.push_back(
          std::make_unique<QwenImageTransformer2DModel>(*components.transformer));
      replicas.push_back(transformer_weights(*memory.transformer_replicas.back()));
    }
    memory.transformer = std::make_unique<ComponentPlacement>(device, std::move(replicas), plan);
  }
}

std::vector<const QwenImageTransformer2DModel*> JobMemory::transformers(
    const QwenImageComponents& components) const {
  std::vector<const QwenImageTransformer2DModel*> models{components.transformer.get()};
  for (const auto& replica : transformer_replicas) models.push_back(replica.get());
  return models;
}

std::vector<Device> JobMemory::devices() const {
  std::vector<Device> all;
  for (const DevicePool& pool : machine.pools()) all.push_back(pool.device);
  return all;
}

void release_cached_memory(const JobMemory& memory, Device primary) {
  backend_for(primary).release_cached_memory();
  for (const DevicePool& pool : memory.machine.extra_pools) backend_for(pool.device).release_cached_memory();
}

}  // namespace canvas

namespace canvas {

std::string recovery_key(const QwenImageComponents& components, const TextToImageRequest& request) {
  return backend_for(components.device).description() + "|" + components.layout.root.string() + "|" +
         std::string(dtype_name(components.activation_dtype)) + "|" +
         job_key(request, components.memory_options);
}

void store_transformer_weights(QwenImageComponents& components, WeightPrecision precision) {
  const int64_t chunk = components.transformer->forward_chunk_size();
  *components.transformer = *components.loaded_transformer;
  convert_host_weights(*components.transformer, components.device, components.activation_dtype);
  quantize_transformer(*components.transformer, precision);
  components.transformer->enable_forward_chunking(chunk);
}

}  // namespace canvas
