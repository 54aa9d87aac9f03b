#include "io/json_config.h"

#include <cerrno>
#include <cmath>
#include <cstring>
#include <fstream>
#include <sstream>

#include "util/error.h"
#include "util/file_type.h"

namespace canvas {

namespace {

using nlohmann::json;

std::string where(std::string_view key, const std::filesystem::path& file) {
  return "key \"" + std::string(key) + "\" in '" + file.string() + "'";
}

const json* find_value(const json& config, std::string_view key, const std::filesystem::path& file) {
  check(config.is_object(), where(key, file) + ": the file does not hold a JSON object");
  auto found = config.find(key);
  return found == config.end() || found->is_null() ? nullptr : &*found;
}

const json& require_value(const json& config, std::string_view key, const std::filesystem::path& file) {
  const json* value = find_value(config, key, file);
  check(value != nullptr, "missing " + where(key, file));
  return *value;
}

[[noreturn]] void wrong_type(const json& value, std::string_view expected, std::string_view key,
                             const std::filesystem::path& file) {
  throw Error(where(key, file) + " should be " + std::string(expected) + ", not " + value.dump());
}

int64_t as_int(const json& value, std::string_view key, const std::filesystem::path& file) {
  if (value.is_number_unsigned()) {
    uint64_t unsigned_value = value.get<uint64_t>();
    if (unsigned_value <= static_cast<uint64_t>(INT64_MAX)) return static_cast<int64_t>(unsigned_value);
  } else if (value.is_number_integer()) {
    return value.get<int64_t>();
  } else if (value.is_number_float()) {
    // Exact integers written as floats by some exporters; the bound keeps the cast defined.
    double number = value.get<double>();
    if (std::trunc(number) == number && std::fabs(number) < 9.0e18) return static_cast<int64_t>(number);
  }
  wrong_type(value, "an integer", key, file);
}

double as_float(const json& value, std::string_view key, const std::filesystem::path& file) {
  if (!value.is_number()) wrong_type(value, "a number", key, file);
  return value.get<double>();
}

bool as_bool(const json& value, std::string_view key, const std::filesystem::path& file) {
  if (!value.is_boolean()) wrong_type(value, "true or false", key, file);
  return value.get<bool>();
}

std::string as_string(const json& value, std::string_view key, const std::filesystem::path& file) {
  if (!value.is_string()) wrong_type(value, "a string", key, file);
  return value.get<std::string>();
}

int64_t at_least(int64_t value, int64_t minimum, std::string_view key, const std::filesystem::path& file) {
  check(value >= minimum,
        where(key, file) + " must be at least " + std::to_string(minimum) + ", got " + std::to_string(value));
  return value;
}

template <typename T>
std::vector<T> as_list(const json& value, std::string_view key, const std::filesystem::path& file,
                       const char* description,
                       T (*element_as)(const json&, std::string_view, const std::filesystem::path&)) {
  if (!value.is_array()) wrong_type(value, description, key, file);
  std::vector<T> result;
  for (const json& element : value) result.push_back(element_as(element, key, file));
  return result;
}

}  // namespace

nlohmann::json read_json_file(const std::filesystem::path& path) {
  check_regular_file_or_missing(path);
  std::ifstream stream(path, std::ios::binary);
  if (!stream) throw Error("cannot open '" + path.string() + "': " + std::strerror(errno));
  std::ostringstream contents;
  contents << stream.rdbuf();
  check(!stream.bad(), "cannot read '" + path.string() + "'");
  const std::string text = contents.str();
  try {
    return json::parse(text);
  } catch (const json::parse_error& parse_error) {
    // The library's message carries the line and column.
    throw Error("invalid JSON in '" + path.string() + "': " + parse_error.what());
  }
}

int64_t config_int(const json& config, std::string_view key, const std::filesystem::path& file) {
  return as_int(require_value(config, key, file), key, file);
}

int64_t config_int_at_least(const json& config, std::string_view key, int64_t minimum,
                            const std::filesystem::path& file) {
  return at_least(config_int(config, key, file), minimum, key, file);
}

int64_t config_int_at_least_or(const json& config, std::string_view key, int64_t minimum, int64_t fallback,
                               const std::filesystem::path& file) {
  return at_least(config_int_or(config, key, fallback, file), minimum, key, file);
}

double config_float(const json& config, std::string_view key, const std::filesystem::path& file) {
  return as_float(require_value(config, key, file), key, file);
}

bool config_bool(const json& config, std::string_view key, const std::filesystem::path& file) {
  return as_bool(require_value(config, key, file), key, file);
}

std::string config_string(const json& config, std::string_view key, const std::filesystem::path& file) {
  return as_string(require_value(config, key, file), key, file);
}

std::vector<int64_t> config_int_list(const json& config, std::string_view key,
                                     const std::filesystem::path& file) {
  return as_list<int64_t>(require_value(config, key, file), key, file, "a list of integers", as_int);
}

int64_t config_int_or(const json& config, std::string_view key, int64_t fallback,
                      const std::filesystem::path& file) {
  const json* value = find_value(config, key, file);
  return value ? as_int(*value, key, file) : fallback;
}

double config_float_or(const json& config, std::string_view key, double fallback,
                       const std::filesystem::path& file) {
  const json* value = find_value(config, key, file);
  return value ? as_float(*value, key, file) : fallback;
}

bool config_bool_or(const json& config, std::string_view key, bool fallback,
                    const std::filesystem::path& file) {
  const json* value = find_value(config, key, file);
  return value ? as_bool(*value, key, file) : fallback;
}

std::string config_string_or(const json& config, std::string_view key, std::string_view fallback,
                             const std::filesystem::path& file) {
  const json* value = find_value(config, key, file);
  return value ? as_string(*value, key, file) : std::string(fallback);
}

std::vector<double> config_float_list(const json& config, std::string_view key,
                                      const std::filesystem::path& file) {
  return as_list<double>(require_value(config, key, file), key, file, "a list of numbers", as_float);
}

std::vector<bool> config_bool_list(const json& config, std::string_view key,
                                   const std::filesystem::path& file) {
  return as_list<bool>(require_value(config, key, file), key, file, "a list of true/false", as_bool);
}

std::vector<double> config_float_list_or(const json& config, std::string_view key,
                                         const std::vector<double>& fallback,
                                         const std::filesystem::path& file) {
  const json* value = find_value(config, key, file);
  return value ? as_list<double>(*value, key, file, "a list of numbers", as_float) : fallback;
}

std::vector<int64_t> config_int_list_or(const json& config, std::string_view key,
                                        const std::vector<int64_t>& fallback,
                                        const std::filesystem::path& file) {
  const json* value = find_value(config, key, file);
  return value ? as_list<int64_t>(*value, key, file, "a list of integers", as_int) : fallback;
}

}  // namespace canvas
