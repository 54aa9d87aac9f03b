#include "app/a1111_api.h"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <span>

#include "app/job_spec.h"
#include "app/request_fields.h"
#include "util/error.h"

namespace canvas::app {
namespace {

// A setting clients send at a default that does nothing; other values ask for `what`.
struct InertField {
  std::string name;
  std::vector<nlohmann::json> inert;
  std::string what;
};

const std::vector<InertField>& common_inert_fields() {
  static const std::vector<InertField> fields = {
      {"subseed_strength", {0}, "variation seeds"},
      {"seed_resize_from_w", {-1, 0}, "resizing the seed's noise"},
      {"seed_resize_from_h", {-1, 0}, "resizing the seed's noise"},
      {"restore_faces", {false}, "face restoration"},
      {"tiling", {false}, "tiling images"},
      {"styles", {nlohmann::json::array()}, "prompt styles"},
      {"script_name", {""}, "scripts"},
      {"alwayson_scripts", {nlohmann::json::object()}, "always-on scripts (ControlNet, ADetailer, ...)"},
      {"refiner_checkpoint", {"", "None", "none"}, "a refiner model"},
      {"infotext", {""}, "settings read from an infotext"},
      {"s_churn", {0}, "churn (noise added while sampling)"},
      {"s_min_uncond", {0}, "skipping the unconditional pass"},
      {"firstpass_image", {}, "a first-pass image"},
  };
  return fields;
}

const std::vector<InertField>& txt2img_inert_fields() {
  static const std::vector<InertField> fields = {
      {"enable_hr", {false}, "hires fix"},
      {"firstphase_width", {0}, "hires fix's first pass"},
      {"firstphase_height", {0}, "hires fix's first pass"},
  };
  return fields;
}

const std::vector<InertField>& img2img_inert_fields() {
  static const std::vector<InertField> fields = {
      {"resize_mode", {0}, "resizing other than just resize (crop, fill or latent upscale)"},
      {"initial_noise_multiplier", {1}, "scaling the initial noise"},
      {"latent_mask", {}, "a separate latent mask"},
      {"mask_round", {true}, "a soft (unrounded) mask"},
  };
  return fields;
}

// Fields translated below, in both endpoints and in img2img only.
constexpr std::string_view kCommonFields[] = {"prompt",
                                              "negative_prompt",
                                              "seed",
                                              "steps",
                                              "cfg_scale",
                                              "width",
                                              "height",
                                              "batch_size",
                                              "n_iter",
                                              "sampler_name",
                                              "sampler_index",
                                              "scheduler",
                                              "override_settings",
                                              "disable_extra_networks",
                                              "send_images"};
constexpr std::string_view kImg2ImgFields[] = {"init_images",
                                               "mask",
                                               "denoising_strength",
                                               "mask_blur",
                                               "mask_blur_x",
                                               "mask_blur_y",
                                               "inpainting_mask_invert",
                                               "inpaint_full_res",
                                               "inpaint_full_res_padding",
                                               "inpainting_fill",
                                               "include_init_images",
                                               "outpaint"};
// Fields that change nothing here.
constexpr std::string_view kCommonIgnoredFields[] = {"subseed",
                                                     "save_images",
                                                     "do_not_save_samples",
                                                     "do_not_save_grid",
                                                     "eta",
                                                     "s_tmin",
                                                     "s_tmax",
                                                     "s_noise",
                                                     "script_args",
                                                     "force_task_id",
                                                     "comments",
                                                     "refiner_switch_at",
                                                     "override_settings_restore_afterwards",
                                                     "distilled_cfg_scale"};
constexpr std::string_view kTxt2ImgIgnoredFields[] = {"denoising_strength", "hr_scale",
                                                      "hr_upscaler",        "hr_second_pass_steps",
                                                      "hr_resize_x",        "hr_resize_y",
                                                      "hr_checkpoint_name", "hr_sampler_name",
                                                      "hr_scheduler",       "hr_prompt",
                                                      "hr_negative_prompt", "hr_cfg",
                                                      "hr_distilled_cfg",   "hr_additional_modules"};
constexpr std::string_view kImg2ImgIgnoredFields[] = {"image_cfg_scale"};
// Native fields with no A1111 counterpart, passed on as they are.
constexpr std::string_view kNativeFields[] = {"loras",    "lora_apply", "scheduler_shift", "preset",
                                              "strategy", "quality",    "priority",        "text_positions"};

bool listed(std::string_view name, std::span<const std::string_view> names) {
  return std::find(names.begin(), names.end(), name) != names.end();
}

bool listed(std::string_view name, const std::vector<InertField>& fields) {
  return std::any_of(fields.begin(), fields.end(),
                     [&](const InertField& field) { return field.name == name; });
}

void check_fields(const nlohmann::json& body, bool img2img) {
  check_object(body, "the request body");
  const std::vector<InertField>& endpoint_inert = img2img ? img2img_inert_fields() : txt2img_inert_fields();
  for (const auto& [name, value] : body.items()) {
    const bool known = listed(name, kCommonFields) || listed(name, kCommonIgnoredFields) ||
                       listed(name, kNativeFields) || listed(name, common_inert_fields()) ||
                       listed(name, endpoint_inert) ||
                       (img2img ? listed(name, kImg2ImgFields) || listed(name, kImg2ImgIgnoredFields)
                                : listed(name, kTxt2ImgIgnoredFields));
    if (!known)
      throw RequestError(400, name, "unknown field " + name + " for " + (img2img ? "img2img" : "txt2img"));
  }
  for (const std::vector<InertField>* fields : {&common_inert_fields(), &endpoint_inert})
    for (const InertField& field : *fields) check_inert(body, field.name, field.inert, field.what);
}

std::string lower(std::string_view text) {
  std::string result(text);
  for (char& c : result) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return result;
}

void check_sampler(const nlohmann::json& body) {
  for (const std::string name : {"sampler_name", "sampler_index"}) {
    const std::optional<std::string> sampler = string_field(body, name);
    if (sampler && !sampler->empty() && lower(*sampler) != "euler" && lower(*sampler) != "k_euler")
      throw RequestError(
          400, name, name + " '" + *sampler + "' is not available: the one sampler is Euler (flow matching)");
  }
  const std::optional<std::string> scheduler = string_field(body, "scheduler");
  if (scheduler && !scheduler->empty() && lower(*scheduler) != "automatic")
    throw RequestError(
        400, "scheduler",
        "scheduler '" + *scheduler +
            "' is not available: the one schedule is the model's own (Automatic); a fixed shift "
            "is the native scheduler_shift");
}

// The model override_settings.sd_model_checkpoint names, refusing settings the server does not have.
std::optional<std::string> checkpoint_override(const nlohmann::json& body) {
  if (!has_field(body, "override_settings")) return std::nullopt;
  const nlohmann::json& settings = body.at("override_settings");
  if (!settings.is_object())
    throw RequestError(400, "override_settings",
                       "override_settings must be an object, got " + settings.dump());
  std::optional<std::string> model;
  for (const auto& [key, value] : settings.items()) {
    const std::string field = "override_settings." + key;
    if (value.is_null() || key == "CLIP_stop_at_last_layers") continue;  // no CLIP text encoder here
    if (key == "sd_model_checkpoint" && value.is_string()) {
      model = a1111_checkpoint_model(value.get<std::string>());
    } else if (!(key == "sd_vae" && (value == "Automatic" || value == "None")) &&
               !(key == "samples_format" && value == "png")) {
      throw RequestError(
          400, field,
          field + " " + value.dump() +
              " cannot be applied: only sd_model_checkpoint (a name), sd_vae Automatic or None, "
              "samples_format png and CLIP_stop_at_last_layers (ignored) can");
    }
  }
  return model;
}

// Takes A1111's extra-network tags (<lora:NAME>, <lora:NAME:WEIGHT>; <lyco:...> alike) out of the prompt,
// adding the LoRAs they name to `loras` as native "NAME" or "NAME:WEIGHT".
std::string take_lora_tags(const std::string& prompt, nlohmann::json& loras) {
  std::string rest;
  size_t position = 0;
  for (size_t open = prompt.find('<'); open != std::string::npos; open = prompt.find('<', open + 1)) {
    const size_t close = prompt.find('>', open);
    if (close == std::string::npos) break;
    const std::string tag = prompt.substr(open + 1, close - open - 1);
    const size_t colon = tag.find(':');
    const bool network_tag =
        colon != std::string::npos && colon > 0 && colon + 1 < tag.size() &&
        std::all_of(tag.begin(), tag.begin() + static_cast<std::ptrdiff_t>(colon),
                    [](char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_'; });
    if (!network_tag) continue;
    const std::string type = tag.substr(0, colon);
    const std::string arguments = tag.substr(colon + 1);
    if (type != "lora" && type != "lyco")
      throw RequestError(
          400, "prompt",
          "<" + tag + "> asks for an extra network of type " + type + "; only LoRAs exist here");
    const size_t weight_colon = arguments.find(':');
    if (weight_colon != std::string::npos) {
      const std::string weight = arguments.substr(weight_colon + 1);
      double value = 0;
      const auto [stop, error] = std::from_chars(weight.data(), weight.data() + weight.size(), value);
      if (weight_colon == 0 || error != std::errc() || stop != weight.data() + weight.size())
        throw RequestError(400, "prompt",
                           "<" + tag + "> must be <" + type + ":NAME> or <" + type +
                               ":NAME:WEIGHT> with one weight for the whole model");
    }
    loras.push_back(arguments);
    rest += prompt.substr(position, open - position);
    position = close + 1;
    open = close;
  }
  return rest + prompt.substr(position);
}

// What txt2img and img2img share.
nlohmann::json translate_common(const nlohmann::json& body, bool img2img) {
  check_fields(body, img2img);
  nlohmann::json native = nlohmann::json::object();
  for (const std::string_view name : kNativeFields)
    if (has_field(body, std::string(name))) native[std::string(name)] = body.at(std::string(name));
  const bool extra_networks = !boolean_field(body, "disable_extra_networks").value_or(false);
  if (std::optional<std::string> prompt = string_field(body, "prompt")) {
    nlohmann::json loras = nlohmann::json::array();
    native["prompt"] = take_lora_tags(*prompt, loras);
    if (!loras.empty() && extra_networks) {
      if (has_field(body, "loras"))
        throw RequestError(400, "loras",
                           "LoRAs are given both as <lora:...> tags in the prompt and as loras");
      native["loras"] = loras;
    }
  }
  // An empty negative prompt is A1111's "none", which guides differently from a given one on edit models.
  if (const std::optional<std::string> negative = string_field(body, "negative_prompt");
      negative && !negative->empty())
    native["negative_prompt"] = *negative;
  for (const std::string name : {"seed", "steps", "cfg_scale", "width", "height"})
    if (has_field(body, name)) native[name] = body.at(name);
  const std::optional<int64_t> batch_size = integer_field(body, "batch_size");
  const std::optional<int64_t> n_iter = integer_field(body, "n_iter");
  for (const auto& [name, count] : {std::pair{"batch_size", batch_size}, std::pair{"n_iter", n_iter}})
    if (count && *count < 1)
      throw RequestError(400, name, std::string(name) + " must be at least 1, got " + std::to_string(*count));
  if (batch_size || n_iter) native["batch_count"] = batch_size.value_or(1) * n_iter.value_or(1);
  check_sampler(body);
  if (const std::optional<std::string> model = checkpoint_override(body)) native["model"] = *model;
  // Read by a1111_images_response once the job has run: a malformed one is refused before.
  for (const std::string name : {"send_images", "include_init_images"}) boolean_field(body, name);
  return native;
}

// A1111's 0/1 integers that clients also send as booleans.
std::optional<bool> flag_field(const nlohmann::json& body, const std::string& name) {
  if (!has_field(body, name)) return std::nullopt;
  const nlohmann::json& value = body.at(name);
  if (value.is_boolean()) return value.get<bool>();
  if (value.is_number_integer() && (value == 0 || value == 1)) return value == 1;
  throw RequestError(400, name, name + " must be 0, 1, true or false, got " + value.dump());
}

// mask_blur, or mask_blur_x and mask_blur_y when they agree (A1111 blurs each by 4 unless told).
std::optional<double> mask_blur(const nlohmann::json& body) {
  if (const std::optional<double> blur = number_field(body, "mask_blur")) return blur;
  const std::optional<double> x = number_field(body, "mask_blur_x");
  const std::optional<double> y = number_field(body, "mask_blur_y");
  if (!x && !y) return std::nullopt;
  if (x.value_or(4.0) != y.value_or(4.0))
    throw RequestError(
        400, x ? "mask_blur_x" : "mask_blur_y",
        "mask_blur_x and mask_blur_y differ: the mask is blurred alike in both directions here");
  return x.value_or(4.0);
}

}  // namespace

nlohmann::json a1111_txt2img_request(const nlohmann::json& body) {
  nlohmann::json native = translate_common(body, false);
  native["task"] = "generate";
  return native;
}

nlohmann::json a1111_img2img_request(const nlohmann::json& body) {
  nlohmann::json native = translate_common(body, true);
  const nlohmann::json init_images =
      has_field(body, "init_images") ? body.at("init_images") : nlohmann::json();
  if (!init_images.is_array() || init_images.size() != 1 || !init_images.front().is_string())
    throw RequestError(
        400, "init_images",
        "init_images must hold one picture in base64, got " +
            (init_images.is_array() ? std::to_string(init_images.size()) + " entries" : init_images.dump()));
  native["image"] = init_images.front();
  if (has_field(body, "outpaint")) {
    native["task"] = "inpaint";
    native["outpaint"] = body.at("outpaint");
  }
  if (const std::optional<double> strength = number_field(body, "denoising_strength"))
    native["strength"] = *strength;
  const std::optional<std::string> mask = string_field(body, "mask");
  if (!mask || mask->empty()) {
    if (!native.contains("task")) native["task"] = "img2img";
    return native;
  }
  native["task"] = "inpaint";
  native["mask"] = *mask;
  if (const std::optional<double> blur = mask_blur(body)) native["mask_blur"] = *blur;
  if (const std::optional<bool> invert = flag_field(body, "inpainting_mask_invert"))
    native["invert_mask"] = *invert;
  if (flag_field(body, "inpaint_full_res").value_or(false))
    native["padding_mask_crop"] = integer_field(body, "inpaint_full_res_padding").value_or(0);
  check_inert(body, "inpainting_fill", {1},
              "filling the masked area before sampling (only 1, original, is kept)");
  return native;
}

namespace {

// A1111's infotext_utils.quote: values holding a comma, a colon or a line break are written as JSON strings.
std::string quote(const std::string& text) {
  if (text.find_first_of(",:\n") == std::string::npos) return text;
  return nlohmann::json(text).dump();
}

std::string infotext_value(const nlohmann::json& value) {
  return value.is_string() ? quote(value.get<std::string>()) : value.dump();
}

// One image's infotext, as A1111's create_infotext writes it.
std::string infotext(const nlohmann::json& prompt, const std::string& negative_prompt,
                     const std::vector<std::pair<std::string, nlohmann::json>>& settings) {
  std::string text = prompt.is_string() ? prompt.get<std::string>() : "";
  if (!negative_prompt.empty()) text += "\nNegative prompt: " + negative_prompt;
  std::string line;
  for (const auto& [key, value] : settings)
    if (!value.is_null()) line += (line.empty() ? "" : ", ") + key + ": " + infotext_value(value);
  return text + "\n" + line;
}

}  // namespace

nlohmann::json a1111_images_response(const nlohmann::json& request, const JobOutcome& outcome,
                                     const std::vector<std::string>& png_base64) {
  check(png_base64.size() == outcome.images.size(), "the job made " + std::to_string(outcome.images.size()) +
                                                        " images but " + std::to_string(png_base64.size()) +
                                                        " were encoded");
  const bool img2img = request.contains("init_images");
  const nlohmann::json& ran = outcome.parameters;
  const auto setting = [&](const std::string& name) {
    return ran.contains(name) ? ran.at(name) : nlohmann::json();
  };
  const nlohmann::json prompt = setting("prompt");
  const std::string negative_prompt =
      setting("negative_prompt").is_string() ? setting("negative_prompt").get<std::string>() : "";
  const nlohmann::json strength = img2img ? setting("strength") : nlohmann::json();
  const size_t count = outcome.images.size();
  nlohmann::json seeds = nlohmann::json::array();
  nlohmann::json infotexts = nlohmann::json::array();
  for (const JobImage& image : outcome.images) {
    seeds.push_back(image.seed);
    infotexts.push_back(infotext(prompt, negative_prompt,
                                 {{"Steps", setting("steps")},
                                  {"Sampler", "Euler"},
                                  {"CFG scale", setting("cfg_scale")},
                                  {"Seed", image.seed},
                                  {"Size", std::to_string(image.width) + "x" + std::to_string(image.height)},
                                  {"Model", setting("model")},
                                  {"Denoising strength", strength}}));
  }
  const JobImage* first = outcome.images.empty() ? nullptr : &outcome.images.front();
  const nlohmann::json info = {
      {"prompt", prompt},
      {"all_prompts", std::vector<nlohmann::json>(count, prompt)},
      {"negative_prompt", negative_prompt},
      {"all_negative_prompts", std::vector<std::string>(count, negative_prompt)},
      {"seed", first ? nlohmann::json(first->seed) : nlohmann::json()},
      {"all_seeds", seeds},
      {"subseed", -1},
      {"all_subseeds", std::vector<int>(count, -1)},
      {"subseed_strength", 0},
      {"width", first ? nlohmann::json(first->width) : nlohmann::json()},
      {"height", first ? nlohmann::json(first->height) : nlohmann::json()},
      {"sampler_name", "Euler"},
      {"cfg_scale", setting("cfg_scale")},
      {"steps", setting("steps")},
      {"batch_size", 1},
      {"restore_faces", false},
      {"face_restoration_model", nullptr},
      {"sd_model_name", setting("model")},
      {"sd_model_hash", nullptr},
      {"sd_vae_name", nullptr},
      {"sd_vae_hash", nullptr},
      {"seed_resize_from_w", -1},
      {"seed_resize_from_h", -1},
      {"denoising_strength", strength},
      {"extra_generation_params", nlohmann::json::object()},
      {"index_of_first_image", 0},
      {"infotexts", infotexts},
      {"styles", nlohmann::json::array()},
      {"job_timestamp", nullptr},
      {"clip_skip", nullptr},
      {"is_using_inpainting_conditioning", false},
      {"version", CANVAS_VERSION},
  };
  nlohmann::json parameters = request;
  if (!boolean_field(request, "include_init_images").value_or(false))
    for (const char* picture : {"init_images", "mask"})
      if (parameters.contains(picture)) parameters[picture] = nullptr;
  const bool send_images = boolean_field(request, "send_images").value_or(true);
  return {{"images", send_images ? nlohmann::json(png_base64) : nlohmann::json::array()},
          {"parameters", parameters},
          {"info", info.dump()}};
}

nlohmann::json a1111_progress(const A1111Progress& progress) {
  const nlohmann::json state = {
      {"skipped", false},
      {"interrupted", progress.interrupted},
      {"stopping_generation", false},
      {"job", progress.job},
      {"job_count", progress.job_count},
      {"job_timestamp", progress.job_timestamp},
      {"job_no", progress.job_no},
      {"sampling_step", progress.sampling_step},
      {"sampling_steps", progress.sampling_steps},
  };
  nlohmann::json response = {{"progress", 0.0},
                             {"eta_relative", 0.0},
                             {"state", state},
                             {"current_image", nullptr},
                             {"textinfo", nullptr}};
  if (progress.job_count <= 0) return response;
  // As A1111's progressapi: 0.01 up front keeps the estimate finite before the first step.
  double done = 0.01 + static_cast<double>(progress.job_no) / progress.job_count;
  if (progress.sampling_steps > 0)
    done += static_cast<double>(progress.sampling_step) / progress.sampling_steps / progress.job_count;
  response["eta_relative"] = progress.elapsed_seconds / done - progress.elapsed_seconds;
  response["progress"] = std::min(done, 1.0);
  if (progress.current_image) response["current_image"] = *progress.current_image;
  return response;
}

std::string a1111_model_title(const A1111Model& model) {
  return model.sha256 ? model.id + " [" + model.sha256->substr(0, 10) + "]" : model.id;
}

std::string a1111_checkpoint_model(std::string_view checkpoint) {
  const size_t open = checkpoint.rfind(" [");
  if (open == std::string_view::npos || !checkpoint.ends_with(']') || open + 3 >= checkpoint.size())
    return std::string(checkpoint);
  const std::string_view hash = checkpoint.substr(open + 2, checkpoint.size() - open - 3);
  const bool hexadecimal = std::all_of(hash.begin(), hash.end(),
                                       [](char c) { return std::isxdigit(static_cast<unsigned char>(c)); });
  return std::string(hexadecimal ? checkpoint.substr(0, open) : checkpoint);
}

nlohmann::json a1111_sd_models(const std::vector<A1111Model>& models) {
  nlohmann::json list = nlohmann::json::array();
  for (const A1111Model& model : models)
    list.push_back({{"title", a1111_model_title(model)},
                    {"model_name", model.id},
                    {"hash", model.sha256 ? nlohmann::json(model.sha256->substr(0, 10)) : nlohmann::json()},
                    {"sha256", model.sha256 ? nlohmann::json(*model.sha256) : nlohmann::json()},
                    {"filename", model.path},
                    {"config", nullptr}});
  return list;
}

nlohmann::json a1111_options(const A1111Model& current) {
  return {{"sd_model_checkpoint", a1111_model_title(current)},
          {"sd_checkpoint_hash", current.sha256 ? nlohmann::json(*current.sha256) : nlohmann::json()}};
}

nlohmann::json a1111_samplers() {
  return nlohmann::json::array({{{"name", "Euler"},
                                 {"aliases", nlohmann::json::array({"k_euler"})},
                                 {"options", nlohmann::json::object()}}});
}

}  // namespace canvas::app
