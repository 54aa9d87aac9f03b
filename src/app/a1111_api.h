// The AUTOMATIC1111 / Forge web API (/sdapi/v1/...) translated into the native job request
// (app/job_spec.h) and its answers out of the server's state, so that A1111 clients (UIs, bots, scripts)
// run unchanged against `canvas serve`. Pure translations: the HTTP server calls these. Field names follow
// modules/api/models.py (StableDiffusionTxt2ImgProcessingAPI, StableDiffusionImg2ImgProcessingAPI,
// ProgressResponse, SDModelItem) and the processing classes whose fields it exposes.
//
// What the request fields become (null counts as absent; an absent field takes the native default, not
// A1111's, which were chosen for Stable Diffusion 1.5):
//   prompt                  prompt, its <lora:NAME> and <lora:NAME:WEIGHT> tags taken out into loras
//                           (left out with disable_extra_networks)
//   negative_prompt         the same; an empty one is A1111's "none" and left out
//   seed, steps, cfg_scale, width, height                          the same
//   batch_size * n_iter     batch_count (made one after another)
//   sampler_name, sampler_index     Euler only (the flow-matching Euler sampler); scheduler Automatic only
//   override_settings       sd_model_checkpoint: model (a title "NAME [HASH]" or the name);
//                           CLIP_stop_at_last_layers ignored, sd_vae Automatic or None, samples_format png
//   img2img: init_images    one picture: image (base64 or a data: URL)
//            denoising_strength     strength
//            mask           task "inpaint" (without one, or an empty one, "img2img"), and with it:
//            mask_blur      mask_blur; or mask_blur_x and mask_blur_y, which must agree
//            inpainting_mask_invert (0/1)   invert_mask
//            inpaint_full_res (with inpaint_full_res_padding)   padding_mask_crop
//            inpainting_fill        1 (original) only
//            resize_mode    0 (just resize) only
//            outpaint       (native) task "inpaint" with outpaint
// Accepted at the defaults clients send, refused otherwise as asking for what the server cannot do:
// enable_hr, subseed_strength, seed_resize_from_w/h, restore_faces, tiling, styles, script_name,
// alwayson_scripts, refiner_checkpoint, infotext, firstphase_width/height, s_churn, s_min_uncond,
// initial_noise_multiplier, latent_mask, firstpass_image, mask_round. Ignored, as they change nothing here:
// saving (save_images, do_not_save_samples, do_not_save_grid), the hires-fix settings without enable_hr,
// subseed, eta, s_tmin, s_tmax, s_noise, script_args, force_task_id, comments, image_cfg_scale,
// refiner_switch_at, override_settings_restore_afterwards, Forge's distilled_cfg_scale, hr_cfg,
// hr_distilled_cfg and hr_additional_modules, and txt2img's denoising_strength (hires fix only). Native
// fields with no A1111 counterpart pass under their own names: loras, lora_apply, scheduler_shift, preset,
// strategy, quality, priority, text_positions (and img2img's outpaint). Any other field is refused. Errors
// are RequestError naming the A1111 field.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "app/job_outcome.h"

namespace canvas::app {

// POST /sdapi/v1/txt2img and /sdapi/v1/img2img as native requests.
nlohmann::json a1111_txt2img_request(const nlohmann::json& body);
nlohmann::json a1111_img2img_request(const nlohmann::json& body);

// The answer of txt2img and img2img: {images, parameters, info}. `images` holds `png_base64` (none when the
// request set send_images false); `parameters` is the request, without init_images and mask unless it set
// include_init_images; `info` is a JSON string of what the job ran with (seed, all_seeds, prompt, ...) and
// each image's infotext, as A1111's Processed.js() writes it. The settings come from
// outcome.parameters' native fields, the seeds and sizes from outcome.images.
nlohmann::json a1111_images_response(const nlohmann::json& request, const JobOutcome& outcome,
                                     const std::vector<std::string>& png_base64);

// Where the running job stands, for GET /sdapi/v1/progress.
struct A1111Progress {
  std::string job;            // what runs ("txt2img", "img2img"); empty when idle
  std::string job_timestamp;  // when it started, as A1111 writes it: YYYYMMDDhhmmss
  int job_count = 0;          // images the job makes; 0 when idle
  int job_no = 0;             // images it has finished
  int sampling_step = 0;      // steps done on the image being made
  int sampling_steps = 0;
  double elapsed_seconds = 0.0;  // since the job started
  bool interrupted = false;
  std::optional<std::string> current_image;  // a preview PNG in base64
};

// The ProgressResponse: {progress, eta_relative, state, current_image, textinfo}, progress and the
// estimated seconds left worked out as A1111 does (0 and 0 when idle).
nlohmann::json a1111_progress(const A1111Progress& progress);

// A model as GET /sdapi/v1/sd-models lists it.
struct A1111Model {
  std::string id;                     // the server's model id
  std::string path;                   // where it is read from
  std::optional<std::string> sha256;  // lower-case hex, when known
};

// "ID [HASH]" with the first 10 digits of the SHA-256, as A1111 titles checkpoints; "ID" without one.
std::string a1111_model_title(const A1111Model& model);
// The model id a checkpoint names (sd_model_checkpoint): a title without its " [HASH]", or the id itself.
std::string a1111_checkpoint_model(std::string_view checkpoint);

// GET /sdapi/v1/sd-models: [{title, model_name, hash, sha256, filename, config}].
nlohmann::json a1111_sd_models(const std::vector<A1111Model>& models);
// GET /sdapi/v1/options: {sd_model_checkpoint, sd_checkpoint_hash} of the model jobs run by default.
nlohmann::json a1111_options(const A1111Model& current);
// GET /sdapi/v1/samplers: the one sampler there is, [{name: "Euler", aliases: ["k_euler"], options: {}}].
nlohmann::json a1111_samplers();

}  // namespace canvas::app
