#include "io/lora_file.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <regex>
#include <set>
#include <utility>

#include "io/safetensors.h"
#include "util/error.h"

namespace canvas {

namespace {

using nlohmann::json;

enum class TensorRole { Down, Up, Alpha, Diff, DiffBias };

// Low-rank pairs come in three spellings; a stem may carry more than one, each its own update.
constexpr int kPairSpellings = 3;

struct RoleSuffix {
  std::string_view suffix;
  TensorRole role;
  int spelling;  // which pair spelling a Down or Up belongs to
};
constexpr RoleSuffix kRoleSuffixes[] = {
    {".lora_down.weight", TensorRole::Down, 0},
    {".lora_up.weight", TensorRole::Up, 0},
    {".lora_A.weight", TensorRole::Down, 1},
    {".lora_B.weight", TensorRole::Up, 1},
    {".lora_A.default.weight", TensorRole::Down, 2},
    {".lora_B.default.weight", TensorRole::Up, 2},
    {".alpha", TensorRole::Alpha, 0},
    {".diff", TensorRole::Diff, 0},
    {".diff_b", TensorRole::DiffBias, 0},
};

struct StemStyle {
  std::string_view prefix;
  LoraComponent component;
  bool flattened;  // '.' written as '_'
  std::string_view format;
};
// The empty prefix comes last: it takes every stem the others leave.
constexpr StemStyle kStemStyles[] = {
    {"transformer.", LoraComponent::Transformer, false, "diffusers"},
    {"text_encoder.", LoraComponent::TextEncoder, false, "diffusers"},
    {"diffusion_model.", LoraComponent::Transformer, false, "comfyui"},
    {"lora_unet_", LoraComponent::Transformer, true, "kohya"},
    {"lora_te_", LoraComponent::TextEncoder, true, "kohya"},
    {"lora_te1_", LoraComponent::TextEncoder, true, "kohya"},
    {"lycoris_", LoraComponent::Transformer, true, "lycoris"},
    {"", LoraComponent::Transformer, false, "plain"},
};
constexpr std::string_view kFormatOrder[] = {"diffusers", "plain", "comfyui", "kohya", "lycoris"};

// Markers of adapter kinds that are not a plain low-rank pair or difference, for a clearer message.
constexpr std::pair<std::string_view, std::string_view> kUnsupportedMarkers[] = {
    {".hada_", "LoHa"},
    {".lokr_", "LoKr"},
    {".dora_scale", "DoRA"},
    {".lora_magnitude_vector", "DoRA"},
    {".lora_mid.", "Tucker-decomposed LoCon (lora_mid)"},
    {".lora_B.bias", "PEFT lora_bias"},
    {".lora_B.default.bias", "PEFT lora_bias"},
};

// The header entry diffusers stores PEFT's LoraConfig under, as a JSON string.
constexpr std::string_view kAdapterMetadataKey = "lora_adapter_metadata";
// The transformers-4 text encoder names its language model "model.*" (see text_encoder_rewrites).
constexpr std::string_view kLanguageModelPrefix = "model.language_model.";
constexpr std::string_view kLegacyLanguageModelPrefix = "model.";

std::string flatten(std::string_view path) {
  std::string flat(path);
  std::replace(flat.begin(), flat.end(), '.', '_');
  return flat;
}

// "'a', 'b', 'c', 'd', 'e' and 7 more".
std::string key_list(const std::vector<std::string>& keys) {
  constexpr size_t kShown = 5;
  std::string text;
  for (size_t i = 0; i < std::min(keys.size(), kShown); ++i) text += (i ? ", '" : "'") + keys[i] + "'";
  if (keys.size() > kShown) text += " and " + std::to_string(keys.size() - kShown) + " more";
  return text;
}

// A network's module paths by dotted path and by flattened path.
class ModuleIndex {
 public:
  static constexpr size_t kNone = static_cast<size_t>(-1);
  static constexpr size_t kAmbiguous = static_cast<size_t>(-2);

  ModuleIndex(const std::vector<std::string>& modules, LoraComponent component) {
    for (size_t i = 0; i < modules.size(); ++i) {
      add(modules[i], i);
      if (component == LoraComponent::TextEncoder && modules[i].starts_with(kLanguageModelPrefix)) {
        add(std::string(kLegacyLanguageModelPrefix) + modules[i].substr(kLanguageModelPrefix.size()), i);
      }
    }
  }

