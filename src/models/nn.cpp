#include "models/nn.h"

namespace canvas::nn {

namespace {

void visit_if_defined(const std::string& name, Tensor& tensor, const ParameterVisitor& visitor) {
  if (tensor.defined()) visitor(name, tensor);
}

}  // namespace

Linear Linear::load(const WeightSource& weights, const std::string& prefix, int64_t in_features,
                    int64_t out_features, bool has_bias) {
  Linear layer;
  layer.weight = weights.get(prefix + ".weight", {out_features, in_features});
  if (has_bias) layer.bias = weights.get(prefix + ".bias", {out_features});
  return layer;
}

Tensor Linear::operator()(const Tensor& x) const {
  Tensor y = ops::linear(x, weight, bias, weight_scale);
  if (lora_down.defined()) y = ops::add(y, ops::linear(ops::linear(x, lora_down), lora_up));
  if (lora_diff.defined()) y = ops::add(y, ops::linear(x, lora_diff));
  if (lora_diff_bias.defined()) y = ops::add(y, lora_diff_bias);
  return y;
}

void Linear::visit(const std::string& prefix, const ParameterVisitor& visitor) {
  visit_if_defined(prefix + ".weight", weight, visitor);
  visit_if_defined(prefix + ".bias", bias, visitor);
  visit_if_defined(prefix + std::string(kWeightScaleSuffix), weight_scale, visitor);
  visit_if_defined(prefix + ".lora_down", lora_down, visitor);
  visit_if_defined(prefix + ".lora_up", lora_up, visitor);
  visit_if_defined(prefix + ".lora_diff", lora_diff, visitor);
  visit_if_defined(prefix + ".lora_diff_bias", lora_diff_bias, visitor);
}

void Linear::quantize(WeightFormat format) {
  QuantizedWeight quantized = quantize_weight(weight, format);
  weight = quantized.codes;
  weight_scale = quantized.scale;
}

RMSNorm RMSNorm::load(const WeightSource& weights, const std::string& prefix, int64_t dim, float eps) {
  return {weights.get(prefix + ".weight", {dim}), eps};
}

void RMSNorm::visit(const std::string& prefix, const ParameterVisitor& visitor) {
  visit_if_defined(prefix + ".weight", weight, visitor);
}

LayerNorm LayerNorm::load(const WeightSource& weights, const std::string& prefix, int64_t dim, float eps) {
  return {weights.get(prefix + ".weight", {dim}), weights.get(prefix + ".bias", {dim}), eps};
}

void LayerNorm::visit(const std::string& prefix, const ParameterVisitor& visitor) {
  visit_if_defined(prefix + ".weight", weight, visitor);
  visit_if_defined(prefix + ".bias", bias, visitor);
}

Embedding Embedding::load(const WeightSource& weights, const std::string& prefix, int64_t num_embeddings,
                          int64_t dim) {
  return {weights.get(prefix + ".weight", {num_embeddings, dim})};
}

void Embedding::visit(const std::string& prefix, const ParameterVisitor& visitor) {
  visit_if_defined(prefix + ".weight", weight, visitor);
}

}  // namespace canvas::nn
