// The CUDA backend: activations in bf16 (or f32 for parity checks), GEMMs through cuBLASLt, attention
// through cuDNN's fused SDPA, convolutions through cuDNN, and small fused kernels for the rest. All
// work of one device runs in order on its compute stream; copies that should overlap compute use the
// separate copy stream with events.
#pragma once

#include <memory>
#include <string>

#include "backend/backend.h"

namespace canvas {

// Registers the allocator (device memory), a pinned-host allocator and the backend of every visible
// CUDA device. Call once at startup before any tensor is placed on a CUDA device. Returns the number of
// devices; throws canvas::Error when the driver or runtime cannot be used.
int register_cuda_backends();
// Why register_cuda_backends found no device (no GPU, no or too old a driver); empty otherwise.
const std::string& cuda_unavailable_reason();
// Pinned host memory for staging copies, charged like any other allocation.
Allocator& pinned_host_allocator();
// The locker of mapped checkpoint pages in place (host_page_locks.h), or nullptr when one of the
// `device_count` devices cannot read read-only registered host memory.
class HostPageLocker;
HostPageLocker* cuda_host_page_locker(int device_count);

struct CudaContext;  // handles, streams and workspaces; defined in cuda_context.h
class CudaClock;     // device timestamps; defined in cuda_timestamp.h

class CudaBackend final : public Backend {
 public:
  explicit CudaBackend(int device_index);
  ~CudaBackend() override;
  Device device() const override { return Device::cuda(device_index_); }
  CudaContext& context() { return *context_; }
  std::string description() const override;
  void synchronize() override;
  DeviceMemoryInfo memory_info() override;
  void release_cached_memory() override;
  int64_t scratch_reserve_bytes() const override;
  std::unique_ptr<UploadQueue> create_upload_queue(int64_t staging_bytes) override;
  Timestamp compute_timestamp() override;

  void copy(const Tensor& src, Tensor& dst) override;
  void fill_zero(Tensor& dst) override;
  void transfer(const Tensor& src, Tensor& dst) override;

  void binary(BinaryOp op, const Tensor& a, const Tensor& b, Tensor& out) override;
  void unary(UnaryOp op, const Tensor& x, Tensor& out) override;
  void scale(const Tensor& x, float factor, Tensor& out) override;
  void clamp(const Tensor& x, float min_value, float max_value, Tensor& out) override;
  void modulate(const Tensor& x, const Tensor& shift, const Tensor& scale, Tensor& out) override;
  void gated_add(const Tensor& residual, const Tensor& gate, const Tensor& x, Tensor& out) override;

  void layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, float eps, Tensor& out) override;
  void rms_norm(const Tensor& x, const Tensor& weight, float eps, Tensor& out) override;
  void l2_normalize(const Tensor& x, int axis, float eps, Tensor& out) override;
  void softmax(const Tensor& x, Tensor& out) override;
  void vector_norm(const Tensor& x, Tensor& out) override;

  void linear(const Tensor& x, const Tensor& weight, const Tensor& bias, const Tensor& weight_scale,
              Tensor& out) override;
  void matmul(const Tensor& a, const Tensor& b, Tensor& out) override;
  void attention(const Tensor& q, const Tensor& k, const Tensor& v, const ops::AttentionMask& mask,
                 float softmax_scale, Tensor& out) override;
  void rope(const Tensor& x, const Tensor& cos, const Tensor& sin, ops::RopeLayout layout,
            Tensor& out) override;

  void conv2d(const Tensor& x, const Tensor& weight, const Tensor& bias, const ops::Conv2dParams& params,
              Tensor& out) override;
  void upsample_nearest2x(const Tensor& x, Tensor& out) override;
  void embedding(const Tensor& ids, const Tensor& table, Tensor& out) override;

 private:
  int device_index_;
  std::unique_ptr<CudaContext> context_;
  std::unique_ptr<CudaClock> clock_;
};

}  // namespace canvas
