// A loaded Qwen-Image model: its configs, tokenizer and networks, the weights memory-mapped from the
// checkpoint. It holds nothing about any job and no job changes it: a job arranges working copies of the
// networks (pipeline/weight_arrangement.h), so one loaded model serves any number of jobs, one after the
// other or side by side.
#pragma once

#include <filesystem>
#include <memory>
#include <optional>

#include "io/model_layout.h"
#include "models/autoencoder_kl_qwen_image.h"
#include "models/lora.h"
#include "models/qwen2_5_vl_model.h"
#include "models/qwen_image_transformer.h"
#include "pipeline/flow_match_scheduler.h"
#include "pipeline/qwen2_vl_image_processor.h"
#include "planning/component.h"
#include "tokenizer/qwen2_tokenizer.h"

namespace canvas {

// What a checkpoint was published for, from model_index.json's pipeline class. The edit pipelines share
// the text-to-image networks and add the text encoder's vision tower and the image processor.
enum class QwenImagePipelineKind {
  TextToImage,  // QwenImagePipeline and its siblings on the same weights (img2img, inpaint)
  Edit,         // QwenImageEditPipeline (Qwen-Image-Edit): one picture, in the prompt template itself
  EditPlus,     // QwenImageEditPlusPipeline (Qwen-Image-Edit-2509 / -2511): several pictures
};

// Everything a request is checked against and a job is shaped by, read before any weight.
struct QwenImageConfigs {
  ModelLayout layout;
  QwenImagePipelineKind kind = QwenImagePipelineKind::TextToImage;
  Qwen2_5_VLTextConfig text_encoder;
  QwenImageTransformerConfig transformer;
  AutoencoderKLQwenImageConfig vae;
  FlowMatchSchedulerConfig scheduler;
  // Edit pipelines only: the text encoder's config as a whole (its vision tower and special tokens) and the
  // processor/ folder's image processor.
  std::optional<Qwen2_5_VLConfig> vision_language;
  std::optional<Qwen2VLImageProcessorConfig> image_processor;

  bool edits() const { return kind != QwenImagePipelineKind::TextToImage; }

  // Pixels per latent cell: 2 ^ (number of VAE downsamples).
  int64_t vae_scale_factor() const;
  // Image sides must be multiples of this: a latent 2x2 patch per transformer token.
  int64_t pixel_multiple() const { return vae_scale_factor() * 2; }
  int64_t latent_channels() const { return vae.z_dim; }
};

// Resolves `model` (a diffusers folder, a Hugging Face cache entry or snapshot, or a single-file transformer
// with `parts`) and reads its configs. Throws canvas::Error naming what is missing or inconsistent (e.g. the
// text encoder's hidden size against the transformer's joint_attention_dim).
QwenImageConfigs read_qwen_image_configs(const std::filesystem::path& model, const ModelParts& parts = {});

struct QwenImageModel {
  QwenImageConfigs configs;
  Device device;
  DType activation_dtype = DType::F32;
  // The VAE decodes in f32 on every device: in bf16 its output drifts about 1.8e-2 from the reference
  // (measured on the H200), and its one pass per image costs little next to the denoising steps.
  DType vae_dtype = DType::F32;
  Qwen2Tokenizer tokenizer;
  // The networks as loaded, weights mapped from the checkpoint.
  std::shared_ptr<const Qwen2_5_VLTextModel> text_encoder;
  std::shared_ptr<const Qwen2_5_VisionTransformerPretrainedModel> vision_encoder;  // edit pipelines only
  std::shared_ptr<const QwenImageTransformer2DModel> transformer;
  std::shared_ptr<const AutoencoderKLQwenImage> vae;

  explicit QwenImageModel(Qwen2Tokenizer tokenizer_) : tokenizer(std::move(tokenizer_)) {}
};

// Reads the chosen LoRA files against the model's networks (models/lora.h read_loras).
std::vector<AppliedLora> job_loras(const QwenImageModel& model, const std::vector<LoraChoice>& choices);

// Loads every network of a Qwen-Image model (the vision tower too for an edit model), its weights
// memory-mapped: each job's memory plan decides what goes onto the device and how. Activations are f32 on the
// CPU and `activation_dtype` (bf16 by default) on a GPU.
QwenImageModel load_qwen_image(QwenImageConfigs configs, Device device,
                               std::optional<DType> activation_dtype = std::nullopt);
QwenImageModel load_qwen_image(const std::filesystem::path& model, Device device,
                               std::optional<DType> activation_dtype = std::nullopt);

}  // namespace canvas
