// The CPU backend: f32 compute on host memory, multi-threaded, GEMMs through OpenBLAS. Weights stored
// in lower precision are widened to f32 in row blocks as they are used.
#pragma once

#include "backend/backend.h"

namespace canvas {

// Copies each source into its destination before upload() returns, so every fence is complete when it is
// handed out and waiting on one is a no-op.
class CpuUploadQueue final : public UploadQueue {
 public:
  Fence upload(std::vector<UploadCopy> copies, const Fence& reuse_after, UploadTimes* times) override;
  void compute_wait(const Fence& fence) override {}
  Fence compute_fence() override;
};

// Host memory and the host's cores. Indices past 0 (cpu:1, ...) are simulated device pools: host memory
// under their own allocator, so multi-device placement runs and is checked on machines without GPUs.
class CpuBackend final : public Backend {
 public:
  explicit CpuBackend(int index = 0) : index_(index) {}
  Device device() const override { return {DeviceType::CPU, index_}; }
  std::string description() const override;
  void synchronize() override {}
  // The host's available and total memory (memory/host_memory.h), cgroup and rlimit included.
  DeviceMemoryInfo memory_info() override;
  int64_t scratch_reserve_bytes() const override;
  // Host tensors are already where the CPU computes: the queue copies at once and ignores staging_bytes.
  std::unique_ptr<UploadQueue> create_upload_queue(int64_t staging_bytes) override;
  // Ops return once their work is done, so the host's clock is the device's.
  Timestamp compute_timestamp() override { return host_timestamp(); }

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
  int index_;
};

}  // namespace canvas
