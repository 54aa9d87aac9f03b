// --seed: the seed of the initial noise, 0 to 2^64-1, or -1 for a random one as in A1111.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

namespace canvas::app {

// A seed drawn over the full 64-bit range.
uint64_t random_seed();

// The seed `text` names (decimal digits only), or a random one over the full 64-bit range when it is absent
// or "-1". Throws canvas::Error saying what is accepted for anything else: hexadecimal, exponents, signs,
// spaces, an empty value or a number past 2^64-1, which would otherwise wrap silently.
uint64_t seed_from_option(const std::optional<std::string>& text);

}  // namespace canvas::app
