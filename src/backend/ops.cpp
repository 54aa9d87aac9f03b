#include "backend/ops.h"

#include <cmath>

#include "backend/backend.h"
#include "tensor/quantize.h"

namespace canvas::ops {

namespace {

std::string describe(const Tensor& t) {
  return shape_str(t.shape()) + " " + std::string(dtype_name(t.dtype()));
}

Backend& backend_of(std::initializer_list<const Tensor*> tensors) {
  const Tensor* first = nullptr;
  for (const Tensor* tensor : tensors) {
    if (!tensor->defined()) continue;
    if (!first) {
      first = tensor;
    } else {
      check(tensor->device() == first->device(),
            "tensors on " + first->device().str() + " and " + tensor->device().str() + " in one op");
    }
  }
  check(first != nullptr, "op without any defined tensor");
  return backend_for(first->device());
}

void check_float_activation(const Tensor& x, const char* op) {
  check(x.defined(), std::string(op) + ": undefined input");
  check(is_float(x.dtype()) && !is_block_quantized(x.dtype()),
        std::string(op) + ": activations must be a plain float dtype, got " + describe(x));
}

Tensor binary(BinaryOp op, const Tensor& a, const Tensor& b) {
  check_float_activation(a, "binary op");
  check_float_activation(b, "binary op");
  Backend& backend = backend_of({&a, &b});
  Shape shape = broadcast_shapes(a.shape(), b.shape());
  Tensor out = Tensor::empty(shape, a.dtype(), a.device());
  backend.binary(op, expand(a, shape), expand(b, shape), out);
  return out;
}

Tensor unary(UnaryOp op, const Tensor& x) {
  check_float_activation(x, "unary op");
  Tensor out = Tensor::empty(x.shape(), x.dtype(), x.device());
  backend_of({&x}).unary(op, x, out);
  return out;
}

void check_last_axis_param(const Tensor& param, const Tensor& x, const char* op, const char* name) {
  if (!param.defined()) return;
  check(param.ndim() == 1 && param.dim(0) == x.dim(-1),
        std::string(op) + ": " + name + " " + describe(param) + " does not match input " + describe(x));
}

}  // namespace

Tensor contiguous(const Tensor& x) {
  Tensor out = Tensor::empty(x.shape(), x.dtype(), x.device());
  backend_of({&x}).copy(x, out);
  return out;
}

Tensor cast(const Tensor& x, DType dtype) {
  check(!is_block_quantized(x.dtype()) && !is_block_quantized(dtype),
        "cast between " + std::string(dtype_name(x.dtype())) + " and " + std::string(dtype_name(dtype)) +
            " needs (de)quantization, not a cast");
  Tensor out = Tensor::empty(x.shape(), dtype, x.device());
  backend_of({&x}).copy(x, out);
  return out;
}

Tensor to_device(const Tensor& x, Device device) {
  if (x.device() == device) return x;
  // Moving onto meta is how a dry run places weights and inputs; moving off it would hand out zeros.
  check(!x.device().is_meta(),
        "meta tensors have no data: cannot move " + describe(x) + " from meta to " + device.str());
  Tensor source = x.contiguous();
  Tensor out = Tensor::empty(x.shape(), x.dtype(), device);
  // The non-host side owns the transfer.
  Backend& backend = backend_for(device.is_cpu() ? x.device() : device);
  backend.transfer(source, out);
  return out;
}

void copy_into(const Tensor& src, Tensor& dst) {
  check(src.shape() == dst.shape(), "copy of " + describe(src) + " into " + describe(dst));
  check(dst.buffer()->writable(), "copy into a read-only (mapped) tensor");
  if (src.device() == dst.device()) {
    backend_of({&src, &dst}).copy(src, dst);
    return;
  }
  Tensor moved = to_device(src, dst.device());
  backend_of({&dst}).copy(moved, dst);
}

void fill_zero(Tensor& dst) {
  backend_of({&dst}).fill_zero(dst);
}

Tensor concat(std::span<const Tensor> parts, int axis) {
  check(!parts.empty(), "concat of no tensors");
  const Tensor& first = parts.front();
  int resolved = normalize_axis(axis, first.ndim());
  Shape shape = first.shape();
  shape[resolved] = 0;
  for (const Tensor& part : parts) {
    check(part.ndim() == first.ndim() && part.dtype() == first.dtype() && part.device() == first.device(),
          "concat of " + describe(first) + " and " + describe(part));
    for (int i = 0; i < first.ndim(); ++i) {
      check(
          i == resolved || part.dim(i) == first.dim(i),
          "concat along axis " + std::to_string(axis) + " of " + describe(first) + " and " + describe(part));
    }
    shape[resolved] += part.dim(resolved);
  }
  Tensor out = Tensor::empty(shape, first.dtype(), first.device());
  int64_t offset = 0;
  for (const Tensor& part : parts) {
    Tensor destination = out.slice(resolved, offset, offset + part.dim(resolved));
    backend_of({&part}).copy(part, destination);
    offset += part.dim(resolved);
  }
  return out;
}

Tensor expand(const Tensor& x, const Shape& shape) {
  check(x.ndim() <= static_cast<int>(shape.size()),
        "cannot expand " + describe(x) + " to " + shape_str(shape));
  if (x.shape() == shape) return x;
  // Build the broadcast view by prepending unit axes, then zeroing strides of broadcast axes.
  Tensor view = x;
  while (view.ndim() < static_cast<int>(shape.size())) view = view.unsqueeze(0);
  Strides strides = view.strides();
  for (size_t i = 0; i < shape.size(); ++i) {
    if (view.shape()[i] == shape[i]) continue;
    check(view.shape()[i] == 1, "cannot expand " + describe(x) + " to " + shape_str(shape));
    strides[i] = 0;
  }
  return Tensor::strided_view(view, shape, strides);
}

Tensor add(const Tensor& a, const Tensor& b) {
  return binary(BinaryOp::Add, a, b);
}
Tensor sub(const Tensor& a, const Tensor& b) {
  return binary(BinaryOp::Sub, a, b);
}
Tensor mul(const Tensor& a, const Tensor& b) {
  return binary(BinaryOp::Mul, a, b);
}
Tensor div(const Tensor& a, const Tensor& b) {
  return binary(BinaryOp::Div, a, b);
}

Tensor scale(const Tensor& x, float factor) {
  check_float_activation(x, "scale");
  Tensor out = Tensor::empty(x.shape(), x.dtype(), x.device());
  backend_of({&x}).scale(x, factor, out);
  return out;
}

Tensor clamp(const Tensor& x, float min_value, float max_value) {
  check_float_activation(x, "clamp");
  check(min_value <= max_value, "clamp with min > max");
  Tensor out = Tensor::empty(x.shape(), x.dtype(), x.device());
  backend_of({&x}).clamp(x, min_value, max_value, out);
  return out;
}

Tensor silu(const Tensor& x) {
  return unary(UnaryOp::Silu, x);
}
Tensor gelu_tanh(const Tensor& x) {
  return unary(UnaryOp::GeluTanh, x);
}
Tensor gelu_erf(const Tensor& x) {
  return unary(UnaryOp::GeluErf, x);
}
Tensor sigmoid(const Tensor& x) {
  return unary(UnaryOp::Sigmoid, x);
}
Tensor exp(const Tensor& x) {
  return unary(UnaryOp::Exp, x);
}

Tensor modulate(const Tensor& x, const Tensor& shift, const Tensor& scale) {
  check_float_activation(x, "modulate");
  Backend& backend = backend_of({&x, &shift, &scale});
  Tensor out = Tensor::empty(x.shape(), x.dtype(), x.device());
  backend.modulate(x, expand(shift, x.shape()), expand(scale, x.shape()), out);
  return out;
}

Tensor gated_add(const Tensor& residual, const Tensor& gate, const Tensor& x) {
  check_float_activation(x, "gated_add");
  check(residual.shape() == x.shape(), "gated_add of " + describe(residual) + " and " + describe(x));
  Backend& backend = backend_of({&residual, &gate, &x});
  Tensor out = Tensor::empty(x.shape(), residual.dtype(), x.device());
  backend.gated_add(residual, expand(gate, x.shape()), x, out);
  return out;
}

Tensor layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, float eps) {
  check_float_activation(x, "layer_norm");
  check_last_axis_param(weight, x, "layer_norm", "weight");
  check_last_axis_param(bias, x, "layer_norm", "bias");
  Tensor out = Tensor::empty(x.shape(), x.dtype(), x.device());
  backend_of({&x, &weight, &bias}).layer_norm(x, weight, bias, eps, out);
  return out;
}

