// SIMULATION, not the product: how far one Redis broker carries a cluster of `canvas serve` workers. It
// forks N worker processes that speak the cluster's real protocol (app/redis_queue.h: claim, start, events,
// idempotent completion with a PNG-sized payload, ack, heartbeats) but whose "jobs" are a sleep of --job-ms
// with a progress event every tenth of it: no model runs. The parent submits the jobs, follows the feed
// and measures the broker's round trip under that load, the jobs' overhead beyond their sleep, and jobs/s.
//
// Usage: canvas-bench-cluster-sim redis://127.0.0.1:PORT/0 [--workers 50] [--jobs 500] [--job-ms 1000]
//        [--png-kib 64]
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string>
#include <thread>
#include <vector>

#include "app/redis_queue.h"

namespace {

using namespace canvas::app;
using Clock = std::chrono::steady_clock;

volatile sig_atomic_t stop_requested = 0;

double percentile(std::vector<double> values, double fraction) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  return values[static_cast<size_t>(fraction * static_cast<double>(values.size() - 1))];
}

// One simulated worker: the protocol of app/redis_worker.cpp with a sleep for the device's work.
void simulated_worker(const RedisUrl& url, const std::string& name, int job_ms, const std::string& png) {
  signal(SIGTERM, [](int) { stop_requested = 1; });
  RedisClient client(url);
  RedisJobQueue queue(client);
  const auto lease = std::chrono::seconds(30);
  while (!stop_requested) {
    queue.heartbeat(name, {{"host", "simulated"}, {"models", {"sim"}}}, lease);
    const std::optional<RedisClaim> claim = queue.claim(name, {"sim"}, lease, std::chrono::milliseconds(200));
    if (!claim) continue;
    if (!queue.start(claim->job_id, name)) {
      queue.ack(*claim);
      continue;
    }
    for (int step = 1; step <= 10; ++step) {
      std::this_thread::sleep_for(std::chrono::milliseconds(job_ms / 10));
      queue.emit(claim->job_id, "step", {{"step", step}, {"steps", 10}});
    }
    queue.complete(claim->job_id, name, "done", "", {{"images", {{{"seed", 0}}}}}, {png});
    queue.ack(*claim);
  }
  queue.leave(name);
}

// The broker's count of the commands it has run (INFO stats).
int64_t commands_processed(RedisClient& client) {
  const std::string info = client.command({"INFO", "stats"}).text;
  const std::string key = "total_commands_processed:";
  return std::stoll(info.substr(info.find(key) + key.size()));
}

int value_of(int argc, char** argv, const std::string& flag, int fallback) {
  for (int i = 2; i + 1 < argc; ++i)
    if (argv[i] == flag) return std::stoi(argv[i + 1]);
  return fallback;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr,
                 "usage: %s redis://HOST:PORT/DB [--workers N] [--jobs N] [--job-ms MS] [--png-kib K]\n",
                 argv[0]);
    return 2;
  }
  const RedisUrl url = parse_redis_url(argv[1]);
  check_broker_security(url);
  const int workers = value_of(argc, argv, "--workers", 50);
  const int jobs = value_of(argc, argv, "--jobs", 500);
  const int job_ms = value_of(argc, argv, "--job-ms", 1000);
  const std::string png(static_cast<size_t>(value_of(argc, argv, "--png-kib", 64)) * 1024, 'x');

  RedisClient client(url);
  client.command({"FLUSHDB"});
  std::vector<pid_t> children;
  for (int index = 0; index < workers; ++index) {
    const pid_t child = fork();
    if (child == 0) {
      simulated_worker(url, "sim-" + std::to_string(index), job_ms, png);
      _exit(0);
    }
    children.push_back(child);
  }
  RedisJobQueue queue(client);
  while (static_cast<int>(queue.workers().size()) < workers)
    std::this_thread::sleep_for(std::chrono::milliseconds(50));

  const int64_t commands_before = commands_processed(client);
  RedisClient feed_client(url);
  RedisJobQueue feed(feed_client);
  std::string cursor = feed.feed_position();
  const Clock::time_point start = Clock::now();
  std::vector<double> submit_ms;
  for (int index = 0; index < jobs; ++index) {
    char id[17];
    std::snprintf(id, sizeof(id), "%016x", index + 1);
    const Clock::time_point before = Clock::now();
    queue.submit(id, {{"model", "sim"}}, nlohmann::json::object(), "generate", 0, 0);
    submit_ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - before).count());
  }
  // The broker's round trip under load, sampled while the jobs run.
  std::vector<double> ping_ms;
  int done = 0, events = 0;
  while (done < jobs) {
    const Clock::time_point before = Clock::now();
    client.command({"PING"});
    ping_ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - before).count());
    for (const RedisJobEvent& event : feed.follow(cursor, std::chrono::milliseconds(20))) {
      ++events;
      if (event.type == "state" && event.data.value("state", "") == "done") ++done;
    }
  }
  const double wall_s = std::chrono::duration<double>(Clock::now() - start).count();
  const int64_t commands = commands_processed(client) - commands_before;
  for (pid_t child : children) kill(child, SIGTERM);
  for (pid_t child : children) waitpid(child, nullptr, 0);
  const double ideal_s = static_cast<double>((jobs + workers - 1) / workers) * job_ms / 1000.0;
  std::printf("SIMULATION (no model runs): %d worker processes, %d jobs of %d ms, %d KiB PNG each\n", workers,
              jobs, job_ms, static_cast<int>(png.size() / 1024));
  std::printf("jobs/s %.2f (wall %.2f s; %.2f s if the broker cost nothing)\n", jobs / wall_s, wall_s,
              ideal_s);
  std::printf("broker round trip under load (PING) p50 %.3f ms, p99 %.3f ms, max %.3f ms\n",
              percentile(ping_ms, 0.5), percentile(ping_ms, 0.99), percentile(ping_ms, 1.0));
  std::printf(
      "broker commands %lld (%.1f per job, heartbeats, idle polls and this bench's included), %.0f/s\n",
      static_cast<long long>(commands), static_cast<double>(commands) / jobs, commands / wall_s);
  std::printf("submit p50 %.3f ms, p99 %.3f ms; feed events %d (%.1f per job)\n", percentile(submit_ms, 0.5),
              percentile(submit_ms, 0.99), events, static_cast<double>(events) / jobs);
  return 0;
}
