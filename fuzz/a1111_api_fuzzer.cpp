// The A1111 web API: txt2img and img2img bodies translated into native requests, which the server then
// reads as any other job; and the model titles a client may name.
#include <cstdint>

#include "app/a1111_api.h"
#include "request_parsing.h"

namespace {

template <typename Translate>
void translate_and_read(const nlohmann::json& body, Translate translate) {
  try {
    canvas::fuzz::read_native_job(translate(body));
  } catch (const canvas::app::RequestError& error) {
    canvas::fuzz::answer_refusal(error);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  canvas::app::a1111_checkpoint_model(std::string_view(reinterpret_cast<const char*>(data), size));
  const std::optional<nlohmann::json> body = canvas::fuzz::parse_body(data, size);
  if (!body) return 0;
  translate_and_read(*body, canvas::app::a1111_txt2img_request);
  translate_and_read(*body, canvas::app::a1111_img2img_request);
  return 0;
}
