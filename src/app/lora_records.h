// The records of a job's LoRAs for its image's metadata, hashed beside the job.
#pragma once

#include <future>
#include <vector>

#include "pipeline/generation_metadata.h"

namespace canvas::app {

// The records of the job's LoRAs for the image. Hashing a large LoRA takes seconds, about as long as a
// Lightning job on a GPU, so it runs on a thread of its own beside loading and the job; a job that ends
// without the records (an error, a cancellation) stops it at once.
class LoraRecordsInBackground {
 public:
  explicit LoraRecordsInBackground(std::vector<AppliedLora> loras);
  ~LoraRecordsInBackground();
  LoraRecordsInBackground(const LoraRecordsInBackground&) = delete;
  LoraRecordsInBackground& operator=(const LoraRecordsInBackground&) = delete;

  // Waits for the hashing; throws canvas::Error when a file could not be read. Call once.
  std::vector<LoraRecord> get();

 private:
  Cancellation stop_;  // before records_: it must outlive the thread
  std::future<std::vector<LoraRecord>> records_;
};

}  // namespace canvas::app