Tensor rms_norm(const Tensor& x, const Tensor& weight, float eps) {
  check_float_activation(x, "rms_norm");
  check_last_axis_param(weight, x, "rms_norm", "weight");
  Tensor out = Tensor::empty(x.shape(), x.dtype(), x.device());
  backend_of({&x, &weight}).rms_norm(x, weight, eps, out);
  return out;
}

Tensor l2_normalize(const Tensor& x, int axis, float eps) {
  check_float_activation(x, "l2_normalize");
  Tensor out = Tensor::empty(x.shape(), x.dtype(), x.device());
  backend_of({&x}).l2_normalize(x, normalize_axis(axis, x.ndim()), eps, out);
  return out;
}

Tensor softmax(const Tensor& x) {
  check_float_activation(x, "softmax");
  Tensor out = Tensor::empty(x.shape(), x.dtype(), x.device());
  backend_of({&x}).softmax(x, out);
  return out;
}

Tensor vector_norm(const Tensor& x) {
  check_float_activation(x, "vector_norm");
  Shape shape = x.shape();
  shape.back() = 1;
  Tensor out = Tensor::empty(shape, x.dtype(), x.device());
  backend_of({&x}).vector_norm(x, out);
  return out;
}

Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias, const Tensor& weight_scale) {
  check_float_activation(x, "linear");
  check(weight.ndim() == 2 && weight.dim(1) == x.dim(-1),
        "linear: weight " + describe(weight) + " does not take input " + describe(x));
  check(is_float(weight.dtype()), "linear: weight must be a float type, got " + describe(weight));
  check(!bias.defined() || (bias.ndim() == 1 && bias.dim(0) == weight.dim(0)),
        "linear: bias " + describe(bias) + " does not match weight " + describe(weight));
  if (weight_scale.defined()) {
    check_weight_scale(weight, weight_scale, "linear");
  } else {
    check(!is_block_quantized(weight.dtype()), "linear: " + describe(weight) + " weights need their scales");
  }
  Shape shape = x.shape();
  shape.back() = weight.dim(0);
  Tensor out = Tensor::empty(shape, x.dtype(), x.device());
  backend_of({&x, &weight, &bias, &weight_scale}).linear(x, weight, bias, weight_scale, out);
  return out;
}

