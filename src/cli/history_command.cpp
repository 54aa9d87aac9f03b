#include "cli/history_command.h"

#include <utf8proc.h>

#include <algorithm>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <limits>
#include <numeric>
#include <vector>

#include "app/history.h"
#include "tokenizer/unicode.h"
#include "util/atomic_file.h"
#include "util/error.h"

namespace canvas::cli {

void add_history_command(CLI::App& app, HistoryOptions& options) {
  CLI::App* history =
      app.add_subcommand("history", "Look through the jobs `canvas serve` ran, recorded in its data folder");
  history->require_subcommand(1);
  const auto add_data_option = [&options](CLI::App& command) {
    command
        .add_option("--data", options.data_dir,
                    "The server's data folder, holding history.sqlite3 (default: $CANVAS_DATA_DIR, else "
                    "$XDG_DATA_HOME/ethereal-canvas, else ~/.local/share/ethereal-canvas)")
        ->type_name("DIR");
  };

  CLI::App* list = history->add_subcommand("list", "A table of the newest jobs");
  add_data_option(*list);
  list->add_option("--limit", options.limit, "How many jobs, newest first (0: every job)")
      ->type_name("N")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  std::vector<std::string> states(std::begin(app::kJobStates), std::end(app::kJobStates));
  list->add_option("--state", options.state, "Only the jobs in this state")
      ->type_name("STATE")
      ->check(CLI::IsMember(states));
  list->add_flag("--json", options.json, "Print the jobs as a JSON array, every field, instead of the table");
  list->callback([&options] { options.action = HistoryAction::List; });

  CLI::App* show = history->add_subcommand("show", "Every field of one job, as JSON");
  show->add_option("id", options.id, "The job's id")->required();
  add_data_option(*show);
  show->callback([&options] { options.action = HistoryAction::Show; });

  CLI::App* exported = history->add_subcommand("export", "Every job as JSON Lines, oldest first");
  add_data_option(*exported);
  exported
      ->add_option("--output", options.output,
                   "The file to write (replaced whole, once complete); default: the standard output")
      ->type_name("FILE");
  exported->callback([&options] { options.action = HistoryAction::Export; });
}

namespace {

std::filesystem::path data_dir(const HistoryOptions& options) {
  return options.data_dir ? std::filesystem::path(*options.data_dir) : app::default_data_dir();
}

// The history of the data folder, which must exist: reading it should not leave an empty one behind.
app::History open_history(const std::filesystem::path& folder) {
  const std::filesystem::path file = app::history_file(folder);
  std::error_code ignored;
  check(std::filesystem::exists(file, ignored),
        "no history at " + folder.string() + ": run `canvas serve` first");
  return app::History(file);
}

// JSON text, with any invalid UTF-8 a recorded string holds replaced rather than refused.
std::string json_text(const nlohmann::json& value, int indent) {
  return value.dump(indent, ' ', false, nlohmann::json::error_handler_t::replace);
}

void write_stdout(const std::string& text) {
  check(std::fwrite(text.data(), 1, text.size(), stdout) == text.size() && std::fflush(stdout) == 0,
        "cannot write to the standard output");
}

// A table cell: one line of at most `max_width` columns of a terminal, cut with "…", control characters
// shown as spaces and invalid UTF-8 replaced.
struct Cell {
  std::string text;
  int width = 0;  // in terminal columns: wide (CJK) characters take two, combining marks none
};

Cell cell(std::string_view text, int max_width = std::numeric_limits<int>::max()) {
  std::vector<char32_t> code_points = unicode::decode_utf8(unicode::replace_invalid_utf8(text));
  std::vector<int> widths;
  for (char32_t& code_point : code_points) {
    if (code_point < 0x20 || code_point == 0x7f) code_point = U' ';
    widths.push_back(utf8proc_charwidth(static_cast<utf8proc_int32_t>(code_point)));
  }
  const int total = std::accumulate(widths.begin(), widths.end(), 0);
  const bool cut = total > max_width;
  Cell result;
  for (size_t i = 0; i < code_points.size(); ++i) {
    if (cut && result.width + widths[i] > max_width - 1) break;  // leaving a column for the "…"
    unicode::append_utf8(result.text, code_points[i]);
    result.width += widths[i];
  }
  if (cut) {
    result.text += "…";
    result.width += 1;
  }
  return result;
}

// Local time to the second, "2026-12-07 19:44:53"; "-" for 0 (not yet).
std::string local_time(double unix_seconds) {
  if (unix_seconds <= 0) return "-";
  const std::time_t time = static_cast<std::time_t>(unix_seconds);
  std::tm parts{};
  localtime_r(&time, &parts);
  char text[32];
  std::strftime(text, sizeof(text), "%Y-%m-%d %H:%M:%S", &parts);
  return text;
}

// How long the job ran, "12.3"; "-" until it has finished.
std::string run_seconds(const app::HistoryEntry& entry) {
  if (entry.started_at <= 0 || entry.finished_at <= 0) return "-";
  char text[32];
  std::snprintf(text, sizeof(text), "%.1f", entry.finished_at - entry.started_at);
  return text;
}

std::string prompt_of(const app::HistoryEntry& entry) {
  const auto prompt = entry.parameters.find("prompt");
  return prompt != entry.parameters.end() && prompt->is_string() ? prompt->get<std::string>() : "";
}

// The rows as a table, each column as wide as its widest cell, the last one unpadded.
std::string table(const std::vector<std::vector<Cell>>& rows) {
  std::vector<int> widths(rows.front().size(), 0);
  for (const std::vector<Cell>& row : rows)
    for (size_t column = 0; column < row.size(); ++column)
      widths[column] = std::max(widths[column], row[column].width);
  std::string text;
  for (const std::vector<Cell>& row : rows) {
    for (size_t column = 0; column < row.size(); ++column) {
      text += row[column].text;
      if (column + 1 < row.size()) text += std::string(widths[column] - row[column].width + 2, ' ');
    }
    text += '\n';
  }
  return text;
}

int list_jobs(const HistoryOptions& options) {
  const std::filesystem::path folder = data_dir(options);
  const app::History history = open_history(folder);
  app::HistoryQuery query{.state = options.state};
  // One more than shown tells whether there are more.
  if (options.limit > 0) query.limit = options.limit + 1;
  std::vector<app::HistoryEntry> entries = history.list(query);
  const bool more = options.limit > 0 && static_cast<int64_t>(entries.size()) > options.limit;
  if (more) entries.pop_back();

  if (options.json) {
    nlohmann::json array = nlohmann::json::array();
    for (const app::HistoryEntry& entry : entries) array.push_back(app::history_entry_json(entry));
    write_stdout(json_text(array, 2) + "\n");
    return 0;
  }
  if (entries.empty()) {
    write_stdout("no " + (options.state ? *options.state + " " : std::string()) + "jobs in the history at " +
                 folder.string() + "\n");
    return 0;
  }
  std::vector<std::vector<Cell>> rows = {{cell("ID"), cell("CREATED"), cell("STATE"), cell("TASK"),
                                          cell("MODEL"), cell("PROMPT"), cell("SECONDS")}};
  for (const app::HistoryEntry& entry : entries) {
    rows.push_back({cell(entry.id), cell(local_time(entry.created_at)), cell(entry.state), cell(entry.task),
                    cell(entry.model), cell(prompt_of(entry), 40), cell(run_seconds(entry))});
  }
  std::string text = table(rows);
  if (more) text += "(the newest " + std::to_string(options.limit) + "; --limit 0 lists every job)\n";
  write_stdout(text);
  return 0;
}

int show_job(const HistoryOptions& options) {
  const std::filesystem::path folder = data_dir(options);
  const std::optional<app::HistoryEntry> entry = open_history(folder).find(options.id);
  check(entry.has_value(), "no job " + options.id + " in the history at " + folder.string());
  write_stdout(json_text(app::history_entry_json(*entry), 2) + "\n");
  return 0;
}

int export_jobs(const HistoryOptions& options) {
  std::vector<app::HistoryEntry> entries = open_history(data_dir(options)).list();
  std::reverse(entries.begin(), entries.end());
  std::string lines;
  for (const app::HistoryEntry& entry : entries) {
    lines += json_text(app::history_entry_json(entry), -1) + "\n";
  }
  if (!options.output) {
    write_stdout(lines);
    return 0;
  }
  write_file_atomically(*options.output, lines);
  std::fprintf(stderr, "Exported %zu jobs to %s\n", entries.size(), options.output->c_str());
  return 0;
}

}  // namespace

int run_history(const HistoryOptions& options) {
  switch (options.action) {
    case HistoryAction::List:
      return list_jobs(options);
    case HistoryAction::Show:
      return show_job(options);
    case HistoryAction::Export:
      return export_jobs(options);
  }
  return 1;
}

}  // namespace canvas::cli
