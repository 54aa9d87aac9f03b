// Exchanges between the devices of one host that share a job (sequence-parallel attention), driven by
// one host thread: each call takes every rank's part at once and queues the exchange on every device.
// Ranks may repeat a device (tests run two ranks on one GPU or on the host).
#pragma once

#include <functional>
#include <memory>
#include <vector>

#include "tensor/tensor.h"

namespace canvas {

class Communicator {
 public:
  virtual ~Communicator() = default;
  // The device of each rank.
  virtual const std::vector<Device>& devices() const = 0;
  // sends[r][s] is a tensor on rank r's device meant for rank s (any shape; one dtype throughout). Returns
  // received[s][r]: that tensor on rank s's device, contiguous, in the same shape. The results are
  // ordered before later work queued on each receiving device; no host wait is implied.
  virtual std::vector<std::vector<Tensor>> all_to_all(const std::vector<std::vector<Tensor>>& sends) = 0;
  // What carries the exchange, for logs and plans: "nccl 2.27.3", "device copies".
  virtual std::string description() const = 0;
};

// Checks the shape of an all_to_all request: one row per rank, one tensor per rank in each row, on the
// sending rank's device, all of one dtype. Throws canvas::Error naming what is wrong.
void check_all_to_all(const std::vector<Device>& devices, const std::vector<std::vector<Tensor>>& sends);

// A communicator for `devices`: NCCL when they are distinct CUDA devices and the CUDA backend registered
// a factory for it; otherwise plain device copies (Tensor::to), for ranks on the host (simulated device
// pools) or sharing a device. Throws canvas::Error when the devices' library cannot be used.
std::unique_ptr<Communicator> create_communicator(const std::vector<Device>& devices);

// The process's communicator for `devices`, made by create_communicator at the first call and kept: a
// library's setup (NCCL's is about a second, and buffers of its own on each device) is paid once, and done
// by a first small exchange, so memory measured afterwards no longer counts what the library holds.
std::shared_ptr<Communicator> shared_communicator(const std::vector<Device>& devices);

using CommunicatorFactory = std::function<std::unique_ptr<Communicator>(const std::vector<Device>&)>;
// Registers the communicator for sets of distinct devices of `type` (the CUDA backend: NCCL).
void register_communicator_factory(DeviceType type, CommunicatorFactory factory);

}  // namespace canvas
