// Stand-in weights for dry runs: swaps a model's weights for meta tensors of the same shapes and dtypes,
// so its forward runs through the meta backend (backend/meta/meta_backend.h) with no data behind it.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "backend/meta/meta_backend.h"
#include "models/nn.h"

namespace canvas::nn {

// For the scope's lifetime every weight `model.visit` reaches is an empty meta tensor, charged to
// `component`'s weights on the meta allocator; the original tensors come back on destruction. The model
// must not be restructured (weights added, layers moved) while the scope lives.
template <typename Model>
class MetaWeightsScope {
 public:
  MetaWeightsScope(Model& model, const std::string& component) {
    register_meta_backend();
    OwnerScope owner({component, -1, MemoryRole::Weights});
    try {
      model.visit([&](const std::string&, Tensor& weight) {
        Tensor stand_in = Tensor::empty(weight.shape(), weight.dtype(), Device::meta());
        swapped_.emplace_back(&weight, std::exchange(weight, std::move(stand_in)));
      });
    } catch (...) {
      // A meta budget can refuse a placement halfway; the weights swapped so far must still come back.
      restore();
      throw;
    }
  }
  ~MetaWeightsScope() { restore(); }
  MetaWeightsScope(const MetaWeightsScope&) = delete;
  MetaWeightsScope& operator=(const MetaWeightsScope&) = delete;

 private:
  void restore() {
    for (auto& [slot, original] : swapped_) *slot = std::move(original);
    swapped_.clear();
  }

  std::vector<std::pair<Tensor*, Tensor>> swapped_;
};

}  // namespace canvas::nn
