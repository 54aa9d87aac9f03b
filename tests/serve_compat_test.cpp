// The OpenAI Images API and the A1111 web API of `canvas serve`, over HTTP on the tiny models: requests as
// their clients send them, answered with the same pixels as the native API.
#include <gtest/gtest.h>

#include "image/decode.h"
#include "serve_fixture.h"
#include "test_util.h"
#include "util/base64.h"

namespace canvas {
namespace {

using nlohmann::json;

class ServeCompat : public test::ServeFixture {};

DecodedImage decode_base64(const std::string& text) {
  const std::optional<std::vector<uint8_t>> bytes = base64_decode(text);
  EXPECT_TRUE(bytes.has_value());
  return decode_image(bytes.value_or(std::vector<uint8_t>{}), "base64");
}

TEST_F(ServeCompat, OpenAiGenerationsMatchTheNativeApi) {
  const json body = {{"model", "gpt-image-1"},
                     {"prompt", "a red fox"},
                     {"n", 2},
                     {"size", "32x32"},
                     {"response_format", "b64_json"},
                     {"seed", 11},
                     {"steps", 2}};
  const auto [status, answer] = post("/v1/images/generations", body);
  ASSERT_EQ(status, 200) << answer.dump();
  ASSERT_EQ(answer.at("data").size(), 2u);
  const DecodedImage first = decode_base64(answer.at("data")[0].at("b64_json"));
  const json native = wait_for_end(submit(test::small_generate(11)));
  EXPECT_EQ(first.rgb.pixels, image_at(native.at("images")[0].at("url")).rgb.pixels);
  EXPECT_NE(decode_base64(answer.at("data")[1].at("b64_json")).rgb.pixels, first.rgb.pixels);

  const auto [url_status, by_url] = post(
      "/v1/images/generations",
      {{"prompt", "a red fox"}, {"size", "32x32"}, {"response_format", "url"}, {"seed", 11}, {"steps", 2}});
  ASSERT_EQ(url_status, 200) << by_url.dump();
  const std::string url = by_url.at("data")[0].at("url");
  const std::string prefix = "http://127.0.0.1:" + std::to_string(service_->port());
  ASSERT_EQ(url.rfind(prefix, 0), 0u) << url;
  EXPECT_EQ(image_at(url.substr(prefix.size())).rgb.pixels, first.rgb.pixels);
}

TEST_F(ServeCompat, OpenAiEditsTakeMultipartPicturesAndAnAlphaMask) {
  const std::optional<std::vector<uint8_t>> picture = base64_decode(test::picture_base64(32, 32));
  const std::string picture_bytes(picture->begin(), picture->end());
  const std::string mask =
      test::read_file_bytes(test::source_path("tests/golden/image/decode/files/png_rgba8.png"));
  httplib::MultipartFormDataItems inpaint = {{"prompt", "a fox", "", ""},
                                             {"image", picture_bytes, "picture.png", "image/png"},
                                             {"mask", mask, "mask.png", "image/png"},
                                             {"response_format", "b64_json", "", ""},
                                             {"steps", "2", "", ""},
                                             {"seed", "4", "", ""}};
  httplib::Result inpainted = client().Post("/v1/images/edits", inpaint);
  ASSERT_TRUE(inpainted);
  ASSERT_EQ(inpainted->status, 200) << inpainted->body;
  EXPECT_EQ(decode_base64(json::parse(inpainted->body).at("data")[0].at("b64_json")).rgb.width, 32);

  httplib::MultipartFormDataItems edit = {{"prompt", "make it red", "", ""},
                                          {"model", "tiny-edit", "", ""},
                                          {"image[]", picture_bytes, "a.png", "image/png"},
                                          {"image[]", picture_bytes, "b.png", "image/png"},
                                          {"size", "32x32", "", ""},
                                          {"steps", "2", "", ""}};
  httplib::Result edited = client().Post("/v1/images/edits", edit);
  ASSERT_TRUE(edited);
  EXPECT_EQ(edited->status, 200) << edited->body;

  // Errors come in OpenAI's shape.
  const auto [status, error] = post("/v1/images/generations", {{"prompt", "x"}, {"size", "big"}});
  EXPECT_EQ(status, 400);
  EXPECT_EQ(error.at("error").at("type"), "invalid_request_error");
  EXPECT_EQ(error.at("error").at("param"), "size");
}

TEST_F(ServeCompat, A1111Txt2ImgAndImg2Img) {
  const json txt2img = {{"prompt", "a red fox"},
                        {"negative_prompt", ""},
                        {"seed", 11},
                        {"steps", 2},
                        {"cfg_scale", 4.0},
                        {"width", 32},
                        {"height", 32},
                        {"batch_size", 1},
                        {"n_iter", 1},
                        {"sampler_name", "Euler"},
                        {"send_images", true},
                        {"save_images", false},
                        {"alwayson_scripts", json::object()}};
  const auto [status, answer] = post("/sdapi/v1/txt2img", txt2img);
  ASSERT_EQ(status, 200) << answer.dump();
  ASSERT_EQ(answer.at("images").size(), 1u);
  const json native = wait_for_end(submit(test::small_generate(11)));
  EXPECT_EQ(decode_base64(answer.at("images")[0]).rgb.pixels,
            image_at(native.at("images")[0].at("url")).rgb.pixels);
  EXPECT_EQ(json::parse(answer.at("info").get<std::string>()).at("seed"), 11);

  const std::string picture = "data:image/png;base64," + test::picture_base64(32, 32);
  const json img2img = {
      {"prompt", "a fox"},      {"init_images", {picture}}, {"mask", picture}, {"denoising_strength", 0.6},
      {"inpainting_fill", 1},   {"mask_blur", 2},           {"steps", 2},      {"seed", 3},
      {"sampler_name", "Euler"}};
  const auto [inpaint_status, inpainted] = post("/sdapi/v1/img2img", img2img);
  ASSERT_EQ(inpaint_status, 200) << inpainted.dump();
  EXPECT_EQ(decode_base64(inpainted.at("images")[0]).rgb.width, 32);

  const auto [refused_status, refused] = post("/sdapi/v1/txt2img", {{"prompt", "x"}, {"enable_hr", true}});
  EXPECT_EQ(refused_status, 400);
  test::expect_contains(refused.at("detail").get<std::string>(), "enable_hr");
}

TEST_F(ServeCompat, A1111ModelsOptionsProgressAndInterrupt) {
  const auto [models_status, models] = get("/sdapi/v1/sd-models");
  ASSERT_EQ(models_status, 200);
  ASSERT_EQ(models.size(), 2u);
  const std::string edit_title = models[1].at("title");
  EXPECT_EQ(post("/sdapi/v1/options", {{"sd_model_checkpoint", edit_title}}).first, 200);
  EXPECT_EQ(get("/sdapi/v1/options").second.at("sd_model_checkpoint"), edit_title);
  EXPECT_EQ(post("/sdapi/v1/options", {{"sd_model_checkpoint", "nothing"}}).first, 404);
  EXPECT_EQ(post("/sdapi/v1/options", {{"sd_model_checkpoint", models[0].at("title")}}).first, 200);

  const auto [idle_status, idle] = get("/sdapi/v1/progress");
  ASSERT_EQ(idle_status, 200);
  EXPECT_EQ(idle.at("progress"), 0.0);
  const std::string id = submit(test::small_generate(5, 200));
  std::string stream;
  client().Get("/v1/jobs/" + id + "/events", [&](const char* data, size_t size) {
    stream.append(data, size);
    return stream.find("event: preview") == std::string::npos;
  });
  const json progress = get("/sdapi/v1/progress").second;
  EXPECT_GT(progress.at("progress").get<double>(), 0.0);
  EXPECT_FALSE(progress.at("current_image").is_null());
  EXPECT_EQ(post("/sdapi/v1/interrupt", json::object()).first, 200);
  EXPECT_EQ(wait_for_end(id).at("state"), "cancelled");
}

}  // namespace
}  // namespace canvas
