#include "app/history.h"

#include <sqlite3.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <system_error>
#include <tuple>

#include "util/error.h"

namespace canvas::app {

namespace {

// The layout this canvas writes, in PRAGMA user_version. A database of a higher version came from a newer
// canvas, whose layout this one cannot know.
constexpr int kSchemaVersion = 1;

// Every job in one table; the JSON fields and the lists (as JSON arrays) are stored as text.
constexpr const char* kCreateSchema = R"sql(
CREATE TABLE jobs (
  id TEXT NOT NULL UNIQUE,
  task TEXT NOT NULL,
  model TEXT NOT NULL,
  state TEXT NOT NULL CHECK (state IN ('queued', 'running', 'done', 'failed', 'cancelled')),
  priority INTEGER NOT NULL,
  parameters TEXT NOT NULL,
  report TEXT NOT NULL,
  input_sha256 TEXT NOT NULL,
  outputs TEXT NOT NULL,
  error TEXT NOT NULL,
  created_at REAL NOT NULL,
  started_at REAL NOT NULL,
  finished_at REAL NOT NULL
);
CREATE INDEX jobs_by_creation ON jobs (created_at);
CREATE INDEX jobs_by_state ON jobs (state);
)sql";

constexpr const char* kColumns =
    "id, task, model, state, priority, parameters, report, input_sha256, outputs, error, created_at, "
    "started_at, finished_at";

// Text for a column: JSON as it was written, with any invalid UTF-8 (which JSON cannot hold) replaced.
std::string json_text(const nlohmann::json& value) {
  return value.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

// SQLite's message for the connection's last error, with the system's reason where the file system failed:
// "unable to open database file (Permission denied)".
std::string sqlite_reason(sqlite3* connection) {
  std::string reason = sqlite3_errmsg(connection);
  const int primary_code = sqlite3_extended_errcode(connection) & 0xff;
  const int system_error = sqlite3_system_errno(connection);
  if ((primary_code == SQLITE_CANTOPEN || primary_code == SQLITE_IOERR) && system_error != 0) {
    reason += " (" + std::string(std::strerror(system_error)) + ")";
  }
  return reason;
}

}  // namespace

// The connection and its prepared statements; `mutex` takes the calls of several threads in turn.
struct History::Database {
  // A prepared statement, reset and unbound when a use of it ends so that it holds no lock in between.
  class Statement {
   public:
    Statement(Database& database, const std::string& sql) : database_(database) {
      database_.check(sqlite3_prepare_v3(database_.connection.get(), sql.c_str(), -1,
                                         SQLITE_PREPARE_PERSISTENT, &statement_, nullptr),
                      "preparing " + sql);
    }
    ~Statement() { sqlite3_finalize(statement_); }
    Statement(const Statement&) = delete;
    Statement& operator=(const Statement&) = delete;

    void bind(int index, std::string_view text) {
      database_.check(
          sqlite3_bind_text(statement_, index, text.data(), static_cast<int>(text.size()), SQLITE_TRANSIENT),
          "binding a value");
    }
    void bind(int index, int64_t value) {
      database_.check(sqlite3_bind_int64(statement_, index, value), "binding a value");
    }
    void bind(int index, double value) {
      database_.check(sqlite3_bind_double(statement_, index, value), "binding a value");
    }
    // NULL for none.
    void bind_optional(int index, const std::optional<std::string>& text) {
      if (text) return bind(index, std::string_view(*text));
      database_.check(sqlite3_bind_null(statement_, index), "binding a value");
    }
    // Steps once: SQLITE_ROW with a row to read, SQLITE_DONE when done, or the error.
    int step() { return sqlite3_step(statement_); }
    // Steps once: true with a row to read, false when done; throws naming `what` on an error.
    bool step(const std::string& what) {
      const int result = step();
      if (result == SQLITE_ROW) return true;
      if (result != SQLITE_DONE) database_.check(result, what);
      return false;
    }
    void reset() {
      sqlite3_reset(statement_);
      sqlite3_clear_bindings(statement_);
    }

    std::string text(int column) const {
      const auto* bytes = reinterpret_cast<const char*>(sqlite3_column_text(statement_, column));
      return bytes ? std::string(bytes, static_cast<size_t>(sqlite3_column_bytes(statement_, column))) : "";
    }
    int64_t integer(int column) const { return sqlite3_column_int64(statement_, column); }
    double real(int column) const { return sqlite3_column_double(statement_, column); }

