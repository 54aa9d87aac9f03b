// canvas: the command-line entry point. Exit codes: 0 success, 1 a failed job, CLI11's 100-114 a command
// line that could not be parsed, 130 cancelled (SIGINT or SIGTERM), 3 an image written without its profile.
#include <CLI/CLI.hpp>
#include <cstdio>
#include <exception>

#include "cli/cancellation_signals.h"
#include "cli/edit_command.h"
#include "cli/generate_command.h"
#include "cli/history_command.h"
#include "cli/inpaint_command.h"
#include "cli/serve_command.h"
#include "util/error.h"

int main(int argc, char** argv) {
  CLI::App app{"Ethereal Canvas: image generation with the Qwen-Image family"};
  app.set_version_flag("--version", std::string("ethereal-canvas ") + CANVAS_VERSION);
  app.require_subcommand(1);
  canvas::cli::GenerateOptions generate_options;
  canvas::cli::add_generate_command(app, generate_options);
  canvas::cli::EditOptions edit_options;
  canvas::cli::add_edit_command(app, edit_options);
  canvas::cli::InpaintOptions inpaint_options;
  canvas::cli::add_inpaint_command(app, inpaint_options);
  canvas::cli::ServeOptions serve_options;
  canvas::cli::add_serve_command(app, serve_options);
  canvas::cli::HistoryOptions history_options;
  canvas::cli::add_history_command(app, history_options);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& error) {
    return app.exit(error);
  }
  try {
    canvas::cli::install_cancellation_signal_handlers();
    if (app.got_subcommand("generate")) return canvas::cli::run_generate(generate_options);
    if (app.got_subcommand("edit")) return canvas::cli::run_edit(edit_options);
    if (app.got_subcommand("inpaint")) return canvas::cli::run_inpaint(inpaint_options);
    if (app.got_subcommand("serve")) return canvas::cli::run_serve(serve_options);
    if (app.got_subcommand("history")) return canvas::cli::run_history(history_options);
  } catch (const canvas::CancelledError&) {
    std::fprintf(stderr, "cancelled\n");
    return canvas::cli::kCancelledExitCode;
  } catch (const canvas::OutOfMemoryError& error) {
    std::fprintf(stderr, "error: out of memory: %s\n", error.what());
  } catch (const std::exception& error) {
    std::fprintf(stderr, "error: %s\n", error.what());
  }
  return 1;
}
