// The native API's job request (POST /v1/jobs): any body is read into a job or refused with a RequestError.
#include <cstdint>

#include "request_parsing.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::optional<nlohmann::json> body = canvas::fuzz::parse_body(data, size);
  if (!body) return 0;
  try {
    canvas::fuzz::read_native_job(*body);
  } catch (const canvas::app::RequestError& error) {
    canvas::fuzz::answer_refusal(error);
  }
  return 0;
}
