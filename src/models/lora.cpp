#include "models/lora.h"

#include <charconv>
#include <cmath>
#include <map>
#include <set>
#include <system_error>

#include "util/error.h"

namespace canvas {

namespace {

std::vector<std::string> parameter_names(const std::vector<std::pair<std::string, Shape>>& shapes) {
  std::vector<std::string> names;
  for (const auto& [name, shape] : shapes) names.push_back(name);
  return names;
}

// Every LoRA's changes to one layer, gathered before they are stacked.
struct LayerChanges {
  std::vector<Tensor> downs, ups;  // f32 [rank, in] and [out, rank], the scale folded into the ups
  Tensor diff, diff_bias;          // f32 sums, undefined when no LoRA has one
  std::string first_file;          // for messages
};

// A LoRA tensor as the f32 matrix a linear layer takes: a 1x1 convolution's kernel loses its trailing axes.
Tensor linear_matrix(const Tensor& tensor, const std::string& what, const LoraUpdate& update,
                     const std::filesystem::path& file) {
  if (tensor.ndim() == 4) {
    check(tensor.dim(2) == 1 && tensor.dim(3) == 1,
          file.string() + ": '" + update.source + "' is a " + std::to_string(tensor.dim(2)) + "x" +
              std::to_string(tensor.dim(3)) + " convolution's " + what + ", but '" + update.module +
              "' is a linear layer");
    return tensor.reshape({tensor.dim(0), tensor.dim(1)}).to(DType::F32);
  }
  return tensor.to(DType::F32);
}

Tensor add_or_take(const Tensor& sum, const Tensor& term) {
  return sum.defined() ? ops::add(sum, term) : term;
}

void gather(const AppliedLora& lora, const LoraUpdate& update, LayerChanges& changes) {
  const std::filesystem::path& file = lora.file.path;
  if (changes.first_file.empty()) changes.first_file = file.string();
  if (update.low_rank()) {
    changes.downs.push_back(linear_matrix(update.down, "down matrix", update, file).contiguous());
    changes.ups.push_back(
        ops::scale(linear_matrix(update.up, "up matrix", update, file), update.scale * lora.strength));
  }
  if (update.diff.defined())
    changes.diff = add_or_take(
        changes.diff, ops::scale(linear_matrix(update.diff, "difference", update, file), lora.strength));
  if (update.diff_bias.defined())
    changes.diff_bias =
        add_or_take(changes.diff_bias, ops::scale(update.diff_bias.to(DType::F32), lora.strength));
}

// Checks that `tensor` is `expected` for the layer, naming the file, module and both shapes otherwise.
void check_fits(const Tensor& tensor, const Shape& expected, const std::string& what,
                const std::string& module, const LayerChanges& changes) {
  check(tensor.shape() == expected, changes.first_file + ": the LoRA's " + what + " for '" + module +
                                        "' is " + shape_str(tensor.shape()) +
                                        ", but the layer's weight needs " + shape_str(expected) +
                                        ": the LoRA was made for another model");
}

void set_side_path(nn::Linear& layer, const std::string& module, const LayerChanges& changes) {
  const int64_t out = layer.weight.dim(0), in = layer.weight.dim(1);
  if (!changes.downs.empty()) {
    for (size_t i = 0; i < changes.downs.size(); ++i) {
      const int64_t rank = changes.downs[i].dim(0);
      check_fits(changes.downs[i], {rank, in}, "down matrix", module, changes);
      check_fits(changes.ups[i], {out, rank}, "up matrix", module, changes);
    }
    layer.lora_down = ops::concat(changes.downs, 0);
    layer.lora_up = ops::concat(changes.ups, 1);
  }
  if (changes.diff.defined()) {
    check_fits(changes.diff, {out, in}, "weight difference", module, changes);
    layer.lora_diff = changes.diff;
  }
  if (changes.diff_bias.defined()) {
    check_fits(changes.diff_bias, {out}, "bias difference", module, changes);
    layer.lora_diff_bias = changes.diff_bias;
  }
}

}  // namespace

LoraChoice LoraChoice::parse(const std::string& text) {
  check(!text.empty(), "--lora needs a file, as FILE or FILE:STRENGTH");
  const size_t colon = text.rfind(':');
  if (colon != std::string::npos) {
    const std::string number = text.substr(colon + 1);
    float strength = 0.0f;
    const auto [end, error] = std::from_chars(number.data(), number.data() + number.size(), strength);
    if (error == std::errc() && end == number.data() + number.size() && !number.empty()) {
      check(std::isfinite(strength), "--lora " + text + ": the strength must be a finite number");
      check(colon > 0, "--lora " + text + ": no file before the strength");
      return {text.substr(0, colon), strength};
    }
  }
  return {text, 1.0f};
}

std::vector<AppliedLora> read_loras(const std::vector<LoraChoice>& choices,
                                    const QwenImageTransformerConfig& transformer,
                                    const Qwen2_5_VLTextConfig& text_encoder) {
  if (choices.empty()) return {};
  const LoraModuleNames modules{
      lora_module_names(parameter_names(QwenImageTransformer2DModel::parameter_shapes(transformer))),
      lora_module_names(parameter_names(Qwen2_5_VLTextModel::parameter_shapes(text_encoder)))};
  std::vector<AppliedLora> loras;
  for (const LoraChoice& choice : choices) {
    AppliedLora lora{read_lora_file(choice.path, modules), choice.strength, {}};
    std::error_code error;
    const std::filesystem::path absolute = std::filesystem::absolute(choice.path, error);
    const auto modified = std::filesystem::last_write_time(choice.path, error).time_since_epoch().count();
    lora.identity = absolute.string() + "|" + std::to_string(std::filesystem::file_size(choice.path, error)) +
                    "|" + std::to_string(modified) + "|" + std::to_string(choice.strength);
    loras.push_back(std::move(lora));
  }
  return loras;
}

std::string loras_identity(const std::vector<AppliedLora>& loras) {
  std::string identity;
  for (const AppliedLora& lora : loras) identity += (identity.empty() ? "" : ";") + lora.identity;
  return identity;
}

int attach_loras(const std::vector<AppliedLora>& loras, LoraComponent component,
                 const std::function<void(const nn::LinearVisitor&)>& visit_linears) {
  std::map<std::string, LayerChanges> by_module;
  for (const AppliedLora& lora : loras) {
    for (const LoraUpdate& update : lora.file.updates)
      if (update.component == component) gather(lora, update, by_module[update.module]);
  }
  std::set<std::string> attached;
  visit_linears([&](const std::string& module, nn::Linear& layer) {
    layer.lora_down = layer.lora_up = layer.lora_diff = layer.lora_diff_bias = Tensor();
    const auto found = by_module.find(module);
    if (found == by_module.end()) return;
    set_side_path(layer, module, found->second);
    attached.insert(module);
  });
  for (const auto& [module, changes] : by_module) {
    check(attached.count(module) > 0,
          changes.first_file + ": the LoRA changes '" + module + "', which is not a linear layer of the " +
              std::string(lora_component_name(component)) + " (only linear layers take LoRAs)");
  }
  return static_cast<int>(attached.size());
}

int attach_loras(const std::vector<AppliedLora>& loras, QwenImageTransformer2DModel& transformer) {
  return attach_loras(loras, LoraComponent::Transformer,
                      [&](const nn::LinearVisitor& visitor) { transformer.visit_linears(visitor); });
}

int attach_loras(const std::vector<AppliedLora>& loras, Qwen2_5_VLTextModel& text_encoder) {
  return attach_loras(loras, LoraComponent::TextEncoder,
                      [&](const nn::LinearVisitor& visitor) { text_encoder.visit_linears(visitor); });
}

bool can_merge_lora(const nn::Linear& layer) {
  const DType dtype = layer.weight.dtype();
  const bool lossless =
      !layer.weight_scale.defined() && (dtype == DType::F32 || dtype == DType::F16 || dtype == DType::BF16);
  return layer.has_lora() && lossless && (!layer.lora_diff_bias.defined() || layer.bias.defined());
}

void merge_lora(nn::Linear& layer) {
  check(can_merge_lora(layer), "merge_lora needs a layer with a LoRA and a lossless weight");
  const Device device = layer.weight.device();
  auto f32_here = [&](const Tensor& tensor) { return tensor.to(device).to(DType::F32); };
  Tensor merged = f32_here(layer.weight);
  if (layer.lora_down.defined())
    merged = ops::add(merged, ops::matmul(f32_here(layer.lora_up), f32_here(layer.lora_down)));
  if (layer.lora_diff.defined()) merged = ops::add(merged, f32_here(layer.lora_diff));
  layer.weight = merged.to(layer.weight.dtype());
  if (layer.lora_diff_bias.defined())
    layer.bias = ops::add(f32_here(layer.bias), f32_here(layer.lora_diff_bias)).to(layer.bias.dtype());
  layer.lora_down = layer.lora_up = layer.lora_diff = layer.lora_diff_bias = Tensor();
}

}  // namespace canvas