  // The module's position in the list, kNone, or kAmbiguous for a flattened path several modules share.
  size_t find(const std::string& path, bool flattened) const {
    const auto& paths = flattened ? flattened_ : dotted_;
    auto found = paths.find(path);
    return found == paths.end() ? kNone : found->second;
  }

 private:
  void add(const std::string& path, size_t index) {
    dotted_.emplace(path, index);
    auto [entry, inserted] = flattened_.emplace(flatten(path), index);
    if (!inserted && entry->second != index) entry->second = kAmbiguous;
  }

  std::map<std::string, size_t> dotted_, flattened_;
};

std::string number_text(double value) {
  char text[32];
  std::snprintf(text, sizeof(text), "%g", value);
  return text;
}

// PEFT's LoraConfig fields that set the scale; defaults as LoraConfig has them.
struct PeftScaling {
  double lora_alpha = 8;
  double r = 8;
  bool use_rslora = false;
  // PEFT matches a module path against each pattern in order as the regex "(.*\.)?(pattern)$".
  std::vector<std::pair<std::regex, double>> alpha_pattern, rank_pattern;

  // lora_alpha / r for `module`, checking that the config's rank is the tensors'.
  float scale(const std::string& module, int64_t rank, const std::string& where) const {
    const double module_alpha = lookup(alpha_pattern, module, lora_alpha);
    const double module_rank = lookup(rank_pattern, module, r);
    check(module_rank == static_cast<double>(rank), where + "the lora_adapter_metadata gives module '" +
                                                        module + "' rank " + number_text(module_rank) +
                                                        " but its tensors have rank " + std::to_string(rank));
    return static_cast<float>(module_alpha / (use_rslora ? std::sqrt(module_rank) : module_rank));
  }

