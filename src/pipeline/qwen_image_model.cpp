#include "pipeline/qwen_image_model.h"

namespace canvas {

int64_t QwenImageConfigs::vae_scale_factor() const {
  return int64_t{1} << vae.temperal_downsample.size();
}

namespace {

constexpr std::string_view kIndexTimestepZeroMarker = "__index_timestep_zero__";

QwenImagePipelineKind pipeline_kind(const std::string& pipeline_class) {
  if (pipeline_class == "QwenImageEditPlusPipeline") return QwenImagePipelineKind::EditPlus;
  if (pipeline_class == "QwenImageEditPipeline" || pipeline_class == "QwenImageEditInpaintPipeline")
    return QwenImagePipelineKind::Edit;
  return QwenImagePipelineKind::TextToImage;
}

// An edit model's vision tower config (in the text encoder's config.json) and its image processor.
void read_edit_configs(QwenImageConfigs& configs) {
  const ModelLayout& layout = configs.layout;
  configs.vision_language = Qwen2_5_VLConfig::from_file(layout.component("text_encoder").config_file);
  const Qwen2_5_VLVisionConfig& vision = configs.vision_language->vision_config;
  check(vision.out_hidden_size == configs.text_encoder.hidden_size,
        "the vision tower's out_hidden_size " + std::to_string(vision.out_hidden_size) +
            " does not match the text encoder's hidden size " +
            std::to_string(configs.text_encoder.hidden_size));
  check(layout.has("processor"), "the " + layout.pipeline_class +
                                     " model_index.json lists no 'processor' component: an edit model needs "
                                     "processor/preprocessor_config.json to size its pictures");
  configs.image_processor = Qwen2VLImageProcessorConfig::from_file(layout.component("processor").folder /
                                                                   "preprocessor_config.json");
  check(configs.image_processor->patch_size == vision.patch_size &&
            configs.image_processor->merge_size == vision.spatial_merge_size &&
            configs.image_processor->temporal_patch_size == vision.temporal_patch_size,
        "the image processor's patch, merge and temporal sizes do not match the vision tower's: the "
        "processor/ and text_encoder/ folders come from different models");
}

QwenImageTransformerConfig transformer_config(const ComponentLayout& transformer) {
  if (!transformer.config_file.empty()) return QwenImageTransformerConfig::from_file(transformer.config_file);
  return QwenImageTransformerConfig::from_weights(transformer.open_weights());
}

}  // namespace

QwenImageConfigs read_qwen_image_configs(const std::filesystem::path& model, const ModelParts& parts) {
  ModelLayout layout = resolve_model(model, parts);
  const QwenImagePipelineKind kind = pipeline_kind(layout.pipeline_class);
  QwenImageConfigs configs{
      layout,
      kind,
      Qwen2_5_VLTextConfig::from_file(layout.component("text_encoder").config_file),
      transformer_config(layout.component("transformer")),
      AutoencoderKLQwenImageConfig::from_file(layout.component("vae").config_file),
      FlowMatchSchedulerConfig::from_file(layout.component("scheduler").config_file),
      std::nullopt,
      std::nullopt,
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
  // ComfyUI's Qwen-Image-Edit-2511 files carry no config: an empty `__index_timestep_zero__` tensor marks
  // zero_cond_t instead, under the transformer's names.
  if (!configs.transformer.zero_cond_t && configs.layout.component("transformer").has_weights()) {
    for (const std::string& name : configs.layout.component("transformer").open_weights().names())
      configs.transformer.zero_cond_t |= name == kIndexTimestepZeroMarker;
  }
  if (configs.edits()) read_edit_configs(configs);
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
  if (configs.vision_language) {
    OwnerScope owner({component_label(Component::VisionEncoder), -1, MemoryRole::Weights});
    model.vision_encoder = std::make_shared<const Qwen2_5_VisionTransformerPretrainedModel>(
        configs.vision_language->vision_config, layout.component("text_encoder").open_weights());
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

std::vector<AppliedLora> job_loras(const QwenImageModel& model, const std::vector<LoraChoice>& choices) {
  return read_loras(choices, model.transformer->config(), model.text_encoder->config());
}

}  // namespace canvas