   private:
    Database& database_;
    sqlite3_stmt* statement_ = nullptr;
  };

  // Resets the statement when the scope that uses it ends, however it ends.
  class Use {
   public:
    explicit Use(Statement& statement) : statement_(statement) {}
    ~Use() { statement_.reset(); }
    Use(const Use&) = delete;
    Use& operator=(const Use&) = delete;

   private:
    Statement& statement_;
  };

  struct Close {
    void operator()(sqlite3* handle) const { sqlite3_close_v2(handle); }
  };

  explicit Database(std::filesystem::path path);

  [[noreturn]] void fail(const std::string& what) const {
    throw Error("history database " + file.string() + ": " + what);
  }
  // Throws canvas::Error naming the file, what was being done and SQLite's reason, unless `result` is OK.
  void check(int result, const std::string& what) const {
    if (result != SQLITE_OK) fail(what + ": " + sqlite_reason(connection.get()));
  }
  void execute(const std::string& sql, const std::string& what) {
    check(sqlite3_exec(connection.get(), sql.c_str(), nullptr, nullptr, nullptr), what);
  }
  // The first value of the first row a PRAGMA answers, as text; `what` names it in an error.
  std::string pragma(const std::string& sql, const std::string& what) {
    std::optional<std::string> answer;
    const auto keep_first = [](void* out, int columns, char** values, char**) {
      auto& first = *static_cast<std::optional<std::string>*>(out);
      if (!first && columns > 0 && values[0]) first = values[0];
      return 0;
    };
    check(sqlite3_exec(connection.get(), sql.c_str(), keep_first, &answer, nullptr), what);
    if (!answer) fail(what + ": " + sql + " gave no answer");
    return *answer;
  }
  void create_or_check_schema();

  nlohmann::json parse_json(const Statement& row, int column, const char* name) const;
  HistoryEntry read_entry(const Statement& row) const;
  // Binds every field of `entry` to `statement`'s parameters 1 to 13, in kColumns' order.
  void bind_entry(Statement& statement, const HistoryEntry& entry) const;

