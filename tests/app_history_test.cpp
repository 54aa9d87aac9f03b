// The server's job history (app/history.h): entries round-trip exactly, lists filter and order, interrupted
// jobs are marked failed, the file survives a restart and several writers, and bad files fail clearly.
#include <gtest/gtest.h>
#include <sqlite3.h>

#include <cstdlib>
#include <fstream>
#include <random>
#include <set>
#include <thread>

#include "app/history.h"
#include "test_util.h"
#include "util/error.h"

namespace canvas {
namespace {

using app::History;
using app::HistoryEntry;
using app::HistoryQuery;

HistoryEntry queued_job(const std::string& id, double created_at, const std::string& model = "qwen-image") {
  HistoryEntry entry;
  entry.id = id;
  entry.task = "generate";
  entry.model = model;
  entry.state = "queued";
  entry.parameters = {{"prompt", "a fox " + id}, {"seed", 7}};
  entry.created_at = created_at;
  return entry;
}

std::vector<std::string> ids(const std::vector<HistoryEntry>& entries) {
  std::vector<std::string> result;
  for (const HistoryEntry& entry : entries) result.push_back(entry.id);
  return result;
}

// The answer of one PRAGMA on a connection of its own, as SQLite reports it from the file.
std::string pragma_of(const std::filesystem::path& file, const std::string& pragma) {
  sqlite3* connection = nullptr;
  EXPECT_EQ(sqlite3_open(file.c_str(), &connection), SQLITE_OK);
  sqlite3_stmt* statement = nullptr;
  EXPECT_EQ(sqlite3_prepare_v2(connection, pragma.c_str(), -1, &statement, nullptr), SQLITE_OK);
  EXPECT_EQ(sqlite3_step(statement), SQLITE_ROW);
  std::string answer = reinterpret_cast<const char*>(sqlite3_column_text(statement, 0));
  sqlite3_finalize(statement);
  sqlite3_close(connection);
  return answer;
}

TEST(History, EntryRoundTripsExactly) {
  History history(test::scratch_dir("history-round-trip") / "history.sqlite3");
  HistoryEntry entry = queued_job("job-1", 1765130693.123456789);
  entry.task = "edit";
  entry.priority = -3;
  entry.parameters = {{"prompt", "ein Fuchs, 狐狸, \"quoted\"\nsecond line"},
                      {"seed", 18446744073709551615ull},
                      {"cfg_scale", 0.1},
                      {"loras", nlohmann::json::array({{{"name", "style"}, {"strength", -0.75}}})},
                      {"outpaint", nullptr}};
  entry.input_sha256 = {std::string(64, 'a'), std::string(64, 'b')};
  history.add(entry);
  EXPECT_EQ(history.find("job-1"), entry);
  EXPECT_EQ(history.find("job-2"), std::nullopt);

  entry.state = "done";
  entry.report = {{"timings_s", {{"total", 12.3456789012345}}}, {"recoveries", nlohmann::json::array()}};
  entry.outputs = {"/data/images/job-1-0.png", "/data/images/job-1-1.png"};
  entry.started_at = 1765130694.5;
  entry.finished_at = 1765130706.875;
  history.update(entry);
  EXPECT_EQ(history.find("job-1"), entry);
  EXPECT_EQ(app::history_entry_json(entry).at("outputs").size(), 2u);
}

TEST(History, RefusesDuplicatesUnknownStatesAndMissingJobs) {
  History history(test::scratch_dir("history-refusals") / "history.sqlite3");
  history.add(queued_job("a", 1));
  test::expect_contains(test::error_of([&] { history.add(queued_job("a", 2)); }),
                        "job a is recorded already");
  HistoryEntry unknown_state = queued_job("b", 3);
  unknown_state.state = "paused";
  test::expect_contains(test::error_of([&] { history.add(unknown_state); }), "job b has no state 'paused'");
  test::expect_contains(test::error_of([&] { history.update(queued_job("c", 4)); }), "no job c to update");
  EXPECT_EQ(history.list().size(), 1u);
}

TEST(History, ListsNewestFirstWithFilters) {
  History history(test::scratch_dir("history-list") / "history.sqlite3");
  const std::vector<std::tuple<std::string, double, std::string, std::string>> jobs = {
      {"oldest", 100, "done", "qwen-image"},
      {"middle", 200, "failed", "qwen-image-edit"},
      {"newest", 300, "done", "qwen-image"},
      {"tie-first", 150, "running", "qwen-image"},
      {"tie-second", 150, "done", "qwen-image-edit"}};
  for (const auto& [id, created_at, state, model] : jobs) {
    HistoryEntry entry = queued_job(id, created_at, model);
    entry.state = state;
    history.add(entry);
  }
  using Ids = std::vector<std::string>;
  EXPECT_EQ(ids(history.list()), (Ids{"newest", "middle", "tie-second", "tie-first", "oldest"}));
  EXPECT_EQ(ids(history.list({.state = "done"})), (Ids{"newest", "tie-second", "oldest"}));
  EXPECT_EQ(ids(history.list({.model = "qwen-image-edit"})), (Ids{"middle", "tie-second"}));
  EXPECT_EQ(ids(history.list({.state = "done", .model = "qwen-image"})), (Ids{"newest", "oldest"}));
  EXPECT_EQ(ids(history.list({.limit = 2})), (Ids{"newest", "middle"}));
  EXPECT_EQ(ids(history.list({.limit = 2, .offset = 2})), (Ids{"tie-second", "tie-first"}));
  EXPECT_EQ(ids(history.list({.offset = 4})), (Ids{"oldest"}));
  EXPECT_TRUE(history.list({.state = "cancelled"}).empty());
}

TEST(History, MarkInterruptedFailsQueuedAndRunningJobs) {
  History history(test::scratch_dir("history-interrupted") / "history.sqlite3");
  for (const char* state : {"queued", "running", "done", "failed", "cancelled"}) {
    HistoryEntry entry = queued_job(state, 10);
    entry.state = state;
    if (entry.state != "queued") entry.started_at = 11;
    history.add(entry);
  }
  EXPECT_EQ(history.mark_interrupted(), 2);
  for (const char* id : {"queued", "running"}) {
    HistoryEntry entry = *history.find(id);
    EXPECT_EQ(entry.state, "failed");
    EXPECT_EQ(entry.error, app::kInterruptedJobError);
    EXPECT_EQ(entry.created_at, 10);
    EXPECT_EQ(entry.finished_at, 0);
  }
  EXPECT_EQ(history.find("running")->started_at, 11);
  EXPECT_EQ(history.find("done")->state, "done");
  EXPECT_EQ(history.find("cancelled")->error, "");
  EXPECT_EQ(history.mark_interrupted(), 0);
}

TEST(History, RemoveForgetsTheJobAndDeletesItsImages) {
  const auto dir = test::scratch_dir("history-remove");
  History history(dir / "history.sqlite3");
  HistoryEntry done = queued_job("done", 10);
  done.state = "done";
  for (const char* name : {"done-0.png", "done-1.png"}) {
    std::ofstream(dir / name) << "png";
    done.outputs.push_back((dir / name).string());
  }
  done.outputs.push_back((dir / "deleted-already.png").string());
  history.add(done);
  history.add(queued_job("kept", 11));
  EXPECT_TRUE(history.remove("done"));
  EXPECT_FALSE(history.find("done"));
  EXPECT_FALSE(std::filesystem::exists(dir / "done-0.png"));
  EXPECT_FALSE(std::filesystem::exists(dir / "done-1.png"));
  EXPECT_EQ(ids(history.list()), std::vector<std::string>{"kept"});
  EXPECT_FALSE(history.remove("done"));
}

TEST(History, RemoveRefusesQueuedAndRunningJobs) {
  const auto dir = test::scratch_dir("history-remove-live");
  History history(dir / "history.sqlite3");
  for (const char* state : {"queued", "running"}) {
    HistoryEntry entry = queued_job(state, 10);
    entry.state = state;
    std::ofstream(dir / (std::string(state) + ".png")) << "png";
    entry.outputs.push_back((dir / (std::string(state) + ".png")).string());
    history.add(entry);
    EXPECT_NE(test::error_of([&] { history.remove(state); }).find("cancel it before removing it"),
              std::string::npos);
    EXPECT_TRUE(history.find(state));
    EXPECT_TRUE(std::filesystem::exists(dir / (std::string(state) + ".png")));
  }
}

TEST(History, ReopeningKeepsEverything) {
  const auto file = test::scratch_dir("history-reopen") / "data" / "history.sqlite3";
  std::vector<HistoryEntry> written;
  {
    History history(file);
    for (int i = 0; i < 3; ++i) written.push_back(queued_job("job-" + std::to_string(i), 1000 - i));
    for (const HistoryEntry& entry : written) history.add(entry);
    written[1].state = "running";
    written[1].started_at = 1001;
    history.update(written[1]);
  }
  History reopened(file);
  EXPECT_EQ(reopened.list(), written);
  EXPECT_EQ(reopened.mark_interrupted(), 3);
  EXPECT_EQ(pragma_of(file, "PRAGMA user_version"), "1");
}

TEST(History, ConcurrentAddsFromEightThreadsLoseNothing) {
  const auto file = test::scratch_dir("history-threads") / "history.sqlite3";
  // Two connections to the same file, each shared by four threads: both the lock inside one History and
  // SQLite's between connections take their turns.
  History first(file), second(file);
  constexpr int kThreads = 8, kJobsPerThread = 40;
  std::vector<std::thread> threads;
  for (int thread = 0; thread < kThreads; ++thread) {
    threads.emplace_back([&, thread] {
      History& history = thread % 2 == 0 ? first : second;
      for (int job = 0; job < kJobsPerThread; ++job) {
        HistoryEntry entry =
            queued_job(std::to_string(thread) + "-" + std::to_string(job), thread * 1000 + job);
        history.add(entry);
        entry.state = "running";
        history.update(entry);
        EXPECT_EQ(history.find(entry.id), entry);
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  const std::vector<HistoryEntry> entries = first.list({.state = "running"});
  ASSERT_EQ(entries.size(), size_t{kThreads * kJobsPerThread});
  const std::vector<std::string> listed = ids(entries);
  EXPECT_EQ(std::set<std::string>(listed.begin(), listed.end()).size(), entries.size());
}

TEST(History, WriteAheadLoggingIsOn) {
  const auto file = test::scratch_dir("history-wal") / "history.sqlite3";
  History history(file);
  history.add(queued_job("a", 1));
  EXPECT_EQ(pragma_of(file, "PRAGMA journal_mode"), "wal");
  EXPECT_EQ(history.file(), file);
}

TEST(History, CorruptFileFailsClearly) {
  const auto file = test::scratch_dir("history-corrupt") / "history.sqlite3";
  std::mt19937 random(5);
  std::string bytes(8192, '\0');
  for (char& byte : bytes) byte = static_cast<char>(random());
  std::ofstream(file, std::ios::binary) << bytes;
  const std::string message = test::error_of([&] { History history(file); });
  test::expect_contains(message, "history database " + file.string());
  test::expect_contains(message, "file is not a database");
}

TEST(History, NewerSchemaIsRefused) {
  const auto file = test::scratch_dir("history-newer") / "history.sqlite3";
  History(file).add(queued_job("a", 1));
  sqlite3* connection = nullptr;
  ASSERT_EQ(sqlite3_open(file.c_str(), &connection), SQLITE_OK);
  EXPECT_EQ(sqlite3_exec(connection, "PRAGMA user_version = 2", nullptr, nullptr, nullptr), SQLITE_OK);
  sqlite3_close(connection);
  const std::string message = test::error_of([&] { History history(file); });
  test::expect_contains(message, "history database " + file.string());
  test::expect_contains(message, "schema version 2 was written by a newer canvas");
}

TEST(History, UnopenableFileNamesItAndTheReason) {
  const auto folder = test::scratch_dir("history-unopenable");
  // A folder where the database file should be.
  const std::string message = test::error_of([&] { History history(folder); });
  test::expect_contains(message, "cannot open the history database " + folder.string());
  test::expect_contains(message, "unable to open database file");
}

// Sets an environment variable (or unsets it, for nullptr) and puts the old value back when done.
class ScopedEnvironment {
 public:
  ScopedEnvironment(const char* name, const char* value) : name_(name) {
    if (const char* old = std::getenv(name)) old_ = old;
    value ? setenv(name, value, 1) : unsetenv(name);
  }
  ~ScopedEnvironment() { old_ ? setenv(name_, old_->c_str(), 1) : unsetenv(name_); }
  ScopedEnvironment(const ScopedEnvironment&) = delete;
  ScopedEnvironment& operator=(const ScopedEnvironment&) = delete;

 private:
  const char* name_;
  std::optional<std::string> old_;
};

TEST(History, DefaultDataDirFollowsTheEnvironment) {
  ScopedEnvironment home("HOME", "/home/painter");
  {
    ScopedEnvironment data("CANVAS_DATA_DIR", "/srv/canvas");
    ScopedEnvironment xdg("XDG_DATA_HOME", "/xdg");
    EXPECT_EQ(app::default_data_dir(), "/srv/canvas");
  }
  ScopedEnvironment data("CANVAS_DATA_DIR", nullptr);
  {
    ScopedEnvironment xdg("XDG_DATA_HOME", "/xdg");
    EXPECT_EQ(app::default_data_dir(), "/xdg/ethereal-canvas");
  }
  {
    ScopedEnvironment relative_xdg("XDG_DATA_HOME", "relative");
    EXPECT_EQ(app::default_data_dir(), "/home/painter/.local/share/ethereal-canvas");
  }
  ScopedEnvironment xdg("XDG_DATA_HOME", nullptr);
  EXPECT_EQ(app::history_file(app::default_data_dir()),
            "/home/painter/.local/share/ethereal-canvas/history.sqlite3");
  ScopedEnvironment no_home("HOME", nullptr);
  test::expect_contains(test::error_of([] { app::default_data_dir(); }), "no data folder");
}

}  // namespace
}  // namespace canvas
