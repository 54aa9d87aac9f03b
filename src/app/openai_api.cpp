#include "app/openai_api.h"

#include <algorithm>
#include <array>
#include <charconv>
#include <cmath>
#include <optional>
#include <utility>

#include "app/job_spec.h"
#include "app/request_fields.h"
#include "tokenizer/unicode.h"
#include "util/base64.h"
#include "util/error.h"

namespace canvas::app {
namespace {

// An uploaded file's bytes in base64, as the native request carries pictures.
std::string base64_of(const std::string& content) {
  return base64_encode({reinterpret_cast<const uint8_t*>(content.data()), content.size()});
}

// How the text of a form field becomes JSON.
enum class FormType { Text, Integer, Number, Boolean, TextList };

enum class Role {
  OpenAi,      // translated by translate()
  Ignored,     // means nothing for a local model
  Native,      // passed on under its own name
  NativeEdit,  // passed on, in edits only
};

struct Field {
  std::string_view name;
  FormType type;
  Role role;
};

constexpr std::array kFields = {
    Field{"prompt", FormType::Text, Role::OpenAi},
    Field{"n", FormType::Integer, Role::OpenAi},
    Field{"size", FormType::Text, Role::OpenAi},
    Field{"model", FormType::Text, Role::OpenAi},
    Field{"response_format", FormType::Text, Role::OpenAi},
    Field{"quality", FormType::Text, Role::OpenAi},
    Field{"background", FormType::Text, Role::OpenAi},
    Field{"output_format", FormType::Text, Role::OpenAi},
    Field{"stream", FormType::Boolean, Role::OpenAi},
    Field{"user", FormType::Text, Role::Ignored},
    Field{"safety_identifier", FormType::Text, Role::Ignored},
    Field{"moderation", FormType::Text, Role::Ignored},
    Field{"style", FormType::Text, Role::Ignored},
    Field{"input_fidelity", FormType::Text, Role::Ignored},
    Field{"complexity", FormType::Text, Role::Ignored},
    Field{"output_compression", FormType::Integer, Role::Ignored},
    Field{"partial_images", FormType::Integer, Role::Ignored},
    Field{"negative_prompt", FormType::Text, Role::Native},
    Field{"cfg_scale", FormType::Number, Role::Native},
    Field{"steps", FormType::Integer, Role::Native},
    Field{"seed", FormType::Integer, Role::Native},
    Field{"width", FormType::Integer, Role::Native},
    Field{"height", FormType::Integer, Role::Native},
    Field{"batch_count", FormType::Integer, Role::Native},
    Field{"loras", FormType::TextList, Role::Native},
    Field{"lora_apply", FormType::Text, Role::Native},
    Field{"scheduler_shift", FormType::Number, Role::Native},
    Field{"preset", FormType::Text, Role::Native},
    Field{"strategy", FormType::Text, Role::Native},
    Field{"priority", FormType::Integer, Role::Native},
    Field{"text_positions", FormType::Text, Role::NativeEdit},
    Field{"strength", FormType::Number, Role::NativeEdit},
    Field{"invert_mask", FormType::Boolean, Role::NativeEdit},
    Field{"mask_blur", FormType::Number, Role::NativeEdit},
    Field{"padding_mask_crop", FormType::Integer, Role::NativeEdit},
};

// OpenAI fields that ask for output the server cannot make, and what that is.
constexpr std::array<std::pair<std::string_view, std::string_view>, 4> kRefusedFields = {{
    {"svg", "SVG output"},
    {"frame_count", "GIF output"},
    {"frame_duration_ms", "GIF output"},
    {"markup", "edits guided by a markup picture"},
}};

constexpr std::array<std::string_view, 8> kOpenAiQualities = {"low", "medium", "high",     "xhigh",
                                                              "max", "auto",   "standard", "hd"};

const Field* find_field(std::string_view name) {
  for (const Field& field : kFields)
    if (field.name == name) return &field;
  return nullptr;
}

// The field of a request, refusing one this endpoint does not take.
const Field& accepted_field(const std::string& name, bool edit) {
  for (const auto& [refused, what] : kRefusedFields)
    if (name == refused)
      throw RequestError(400, name,
                         name + " asks for " + std::string(what) + ", which this server cannot make");
  const Field* field = find_field(name);
  if (!field) throw RequestError(400, name, "unknown field " + name);
  if (field->role == Role::NativeEdit && !edit)
    throw RequestError(400, name, name + " belongs to edits (POST /v1/images/edits), not to generations");
  return *field;
}

bool is_openai_model(std::string_view model) {
  return model.starts_with("dall-e-") || model.starts_with("gpt-image-") ||
         model.starts_with("chatgpt-image-");
}

// "WxH" with both sides whole numbers from 1.
std::pair<int64_t, int64_t> parse_size(const std::string& size) {
  const size_t cross = size.find('x');
  const auto side = [&](size_t begin, size_t end) -> std::optional<int64_t> {
    int64_t value = 0;
    const auto [stop, error] = std::from_chars(size.data() + begin, size.data() + end, value);
    if (begin == end || error != std::errc() || stop != size.data() + end || size[begin] == '-' || value < 1)
      return std::nullopt;
    return value;
  };
  const std::optional<int64_t> width = cross == std::string::npos ? std::nullopt : side(0, cross);
  const std::optional<int64_t> height =
      cross == std::string::npos ? std::nullopt : side(cross + 1, size.size());
  if (!width || !height)
    throw RequestError(400, "size",
                       "size must be \"auto\" or WIDTHxHEIGHT such as 1024x1024, got '" + size + "'");
  return {*width, *height};
}

[[noreturn]] void given_both_ways(const std::string& openai, const std::string& native) {
  throw RequestError(400, openai, openai + " and " + native + " say the same thing: give one of them");
}

// The fields of a generation or edit, as JSON, translated into the native request.
nlohmann::json translate(const nlohmann::json& body, bool edit) {
  check_object(body, "the request body");
  nlohmann::json native = nlohmann::json::object();
  for (const auto& [name, value] : body.items()) {
    if (value.is_null()) continue;
    const Role role = accepted_field(name, edit).role;
    if (role == Role::Native || role == Role::NativeEdit) native[name] = value;
  }
  const std::optional<std::string> prompt = string_field(body, "prompt");
  if (!prompt) throw RequestError(400, "prompt", "prompt is required: what to draw");
  native["prompt"] = *prompt;
  if (const std::optional<int64_t> n = integer_field(body, "n")) {
    if (has_field(body, "batch_count")) given_both_ways("n", "batch_count");
    if (*n < 1) throw RequestError(400, "n", "n must be at least 1, got " + std::to_string(*n));
    native["batch_count"] = *n;
  }
  if (const std::optional<std::string> size = string_field(body, "size")) {
    if (has_field(body, "width") || has_field(body, "height")) given_both_ways("size", "width and height");
    if (*size != "auto") {
      const auto [width, height] = parse_size(*size);
      native["width"] = width;
      native["height"] = height;
    }
  }
  if (const std::optional<std::string> model = string_field(body, "model"); model && !is_openai_model(*model))
    native["model"] = *model;
  openai_response_format(body);  // not part of the job, but refused with the rest when malformed
  if (const std::optional<std::string> quality = string_field(body, "quality");
      quality &&
      std::find(kOpenAiQualities.begin(), kOpenAiQualities.end(), *quality) == kOpenAiQualities.end())
    native["quality"] = *quality;
  check_inert(body, "background", {"auto", "opaque"}, "a transparent background");
  check_inert(body, "output_format", {"png"}, "another format than PNG");
  check_inert(body, "stream", {false}, "streamed partial images");
  return native;
}

// A form field's text as the JSON value its field takes; unknown fields stay text for translate() to refuse.
nlohmann::json form_value(const std::string& name, const std::string& text) {
  const Field* field = find_field(name);
  const FormType type = field ? field->type : FormType::Text;
  const char* begin = text.data();
  const char* end = text.data() + text.size();
  switch (type) {
    case FormType::Text:
    case FormType::TextList:
      return text;
    case FormType::Integer: {
      int64_t value = 0;
      uint64_t unsigned_value = 0;
      if (const auto [stop, error] = std::from_chars(begin, end, value); error == std::errc() && stop == end)
        return value;
      if (const auto [stop, error] = std::from_chars(begin, end, unsigned_value);
          error == std::errc() && stop == end)
        return unsigned_value;
      throw RequestError(400, name, name + " must be a whole number, got '" + text + "'");
    }
    case FormType::Number: {
      double value = 0;
      if (const auto [stop, error] = std::from_chars(begin, end, value);
          error == std::errc() && stop == end && std::isfinite(value))
        return value;
      throw RequestError(400, name, name + " must be a number, got '" + text + "'");
    }
    case FormType::Boolean:
      if (text == "true" || text == "false") return text == "true";
      throw RequestError(400, name, name + " must be true or false, got '" + text + "'");
  }
  throw Error("unhandled form field type of " + name);
}

// A form part's name, file name and (for a field the request takes) value become JSON strings, in the
// request, its history record and any error answer, so they must be UTF-8; pictures travel as base64, and
// translate() refuses other fields by name.
void check_form_text(const FormPart& part, bool value_is_text) {
  const auto refuse = [&](const std::string& what) {
    throw RequestError(400, unicode::replace_invalid_utf8(part.name),
                       "the form part's " + what + " is not UTF-8 text");
  };
  if (unicode::first_invalid_utf8(part.name)) refuse("name");
  if (unicode::first_invalid_utf8(part.filename)) refuse("file name");
  if (value_is_text && unicode::first_invalid_utf8(part.content)) refuse("value");
}

// Adds a text part of an edit's form to its fields. An empty field counts as absent, as null does in JSON;
// the SDK sends each element of a list as a part named "name[]".
void add_form_field(nlohmann::json& fields, const FormPart& part) {
  if (part.content.empty()) return;
  const bool element = part.name.ends_with("[]");
  const std::string name = element ? part.name.substr(0, part.name.size() - 2) : part.name;
  const Field* field = find_field(name);
  check_form_text(part, field != nullptr);
  if (field && field->type == FormType::TextList) {
    fields[name].push_back(part.content);
    return;
  }
  if (element) throw RequestError(400, part.name, name + " takes one value, not a list");
  if (fields.contains(name)) throw RequestError(400, name, name + " is given twice");
  fields[name] = form_value(name, part.content);
}

}  // namespace

nlohmann::json openai_generation_request(const nlohmann::json& body) {
  nlohmann::json native = translate(body, false);
  native["task"] = "generate";
  return native;
}

nlohmann::json openai_edit_request(const std::vector<FormPart>& parts) {
  nlohmann::json fields = nlohmann::json::object();
  std::vector<const FormPart*> images;
  const FormPart* mask = nullptr;
  for (const FormPart& part : parts) {
    check_form_text(part, false);
    if (part.name == "image" || part.name == "image[]") {
      if (part.content.empty()) throw RequestError(400, "image", "image " + part.filename + " is empty");
      images.push_back(&part);
    } else if (part.name == "mask") {
      if (mask) throw RequestError(400, "mask", "mask is given twice");
      if (part.content.empty()) throw RequestError(400, "mask", "mask " + part.filename + " is empty");
      mask = &part;
    } else {
      add_form_field(fields, part);
    }
  }
  nlohmann::json native = translate(fields, true);
  if (images.empty())
    throw RequestError(400, "image", "image is required: the picture to edit (several as image[] parts)");
  if (mask) {
    if (images.size() > 1)
      throw RequestError(400, "mask",
                         "a mask goes with one picture, got " + std::to_string(images.size()) +
                             ": inpaint one picture, or edit several without a mask");
    native["task"] = "inpaint";
    native["image"] = base64_of(images.front()->content);
    native["mask"] = base64_of(mask->content);
    native["mask_alpha"] = true;
  } else {
    native["task"] = "edit";
    native["images"] = nlohmann::json::array();
    for (const FormPart* image : images) native["images"].push_back(base64_of(image->content));
  }
  return native;
}

std::string_view openai_response_format(const nlohmann::json& body) {
  check_object(body, "the request body");
  const std::optional<std::string> format = string_field(body, "response_format");
  if (!format) {
    const std::optional<std::string> model = string_field(body, "model");
    return model && model->starts_with("dall-e-") ? "url" : "b64_json";
  }
  if (*format == "b64_json") return "b64_json";
  if (*format == "url") return "url";
  throw RequestError(400, "response_format",
                     "response_format must be \"b64_json\" or \"url\", got '" + *format + "'");
}

std::string_view openai_response_format(const std::vector<FormPart>& parts) {
  nlohmann::json fields = nlohmann::json::object();
  for (const FormPart& part : parts)
    if ((part.name == "response_format" || part.name == "model") && !part.content.empty()) {
      check_form_text(part, true);
      fields[part.name] = part.content;
    }
  return openai_response_format(fields);
}

nlohmann::json openai_images_response(const JobOutcome& outcome, std::string_view response_format,
                                      const std::vector<std::string>& png_base64, const std::string& base_url,
                                      int64_t created) {
  const bool inline_images = response_format == "b64_json";
  check(inline_images || response_format == "url",
        "an OpenAI response_format is b64_json or url, got '" + std::string(response_format) + "'");
  check(!inline_images || png_base64.size() == outcome.images.size(),
        "the job made " + std::to_string(outcome.images.size()) + " images but " +
            std::to_string(png_base64.size()) + " were encoded");
  nlohmann::json data = nlohmann::json::array();
  for (size_t index = 0; index < outcome.images.size(); ++index) {
    if (inline_images) {
      data.push_back({{"b64_json", png_base64[index]}});
    } else {
      const std::string& url = outcome.images[index].url;
      const bool doubled_slash = base_url.ends_with('/') && url.starts_with('/');
      data.push_back({{"url", (doubled_slash ? base_url.substr(0, base_url.size() - 1) : base_url) + url}});
    }
  }
  nlohmann::json response = {
      {"created", created}, {"data", data}, {"background", "opaque"}, {"output_format", "png"}};
  if (!outcome.images.empty())
    response["size"] =
        std::to_string(outcome.images.front().width) + "x" + std::to_string(outcome.images.front().height);
  return response;
}

nlohmann::json openai_error(int status, const std::string& message, const std::string& param) {
  return {{"error",
           {{"message", message},
            {"type", status >= 500 ? "server_error" : "invalid_request_error"},
            {"param", param.empty() ? nlohmann::json() : nlohmann::json(param)},
            {"code", nullptr}}}};
}

}  // namespace canvas::app
