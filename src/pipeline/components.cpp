#include "pipeline/components.h"

namespace canvas {

int64_t QwenImageComponents::vae_scale_factor() const {
  return int64_t{1} << vae->config().temperal_downsample.size();
}

QwenImageComponents::~QwenImageComponents() {
  // The arrangement points into the models: it goes before them.
  memory.reset();
}

void QwenImageComponents::drop_arrangement() {
  memory.reset();
  if (loaded_text_encoder) *text_encoder = *loaded_text_encoder;
  if (loaded_transformer) *transformer = *loaded_transformer;
  if (loaded_vae) *vae = *loaded_vae;
}

QwenImageComponents load_qwen_image(const std::filesystem::path& model, Device device,
                                    std::optional<DType> activation_dtype) {
  DType dtype = activation_dtype.value_or(device.is_cpu() ? DType::F32 : DType::BF16);
  check(dtype == DType::F32 || (!device.is_cpu() && (dtype == DType::BF16 || dtype == DType::F16)),
        "activation dtype " + std::string(dtype_name(dtype)) + " is not supported on " + device.str());
  ModelLayout resolved = resolve_model(model);
  Qwen2Tokenizer tokenizer = Qwen2Tokenizer::from_folder(resolved.component("tokenizer").folder);
  QwenImageComponents components(std::move(tokenizer));
  components.layout = std::move(resolved);
  components.device = device;
  components.activation_dtype = dtype;
  const ModelLayout& layout = components.layout;

  const ComponentLayout& text_encoder = layout.component("text_encoder");
  {
    OwnerScope owner({"text_encoder", -1, MemoryRole::Weights});
    components.text_encoder = std::make_unique<Qwen2_5_VLTextModel>(
        Qwen2_5_VLTextConfig::from_file(text_encoder.config_file), text_encoder.open_weights());
  }

  const ComponentLayout& transformer = layout.component("transformer");
  {
    OwnerScope owner({"transformer", -1, MemoryRole::Weights});
    components.transformer = std::make_unique<QwenImageTransformer2DModel>(
        QwenImageTransformerConfig::from_file(transformer.config_file), transformer.open_weights());
  }

  const ComponentLayout& vae = layout.component("vae");
  {
    OwnerScope owner({"vae", -1, MemoryRole::Weights});
    components.vae = std::make_unique<AutoencoderKLQwenImage>(
        AutoencoderKLQwenImageConfig::from_file(vae.config_file), vae.open_weights());
  }

  components.loaded_text_encoder = std::make_shared<const Qwen2_5_VLTextModel>(*components.text_encoder);
  components.loaded_transformer =
      std::make_shared<const QwenImageTransformer2DModel>(*components.transformer);
  components.loaded_vae = std::make_shared<const AutoencoderKLQwenImage>(*components.vae);

  components.scheduler_config =
      FlowMatchSchedulerConfig::from_file(layout.component("scheduler").config_file);

  int64_t text_hidden = components.text_encoder->config().hidden_size;
  int64_t joint_dim = components.transformer->config().joint_attention_dim;
  check(text_hidden == joint_dim, "the text encoder's hidden size " + std::to_string(text_hidden) +
                                      " does not match the transformer's joint_attention_dim " +
                                      std::to_string(joint_dim) +
                                      ": the components come from different models");
  int64_t latent_channels = components.transformer->config().in_channels / 4;
  check(latent_channels == components.vae->config().z_dim,
        "the transformer takes " + std::to_string(latent_channels) +
            " latent channels but the VAE has z_dim " + std::to_string(components.vae->config().z_dim));
  return components;
}

}  // namespace canvas
