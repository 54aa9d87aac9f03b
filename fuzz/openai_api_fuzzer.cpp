// The OpenAI Images API: a JSON body (generations) or multipart form parts (edits) translated into a
// native request, which the server then reads as any other job. The input is split into both: a JSON
// body, then form parts drawn from the rest (cpp-httplib splits the multipart body itself; what it
// hands over is any list of parts).
#include <fuzzer/FuzzedDataProvider.h>

#include <cstdint>
#include <vector>

#include "app/openai_api.h"
#include "request_parsing.h"

namespace {

void generation(const std::string& text) {
  const std::optional<nlohmann::json> body =
      canvas::fuzz::parse_body(reinterpret_cast<const uint8_t*>(text.data()), text.size());
  if (!body) return;
  try {
    canvas::app::openai_response_format(*body);
    canvas::fuzz::read_native_job(canvas::app::openai_generation_request(*body));
  } catch (const canvas::app::RequestError& error) {
    canvas::fuzz::answer_refusal(error);
  }
}

void edit(FuzzedDataProvider& input) {
  std::vector<canvas::app::FormPart> parts;
  while (input.remaining_bytes() > 0 && parts.size() < 16) {
    canvas::app::FormPart part;
    part.name = input.ConsumeRandomLengthString(16);
    part.filename = input.ConsumeRandomLengthString(16);
    part.content_type = input.ConsumeRandomLengthString(16);
    part.content = input.ConsumeRandomLengthString(4096);
    parts.push_back(std::move(part));
  }
  try {
    canvas::app::openai_response_format(parts);
    canvas::fuzz::read_native_job(canvas::app::openai_edit_request(parts));
  } catch (const canvas::app::RequestError& error) {
    canvas::fuzz::answer_refusal(error);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  FuzzedDataProvider input(data, size);
  generation(input.ConsumeRandomLengthString(size));
  edit(input);
  return 0;
}
