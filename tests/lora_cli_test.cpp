// LoRAs and the Lightning presets from the command line: `--lora` and `--preset` runs of the LoRA pipeline
// goldens (tests/golden/lora/) give the reference's latents, the PNG records each LoRA (tag, hashes, format,
// layers) and the preset, edit and img2img take the LoRAs and the scheduler shift too, and LoRA files that
// cannot be applied fail clearly without writing an image.
#include <gtest/gtest.h>

#include <fstream>
#include <iterator>

#include "image/decode.h"
#include "pipeline/generation_metadata.h"
#include "test_util.h"
#include "util/sha256.h"

namespace canvas {
namespace {

namespace fs = std::filesystem;

test::CommandResult run_canvas(const std::string& arguments) {
  return test::run_built_program("src/canvas", arguments);
}

std::string lora_file(const std::string& name) {
  return test::source_path("tests/golden/lora/loras/" + name).string();
}

const std::string kModel = " --model " + test::source_path("models/tiny-qwen-image").string();
const std::string kEditModel = " --model " + test::source_path("models/tiny-qwen-image-edit").string();

// For the shell: the texts here hold no single quote.
std::string quoted(const std::string& text) {
  return "'" + text + "'";
}

// The job a text-to-image LoRA golden describes, LoRAs and scheduler left out, writing into `folder`.
std::string golden_job(const std::string& name, const fs::path& folder) {
  const nlohmann::json parameters = test::golden_json("lora/" + name);
  return "generate" + kModel + " --prompt " + quoted(parameters.at("prompt").get<std::string>()) +
         " --negative-prompt " + quoted(parameters.at("negative_prompt").get<std::string>()) + " --width " +
         std::to_string(parameters.at("width").get<int>()) + " --height " +
         std::to_string(parameters.at("height").get<int>()) + " --seed " +
         std::to_string(parameters.at("seed").get<uint64_t>()) + " --output " +
         (folder / "out.png").string() + " --save-latents " + (folder / "out.npy").string();
}

void expect_latents_match(const fs::path& npy, const std::string& name) {
  const Tensor expected = test::open_golden("lora/" + name).get("latents");
  const std::vector<float> values = test::npy_floats(npy);
  ASSERT_EQ(static_cast<int64_t>(values.size()), expected.numel());
  test::expect_close(Tensor::from_floats(values, expected.shape()), expected, 1e-4);
}

// SHA-256 of the bytes after a safetensors file's header, as kohya's sd-scripts and A1111 hash LoRAs.
std::string tensors_sha256(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  const std::string bytes{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
  uint64_t header = 0;
  for (int i = 7; i >= 0; --i) header = header * 256 + static_cast<uint8_t>(bytes[static_cast<size_t>(i)]);
  return sha256_hex({reinterpret_cast<const uint8_t*>(bytes.data()) + 8 + header, bytes.size() - 8 - header});
}

TEST(LoraCli, AKohyaLoraGivesTheGoldensLatentsAndIsRecordedInThePng) {
  const fs::path folder = test::scratch_dir("lora-cli-kohya");
  const nlohmann::json parameters = test::golden_json("lora/b_kohya_80x48_cfg");
  const test::CommandResult result =
      run_canvas(golden_job("b_kohya_80x48_cfg", folder) + " --lora " + lora_file("kohya.safetensors") +
                 ":0.8 --cfg-scale " + std::to_string(parameters.at("true_cfg_scale").get<double>()) +
                 " --steps " + std::to_string(parameters.at("num_inference_steps").get<int>()));
  ASSERT_EQ(result.exit_code, 0) << result.output;
  test::expect_contains(result.output,
                        "LoRA: kohya.safetensors x0.8 on 34 layers (computed beside the weights)");
  expect_latents_match(folder / "out.npy", "b_kohya_80x48_cfg");

  const RgbImage image = read_image(folder / "out.png").rgb;
  const std::string text = test::png_text(image, "parameters");
  test::expect_contains(text, "a watercolor fox in a snowy forest <lora:kohya:0.8>\nNegative prompt: blurry");
  const std::string hash = tensors_sha256(lora_file("kohya.safetensors"));
  test::expect_contains(text, ", Lora hashes: \"kohya: " + hash.substr(0, 12) + "\", Version: ");
  EXPECT_EQ(text.find("Schedule shift"), std::string::npos) << text;
  EXPECT_EQ(text.find("Preset"), std::string::npos) << text;
  const nlohmann::json json = nlohmann::json::parse(test::png_text(image, "canvas"));
  ASSERT_EQ(json.at("loras").size(), 1u);
  const nlohmann::json& lora = json.at("loras")[0];
  EXPECT_EQ(lora.at("name"), "kohya.safetensors");
  EXPECT_EQ(lora.at("path"), lora_file("kohya.safetensors"));
  EXPECT_EQ(lora.at("strength"), 0.8);
  EXPECT_EQ(lora.at("format"), "kohya");
  EXPECT_EQ(lora.at("layers"), 34);
  EXPECT_EQ(lora.at("sha256"), sha256_file_hex(lora_file("kohya.safetensors")));
  EXPECT_EQ(lora.at("tensors_sha256"), hash);
  EXPECT_EQ(json.at("lora_apply"), "auto");
  EXPECT_EQ(json.at("lora_layers"), 34);
  EXPECT_EQ(json.at("lora_layers_merged"), 0);
  EXPECT_FALSE(json.contains("scheduler_shift"));
  EXPECT_FALSE(json.contains("preset"));
}

TEST(LoraCli, TheLightningPresetWithItsLoraGivesTheGoldensLatents) {
  const fs::path folder = test::scratch_dir("lora-cli-lightning");
  // bf16_full holds the tiny model's weights whole in allocator memory, so auto merges the LoRA into them.
  const test::CommandResult result = run_canvas(golden_job("f_lightning_4steps_64x64", folder) +
                                                " --preset lightning-4 --strategy bf16_full" + " --lora " +
                                                lora_file("lightx2v.safetensors"));
  ASSERT_EQ(result.exit_code, 0) << result.output;
  EXPECT_EQ(result.output.find("meant for a Lightning LoRA"), std::string::npos) << result.output;
  test::expect_contains(result.output,
                        "4 steps, cfg 1.00, no guidance, scheduler shift 3, preset lightning-4)");
  test::expect_contains(result.output,
                        "LoRA: lightx2v.safetensors x1 on 24 layers (24 merged into the weights)");
  expect_latents_match(folder / "out.npy", "f_lightning_4steps_64x64");

  const RgbImage image = read_image(folder / "out.png").rgb;
  const std::string text = test::png_text(image, "parameters");
  test::expect_contains(text,
                        "<lora:lightx2v:1>\nSteps: 4, Sampler: Euler (flow match), Schedule shift: 3, CFG "
                        "scale: 1, ");
  test::expect_contains(text,
                        "\"lightx2v: " + tensors_sha256(lora_file("lightx2v.safetensors")).substr(0, 12) +
                            "\", Preset: lightning-4, Version: ");
  const nlohmann::json json = nlohmann::json::parse(test::png_text(image, "canvas"));
  EXPECT_EQ(json.at("preset"), "lightning-4");
  EXPECT_EQ(json.at("scheduler_shift"), 3.0);
  EXPECT_EQ(json.at("steps"), 4);
  EXPECT_EQ(json.at("cfg_scale"), 1.0);
  EXPECT_EQ(json.at("loras")[0].at("format"), "plain");
  EXPECT_EQ(json.at("lora_layers_merged"), 24);
}

// A batch hashes its LoRAs once and records them in every image (the Lightning benchmark's warm image).
TEST(LoraCli, EveryImageOfABatchRecordsItsLoras) {
  const fs::path folder = test::scratch_dir("lora-cli-batch");
  const test::CommandResult result = run_canvas(
      "generate" + kModel + " --prompt x --width 32 --height 32 --steps 2 --batch-count 2 --lora " +
      lora_file("kohya.safetensors") + ":0.5 --output " + (folder / "out.png").string());
  ASSERT_EQ(result.exit_code, 0) << result.output;
  for (const char* name : {"out-1.png", "out-2.png"}) {
    const nlohmann::json json =
        nlohmann::json::parse(test::png_text(read_image(folder / name).rgb, "canvas"));
    EXPECT_EQ(json.at("loras")[0].at("sha256"), sha256_file_hex(lora_file("kohya.safetensors"))) << name;
  }
}

TEST(LoraCli, OptionsGivenOverrideThePresetWhichWarnsWithoutALora) {
  const fs::path folder = test::scratch_dir("lora-cli-preset");
  const test::CommandResult result =
      run_canvas("generate" + kModel + " --prompt x --width 32 --height 32 --preset lightning-8 --steps 2 " +
                 "--cfg-scale 2 --output " + (folder / "out.png").string());
  ASSERT_EQ(result.exit_code, 0) << result.output;
  const std::string warning = "warning: --preset lightning-8 is meant for a Lightning LoRA";
  test::expect_contains(result.output, warning);
  EXPECT_EQ(result.output.find(warning), result.output.rfind(warning)) << result.output;
  EXPECT_EQ(result.output.find("LoRA:"), std::string::npos) << result.output;
  const nlohmann::json json =
      nlohmann::json::parse(test::png_text(read_image(folder / "out.png").rgb, "canvas"));
  EXPECT_EQ(json.at("steps"), 2);
  EXPECT_EQ(json.at("cfg_scale"), 2.0);
  EXPECT_EQ(json.at("scheduler_shift"), 3.0);
  EXPECT_TRUE(json.at("true_cfg").get<bool>());
  EXPECT_FALSE(json.contains("loras"));
}

// Edit, inpaint and img2img take the LoRAs and the scheduler shift too. Edit jobs are slow on the tiny model
// (the VAE encodes about a megapixel), so theirs are shown by what refuses them: the text-to-image LoRA
// does not fit the edit model's layers, and a shift of 0 is refused.
TEST(LoraCli, EditInpaintAndImg2ImgTakeTheLorasAndTheShift) {
  const fs::path folder = test::scratch_dir("lora-cli-image-jobs");
  const std::string picture =
      test::source_path("tests/golden/lora/h_edit_plus_lightning/picture_0.png").string();
  const std::string edit = "edit" + kEditModel + " --image " + picture + " --prompt x --steps 2 --output " +
                           (folder / "edit.png").string();
  const test::CommandResult lora = run_canvas(edit + " --lora " + lora_file("kohya.safetensors"));
  EXPECT_EQ(lora.exit_code, 1) << lora.output;
  test::expect_contains(lora.output, "the LoRA was made for another model");
  const std::string inpaint = "inpaint" + kModel + " --image " + picture +
                              " --outpaint 0,0,16,0 --prompt x --steps 2 --output " +
                              (folder / "inpaint.png").string();
  for (const std::string& job : {edit, inpaint}) {
    const test::CommandResult shift = run_canvas(job + " --scheduler-shift 0");
    EXPECT_EQ(shift.exit_code, 1) << shift.output;
    test::expect_contains(shift.output, "the scheduler shift must be above 0");
  }
  EXPECT_FALSE(fs::exists(folder / "edit.png"));

  const std::string img2img = "generate" + kModel + " --image " + picture +
                              " --prompt x --steps 2 --seed 5 --strength 1 --width 32 --height 32 --lora " +
                              lora_file("lightx2v.safetensors") + ":0.5 --output " +
                              (folder / "img2img.png").string() + " --save-latents " +
                              (folder / "img2img.npy").string() + " --scheduler-shift ";
  std::vector<std::vector<float>> latents;
  for (const std::string shift : {"3", "1.5"}) {
    const test::CommandResult result = run_canvas(img2img + shift);
    ASSERT_EQ(result.exit_code, 0) << result.output;
    test::expect_contains(result.output, "LoRA: lightx2v.safetensors x0.5 on 24 layers");
    test::expect_contains(result.output, "scheduler shift " + shift);
    latents.push_back(test::npy_floats(folder / "img2img.npy"));
  }
  EXPECT_NE(latents[0], latents[1]);
}

TEST(LoraCli, LoraFilesThatCannotBeAppliedFailClearlyAndWriteNothing) {
  const fs::path folder = test::scratch_dir("lora-cli-bad");
  {
    std::ifstream in(lora_file("kohya.safetensors"), std::ios::binary);
    const std::string bytes{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
    std::ofstream(folder / "truncated.safetensors", std::ios::binary) << bytes.substr(0, bytes.size() / 2);
  }
  const std::string job = "generate" + kModel + " --prompt x --steps 2 --width 32 --height 32 --output " +
                          (folder / "out.png").string() + " --save-latents " + (folder / "out.npy").string();
  // Missing and truncated files are refused before the weights load.
  for (const auto& [lora, message] :
       {std::pair{(folder / "missing.safetensors").string(), "there is no file"},
        std::pair{(folder / "truncated.safetensors").string(), "truncated"},
        std::pair{folder.string(), "names a folder, not a LoRA file"}}) {
    const test::CommandResult result = run_canvas(job + " --lora " + lora + ":0.5");
    EXPECT_EQ(result.exit_code, 1) << result.output;
    test::expect_contains(result.output, message);
    test::expect_contains(result.output, lora);
    EXPECT_EQ(result.output.find("Loading"), std::string::npos) << result.output;
  }
  // A LoRA for the edit model's wider layers fails once they are known.
  const test::CommandResult other =
      run_canvas(job + " --lora " + lora_file("edit_lightx2v_bf16.safetensors"));
  EXPECT_EQ(other.exit_code, 1) << other.output;
  test::expect_contains(other.output, "edit_lightx2v_bf16.safetensors");
  test::expect_contains(other.output, "the LoRA was made for another model");
  EXPECT_FALSE(fs::exists(folder / "out.png"));
  EXPECT_FALSE(fs::exists(folder / "out.npy"));
}

// As A1111 writes them: the tags keep the file stem, the hashes drop its separators and are quoted.
TEST(LoraCli, TheParametersTextNamesLorasAsA1111Does) {
  GenerationRecord record;
  record.request.sampling.prompt = "a cat";
  record.model = "qwen";
  record.loras = {{"loras/my,style:v2.safetensors", 0.75f, "kohya", 10, "", std::string(64, 'a')},
                  {"b.safetensors", -1.0f, "plain", 4, "", "0123456789abcdef" + std::string(48, '0')}};
  const std::string text = a1111_parameters(record);
  test::expect_contains(text, "a cat <lora:my,style:v2:0.75> <lora:b:-1>\nSteps: ");
  test::expect_contains(
      text, ", Model: qwen, Lora hashes: \"mystylev2: aaaaaaaaaaaa, b: 0123456789ab\", Version: ");
  const nlohmann::json json = generation_json(record);
  EXPECT_EQ(json.at("loras")[0].at("name"), "my,style:v2.safetensors");
  EXPECT_EQ(json.at("loras")[0].at("strength"), 0.75);
  EXPECT_EQ(json.at("loras")[1].at("strength"), -1.0);
}

TEST(LoraCli, UnknownChoicesAreRefusedListingThem) {
  const fs::path folder = test::scratch_dir("lora-cli-choices");
  const std::string job = "generate" + kModel + " --prompt x --output " + (folder / "out.png").string();
  const test::CommandResult apply = run_canvas(job + " --lora-apply bogus");
  EXPECT_EQ(apply.exit_code, 1) << apply.output;
  test::expect_contains(apply.output, "unknown LoRA application 'bogus': choose auto or runtime");
  EXPECT_EQ(apply.output.find("Loading"), std::string::npos) << apply.output;
  const test::CommandResult preset = run_canvas(job + " --preset lightning-2");
  EXPECT_EQ(preset.exit_code, 105) << preset.output;  // CLI11's validation error
  test::expect_contains(preset.output, "lightning-2 not in {lightning-4,lightning-8}");
  const test::CommandResult strength = run_canvas(job + " --lora " + lora_file("kohya.safetensors") + ":inf");
  EXPECT_EQ(strength.exit_code, 1) << strength.output;
  test::expect_contains(strength.output, "finite");
  EXPECT_FALSE(fs::exists(folder / "out.png"));
}

}  // namespace
}  // namespace canvas
