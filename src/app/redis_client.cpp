#include "app/redis_client.h"

#include <hiredis.h>

#include <cctype>
#include <cstdlib>

#include "app/http_server.h"
#include "util/error.h"

namespace canvas::app {

namespace {

int parse_number(const std::string& text, const std::string& what, int low, int high) {
  size_t used = 0;
  int value = -1;
  try {
    value = std::stoi(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  check(used == text.size() && !text.empty() && value >= low && value <= high,
        "the Redis URL's " + what + " must be a number from " + std::to_string(low) + " to " +
            std::to_string(high) + ", not \"" + text + "\"");
  return value;
}

// "%40" and the like in the credentials, as URLs write characters such as '@' and ':'.
std::string percent_decoded(const std::string& text) {
  std::string decoded;
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '%' && i + 2 < text.size() && std::isxdigit(static_cast<unsigned char>(text[i + 1])) &&
        std::isxdigit(static_cast<unsigned char>(text[i + 2]))) {
      decoded += static_cast<char>(std::stoi(text.substr(i + 1, 2), nullptr, 16));
      i += 2;
    } else {
      decoded += text[i];
    }
  }
  return decoded;
}

RedisReply copied(const redisReply& reply) {
  RedisReply copy;
  switch (reply.type) {
    case REDIS_REPLY_STRING:
    case REDIS_REPLY_STATUS:
      copy.kind = RedisReply::Kind::String;
      copy.text.assign(reply.str, reply.len);
      break;
    case REDIS_REPLY_INTEGER:
      copy.kind = RedisReply::Kind::Integer;
      copy.integer = reply.integer;
      break;
    case REDIS_REPLY_ARRAY:
      copy.kind = RedisReply::Kind::Array;
      for (size_t i = 0; i < reply.elements; ++i) copy.elements.push_back(copied(*reply.element[i]));
      break;
    case REDIS_REPLY_ERROR:
      copy.kind = RedisReply::Kind::Error;
      copy.text.assign(reply.str, reply.len);
      break;
    default:
      break;
  }
  return copy;
}

}  // namespace

std::string RedisUrl::redacted() const {
  const bool credentials = !username.empty() || !password.empty();
  return "redis://" + std::string(credentials ? "***@" : "") + host + ":" + std::to_string(port) + "/" +
         std::to_string(database);
}

RedisUrl parse_redis_url(const std::string& url) {
  const std::string scheme = "redis://";
  check(url.rfind(scheme, 0) == 0, "the queue's URL must start with redis:// (redis://HOST:PORT/DB)");
  std::string rest = url.substr(scheme.size());
  RedisUrl parsed;
  if (const size_t at = rest.rfind('@'); at != std::string::npos) {
    const std::string credentials = rest.substr(0, at);
    rest = rest.substr(at + 1);
    const size_t colon = credentials.find(':');
    check(colon != std::string::npos,
          "the Redis URL's credentials must read USER:PASSWORD or :PASSWORD before the '@'");
    parsed.username = percent_decoded(credentials.substr(0, colon));
    parsed.password = percent_decoded(credentials.substr(colon + 1));
  }
  if (const size_t slash = rest.find('/'); slash != std::string::npos) {
    parsed.database = parse_number(rest.substr(slash + 1), "database", 0, 65535);
    rest = rest.substr(0, slash);
  }
  if (const size_t colon = rest.rfind(':'); colon != std::string::npos) {
    parsed.port = parse_number(rest.substr(colon + 1), "port", 1, 65535);
    rest = rest.substr(0, colon);
  }
  parsed.host = rest;
  check(!parsed.host.empty(), "the Redis URL names no host (redis://HOST:PORT/DB)");
  if (parsed.password.empty()) {
    if (const char* password = std::getenv("CANVAS_REDIS_PASSWORD"); password && *password) {
      parsed.password = password;
      if (const char* user = std::getenv("CANVAS_REDIS_USERNAME"); user && *user) parsed.username = user;
    }
  }
  return parsed;
}

void check_broker_security(const RedisUrl& url) {
  check(is_loopback(url.host) || !url.password.empty(),
        "the Redis broker " + url.redacted() +
            " is not on loopback and no password is given: put it in the URL "
            "(redis://:PASSWORD@HOST:PORT/DB) or in $CANVAS_REDIS_PASSWORD, and require it on the broker");
}

RedisClient::RedisClient(const RedisUrl& url, std::chrono::milliseconds timeout)
    : url_(url), timeout_(timeout), context_(nullptr, redisFree) {
  connect();
}

void RedisClient::connect() {
  const timeval limit{static_cast<time_t>(timeout_.count() / 1000),
                      static_cast<suseconds_t>(timeout_.count() % 1000 * 1000)};
  context_.reset(redisConnectWithTimeout(url_.host.c_str(), url_.port, limit));
  check(context_ != nullptr, "cannot reach the Redis broker " + url_.redacted() + ": out of memory");
  if (context_->err != 0) {
    const std::string reason = context_->errstr;
    context_.reset();
    throw Error("cannot reach the Redis broker " + url_.redacted() + ": " + reason);
  }
  // Replies that block (XREADGROUP ... BLOCK) wait well within this.
  const timeval reply_limit{30, 0};
  redisSetTimeout(context_.get(), reply_limit);
  if (!url_.password.empty()) {
    try {
      if (url_.username.empty()) {
        command({"AUTH", url_.password});
      } else {
        command({"AUTH", url_.username, url_.password});
      }
    } catch (const Error&) {
      // Ours names only the address: the refused command's words are the credentials.
      context_.reset();
      throw Error("the Redis broker " + url_.redacted() + " refused the credentials");
    }
  }
  if (url_.database != 0) command({"SELECT", std::to_string(url_.database)});
}

RedisClient::~RedisClient() = default;

RedisReply RedisClient::read_reply() {
  void* raw = nullptr;
  if (redisGetReply(context_.get(), &raw) != REDIS_OK || raw == nullptr) {
    const std::string reason = context_->errstr;
    context_.reset();
    throw Error("lost the Redis broker " + url_.redacted() + ": " + reason);
  }
  std::unique_ptr<redisReply, void (*)(void*)> reply(static_cast<redisReply*>(raw), freeReplyObject);
  return copied(*reply);
}

RedisReply RedisClient::command(const std::vector<std::string>& words) {
  return pipeline({words}).front();
}

std::vector<RedisReply> RedisClient::pipeline(const std::vector<std::vector<std::string>>& commands) {
  // A connection that broke (the broker restarted, the network dropped) is made again on the next call.
  if (!context_ || context_->err != 0) connect();
  for (const std::vector<std::string>& words : commands) {
    std::vector<const char*> pointers;
    std::vector<size_t> lengths;
    for (const std::string& word : words) {
      pointers.push_back(word.data());
      lengths.push_back(word.size());
    }
    check(redisAppendCommandArgv(context_.get(), static_cast<int>(words.size()), pointers.data(),
                                 lengths.data()) == REDIS_OK,
          "cannot send a command to the Redis broker " + url_.redacted());
  }
  // Every reply is read before the first error is thrown, so the connection stays in step.
  std::vector<RedisReply> replies;
  for (size_t i = 0; i < commands.size(); ++i) replies.push_back(read_reply());
  for (size_t i = 0; i < replies.size(); ++i)
    check(replies[i].kind != RedisReply::Kind::Error,
          "the Redis broker refused " + commands[i].front() + ": " + replies[i].text);
  return replies;
}

std::optional<std::string> field_of(const RedisReply& pairs, const std::string& name) {
  for (size_t i = 0; i + 1 < pairs.elements.size(); i += 2)
    if (pairs.elements[i].text == name) return pairs.elements[i + 1].text;
  return std::nullopt;
}

}  // namespace canvas::app
