// The CPU backend's upload queue: host tensors need no transfer, so each "upload" is a copy done at once.
#include <string>

#include "backend/cpu/cpu_backend.h"
#include "backend/cpu/cpu_support.h"

namespace canvas {

namespace {

std::string describe(const Tensor& tensor) {
  return shape_str(tensor.shape()) + " " + std::string(dtype_name(tensor.dtype())) + " on " +
         tensor.device().str();
}

void check_copy(const UploadCopy& copy, size_t index) {
  const std::string which = "upload copy " + std::to_string(index) + ": ";
  const Tensor& source = copy.source;
  const Tensor& destination = copy.destination;
  check(source.defined() && destination.defined(), which + "the source or destination is undefined");
  check(source.device().is_cpu() && destination.device().is_cpu(),
        which + "the CPU upload queue copies between host tensors, not " + describe(source) + " -> " +
            describe(destination));
  check(source.dtype() == destination.dtype() && source.numel() == destination.numel(),
        which + "the destination " + describe(destination) + " does not hold the source " + describe(source) +
            " (same dtype and element count needed)");
  // Checkpoint tensors are contiguous slices of the mapped file; a strided view means a caller's mistake.
  check(source.is_contiguous(), which + "the source " + describe(source) + " is not contiguous");
  check(destination.is_contiguous() && destination.buffer()->writable(),
        which + "the destination " + describe(destination) + " is not a contiguous writable tensor");
}

}  // namespace

Fence CpuUploadQueue::upload(std::vector<UploadCopy> copies, const Fence& reuse_after, UploadTimes* times) {
  // Every copy is checked before any runs, so a rejected batch leaves all destinations untouched.
  for (size_t i = 0; i < copies.size(); ++i) check_copy(copies[i], i);
  Timestamp start = times ? host_timestamp() : nullptr;
  for (const UploadCopy& copy : copies) {
    cpu::parallel_copy_bytes(copy.destination.raw_data(), copy.source.raw_data(), copy.source.nbytes());
  }
  if (times) *times = {std::move(start), host_timestamp()};
  return compute_fence();
}

Fence CpuUploadQueue::compute_fence() {
  return std::make_shared<DeviceFence>();
}

std::unique_ptr<UploadQueue> CpuBackend::create_upload_queue(int64_t staging_bytes) {
  return std::make_unique<CpuUploadQueue>();
}

}  // namespace canvas
