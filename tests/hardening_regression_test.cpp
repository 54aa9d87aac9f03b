// What the fuzzers (fuzz/) and the sanitizer build (scripts/test_hardening.sh) found, as plain tests of the
// cases behind each finding; the fuzzers' inputs themselves are replayed from fuzz/regressions/ in the fuzz
// build.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "app/openai_api.h"
#include "tensor/tensor.h"
#include "test_util.h"

namespace canvas::app {
namespace {

const std::string kPng("\x89PNG\r\n\x1a\nfox", 11);

// A form's text becomes JSON strings (the native request, the history record, the error answer), which
// must be UTF-8: a prompt ending inside a character used to escape as nlohmann's type_error once the
// request was serialized, an internal error instead of a 400.
TEST(FuzzRegression, OpenAiEditFormTextMustBeUtf8) {
  const auto refused_field = [](const std::vector<FormPart>& parts) {
    const RequestError error = test::request_error_of([&] { openai_edit_request(parts); });
    EXPECT_EQ(error.status(), 400);
    test::expect_contains(error.what(), "is not UTF-8 text");
    // The answer itself serializes.
    EXPECT_NO_THROW(openai_error(error.status(), error.what(), error.field()).dump());
    return error.field();
  };
  const FormPart picture{"image", "fox.png", "image/png", kPng};
  EXPECT_EQ(refused_field({picture, {"prompt", "", "", "x\xe2"}}), "prompt");
  EXPECT_EQ(refused_field({picture, {"prompt", "", "", "x"}, {"\xff", "", "", "1"}}), "\xef\xbf\xbd");
  EXPECT_EQ(refused_field({{"image", "\xc0.png", "image/png", kPng}, {"prompt", "", "", "x"}}), "image");
  EXPECT_THROW(openai_response_format(std::vector<FormPart>{{"model", "", "", "dall-e-\x80"}}), RequestError);
  // A picture's bytes are not text.
  const std::string binary("\x89PNG\xff\xfe", 6);
  EXPECT_NO_THROW(openai_edit_request({{"image", "fox.png", "image/png", binary}, {"prompt", "", "", "x"}}));
}

// UndefinedBehaviorSanitizer: an empty span's null data pointer went to memcpy.
TEST(SanitizerRegression, AnEmptyTensorFromNoFloats) {
  const Tensor empty = Tensor::from_floats({}, {0, 4});
  EXPECT_EQ(empty.numel(), 0);
}

}  // namespace
}  // namespace canvas::app
