// Device timestamps for the profiler (DeviceTimestamp in backend/backend.h) from CUDA events. An event's
// time is only known relative to another event of its device, so each is read against a reference event
// whose host time was measured: recorded on a private stream with nothing queued, and waited for, which
// waits for none of the job's work.
#pragma once

#include <cuda_runtime.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <optional>

#include "backend/backend.h"

namespace canvas {

// An event and the steady-clock time at which the device passed it.
struct CudaClockReference {
  cudaEvent_t event = nullptr;
  std::chrono::steady_clock::time_point host_time;
  ~CudaClockReference();
};

class CudaTimestamp final : public DeviceTimestamp {
 public:
  // Creates the event on the current device.
  explicit CudaTimestamp(std::shared_ptr<const CudaClockReference> reference);
  ~CudaTimestamp() override;
  CudaTimestamp(const CudaTimestamp&) = delete;
  CudaTimestamp& operator=(const CudaTimestamp&) = delete;

  // Marks the point `stream` has reached. The upload worker records timestamps its caller already holds,
  // so this may run on another thread than time().
  void record(cudaStream_t stream);
  std::optional<std::chrono::steady_clock::time_point> time() override;

 private:
  cudaEvent_t event_ = nullptr;
  std::shared_ptr<const CudaClockReference> reference_;
  // An event never recorded would query as complete.
  std::atomic<bool> recorded_{false};
};

class CudaClock {
 public:
  explicit CudaClock(int device) : device_(device) {}
  ~CudaClock();
  CudaClock(const CudaClock&) = delete;
  CudaClock& operator=(const CudaClock&) = delete;

  // A timestamp for the caller to record on one of the device's streams.
  std::shared_ptr<CudaTimestamp> timestamp();

 private:
  int device_;
  std::mutex mutex_;
  cudaStream_t stream_ = nullptr;  // made on first use: a job without a profiler makes nothing
  std::shared_ptr<const CudaClockReference> reference_;
};

}  // namespace canvas
