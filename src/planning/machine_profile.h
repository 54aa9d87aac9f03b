// Measured speeds of this machine for the memory planner's cost model: how fast a device runs a
// transformer-sized GEMM and how fast weights reach it from host memory. Measured once per device and
// activation dtype and cached on disk, so later runs pay nothing and plan with figures from this machine
// rather than guessed constants.
#pragma once

#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>

#include "memory/device.h"
#include "tensor/dtype.h"

namespace canvas {

struct MachineProfile {
  // The device's Backend::description() and the activation dtype: what the figures were measured on.
  std::string key;
  double gemm_flops_per_s = 0;  // ops::linear in the activation dtype, weights in the same dtype
  // Host to device through page-locked and through ordinary (pageable) host memory. On the CPU device
  // both are the host memcpy figure: an "upload" there is a copy within host memory.
  double host_to_device_pinned_bytes_per_s = 0;
  double host_to_device_pageable_bytes_per_s = 0;
  // Streaming weights from ordinary host memory through the backend's upload queue (pinned staging).
  double host_to_device_staged_bytes_per_s = 0;
  double host_memcpy_bytes_per_s = 0;  // host to host, on the CPU backend's threads
  // Query-key pairs of ops::attention per second at a small head dimension, where the scores' softmax and
  // traffic bound it rather than its products (the CPU's kernel; a GPU's fused attention is far above).
  double attention_scores_per_s = 0;

  nlohmann::json to_json() const;
  // Throws canvas::Error when the key or a figure is missing, or a figure is not positive and finite.
  static MachineProfile from_json(const nlohmann::json& json);
};

// Where the engine caches what it measured: $CANVAS_CACHE_DIR, else $XDG_CACHE_HOME/ethereal-canvas, else
// ~/.cache/ethereal-canvas; empty when none of these is set.
std::filesystem::path canvas_cache_dir();

// The profile of `device` (a CPU or CUDA device whose backend is registered) for activations in
// `activation_dtype`: read from machine_profiles.json in canvas_cache_dir() when it holds one for this
// key, else measured (well under a second on the CPU, a few seconds on a GPU) and stored there. An
// unreadable or corrupt cache is measured over and rewritten; one that cannot be written is left alone.
MachineProfile machine_profile(Device device, DType activation_dtype);

// Bytes per second copied from `from` to `to` (two devices of one host: GPU peer copies, or host memory
// for simulated pools), measured once per process and pair.
double interconnect_bytes_per_s(Device from, Device to);

}  // namespace canvas