Tensor matmul(const Tensor& a, const Tensor& b) {
  check_float_activation(a, "matmul");
  check_float_activation(b, "matmul");
  check(a.ndim() >= 2 && b.ndim() >= 2 && a.dim(-1) == b.dim(-2),
        "matmul of " + describe(a) + " and " + describe(b));
  Shape batch_a(a.shape().begin(), a.shape().end() - 2);
  Shape batch_b(b.shape().begin(), b.shape().end() - 2);
  Shape batch = broadcast_shapes(batch_a, batch_b);
  Shape shape_a = batch, shape_b = batch, shape_out = batch;
  shape_a.insert(shape_a.end(), {a.dim(-2), a.dim(-1)});
  shape_b.insert(shape_b.end(), {b.dim(-2), b.dim(-1)});
  shape_out.insert(shape_out.end(), {a.dim(-2), b.dim(-1)});
  Tensor out = Tensor::empty(shape_out, a.dtype(), a.device());
  backend_of({&a, &b}).matmul(expand(a, shape_a), expand(b, shape_b), out);
  return out;
}

Tensor attention(const Tensor& q, const Tensor& k, const Tensor& v, const AttentionMask& mask,
                 float softmax_scale) {
  check_float_activation(q, "attention");
  check(q.ndim() == 4 && k.ndim() == 4 && v.ndim() == 4, "attention takes [B, H, L, D] tensors, got q " +
                                                             describe(q) + ", k " + describe(k) + ", v " +
                                                             describe(v));
  int64_t batch = q.dim(0), heads = q.dim(1), queries = q.dim(2), head_dim = q.dim(3);
  int64_t kv_heads = k.dim(1), keys = k.dim(2);
  check(k.dim(0) == batch && v.dim(0) == batch && k.dim(3) == head_dim && v.dim(1) == kv_heads &&
            v.dim(2) == keys && kv_heads > 0 && heads % kv_heads == 0,
        "attention shapes do not fit: q " + describe(q) + ", k " + describe(k) + ", v " + describe(v));
  if (mask.key_padding.defined()) {
    check(mask.key_padding.ndim() == 2 && mask.key_padding.dim(0) == batch && mask.key_padding.dim(1) == keys,
          "attention key mask " + describe(mask.key_padding) + " does not match " + std::to_string(batch) +
              " x " + std::to_string(keys) + " keys");
  }
  check(!mask.causal || queries <= keys, "causal attention with more queries than keys");
  Tensor out = Tensor::empty({batch, heads, queries, v.dim(3)}, q.dtype(), q.device());
  backend_of({&q, &k, &v, &mask.key_padding}).attention(q, k, v, mask, softmax_scale, out);
  return out;
}

