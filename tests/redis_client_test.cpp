// The cluster's broker address: URL parsing, the credentials kept out of every message, and the refusal of
// a broker on the network without a password.
#include "app/redis_client.h"

#include <gtest/gtest.h>

#include <cstdlib>

#include "util/error.h"

namespace canvas::app {
namespace {

TEST(RedisUrl, ReadsEveryPart) {
  const RedisUrl url = parse_redis_url("redis://worker:s3cr%40t@10.0.0.5:6380/2");
  EXPECT_EQ(url.host, "10.0.0.5");
  EXPECT_EQ(url.port, 6380);
  EXPECT_EQ(url.database, 2);
  EXPECT_EQ(url.username, "worker");
  EXPECT_EQ(url.password, "s3cr@t");
}

TEST(RedisUrl, DefaultsPortAndDatabase) {
  const RedisUrl url = parse_redis_url("redis://127.0.0.1");
  EXPECT_EQ(url.port, 6379);
  EXPECT_EQ(url.database, 0);
  EXPECT_TRUE(url.password.empty());
  EXPECT_EQ(url.redacted(), "redis://127.0.0.1:6379/0");
}

TEST(RedisUrl, RedactsTheCredentials) {
  const RedisUrl url = parse_redis_url("redis://:hunter2@broker:6379/1");
  EXPECT_EQ(url.password, "hunter2");
  EXPECT_EQ(url.redacted(), "redis://***@broker:6379/1");
}

TEST(RedisUrl, RefusesMalformedUrlsWithoutRepeatingThePassword) {
  for (const std::string bad :
       {"http://host:6379", "redis://:hunter2@host:notaport/0", "redis://:hunter2@host:6379/x",
        "redis://hunter2@host:6379", "redis://:hunter2@:6379/0"}) {
    try {
      parse_redis_url(bad);
      ADD_FAILURE() << bad << " was accepted";
    } catch (const Error& error) {
      EXPECT_EQ(std::string(error.what()).find("hunter2"), std::string::npos) << error.what();
    }
  }
}

TEST(RedisUrl, TakesThePasswordFromTheEnvironment) {
  setenv("CANVAS_REDIS_PASSWORD", "from-env", 1);
  const RedisUrl from_env = parse_redis_url("redis://broker:6379/0");
  const RedisUrl in_url = parse_redis_url("redis://:in-url@broker:6379/0");
  unsetenv("CANVAS_REDIS_PASSWORD");
  EXPECT_EQ(from_env.password, "from-env");
  EXPECT_EQ(in_url.password, "in-url");
  EXPECT_EQ(from_env.redacted(), "redis://***@broker:6379/0");
}

TEST(RedisUrl, RefusesABrokerOnTheNetworkWithoutAPassword) {
  EXPECT_NO_THROW(check_broker_security(parse_redis_url("redis://127.0.0.1:6379/0")));
  EXPECT_NO_THROW(check_broker_security(parse_redis_url("redis://localhost:6379/0")));
  EXPECT_THROW(check_broker_security(parse_redis_url("redis://10.0.0.5:6379/0")), Error);
  EXPECT_NO_THROW(check_broker_security(parse_redis_url("redis://:pw@10.0.0.5:6379/0")));
}

}  // namespace
}  // namespace canvas::app
