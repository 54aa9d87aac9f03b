#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "app/openai_api.h"
#include "test_util.h"

namespace canvas::app {
namespace {

using nlohmann::json;

// Stand-ins for uploaded files: the translation passes the bytes on without decoding them. Their base64
// is from Python's base64.b64encode.
const std::string kFoxPng("\x89PNG\r\n\x1a\nfox", 11);
const std::string kHenPng("\x89PNG\r\n\x1a\nhen", 11);
const std::string kMaskPng("\x89PNG\r\n\x1a\nmask", 12);
constexpr char kFoxBase64[] = "iVBORw0KGgpmb3g=";
constexpr char kHenBase64[] = "iVBORw0KGgpoZW4=";
constexpr char kMaskBase64[] = "iVBORw0KGgptYXNr";

FormPart field(const std::string& name, const std::string& value) {
  return {name, "", "", value};
}

FormPart file(const std::string& name, const std::string& filename, const std::string& bytes) {
  return {name, filename, "image/png", bytes};
}

void expect_refused(const std::function<void()>& action, const std::string& field,
                    const std::string& message) {
  const RequestError error = test::request_error_of(action);
  EXPECT_EQ(error.status(), 400);
  EXPECT_EQ(error.field(), field);
  test::expect_contains(error.what(), message);
}

// client.images.generate(model="gpt-image-1", prompt=..., n=2, size="1024x1536", quality="high", ...) sends
// this body: the GPT image settings that mean nothing here are accepted and dropped.
TEST(OpenAiApi, TranslatesAGptImageGeneration) {
  const json body = {{"prompt", "a red fox in the snow"},
                     {"model", "gpt-image-1"},
                     {"n", 2},
                     {"size", "1024x1536"},
                     {"quality", "high"},
                     {"background", "auto"},
                     {"moderation", "low"},
                     {"output_format", "png"},
                     {"output_compression", 100},
                     {"user", "user-1234"},
                     {"stream", false}};
  EXPECT_EQ(openai_generation_request(body), json({{"task", "generate"},
                                                   {"prompt", "a red fox in the snow"},
                                                   {"batch_count", 2},
                                                   {"width", 1024},
                                                   {"height", 1536}}));
  EXPECT_EQ(openai_response_format(body), "b64_json");
}

// The DALL·E 3 clients of the legacy API: URLs unless told otherwise.
TEST(OpenAiApi, TranslatesADalleGenerationAndItsResponseFormat) {
  const json body = {{"model", "dall-e-3"}, {"prompt", "a lighthouse"}, {"size", "1792x1024"},
                     {"quality", "hd"},     {"style", "vivid"},         {"n", 1}};
  EXPECT_EQ(openai_generation_request(body), json({{"task", "generate"},
                                                   {"prompt", "a lighthouse"},
                                                   {"batch_count", 1},
                                                   {"width", 1792},
                                                   {"height", 1024}}));
  EXPECT_EQ(openai_response_format(body), "url");
  EXPECT_EQ(
      openai_response_format(json{{"prompt", "x"}, {"model", "dall-e-2"}, {"response_format", "b64_json"}}),
      "b64_json");
  EXPECT_EQ(openai_response_format(json{{"prompt", "x"}, {"model", "qwen-image"}}), "b64_json");
  EXPECT_EQ(openai_response_format(json{{"prompt", "x"}, {"response_format", "url"}}), "url");
}

// Our own model ids and settings ride along (the SDK's extra_body) under their native names.
TEST(OpenAiApi, PassesNativeFieldsAndOurModelOn) {
  const json body = {{"prompt", "a city at night"},
                     {"model", "qwen-image-2512"},
                     {"size", "auto"},
                     {"seed", 42},
                     {"steps", 8},
                     {"cfg_scale", 1.0},
                     {"negative_prompt", "blurry"},
                     {"loras", {"lightning:1.0"}},
                     {"lora_apply", "runtime"},
                     {"scheduler_shift", 3.0},
                     {"preset", "lightning-8"},
                     {"strategy", "fp8"},
                     {"quality", "4bit"},
                     {"priority", 2},
                     {"batch_count", 3},
                     {"response_format", nullptr}};
  json expected = body;
  expected.erase("size");
  expected.erase("response_format");
  expected["task"] = "generate";
  EXPECT_EQ(openai_generation_request(body), expected);
  // Without size, width and height pass on as they are.
  EXPECT_EQ(openai_generation_request(json{{"prompt", "x"}, {"width", 768}, {"height", 512}}),
            json({{"task", "generate"}, {"prompt", "x"}, {"width", 768}, {"height", 512}}));
}

TEST(OpenAiApi, NullCountsAsAbsent) {
  EXPECT_EQ(openai_generation_request(json{
                {"prompt", "x"}, {"n", nullptr}, {"size", nullptr}, {"model", nullptr}, {"seed", nullptr}}),
            json({{"task", "generate"}, {"prompt", "x"}}));
}

TEST(OpenAiApi, RefusesMalformedGenerations) {
  const auto generate = [](const json& body) { return [body] { openai_generation_request(body); }; };
  expect_refused(generate(json::array()), "", "must be a JSON object");
  expect_refused(generate(json{{"n", 1}}), "prompt", "prompt is required");
  expect_refused(generate(json{{"prompt", 5}}), "prompt", "prompt must be a string, got 5");
  expect_refused(generate(json{{"prompt", "x"}, {"n", 0}}), "n", "n must be at least 1, got 0");
  expect_refused(generate(json{{"prompt", "x"}, {"n", "2"}}), "n", "n must be a whole number");
  expect_refused(generate(json{{"prompt", "x"}, {"n", 1.5}}), "n", "n must be a whole number");
  for (const std::string size :
       {"big", "1024x", "x1024", "-16x16", "0x512", "1024x1024x2", "1024 x 1024", "1024X1024"})
    expect_refused(generate(json{{"prompt", "x"}, {"size", size}}), "size", "got '" + size + "'");
  expect_refused(generate(json{{"prompt", "x"}, {"response_format", "jpeg"}}), "response_format",
                 "\"b64_json\" or \"url\", got 'jpeg'");
  expect_refused(generate(json{{"prompt", "x"}, {"background", "transparent"}}), "background",
                 "a transparent background");
  expect_refused(generate(json{{"prompt", "x"}, {"output_format", "webp"}}), "output_format",
                 "another format");
  expect_refused(generate(json{{"prompt", "x"}, {"stream", true}}), "stream", "streamed partial images");
  expect_refused(generate(json{{"prompt", "x"}, {"svg", {{"model", "m"}}}}), "svg", "SVG output");
  expect_refused(generate(json{{"prompt", "x"}, {"frame_count", 4}}), "frame_count", "GIF output");
  expect_refused(generate(json{{"prompt", "x"}, {"temperature", 1}}), "temperature",
                 "unknown field temperature");
  expect_refused(generate(json{{"prompt", "x"}, {"task", "img2img"}}), "task", "unknown field task");
  expect_refused(generate(json{{"prompt", "x"}, {"strength", 0.5}}), "strength", "belongs to edits");
}

TEST(OpenAiApi, RefusesAFieldGivenBothWays) {
  expect_refused(
      [] {
        openai_generation_request(json{{"prompt", "x"}, {"n", 2}, {"batch_count", 2}});
      },
      "n", "n and batch_count say the same thing");
  for (const std::string side : {"width", "height"})
    expect_refused(
        [&] {
          openai_generation_request(json{{"prompt", "x"}, {"size", "auto"}, {side, 512}});
        },
        "size", "size and width and height say the same thing");
}

// client.images.edit(image=open("fox.png", "rb"), prompt=..., model="gpt-image-1", ...): one "image" part.
TEST(OpenAiApi, TranslatesAnEditOfOnePicture) {
  const std::vector<FormPart> parts = {
      file("image", "fox.png", kFoxPng), field("prompt", "give the fox a hat"),
      field("model", "gpt-image-1"),     field("n", "1"),
      field("size", "1024x1024"),        field("quality", "auto"),
      field("input_fidelity", "high")};
  EXPECT_EQ(openai_edit_request(parts), json({{"task", "edit"},
                                              {"prompt", "give the fox a hat"},
                                              {"images", {kFoxBase64}},
                                              {"batch_count", 1},
                                              {"width", 1024},
                                              {"height", 1024}}));
  EXPECT_EQ(openai_response_format(parts), "b64_json");
}

// A list of files goes out as image[] parts, in order.
TEST(OpenAiApi, TranslatesAnEditOfSeveralPictures) {
  const std::vector<FormPart> parts = {
      file("image[]", "fox.png", kFoxPng), file("image[]", "hen.png", kHenPng),
      field("prompt", "the fox and the hen share a meal"), field("size", "auto")};
  EXPECT_EQ(openai_edit_request(parts), json({{"task", "edit"},
                                              {"prompt", "the fox and the hen share a meal"},
                                              {"images", {kFoxBase64, kHenBase64}}}));
}

// OpenAI repaints the mask's transparent pixels: the native request takes the mask from its alpha.
TEST(OpenAiApi, TranslatesAMaskedEditIntoInpainting) {
  const std::vector<FormPart> parts = {file("image", "fox.png", kFoxPng), file("mask", "mask.png", kMaskPng),
                                       field("prompt", "a snowman instead"), field("response_format", "url")};
  EXPECT_EQ(openai_edit_request(parts), json({{"task", "inpaint"},
                                              {"prompt", "a snowman instead"},
                                              {"image", kFoxBase64},
                                              {"mask", kMaskBase64},
                                              {"mask_alpha", true}}));
  EXPECT_EQ(openai_response_format(parts), "url");
}

// Form fields are text: each native field is read by its type, and an empty one counts as absent.
TEST(OpenAiApi, ReadsNativeFormFieldsByType) {
  const std::vector<FormPart> parts = {file("image", "fox.png", kFoxPng),
                                       file("mask", "mask.png", kMaskPng),
                                       field("prompt", "a hat"),
                                       field("seed", "18446744073709551615"),
                                       field("steps", "8"),
                                       field("cfg_scale", "2.5"),
                                       field("strength", "0.8"),
                                       field("invert_mask", "true"),
                                       field("mask_blur", "4"),
                                       field("padding_mask_crop", "32"),
                                       field("loras[]", "lightning:1.0"),
                                       field("loras[]", "style:0.5"),
                                       field("negative_prompt", "blurry"),
                                       field("text_positions", "mrope"),
                                       field("response_format", ""),
                                       field("n", "")};
  EXPECT_EQ(openai_edit_request(parts), json({{"task", "inpaint"},
                                              {"prompt", "a hat"},
                                              {"image", kFoxBase64},
                                              {"mask", kMaskBase64},
                                              {"mask_alpha", true},
                                              {"seed", 18446744073709551615ull},
                                              {"steps", 8},
                                              {"cfg_scale", 2.5},
                                              {"strength", 0.8},
                                              {"invert_mask", true},
                                              {"mask_blur", 4.0},
                                              {"padding_mask_crop", 32},
                                              {"loras", {"lightning:1.0", "style:0.5"}},
                                              {"negative_prompt", "blurry"},
                                              {"text_positions", "mrope"}}));
  EXPECT_EQ(
      openai_edit_request({file("image", "fox.png", kFoxPng), field("prompt", "x"), field("seed", "-1")})
          .at("seed"),
      -1);
}

TEST(OpenAiApi, RefusesMalformedEdits) {
  const auto edit = [](std::vector<FormPart> parts) { return [parts] { openai_edit_request(parts); }; };
  const FormPart fox = file("image", "fox.png", kFoxPng);
  const FormPart prompt = field("prompt", "x");
  expect_refused(edit({prompt}), "image", "image is required");
  expect_refused(edit({fox}), "prompt", "prompt is required");
  expect_refused(edit({file("image", "empty.png", ""), prompt}), "image", "image empty.png is empty");
  expect_refused(edit({fox, file("image[]", "hen.png", kHenPng), file("mask", "m.png", kMaskPng), prompt}),
                 "mask", "a mask goes with one picture, got 2");
  expect_refused(edit({fox, file("mask", "m.png", kMaskPng), file("mask", "m.png", kMaskPng), prompt}),
                 "mask", "mask is given twice");
  expect_refused(edit({fox, prompt, field("steps", "eight")}), "steps",
                 "steps must be a whole number, got 'eight'");
  expect_refused(edit({fox, prompt, field("steps", "8"), field("steps", "9")}), "steps",
                 "steps is given twice");
  expect_refused(edit({fox, prompt, field("cfg_scale", "nan")}), "cfg_scale", "cfg_scale must be a number");
  expect_refused(edit({fox, prompt, field("invert_mask", "yes")}), "invert_mask", "must be true or false");
  expect_refused(edit({fox, prompt, field("seed[]", "1")}), "seed[]", "seed takes one value, not a list");
  expect_refused(edit({fox, prompt, file("markup", "m.png", kMaskPng)}), "markup", "markup picture");
  expect_refused(edit({fox, prompt, field("style_strength", "1")}), "style_strength", "unknown field");
  expect_refused(edit({fox, prompt, field("response_format", "png")}), "response_format", "got 'png'");
  expect_refused(edit({fox, prompt, field("n", "2"), field("batch_count", "2")}), "n", "say the same thing");
}

TEST(OpenAiApi, AnswersWithBase64OrUrls) {
  JobOutcome outcome;
  outcome.images = {{"/data/jobs/7/0.png", "/v1/jobs/7/images/0", 11, 1024, 768},
                    {"/data/jobs/7/1.png", "/v1/jobs/7/images/1", 12, 1024, 768}};
  EXPECT_EQ(
      openai_images_response(outcome, "b64_json", {"AAAA", "BBBB"}, "http://localhost:8000", 1700000000),
      json({{"created", 1700000000},
            {"data", {{{"b64_json", "AAAA"}}, {{"b64_json", "BBBB"}}}},
            {"background", "opaque"},
            {"output_format", "png"},
            {"size", "1024x768"}}));
  const json urls = openai_images_response(outcome, "url", {}, "http://localhost:8000/", 1700000000);
  EXPECT_EQ(urls.at("data"), json({{{"url", "http://localhost:8000/v1/jobs/7/images/0"}},
                                   {{"url", "http://localhost:8000/v1/jobs/7/images/1"}}}));
  test::expect_contains(test::error_of([&] { openai_images_response(outcome, "b64_json", {"AAAA"}, "", 0); }),
                        "the job made 2 images but 1 were encoded");
  test::expect_contains(test::error_of([&] { openai_images_response(outcome, "png", {}, "", 0); }),
                        "got 'png'");
}

TEST(OpenAiApi, WritesOpenAiErrors) {
  EXPECT_EQ(openai_error(400, "n must be at least 1, got 0", "n"),
            json({{"error",
                   {{"message", "n must be at least 1, got 0"},
                    {"type", "invalid_request_error"},
                    {"param", "n"},
                    {"code", nullptr}}}}));
  const json server = openai_error(500, "the job failed", "");
  EXPECT_EQ(server.at("error").at("type"), "server_error");
  EXPECT_TRUE(server.at("error").at("param").is_null());
}

}  // namespace
}  // namespace canvas::app
