// img2img, inpainting and edit-inpainting with Qwen-Image (diffusers' QwenImageImg2ImgPipeline,
// QwenImageInpaintPipeline and QwenImageEditInpaintPipeline): the picture is VAE-encoded with its posterior
// sampled, noised to the strength's first step and denoised from there; with a mask, every step is blended
// back towards the picture outside it. tests/golden/inpaint/README.md gives the reference's full order of
// operations.
#pragma once

#include <optional>
#include <string>

#include "image/vae_image_processor.h"
#include "pipeline/job.h"
#include "pipeline/request.h"

namespace canvas {

// The request's picture and mask as the pipeline's image processors hand them on, made before any weight
// is loaded.
struct ProcessedPictures {
  // The picture the output is pasted into (padding_mask_crop) and, for edit-inpainting, the condition
  // image: the request's, or resized (Lanczos) to the calculated size for edit-inpainting.
  RgbImage picture;
  // The mask as the pipeline is given it: inverted and blurred as the request asks, not binarized; empty
  // without a mask.
  RgbImage mask;
  std::optional<vae_image_processor::CropRegion> crop_region;  // with padding_mask_crop
  Tensor picture_tensor;                                       // [1, 3, H, W] in [-1, 1], host F32
  Tensor packed_mask;  // [1, tokens, 4 * z_dim] host F32 of 0 and 1; undefined without a mask
};

// Steps 1 to 4 of the reference for the job's geometry (of an outpainted_request): the crop region, the
// picture's tensor and the mask binarized on the packed latent grid. Throws canvas::Error for an empty mask
// with padding_mask_crop.
ProcessedPictures process_pictures(const ImageToImageRequest& request, const JobGeometry& geometry);

// Checks the request, plans the job's memory as `options` say, and runs img2img (no mask) or inpainting
// on a text-to-image model, edit-inpainting on an edit model. With padding_mask_crop the image is the
// picture with the inpainted region pasted back (its 8-bit values / 255, at the picture's size); with
// outpaint, the grown canvas with the picture's own pixels pasted back over its place (8-bit values / 255);
// the latents are the working size's. With a `cache`, the job takes over the weights an earlier job of the
// same shape left arranged, and leaves its own there.
JobResult image_to_image(const QwenImageModel& model, const ImageToImageRequest& request,
                         const MemoryOptions& options, const JobObservers& observers = {},
                         ArrangementCache* cache = nullptr);

// The key an img2img job's recoveries are remembered by (recovery_key for its geometry and prompt).
std::string recovery_key(const QwenImageModel& model, const ImageToImageRequest& request,
                         const MemoryOptions& options);

}  // namespace canvas