Tensor rope(const Tensor& x, const Tensor& cos, const Tensor& sin, RopeLayout layout) {
  check_float_activation(x, "rope");
  check(x.ndim() == 4 && x.dim(3) % 2 == 0, "rope takes x [B, L, H, D] with even D, got " + describe(x));
  int64_t batch = x.dim(0), length = x.dim(1), pairs = x.dim(3) / 2;
  auto table = [&](const Tensor& t, const char* name) {
    check(cos.shape() == sin.shape(), "rope: cos and sin shapes differ");
    bool per_sequence = t.ndim() == 2 && t.dim(0) == length && t.dim(1) == pairs;
    bool per_sample = t.ndim() == 3 && t.dim(0) == batch && t.dim(1) == length && t.dim(2) == pairs;
    check(per_sequence || per_sample, std::string("rope: ") + name + " " + describe(t) +
                                          " does not match x " + describe(x) +
                                          " (want [L, D/2] or [B, L, D/2])");
    return expand(t, {batch, length, pairs});
  };
  Tensor out = Tensor::empty(x.shape(), x.dtype(), x.device());
  backend_of({&x, &cos, &sin}).rope(x, table(cos, "cos"), table(sin, "sin"), layout, out);
  return out;
}

Tensor conv2d(const Tensor& x, const Tensor& weight, const Tensor& bias, const Conv2dParams& params) {
  check_float_activation(x, "conv2d");
  check(x.ndim() == 4 && weight.ndim() == 4 && weight.dim(1) == x.dim(1),
        "conv2d: weight " + describe(weight) + " does not take input " + describe(x));
  check(!bias.defined() || (bias.ndim() == 1 && bias.dim(0) == weight.dim(0)),
        "conv2d: bias " + describe(bias) + " does not match weight " + describe(weight));
  check(params.stride >= 1 && params.pad_top >= 0 && params.pad_bottom >= 0 && params.pad_left >= 0 &&
            params.pad_right >= 0,
        "conv2d: invalid stride or padding");
  int64_t padded_h = x.dim(2) + params.pad_top + params.pad_bottom;
  int64_t padded_w = x.dim(3) + params.pad_left + params.pad_right;
  check(padded_h >= weight.dim(2) && padded_w >= weight.dim(3),
        "conv2d: input " + describe(x) + " with its padding is smaller than the kernel " + describe(weight));
  int64_t out_h = (padded_h - weight.dim(2)) / params.stride + 1;
  int64_t out_w = (padded_w - weight.dim(3)) / params.stride + 1;
  Tensor out = Tensor::empty({x.dim(0), weight.dim(0), out_h, out_w}, x.dtype(), x.device());
  backend_of({&x, &weight, &bias}).conv2d(x, weight, bias, params, out);
  return out;
}

Tensor upsample_nearest2x(const Tensor& x) {
  check_float_activation(x, "upsample_nearest2x");
  check(x.ndim() == 4, "upsample_nearest2x takes [N, C, H, W], got " + describe(x));
  Tensor out = Tensor::empty({x.dim(0), x.dim(1), x.dim(2) * 2, x.dim(3) * 2}, x.dtype(), x.device());
  backend_of({&x}).upsample_nearest2x(x, out);
  return out;
}

Tensor embedding(const Tensor& ids, const Tensor& table, DType output_dtype) {
  check(ids.dtype() == DType::I32 || ids.dtype() == DType::I64,
        "embedding ids must be i32 or i64, got " + describe(ids));
  check(table.ndim() == 2, "embedding table must be [V, D], got " + describe(table));
  Shape shape = ids.shape();
  shape.push_back(table.dim(1));
  Tensor out = Tensor::empty(shape, output_dtype, table.device());
  backend_of({&ids, &table}).embedding(ids, table, out);
  return out;
}

}  // namespace canvas::ops
