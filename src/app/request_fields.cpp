#include "app/request_fields.h"

#include "app/job_spec.h"

namespace canvas::app {
namespace {

// The field's value, or null when it is absent or null.
const nlohmann::json* given(const nlohmann::json& body, const std::string& name) {
  const auto found = body.find(name);
  return found == body.end() || found->is_null() ? nullptr : &*found;
}

[[noreturn]] void wrong_type(const std::string& name, std::string_view expected,
                             const nlohmann::json& value) {
  throw RequestError(400, name, name + " must be " + std::string(expected) + ", got " + value.dump());
}

}  // namespace

void check_object(const nlohmann::json& body, const std::string& what) {
  if (!body.is_object()) throw RequestError(400, "", what + " must be a JSON object, got " + body.dump());
}

std::optional<std::string> string_field(const nlohmann::json& body, const std::string& name) {
  const nlohmann::json* value = given(body, name);
  if (!value) return std::nullopt;
  if (!value->is_string()) wrong_type(name, "a string", *value);
  return value->get<std::string>();
}

std::optional<int64_t> integer_field(const nlohmann::json& body, const std::string& name) {
  const nlohmann::json* value = given(body, name);
  if (!value) return std::nullopt;
  if (!value->is_number_integer() || (value->is_number_unsigned() && value->get<uint64_t>() > INT64_MAX))
    wrong_type(name, "a whole number", *value);
  return value->get<int64_t>();
}

std::optional<double> number_field(const nlohmann::json& body, const std::string& name) {
  const nlohmann::json* value = given(body, name);
  if (!value) return std::nullopt;
  if (!value->is_number()) wrong_type(name, "a number", *value);
  return value->get<double>();
}

std::optional<bool> boolean_field(const nlohmann::json& body, const std::string& name) {
  const nlohmann::json* value = given(body, name);
  if (!value) return std::nullopt;
  if (!value->is_boolean()) wrong_type(name, "true or false", *value);
  return value->get<bool>();
}

bool has_field(const nlohmann::json& body, const std::string& name) {
  return given(body, name) != nullptr;
}

void check_inert(const nlohmann::json& body, const std::string& name,
                 const std::vector<nlohmann::json>& inert, std::string_view what) {
  const nlohmann::json* value = given(body, name);
  if (!value) return;
  for (const nlohmann::json& allowed : inert)
    if (*value == allowed) return;
  throw RequestError(
      400, name,
      name + " " + value->dump() + " asks for " + std::string(what) + ", which this server cannot do");
}

}  // namespace canvas::app
