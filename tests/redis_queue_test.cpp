// The cluster's queue on a real broker: this suite starts its own redis-server (Debian's, which
// scripts/setup.sh installs) on a free loopback port, with no persistence, and stops it at the end. It fails,
// never skips, when redis-server is missing: the cluster's guarantees are tested here.
#include "app/redis_queue.h"

#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <thread>

#include "test_util.h"
#include "util/error.h"

namespace canvas::app {
namespace {

using nlohmann::json;
using namespace std::chrono_literals;

int free_port() {
  const int socket_fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(socket_fd, reinterpret_cast<sockaddr*>(&address), sizeof(address));
  socklen_t length = sizeof(address);
  getsockname(socket_fd, reinterpret_cast<sockaddr*>(&address), &length);
  close(socket_fd);
  return ntohs(address.sin_port);
}

class RedisQueueTest : public testing::Test {
 protected:
  static void SetUpTestSuite() {
    port_ = free_port();
    const std::filesystem::path dir = test::scratch_dir("redis_queue_test");
    server_ = fork();
    if (server_ == 0) {
      // Gone with this process, however it ends.
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      const std::string port = std::to_string(port_);
      execlp("redis-server", "redis-server", "--port", port.c_str(), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", dir.c_str(), "--loglevel", "warning", nullptr);
      _exit(127);
    }
    for (int attempt = 0; attempt < 100; ++attempt) {
      try {
        RedisClient(parse_redis_url("redis://127.0.0.1:" + std::to_string(port_))).command({"PING"});
        return;
      } catch (const Error&) {
        std::this_thread::sleep_for(20ms);
      }
    }
  }
  static void TearDownTestSuite() {
    kill(server_, SIGKILL);
    waitpid(server_, nullptr, 0);
  }
  void SetUp() override {
    ASSERT_EQ(waitpid(server_, nullptr, WNOHANG), 0) << "redis-server did not start: is it installed?";
    client_ = std::make_unique<RedisClient>(parse_redis_url("redis://127.0.0.1:" + std::to_string(port_)));
    client_->command({"FLUSHALL"});
  }

  // A job of model "tiny" as the board submits it.
  static void submit(RedisJobQueue& queue, const std::string& id) {
    queue.submit(id, {{"model", "tiny"}, {"prompt", "p"}, {"seed", 1}}, {{"prompt", "p"}}, "generate", 0,
                 1.0);
  }

  static inline pid_t server_ = -1;
  static inline int port_ = 0;
  std::unique_ptr<RedisClient> client_;
};

TEST_F(RedisQueueTest, ClaimsStartsAndCompletesAJobOnce) {
  RedisJobQueue queue(*client_);
  submit(queue, "00000000000000a1");
  EXPECT_FALSE(queue.claim("w1", {"other-model"}, 10s, 10ms)) << "a worker without the model took it";
  const std::optional<RedisClaim> claim = queue.claim("w1", {"tiny"}, 10s, 10ms);
  ASSERT_TRUE(claim);
  EXPECT_EQ(claim->job_id, "00000000000000a1");
  EXPECT_EQ(queue.start(claim->job_id, "w1"), 1);
  EXPECT_TRUE(queue.emit(claim->job_id, "step", {{"step", 1}}));
  EXPECT_TRUE(
      queue.complete(claim->job_id, "w1", "done", "", {{"images", json::array({{{"seed", 1}}})}}, {"PNG"}));
  EXPECT_FALSE(queue.complete(claim->job_id, "w2", "done", "", {{"images", json::array()}}, {}));
  EXPECT_FALSE(queue.emit(claim->job_id, "step", {{"step", 2}})) << "an event after the end";
  EXPECT_FALSE(queue.start(claim->job_id, "w2")) << "an ended job started again";
  queue.ack(*claim);

  const std::optional<RedisJobRecord> record = queue.record(claim->job_id);
  ASSERT_TRUE(record);
  EXPECT_EQ(record->state, "done");
  EXPECT_EQ(record->completed_by, "w1");
  EXPECT_EQ(queue.png(claim->job_id, 0), "PNG");
  std::vector<std::string> types;
  for (const RedisJobEvent& event : queue.events_of(claim->job_id))
    types.push_back(event.type + ":" + event.data.value("state", ""));
  EXPECT_EQ(types, (std::vector<std::string>{"state:queued", "state:running", "step:", "state:done"}));
  EXPECT_FALSE(queue.claim("w1", {"tiny"}, 10s, 10ms)) << "an acked job came again";
}

TEST_F(RedisQueueTest, ASilentWorkersJobIsTakenOverAndEndsOnce) {
  RedisJobQueue queue(*client_);
  submit(queue, "00000000000000b2");
  const std::optional<RedisClaim> first = queue.claim("dead", {"tiny"}, 200ms, 10ms);
  ASSERT_TRUE(first);
  ASSERT_EQ(queue.start(first->job_id, "dead"), 1);
  EXPECT_FALSE(queue.claim("alive", {"tiny"}, 200ms, 10ms)) << "taken over within the lease";
  std::this_thread::sleep_for(300ms);
  const std::optional<RedisClaim> again = queue.claim("alive", {"tiny"}, 200ms, 10ms);
  ASSERT_TRUE(again) << "not taken over after the lease";
  EXPECT_EQ(again->job_id, first->job_id);
  EXPECT_EQ(queue.start(again->job_id, "alive"), 2);
  // Both finish: the first to record its end wins, whoever it is.
  EXPECT_TRUE(queue.complete(again->job_id, "alive", "done", "", {{"images", json::array()}}, {}));
  EXPECT_FALSE(queue.complete(first->job_id, "dead", "done", "", {{"images", json::array()}}, {}));
  queue.ack(*again);
  EXPECT_EQ(queue.record(first->job_id)->completed_by, "alive");
  EXPECT_FALSE(queue.claim("third", {"tiny"}, 1ms, 10ms));
}

TEST_F(RedisQueueTest, ARenewedClaimIsNotTakenOver) {
  RedisJobQueue queue(*client_);
  submit(queue, "00000000000000c3");
  const std::optional<RedisClaim> claim = queue.claim("busy", {"tiny"}, 300ms, 10ms);
  ASSERT_TRUE(claim);
  for (int beat = 0; beat < 4; ++beat) {
    std::this_thread::sleep_for(100ms);
    queue.renew("busy", *claim);
  }
  EXPECT_FALSE(queue.claim("other", {"tiny"}, 300ms, 10ms));
}

TEST_F(RedisQueueTest, CancelsAQueuedJobAtOnceAndAsksARunningOneToStop) {
  RedisJobQueue queue(*client_);
  submit(queue, "00000000000000d4");
  submit(queue, "00000000000000e5");
  EXPECT_TRUE(queue.cancel("00000000000000d4"));
  EXPECT_EQ(queue.record("00000000000000d4")->state, "cancelled");
  EXPECT_FALSE(queue.cancel("00000000000000d4"));
  const std::optional<RedisClaim> cancelled = queue.claim("w", {"tiny"}, 10s, 10ms);
  ASSERT_TRUE(cancelled);
  EXPECT_FALSE(queue.start(cancelled->job_id, "w")) << "a cancelled job ran";
  queue.ack(*cancelled);

  const std::optional<RedisClaim> running = queue.claim("w", {"tiny"}, 10s, 10ms);
  ASSERT_TRUE(running);
  ASSERT_TRUE(queue.start(running->job_id, "w"));
  EXPECT_TRUE(queue.cancel(running->job_id));
  EXPECT_EQ(queue.record(running->job_id)->state, "running");
  EXPECT_TRUE(queue.record(running->job_id)->cancel_requested);
  EXPECT_FALSE(queue.remove(running->job_id)) << "a running job removed";
  EXPECT_TRUE(queue.complete(running->job_id, "w", "cancelled", "cancelled"));
  EXPECT_TRUE(queue.remove(running->job_id));
  EXPECT_FALSE(queue.record(running->job_id));
  EXPECT_EQ(queue.job_ids(), std::vector<std::string>{"00000000000000d4"});
}

TEST_F(RedisQueueTest, TheFeedCarriesEveryJobsEventsFromItsPosition) {
  RedisJobQueue queue(*client_);
  submit(queue, "00000000000000f6");
  std::string cursor = queue.feed_position();
  submit(queue, "00000000000000f7");
  queue.start("00000000000000f7", "w");
  const std::vector<RedisJobEvent> events = queue.follow(cursor, 100ms);
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[0].job_id, "00000000000000f7");
  EXPECT_EQ(events[0].sequence, 1);
  EXPECT_EQ(events[1].data.value("worker", ""), "w");
  EXPECT_TRUE(queue.follow(cursor, 50ms).empty());
}

TEST_F(RedisQueueTest, WorkersAreListedWhileTheyBeat) {
  RedisJobQueue queue(*client_);
  queue.heartbeat("a", {{"host", "h1"}, {"models", {"tiny"}}}, 10s);
  queue.heartbeat("b", {{"host", "h2"}}, 100ms);
  EXPECT_EQ(queue.workers().size(), 2u);
  std::this_thread::sleep_for(200ms);
  const json live = queue.workers();
  ASSERT_EQ(live.size(), 1u);
  EXPECT_EQ(live[0]["name"], "a");
  EXPECT_EQ(live[0]["host"], "h1");
  queue.leave("a");
  EXPECT_TRUE(queue.workers().empty());
}

TEST_F(RedisQueueTest, AClientConnectsAgainAfterItsConnectionBroke) {
  RedisClient other(parse_redis_url("redis://127.0.0.1:" + std::to_string(port_)));
  const std::string id = std::to_string(other.command({"CLIENT", "ID"}).integer);
  client_->command({"CLIENT", "KILL", "ID", id});
  EXPECT_THROW(other.command({"PING"}), Error);
  EXPECT_EQ(other.command({"PING"}).text, "PONG");
}

}  // namespace
}  // namespace canvas::app
