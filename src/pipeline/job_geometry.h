// The sizes and switches of one job, worked out once from the request and the model's configs: what the
// phases, the planner's dry runs and the cache keys all read.
#pragma once

#include <array>
#include <string>
#include <vector>

#include "pipeline/request.h"

namespace canvas {

struct PixelSize {
  int64_t width = 0;
  int64_t height = 0;
};

// The edit pipelines' calculate_dimensions: the size of `target_area` pixels at aspect `ratio` (width /
// height), each side rounded to a multiple of 32 (half to even, as Python's round).
PixelSize calculate_dimensions(int64_t target_area, double ratio);

// How an edit job sizes one of its pictures.
struct ReferencePicture {
  PixelSize condition;  // resized (Lanczos) for the image processor, which resizes again to the grid
  std::array<int64_t, 3> grid_thw{};  // the processor's patch grid (t, h, w) for the vision tower
  PixelSize vae;                      // resized (Lanczos) for the VAE: the reference latents
};

struct JobGeometry {
  int64_t width = 0;  // of the image, in pixels
  int64_t height = 0;
  int64_t latent_channels = 0;
  int64_t latent_height = 0;  // the VAE's latent grid
  int64_t latent_width = 0;
  // The transformer's token grid of each image: the output first, then each reference picture's.
  std::vector<ImageShape> img_shapes;
  int steps = 0;
  // The model's schedule, or the request's fixed shift of it.
  FlowMatchSchedulerConfig scheduler;
  int64_t max_sequence_length = 0;
  // True classifier-free guidance runs (cfg_scale > 1), with `negative_prompt` as the unconditional prompt:
  // the request's, or " " as the Qwen-Image examples use.
  bool guided = false;
  std::string negative_prompt;
  // Edit jobs: which template the prompt takes, and how each picture is sized.
  QwenImagePipelineKind kind = QwenImagePipelineKind::TextToImage;
  std::vector<ReferencePicture> references;
  TextPositions text_positions = TextPositions::MRope;
  // img2img and inpainting: the picture the VAE encodes (at the output's size) to start from, and the index
  // into the schedule the denoising starts at (the strength's cut). Edit-inpainting's one reference picture
  // is that picture: its latents are the source's, encoded once.
  bool encodes_source = false;
  int first_step = 0;

  // The output's tokens (what is denoised), and those of every image in the sequence.
  int64_t image_tokens() const { return img_shapes.front().tokens(); }
  int64_t sequence_image_tokens() const;
  // Passes of the transformer (and prompts through the text encoder) per step: 2 when guided.
  int guidance_halves() const { return guided ? 2 : 1; }
};

JobGeometry job_geometry(const QwenImageConfigs& configs, const TextToImageRequest& request);
// As QwenImageEditPlusPipeline (or QwenImageEditPipeline) sizes the output and the pictures. Throws
// canvas::Error when a picture's aspect is too extreme to size, or the output size is out of range.
JobGeometry job_geometry(const QwenImageConfigs& configs, const ImageEditRequest& request);
// img2img and inpainting as QwenImageImg2ImgPipeline and QwenImageInpaintPipeline size them (the picture's
// size by default, floored to 16); on an edit model, edit-inpainting as QwenImageEditInpaintPipeline does
// (calculate_dimensions(edit_area, aspect) floored to 16; the picture, resized to it, is both the condition
// image of the legacy edit template and the reference latents). Throws canvas::Error when the size is out
// of range or the strength leaves no step.
JobGeometry job_geometry(const QwenImageConfigs& configs, const ImageToImageRequest& request);

}  // namespace canvas
