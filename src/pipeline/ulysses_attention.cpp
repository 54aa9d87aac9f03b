#include "pipeline/ulysses_attention.h"

#include "util/error.h"

namespace canvas {

namespace {

// [begin, end) of `index`'s near-equal share of `total` among `parts`: the first total % parts get one more.
std::pair<int64_t, int64_t> share_range(int64_t total, int parts, int index) {
  const int64_t base = total / parts, extra = total % parts;
  const int64_t begin = index * base + std::min<int64_t>(index, extra);
  return {begin, begin + base + (index < extra ? 1 : 0)};
}

}  // namespace

std::vector<TokenShare> share_tokens(int64_t text_tokens, int64_t image_tokens, int devices) {
  check(devices >= 1, "tokens can only be shared among one or more devices");
  std::vector<TokenShare> shares;
  for (int d = 0; d < devices; ++d) {
    TokenShare share;
    std::tie(share.text_begin, share.text_end) = share_range(text_tokens, devices, d);
    std::tie(share.image_begin, share.image_end) = share_range(image_tokens, devices, d);
    shares.push_back(share);
  }
  return shares;
}

std::vector<Tensor> ulysses_attention(Communicator& communicator,
                                      const std::vector<JointProjections>& projections,
                                      const std::vector<TokenShare>& shares,
                                      const std::vector<Tensor>& joint_key_masks) {
  const std::vector<Device>& devices = communicator.devices();
  const size_t count = devices.size();
  check(projections.size() == count && shares.size() == count && joint_key_masks.size() == count,
        "ulysses_attention needs one set of projections, token share and mask per device");
  const int64_t heads = projections.front().query.dim(2);
  check(heads % static_cast<int64_t>(count) == 0, std::to_string(heads) +
                                                      " attention heads cannot be shared among " +
                                                      std::to_string(count) + " devices");
  const int64_t heads_each = heads / static_cast<int64_t>(count);
  int64_t text_tokens = 0;
  for (const TokenShare& share : shares) text_tokens += share.text_tokens();

  // Each device sends device s its tokens' queries, keys and values for the heads s attends with, packed
  // into one [3, B, tokens, heads_each, head_dim] tensor so that one exchange carries all three.
  std::vector<std::vector<Tensor>> sends(count);
  for (size_t from = 0; from < count; ++from) {
    const JointProjections& own = projections[from];
    for (size_t to = 0; to < count; ++to) {
      const int64_t first = static_cast<int64_t>(to) * heads_each;
      Tensor parts[] = {own.query.slice(2, first, first + heads_each).unsqueeze(0),
                        own.key.slice(2, first, first + heads_each).unsqueeze(0),
                        own.value.slice(2, first, first + heads_each).unsqueeze(0)};
      sends[from].push_back(ops::concat(parts, 0));
    }
  }
  std::vector<std::vector<Tensor>> received = communicator.all_to_all(sends);

  // Each device puts the whole sequence back in order (every device's text tokens, then every device's
  // image tokens), attends with its heads, and cuts the output into each device's tokens.
  std::vector<std::vector<Tensor>> outputs(count);
  for (size_t at = 0; at < count; ++at) {
    std::vector<Tensor> text_parts, image_parts;
    for (size_t from = 0; from < count; ++from) {
      const Tensor& part = received[at][from];
      const int64_t own_text = shares[from].text_tokens();
      text_parts.push_back(part.slice(2, 0, own_text));
      image_parts.push_back(part.slice(2, own_text, part.dim(2)));
    }
    text_parts.insert(text_parts.end(), image_parts.begin(), image_parts.end());
    Tensor sequence = ops::concat(text_parts, 2);
    Tensor attended = joint_attention({sequence.select(0, 0), sequence.select(0, 1), sequence.select(0, 2)},
                                      joint_key_masks[at]);
    for (size_t to = 0; to < count; ++to) {
      const TokenShare& share = shares[to];
      Tensor rows[] = {attended.slice(1, share.text_begin, share.text_end),
                       attended.slice(1, text_tokens + share.image_begin, text_tokens + share.image_end)};
      outputs[at].push_back(ops::concat(rows, 1));
    }
  }
  std::vector<std::vector<Tensor>> returned = communicator.all_to_all(outputs);

  // Heads side by side in device order: the [heads * head_dim] layout of one device's attention output.
  std::vector<Tensor> attention;
  for (size_t at = 0; at < count; ++at) attention.push_back(ops::concat(returned[at], 2));
  return attention;
}

}  // namespace canvas
