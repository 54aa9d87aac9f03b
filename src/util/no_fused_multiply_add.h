// Included first thing after its own header by a source file whose float arithmetic must round exactly where
// a reference's does (torch, numpy, Pillow: each of their operations rounds once): the compiler may then not
// fuse a multiply and an add into one rounding anywhere below in that file. Fused operations the reference
// does make are written as std::fma.
#pragma once

#if defined(__clang__)
#pragma clang fp contract(off)
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif
