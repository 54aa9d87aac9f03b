// The `canvas generate` command end to end: exit codes, the PNG and its metadata, and error messages.
#include <gtest/gtest.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <thread>

#include "image/decode.h"
#include "io/png_image.h"
#include "test_util.h"

namespace canvas {
namespace {

namespace fs = std::filesystem;

test::CommandResult run_canvas(const std::string& arguments) {
  return test::run_built_program("src/canvas", arguments);
}

std::string model_argument() {
  return "--model " + test::source_path("models/tiny-qwen-image").string();
}

// A two-step 32x32 job writing `output`, with CANVAS_FAIL_ALLOC set to `fail_alloc`.
test::CommandResult small_job_failing(const std::string& fail_alloc, const std::filesystem::path& output) {
  return test::run_command("CANVAS_FAIL_ALLOC='" + fail_alloc + "' " +
                           test::built_program("src/canvas").string() + " generate " + model_argument() +
                           " --prompt x --steps 2 --width 32 --height 32 --output " + output.string());
}

// A 32x32 job of `steps` steps writing into `folder`, with no prompt yet.
std::string small_job(const fs::path& folder, int steps = 2) {
  return "generate " + model_argument() + " --steps " + std::to_string(steps) +
         " --width 32 --height 32 --output " + (folder / "x.png").string() + " ";
}

void expect_refused_before_loading(const test::CommandResult& result, const std::string& message) {
  EXPECT_EQ(result.exit_code, 1) << result.output;
  EXPECT_NE(result.output.find(message), std::string::npos) << result.output;
  EXPECT_EQ(result.output.find("Loading"), std::string::npos) << result.output;
}

size_t entries(const fs::path& folder) {
  return static_cast<size_t>(std::distance(fs::directory_iterator(folder), fs::directory_iterator()));
}

TEST(Cli, GenerateWritesPngWithReproducibleMetadata) {
  auto output = test::scratch_dir("cli-generate") / "fox.png";
  test::CommandResult result = run_canvas(
      "generate " + model_argument() +
      " --prompt 'a red fox' --steps 2 --width 48 --height 32 --seed 11 --output " + output.string());
  ASSERT_EQ(result.exit_code, 0) << result.output;
  RgbImage image = read_image(output).rgb;
  EXPECT_EQ(image.width, 48);
  EXPECT_EQ(image.height, 32);
  std::string parameters, settings;
  for (const PngTextChunk& chunk : image.text) {
    if (chunk.key == "parameters") parameters = chunk.text;
    if (chunk.key == "canvas") settings = chunk.text;
  }
  EXPECT_NE(parameters.find("a red fox\nNegative prompt:  \nSteps: 2"), std::string::npos) << parameters;
  EXPECT_NE(parameters.find("Seed: 11, Size: 48x32"), std::string::npos) << parameters;
  nlohmann::json json = nlohmann::json::parse(settings);
  EXPECT_EQ(json.at("seed"), 11);
  EXPECT_EQ(json.at("steps"), 2);
  EXPECT_EQ(json.at("width"), 48);
  EXPECT_TRUE(json.at("true_cfg").get<bool>());
  EXPECT_EQ(json.at("negative_prompt_used"), " ");
  EXPECT_GT(json.at("timings_s").at("total").get<double>(), 0.0);
}

std::string seed_of(const RgbImage& image) {
  return nlohmann::json::parse(test::png_text(image, "canvas")).at("seed").dump();
}

TEST(Cli, StrategyAndBudgetsArePrintedAndRecorded) {
  auto output = test::scratch_dir("cli-strategy") / "fox.png";
  test::CommandResult result = run_canvas(
      "generate " + model_argument() +
      " --prompt 'a red fox' --steps 2 --width 32 --height 32 --seed 3 --strategy sequential_offload "
      "--vram-budget 1 --output " +
      output.string());
  ASSERT_EQ(result.exit_code, 0) << result.output;
  EXPECT_NE(result.output.find("plan: strategy sequential_offload"), std::string::npos) << result.output;
  EXPECT_NE(result.output.find("transformer  offloaded, 0 blocks on the device"), std::string::npos)
      << result.output;
  EXPECT_NE(result.output.find("--vram-budget 1.00 GiB requested per device, 64.00 MiB reserved for scratch"),
            std::string::npos)
      << result.output;
  nlohmann::json json = nlohmann::json::parse(test::png_text(read_image(output).rgb, "canvas"));
  EXPECT_EQ(json.at("memory_plan").at("strategy"), "sequential_offload");
  EXPECT_LT(json.at("memory_plan").at("device_budget_bytes").get<int64_t>(), int64_t{1} << 30);
  EXPECT_GT(json.at("memory").at("transformer_bytes_streamed").get<int64_t>(), 0);

  test::CommandResult bad = run_canvas("generate " + model_argument() +
                                       " --prompt x --strategy fastest --output " + output.string());
  EXPECT_NE(bad.exit_code, 0);
  EXPECT_NE(bad.output.find("unknown strategy 'fastest': use auto, bf16_full"), std::string::npos)
      << bad.output;
}

TEST(Cli, DevicesSpreadTheJobAndThePlanSaysWhere) {
  // cpu:1 is a simulated pool: host memory under an allocator of its own.
  auto output = test::scratch_dir("cli-devices") / "fox.png";
  test::CommandResult result = run_canvas("generate " + model_argument() +
                                          " --prompt 'a red fox' --steps 2 --width 32 --height 32 --seed 3 "
                                          "--devices cpu:0,cpu:1 --parallel sequence --output " +
                                          output.string());
  ASSERT_EQ(result.exit_code, 0) << result.output;
  EXPECT_NE(result.output.find("parallelism sequence, cpu budget"), std::string::npos) << result.output;
  EXPECT_NE(result.output.find("sequence parallel over cpu, cpu:1"), std::string::npos) << result.output;
  EXPECT_NE(result.output.find("cpu:1 peak"), std::string::npos) << result.output;
  nlohmann::json json = nlohmann::json::parse(test::png_text(read_image(output).rgb, "canvas"));
  EXPECT_EQ(json.at("device"), "cpu,cpu:1");
  EXPECT_EQ(json.at("memory_plan").at("parallelism"), "sequence");
  EXPECT_EQ(json.at("memory_plan").at("pools").size(), 2u);
}

TEST(Cli, BadDeviceListsAndParallelismFailClearly) {
  auto output = test::scratch_dir("cli-devices-bad") / "fox.png";
  const std::string job = "generate " + model_argument() + " --prompt x --steps 2 --width 32 --height 32 ";
  const std::pair<std::string, std::string> cases[] = {
      {"--devices cpu:0,cpu:0", "--devices names cpu twice"},
      {"--devices 0,", "--devices needs a comma-separated list"},
      {"--devices cpu:0,cuda:1", "--devices mixes cpu and cuda:1"},
      {"--devices cpu:0,gpu7", "unknown device 'gpu7'"},
      {"--parallel pipeline", "parallelism pipeline needs several devices"},
      {"--devices cpu:0,cpu:1 --parallel sideways", "unknown parallelism 'sideways': use auto, none"},
      {"--device cuda --devices cpu:0,cpu:1", "--device cuda and --devices cpu:0,cpu:1 disagree"},
  };
  for (const auto& [arguments, message] : cases) {
    test::CommandResult bad = run_canvas(job + arguments + " --output " + output.string());
    EXPECT_NE(bad.exit_code, 0) << arguments;
    EXPECT_NE(bad.output.find(message), std::string::npos) << arguments << ": " << bad.output;
    EXPECT_FALSE(std::filesystem::exists(output)) << arguments;
  }
}

TEST(Cli, ProfileWritesJsonPlotAndSummary) {
  auto folder = test::scratch_dir("cli-profile");
  test::CommandResult result = run_canvas(
      "generate " + model_argument() + " --prompt 'a red fox' --steps 2 --width 32 --height 32 --profile " +
      (folder / "job.json").string() + " --output " + (folder / "fox.png").string());
  ASSERT_EQ(result.exit_code, 0) << result.output;
  EXPECT_NE(result.output.find("Profile: "), std::string::npos) << result.output;
  std::ifstream stream(folder / "job.json");
  nlohmann::json profile = nlohmann::json::parse(stream);
  std::vector<std::string> phases;
  for (const auto& phase : profile.at("phases")) phases.push_back(phase.at("name"));
  for (const char* expected : {"load", "plan", "text_encode", "denoise", "step", "vae_decode"})
    EXPECT_NE(std::find(phases.begin(), phases.end(), expected), phases.end()) << expected;
  EXPECT_EQ(std::count(phases.begin(), phases.end(), "step"), 2);
  EXPECT_TRUE(std::filesystem::is_regular_file(folder / "job.svg"));
  nlohmann::json json = nlohmann::json::parse(test::png_text(read_image(folder / "fox.png").rgb, "canvas"));
  EXPECT_FALSE(json.at("profile_summary").empty());
}

TEST(Cli, InjectedAllocationFailureIsRecoveredAndRecorded) {
  auto output = test::scratch_dir("cli-fault-recovered") / "fox.png";
  test::CommandResult recovered = small_job_failing("300", output);
  ASSERT_EQ(recovered.exit_code, 0) << recovered.output;
  EXPECT_NE(recovered.output.find("Memory recovery: "), std::string::npos) << recovered.output;
  EXPECT_NE(recovered.output.find("injected allocation failure (CANVAS_FAIL_ALLOC=300)"), std::string::npos)
      << recovered.output;
  nlohmann::json json = nlohmann::json::parse(test::png_text(read_image(output).rgb, "canvas"));
  ASSERT_EQ(json.at("recoveries").size(), 1u) << json.dump();
  EXPECT_NE(json.at("recoveries")[0].get<std::string>().find("released cached memory"), std::string::npos);
}

TEST(Cli, UnrecoverableAllocationFailureFailsClearlyAndWritesNothing) {
  auto output = test::scratch_dir("cli-fault") / "fox.png";
  test::CommandResult failed = small_job_failing("random:1:1", output);
  test::CommandResult malformed = small_job_failing("every", output);
  EXPECT_NE(failed.exit_code, 0);
  EXPECT_NE(failed.output.find("injected allocation failure (CANVAS_FAIL_ALLOC=random:1:1)"),
            std::string::npos)
      << failed.output;
  EXPECT_NE(malformed.exit_code, 0);
  EXPECT_NE(malformed.output.find("CANVAS_FAIL_ALLOC='every': expected N"), std::string::npos)
      << malformed.output;
  EXPECT_FALSE(std::filesystem::exists(output));
}

TEST(Cli, BadSizeFailsClearlyAndWritesNothing) {
  auto output = test::scratch_dir("cli-bad-size") / "bad.png";
  test::CommandResult result =
      run_canvas("generate " + model_argument() + " --prompt x --steps 2 --width 50 --height 32 --output " +
                 output.string());
  EXPECT_EQ(result.exit_code, 1);
  EXPECT_NE(result.output.find("multiples of 16"), std::string::npos) << result.output;
  EXPECT_FALSE(std::filesystem::exists(output));
}

TEST(Cli, MissingModelFailsClearly) {
  auto output = test::scratch_dir("cli-missing-model") / "x.png";
  test::CommandResult result =
      run_canvas("generate --model /nonexistent/model --prompt x --output " + output.string());
  EXPECT_EQ(result.exit_code, 1);
  EXPECT_NE(result.output.find("/nonexistent/model"), std::string::npos) << result.output;
}

TEST(Cli, MissingRequiredOptionIsAUsageError) {
  test::CommandResult result = run_canvas("generate --prompt x");
  EXPECT_EQ(result.exit_code, 106);  // CLI11's RequiredError, as the README's troubleshooting lists
  EXPECT_NE(result.output.find("--model"), std::string::npos) << result.output;
}

TEST(Cli, OutputsThatCannotBeWrittenAreRefusedBeforeLoading) {
  const fs::path folder = test::scratch_dir("cli-unwritable");
  fs::create_directory(folder / "folder.png");
  const std::string job = "generate " + model_argument() + " --prompt x --steps 2 --width 32 --height 32 ";
  const std::pair<std::string, std::string> cases[] = {
      {"--output " + (folder / "folder.png").string(), "--output names a folder, not a file it can replace"},
      {"--output " + (folder / "missing" / "x.png").string(), "the folder of --output does not exist"},
      {"--output /proc/x.png", "--output: cannot write /proc/x.png: cannot create"},
      {"--output " + (folder / "x.png").string() + " --profile " + (folder / "missing" / "p.json").string(),
       "the folder of --profile does not exist"},
      {"--output " + (folder / "x.png").string() + " --profile /proc/p.json",
       "--profile: cannot write /proc/p.json"},
  };
  for (const auto& [arguments, message] : cases)
    expect_refused_before_loading(run_canvas(job + arguments), message);
  // Nothing was left behind by the checks, not even a probe.
  EXPECT_EQ(entries(folder), 1u);
}

TEST(Cli, PromptsThatAreNotUtf8AreRefusedBeforeLoading) {
  const fs::path folder = test::scratch_dir("cli-utf8");
  expect_refused_before_loading(run_canvas(small_job(folder) + "--prompt \"$(printf 'a\\377')\""),
                                "the prompt is not valid UTF-8: byte 0xFF at offset 1");
  expect_refused_before_loading(
      run_canvas(small_job(folder) + "--prompt x --negative-prompt \"$(printf '\\303')\""),
      "the negative prompt is not valid UTF-8: byte 0xC3 at offset 0");
  EXPECT_TRUE(fs::is_empty(folder));
}

TEST(Cli, AProfileThatCannotBeWrittenKeepsTheImage) {
  const fs::path folder = test::scratch_dir("cli-profile-full");
  // The sizes of the image and the profile, which vary with the machine's timings: first written freely.
  const std::string job =
      small_job(folder, 12) + "--prompt x --seed 1 --profile " + (folder / "p.json").string();
  ASSERT_EQ(run_canvas(job).exit_code, 0);
  const auto image_bytes = static_cast<int64_t>(fs::file_size(folder / "x.png"));
  const auto profile_bytes = static_cast<int64_t>(fs::file_size(folder / "p.json"));
  ASSERT_GT(profile_bytes, image_bytes + 1024) << "the profile must be the larger file for this test";
  for (const fs::path& written : {folder / "x.png", folder / "p.json", folder / "p.svg"}) fs::remove(written);
  test::CommandResult result;
  {
    // Room for the image, not for the profile: a disk that fills up in between.
    test::FileSizeLimit full_disk((image_bytes + profile_bytes) / 2);
    result = run_canvas(job);
  }
  EXPECT_EQ(result.exit_code, 3) << result.output;
  EXPECT_NE(result.output.find("error: the image was written to " + (folder / "x.png").string() +
                               ", but the profile was not: cannot write " + (folder / "p.json").string() +
                               ": File too large"),
            std::string::npos)
      << result.output;
  EXPECT_EQ(read_image(folder / "x.png").rgb.width, 32);
  // No profile file and no temporary: only the image.
  EXPECT_EQ(entries(folder), 1u);
}

TEST(Cli, SeedsCoverTheFullRangeAndAnythingElseIsRefused) {
  const fs::path folder = test::scratch_dir("cli-seeds");
  test::CommandResult largest = run_canvas(small_job(folder) + "--prompt x --seed 18446744073709551615");
  ASSERT_EQ(largest.exit_code, 0) << largest.output;
  EXPECT_EQ(seed_of(read_image(folder / "x.png").rgb), "18446744073709551615");

  test::CommandResult random = run_canvas(small_job(folder) + "--prompt x --seed -1");
  ASSERT_EQ(random.exit_code, 0) << random.output;
  // Drawn over 64 bits, not 32: this fails once in four billion runs.
  EXPECT_GT(std::stoull(seed_of(read_image(folder / "x.png").rgb)), uint64_t{1} << 32);

  for (const char* bad : {"18446744073709551616", "0x10", "-2", "1e3", "''", "' 5'", "+5"}) {
    expect_refused_before_loading(run_canvas(small_job(folder) + "--prompt x --seed " + bad),
                                  "--seed takes a whole decimal number from 0 to 18446744073709551615, or -1 "
                                  "for a random seed");
  }
  EXPECT_NE(run_canvas("generate --help").output.find("-1 (the default) draws a random one, as in A1111"),
            std::string::npos);
}

// A batch loads the model once and keeps the weights arranged: its second image is the one a single job
// with the next seed makes, and every file of the batch is numbered. Each image has a profile of its own
// (the first's profiler ends before the second's starts: they chain the allocators' listeners).
TEST(Cli, BatchCountMakesNumberedImagesWithSeedsCountingUp) {
  const fs::path folder = test::scratch_dir("cli-batch");
  const std::string batch = small_job(folder) + "--prompt x --seed 7 --batch-count 2 --save-latents " +
                            (folder / "x.npy").string() + " --profile " + (folder / "x.json").string();
  test::CommandResult result = run_canvas(batch);
  ASSERT_EQ(result.exit_code, 0) << result.output;
  EXPECT_EQ(result.output.find("Loading"), result.output.rfind("Loading")) << "the model loads once";
  EXPECT_EQ(seed_of(read_image(folder / "x-1.png").rgb), "7");
  EXPECT_EQ(seed_of(read_image(folder / "x-2.png").rgb), "8");
  EXPECT_FALSE(fs::exists(folder / "x.png"));
  EXPECT_TRUE(fs::exists(folder / "x-1.json") && fs::exists(folder / "x-2.json"));
  const fs::path single = test::scratch_dir("cli-batch-single");
  ASSERT_EQ(
      run_canvas(small_job(single) + "--prompt x --seed 8 --save-latents " + (single / "x.npy").string())
          .exit_code,
      0);
  EXPECT_EQ(test::npy_floats(folder / "x-2.npy"), test::npy_floats(single / "x.npy"));
  expect_refused_before_loading(run_canvas(small_job(folder) + "--prompt x --batch-count 0"),
                                "--batch-count must be between 1 and 100, got 0");
}

TEST(Cli, NegativePromptWithoutGuidanceIsWarnedAbout) {
  const fs::path folder = test::scratch_dir("cli-negative-without-cfg");
  test::CommandResult result =
      run_canvas(small_job(folder) + "--prompt x --negative-prompt blurry --cfg-scale 1");
  ASSERT_EQ(result.exit_code, 0) << result.output;
  EXPECT_NE(result.output.find("warning: --negative-prompt is ignored: --cfg-scale 1.00 turns guidance off"),
            std::string::npos)
      << result.output;
}

TEST(Cli, VramBudgetBelowTheScratchReserveIsRefusedBeforeLoading) {
  const fs::path folder = test::scratch_dir("cli-tiny-budget");
  expect_refused_before_loading(
      run_canvas(small_job(folder) + "--prompt x --vram-budget 0.01"),
      "--vram-budget 10.24 MiB leaves nothing for the job on cpu: 64.00 MiB of it is reserved");
}

TEST(Cli, ProgressIsPrintedAsPlainLinesWhenNotATerminal) {
  // The test reads the output through a pipe, as a log file would take it.
  const fs::path folder = test::scratch_dir("cli-progress");
  test::CommandResult result = run_canvas(small_job(folder, 3) + "--prompt x");
  ASSERT_EQ(result.exit_code, 0) << result.output;
  EXPECT_NE(result.output.find("\nDenoising: step 1/3, "), std::string::npos) << result.output;
  EXPECT_NE(result.output.find("\nDenoising: step 3/3, "), std::string::npos) << result.output;
  EXPECT_NE(result.output.find(" s/step, ETA "), std::string::npos) << result.output;
  EXPECT_EQ(result.output.find('\r'), std::string::npos) << result.output;
}

// A canvas run in the background, its output going to a file, for signals sent mid-job.
class BackgroundCanvas {
 public:
  BackgroundCanvas(const std::string& arguments, fs::path log) : log_(std::move(log)) {
    const std::string command = "exec " + test::built_program("src/canvas").string() + " " + arguments +
                                " > '" + log_.string() + "' 2>&1";
    const char* argv[] = {"sh", "-c", command.c_str(), nullptr};
    EXPECT_EQ(::posix_spawn(&pid_, "/bin/sh", nullptr, nullptr, const_cast<char**>(argv), environ), 0);
  }
  ~BackgroundCanvas() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
  }
  BackgroundCanvas(const BackgroundCanvas&) = delete;
  BackgroundCanvas& operator=(const BackgroundCanvas&) = delete;

