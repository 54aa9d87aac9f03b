#include "cli/serve_command.h"

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <thread>

#include "app/service.h"
#include "cli/cancellation_signals.h"
#include "cli/job_command.h"

namespace canvas::cli {

void add_serve_command(CLI::App& app, ServeOptions& options) {
  CLI::App* command = app.add_subcommand(
      "serve", "Serve the native, OpenAI and A1111 HTTP APIs, keeping models loaded between jobs");
  command->add_option("--host", options.host, "Address to listen on; any but loopback needs --token")
      ->capture_default_str();
  command->add_option("--port", options.port, "Port to listen on (0: any free one)")
      ->check(CLI::Range(0, 65535))
      ->capture_default_str();
  command
      ->add_option("--models", options.model_folders,
                   "A folder whose entries (diffusers folders, Hugging Face cache entries) are the models "
                   "offered, each by its name; repeat for several")
      ->required();
  command->add_option("--loras", options.lora_folder,
                      "A folder of LoRA .safetensors files requests may name");
  command->add_option("--data", options.data_dir,
                      "Where the history (history.sqlite3) and images go (default $CANVAS_DATA_DIR, else "
                      "~/.local/share/ethereal-canvas)");
  command->add_option("--token", options.token,
                      "Require \"Authorization: Bearer TOKEN\" of every client (default $CANVAS_TOKEN)");
  command->add_option("--device", options.device, "cpu, cuda or cuda:N")->capture_default_str();
  command->add_option("--precision", options.precision,
                      "Activation precision: f32, bf16 or f16 (default: f32 on the CPU, bf16 on a GPU)");
  command->add_option("--vram-budget", options.vram_budget_gib, "GiB of device memory jobs may plan for");
  command->add_option("--ram-budget", options.ram_budget_gib, "GiB of host memory jobs may plan for");
  command->add_option("--pin-budget", options.pin_budget_gib,
                      "GiB of checkpoint pages streamed weights may lock in place (0: off)");
  command->add_option("--preview-every", options.preview_every, "A preview image every N steps (0: none)")
      ->check(CLI::Range(0, 1000))
      ->capture_default_str();
  command->add_option("--max-loaded-models", options.max_loaded_models, "Models kept loaded at once")
      ->check(CLI::Range(1, 64))
      ->capture_default_str();
  command->add_option("--max-body-mib", options.max_body_mib, "Largest request body, uploads included")
      ->check(CLI::Range(1.0, 4096.0))
      ->capture_default_str();
  command->add_option("--max-image-pixels", options.max_image_pixels, "Largest uploaded picture, in pixels")
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 28))
      ->capture_default_str();
  command->add_option(
      "--queue", options.queue,
      "Join a cluster: its jobs and history on the Redis broker at redis://[:PASSWORD@]HOST:PORT/DB "
      "(default $CANVAS_QUEUE; the password may come from $CANVAS_REDIS_PASSWORD instead)");
  command->add_option("--worker-name", options.worker_name,
                      "This worker's name in the cluster (default HOST:PORT)");
  command
      ->add_option("--lease", options.lease_s,
                   "Seconds a cluster worker may be silent before its running job is given to another")
      ->check(CLI::Range(1.0, 3600.0))
      ->capture_default_str();
}

int run_serve(const ServeOptions& options) {
  app::ServiceOptions service;
  for (const std::string& folder : options.model_folders) service.model_folders.emplace_back(folder);
  if (options.lora_folder) service.lora_folder = *options.lora_folder;
  service.data_dir = options.data_dir ? std::filesystem::path(*options.data_dir) : app::default_data_dir();
  service.device = parse_device(options.device);
  prepare_device(service.device);
  service.precision = parse_precision(options.precision);
  service.max_loaded_models = static_cast<size_t>(options.max_loaded_models);
  service.runner.device_budget_bytes = budget_bytes(options.vram_budget_gib, "--vram-budget");
  service.runner.host_budget_bytes = budget_bytes(options.ram_budget_gib, "--ram-budget");
  service.runner.page_lock_budget_bytes = pin_budget_bytes(options.pin_budget_gib);
  service.runner.preview_every = options.preview_every;
  service.server.host = options.host;
  service.server.port = options.port;
  service.server.token = options.token;
  if (!service.server.token) {
    if (const char* token = std::getenv("CANVAS_TOKEN"); token && *token) service.server.token = token;
  }
  service.server.max_body_bytes = static_cast<size_t>(options.max_body_mib * 1024 * 1024);
  service.server.limits.max_image_pixels = options.max_image_pixels;
  service.queue_url = options.queue;
  if (!service.queue_url) {
    if (const char* queue = std::getenv("CANVAS_QUEUE"); queue && *queue) service.queue_url = queue;
  }
  if (options.worker_name) service.worker.name = *options.worker_name;
  service.worker.lease = std::chrono::milliseconds(static_cast<int64_t>(options.lease_s * 1000));

  app::Service server(service);
  for (const std::string& skipped : server.models().skipped())
    std::fprintf(stderr, "skipped %s\n", skipped.c_str());
  std::string ids;
  for (const app::ModelEntry& entry : server.models().models()) ids += (ids.empty() ? "" : ", ") + entry.id;
  if (server.interrupted_jobs() > 0)
    std::fprintf(stderr, "%d job(s) of the last run did not finish: marked failed\n",
                 server.interrupted_jobs());
  // Only the redacted address is ever shown: the URL may hold the broker's password.
  if (service.queue_url)
    std::fprintf(stderr, "Worker of the cluster on %s\n",
                 app::parse_redis_url(*service.queue_url).redacted().c_str());
  std::fprintf(stderr, "Serving %s on http://%s:%d (data in %s); Ctrl-C stops\n",
               ids.empty() ? "no models" : ids.c_str(), options.host.c_str(), server.port(),
               service.data_dir.c_str());
  // The signal handlers only set a flag; this thread turns it into a stop.
  std::thread watcher([&server] {
    while (!cli_cancellation().requested()) std::this_thread::sleep_for(std::chrono::milliseconds(100));
    server.stop();
  });
  server.run();
  cli_cancellation().request();
  watcher.join();
  std::fprintf(stderr, "stopped\n");
  return 0;
}

}  // namespace canvas::cli
