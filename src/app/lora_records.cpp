#include "app/lora_records.h"

namespace canvas::app {

LoraRecordsInBackground::LoraRecordsInBackground(std::vector<AppliedLora> loras)
    : records_(std::async(std::launch::async, [this, loras = std::move(loras)] {
        std::vector<LoraRecord> records;
        for (const AppliedLora& lora : loras) records.push_back(lora_record(lora, stop_));
        return records;
      })) {}

LoraRecordsInBackground::~LoraRecordsInBackground() {
  // The future's destructor waits for the thread, which now stops at its next piece of file.
  stop_.request();
}

std::vector<LoraRecord> LoraRecordsInBackground::get() {
  return records_.get();
}

}  // namespace canvas::app
