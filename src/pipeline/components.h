// The loaded parts of a Qwen-Image model, shared by text-to-image, edit and inpaint.
#pragma once

#include <filesystem>
#include <memory>
#include <string>

#include "io/model_layout.h"
#include "models/autoencoder_kl_qwen_image.h"
#include "models/qwen2_5_vl_text.h"
#include "models/qwen_image_transformer.h"
#include "pipeline/flow_match_scheduler.h"
#include "tokenizer/qwen2_tokenizer.h"

namespace canvas {

struct QwenImageComponents {
  ModelLayout layout;
  Device device;
  DType activation_dtype = DType::F32;
  Qwen2Tokenizer tokenizer;
  std::unique_ptr<Qwen2_5_VLTextModel> text_encoder;
  std::unique_ptr<QwenImageTransformer2DModel> transformer;
  std::unique_ptr<AutoencoderKLQwenImage> vae;
  FlowMatchSchedulerConfig scheduler_config;

  // Pixels per latent cell: 2 ^ (number of VAE downsamples).
  int64_t vae_scale_factor() const;
  // Image sides must be multiples of this: a latent 2x2 patch per transformer token.
  int64_t pixel_multiple() const { return vae_scale_factor() * 2; }
};

// Loads every component of a Qwen-Image text-to-image model. Weights stay memory-mapped on the CPU.
// Throws canvas::Error naming what is missing or inconsistent (e.g. the text encoder's hidden size
// against the transformer's joint_attention_dim).
QwenImageComponents load_qwen_image(const std::filesystem::path& model, Device device);

}  // namespace canvas
