// The server's job history: every job `canvas serve` takes, recorded in a SQLite database
// (DATA/history.sqlite3) from the moment it is queued to its end, so a job's settings, measurements and
// images can be looked up after the fact and survive the server's restarts. `canvas history` reads it.
#pragma once

#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace canvas::app {

// The states a job passes through: queued, then running, then one of done, failed or cancelled.
inline constexpr std::string_view kJobStates[] = {"queued", "running", "done", "failed", "cancelled"};
bool is_job_state(std::string_view state);

// The error of a job that was queued or running when its server stopped (History::mark_interrupted).
inline constexpr std::string_view kInterruptedJobError = "the server stopped before the job finished";

struct HistoryEntry {
  std::string id;
  std::string task;   // "generate", "img2img", "inpaint", "edit"
  std::string model;  // the model's id
  std::string state;  // one of kJobStates
  int priority = 0;
  nlohmann::json parameters = nlohmann::json::object();  // job_spec_json (app/job_spec.h)
  nlohmann::json report = nlohmann::json::object();      // what the job measured: timings, plan, recoveries
  std::vector<std::string> input_sha256;                 // of each uploaded picture, in the request's order
  std::vector<std::string> outputs;                      // the images' paths
  std::string error;                                     // why a failed job failed; "" otherwise
  // Unix time in seconds; 0 until the job gets there.
  double created_at = 0;
  double started_at = 0;
  double finished_at = 0;

  bool operator==(const HistoryEntry&) const = default;
};

// The entry as one JSON object with the struct's field names, as `canvas history show` prints it.
nlohmann::json history_entry_json(const HistoryEntry& entry);

// Which entries History::list returns, newest (by created_at) first.
struct HistoryQuery {
  std::optional<std::string> state = {};  // only entries in this state
  std::optional<std::string> model = {};  // only entries of this model
  std::optional<int64_t> limit = {};      // at most this many; none: every entry
  int64_t offset = 0;                     // skipping this many of the newest first
};

// Where `canvas serve` keeps its data unless told otherwise: $CANVAS_DATA_DIR, else
// $XDG_DATA_HOME/ethereal-canvas, else ~/.local/share/ethereal-canvas. Throws canvas::Error when none of
// them is set.
std::filesystem::path default_data_dir();
// The history database of a data folder: DIR/history.sqlite3.
std::filesystem::path history_file(const std::filesystem::path& data_dir);

// One history database. Safe to call from several threads at once (one connection, its calls taken in
// turn), and several processes may open the same file (write-ahead logging, waiting out each other's locks).
// Every method throws canvas::Error naming the file and SQLite's reason when the database fails.
class History {
 public:
  // Opens the database at `file`, creating it (and its folder) when missing. Throws canvas::Error naming the
  // file when it cannot be opened or created, is not a SQLite database, or was written by a newer canvas
  // (a higher schema version).
  explicit History(const std::filesystem::path& file);
  ~History();
  History(History&&) noexcept;
  History& operator=(History&&) noexcept;

  const std::filesystem::path& file() const;

  // Records a new job. Throws canvas::Error when a job with its id is recorded already or its state is not
  // one of kJobStates.
  void add(const HistoryEntry& entry);
  // Rewrites the recorded job with `entry.id` to read as `entry` (its state, report, outputs, error and
  // timestamps as they are now). Throws canvas::Error when no such job is recorded.
  void update(const HistoryEntry& entry);
  std::optional<HistoryEntry> find(const std::string& id) const;
  std::vector<HistoryEntry> list(const HistoryQuery& query = {}) const;
  // Forgets the job `id` and deletes its images from the disk (any already gone are skipped). Returns false
  // when no such job is recorded. Throws canvas::Error, changing nothing, when the job is queued or running
  // (its images are still to come) or when an image cannot be deleted.
  bool remove(const std::string& id);
  // For a server starting up: every job still queued or running belonged to a server that stopped, so it is
  // marked failed with kInterruptedJobError (its timestamps stay: when that server stopped is not known).
  // Returns how many.
  int mark_interrupted();

 private:
  struct Database;
  std::unique_ptr<Database> database_;
};

}  // namespace canvas::app
