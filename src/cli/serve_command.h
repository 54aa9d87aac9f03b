// `canvas serve`: the HTTP server (app/service.h) from the command line.
#pragma once

#include <CLI/CLI.hpp>
#include <optional>
#include <string>
#include <vector>

namespace canvas::cli {

struct ServeOptions {
  std::string host = "127.0.0.1";
  int port = 7860;
  std::vector<std::string> model_folders;
  std::optional<std::string> lora_folder;
  std::optional<std::string> data_dir;
  std::optional<std::string> token;
  std::string device = "cpu";
  std::optional<std::string> precision;
  std::optional<double> vram_budget_gib;
  std::optional<double> ram_budget_gib;
  std::optional<double> pin_budget_gib;
  int preview_every = 5;
  int max_loaded_models = 4;
  double max_body_mib = 64;
  int64_t max_image_pixels = 4096 * 4096;
  std::optional<std::string> queue;  // redis://... : a cluster's worker
  std::optional<std::string> worker_name;
  double lease_s = 30;
};

void add_serve_command(CLI::App& app, ServeOptions& options);
// Serves until SIGINT or SIGTERM; returns the exit code. Throws canvas::Error when it cannot start.
int run_serve(const ServeOptions& options);

}  // namespace canvas::cli
