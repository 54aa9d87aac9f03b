// A thin client of a Redis server (through hiredis) for the cluster mode of `canvas serve` (--queue
// redis://...): the broker's address read from a URL, its credentials kept out of every message, and one
// connection whose replies are copied into plain values.
//
// Safety: the password comes from the URL or from $CANVAS_REDIS_PASSWORD, and redacted() is the only form
// of the address that messages and logs show. A broker that is not on loopback must ask for a password.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

struct redisContext;

namespace canvas::app {

struct RedisUrl {
  std::string host;
  int port = 6379;
  int database = 0;
  std::string username;  // empty: the default user
  std::string password;  // empty: none

  // "redis://HOST:PORT/DB", with "***" standing for the credentials when there are any.
  std::string redacted() const;
};

// Reads "redis://[[USER]:PASSWORD@]HOST[:PORT][/DB]". A password in $CANVAS_REDIS_PASSWORD (and a user in
// $CANVAS_REDIS_USERNAME) is used when the URL has none. Throws canvas::Error for any other form; the
// message never repeats the credentials.
RedisUrl parse_redis_url(const std::string& url);

// Throws canvas::Error when `url` is not on loopback and has no password: a worker must not talk to a
// broker anyone on the network can write jobs into.
void check_broker_security(const RedisUrl& url);

// One reply: a string (bulk or status), an integer, nil, an array of replies, or the server's error (which
// RedisClient throws rather than returns).
struct RedisReply {
  enum class Kind { Nil, String, Integer, Array, Error };
  Kind kind = Kind::Nil;
  std::string text;
  int64_t integer = 0;
  std::vector<RedisReply> elements;

  bool is_nil() const { return kind == Kind::Nil; }
};

class RedisClient {
 public:
  // Connects, authenticates and selects the database; throws canvas::Error naming the redacted address.
  explicit RedisClient(const RedisUrl& url, std::chrono::milliseconds timeout = std::chrono::seconds(5));
  ~RedisClient();
  RedisClient(const RedisClient&) = delete;
  RedisClient& operator=(const RedisClient&) = delete;

  // Runs one command given as its words (binary-safe). Throws canvas::Error for a server error or a broken
  // connection, which the next call makes again.
  RedisReply command(const std::vector<std::string>& words);
  // Runs several commands in one round trip, in order; their replies in the same order.
  std::vector<RedisReply> pipeline(const std::vector<std::vector<std::string>>& commands);

  const RedisUrl& url() const { return url_; }

 private:
  // Connects, authenticates and selects the database.
  void connect();
  RedisReply read_reply();

  RedisUrl url_;
  std::chrono::milliseconds timeout_;
  std::unique_ptr<redisContext, void (*)(redisContext*)> context_;
};

// The field/value pairs of a reply to HGETALL (or an XRANGE entry's fields), as a lookup.
std::optional<std::string> field_of(const RedisReply& pairs, const std::string& name);

}  // namespace canvas::app
