#include "app/job_spec.h"

#include <cmath>
#include <set>
#include <sstream>

#include "app/request_fields.h"
#include "app/sampling_presets.h"
#include "app/seed_option.h"
#include "image/decode.h"
#include "planning/planner.h"
#include "util/base64.h"
#include "util/sha256.h"

namespace canvas::app {

namespace {

using nlohmann::json;

[[noreturn]] void refuse(const std::string& field, const std::string& message, int status = 400) {
  throw RequestError(status, field, field.empty() ? message : "\"" + field + "\": " + message);
}

const json* field_of(const json& body, const char* name) {
  return has_field(body, name) ? &body.at(name) : nullptr;
}

std::string range_text(double low, double high) {
  std::ostringstream text;
  text << "must be from " << low << " to " << high;
  return text.str();
}

std::optional<double> number_in(const json& body, const char* name, double low, double high) {
  const std::optional<double> number = number_field(body, name);
  if (number && (!std::isfinite(*number) || *number < low || *number > high))
    refuse(name, range_text(low, high));
  return number;
}

std::optional<int64_t> integer_in(const json& body, const char* name, int64_t low, int64_t high) {
  // A number past int64's range is refused as out of range, not as the wrong type.
  const json* value = field_of(body, name);
  if (value && value->is_number_unsigned() && value->get<uint64_t>() > static_cast<uint64_t>(high))
    refuse(name, range_text(static_cast<double>(low), static_cast<double>(high)));
  const std::optional<int64_t> number = integer_field(body, name);
  if (number && (*number < low || *number > high))
    refuse(name, range_text(static_cast<double>(low), static_cast<double>(high)));
  return number;
}

// Base64 (a data: URL too) decoded and read as a picture, refused from its header past `max_pixels`.
InputImage image_field(const json& value, const std::string& field, int64_t max_pixels) {
  if (!value.is_string()) refuse(field, "must be a picture as a base64 string");
  std::string_view text = value.get_ref<const std::string&>();
  if (text.starts_with("data:")) {
    const size_t comma = text.find(',');
    if (comma == std::string_view::npos || text.substr(0, comma).find(";base64") == std::string_view::npos)
      refuse(field, "a data: URL must be base64 (data:image/png;base64,...)");
    text.remove_prefix(comma + 1);
  }
  std::optional<std::vector<uint8_t>> bytes = base64_decode(text);
  if (!bytes) refuse(field, "is not valid base64");
  InputImage image;
  image.name = field;
  try {
    image.decoded = decode_image(*bytes, field, max_pixels);
  } catch (const Error& error) {
    refuse(field, error.what());
  }
  image.sha256 = sha256_hex(*bytes);
  return image;
}

LoraChoice lora_choice(const json& entry, const std::string& field,
                       const std::function<std::string(const std::string&)>& lora_path) {
  std::string name;
  double strength = 1.0;
  if (entry.is_string()) {
    const std::string& text = entry.get_ref<const std::string&>();
    // "name" or "name:strength", as the command line's --lora.
    LoraChoice parsed;
    try {
      parsed = LoraChoice::parse(text);
    } catch (const Error& error) {
      refuse(field, error.what());
    }
    name = parsed.path.string();
    strength = parsed.strength;
  } else if (entry.is_object()) {
    for (const auto& [key, value] : entry.items()) {
      if (key != "name" && key != "strength")
        refuse(field, "has no field \"" + key + "\": give name and strength");
    }
    const std::optional<std::string> given = string_field(entry, "name");
    if (!given) refuse(field + ".name", "is required");
    name = *given;
    strength = number_in(entry, "strength", -100.0, 100.0).value_or(1.0);
  } else {
    refuse(field, "must be \"name:strength\" or {\"name\": ..., \"strength\": ...}");
  }
  return {lora_path(name), static_cast<float>(strength)};
}

const std::set<std::string>& known_fields() {
  static const std::set<std::string> fields = {"task",
                                               "model",
                                               "prompt",
                                               "negative_prompt",
                                               "cfg_scale",
                                               "steps",
                                               "seed",
                                               "width",
                                               "height",
                                               "batch_count",
                                               "loras",
                                               "lora_apply",
                                               "scheduler_shift",
                                               "preset",
                                               "strategy",
                                               "quality",
                                               "priority",
                                               "image",
                                               "images",
                                               "mask",
                                               "mask_alpha",
                                               "mask_from_alpha",
                                               "invert_mask",
                                               "mask_blur",
                                               "padding_mask_crop",
                                               "strength",
                                               "text_positions",
                                               "outpaint"};
  return fields;
}

JobTask parse_task(const std::string& name) {
  for (JobTask task : {JobTask::Generate, JobTask::Img2Img, JobTask::Inpaint, JobTask::Edit})
    if (task_name(task) == name) return task;
  refuse("task", "must be generate, img2img, inpaint or edit; got \"" + name + "\"");
}

}  // namespace

std::string_view task_name(JobTask task) {
  switch (task) {
    case JobTask::Generate:
      return "generate";
    case JobTask::Img2Img:
      return "img2img";
    case JobTask::Inpaint:
      return "inpaint";
    case JobTask::Edit:
      return "edit";
  }
  return "generate";
}

JobSpec parse_job_spec(const json& body, const JobSpecLimits& limits,
                       const std::function<std::string(const std::string& name)>& lora_path) {
  check_object(body, "a job request");
  for (const auto& [key, value] : body.items()) {
    if (!known_fields().contains(key))
      refuse(key, "is not a field of a job request (the README's Serving section lists them)");
  }
  JobSpec spec;
  spec.task = parse_task(string_field(body, "task").value_or("generate"));
  spec.model = string_field(body, "model").value_or("");
  const std::optional<std::string> prompt = string_field(body, "prompt");
  if (!prompt) refuse("prompt", "is required");
  SamplingSettings& sampling = spec.sampling;
  sampling.prompt = *prompt;
  sampling.negative_prompt = string_field(body, "negative_prompt");

  // A preset fills in what the request leaves out, as the command line's --preset does.
  spec.preset = string_field(body, "preset");
  std::optional<SamplingPreset> preset;
  if (spec.preset) {
    try {
      preset = sampling_preset(*spec.preset);
    } catch (const Error& error) {
      refuse("preset", error.what());
    }
  }
  sampling.cfg_scale = static_cast<float>(
      number_in(body, "cfg_scale", 0.0, 100.0).value_or(preset ? preset->cfg_scale : sampling.cfg_scale));
  sampling.steps = static_cast<int>(
      integer_in(body, "steps", 1, limits.max_steps).value_or(preset ? preset->steps : sampling.steps));
  sampling.scheduler_shift = number_in(body, "scheduler_shift", 1e-3, 1e3);
  if (!sampling.scheduler_shift && preset) sampling.scheduler_shift = preset->scheduler_shift;
  if (const json* seed = field_of(body, "seed")) {
    // A whole number from 0 to 2^64 - 1 (JSON readers store it signed or unsigned), or -1 for a random one.
    const bool whole = seed->is_number_integer();
    if (whole && seed->is_number_unsigned()) {
      sampling.seed = seed->get<uint64_t>();
    } else if (whole && seed->get<int64_t>() >= 0) {
      sampling.seed = static_cast<uint64_t>(seed->get<int64_t>());
    } else if (whole && seed->get<int64_t>() == -1) {
      sampling.seed = random_seed();
    } else {
      refuse("seed", "must be a whole number from 0 to 18446744073709551615, or -1 for a random one");
    }
  } else {
    sampling.seed = random_seed();
  }
  if (const json* loras = field_of(body, "loras")) {
    if (!loras->is_array()) refuse("loras", "must be a list");
    for (size_t i = 0; i < loras->size(); ++i)
      sampling.loras.push_back(lora_choice((*loras)[i], "loras[" + std::to_string(i) + "]", lora_path));
  }

  spec.width = integer_in(body, "width", 16, kMaxImageSide);
  spec.height = integer_in(body, "height", 16, kMaxImageSide);
  spec.batch_count = static_cast<int>(integer_in(body, "batch_count", 1, limits.max_batch_count).value_or(1));
  spec.priority = static_cast<int>(integer_in(body, "priority", -100, 100).value_or(0));
  try {
    spec.strategy = string_field(body, "strategy").value_or(spec.strategy);
    parse_strategy(spec.strategy);
  } catch (const Error& error) {
    refuse("strategy", error.what());
  }
  try {
    spec.quality = string_field(body, "quality").value_or(spec.quality);
    parse_quality(spec.quality);
  } catch (const Error& error) {
    refuse("quality", error.what());
  }
  try {
    spec.lora_apply = parse_lora_apply(string_field(body, "lora_apply").value_or("auto"));
  } catch (const Error& error) {
    refuse("lora_apply", error.what());
  }
  const std::string positions = string_field(body, "text_positions").value_or("mrope");
  if (positions != "mrope" && positions != "sequential")
    refuse("text_positions", "must be mrope or sequential");
  spec.text_positions = positions == "sequential" ? TextPositions::Sequential : TextPositions::MRope;

  // The pictures each task takes, and only those.
  const bool edits = spec.task == JobTask::Edit;
  const bool repaints = spec.task == JobTask::Img2Img || spec.task == JobTask::Inpaint;
  if (const json* image = field_of(body, "image")) {
    if (!repaints) refuse("image", "is for img2img and inpaint (an edit takes \"images\")");
    spec.images.push_back(image_field(*image, "image", limits.max_image_pixels));
  }
  if (const json* images = field_of(body, "images")) {
    if (!edits) refuse("images", "is for edit (img2img and inpaint take \"image\")");
    if (!images->is_array() || images->empty() || images->size() > kMaxEditImages)
      refuse("images", "must be a list of 1 to " + std::to_string(kMaxEditImages) + " pictures");
    for (size_t i = 0; i < images->size(); ++i) {
      spec.images.push_back(
          image_field((*images)[i], "images[" + std::to_string(i) + "]", limits.max_image_pixels));
    }
  }
  if (repaints && spec.images.empty())
    refuse("image", "is required for " + std::string(task_name(spec.task)));
  if (edits && spec.images.empty()) refuse("images", "is required for edit");

  const std::set<std::string> inpaint_only = {
      "mask", "mask_alpha", "mask_from_alpha", "invert_mask", "mask_blur", "padding_mask_crop", "outpaint"};
  for (const std::string& name : inpaint_only) {
    if (spec.task != JobTask::Inpaint && field_of(body, name.c_str())) refuse(name, "is for inpaint");
  }
  if (!repaints && field_of(body, "strength")) refuse("strength", "is for img2img and inpaint");
  if (const json* mask = field_of(body, "mask"))
    spec.mask = image_field(*mask, "mask", limits.max_image_pixels);
  spec.mask_alpha = boolean_field(body, "mask_alpha").value_or(false);
  if (spec.mask_alpha && !spec.mask) refuse("mask_alpha", "needs a mask");
  if (spec.mask_alpha && spec.mask->decoded.alpha.empty())
    refuse("mask", "has no transparency, which mask_alpha reads: give a PNG or WebP with an alpha channel");
  spec.mask_from_alpha = boolean_field(body, "mask_from_alpha").value_or(false);
  spec.invert_mask = boolean_field(body, "invert_mask").value_or(false);
  spec.mask_blur = static_cast<float>(number_in(body, "mask_blur", 0.0, 256.0).value_or(0.0));
  spec.padding_mask_crop = integer_in(body, "padding_mask_crop", 0, kMaxImageSide);
  spec.strength = number_in(body, "strength", 0.0, 1.0);
  if (const json* outpaint = field_of(body, "outpaint")) {
    if (!outpaint->is_array() || outpaint->size() != 4)
      refuse("outpaint", "must be four margins in pixels, [left, top, right, bottom]");
    int64_t margins[4];
    for (int i = 0; i < 4; ++i) {
      const json& margin = (*outpaint)[static_cast<size_t>(i)];
      if (!margin.is_number_integer() || margin.get<int64_t>() < 0 || margin.get<int64_t>() > kMaxImageSide)
        refuse("outpaint",
               "each margin must be a whole number of pixels from 0 to " + std::to_string(kMaxImageSide));
      margins[i] = margin.get<int64_t>();
    }
    spec.outpaint = OutpaintMargins{margins[0], margins[1], margins[2], margins[3]};
  }
  if (spec.mask && spec.mask_from_alpha)
    refuse("mask_from_alpha", "give a mask or mask_from_alpha, not both");
  if (spec.task == JobTask::Inpaint && !spec.mask && !spec.mask_from_alpha && !spec.outpaint)
    refuse("mask", "inpainting needs a mask, mask_from_alpha or outpaint");
  return spec;
}

json job_spec_json(const JobSpec& spec) {
  const SamplingSettings& sampling = spec.sampling;
  json record = {{"task", task_name(spec.task)},    {"model", spec.model},
                 {"prompt", sampling.prompt},       {"cfg_scale", sampling.cfg_scale},
                 {"steps", sampling.steps},         {"seed", sampling.seed},
                 {"batch_count", spec.batch_count}, {"strategy", spec.strategy},
                 {"quality", spec.quality},         {"lora_apply", lora_apply_name(spec.lora_apply)},
                 {"priority", spec.priority}};
  if (sampling.negative_prompt) record["negative_prompt"] = *sampling.negative_prompt;
  if (sampling.scheduler_shift) record["scheduler_shift"] = *sampling.scheduler_shift;
  if (spec.preset) record["preset"] = *spec.preset;
  if (spec.width) record["width"] = *spec.width;
  if (spec.height) record["height"] = *spec.height;
  if (!sampling.loras.empty()) {
    record["loras"] = json::array();
    for (const LoraChoice& lora : sampling.loras)
      record["loras"].push_back({{"name", lora.path.filename().string()}, {"strength", lora.strength}});
  }
  auto picture = [](const InputImage& image) {
    return json{
        {"sha256", image.sha256}, {"width", image.decoded.rgb.width}, {"height", image.decoded.rgb.height}};
  };
  if (spec.task == JobTask::Edit) {
    record["images"] = json::array();
    for (const InputImage& image : spec.images) record["images"].push_back(picture(image));
    record["text_positions"] = spec.text_positions == TextPositions::Sequential ? "sequential" : "mrope";
  } else if (!spec.images.empty()) {
    record["image"] = picture(spec.images.front());
  }
  if (spec.task == JobTask::Img2Img || spec.task == JobTask::Inpaint) {
    if (spec.strength) record["strength"] = *spec.strength;
  }
  if (spec.task == JobTask::Inpaint) {
    if (spec.mask) record["mask"] = picture(*spec.mask);
    record["mask_alpha"] = spec.mask_alpha;
    record["mask_from_alpha"] = spec.mask_from_alpha;
    record["invert_mask"] = spec.invert_mask;
    record["mask_blur"] = spec.mask_blur;
    if (spec.padding_mask_crop) record["padding_mask_crop"] = *spec.padding_mask_crop;
    if (spec.outpaint)
      record["outpaint"] = {spec.outpaint->left, spec.outpaint->top, spec.outpaint->right,
                            spec.outpaint->bottom};
  }
  return record;
}

}  // namespace canvas::app
