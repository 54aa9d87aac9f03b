#include "app/seed_option.h"

#include <charconv>
#include <random>

#include "util/error.h"

namespace canvas::app {

// std::random_device gives 32 bits a draw; two draws make the seed cover the whole range.
uint64_t random_seed() {
  std::random_device device;
  static_assert(sizeof(std::random_device::result_type) * 8 >= 32);
  const uint64_t high = device() & 0xFFFFFFFFu;
  const uint64_t low = device() & 0xFFFFFFFFu;
  return high << 32 | low;
}

uint64_t seed_from_option(const std::optional<std::string>& text) {
  if (!text || *text == "-1") return random_seed();
  const std::string accepted =
      "--seed takes a whole decimal number from 0 to 18446744073709551615, or -1 for a random seed; got '" +
      *text + "'";
  // Digits only: from_chars would read "0x10" as 0 and "1e3" as 1, stopping at the letter.
  check(!text->empty() && text->find_first_not_of("0123456789") == std::string::npos, accepted);
  uint64_t seed = 0;
  const auto [end, error] = std::from_chars(text->data(), text->data() + text->size(), seed);
  check(error == std::errc() && end == text->data() + text->size(), accepted);
  return seed;
}

}  // namespace canvas::app
