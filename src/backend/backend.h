// The kernels a device provides. ops.h validates arguments and allocates outputs; a Backend only
// computes into the outputs it is handed. Inputs may be strided views (zero strides for broadcast);
// outputs are contiguous unless a method says otherwise.
#pragma once

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "backend/ops.h"

namespace canvas {

struct DeviceMemoryInfo {
  int64_t free_bytes = 0;
  int64_t total_bytes = 0;
};

// A point in a device's queued work that later work can wait for.
class DeviceFence {
 public:
  virtual ~DeviceFence() = default;
};
using Fence = std::shared_ptr<DeviceFence>;

// A point in a device's queued work, read on the host's steady clock once the device has passed it: the
// profiler times asynchronous device work with these, since host clock readings around it would time its
// queuing instead.
class DeviceTimestamp {
 public:
  virtual ~DeviceTimestamp() = default;
  // When the device passed this point, or nullopt while it has not. Never waits for the device.
  virtual std::optional<std::chrono::steady_clock::time_point> time() = 0;
};
using Timestamp = std::shared_ptr<DeviceTimestamp>;

// The host's clock now, for backends whose work has finished when the call queuing it returns.
Timestamp host_timestamp();

// When the device began and finished one upload's copies.
struct UploadTimes {
  Timestamp start;
  Timestamp end;
};

// One host-to-device copy of a weight: the destination is a contiguous device tensor with the source's
// dtype and element count.
struct UploadCopy {
  Tensor source;
  Tensor destination;
};

// Host-to-device copies that overlap compute, for weight streaming (planning/weight_streamer.h). Copies run
// in the order they are queued.
class UploadQueue {
 public:
  virtual ~UploadQueue() = default;
  // Queues `copies` to start once the device has passed `reuse_after` (a compute fence guarding the
  // destination's previous contents; null to start at once). The returned fence completes with them.
  // `times`, for profiling, receives timestamps around the copies; null times nothing and costs nothing.
  virtual Fence upload(std::vector<UploadCopy> copies, const Fence& reuse_after, UploadTimes* times) = 0;
  // Compute queued after this call waits for `fence`.
  virtual void compute_wait(const Fence& fence) = 0;
  // A fence that completes when the compute queued so far has finished.
  virtual Fence compute_fence() = 0;
};

enum class UnaryOp { Silu, GeluTanh, GeluErf, Sigmoid, Exp };
enum class BinaryOp { Add, Sub, Mul, Div };

class Backend {
 public:
  virtual ~Backend() = default;
  virtual Device device() const = 0;
  // The hardware behind device(), e.g. "cpu (AMD EPYC 9654, 2 threads)" or "NVIDIA H200 (sm_90, driver
  // 12.8)": for logs, and as the key of measurements cached per machine (planning/machine_profile.h).
  virtual std::string description() const = 0;
  // Blocks until all work queued on the device has finished (timing, handing results to the host).
  virtual void synchronize() = 0;
  // Free and total memory as the driver sees it; on the CPU, the host's available and total RAM. Cheap,
  // and safe beside running work (the profiler samples it).
  virtual DeviceMemoryInfo memory_info() = 0;
  // Waits for queued work and hands memory cached by the backend's pool back to the driver, so that
  // memory_info() then reports what a new plan can have.
  virtual void release_cached_memory() {}
  // Device memory the backend's own scratch may hold at once beyond what ops allocate for their outputs
  // (library workspaces, widened weights, im2col buffers). Memory plans leave it free.
  virtual int64_t scratch_reserve_bytes() const = 0;
  // staging_bytes caps the pinned host memory the queue may hold to stage sources that are not pinned.
  virtual std::unique_ptr<UploadQueue> create_upload_queue(int64_t staging_bytes) = 0;
  // A timestamp of the point the compute queued so far will have reached, for profiling.
  virtual Timestamp compute_timestamp() = 0;

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
