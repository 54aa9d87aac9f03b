// What a user asks of a job (text-to-image, editing pictures, img2img or inpainting), and the checks it must
// pass against the model's configs before any weight is loaded.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "image/outpaint.h"
#include "io/png_image.h"
#include "models/lora.h"
#include "pipeline/qwen_image_model.h"

namespace canvas {

// What every job samples with, whatever pictures it takes. How the negative prompt and cfg_scale decide
// guidance differs between pipelines: each request says.
struct SamplingSettings {
  std::string prompt;
  std::optional<std::string> negative_prompt;
  float cfg_scale = 4.0f;
  int steps = 50;
  uint64_t seed = 0;
  // LoRAs applied to the model's weights for this job, in order.
  std::vector<LoraChoice> loras;
  // A fixed shift of the schedule instead of the model's own (FlowMatchSchedulerConfig::with_fixed_shift),
  // as distilled models such as the Lightning LoRAs are sampled.
  std::optional<double> scheduler_shift;
};

struct TextToImageRequest {
  // With cfg_scale > 1 and no negative prompt, " " is used, as the Qwen-Image examples do.
  SamplingSettings sampling;
  int64_t width = 1024;
  int64_t height = 1024;
  int64_t max_sequence_length = 512;
};

// The areas, in pixels, an edit pipeline sizes pictures to (keeping each one's aspect, sides multiples of
// 32): QwenImageEditPlusPipeline's CONDITION_IMAGE_SIZE for what the vision tower sees, VAE_IMAGE_SIZE for
// the reference latents, and the default output size. The older QwenImageEditPipeline sizes its one picture
// to `output` for both. Smaller areas make tiny test models fast; users keep the defaults.
struct EditAreas {
  int64_t condition = 384 * 384;
  int64_t vae = 1024 * 1024;
  int64_t output = 1024 * 1024;
};

struct ImageEditRequest {
  // True classifier-free guidance runs only with a negative prompt and cfg_scale > 1, as in the reference
  // edit pipelines (which default to cfg_scale 4 and then run unguided without one). The whole prompt is
  // encoded: the edit pipelines take no max_sequence_length.
  SamplingSettings sampling;
  // The output size; each defaults to the last picture's aspect at areas.output. Both are floored to
  // multiples of 16 as the reference does.
  std::optional<int64_t> width;
  std::optional<int64_t> height;
  std::vector<RgbImage> images;  // the pictures to edit or draw from, in the prompt's order
  EditAreas areas;
  TextPositions text_positions = TextPositions::MRope;
};

// img2img and inpainting (QwenImageImg2ImgPipeline, QwenImageInpaintPipeline) on a text-to-image model, and
// edit-inpainting (QwenImageEditInpaintPipeline) on an edit model: the picture is encoded by the VAE, noised
// to the strength's first step and denoised from there; with a mask, only its white part is repainted.
struct ImageToImageRequest {
  // Guidance as text-to-image (cfg_scale > 1, " " without a negative prompt); edit-inpainting as the edit
  // pipelines (only with a negative prompt).
  SamplingSettings sampling;
  // The working size, each defaulting to the picture's, floored to multiples of 16 as the reference does.
  // Edit-inpainting sizes itself from the picture (at `edit_area`) and takes neither.
  std::optional<int64_t> width;
  std::optional<int64_t> height;
  int64_t max_sequence_length = 512;
  RgbImage image;
  // Inpainting: white (grey level >= 128 once processed) is repainted, black kept. A mask of another size
  // than the picture is stretched to the working size, as the reference does.
  std::optional<RgbImage> mask;
  // How much of the schedule runs: its last min(steps * strength, steps) steps.
  double strength = 0.6;
  // Inpainting only: the region around the mask grown by this many pixels is cut out, inpainted at the
  // working size and pasted back (the reference's padding_mask_crop).
  std::optional<int64_t> padding_mask_crop;
  // Applied to the mask picture before the pipeline, in this order: ImageOps.invert, then
  // VaeImageProcessor.blur (a Gaussian of this radius; 0: none).
  bool invert_mask = false;
  float mask_blur = 0.0f;
  // Outpainting (text-to-image models): the canvas is grown by these margins (right and bottom further, to
  // multiples of 16), the new area edge-extended and repainted, and the picture's pixels come back exactly.
  // The pipeline makes the mask and the working size: give no mask, width, height or padding_mask_crop.
  std::optional<OutpaintMargins> outpaint;
  // Edit-inpainting: the output's area (QwenImageEditInpaintPipeline's 1024 * 1024) and the text encoder's
  // positions (see ImageEditRequest).
  int64_t edit_area = 1024 * 1024;
  TextPositions text_positions = TextPositions::MRope;
};

// Most pictures one edit takes: each lengthens the text and the transformer's sequences.
inline constexpr size_t kMaxEditImages = 8;

// Largest image side a job accepts: 4096 pixels keeps the rotary position tables (4096 entries in the
// reference) and the token count within what the models were built for.
inline constexpr int64_t kMaxImageSide = 4096;

// Checks a request against the model: sizes, steps (the scheduler's fewest included), guidance, prompt
// length. Throws canvas::Error with the reason.
// The schedule a job samples: the model's, or with `shift` fixed
// (FlowMatchSchedulerConfig::with_fixed_shift).
FlowMatchSchedulerConfig job_scheduler(const QwenImageConfigs& configs, std::optional<double> shift);

void validate_request(const TextToImageRequest& request, const QwenImageConfigs& configs);
// Also checks the model edits, and the number and sizes of the pictures.
void validate_request(const ImageEditRequest& request, const QwenImageConfigs& configs);
// Also checks the picture, the mask and the strength against the steps, and outpainting's margins.
void validate_request(const ImageToImageRequest& request, const QwenImageConfigs& configs);

// The inpainting request an outpainting one runs as: the picture on the grown canvas (margins aligned for
// the model), its mask, and the canvas as the working size; a request without outpaint as it is. Job
// geometry and picture processing take this one.
ImageToImageRequest outpainted_request(const ImageToImageRequest& request, const QwenImageConfigs& configs);

}  // namespace canvas
