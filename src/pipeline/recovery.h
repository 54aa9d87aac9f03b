// The recovery ladder: what a job gives up, one rung at a time, when the device runs out of memory part
// way through, and the memory of it for later jobs with the same settings.
//
// Each phase (text encoding, each denoising step, VAE decoding) runs as an attempt. An allocation
// failure first releases the backend's cached memory and re-runs the attempt as it was; a second
// failure takes the phase's next rung and re-runs it again, from the same inputs (a step starts again
// from the latents left by the step before). The rungs, highest first:
//   text encoder: stream more of its layers.
//   transformer:  stream more of its blocks -> feed-forward in token chunks -> fp8 then 4-bit storage
//                 (only as far as --quality allows).
//   VAE:          encode or decode in tiles (each phase its own rung) -> run on the CPU.
// Past the last rung, while every device still has room for what failed (a transient failure, or
// fragmentation; a CPU with mapped weights has no other rung), the attempt is retried as it is, twice.
// Guidance halves always run one after the other here (TransformerExecutor), so that rung of the
// classic ladder is where every plan starts. Only the lossless rungs keep the image bit-identical.
#pragma once

#include <filesystem>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "models/autoencoder_kl_qwen_image.h"
#include "planning/planner.h"

namespace canvas {

// How far down the ladder a job has gone; the default is the top (nothing given up).
struct Degradation {
  std::optional<int> vision_encoder_resident_blocks;  // at most this many blocks stay on the device
  std::optional<int> text_encoder_resident_blocks;    // at most this many layers stay on the device
  std::optional<int> transformer_resident_blocks;
  int64_t feed_forward_chunk = 0;  // tokens per feed-forward chunk; 0 for all at once
  WeightPrecision transformer_precision = WeightPrecision::Lossless;  // at least this much quantized
  bool vae_encode_tiling = false;
  bool vae_decode_tiling = false;
  bool vae_on_cpu = false;

  bool any() const;
  // What is given up, one entry per rung, e.g. "transformer: at most 30 blocks on the device".
  std::vector<std::string> describe() const;
  nlohmann::json to_json() const;
  // Throws canvas::Error naming what is malformed.
  static Degradation from_json(const nlohmann::json& json);
  bool operator==(const Degradation&) const = default;
};

// The tiling of a job's VAE encodes: none until the ladder gave whole encodes up, then the reference's
// default tiles.
std::optional<VaeTiling> vae_encode_tiling(const Degradation& degradation);

// Narrows `plan` to `degradation`: fewer resident blocks, a lower precision, the VAE on the CPU. The
// activation peaks the planner measured already reflect the chunking and tiling.
void apply_degradation(const Degradation& degradation, MemoryPlan& plan);

// Degradations remembered per job settings (a key naming the machine, the model and the job's shape),
// in recoveries.json in canvas_cache_dir(), or for the process when there is no cache directory.
class RecoveryMemory {
 public:
  static std::optional<Degradation> recall(const std::string& key);
  // Replaces what was remembered for `key`; a degradation that gives up nothing forgets it. Returns
  // false when the cache file could not be written: remembering only saves later jobs a few attempts,
  // so it never fails a job.
  static bool remember(const std::string& key, const Degradation& degradation);
  static bool forget(const std::string& key);
};

}  // namespace canvas
