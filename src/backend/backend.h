// The kernels a device provides. ops.h validates arguments and allocates outputs; a Backend only
// computes into the outputs it is handed. Inputs may be strided views (zero strides for broadcast);
// outputs are contiguous unless a method says otherwise.
#pragma once

#include "backend/ops.h"

namespace canvas {

enum class UnaryOp { Silu, GeluTanh, GeluErf, Sigmoid, Exp };
enum class BinaryOp { Add, Sub, Mul, Div };

class Backend {
 public:
  virtual ~Backend() = default;
  virtual Device device() const = 0;
  // Blocks until all work queued on the device has finished (timing, handing results to the host).
  virtual void synchronize() = 0;

  // dst may be a strided view; shapes match; dtypes may differ.
  virtual void copy(const Tensor& src, Tensor& dst) = 0;
  virtual void fill_zero(Tensor& dst) = 0;
  // Between this backend's device and the host, contiguous tensors of one dtype.
  virtual void transfer(const Tensor& src, Tensor& dst) = 0;

  // a and b are already broadcast to out's shape.
  virtual void binary(BinaryOp op, const Tensor& a, const Tensor& b, Tensor& out) = 0;
  virtual void unary(UnaryOp op, const Tensor& x, Tensor& out) = 0;
  virtual void scale(const Tensor& x, float factor, Tensor& out) = 0;
  virtual void clamp(const Tensor& x, float min_value, float max_value, Tensor& out) = 0;
  // shift and scale (and gate) are already broadcast to x's shape.
  virtual void modulate(const Tensor& x, const Tensor& shift, const Tensor& scale, Tensor& out) = 0;
  virtual void gated_add(const Tensor& residual, const Tensor& gate, const Tensor& x, Tensor& out) = 0;

  virtual void layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, float eps,
                          Tensor& out) = 0;
  virtual void rms_norm(const Tensor& x, const Tensor& weight, float eps, Tensor& out) = 0;
  virtual void l2_normalize(const Tensor& x, int axis, float eps, Tensor& out) = 0;
  virtual void softmax(const Tensor& x, Tensor& out) = 0;
  virtual void vector_norm(const Tensor& x, Tensor& out) = 0;

  // weight_scale: undefined for plain weights, else the scales of quantized codes (ops::linear).
  virtual void linear(const Tensor& x, const Tensor& weight, const Tensor& bias, const Tensor& weight_scale,
                      Tensor& out) = 0;
  // Batch axes of a and b are already broadcast to out's batch axes.
  virtual void matmul(const Tensor& a, const Tensor& b, Tensor& out) = 0;
  virtual void attention(const Tensor& q, const Tensor& k, const Tensor& v, const ops::AttentionMask& mask,
                         float softmax_scale, Tensor& out) = 0;
  // cos and sin are [B, L, D/2] (batch possibly broadcast with stride 0).
  virtual void rope(const Tensor& x, const Tensor& cos, const Tensor& sin, ops::RopeLayout layout,
                    Tensor& out) = 0;

  virtual void conv2d(const Tensor& x, const Tensor& weight, const Tensor& bias,
                      const ops::Conv2dParams& params, Tensor& out) = 0;
  virtual void upsample_nearest2x(const Tensor& x, Tensor& out) = 0;
  virtual void embedding(const Tensor& ids, const Tensor& table, Tensor& out) = 0;
};

// The backend that runs ops on tensors of this device. Throws canvas::Error if the build has none.
Backend& backend_for(Device device);
void register_backend(std::unique_ptr<Backend> backend);

}  // namespace canvas
