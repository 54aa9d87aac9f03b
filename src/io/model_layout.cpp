#include "io/model_layout.h"

#include <algorithm>
#include <fstream>
#include <set>

#include "io/gguf.h"
#include "io/json_config.h"
#include "util/error.h"

namespace canvas {

namespace {

namespace fs = std::filesystem;

constexpr std::string_view kComfyUiPrefix = "model.diffusion_model.";
constexpr std::string_view kTransformerMarker = "transformer_blocks.";
constexpr std::string_view kGgufArchitectureKey = "general.architecture";
// What city96's ComfyUI-GGUF names Qwen-Image's architecture.
constexpr std::string_view kGgufQwenImageArchitecture = "qwen_image";
// Components whose folders must hold a config.json and weights.
const std::set<std::string, std::less<>> kWeightedComponents = {"transformer", "text_encoder", "vae"};

std::string quoted(const fs::path& path) {
  return '\'' + path.string() + '\'';
}

bool folder_exists(const fs::path& path) {
  std::error_code ignored;
  return fs::is_directory(path, ignored);
}

// Anything but a folder: what is found under a file's name is opened, so that a FIFO or a device there is
// reported as what it is rather than as a missing file.
bool file_exists(const fs::path& path) {
  std::error_code ignored;
  const fs::file_type type = fs::status(path, ignored).type();
  return type != fs::file_type::not_found && type != fs::file_type::directory && type != fs::file_type::none;
}

// The pipelines of the Qwen-Image family (QwenImagePipeline, QwenImageImg2ImgPipeline,
// QwenImageEditPlusPipeline, ...) share the components read here; other pipelines have other networks.
bool is_qwen_image_pipeline(std::string_view class_name) {
  return class_name.starts_with("QwenImage") && class_name.ends_with("Pipeline");
}

bool any_name_starts_with(const std::vector<std::string>& names, std::string_view prefix) {
  return std::any_of(names.begin(), names.end(),
                     [&](const std::string& name) { return name.starts_with(prefix); });
}

std::vector<std::string> sorted_entries(const fs::path& folder, bool directories) {
  std::vector<std::string> result;
  std::error_code list_error;
  for (const auto& entry : fs::directory_iterator(folder, list_error)) {
    if (directories ? folder_exists(entry.path()) : file_exists(entry.path())) {
      result.push_back(entry.path().filename().string());
    }
  }
  std::sort(result.begin(), result.end());
  return result;
}

// A Hugging Face cache entry (models--Org--Name) keeps downloads in snapshots/<revision>/, with
// refs/main naming the revision last fetched for the main branch.
fs::path resolve_cache_snapshot(const fs::path& cache_entry) {
  const fs::path snapshots = cache_entry / "snapshots";
  std::ifstream ref_stream(cache_entry / "refs" / "main");
  std::string revision;
  if (ref_stream && std::getline(ref_stream, revision)) {
    revision.erase(revision.find_last_not_of(" \t\r\n") + 1);
    fs::path snapshot = snapshots / revision;
    check(!revision.empty() && folder_exists(snapshot),
          "Hugging Face cache entry " + quoted(cache_entry) + ": refs/main names revision '" + revision +
              "' but there is no folder " + quoted(snapshot) + " (incomplete download?)");
    return snapshot;
  }
  std::vector<std::string> revisions = sorted_entries(snapshots, true);
  check(!revisions.empty(), "Hugging Face cache entry " + quoted(cache_entry) +
                                " has no snapshots; the download did not complete");
  return snapshots / revisions.front();
}

bool has_safetensors(const fs::path& folder) {
  for (const std::string& file : sorted_entries(folder, false)) {
    if (file.ends_with(".safetensors") || file.ends_with(".safetensors.index.json")) return true;
  }
  return false;
}

std::string no_weights_message(const ComponentLayout& component) {
  std::string message =
      "component '" + component.name + "' has no .safetensors weights in " + quoted(component.folder);
  for (const std::string& file : sorted_entries(component.folder, false)) {
    if (file.ends_with(".bin") || file.ends_with(".pt") || file.ends_with(".ckpt")) {
      return message + " (only PyTorch pickle files such as '" + file +
             "', which are not read for safety; convert them to safetensors)";
    }
  }
  return message;
}

void fill_weighted_component(ComponentLayout& component) {
  component.config_file = component.folder / "config.json";
  check(file_exists(component.config_file),
        "component '" + component.name + "' has no config.json in " + quoted(component.folder));
  check(has_safetensors(component.folder), no_weights_message(component));
  component.weights = component.folder;
  // Opening validates every shard now; the text encoder's names also decide its rewrites.
  WeightSource weights = WeightSource::open(component.weights);
  if (component.name == "text_encoder") {
    component.rewrites = text_encoder_rewrites(weights.names(), weights.description());
  }
}

ModelLayout resolve_diffusers(const fs::path& root) {
  const fs::path index_file = root / "model_index.json";
  if (!file_exists(index_file)) {
    std::string hint = file_exists(root / "config.json")
                           ? " It looks like a single component's folder; give the folder above it."
                           : " Expected a diffusers model folder (model_index.json with transformer/, "
                             "text_encoder/, vae/, ...), a Hugging Face cache folder models--Org--Name, or a "
                             ".safetensors checkpoint.";
    throw Error("no model_index.json in " + quoted(root) + "." + hint);
  }
  ModelLayout layout;
  layout.format = ModelFormat::Diffusers;
  layout.root = root;
  layout.model_index = read_json_file(index_file);
  check(layout.model_index.is_object(), quoted(index_file) + " does not hold a JSON object");
  layout.pipeline_class = config_string(layout.model_index, "_class_name", index_file);
  check(
      is_qwen_image_pipeline(layout.pipeline_class),
      quoted(index_file) + " describes a " + layout.pipeline_class +
          ", not a Qwen-Image pipeline (QwenImagePipeline, or a sibling such as QwenImageEditPipeline): this "
          "engine runs only the Qwen-Image family");

  for (const auto& [name, entry] : layout.model_index.items()) {
    // Components are ["library", "ClassName"]; [null, null] marks an optional one left out.
    if (name.starts_with("_") || !entry.is_array() || entry.size() != 2 || !entry[1].is_string()) continue;
    ComponentLayout component;
    component.name = name;
    component.library = entry[0].is_string() ? entry[0].get<std::string>() : "";
    component.class_name = entry[1].get<std::string>();
    component.folder = root / name;
    check(folder_exists(component.folder), "component '" + name + "' (" + component.class_name +
                                               ") is listed in model_index.json but " +
                                               quoted(component.folder) + " is missing");
    if (kWeightedComponents.contains(name)) {
      fill_weighted_component(component);
    } else if (file_exists(component.folder / "scheduler_config.json")) {
      component.config_file = component.folder / "scheduler_config.json";
    }
    layout.components.emplace(name, std::move(component));
  }
  for (std::string_view required : kWeightedComponents) {
    check(layout.has(required), quoted(index_file) + " lists no '" + std::string(required) + "' component");
  }
  return layout;
}

// The option that gives a component a single-file transformer lacks.
std::string_view part_option(std::string_view component) {
  return component == "vae" ? "--vae" : "--text-encoder";
}

void check_gguf_architecture(const fs::path& file) {
  const GgufFile gguf = GgufFile::open(file);
  const std::string& architecture = gguf.metadata_string(kGgufArchitectureKey);
  check(architecture == kGgufQwenImageArchitecture,
        "GGUF file " + quoted(file) + " holds a '" + architecture +
            "' model, not a Qwen-Image transformer ('" + std::string(kGgufQwenImageArchitecture) + "')");
}

ModelLayout resolve_single_file(const fs::path& file) {
  const bool gguf = file.extension() == ".gguf";
  if (gguf) check_gguf_architecture(file);
  const WeightSource weights = WeightSource::open(file);
  const std::vector<std::string> names = weights.names();
  ModelLayout layout;
  layout.root = file;
  ComponentLayout transformer;
  transformer.name = "transformer";
  transformer.weights = file;
  if (file_exists(file.parent_path() / "config.json"))
    transformer.config_file = file.parent_path() / "config.json";

  if (any_name_starts_with(names, kComfyUiPrefix)) {
    layout.format = gguf ? ModelFormat::GgufTransformer : ModelFormat::ComfyUiCheckpoint;
    transformer.name_prefix = kComfyUiPrefix;
    const auto other_names =
        static_cast<size_t>(std::count_if(names.begin(), names.end(), [](const std::string& name) {
          return !name.starts_with(kComfyUiPrefix);
        }));
    if (other_names > 0) {
      layout.notes.push_back(std::to_string(other_names) + " tensors outside '" +
                             std::string(kComfyUiPrefix) + "' (bundled encoders or VAE) are ignored");
    }
  } else if (any_name_starts_with(names, kTransformerMarker)) {
    layout.format = gguf ? ModelFormat::GgufTransformer : ModelFormat::TransformerFile;
  } else {
    std::string examples;
    for (size_t i = 0; i < names.size() && i < 3; ++i) examples += (i ? ", '" : "'") + names[i] + "'";
    throw Error(quoted(file) + " does not look like a Qwen-Image transformer checkpoint: no '" +
                std::string(kComfyUiPrefix) + "*' or '" + std::string(kTransformerMarker) +
                "*' tensors (it holds " + (names.empty() ? std::string("no tensors") : examples + ", ...") +
                ")");
  }
  layout.components.emplace(transformer.name, std::move(transformer));
  return layout;
}

// A diffusers model's `component` folder from a path that names either the model's folder or that folder.
fs::path part_folder(const fs::path& given, const std::string& component) {
  const std::string option(part_option(component));
  check(folder_exists(given), option + " " + quoted(given) +
                                  " is not a folder: give a diffusers Qwen-Image folder or its " + component +
                                  "/ folder (a lone " + component + " file carries no config.json)");
  return folder_exists(given / component) ? given / component : given;
}

void add_part(ModelLayout& layout, const fs::path& given, const std::string& component) {
  ComponentLayout part;
  part.name = component;
  part.folder = part_folder(given, component);
  fill_weighted_component(part);
  layout.components.emplace(component, std::move(part));
}

// The tokenizer and scheduler come from the diffusers folder that holds the text encoder's folder.
void add_text_encoder_companions(ModelLayout& layout, const fs::path& given) {
  const fs::path model = layout.components.at("text_encoder").folder.parent_path();
  ComponentLayout tokenizer;
  tokenizer.name = "tokenizer";
  tokenizer.folder = model / "tokenizer";
  check(folder_exists(tokenizer.folder), "--text-encoder " + quoted(given) +
                                             ": there is no tokenizer folder " + quoted(tokenizer.folder) +
                                             "; give the diffusers folder the text encoder comes with");
  ComponentLayout scheduler;
  scheduler.name = "scheduler";
  scheduler.folder = model / "scheduler";
  scheduler.config_file = scheduler.folder / "scheduler_config.json";
  check(file_exists(scheduler.config_file), "--text-encoder " + quoted(given) + ": there is no " +
                                                quoted(scheduler.config_file) +
                                                "; give the diffusers folder the text encoder comes with");
  layout.components.emplace("tokenizer", std::move(tokenizer));
  layout.components.emplace("scheduler", std::move(scheduler));
}

void add_parts(ModelLayout& layout, const ModelParts& parts) {
  if (!parts.text_encoder.empty()) {
    add_part(layout, parts.text_encoder, "text_encoder");
    add_text_encoder_companions(layout, parts.text_encoder);
  }
  if (!parts.vae.empty()) add_part(layout, parts.vae, "vae");
  if (parts.text_encoder.empty() || parts.vae.empty()) {
    layout.notes.push_back(
        quoted(layout.root) +
        " holds only the transformer; the text encoder, VAE, tokenizer and scheduler must come "
        "from a diffusers folder (such as a download of Qwen/Qwen-Image): pass --text-encoder "
        "and --vae");
  }
}

}  // namespace

std::string_view model_format_name(ModelFormat format) {
  switch (format) {
    case ModelFormat::Diffusers:
      return "diffusers";
    case ModelFormat::ComfyUiCheckpoint:
      return "ComfyUI checkpoint";
    case ModelFormat::TransformerFile:
      return "transformer file";
    case ModelFormat::GgufTransformer:
      return "GGUF transformer";
  }
  return "unknown";
}

WeightSource ComponentLayout::open_weights() const {
  check(has_weights(), "component '" + name + "' has no weights");
  WeightSource source = WeightSource::open(weights, rewrites);
  return name_prefix.empty() ? source : source.subset(name_prefix);
}

const ComponentLayout& ModelLayout::component(std::string_view name) const {
  auto found = components.find(name);
  if (found != components.end()) return found->second;
  if (format != ModelFormat::Diffusers) {
    throw Error("the " + std::string(model_format_name(format)) + " " + quoted(root) +
                " holds only the transformer; the " + std::string(name) +
                " must come from a diffusers folder (such as a download of Qwen/Qwen-Image): pass " +
                std::string(part_option(name)));
  }
  std::string present;
  for (const auto& [existing, layout] : components) present += (present.empty() ? "" : ", ") + existing;
  throw Error("model " + quoted(root) + " has no component '" + std::string(name) + "' (it has " + present +
              ")");
}

ModelLayout resolve_model(const fs::path& path, const ModelParts& parts) {
  std::error_code status_error;
  const auto status = fs::status(path, status_error);
  check(fs::exists(status), "model path " + quoted(path) + " does not exist");
  const bool single_file = !fs::is_directory(status) && path.filename() != "model_index.json";
  check(single_file || parts.empty(),
        "--text-encoder and --vae go with a single-file transformer (--model "
        "file.safetensors or file.gguf); the model " +
            quoted(path) + " brings its own");
  if (single_file) {
    check(path.extension() == ".safetensors" || path.extension() == ".gguf",
          quoted(path) + " is neither a model folder nor a .safetensors checkpoint (or a .gguf transformer)");
    // Opening it reports a FIFO or a device in its place.
    ModelLayout layout = resolve_single_file(path);
    add_parts(layout, parts);
    return layout;
  }
  if (!fs::is_directory(status)) return resolve_diffusers(path.parent_path());
  if (folder_exists(path / "snapshots")) return resolve_diffusers(resolve_cache_snapshot(path));
  return resolve_diffusers(path);
}

std::vector<NameRewrite> text_encoder_rewrites(const std::vector<std::string>& names,
                                               const std::string& source) {
  const bool canonical =
      any_name_starts_with(names, "model.language_model.") || any_name_starts_with(names, "model.visual.");
  const bool legacy = any_name_starts_with(names, "model.layers.") ||
                      any_name_starts_with(names, "model.embed_tokens.") ||
                      any_name_starts_with(names, "model.norm.") || any_name_starts_with(names, "visual.");
  check(!(canonical && legacy), "text encoder " + source +
                                    " mixes the transformers-5 names (model.language_model.*) with the older "
                                    "ones (model.layers.*, visual.*)");
  if (!legacy) return {};
  // In the older style everything under "model." is the language model.
  return {{"model.", "model.language_model."}, {"visual.", "model.visual."}};
}

}  // namespace canvas