  std::filesystem::path file;
  std::mutex mutex;
  // Declared before the statements, so that they are finalized before it closes.
  std::unique_ptr<sqlite3, Close> connection;
  std::unique_ptr<Statement> insert, rewrite, select_one, select_many, interrupt, erase;
};

History::Database::Database(std::filesystem::path path) : file(std::move(path)) {
  if (file.has_parent_path()) {
    std::error_code error;
    std::filesystem::create_directories(file.parent_path(), error);
    if (error)
      throw Error("cannot create the folder of the history database " + file.string() + ": " +
                  error.message());
  }
  sqlite3* opened = nullptr;
  const int result =
      sqlite3_open_v2(file.c_str(), &opened, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, nullptr);
  connection.reset(opened);
  if (result != SQLITE_OK) {
    throw Error("cannot open the history database " + file.string() + ": " +
                (opened ? sqlite_reason(opened) : std::string(sqlite3_errstr(result))));
  }
  sqlite3_extended_result_codes(connection.get(), 1);
  // Another process (a second server, `canvas history`) may hold the lock for a moment.
  sqlite3_busy_timeout(connection.get(), 10000);
  // The first read of the file: here a file that is not a database is found out.
  const std::string journal_mode = pragma("PRAGMA journal_mode = WAL", "cannot read it");
  if (journal_mode != "wal")
    fail("write-ahead logging could not be turned on (journal mode " + journal_mode + ")");
  // With write-ahead logging, a commit survives the process crashing without a sync of its own.
  execute("PRAGMA synchronous = NORMAL", "setting synchronous");
  create_or_check_schema();
  const std::string select = std::string("SELECT ") + kColumns + " FROM jobs ";
  insert = std::make_unique<Statement>(
      *this, std::string("INSERT INTO jobs (") + kColumns +
                 ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)");
  rewrite = std::make_unique<Statement>(
      *this,
      "UPDATE jobs SET task = ?2, model = ?3, state = ?4, priority = ?5, parameters = ?6, report = ?7, "
      "input_sha256 = ?8, outputs = ?9, error = ?10, created_at = ?11, started_at = ?12, finished_at = ?13 "
      "WHERE id = ?1");
  select_one = std::make_unique<Statement>(*this, select + "WHERE id = ?1");
  // An absent filter is bound as NULL; LIMIT -1 is no limit. Of equal creation times, the job added later
  // comes first.
  select_many = std::make_unique<Statement>(
      *this, select +
                 "WHERE (?1 IS NULL OR state = ?1) AND (?2 IS NULL OR model = ?2) "
                 "ORDER BY created_at DESC, rowid DESC LIMIT ?3 OFFSET ?4");
  interrupt = std::make_unique<Statement>(
      *this, "UPDATE jobs SET state = 'failed', error = ?1 WHERE state IN ('queued', 'running')");
  erase = std::make_unique<Statement>(*this, "DELETE FROM jobs WHERE id = ?1");
}

void History::Database::create_or_check_schema() {
  // One process creates the schema; another opening the file at the same time waits, then finds it made.
  execute("BEGIN IMMEDIATE", "starting the schema's transaction");
  try {
    const int version = std::stoi(pragma("PRAGMA user_version", "reading the schema version"));
    if (version > kSchemaVersion) {
      fail("schema version " + std::to_string(version) +
           " was written by a newer canvas; this one reads up to " + std::to_string(kSchemaVersion) +
           " (upgrade canvas, or use another data folder)");
    }
    if (version == 0) {
      execute(kCreateSchema, "creating the jobs table");
      execute("PRAGMA user_version = " + std::to_string(kSchemaVersion), "setting the schema version");
    }
    execute("COMMIT", "committing the schema");
  } catch (...) {
    sqlite3_exec(connection.get(), "ROLLBACK", nullptr, nullptr, nullptr);
    throw;
  }
}

nlohmann::json History::Database::parse_json(const Statement& row, int column, const char* name) const {
  const std::string text = row.text(column);
  nlohmann::json value = nlohmann::json::parse(text, nullptr, false);
  if (value.is_discarded()) fail("job " + row.text(0) + " has malformed " + name + ": " + text.substr(0, 80));
  return value;
}

HistoryEntry History::Database::read_entry(const Statement& row) const {
  HistoryEntry entry;
  entry.id = row.text(0);
  entry.task = row.text(1);
  entry.model = row.text(2);
  entry.state = row.text(3);
  entry.priority = static_cast<int>(row.integer(4));
  entry.parameters = parse_json(row, 5, "parameters");
  entry.report = parse_json(row, 6, "report");
  for (auto [column, name, strings] :
       {std::tuple{7, "input_sha256", &entry.input_sha256}, std::tuple{8, "outputs", &entry.outputs}}) {
    const nlohmann::json list = parse_json(row, column, name);
    const bool all_strings = list.is_array() && std::all_of(list.begin(), list.end(), [](const auto& item) {
                               return item.is_string();
                             });
    if (!all_strings) fail("job " + entry.id + ": " + name + " is not a list of strings: " + list.dump());
    *strings = list.get<std::vector<std::string>>();
  }
  entry.error = row.text(9);
  entry.created_at = row.real(10);
  entry.started_at = row.real(11);
  entry.finished_at = row.real(12);
  return entry;
}

void History::Database::bind_entry(Statement& statement, const HistoryEntry& entry) const {
  if (!is_job_state(entry.state)) {
    fail("job " + entry.id + " has no state '" + entry.state +
         "': use queued, running, done, failed or cancelled");
  }
  statement.bind(1, std::string_view(entry.id));
  statement.bind(2, std::string_view(entry.task));
  statement.bind(3, std::string_view(entry.model));
  statement.bind(4, std::string_view(entry.state));
  statement.bind(5, int64_t{entry.priority});
  statement.bind(6, json_text(entry.parameters));
  statement.bind(7, json_text(entry.report));
  statement.bind(8, json_text(nlohmann::json(entry.input_sha256)));
  statement.bind(9, json_text(nlohmann::json(entry.outputs)));
  statement.bind(10, std::string_view(entry.error));
  statement.bind(11, entry.created_at);
  statement.bind(12, entry.started_at);
  statement.bind(13, entry.finished_at);
}

bool is_job_state(std::string_view state) {
  return std::find(std::begin(kJobStates), std::end(kJobStates), state) != std::end(kJobStates);
}

nlohmann::json history_entry_json(const HistoryEntry& entry) {
  return {{"id", entry.id},
          {"task", entry.task},
          {"model", entry.model},
          {"state", entry.state},
          {"priority", entry.priority},
          {"parameters", entry.parameters},
          {"report", entry.report},
          {"input_sha256", entry.input_sha256},
          {"outputs", entry.outputs},
          {"error", entry.error},
          {"created_at", entry.created_at},
          {"started_at", entry.started_at},
          {"finished_at", entry.finished_at}};
}

std::filesystem::path default_data_dir() {
  if (const char* dir = std::getenv("CANVAS_DATA_DIR"); dir && *dir) return dir;
  // The XDG spec has relative values ignored.
  if (const char* xdg = std::getenv("XDG_DATA_HOME"); xdg && std::filesystem::path(xdg).is_absolute()) {
    return std::filesystem::path(xdg) / "ethereal-canvas";
  }
  const char* home = std::getenv("HOME");
  check(home && *home, "no data folder: set CANVAS_DATA_DIR (or HOME), or name one with --data");
  return std::filesystem::path(home) / ".local" / "share" / "ethereal-canvas";
}

std::filesystem::path history_file(const std::filesystem::path& data_dir) {
  return data_dir / "history.sqlite3";
}

History::History(const std::filesystem::path& file) : database_(std::make_unique<Database>(file)) {}
History::~History() = default;
History::History(History&&) noexcept = default;
History& History::operator=(History&&) noexcept = default;

const std::filesystem::path& History::file() const {
  return database_->file;
}

void History::add(const HistoryEntry& entry) {
  std::lock_guard lock(database_->mutex);
  Database::Statement& insert = *database_->insert;
  Database::Use use(insert);
  database_->bind_entry(insert, entry);
  const int result = insert.step();
  if (result == SQLITE_CONSTRAINT_UNIQUE) database_->fail("job " + entry.id + " is recorded already");
  if (result != SQLITE_DONE) database_->check(result, "recording job " + entry.id);
}

void History::update(const HistoryEntry& entry) {
  std::lock_guard lock(database_->mutex);
  Database::Statement& rewrite = *database_->rewrite;
  Database::Use use(rewrite);
  database_->bind_entry(rewrite, entry);
  rewrite.step("updating job " + entry.id);
  if (sqlite3_changes(database_->connection.get()) == 0) database_->fail("no job " + entry.id + " to update");
}

std::optional<HistoryEntry> History::find(const std::string& id) const {
  std::lock_guard lock(database_->mutex);
  Database::Statement& select = *database_->select_one;
  Database::Use use(select);
  select.bind(1, std::string_view(id));
  if (!select.step("looking up job " + id)) return std::nullopt;
  return database_->read_entry(select);
}

std::vector<HistoryEntry> History::list(const HistoryQuery& query) const {
  std::lock_guard lock(database_->mutex);
  Database::Statement& select = *database_->select_many;
  Database::Use use(select);
  select.bind_optional(1, query.state);
  select.bind_optional(2, query.model);
  select.bind(3, query.limit.value_or(-1));
  select.bind(4, query.offset);
  std::vector<HistoryEntry> entries;
  while (select.step("listing jobs")) entries.push_back(database_->read_entry(select));
  return entries;
}

bool History::remove(const std::string& id) {
  std::lock_guard lock(database_->mutex);
  std::optional<HistoryEntry> entry;
  {
    Database::Statement& select = *database_->select_one;
    Database::Use use(select);
    select.bind(1, std::string_view(id));
    if (!select.step("looking up job " + id)) return false;
    entry = database_->read_entry(select);
  }
  check(entry->state != "queued" && entry->state != "running",
        "job " + id + " is " + entry->state + ": cancel it before removing it");
  // The images go first, so that a failure leaves the entry that still names them.
  for (const std::string& output : entry->outputs) {
    std::error_code error;
    std::filesystem::remove(output, error);
    check(!error, "cannot delete " + output + ", an image of job " + id + ": " + error.message());
  }
  Database::Statement& erase = *database_->erase;
  Database::Use use(erase);
  erase.bind(1, std::string_view(id));
  erase.step("removing job " + id);
  return true;
}

int History::mark_interrupted() {
  std::lock_guard lock(database_->mutex);
  Database::Statement& interrupt = *database_->interrupt;
  Database::Use use(interrupt);
  interrupt.bind(1, kInterruptedJobError);
  interrupt.step("marking interrupted jobs failed");
  return sqlite3_changes(database_->connection.get());
}

}  // namespace canvas::app
