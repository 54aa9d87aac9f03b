// Planning Qwen-Image-Edit-2511 jobs at full size (a sparse all-zero checkpoint of the published shapes):
// the vision tower is a component of its own, the reference pictures lengthen the text and the joint
// sequence, and the dry runs measure that.
#include <gtest/gtest.h>

#include <cstdio>

#include "pipeline/job_facts.h"
#include "test_util.h"

namespace canvas {
namespace {

constexpr int64_t kGiB = int64_t{1} << 30;

class FullSizeEditPlanner : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    model_ = new QwenImageModel(test::full_size_planning_model("edit_planner", "edit-plus"));
  }
  static void TearDownTestSuite() { delete model_; }

  // An edit at 1024x1024 with the first `pictures` of three of different aspects, guided.
  static std::vector<ComponentFacts> facts(int pictures) {
    ImageEditRequest request;
    request.sampling.prompt = "Put the cat from picture 2 on the sofa from picture 1, painted like picture 3";
    request.sampling.negative_prompt = " ";
    request.width = request.height = 1024;
    request.sampling.steps = 40;
    const std::pair<int64_t, int64_t> sizes[] = {{1024, 768}, {768, 1152}, {1280, 720}};
    for (int i = 0; i < pictures; ++i) {
      const auto [width, height] = sizes[i];
      request.images.push_back(
          {width, height, std::vector<uint8_t>(static_cast<size_t>(width * height * 3)), {}});
    }
    return job_facts(*model_, job_geometry(model_->configs, request), request.sampling.prompt,
                     MemoryOptions{});
  }
  static const ComponentFacts& fact(const std::vector<ComponentFacts>& all, Component component) {
    for (const ComponentFacts& each : all)
      if (each.component == component) return each;
    throw Error("no facts for " + component_label(component));
  }

  static QwenImageModel* model_;
};

QwenImageModel* FullSizeEditPlanner::model_ = nullptr;

TEST_F(FullSizeEditPlanner, TheVisionTowerIsAComponentOfItsOwn) {
  const std::vector<ComponentFacts> one = facts(1);
  ASSERT_EQ(one.front().component, Component::VisionEncoder);
  const ComponentFacts& vision = one.front();
  ASSERT_EQ(vision.blocks.size(), 32u);
  // Qwen2.5-VL-7B's vision tower: 0.67 B parameters in bf16.
  const int64_t bytes = vision.shared_bytes + vision.block_bytes(WeightPrecision::Lossless);
  EXPECT_GT(bytes, int64_t{1'300'000'000});
  EXPECT_LT(bytes, int64_t{1'400'000'000});
  EXPECT_GT(vision.activation_bytes, 0);
  // The text encoder keeps its 28 layers; its weights no longer count the tower.
  EXPECT_EQ(fact(one, Component::TextEncoder).blocks.size(), 28u);
}

TEST_F(FullSizeEditPlanner, ReferencePicturesLengthenTheSequences) {
  const std::vector<ComponentFacts> one = facts(1), three = facts(3);
  // Each picture adds its merged patches to the prompt and its latent tokens to every transformer pass.
  EXPECT_GT(fact(three, Component::VisionEncoder).activation_bytes,
            fact(one, Component::VisionEncoder).activation_bytes);
  EXPECT_GT(fact(three, Component::TextEncoder).flops_per_pass,
            2 * fact(one, Component::TextEncoder).flops_per_pass);
  const ComponentFacts& transformer_one = fact(one, Component::Transformer);
  const ComponentFacts& transformer_three = fact(three, Component::Transformer);
  // 4096 output tokens and one reference's ~4000 against three references' ~12000.
  EXPECT_GT(transformer_three.attention_scores_per_pass, 3 * transformer_one.attention_scores_per_pass);
  EXPECT_GT(transformer_three.activation_bytes, transformer_one.activation_bytes);
  EXPECT_GT(fact(one, Component::Vae).passes, 1);
}

TEST_F(FullSizeEditPlanner, AutoFitsEveryBudget) {
  for (int pictures : {1, 3}) {
    const std::vector<ComponentFacts> all = facts(pictures);
    for (int64_t gib : {24, 16, 8, 4}) {
      SCOPED_TRACE(std::to_string(pictures) + " pictures, " + std::to_string(gib) + " GiB");
      const MemoryPlan plan = plan_memory(all, test::h200_machine(gib * kGiB), {});
      std::printf("edit, %d picture(s), %lld GiB:\n", pictures, static_cast<long long>(gib));
      for (const std::string& line : plan.describe()) std::printf("  %s\n", line.c_str());
      EXPECT_LE(plan.predicted_peak_bytes, gib * kGiB);
      ASSERT_NE(plan.find(Component::VisionEncoder), nullptr);
    }
  }
}

}  // namespace
}  // namespace canvas