 private:
  static double lookup(const std::vector<std::pair<std::regex, double>>& patterns, const std::string& module,
                       double fallback) {
    for (const auto& [pattern, value] : patterns) {
      if (std::regex_match(module, pattern)) return value;
    }
    return fallback;
  }
};

double metadata_number(const json& value, const std::string& field, const std::string& where) {
  check(value.is_number(), where + "lora_adapter_metadata field '" + field + "' is not a number");
  return value.get<double>();
}

std::vector<std::pair<std::regex, double>> metadata_patterns(const json& patterns, const std::string& field,
                                                             const std::string& where) {
  check(patterns.is_object(), where + "lora_adapter_metadata field '" + field + "' is not an object");
  std::vector<std::pair<std::regex, double>> compiled;
  for (const auto& [pattern, value] : patterns.items()) {
    try {
      compiled.emplace_back(std::regex("(.*\\.)?(" + pattern + ")$"),
                            metadata_number(value, field + "." + pattern, where));
    } catch (const std::regex_error& error) {
      throw Error(where + "lora_adapter_metadata " + field + " pattern '" + pattern + "' is not a regex (" +
                  error.what() + ")");
    }
  }
  return compiled;
}

// The LoraConfig fields under `prefix` ("transformer." for a pipeline save, "" for a model save).
PeftScaling peft_scaling(const json& metadata, const std::string& prefix, const std::string& where) {
  PeftScaling scaling;
  auto field = [&](const char* name) -> const json* {
    auto found = metadata.find(prefix + name);
    return found == metadata.end() || found->is_null() ? nullptr : &*found;
  };
  if (const json* value = field("use_dora")) {
    check(!value->is_boolean() || !value->get<bool>(), where + "DoRA adapters (use_dora) are not supported");
  }
  if (const json* value = field("lora_alpha"))
    scaling.lora_alpha = metadata_number(*value, "lora_alpha", where);
  if (const json* value = field("r")) scaling.r = metadata_number(*value, "r", where);
  if (const json* value = field("use_rslora")) scaling.use_rslora = value->is_boolean() && value->get<bool>();
  if (const json* value = field("alpha_pattern")) {
    scaling.alpha_pattern = metadata_patterns(*value, "alpha_pattern", where);
  }
  if (const json* value = field("rank_pattern")) {
    scaling.rank_pattern = metadata_patterns(*value, "rank_pattern", where);
  }
  return scaling;
}

// Per component, the PEFT scaling the header's adapter metadata gives, if any. diffusers' pipelines prefix
// each field with the component ("transformer.lora_alpha"); a model's own save leaves it bare and then
// describes the whole file.
std::array<std::optional<PeftScaling>, 2> read_peft_scaling(const SafetensorsFile& file,
                                                            const std::string& where) {
  std::array<std::optional<PeftScaling>, 2> scalings;
  auto entry = file.metadata().find(std::string(kAdapterMetadataKey));
  if (entry == file.metadata().end()) return scalings;
  json metadata;
  try {
    metadata = json::parse(entry->second);
  } catch (const json::exception& error) {
    throw Error(where + "lora_adapter_metadata is not JSON: " + error.what());
  }
  check(metadata.is_object(), where + "lora_adapter_metadata is not a JSON object");
  auto any_key = [&](auto predicate) {
    for (const auto& item : metadata.items()) {
      if (predicate(item.key())) return true;
    }
    return false;
  };
  const bool bare_fields = any_key([](const std::string& key) { return key.find('.') == std::string::npos; });
  const std::pair<LoraComponent, std::string> prefixes[] = {{LoraComponent::Transformer, "transformer."},
                                                            {LoraComponent::TextEncoder, "text_encoder."}};
  for (const auto& [component, component_prefix] : prefixes) {
    // Lambdas cannot capture structured bindings in clang before 16 (the sanitizer builds use clang 14).
    const std::string& prefix = component_prefix;
    const bool prefixed = any_key([&](const std::string& key) { return key.starts_with(prefix); });
    if (prefixed || bare_fields) {
      scalings[static_cast<size_t>(component)] = peft_scaling(metadata, prefixed ? prefix : "", where);
    }
  }
  return scalings;
}

// The tensors of one key stem.
struct StemTensors {
  const StemStyle* style = nullptr;
  size_t module = 0;
  std::array<Tensor, kPairSpellings> down, up;
  std::array<std::string, kPairSpellings> down_key, up_key;
  Tensor alpha, diff, diff_bias;
  std::string alpha_key, diff_key, diff_bias_key;
};

void check_dims(const Tensor& tensor, std::initializer_list<int> allowed, const std::string& key,
                const std::string& where) {
  check(std::find(allowed.begin(), allowed.end(), tensor.ndim()) != allowed.end(),
        where + "tensor '" + key + "' has shape " + shape_str(tensor.shape()) + ", which no " +
            (allowed.size() == 1 ? "bias difference" : "LoRA matrix") + " has");
}

LoraUpdate low_rank_update(const StemTensors& stem, const std::string& stem_name, int spelling,
                           const std::optional<PeftScaling>& peft, const std::vector<std::string>& modules,
                           const std::string& where) {
  const Tensor& down = stem.down[spelling];
  const Tensor& up = stem.up[spelling];
  const std::string& down_key = stem.down_key[spelling];
  const std::string& up_key = stem.up_key[spelling];
  check(down.defined(), where + "'" + up_key + "' has no down matrix beside it (its lora_down / lora_A)");
  check(up.defined(), where + "'" + down_key + "' has no up matrix beside it (its lora_up / lora_B)");
  check_dims(down, {2, 4}, down_key, where);
  check(up.ndim() == down.ndim() && (up.ndim() == 2 || (up.dim(2) == 1 && up.dim(3) == 1)),
        where + "'" + up_key + "' has shape " + shape_str(up.shape()) + ", which does not fit '" + down_key +
            "' of shape " + shape_str(down.shape()) +
            (down.ndim() == 4 ? " (expected [out, rank, 1, 1])" : ""));
  const int64_t rank = down.dim(0);
  check(rank > 0 && up.dim(1) == rank, where + "'" + down_key + "' has rank " + std::to_string(rank) +
                                           " but '" + up_key + "' has rank " + std::to_string(up.dim(1)) +
                                           " (shapes " + shape_str(down.shape()) + " and " +
                                           shape_str(up.shape()) + ")");
  LoraUpdate update;
  update.component = stem.style->component;
  update.module = modules[stem.module];
  update.down = down;
  update.up = up;
  update.source = stem_name;
  if (stem.alpha.defined()) update.scale = stem.alpha.to_floats()[0] / static_cast<float>(rank);
  if (peft) update.scale *= peft->scale(update.module, rank, where);
  return update;
}

LoraUpdate difference_update(const StemTensors& stem, const std::string& stem_name,
                             const std::vector<std::string>& modules, const std::string& where) {
  LoraUpdate update;
  update.component = stem.style->component;
  update.module = modules[stem.module];
  update.diff = stem.diff;
  update.diff_bias = stem.diff_bias;
  update.source = stem_name;
  if (stem.diff.defined()) check_dims(stem.diff, {2, 4}, stem.diff_key, where);
  if (stem.diff_bias.defined()) {
    check_dims(stem.diff_bias, {1}, stem.diff_bias_key, where);
    check(!stem.diff.defined() || stem.diff.dim(0) == stem.diff_bias.dim(0),
          where + "'" + stem.diff_bias_key + "' of shape " + shape_str(stem.diff_bias.shape()) +
              " does not fit '" + stem.diff_key + "' of shape " + shape_str(stem.diff.shape()));
  }
  return update;
}

}  // namespace

std::string_view lora_component_name(LoraComponent component) {
  return component == LoraComponent::Transformer ? "transformer" : "text encoder";
}

std::vector<std::string> lora_module_names(const std::vector<std::string>& parameter_names) {
  constexpr std::string_view kWeightSuffix = ".weight";
  std::vector<std::string> modules;
  for (const std::string& name : parameter_names) {
    if (name.ends_with(kWeightSuffix)) modules.push_back(name.substr(0, name.size() - kWeightSuffix.size()));
  }
  return modules;
}

int64_t LoraUpdate::in_features() const {
  if (low_rank()) return down.dim(1);
  return diff.defined() ? diff.dim(1) : 0;
}

int64_t LoraUpdate::out_features() const {
  if (low_rank()) return up.dim(0);
  return diff.defined() ? diff.dim(0) : diff_bias.dim(0);
}

LoraFile read_lora_file(const std::filesystem::path& path, const LoraModuleNames& modules) {
  const std::string where = "LoRA file '" + path.string() + "': ";
  std::optional<SafetensorsFile> opened;
  try {
    opened = SafetensorsFile::open(path);
  } catch (const Error& error) {
    throw Error("cannot read the LoRA file: " + std::string(error.what()));
  }
  const SafetensorsFile& file = *opened;
  check(!file.tensors().empty(), where + "holds no tensors");
  const std::array<std::optional<PeftScaling>, 2> peft = read_peft_scaling(file, where);
  const std::array<const std::vector<std::string>*, 2> module_lists = {&modules.transformer,
                                                                       &modules.text_encoder};
  const std::array<ModuleIndex, 2> indexes = {ModuleIndex(modules.transformer, LoraComponent::Transformer),
                                              ModuleIndex(modules.text_encoder, LoraComponent::TextEncoder)};

  std::map<std::string, StemTensors> stems;
  std::vector<std::string> unsupported, unrecognized, unmatched, ambiguous;
  for (const SafetensorsTensorInfo& info : file.tensors()) {
    const std::string& key = info.name;
    const RoleSuffix* suffix = nullptr;
    for (const RoleSuffix& candidate : kRoleSuffixes) {
      if (key.ends_with(candidate.suffix)) suffix = &candidate;
    }
    if (!suffix) {
      auto marker =
          std::find_if(std::begin(kUnsupportedMarkers), std::end(kUnsupportedMarkers),
                       [&](const auto& entry) { return key.find(entry.first) != std::string::npos; });
      if (marker != std::end(kUnsupportedMarkers)) {
        unsupported.push_back(key + " (" + std::string(marker->second) + ")");
      } else {
        unrecognized.push_back(key);
      }
      continue;
    }
    const std::string stem_name = key.substr(0, key.size() - suffix->suffix.size());
    const StemStyle* style =
        &*std::find_if(std::begin(kStemStyles), std::end(kStemStyles),
                       [&](const StemStyle& s) { return stem_name.starts_with(s.prefix); });
    const auto component = static_cast<size_t>(style->component);
    const size_t module = indexes[component].find(stem_name.substr(style->prefix.size()), style->flattened);
    if (module == ModuleIndex::kNone) {
      unmatched.push_back(key);
      continue;
    }
    if (module == ModuleIndex::kAmbiguous) {
      ambiguous.push_back(key);
      continue;
    }
    check(info.dtype == DType::F32 || info.dtype == DType::F16 || info.dtype == DType::BF16,
          where + "tensor '" + key + "' has dtype " + std::string(dtype_name(info.dtype)) +
              "; LoRA tensors must be f32, f16 or bf16");
    StemTensors& stem = stems[stem_name];
    stem.style = style;
    stem.module = module;
    const Tensor tensor = file.tensor(info);
    auto keep = [&](Tensor& slot, std::string& slot_key) {
      slot = tensor;
      slot_key = key;
    };
    switch (suffix->role) {
      case TensorRole::Down:
        keep(stem.down[suffix->spelling], stem.down_key[suffix->spelling]);
        break;
      case TensorRole::Up:
        keep(stem.up[suffix->spelling], stem.up_key[suffix->spelling]);
        break;
      case TensorRole::Alpha:
        check(tensor.numel() == 1, where + "alpha '" + key + "' has shape " + shape_str(tensor.shape()) +
                                       "; an alpha is a single value");
        check(std::isfinite(tensor.to_floats()[0]), where + "alpha '" + key + "' is not a finite number");
        keep(stem.alpha, stem.alpha_key);
        break;
      case TensorRole::Diff:
        keep(stem.diff, stem.diff_key);
        break;
      case TensorRole::DiffBias:
        keep(stem.diff_bias, stem.diff_bias_key);
        break;
    }
  }
  check(unsupported.empty(),
        where + std::to_string(unsupported.size()) +
            " tensors belong to adapter kinds this reader does not apply: " + key_list(unsupported));
  check(unrecognized.empty(), where + std::to_string(unrecognized.size()) +
                                  " tensors are not LoRA tensors (no .lora_down/.lora_up/.lora_A/.lora_B "
                                  "weight, .alpha, .diff or .diff_b suffix): " +
                                  key_list(unrecognized));
  check(unmatched.empty(), where + std::to_string(unmatched.size()) +
                               " tensors name no module of the transformer or the text encoder (a LoRA for "
                               "another model?): " +
                               key_list(unmatched));
  check(ambiguous.empty(), where + std::to_string(ambiguous.size()) +
                               " tensors have flattened names several modules share: " + key_list(ambiguous));

  // Stems come sorted by key; updates go in the caller's module order (block by block), which reads better.
  using ModulePosition = std::pair<size_t, size_t>;  // component, module
  std::vector<std::pair<ModulePosition, LoraUpdate>> positioned;
  std::set<std::string_view> formats;
  for (const auto& [stem_name, stem] : stems) {
    formats.insert(stem.style->format);
    const auto component = static_cast<size_t>(stem.style->component);
    const ModulePosition position{component, stem.module};
    bool has_pair = false;
    for (int spelling = 0; spelling < kPairSpellings; ++spelling) {
      if (!stem.down[spelling].defined() && !stem.up[spelling].defined()) continue;
      has_pair = true;
      positioned.emplace_back(position, low_rank_update(stem, stem_name, spelling, peft[component],
                                                        *module_lists[component], where));
    }
    check(has_pair || !stem.alpha.defined(),
          where + "alpha '" + stem.alpha_key + "' has no low-rank pair (lora_down / lora_up) to scale");
    if (stem.diff.defined() || stem.diff_bias.defined()) {
      positioned.emplace_back(position, difference_update(stem, stem_name, *module_lists[component], where));
    }
  }
  std::stable_sort(positioned.begin(), positioned.end(),
                   [](const auto& a, const auto& b) { return a.first < b.first; });

  LoraFile result{path, "", {}};
  for (std::string_view format : kFormatOrder) {
    if (!formats.count(format)) continue;
    if (!result.format.empty()) result.format += '+';
    result.format += format;
  }
  for (auto& entry : positioned) result.updates.push_back(std::move(entry.second));
  return result;
}

}  // namespace canvas
