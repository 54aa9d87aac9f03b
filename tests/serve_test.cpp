// `canvas serve`'s native API on the tiny models, in-process: every endpoint, the same pixels as the command
// line, concurrent clients, cancelling, restarts with the history intact, and refused requests.
#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include "app/history.h"
#include "image/decode.h"
#include "memory/fault_injection.h"
#include "serve_fixture.h"
#include "test_util.h"

namespace canvas {
namespace {

using nlohmann::json;
using test::ServeFixture;
using test::small_generate;

class Serve : public ServeFixture {};

TEST_F(Serve, GeneratesTheCommandLinesPixels) {
  const std::string id = submit(small_generate(11));
  const json job = wait_for_end(id);
  ASSERT_EQ(job.at("state"), "done") << job.dump();
  ASSERT_EQ(job.at("images").size(), 1u);
  EXPECT_EQ(job.at("images")[0].at("seed"), 11);
  const DecodedImage served = image_at(job.at("images")[0].at("url"));

  const std::filesystem::path output = folder_ / "cli.png";
  const test::CommandResult cli = test::run_built_program(
      "src/canvas", "generate --model " + test::source_path("models/tiny-qwen-image").string() +
                        " --prompt 'a red fox' --width 32 --height 32 --steps 2 --seed 11 --output " +
                        output.string());
  ASSERT_EQ(cli.exit_code, 0) << cli.output;
  const DecodedImage written = read_image(output);
  EXPECT_EQ(served.rgb.width, 32);
  EXPECT_EQ(served.rgb.pixels, written.rgb.pixels);
  // The same metadata, but for the model's name (the server records its id).
  const json served_settings = json::parse(test::png_text(served.rgb, "canvas"));
  EXPECT_EQ(served_settings.at("seed"), 11);
  EXPECT_EQ(served_settings.at("model"), "tiny");
}

TEST_F(Serve, StreamsProgressAndPreviewsAsServerSentEvents) {
  const std::string id = submit(small_generate(3, 3));
  std::string stream;
  httplib::Result result = client().Get("/v1/jobs/" + id + "/events", [&](const char* data, size_t size) {
    stream.append(data, size);
    return true;
  });
  ASSERT_TRUE(result);
  EXPECT_EQ(result->get_header_value("Content-Type"), "text/event-stream");
  test::expect_contains(stream, "event: state\ndata: {\"state\":\"queued\"}");
  test::expect_contains(stream, "event: plan");
  for (int step = 1; step <= 3; ++step) test::expect_contains(stream, "\"step\":" + std::to_string(step));
  test::expect_contains(stream, "event: preview");
  test::expect_contains(stream, "\"eta_s\":");
  test::expect_contains(stream, "data: {\"state\":\"done\"}");
  // A client that reconnects after the end is told only what followed the event it saw.
  httplib::Headers resume = {{"Last-Event-ID", "1"}};
  httplib::Result again = client().Get("/v1/jobs/" + id + "/events", resume);
  ASSERT_TRUE(again);
  EXPECT_EQ(again->body.find("\"state\":\"queued\""), std::string::npos);
  test::expect_contains(again->body, "\"state\":\"done\"");
}

TEST_F(Serve, ListsModelsLorasAndMemory) {
  const auto [status, models] = get("/v1/models");
  ASSERT_EQ(status, 200);
  ASSERT_EQ(models.at("models").size(), 2u);
  EXPECT_EQ(models.at("models")[0].at("id"), "tiny");
  EXPECT_EQ(models.at("models")[0].at("edits"), false);
  EXPECT_EQ(models.at("models")[1].at("id"), "tiny-edit");
  EXPECT_EQ(models.at("models")[1].at("edits"), true);
  EXPECT_EQ(get("/v1/loras").second.at("loras"), json::array());
  ASSERT_EQ(wait_for_end(submit(small_generate(1))).at("state"), "done");
  const auto [memory_status, memory] = get("/v1/memory");
  ASSERT_EQ(memory_status, 200);
  EXPECT_EQ(memory.at("device").at("device"), "cpu");
  EXPECT_GT(memory.at("host").at("total_bytes").get<int64_t>(), 0);
  ASSERT_EQ(memory.at("models").size(), 1u);
  EXPECT_EQ(memory.at("models")[0].at("id"), "tiny");
  EXPECT_FALSE(memory.at("plan").empty());
}

// A job that runs out of memory recovers, and the memory view lists the recovery for any client.
TEST_F(Serve, ReportsRecoveriesInTheMemoryView) {
  EXPECT_EQ(get("/v1/memory").second.at("recoveries"), json::array());
  // The model loads first: loading is not a job's step to recover.
  ASSERT_EQ(wait_for_end(submit(small_generate(3))).at("state"), "done");
  FaultInjector::instance().configure("1");
  const json job = wait_for_end(submit(small_generate(4)));
  FaultInjector::instance().configure("");
  EXPECT_EQ(job.at("state"), "done") << job.dump();
  const json recoveries = get("/v1/memory").second.at("recoveries");
  ASSERT_EQ(recoveries.size(), 1u) << recoveries.dump();
  test::expect_contains(recoveries[0].at("text").get<std::string>(), "released cached memory");
  EXPECT_GT(recoveries[0].at("time").get<double>(), 0.0);
}

TEST_F(Serve, RunsEveryTask) {
  const std::string picture = test::picture_base64(40, 32);
  const std::string mask = test::picture_base64(40, 32);
  const json img2img = {{"task", "img2img"}, {"prompt", "a fox"}, {"image", picture},
                        {"steps", 2},        {"strength", 0.5},   {"seed", 5}};
  const json inpaint = {
      {"task", "inpaint"}, {"prompt", "a fox"}, {"image", "data:image/png;base64," + picture},
      {"mask", mask},      {"steps", 2},        {"seed", 5}};
  const json outpaint = {{"task", "inpaint"},         {"prompt", "a fox"}, {"image", picture},
                         {"outpaint", {16, 0, 0, 0}}, {"steps", 2},        {"seed", 5}};
  const json edit = {{"task", "edit"},
                     {"model", "tiny-edit"},
                     {"prompt", "make it red"},
                     {"images", {picture}},
                     {"width", 32},
                     {"height", 32},
                     {"steps", 2},
                     {"seed", 5}};
  for (const json& request : {img2img, inpaint, outpaint, edit}) {
    const json job = wait_for_end(submit(request));
    EXPECT_EQ(job.at("state"), "done") << request.at("task") << ": " << job.dump();
  }
}

TEST_F(Serve, EightClientsFiveJobsEachLoseNothing) {
  constexpr int kClients = 8, kJobs = 5;
  std::vector<std::vector<std::string>> ids(kClients);
  std::vector<std::thread> clients;
  for (int client = 0; client < kClients; ++client) {
    clients.emplace_back([&, client] {
      httplib::Client own("127.0.0.1", service_->port());
      for (int job = 0; job < kJobs; ++job) {
        const json body = small_generate(static_cast<uint64_t>(100 + client * kJobs + job));
        httplib::Result result = own.Post("/v1/jobs", body.dump(), "application/json");
        if (result && result->status == 202) ids[client].push_back(json::parse(result->body).at("id"));
      }
    });
  }
  for (std::thread& client : clients) client.join();
  std::set<uint64_t> seeds;
  for (int client = 0; client < kClients; ++client) {
    ASSERT_EQ(ids[client].size(), static_cast<size_t>(kJobs));
    for (const std::string& id : ids[client]) {
      const json job = wait_for_end(id);
      ASSERT_EQ(job.at("state"), "done") << job.dump();
      seeds.insert(job.at("images")[0].at("seed").get<uint64_t>());
    }
  }
  EXPECT_EQ(seeds.size(), static_cast<size_t>(kClients * kJobs));
  // Each image is its own seed's: two jobs of one seed agree, and differ from a neighbour's.
  const DecodedImage again = image_at(wait_for_end(submit(small_generate(100))).at("images")[0].at("url"));
  const json first = wait_for_end(ids[0][0]);
  EXPECT_EQ(image_at(first.at("images")[0].at("url")).rgb.pixels, again.rgb.pixels);
  EXPECT_NE(image_at(wait_for_end(ids[0][1]).at("images")[0].at("url")).rgb.pixels, again.rgb.pixels);
}

TEST_F(Serve, CancelsARunningJobWithinAStepAndAQueuedOneAtOnce) {
  const std::string running = submit(small_generate(7, 200));
  const std::string queued = submit(small_generate(8, 2));
  // Wait for the first step of the running job.
  std::string stream;
  client().Get("/v1/jobs/" + running + "/events", [&](const char* data, size_t size) {
    stream.append(data, size);
    return stream.find("event: step") == std::string::npos;
  });
  httplib::Result cancelled_queued = client().Delete("/v1/jobs/" + queued);
  ASSERT_TRUE(cancelled_queued);
  EXPECT_EQ(cancelled_queued->status, 200);
  EXPECT_EQ(json::parse(cancelled_queued->body).at("state"), "cancelled");
  httplib::Result cancelled = client().Delete("/v1/jobs/" + running);
  ASSERT_TRUE(cancelled);
  EXPECT_EQ(cancelled->status, 200);
  const json job = wait_for_end(running);
  EXPECT_EQ(job.at("state"), "cancelled");
  EXPECT_LT(job.at("progress").at("step").get<int>(), 200);
  // Ended: nothing more to cancel.
  EXPECT_EQ(client().Delete("/v1/jobs/" + running)->status, 409);
  EXPECT_EQ(client().Delete("/v1/jobs/0123456789abcdef")->status, 404);
  // The server runs the next job as usual.
  EXPECT_EQ(wait_for_end(submit(small_generate(9))).at("state"), "done");
}

TEST_F(Serve, KeepsItsHistoryOverARestart) {
  const std::string id = submit(small_generate(21));
  const json done = wait_for_end(id);
  ASSERT_EQ(done.at("state"), "done");
  const std::vector<uint8_t> pixels = image_at(done.at("images")[0].at("url")).rgb.pixels;
  stop();
  // A job the stopped server was running when it stopped.
  {
    app::History history(app::history_file(data_dir()));
    app::HistoryEntry crashed;
    crashed.id = "00000000000000aa";
    crashed.task = "generate";
    crashed.model = "tiny";
    crashed.state = "running";
    crashed.created_at = 1;
    history.add(crashed);
  }
  start();
  EXPECT_EQ(service_->interrupted_jobs(), 1);
  const auto [status, listed] = get("/v1/jobs");
  ASSERT_EQ(status, 200);
  ASSERT_EQ(listed.at("jobs").size(), 2u);
  const json again = get("/v1/jobs/" + id).second;
  EXPECT_EQ(again.at("state"), "done");
  EXPECT_EQ(again.at("parameters").at("seed"), 21);
  EXPECT_EQ(image_at(again.at("images")[0].at("url")).rgb.pixels, pixels);
  const json crashed = get("/v1/jobs/00000000000000aa").second;
  EXPECT_EQ(crashed.at("state"), "failed");
  EXPECT_EQ(crashed.at("error"), app::kInterruptedJobError);
}

TEST_F(Serve, RefusesBadRequestsWithJsonErrors) {
  struct Case {
    std::string body;
    int status;
    std::string field;
  };
  const std::vector<Case> cases = {
      {"{not json", 400, ""},
      {"[1, 2]", 400, ""},
      {R"({"width": 32})", 400, "prompt"},
      {R"({"prompt": "x", "colour": "red"})", 400, "colour"},
      {R"({"prompt": "x", "steps": "many"})", 400, "steps"},
      {R"({"prompt": "x", "steps": 100000})", 400, "steps"},
      {R"({"prompt": "x", "width": 1000000})", 400, "width"},
      {R"({"prompt": "x", "seed": -2})", 400, "seed"},
      {R"({"prompt": "x", "model": "../../etc"})", 404, "model"},
      {R"({"prompt": "x", "loras": ["../secret"]})", 400, "loras"},
      {R"({"prompt": "x", "loras": ["missing:0.5"]})", 404, "loras"},
      {R"({"prompt": "x", "task": "img2img"})", 400, "image"},
      {R"({"prompt": "x", "task": "img2img", "image": "not base64!"})", 400, "image"},
      {R"({"prompt": "x", "task": "img2img", "image": "aGVsbG8="})", 400, "image"},
      {R"({"prompt": "x", "mask": "aGVsbG8="})", 400, "mask"},
      {R"({"prompt": "x", "task": "paint"})", 400, "task"},
      {R"({"prompt": "x", "strategy": "fastest"})", 400, "strategy"},
  };
  for (const Case& each : cases) {
    httplib::Result result = client().Post("/v1/jobs", each.body, "application/json");
    ASSERT_TRUE(result) << each.body;
    EXPECT_EQ(result->status, each.status) << each.body << " -> " << result->body;
    const json error = json::parse(result->body, nullptr, false);
    ASSERT_TRUE(error.contains("error")) << result->body;
    EXPECT_EQ(error.at("error").value("field", ""), each.field) << each.body;
  }
  // What the model cannot run is refused before it queues (the tiny model's patch is 16 pixels).
  const auto [odd_status, odd] = post("/v1/jobs", {{"prompt", "x"}, {"width", 40}, {"height", 24}});
  EXPECT_EQ(odd_status, 400);
  test::expect_contains(odd.at("error").at("message").get<std::string>(), "16");
  const auto [edit_status, edit] =
      post("/v1/jobs", {{"task", "edit"}, {"prompt", "x"}, {"images", {test::picture_base64(16, 16)}}});
  EXPECT_EQ(edit_status, 400) << edit.dump();
  EXPECT_EQ(get("/v1/jobs/ffffffffffffffff").first, 404);
  EXPECT_EQ(get("/v1/nothing").first, 404);
}

TEST_F(Serve, LimitsBodiesAndPictures) {
  stop();
  start([](app::ServiceOptions& options) {
    options.server.max_body_bytes = 4096;
    options.server.limits.max_image_pixels = 16 * 16;
  });
  const std::string big(8192, 'x');
  httplib::Result too_big = client().Post("/v1/jobs", "{\"prompt\": \"" + big + "\"}", "application/json");
  ASSERT_TRUE(too_big);
  EXPECT_EQ(too_big->status, 413);
  const json picture = {{"task", "img2img"}, {"prompt", "x"}, {"image", test::picture_base64(20, 20)}};
  const auto [status, error] = post("/v1/jobs", picture);
  EXPECT_EQ(status, 400);
  EXPECT_EQ(error.at("error").at("field"), "image");
}

TEST_F(Serve, NeedsItsTokenWhenGivenOne) {
  stop();
  start([](app::ServiceOptions& options) { options.server.token = "sesame"; });
  EXPECT_EQ(get("/v1/models").first, 401);
  client().set_bearer_token_auth("wrong");
  EXPECT_EQ(get("/v1/models").first, 401);
  client().set_bearer_token_auth("sesame");
  EXPECT_EQ(get("/v1/models").first, 200);
  stop();
  // Any address but loopback needs a token.
  app::ServiceOptions open;
  open.model_folders = {folder_ / "models"};
  open.data_dir = data_dir();
  open.server.host = "0.0.0.0";
  open.server.port = 0;
  EXPECT_NE(test::error_of([&] { app::Service service(open); }).find("--token"), std::string::npos);
}

TEST_F(Serve, RemovesAnEndedJobAndItsImagesButNotARunningOne) {
  const std::string running = submit(small_generate(31, 200));
  std::string stream;
  client().Get("/v1/jobs/" + running + "/events", [&](const char* data, size_t size) {
    stream.append(data, size);
    return stream.find("event: step") == std::string::npos;
  });
  EXPECT_EQ(client().Delete("/v1/history/" + running)->status, 409);
  ASSERT_EQ(client().Delete("/v1/jobs/" + running)->status, 200);
  EXPECT_EQ(wait_for_end(running).at("state"), "cancelled");

  const std::string done = submit(small_generate(32));
  ASSERT_EQ(wait_for_end(done).at("state"), "done");
  const std::filesystem::path image = data_dir() / "images" / (done + "-0.png");
  ASSERT_TRUE(std::filesystem::exists(image));
  const auto [status, removed] = [&] {
    httplib::Result result = client().Delete("/v1/history/" + done);
    return std::pair{result->status, json::parse(result->body)};
  }();
  EXPECT_EQ(status, 200);
  EXPECT_EQ(removed.at("removed"), true);
  EXPECT_FALSE(std::filesystem::exists(image));
  EXPECT_EQ(get("/v1/jobs/" + done).first, 404);
  EXPECT_EQ(get("/v1/jobs/" + done + "/images/0").first, 404);
  EXPECT_EQ(client().Delete("/v1/history/" + done)->status, 404);
  EXPECT_EQ(client().Delete("/v1/history/" + running)->status, 200);
}

TEST_F(Serve, ServesTheWebUiWithoutItsToken) {
  stop();
  start([](app::ServiceOptions& options) { options.server.token = "sesame"; });
  httplib::Result page = client().Get("/");
  ASSERT_TRUE(page);
  EXPECT_EQ(page->status, 200);
  EXPECT_NE(page->get_header_value("Content-Type").find("text/html"), std::string::npos);
  EXPECT_NE(page->body.find("<script type=\"module\" src=\"main.js\">"), std::string::npos);
  httplib::Result script = client().Get("/main.js");
  ASSERT_TRUE(script);
  EXPECT_EQ(script->status, 200);
  EXPECT_NE(script->get_header_value("Content-Type").find("javascript"), std::string::npos);
  // Only the page's files: the API still needs the token, and no other path is a file.
  EXPECT_EQ(get("/v1/jobs").first, 401);
  EXPECT_EQ(client().Get("/mainxjs")->status, 401);
}

}  // namespace
}  // namespace canvas
