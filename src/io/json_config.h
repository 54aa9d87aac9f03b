// Reading model config.json files. Every failure names the file and the key, because a config from
// the wrong model (or a hand-edited one) is the usual cause, and the user has to find which.
#pragma once

#include <cstdint>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

namespace canvas {

// Parses a JSON file; a syntax error is reported with the file, line and column.
nlohmann::json read_json_file(const std::filesystem::path& path);

// Required values: throw canvas::Error when the key is missing, null or of the wrong type. `file` only
// names the source in messages. Integers accept integral floats ("1024.0"); floats accept integers.
int64_t config_int(const nlohmann::json& config, std::string_view key, const std::filesystem::path& file);
double config_float(const nlohmann::json& config, std::string_view key, const std::filesystem::path& file);
bool config_bool(const nlohmann::json& config, std::string_view key, const std::filesystem::path& file);
std::string config_string(const nlohmann::json& config, std::string_view key,
                          const std::filesystem::path& file);
std::vector<int64_t> config_int_list(const nlohmann::json& config, std::string_view key,
                                     const std::filesystem::path& file);
std::vector<double> config_float_list(const nlohmann::json& config, std::string_view key,
                                      const std::filesystem::path& file);
std::vector<bool> config_bool_list(const nlohmann::json& config, std::string_view key,
                                   const std::filesystem::path& file);

// Sizes and counts: as config_int and config_int_or, and below `minimum` is an error naming the key, e.g.
// key "num_layers" in 'transformer/config.json' must be at least 0, got -1.
int64_t config_int_at_least(const nlohmann::json& config, std::string_view key, int64_t minimum,
                            const std::filesystem::path& file);
int64_t config_int_at_least_or(const nlohmann::json& config, std::string_view key, int64_t minimum,
                               int64_t fallback, const std::filesystem::path& file);

// Optional values: a missing or null key gives the fallback; a present value of the wrong type still throws.
int64_t config_int_or(const nlohmann::json& config, std::string_view key, int64_t fallback,
                      const std::filesystem::path& file);
double config_float_or(const nlohmann::json& config, std::string_view key, double fallback,
                       const std::filesystem::path& file);
bool config_bool_or(const nlohmann::json& config, std::string_view key, bool fallback,
                    const std::filesystem::path& file);
std::string config_string_or(const nlohmann::json& config, std::string_view key, std::string_view fallback,
                             const std::filesystem::path& file);
std::vector<double> config_float_list_or(const nlohmann::json& config, std::string_view key,
                                         const std::vector<double>& fallback,
                                         const std::filesystem::path& file);
std::vector<int64_t> config_int_list_or(const nlohmann::json& config, std::string_view key,
                                        const std::vector<int64_t>& fallback,
                                        const std::filesystem::path& file);

}  // namespace canvas
