#include "backend/communicator.h"

#include <algorithm>
#include <map>
#include <mutex>
#include <set>

#include "backend/backend.h"
#include "util/error.h"

namespace canvas {

namespace {

class CopyCommunicator final : public Communicator {
 public:
  explicit CopyCommunicator(std::vector<Device> devices) : devices_(std::move(devices)) {}
  const std::vector<Device>& devices() const override { return devices_; }
  std::string description() const override { return "device copies"; }

  std::vector<std::vector<Tensor>> all_to_all(const std::vector<std::vector<Tensor>>& sends) override {
    check_all_to_all(devices_, sends);
    const size_t ranks = devices_.size();
    std::vector<std::vector<Tensor>> received(ranks, std::vector<Tensor>(ranks));
    for (size_t from = 0; from < ranks; ++from) {
      for (size_t to = 0; to < ranks; ++to)
        received[to][from] = sends[from][to].to(devices_[to]).contiguous();
    }
    return received;
  }

 private:
  std::vector<Device> devices_;
};

struct FactoryRegistry {
  std::mutex mutex;
  std::map<DeviceType, CommunicatorFactory> factories;
};

FactoryRegistry& factory_registry() {
  static FactoryRegistry registry;
  return registry;
}

std::unique_ptr<Communicator> copy_communicator(std::vector<Device> devices) {
  check(!devices.empty(), "a communicator needs at least one device");
  return std::make_unique<CopyCommunicator>(std::move(devices));
}

}  // namespace

void check_all_to_all(const std::vector<Device>& devices, const std::vector<std::vector<Tensor>>& sends) {
  const size_t ranks = devices.size();
  check(sends.size() == ranks, "all_to_all over " + std::to_string(ranks) + " ranks was given " +
                                   std::to_string(sends.size()) + " rows of tensors");
  for (size_t from = 0; from < ranks; ++from) {
    check(sends[from].size() == ranks, "all_to_all: rank " + std::to_string(from) + " sends " +
                                           std::to_string(sends[from].size()) + " tensors to " +
                                           std::to_string(ranks) + " ranks");
    for (size_t to = 0; to < ranks; ++to) {
      const Tensor& part = sends[from][to];
      check(part.defined(),
            "all_to_all: rank " + std::to_string(from) + " has nothing for rank " + std::to_string(to));
      check(part.device() == devices[from], "all_to_all: rank " + std::to_string(from) + " on " +
                                                devices[from].str() + " sends a tensor on " +
                                                part.device().str());
      check(part.dtype() == sends[0][0].dtype(), "all_to_all of tensors of several dtypes");
    }
  }
}

std::unique_ptr<Communicator> create_communicator(const std::vector<Device>& devices) {
  check(!devices.empty(), "a communicator needs at least one device");
  const std::set<std::pair<DeviceType, int>> distinct = [&] {
    std::set<std::pair<DeviceType, int>> set;
    for (const Device& device : devices) set.insert({device.type, device.index});
    return set;
  }();
  const bool one_type = std::all_of(devices.begin(), devices.end(),
                                    [&](const Device& d) { return d.type == devices.front().type; });
  if (one_type && distinct.size() == devices.size() && devices.size() > 1) {
    FactoryRegistry& registry = factory_registry();
    std::lock_guard lock(registry.mutex);
    auto found = registry.factories.find(devices.front().type);
    if (found != registry.factories.end()) return found->second(devices);
  }
  return copy_communicator(devices);
}

std::shared_ptr<Communicator> shared_communicator(const std::vector<Device>& devices) {
  static std::mutex mutex;
  static std::map<std::string, std::shared_ptr<Communicator>> made;
  std::string key;
  for (const Device& device : devices) key += device.str() + ",";
  std::lock_guard lock(mutex);
  std::shared_ptr<Communicator>& communicator = made[key];
  if (!communicator) {
    std::shared_ptr<Communicator> fresh = create_communicator(devices);
    std::vector<std::vector<Tensor>> sends(devices.size());
    const std::vector<float> one_value = {0.0f};
    for (size_t from = 0; from < devices.size(); ++from) {
      for (size_t to = 0; to < devices.size(); ++to)
        sends[from].push_back(Tensor::from_floats(one_value, {1}).to(devices[from]));
    }
    fresh->all_to_all(sends);
    for (const Device& device : devices) backend_for(device).synchronize();
    communicator = std::move(fresh);
  }
  return communicator;
}

void register_communicator_factory(DeviceType type, CommunicatorFactory factory) {
  FactoryRegistry& registry = factory_registry();
  std::lock_guard lock(registry.mutex);
  registry.factories[type] = std::move(factory);
}

}  // namespace canvas
