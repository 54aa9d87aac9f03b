// The loaded parts of a Qwen-Image model, shared by text-to-image, edit and inpaint.
#pragma once

#include <filesystem>
#include <memory>
#include <optional>
#include <string>

#include "io/model_layout.h"
#include "models/autoencoder_kl_qwen_image.h"
#include "models/qwen2_5_vl_text.h"
#include "models/qwen_image_transformer.h"
#include "pipeline/flow_match_scheduler.h"
#include "pipeline/job_memory.h"
#include "tokenizer/qwen2_tokenizer.h"

namespace canvas {

struct QwenImageComponents {
  ModelLayout layout;
  Device device;
  DType activation_dtype = DType::F32;
  // The VAE decodes in f32 on every device: in bf16 its output drifts about 1.8e-2 from the reference
  // (measured on the H200), and its one pass per image costs little next to the denoising steps.
  DType vae_dtype = DType::F32;
  Qwen2Tokenizer tokenizer;
  std::unique_ptr<Qwen2_5_VLTextModel> text_encoder;
  std::unique_ptr<QwenImageTransformer2DModel> transformer;
  std::unique_ptr<AutoencoderKLQwenImage> vae;
  FlowMatchSchedulerConfig scheduler_config;

  // How jobs plan their memory, and the current job's arrangement of the weights.
  MemoryOptions memory_options;
  std::unique_ptr<JobMemory> memory;
  // The models as loaded (mapped from the checkpoint), which a new plan starts from: plans convert and
  // quantize the working models' host weights.
  std::shared_ptr<const Qwen2_5_VLTextModel> loaded_text_encoder;
  std::shared_ptr<const QwenImageTransformer2DModel> loaded_transformer;
  std::shared_ptr<const AutoencoderKLQwenImage> loaded_vae;

  explicit QwenImageComponents(Qwen2Tokenizer tokenizer_) : tokenizer(std::move(tokenizer_)) {}
  QwenImageComponents(QwenImageComponents&&) = default;
  QwenImageComponents& operator=(QwenImageComponents&&) = default;
  ~QwenImageComponents();
  // Drops the weights' arrangement (the arrangement points into the models: it goes first) and gives the
  // working models their loaded weights back, so the next job plans from the checkpoint.
  void drop_arrangement();

  // Pixels per latent cell: 2 ^ (number of VAE downsamples).
  int64_t vae_scale_factor() const;
  // Image sides must be multiples of this: a latent 2x2 patch per transformer token.
  int64_t pixel_multiple() const { return vae_scale_factor() * 2; }
};

// Loads every component of a Qwen-Image text-to-image model, its weights memory-mapped: each job's
// memory plan (pipeline/job_memory.h) decides what goes onto the device and how. Activations are f32
// on the CPU and `activation_dtype` (bf16 by default) on a GPU. Throws canvas::Error naming what is
// missing or inconsistent (e.g. the text encoder's hidden size against the transformer's
// joint_attention_dim).
QwenImageComponents load_qwen_image(const std::filesystem::path& model, Device device,
                                    std::optional<DType> activation_dtype = std::nullopt);

}  // namespace canvas
