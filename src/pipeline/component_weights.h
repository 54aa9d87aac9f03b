// Each network's weights split the way its executor reads them (blocks, the once-read parts of blocks, the
// rest), for the planner's facts and the weights' placement alike.
#pragma once

#include <string>

#include "models/autoencoder_kl_qwen_image.h"
#include "models/qwen2_5_vl_text.h"
#include "models/qwen2_5_vl_vision.h"
#include "models/qwen_image_transformer.h"
#include "pipeline/device_placement.h"

namespace canvas {

ComponentWeights vision_encoder_weights(Qwen2_5_VisionTransformerPretrainedModel& model);
ComponentWeights text_encoder_weights(Qwen2_5_VLTextModel& model);
ComponentWeights transformer_weights(QwenImageTransformer2DModel& model);
ComponentWeights vae_weights(AutoencoderKLQwenImage& model);

// Whether a transformer block's weight is one of its adaLN projections, read once per job
// (TransformerExecutor::precompute_modulation) rather than every step.
bool is_modulation(const std::string& name);

}  // namespace canvas
