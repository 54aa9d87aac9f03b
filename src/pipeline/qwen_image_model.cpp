#include "pipeline/qwen_image_model.h"

namespace canvas {

int64_t QwenImageConfigs::vae_scale_factor() const {
  return int64_t{1} << vae.temperal_downsample.size();
}

QwenImageConfigs read_qwen_image_configs(const std::filesystem::path& model) {
  ModelLayout layout = resolve_model(model);
  QwenImageConfigs configs{
      layout,
      Qwen2_5_VLTextConfig::from_file(layout.component("text_encoder").config_file),
      QwenImageTransformerConfig::from_file(layout.component("transformer").config_file),
      AutoencoderKLQwenImageConfig::from_file(layout.component("vae").config_file),
      FlowMatchSchedulerConfig::from_file(layout.component("scheduler").config_file),
  };
  const int64_t text_hidden = configs.text_encoder.hidden_size;
  const int64_t joint_dim = configs.transformer.joint_attention_dim;
  check(text_hidden == joint_dim, "the text encoder's hidden size " + std::to_string(text_hidden) +
                                      " does not match the transformer's joint_attention_dim " +
                                      std::to_string(joint_dim) +
                                      ": the components come from different models");
  const int64_t latent_channels = configs.transformer.in_channels / 4;
  check(latent_channels == configs.vae.z_dim, "the transformer takes " + std::to_string(latent_channels) +
                                                  " latent channels but the VAE has z_dim " +
                                                  std::to_string(configs.vae.z_dim));
  return configs;
}

QwenImageModel load_qwen_image(QwenImageConfigs configs, Device device,
                               std::optional<DType> activation_dtype) {
  const DType dtype = activation_dtype.value_or(device.is_cpu() ? DType::F32 : DType::BF16);
  check(dtype == DType::F32 || (!device.is_cpu() && (dtype == DType::BF16 || dtype == DType::F16)),
        "activation dtype " + std::string(dtype_name(dtype)) + " is not supported on " + device.str());
  const ModelLayout& layout = configs.layout;
  QwenImageModel model(Qwen2Tokenizer::from_folder(layout.component("tokenizer").folder));
  model.device = device;
  model.activation_dtype = dtype;
  {
    OwnerScope owner({component_label(Component::TextEncoder), -1, MemoryRole::Weights});
    model.text_encoder = std::make_shared<const Qwen2_5_VLTextModel>(
        configs.text_encoder, layout.component("text_encoder").open_weights());
  }
  {
    OwnerScope owner({component_label(Component::Transformer), -1, MemoryRole::Weights});
    model.transformer = std::make_shared<const QwenImageTransformer2DModel>(
        configs.transformer, layout.component("transformer").open_weights());
  }
  {
    OwnerScope owner({component_label(Component::Vae), -1, MemoryRole::Weights});
    model.vae =
        std::make_shared<const AutoencoderKLQwenImage>(configs.vae, layout.component("vae").open_weights());
  }
  model.configs = std::move(configs);
  return model;
}

QwenImageModel load_qwen_image(const std::filesystem::path& model, Device device,
                               std::optional<DType> activation_dtype) {
  return load_qwen_image(read_qwen_image_configs(model), device, activation_dtype);
}

}  // namespace canvas
