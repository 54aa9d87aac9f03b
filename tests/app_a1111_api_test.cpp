#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "app/a1111_api.h"
#include "test_util.h"

namespace canvas::app {
namespace {

using nlohmann::json;

// What the webuiapi package (sdwebuiapi) posts to /sdapi/v1/txt2img, every field at its default but those
// set here: A1111's defaults for what the server cannot do, which do nothing.
json webuiapi_txt2img() {
  return {{"enable_hr", false},
          {"hr_scale", 2},
          {"hr_upscaler", "Latent"},
          {"hr_second_pass_steps", 0},
          {"hr_resize_x", 0},
          {"hr_resize_y", 0},
          {"denoising_strength", 0.7},
          {"firstphase_width", 0},
          {"firstphase_height", 0},
          {"prompt", "a castle on a hill <lora:lightning:0.8>"},
          {"styles", json::array()},
          {"seed", -1},
          {"subseed", -1},
          {"subseed_strength", 0.0},
          {"seed_resize_from_h", 0},
          {"seed_resize_from_w", 0},
          {"batch_size", 2},
          {"n_iter", 3},
          {"steps", 20},
          {"cfg_scale", 7.0},
          {"width", 1024},
          {"height", 768},
          {"restore_faces", false},
          {"tiling", false},
          {"do_not_save_samples", false},
          {"do_not_save_grid", false},
          {"negative_prompt", ""},
          {"eta", 1.0},
          {"s_churn", 0},
          {"s_tmax", 0},
          {"s_tmin", 0},
          {"s_noise", 1},
          {"override_settings",
           {{"sd_model_checkpoint", "qwen-image [0123456789]"}, {"CLIP_stop_at_last_layers", 1}}},
          {"override_settings_restore_afterwards", true},
          {"sampler_name", "Euler"},
          {"sampler_index", "Euler"},
          {"script_name", nullptr},
          {"script_args", json::array()},
          {"send_images", true},
          {"save_images", false},
          {"alwayson_scripts", json::object()}};
}

// What webuiapi posts to /sdapi/v1/img2img with a mask.
json webuiapi_inpaint() {
  return {{"init_images", {"data:image/png;base64,iVBORw0KGgpmb3g="}},
          {"mask", "data:image/png;base64,iVBORw0KGgptYXNr"},
          {"resize_mode", 0},
          {"denoising_strength", 0.75},
          {"mask_blur", 4},
          {"inpainting_fill", 1},
          {"inpaint_full_res", true},
          {"inpaint_full_res_padding", 32},
          {"inpainting_mask_invert", 0},
          {"initial_noise_multiplier", 1},
          {"prompt", "a red door"},
          {"styles", json::array()},
          {"seed", 1234},
          {"subseed", -1},
          {"subseed_strength", 0},
          {"seed_resize_from_h", 0},
          {"seed_resize_from_w", 0},
          {"batch_size", 1},
          {"n_iter", 1},
          {"steps", 30},
          {"cfg_scale", 4.0},
          {"image_cfg_scale", 1.5},
          {"width", 1024},
          {"height", 1024},
          {"restore_faces", false},
          {"tiling", false},
          {"do_not_save_samples", false},
          {"do_not_save_grid", false},
          {"negative_prompt", "ugly"},
          {"eta", 1.0},
          {"s_churn", 0},
          {"s_tmax", 0},
          {"s_tmin", 0},
          {"s_noise", 1},
          {"override_settings", json::object()},
          {"override_settings_restore_afterwards", true},
          {"sampler_name", "Euler"},
          {"sampler_index", "Euler"},
          {"include_init_images", false},
          {"script_name", nullptr},
          {"script_args", json::array()},
          {"send_images", true},
          {"save_images", false},
          {"alwayson_scripts", json::object()}};
}

json with(json body, const json& changes) {
  body.update(changes);
  return body;
}

void expect_refused(const std::function<void()>& action, const std::string& field,
                    const std::string& message) {
  const RequestError error = test::request_error_of(action);
  EXPECT_EQ(error.status(), 400);
  EXPECT_EQ(error.field(), field);
  test::expect_contains(error.what(), message);
}

TEST(A1111Api, TranslatesAWebuiapiTxt2Img) {
  EXPECT_EQ(a1111_txt2img_request(webuiapi_txt2img()), json({{"task", "generate"},
                                                             {"prompt", "a castle on a hill "},
                                                             {"loras", {"lightning:0.8"}},
                                                             {"seed", -1},
                                                             {"steps", 20},
                                                             {"cfg_scale", 7.0},
                                                             {"width", 1024},
                                                             {"height", 768},
                                                             {"batch_count", 6},
                                                             {"model", "qwen-image"}}));
}

// Absent fields take the native defaults; Forge's fields for Flux and the hires fix's settings change
// nothing.
TEST(A1111Api, TranslatesAMinimalAndAForgeTxt2Img) {
  EXPECT_EQ(a1111_txt2img_request(json{{"prompt", "a cat"}, {"steps", 8}}),
            json({{"task", "generate"}, {"prompt", "a cat"}, {"steps", 8}}));
  const json forge = {{"prompt", "a cat"},
                      {"distilled_cfg_scale", 3.5},
                      {"hr_cfg", 1.0},
                      {"hr_distilled_cfg", 3.5},
                      {"hr_additional_modules", {"Use same choices"}},
                      {"scheduler", "Automatic"},
                      {"sampler_name", "euler"},
                      {"hr_scheduler", "Simple"},
                      {"refiner_checkpoint", "None"},
                      {"force_task_id", "task(abc)"}};
  EXPECT_EQ(a1111_txt2img_request(forge), json({{"task", "generate"}, {"prompt", "a cat"}}));
}

TEST(A1111Api, PassesNativeFieldsAndReadsLoraTags) {
  const json body = {{"prompt", "<lora:style> a <lyco:detail:-0.5>fox <b>"},
                     {"negative_prompt", "blurry"},
                     {"preset", "lightning-8"},
                     {"strategy", "nf4"},
                     {"quality", "4bit"},
                     {"scheduler_shift", 3.0},
                     {"lora_apply", "runtime"},
                     {"priority", 1},
                     {"text_positions", "mrope"}};
  json expected = body;
  expected.update({{"task", "generate"}, {"prompt", " a fox <b>"}, {"loras", {"style", "detail:-0.5"}}});
  EXPECT_EQ(a1111_txt2img_request(body), expected);
  // With extra networks off, A1111 still takes the tags out of the prompt but applies none.
  EXPECT_EQ(a1111_txt2img_request(json{{"prompt", "a fox <lora:x:1>"}, {"disable_extra_networks", true}}),
            json({{"task", "generate"}, {"prompt", "a fox "}}));
  EXPECT_EQ(a1111_txt2img_request(json{{"prompt", "a fox"}, {"loras", {"x:1"}}}),
            json({{"task", "generate"}, {"prompt", "a fox"}, {"loras", {"x:1"}}}));
}

TEST(A1111Api, RefusesWhatTxt2ImgCannotDo) {
  const auto txt2img = [](const json& changes) {
    return [changes] { a1111_txt2img_request(with(webuiapi_txt2img(), changes)); };
  };
  expect_refused(txt2img({{"sampler_name", "DPM++ 2M"}}), "sampler_name", "'DPM++ 2M' is not available");
  expect_refused(txt2img({{"sampler_index", "Euler a"}}), "sampler_index", "'Euler a' is not available");
  expect_refused(txt2img({{"scheduler", "Karras"}}), "scheduler", "'Karras' is not available");
  expect_refused(txt2img({{"enable_hr", true}}), "enable_hr", "hires fix");
  expect_refused(txt2img({{"subseed_strength", 0.3}}), "subseed_strength", "variation seeds");
  expect_refused(txt2img({{"restore_faces", true}}), "restore_faces", "face restoration");
  expect_refused(txt2img({{"tiling", true}}), "tiling", "tiling");
  expect_refused(txt2img({{"styles", {"cinematic"}}}), "styles", "prompt styles");
  expect_refused(txt2img({{"script_name", "x/y/z plot"}}), "script_name", "scripts");
  expect_refused(txt2img({{"alwayson_scripts", {{"ControlNet", {{"args", {{{"enabled", true}}}}}}}}}),
                 "alwayson_scripts", "always-on scripts");
  expect_refused(txt2img({{"s_churn", 0.5}}), "s_churn", "churn");
  expect_refused(txt2img({{"refiner_checkpoint", "sdxl_refiner"}}), "refiner_checkpoint", "a refiner model");
  expect_refused(txt2img({{"override_settings", {{"sd_vae", "vae-ft-mse.pt"}}}}), "override_settings.sd_vae",
                 "cannot be applied");
  expect_refused(txt2img({{"override_settings", "qwen-image"}}), "override_settings", "must be an object");
  expect_refused(txt2img({{"batch_size", 0}}), "batch_size", "batch_size must be at least 1, got 0");
  expect_refused(txt2img({{"n_iter", -1}}), "n_iter", "n_iter must be at least 1, got -1");
  expect_refused(txt2img({{"prompt", "a <hypernet:anime:1>"}}), "prompt", "only LoRAs exist here");
  expect_refused(txt2img({{"prompt", "a <lora:x:0.5:0.2>"}}), "prompt", "one weight for the whole model");
  expect_refused(txt2img({{"prompt", "a <lora:x:strong>"}}), "prompt", "<lora:NAME:WEIGHT>");
  expect_refused(txt2img({{"loras", {"y:1"}}}), "loras", "both as <lora:...> tags");
  expect_refused(txt2img({{"prompt", 5}}), "prompt", "prompt must be a string");
  expect_refused(txt2img({{"controlnet_units", json::array()}}), "controlnet_units", "unknown field");
  expect_refused(txt2img({{"mask_blur", 4}}), "mask_blur", "unknown field mask_blur for txt2img");
  expect_refused([] { a1111_txt2img_request("prompt"); }, "", "must be a JSON object");
}

TEST(A1111Api, TranslatesAWebuiapiInpainting) {
  EXPECT_EQ(a1111_img2img_request(webuiapi_inpaint()),
            json({{"task", "inpaint"},
                  {"image", "data:image/png;base64,iVBORw0KGgpmb3g="},
                  {"mask", "data:image/png;base64,iVBORw0KGgptYXNr"},
                  {"strength", 0.75},
                  {"mask_blur", 4.0},
                  {"invert_mask", false},
                  {"padding_mask_crop", 32},
                  {"prompt", "a red door"},
                  {"negative_prompt", "ugly"},
                  {"seed", 1234},
                  {"steps", 30},
                  {"cfg_scale", 4.0},
                  {"width", 1024},
                  {"height", 1024},
                  {"batch_count", 1}}));
  // The whole picture (inpaint_full_res 0), the unmasked part repainted, the blur given per direction.
  const json native = a1111_img2img_request(with(webuiapi_inpaint(), {{"inpaint_full_res", 0},
                                                                      {"inpainting_mask_invert", 1},
                                                                      {"mask_blur", nullptr},
                                                                      {"mask_blur_x", 8},
                                                                      {"mask_blur_y", 8}}));
  EXPECT_FALSE(native.contains("padding_mask_crop"));
  EXPECT_EQ(native.at("invert_mask"), true);
  EXPECT_EQ(native.at("mask_blur"), 8.0);
}

// Without a mask, the inpainting settings mean nothing, as in A1111.
TEST(A1111Api, TranslatesImg2ImgAndOutpainting) {
  json body = with(webuiapi_inpaint(), {{"inpainting_fill", 0}, {"denoising_strength", 0.5}});
  body.erase("mask");
  const json native = a1111_img2img_request(body);
  EXPECT_EQ(native.at("task"), "img2img");
  EXPECT_EQ(native.at("strength"), 0.5);
  for (const std::string field : {"mask", "mask_blur", "invert_mask", "padding_mask_crop"})
    EXPECT_FALSE(native.contains(field)) << field;
  EXPECT_EQ(a1111_img2img_request(json{
                {"init_images", {"iVBORw0KGgpmb3g="}}, {"prompt", "more sky"}, {"outpaint", {0, 256, 0, 0}}}),
            json({{"task", "inpaint"},
                  {"image", "iVBORw0KGgpmb3g="},
                  {"prompt", "more sky"},
                  {"outpaint", {0, 256, 0, 0}}}));
}

TEST(A1111Api, RefusesWhatImg2ImgCannotDo) {
  const auto img2img = [](const json& changes) {
    return [changes] { a1111_img2img_request(with(webuiapi_inpaint(), changes)); };
  };
  expect_refused(img2img({{"init_images", nullptr}}), "init_images", "init_images must hold one picture");
  expect_refused(img2img({{"init_images", json::array()}}), "init_images", "got 0 entries");
  expect_refused(img2img({{"init_images", {"a", "b"}}}), "init_images", "got 2 entries");
  expect_refused(img2img({{"init_images", {5}}}), "init_images", "one picture in base64");
  expect_refused(img2img({{"inpainting_fill", 0}}), "inpainting_fill", "only 1, original");
  expect_refused(img2img({{"resize_mode", 1}}), "resize_mode", "just resize");
  expect_refused(img2img({{"mask_round", false}}), "mask_round", "a soft (unrounded) mask");
  expect_refused(img2img({{"initial_noise_multiplier", 1.5}}), "initial_noise_multiplier", "initial noise");
  expect_refused(img2img({{"inpainting_mask_invert", 2}}), "inpainting_mask_invert",
                 "0, 1, true or false, got 2");
  expect_refused(img2img({{"inpaint_full_res", "yes"}}), "inpaint_full_res", "0, 1, true or false");
  expect_refused(img2img({{"mask_blur", nullptr}, {"mask_blur_x", 8}}), "mask_blur_x", "differ");
  expect_refused(img2img({{"denoising_strength", "0.5"}}), "denoising_strength", "must be a number");
  expect_refused(img2img({{"enable_hr", false}}), "enable_hr", "unknown field enable_hr for img2img");
}

TEST(A1111Api, AnswersTxt2ImgAsA1111) {
  JobOutcome outcome;
  outcome.images = {{"/data/jobs/3/0.png", "/v1/jobs/3/images/0", 7, 1024, 768},
                    {"/data/jobs/3/1.png", "/v1/jobs/3/images/1", 8, 1024, 768}};
  outcome.parameters = {{"prompt", "a castle"}, {"negative_prompt", "blurry"}, {"cfg_scale", 4.0},
                        {"steps", 20},          {"model", "team:qwen"},        {"strength", 0.6}};
  const json request = {{"prompt", "a castle"}, {"negative_prompt", "blurry"}, {"steps", 20}, {"n_iter", 2}};
  const json response = a1111_images_response(request, outcome, {"AAAA", "BBBB"});
  EXPECT_EQ(response.at("images"), json({"AAAA", "BBBB"}));
  EXPECT_EQ(response.at("parameters"), request);
  const json info = json::parse(response.at("info").get<std::string>());
  EXPECT_EQ(info.at("prompt"), "a castle");
  EXPECT_EQ(info.at("all_prompts"), json({"a castle", "a castle"}));
  EXPECT_EQ(info.at("negative_prompt"), "blurry");
  EXPECT_EQ(info.at("seed"), 7);
  EXPECT_EQ(info.at("all_seeds"), json({7, 8}));
  EXPECT_EQ(info.at("all_subseeds"), json({-1, -1}));
  EXPECT_EQ(info.at("width"), 1024);
  EXPECT_EQ(info.at("height"), 768);
  EXPECT_EQ(info.at("sampler_name"), "Euler");
  EXPECT_EQ(info.at("cfg_scale"), 4.0);
  EXPECT_EQ(info.at("steps"), 20);
  EXPECT_EQ(info.at("sd_model_name"), "team:qwen");
  EXPECT_TRUE(info.at("denoising_strength").is_null());
  EXPECT_EQ(info.at("infotexts").at(1),
            "a castle\nNegative prompt: blurry\nSteps: 20, Sampler: Euler, CFG scale: 4.0, Seed: 8, Size: "
            "1024x768, "
            "Model: \"team:qwen\"");
  EXPECT_EQ(info.at("version"), CANVAS_VERSION);
  test::expect_contains(test::error_of([&] { a1111_images_response(request, outcome, {"AAAA"}); }),
                        "the job made 2 images but 1 were encoded");
}

// A1111 leaves the pictures out of the parameters it echoes unless asked, and the images with send_images
// false.
TEST(A1111Api, AnswersImg2ImgAsA1111) {
  JobOutcome outcome;
  outcome.images = {{"/data/jobs/4/0.png", "/v1/jobs/4/images/0", 1234, 512, 512}};
  outcome.parameters = {{"prompt", "a red door"},
                        {"cfg_scale", 4.0},
                        {"steps", 30},
                        {"model", "qwen-image"},
                        {"strength", 0.75}};
  const json request = webuiapi_inpaint();
  const json response = a1111_images_response(request, outcome, {"AAAA"});
  EXPECT_TRUE(response.at("parameters").at("init_images").is_null());
  EXPECT_TRUE(response.at("parameters").at("mask").is_null());
  EXPECT_EQ(response.at("parameters").at("prompt"), "a red door");
  const json info = json::parse(response.at("info").get<std::string>());
  EXPECT_EQ(info.at("denoising_strength"), 0.75);
  EXPECT_EQ(info.at("negative_prompt"), "");
  EXPECT_EQ(
      info.at("infotexts").at(0),
      "a red door\nSteps: 30, Sampler: Euler, CFG scale: 4.0, Seed: 1234, Size: 512x512, Model: qwen-image, "
      "Denoising strength: 0.75");
  const json kept = a1111_images_response(
      with(request, {{"include_init_images", true}, {"send_images", false}}), outcome, {"AAAA"});
  EXPECT_EQ(kept.at("parameters").at("init_images"), request.at("init_images"));
  EXPECT_EQ(kept.at("images"), json::array());
}

TEST(A1111Api, ReportsProgressAsA1111) {
  const json idle = a1111_progress({});
  EXPECT_EQ(idle, json({{"progress", 0.0},
                        {"eta_relative", 0.0},
                        {"state",
                         {{"skipped", false},
                          {"interrupted", false},
                          {"stopping_generation", false},
                          {"job", ""},
                          {"job_count", 0},
                          {"job_timestamp", ""},
                          {"job_no", 0},
                          {"sampling_step", 0},
                          {"sampling_steps", 0}}},
                        {"current_image", nullptr},
                        {"textinfo", nullptr}}));
  A1111Progress running;
  running.job = "txt2img";
  running.job_timestamp = "20261207194453";
  running.job_count = 2;
  running.job_no = 1;
  running.sampling_step = 5;
  running.sampling_steps = 10;
  running.elapsed_seconds = 30.0;
  running.current_image = "AAAA";
  const json response = a1111_progress(running);
  EXPECT_DOUBLE_EQ(response.at("progress").get<double>(), 0.76);  // 0.01 + 1/2 + 5/10/2
  EXPECT_DOUBLE_EQ(response.at("eta_relative").get<double>(), 30.0 / 0.76 - 30.0);
  EXPECT_EQ(response.at("current_image"), "AAAA");
  EXPECT_EQ(response.at("state").at("job_no"), 1);
  EXPECT_EQ(response.at("state").at("job_timestamp"), "20261207194453");
  running.job_no = 2;
  running.sampling_step = 10;
  EXPECT_EQ(a1111_progress(running).at("progress"), 1.0);
}

TEST(A1111Api, ListsModelsOptionsAndSamplers) {
  const A1111Model hashed = {"qwen-image", "/models/Qwen-Image",
                             "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"};
  const A1111Model plain = {"qwen-image-edit", "/models/Qwen-Image-Edit-2511", std::nullopt};
  EXPECT_EQ(a1111_model_title(hashed), "qwen-image [0123456789]");
  EXPECT_EQ(a1111_model_title(plain), "qwen-image-edit");
  EXPECT_EQ(a1111_checkpoint_model("qwen-image [0123456789]"), "qwen-image");
  EXPECT_EQ(a1111_checkpoint_model("qwen-image"), "qwen-image");
  EXPECT_EQ(a1111_checkpoint_model("my model [v2]"), "my model [v2]");
  EXPECT_EQ(a1111_checkpoint_model("odd []"), "odd []");
  EXPECT_EQ(a1111_sd_models({hashed, plain}), json({{{"title", "qwen-image [0123456789]"},
                                                     {"model_name", "qwen-image"},
                                                     {"hash", "0123456789"},
                                                     {"sha256", *hashed.sha256},
                                                     {"filename", "/models/Qwen-Image"},
                                                     {"config", nullptr}},
                                                    {{"title", "qwen-image-edit"},
                                                     {"model_name", "qwen-image-edit"},
                                                     {"hash", nullptr},
                                                     {"sha256", nullptr},
                                                     {"filename", "/models/Qwen-Image-Edit-2511"},
                                                     {"config", nullptr}}}));
  EXPECT_EQ(a1111_options(hashed), json({{"sd_model_checkpoint", "qwen-image [0123456789]"},
                                         {"sd_checkpoint_hash", *hashed.sha256}}));
  EXPECT_EQ(a1111_samplers(), json::parse(R"([{"name": "Euler", "aliases": ["k_euler"], "options": {}}])"));
}

}  // namespace
}  // namespace canvas::app
