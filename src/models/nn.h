// Building blocks shared by the networks, named after their torch.nn counterparts so model files read
// like the reference modules. Each holds its weights and applies one op; kernels live in the backends.
#pragma once

#include <functional>
#include <string>

#include "backend/ops.h"
#include "io/weight_source.h"
#include "tensor/quantize.h"

namespace canvas::nn {

// Visits every weight tensor of a module with its name relative to the module, so the memory planner
// can move a module's weights between devices without knowing its structure.
using ParameterVisitor = std::function<void(const std::string& name, Tensor& tensor)>;

// The name suffix Linear::visit gives weight scales: they stay f32 on every device.
inline constexpr std::string_view kWeightScaleSuffix = ".weight_scale";

// The dtype a weight takes once placed on `device`: off the CPU, float weights stored in f32 or f16 are
// converted to the compute dtype so every GEMM runs on matching operands; bf16, fp8 and nf4 weights keep
// their storage, and so do the f32 scales of quantized weights. On the CPU every weight is used as stored.
inline DType placed_dtype(const Tensor& weight, std::string_view name, Device device, DType compute_dtype) {
  const bool float_to_convert =
      (weight.dtype() == DType::F32 || weight.dtype() == DType::F16) && !name.ends_with(kWeightScaleSuffix);
  return !device.is_cpu() && float_to_convert ? compute_dtype : weight.dtype();
}

// Moves a model's weights onto `device` in their placed dtypes, charged to `component`.
template <typename Model>
void place_weights(Model& model, const std::string& component, Device device, DType compute_dtype) {
  if (device.is_cpu()) return;
  OwnerScope owner({component, -1, MemoryRole::Weights});
  model.visit([&](const std::string& name, Tensor& weight) {
    weight = weight.to(device).to(placed_dtype(weight, name, device, compute_dtype));
  });
}

// Lets an executor bring a block's weights onto the device just before the block runs and reuse their
// memory after it (planning/weight_streamer.h). Models that loop over their blocks accept one.
class BlockGate {
 public:
  virtual ~BlockGate() = default;
  virtual void before_block(int index) = 0;
  virtual void after_block(int index) = 0;
};

struct Linear {
  Tensor weight;        // [out, in]
  Tensor bias;          // [out], undefined when the layer has none
  Tensor weight_scale;  // f32 scales of quantized weight codes (tensor/quantize.h); undefined otherwise
  // LoRAs computed beside the weight (models/lora.h), each undefined when none: the output gains
  // (x lora_downᵀ) lora_upᵀ + x lora_diffᵀ + lora_diff_bias. The low-rank pairs of every LoRA on the layer
  // are stacked along the rank, their scales folded into lora_up.
  Tensor lora_down;       // [rank, in]
  Tensor lora_up;         // [out, rank]
  Tensor lora_diff;       // [out, in]
  Tensor lora_diff_bias;  // [out]

  static Linear load(const WeightSource& weights, const std::string& prefix, int64_t in_features,
                     int64_t out_features, bool has_bias = true);
  Tensor operator()(const Tensor& x) const;
  // Replaces the (host) weight by its codes and scales in `format`; LoRAs stay as they are.
  void quantize(WeightFormat format);
  bool has_lora() const { return lora_down.defined() || lora_diff.defined() || lora_diff_bias.defined(); }
  void visit(const std::string& prefix, const ParameterVisitor& visitor);
};

// Visits each linear layer of a network with its module path (e.g. "transformer_blocks.0.attn.to_q").
using LinearVisitor = std::function<void(const std::string& module, Linear& layer)>;

struct RMSNorm {
  Tensor weight;  // [dim], undefined for a norm without affine weight
  float eps = 1e-6f;

  static RMSNorm load(const WeightSource& weights, const std::string& prefix, int64_t dim, float eps);
  Tensor operator()(const Tensor& x) const { return ops::rms_norm(x, weight, eps); }
  void visit(const std::string& prefix, const ParameterVisitor& visitor);
};

struct LayerNorm {
  Tensor weight;  // undefined when elementwise_affine=False
  Tensor bias;
  float eps = 1e-6f;

  static LayerNorm load(const WeightSource& weights, const std::string& prefix, int64_t dim, float eps);
  static LayerNorm without_affine(float eps) { return {{}, {}, eps}; }
  Tensor operator()(const Tensor& x) const { return ops::layer_norm(x, weight, bias, eps); }
  void visit(const std::string& prefix, const ParameterVisitor& visitor);
};

struct Embedding {
  Tensor weight;  // [num_embeddings, dim]

  static Embedding load(const WeightSource& weights, const std::string& prefix, int64_t num_embeddings,
                        int64_t dim);
  Tensor operator()(const Tensor& ids, DType output_dtype) const {
    return ops::embedding(ids, weight, output_dtype);
  }
  void visit(const std::string& prefix, const ParameterVisitor& visitor);
};

}  // namespace canvas::nn
