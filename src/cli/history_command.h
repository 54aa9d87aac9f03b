// `canvas history`: what the server's job history (app/history.h) recorded, read from the command line:
// `list` a table of the newest jobs, `show` one job in full, `export` every job as JSON Lines.
#pragma once

#include <CLI/CLI.hpp>
#include <cstdint>
#include <optional>
#include <string>

namespace canvas::cli {

enum class HistoryAction { List, Show, Export };

struct HistoryOptions {
  HistoryAction action = HistoryAction::List;  // set by the subcommand given
  std::optional<std::string> data_dir;         // default: app::default_data_dir(), as `canvas serve`'s
  int64_t limit = 20;                          // list: 0 lists every job
  std::optional<std::string> state;            // list: only jobs in this state
  bool json = false;                           // list: a JSON array instead of the table
  std::string id;                              // show
  std::optional<std::string> output;           // export: the file; default the standard output
};

void add_history_command(CLI::App& app, HistoryOptions& options);
// Runs the subcommand; returns the exit code. Throws canvas::Error when the history cannot be read (a
// missing database says to run `canvas serve` first) or show's job is not in it.
int run_history(const HistoryOptions& options);

}  // namespace canvas::cli
