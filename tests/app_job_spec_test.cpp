// The native API's job request: every field read into the spec (and back into the history's record), the
// preset's defaults, and what is refused, naming the field.
#include <gtest/gtest.h>

#include "app/job_spec.h"
#include "serve_fixture.h"
#include "test_util.h"

namespace canvas::app {
namespace {

using nlohmann::json;

std::string lora_in_folder(const std::string& name) {
  if (name == "missing") throw RequestError(404, "loras", "there is no LoRA \"missing\"");
  return "/loras/" + name + ".safetensors";
}

JobSpec parse(const json& body) {
  return parse_job_spec(body, JobSpecLimits{}, lora_in_folder);
}

TEST(JobSpec, ReadsEveryInpaintingField) {
  const std::string picture = test::picture_base64(40, 32);
  const JobSpec spec = parse({{"task", "inpaint"},
                              {"model", "m"},
                              {"prompt", "a fox"},
                              {"negative_prompt", "blur"},
                              {"cfg_scale", 3.5},
                              {"steps", 12},
                              {"seed", 18446744073709551615ull},
                              {"width", 48},
                              {"height", 32},
                              {"batch_count", 3},
                              {"loras", {"a:0.5", {{"name", "b"}, {"strength", 2}}}},
                              {"lora_apply", "runtime"},
                              {"scheduler_shift", 2.0},
                              {"strategy", "nf4"},
                              {"quality", "4bit"},
                              {"priority", 5},
                              {"image", "data:image/png;base64," + picture},
                              {"mask", picture},
                              {"invert_mask", true},
                              {"mask_blur", 4},
                              {"padding_mask_crop", 8},
                              {"strength", 0.7},
                              {"text_positions", "sequential"}});
  EXPECT_EQ(spec.task, JobTask::Inpaint);
  EXPECT_EQ(spec.sampling.seed, 18446744073709551615ull);
  EXPECT_EQ(spec.sampling.steps, 12);
  EXPECT_EQ(spec.sampling.cfg_scale, 3.5f);
  ASSERT_EQ(spec.sampling.loras.size(), 2u);
  EXPECT_EQ(spec.sampling.loras[0].path, "/loras/a.safetensors");
  EXPECT_EQ(spec.sampling.loras[0].strength, 0.5f);
  EXPECT_EQ(spec.sampling.loras[1].strength, 2.0f);
  EXPECT_EQ(spec.lora_apply, LoraApply::RunTime);
  EXPECT_EQ(spec.images.size(), 1u);
  EXPECT_EQ(spec.images[0].decoded.rgb.width, 40);
  ASSERT_TRUE(spec.mask.has_value());
  EXPECT_EQ(spec.mask->sha256, spec.images[0].sha256);
  EXPECT_EQ(spec.padding_mask_crop, 8);
  EXPECT_EQ(spec.text_positions, TextPositions::Sequential);

  const json record = job_spec_json(spec);
  EXPECT_EQ(record.at("seed"), 18446744073709551615ull);
  EXPECT_EQ(record.at("loras")[1], json({{"name", "b.safetensors"}, {"strength", 2.0}}));
  EXPECT_EQ(record.at("image").at("sha256"), spec.images[0].sha256);
  EXPECT_EQ(record.at("strategy"), "nf4");
  EXPECT_FALSE(record.at("image").contains("base64"));
}

TEST(JobSpec, APresetFillsWhatTheRequestLeavesOut) {
  const JobSpec spec = parse({{"prompt", "x"}, {"preset", "lightning-4"}, {"steps", 6}});
  EXPECT_EQ(spec.sampling.steps, 6);
  EXPECT_EQ(spec.sampling.cfg_scale, 1.0f);
  EXPECT_EQ(spec.sampling.scheduler_shift, 3.0);
  // Without a seed (or with -1) each request draws its own.
  EXPECT_NE(parse({{"prompt", "x"}}).sampling.seed, parse({{"prompt", "x"}, {"seed", -1}}).sampling.seed);
}

TEST(JobSpec, RefusesNamingTheField) {
  const std::string picture = test::picture_base64(16, 16);
  const std::vector<std::pair<json, std::string>> cases = {
      {{{"prompt", "x"}, {"preset", "turbo"}}, "preset"},
      {{{"prompt", "x"}, {"cfg_scale", "4"}}, "cfg_scale"},
      {{{"prompt", "x"}, {"seed", 1.5}}, "seed"},
      {{{"prompt", "x"}, {"loras", "a"}}, "loras"},
      {{{"prompt", "x"}, {"loras", {{{"name", "a"}, {"weight", 1}}}}}, "loras[0]"},
      {{{"prompt", "x"}, {"image", picture}}, "image"},
      {{{"prompt", "x"}, {"task", "edit"}, {"image", picture}}, "image"},
      {{{"prompt", "x"}, {"task", "edit"}, {"images", json::array()}}, "images"},
      {{{"prompt", "x"}, {"task", "img2img"}, {"image", picture}, {"mask", picture}}, "mask"},
      {{{"prompt", "x"}, {"task", "inpaint"}, {"image", picture}}, "mask"},
      {{{"prompt", "x"}, {"task", "inpaint"}, {"image", picture}, {"mask_alpha", true}}, "mask_alpha"},
      {{{"prompt", "x"}, {"task", "inpaint"}, {"image", picture}, {"mask", picture}, {"mask_alpha", true}},
       "mask"},
      {{{"prompt", "x"}, {"task", "inpaint"}, {"image", picture}, {"outpaint", {1, 2, 3}}}, "outpaint"},
      {{{"prompt", "x"}, {"task", "img2img"}, {"image", picture}, {"strength", 1.5}}, "strength"},
      {{{"prompt", "x"}, {"text_positions", "linear"}}, "text_positions"},
      {{{"prompt", "x"}, {"batch_count", 17}}, "batch_count"},
  };
  for (const auto& [body, field] : cases) {
    const RequestError error = test::request_error_of([&] { parse(body); });
    EXPECT_EQ(error.status(), 400) << body.dump();
    EXPECT_EQ(error.field(), field) << body.dump() << ": " << error.what();
  }
  EXPECT_EQ(test::request_error_of([&] { parse({{"prompt", "x"}, {"loras", {"missing"}}}); }).status(), 404);
}

}  // namespace
}  // namespace canvas::app
