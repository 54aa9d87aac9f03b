// `canvas history list/show/export` end to end: a history filled through app::History, read by the built
// command line.
#include <gtest/gtest.h>

#include <fstream>
#include <iterator>
#include <sstream>

#include "app/history.h"
#include "test_util.h"

namespace canvas {
namespace {

namespace fs = std::filesystem;
using app::HistoryEntry;

// Created 2025-12-07 18:04:53 UTC and on, a second apart.
constexpr double kFirstCreated = 1765130693;

// Three jobs: a finished one, a failed one and a running one with a long prompt, oldest first.
std::vector<HistoryEntry> sample_jobs() {
  HistoryEntry done;
  done.id = "job-done";
  done.task = "generate";
  done.model = "qwen-image";
  done.state = "done";
  done.priority = 2;
  done.parameters = {{"prompt", "a red fox"}, {"seed", 11}, {"steps", 2}};
  done.report = {{"timings_s", {{"total", 12.5}}}};
  done.outputs = {"/data/images/job-done-0.png"};
  done.created_at = kFirstCreated;
  done.started_at = kFirstCreated + 1;
  done.finished_at = kFirstCreated + 13.5;

  HistoryEntry failed = done;
  failed.id = "job-failed";
  failed.task = "edit";
  failed.model = "qwen-image-edit";
  failed.state = "failed";
  failed.parameters = {{"prompt", "make it snow"}};
  failed.input_sha256 = {std::string(64, 'c')};
  failed.outputs.clear();
  failed.report = nlohmann::json::object();
  failed.error = "out of memory";
  failed.created_at = kFirstCreated + 1;

  HistoryEntry running = done;
  running.id = "job-running";
  running.state = "running";
  running.parameters = {
      {"prompt", "a lighthouse on a cliff at dusk, waves crashing below, 狐狸 in the grass"}};
  running.outputs.clear();
  running.created_at = kFirstCreated + 2;
  running.finished_at = 0;
  return {done, failed, running};
}

// A data folder whose history holds sample_jobs().
fs::path filled_data_dir(const std::string& name) {
  const fs::path folder = test::scratch_dir(name);
  app::History history(app::history_file(folder));
  for (const HistoryEntry& entry : sample_jobs()) history.add(entry);
  return folder;
}

test::CommandResult run_history(const std::string& arguments) {
  return test::run_command("TZ=UTC " + test::built_program("src/canvas").string() + " history " + arguments);
}

TEST(HistoryCli, ListPrintsATableNewestFirst) {
  const fs::path folder = filled_data_dir("history-cli-list");
  const test::CommandResult result = run_history("list --data " + folder.string());
  ASSERT_EQ(result.exit_code, 0) << result.output;
  std::istringstream lines(result.output);
  std::string header, newest, middle, oldest, rest;
  std::getline(lines, header);
  std::getline(lines, newest);
  std::getline(lines, middle);
  std::getline(lines, oldest);
  EXPECT_FALSE(std::getline(lines, rest)) << result.output;
  EXPECT_EQ(header.rfind("ID           CREATED              STATE    TASK      MODEL", 0), 0u) << header;
  test::expect_contains(header, "PROMPT");
  test::expect_contains(header, "SECONDS");
  EXPECT_EQ(newest.rfind("job-running  2025-12-07 18:04:55  running  generate  qwen-image", 0), 0u) << newest;
  // Cut to 40 columns, the "…" included.
  test::expect_contains(newest, "a lighthouse on a cliff at dusk, waves …  -");
  EXPECT_EQ(middle.rfind("job-failed   2025-12-07 18:04:54  failed   edit      qwen-image-edit", 0), 0u)
      << middle;
  test::expect_contains(oldest, "a red fox");
  EXPECT_EQ(oldest.substr(oldest.size() - 4), "12.5") << oldest;

  const test::CommandResult failed = run_history("list --state failed --data " + folder.string());
  ASSERT_EQ(failed.exit_code, 0) << failed.output;
  test::expect_contains(failed.output, "job-failed");
  EXPECT_EQ(failed.output.find("job-done"), std::string::npos) << failed.output;

  const test::CommandResult newest_only = run_history("list --limit 1 --data " + folder.string());
  test::expect_contains(newest_only.output, "job-running");
  EXPECT_EQ(newest_only.output.find("job-failed"), std::string::npos) << newest_only.output;
  test::expect_contains(newest_only.output, "(the newest 1; --limit 0 lists every job)");

  const test::CommandResult none = run_history("list --state cancelled --data " + folder.string());
  EXPECT_EQ(none.exit_code, 0) << none.output;
  test::expect_contains(none.output, "no cancelled jobs in the history at " + folder.string());
}

TEST(HistoryCli, ListJsonHasEveryField) {
  const fs::path folder = filled_data_dir("history-cli-json");
  const test::CommandResult result = run_history("list --json --data " + folder.string());
  ASSERT_EQ(result.exit_code, 0) << result.output;
  const nlohmann::json listed = nlohmann::json::parse(result.output);
  const std::vector<HistoryEntry> jobs = sample_jobs();
  ASSERT_EQ(listed.size(), jobs.size());
  for (size_t i = 0; i < jobs.size(); ++i)
    EXPECT_EQ(listed[i], app::history_entry_json(jobs[jobs.size() - 1 - i]));
}

TEST(HistoryCli, ShowPrintsOneJobInFull) {
  const fs::path folder = filled_data_dir("history-cli-show");
  const test::CommandResult result = run_history("show job-failed --data " + folder.string());
  ASSERT_EQ(result.exit_code, 0) << result.output;
  EXPECT_EQ(nlohmann::json::parse(result.output), app::history_entry_json(sample_jobs()[1]));
  test::expect_contains(result.output, "\n  \"error\": \"out of memory\",\n");

  const test::CommandResult unknown = run_history("show nope --data " + folder.string());
  EXPECT_EQ(unknown.exit_code, 1) << unknown.output;
  test::expect_contains(unknown.output, "error: no job nope in the history at " + folder.string());
}

TEST(HistoryCli, ExportWritesJsonLinesOldestFirst) {
  const fs::path folder = filled_data_dir("history-cli-export");
  const fs::path file = folder / "jobs.jsonl";
  const test::CommandResult written =
      run_history("export --data " + folder.string() + " --output " + file.string());
  ASSERT_EQ(written.exit_code, 0) << written.output;
  test::expect_contains(written.output, "Exported 3 jobs to " + file.string());
  std::ifstream in(file);
  const std::string text{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
  std::istringstream lines(text);
  std::string line;
  for (const HistoryEntry& entry : sample_jobs()) {
    ASSERT_TRUE(std::getline(lines, line)) << text;
    EXPECT_EQ(nlohmann::json::parse(line), app::history_entry_json(entry));
  }
  EXPECT_FALSE(std::getline(lines, line)) << text;

  const test::CommandResult printed = run_history("export --data " + folder.string());
  ASSERT_EQ(printed.exit_code, 0) << printed.output;
  EXPECT_EQ(printed.output, text);

  const test::CommandResult unwritable = run_history("export --data " + folder.string() + " --output " +
                                                     (folder / "missing" / "x.jsonl").string());
  EXPECT_EQ(unwritable.exit_code, 1) << unwritable.output;
  test::expect_contains(unwritable.output, (folder / "missing" / "x.jsonl").string());
}

TEST(HistoryCli, MissingHistorySaysToRunTheServerFirst) {
  const fs::path folder = test::scratch_dir("history-cli-missing");
  for (const std::string command : {"list", "show job-done", "export"}) {
    const test::CommandResult result = run_history(command + " --data " + folder.string());
    EXPECT_EQ(result.exit_code, 1) << result.output;
    test::expect_contains(result.output, "no history at " + folder.string() + ": run `canvas serve` first");
  }
  EXPECT_FALSE(fs::exists(app::history_file(folder)));
}

TEST(HistoryCli, DataFolderDefaultsToCanvasDataDir) {
  const fs::path folder = filled_data_dir("history-cli-default");
  const test::CommandResult result =
      test::run_command("CANVAS_DATA_DIR=" + folder.string() + " " +
                        test::built_program("src/canvas").string() + " history show job-done");
  ASSERT_EQ(result.exit_code, 0) << result.output;
  EXPECT_EQ(nlohmann::json::parse(result.output).at("id"), "job-done");
}

}  // namespace
}  // namespace canvas
