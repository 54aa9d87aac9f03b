// Reading the fields of a JSON request the way every API of the server does: a field that is absent or
// null is not given, and one of the wrong type is refused with RequestError (400) naming it.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace canvas::app {

// Throws RequestError unless the body is a JSON object.
void check_object(const nlohmann::json& body, const std::string& what);

std::optional<std::string> string_field(const nlohmann::json& body, const std::string& name);
// A JSON integer: 2.0 and true are refused.
std::optional<int64_t> integer_field(const nlohmann::json& body, const std::string& name);
std::optional<double> number_field(const nlohmann::json& body, const std::string& name);
std::optional<bool> boolean_field(const nlohmann::json& body, const std::string& name);

// Whether the field is given (present and not null).
bool has_field(const nlohmann::json& body, const std::string& name);

// Throws RequestError (400) naming `name` when the field is given with a value other than those listed:
// for a setting clients send at a default that does nothing, while any other value asks for `what`, which
// the server cannot do.
void check_inert(const nlohmann::json& body, const std::string& name,
                 const std::vector<nlohmann::json>& inert, std::string_view what);

}  // namespace canvas::app