  std::string output() const {
    std::ifstream stream(log_);
    return {std::istreambuf_iterator<char>(stream), std::istreambuf_iterator<char>()};
  }
  // Whether the output shows `text` within a minute.
  bool wait_for_output(const std::string& text) const {
    for (auto deadline = Clock::now() + std::chrono::minutes(1); Clock::now() < deadline;) {
      if (output().find(text) != std::string::npos) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return false;
  }
  void signal(int number) const { ::kill(pid_, number); }
  // The exit code; -1 when a signal ended it or it still ran after a minute (then it is killed).
  int wait_for_exit() {
    for (auto deadline = Clock::now() + std::chrono::minutes(1); Clock::now() < deadline;) {
      int status = 0;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = 0;
        return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return -1;
  }

 private:
  using Clock = std::chrono::steady_clock;
  fs::path log_;
  pid_t pid_ = 0;
};

TEST(Cli, CtrlCStopsTheJobAtTheNextStepAndExits130) {
  const fs::path folder = test::scratch_dir("cli-sigint");
  const fs::path log = test::scratch_dir("cli-sigint-log") / "log.txt";
  BackgroundCanvas canvas("generate " + model_argument() +
                              " --prompt x --steps 1000 --width 256 --height 256 --profile " +
                              (folder / "p.json").string() + " --output " + (folder / "x.png").string(),
                          log);
  ASSERT_TRUE(canvas.wait_for_output("Denoising: step 1/1000")) << canvas.output();
  canvas.signal(SIGINT);
  EXPECT_EQ(canvas.wait_for_exit(), 130) << canvas.output();
  EXPECT_NE(canvas.output().find("Cancelling at the next step"), std::string::npos) << canvas.output();
  EXPECT_NE(canvas.output().find("\ncancelled\n"), std::string::npos) << canvas.output();
  EXPECT_TRUE(fs::is_empty(folder));
}

TEST(Cli, ASecondSignalStopsAtOnceAndLeavesNoFiles) {
  const fs::path folder = test::scratch_dir("cli-sigint-twice");
  const fs::path log = test::scratch_dir("cli-sigint-twice-log") / "log.txt";
  // Steps of about a second, so the second signal comes while the first waits for a step to end.
  BackgroundCanvas canvas("generate " + model_argument() +
                              " --prompt x --steps 1000 --width 512 --height 512 --output " +
                              (folder / "x.png").string(),
                          log);
  ASSERT_TRUE(canvas.wait_for_output("Denoising: step 1/1000")) << canvas.output();
  canvas.signal(SIGTERM);
  ASSERT_TRUE(canvas.wait_for_output("Cancelling at the next step")) << canvas.output();
  canvas.signal(SIGINT);
  EXPECT_EQ(canvas.wait_for_exit(), 130) << canvas.output();
  EXPECT_NE(canvas.output().find("\nStopped.\n"), std::string::npos) << canvas.output();
  EXPECT_EQ(canvas.output().find("\ncancelled\n"), std::string::npos) << canvas.output();
  EXPECT_TRUE(fs::is_empty(folder));
}

}  // namespace
}  // namespace canvas
