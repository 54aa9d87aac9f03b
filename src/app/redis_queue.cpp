#include "app/redis_queue.h"

#include "util/error.h"

namespace canvas::app {

namespace {

using nlohmann::json;

const std::string kGroup = "workers";
const std::string kFeed = "canvas:events";
const std::string kIndex = "canvas:index";
const std::string kWorkers = "canvas:workers";

std::string job_key(const std::string& id) {
  return "canvas:job:" + id;
}
std::string events_key(const std::string& id) {
  return "canvas:job:" + id + ":events";
}
std::string stream_key(const std::string& model) {
  return "canvas:jobs:" + model;
}
std::string worker_key(const std::string& name) {
  return "canvas:worker:" + name;
}

std::string seconds_text(double seconds) {
  char text[32];
  std::snprintf(text, sizeof(text), "%.6f", seconds);
  return text;
}

double now_seconds() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

// Every script's KEYS are the job's record, its events and the feed (then its own); ARGV[1] is the job's id.
// emit numbers the event within the job and appends it to both streams.
const std::string kEmit = R"(
local function emit(kind, data)
  local seq = redis.call('HINCRBY', KEYS[1], 'events', 1)
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', '5000', '*', 'seq', seq, 'type', kind, 'data', data)
  redis.call('XADD', KEYS[3], 'MAXLEN', '~', '20000', '*', 'id', ARGV[1], 'seq', seq, 'type', kind, 'data', data)
end
local function ended()
  return redis.call('EXISTS', KEYS[1]) == 0 or redis.call('HEXISTS', KEYS[1], 'completed_by') == 1
end
)";

// ARGV: id, created_at, the queued event's data, then the record's fields and values. KEYS[4]: the index,
// KEYS[5]: the model's stream.
const std::string kSubmit = kEmit + R"(
redis.call('HSET', KEYS[1], unpack(ARGV, 4))
redis.call('ZADD', KEYS[4], ARGV[2], ARGV[1])
emit('state', ARGV[3])
redis.call('XADD', KEYS[5], '*', 'id', ARGV[1])
return 1
)";

// ARGV: id, worker, started_at, the running event's data.
const std::string kStart = kEmit + R"(
if ended() then return -1 end
local attempts = redis.call('HINCRBY', KEYS[1], 'attempts', 1)
redis.call('HSET', KEYS[1], 'state', 'running', 'worker', ARGV[2], 'started_at', ARGV[3])
emit('state', ARGV[4])
return attempts
)";

// ARGV: id, type, data.
const std::string kEmitEvent = kEmit + R"(
if ended() then return 0 end
emit(ARGV[2], ARGV[3])
return 1
)";

// ARGV: id, worker, state, the state event's data, finished_at, error, then more fields and values.
const std::string kComplete = kEmit + R"(
if ended() then return 0 end
redis.call('HSET', KEYS[1], 'completed_by', ARGV[2], 'state', ARGV[3], 'finished_at', ARGV[5], 'error', ARGV[6],
           unpack(ARGV, 7))
emit('state', ARGV[4])
return 1
)";

// ARGV: id, finished_at, the cancelled event's data.
const std::string kCancel = kEmit + R"(
if ended() then return 0 end
redis.call('HSET', KEYS[1], 'cancel_requested', '1')
if redis.call('HGET', KEYS[1], 'state') == 'queued' then
  redis.call('HSET', KEYS[1], 'completed_by', 'cancel', 'state', 'cancelled', 'finished_at', ARGV[2],
             'error', 'cancelled before it started')
  emit('state', ARGV[3])
end
return 1
)";

// ARGV: id. KEYS[4]: the index. The feed tells every view that the job is gone.
const std::string kRemove = R"(
if redis.call('HEXISTS', KEYS[1], 'completed_by') == 0 then return 0 end
redis.call('DEL', KEYS[1], KEYS[2])
redis.call('ZREM', KEYS[4], ARGV[1])
redis.call('XADD', KEYS[3], 'MAXLEN', '~', '20000', '*', 'id', ARGV[1], 'seq', '0', 'type', 'removed', 'data', '{}')
return 1
)";

std::vector<std::string> script_call(const std::string& script, const std::string& id,
                                     const std::vector<std::string>& more_keys,
                                     const std::vector<std::string>& arguments) {
  std::vector<std::string> words = {"EVAL",      script,         std::to_string(3 + more_keys.size()),
                                    job_key(id), events_key(id), kFeed};
  words.insert(words.end(), more_keys.begin(), more_keys.end());
  words.push_back(id);
  words.insert(words.end(), arguments.begin(), arguments.end());
  return words;
}

// A stream entry [entry id, [field, value, ...]] as an event ("id" names the job in the feed).
RedisJobEvent event_of(const RedisReply& entry, const std::string& job_id) {
  const RedisReply& fields = entry.elements.at(1);
  RedisJobEvent event;
  event.job_id = field_of(fields, "id").value_or(job_id);
  event.sequence = std::stoll(field_of(fields, "seq").value_or("0"));
  event.type = field_of(fields, "type").value_or("");
  event.data = json::parse(field_of(fields, "data").value_or("{}"));
  return event;
}

}  // namespace

RedisJobQueue::RedisJobQueue(RedisClient& client) : client_(client) {}

void RedisJobQueue::ensure_group(const std::string& model) {
  if (grouped_.count(model) != 0) return;
  try {
    client_.command({"XGROUP", "CREATE", stream_key(model), kGroup, "0", "MKSTREAM"});
  } catch (const Error& error) {
    // BUSYGROUP: another process made it first.
    if (std::string(error.what()).find("BUSYGROUP") == std::string::npos) throw;
  }
  grouped_.insert(model);
}

void RedisJobQueue::submit(const std::string& id, const json& request, const json& spec,
                           const std::string& task, int priority, double created_at) {
  const std::string model = request.at("model").get<std::string>();
  ensure_group(model);
  client_.command(
      script_call(kSubmit, id, {kIndex, stream_key(model)},
                  {seconds_text(created_at), json{{"state", "queued"}, {"at", created_at}}.dump(), "id", id,
                   "request", request.dump(), "spec", spec.dump(), "model", model, "task", task, "priority",
                   std::to_string(priority), "state", "queued", "created_at", seconds_text(created_at)}));
}

std::optional<RedisClaim> RedisJobQueue::claim(const std::string& worker,
                                               const std::vector<std::string>& models,
                                               std::chrono::milliseconds lease,
                                               std::chrono::milliseconds block) {
  try {
    return take(worker, models, lease, block);
  } catch (const Error&) {
    // A broker that restarted without its data has lost the groups too: they are made again next time.
    grouped_.clear();
    throw;
  }
}

std::optional<RedisClaim> RedisJobQueue::take(const std::string& worker,
                                              const std::vector<std::string>& models,
                                              std::chrono::milliseconds lease,
                                              std::chrono::milliseconds block) {
  if (!backlog_.empty()) {
    RedisClaim claim = backlog_.front();
    backlog_.erase(backlog_.begin());
    return claim;
  }
  for (const std::string& model : models) {
    ensure_group(model);
    // The pending list is scanned in pages; a page may hold only live workers' claims.
    std::string cursor = "0-0";
    do {
      const RedisReply reply = client_.command({"XAUTOCLAIM", stream_key(model), kGroup, worker,
                                                std::to_string(lease.count()), cursor, "COUNT", "1"});
      cursor = reply.elements.at(0).text;
      for (const RedisReply& entry : reply.elements.at(1).elements)
        if (entry.kind == RedisReply::Kind::Array && entry.elements.size() == 2)
          return RedisClaim{field_of(entry.elements[1], "id").value_or(""), model, entry.elements[0].text};
    } while (cursor != "0-0");
  }
  std::vector<std::string> words = {
      "XREADGROUP", "GROUP", kGroup, worker, "COUNT", "1", "BLOCK", std::to_string(block.count()), "STREAMS"};
  for (const std::string& model : models) words.push_back(stream_key(model));
  words.insert(words.end(), models.size(), ">");
  const RedisReply reply = client_.command(words);
  // One entry of each stream may come; the others wait here for the next calls.
  for (const RedisReply& stream : reply.elements) {
    const std::string model = stream.elements.at(0).text.substr(std::string("canvas:jobs:").size());
    for (const RedisReply& entry : stream.elements.at(1).elements)
      backlog_.push_back(
          {field_of(entry.elements.at(1), "id").value_or(""), model, entry.elements.at(0).text});
  }
  if (backlog_.empty()) return std::nullopt;
  return take(worker, models, lease, block);
}

void RedisJobQueue::renew(const std::string& worker, const RedisClaim& claim) {
  client_.command({"XCLAIM", stream_key(claim.model), kGroup, worker, "0", claim.entry, "JUSTID"});
}

void RedisJobQueue::ack(const RedisClaim& claim) {
  client_.command({"XACK", stream_key(claim.model), kGroup, claim.entry});
}

std::optional<int> RedisJobQueue::start(const std::string& id, const std::string& worker) {
  const RedisReply reply = client_.command(
      script_call(kStart, id, {},
                  {worker, seconds_text(now_seconds()),
                   json{{"state", "running"}, {"worker", worker}, {"at", now_seconds()}}.dump()}));
  if (reply.integer < 0) return std::nullopt;
  return static_cast<int>(reply.integer);
}

bool RedisJobQueue::emit(const std::string& id, const std::string& type, const json& data) {
  return client_.command(script_call(kEmitEvent, id, {}, {type, data.dump()})).integer == 1;
}

bool RedisJobQueue::complete(const std::string& id, const std::string& worker, const std::string& state,
                             const std::string& error, const json& outcome,
                             const std::vector<std::string>& pngs) {
  const double at = now_seconds();
  json data = {{"state", state}, {"worker", worker}, {"at", at}};
  if (!error.empty()) data["error"] = error;
  std::vector<std::string> arguments = {worker, state, data.dump(), seconds_text(at), error};
  if (!outcome.is_null()) {
    arguments.insert(arguments.end(), {"outcome", outcome.dump()});
    for (size_t index = 0; index < pngs.size(); ++index)
      arguments.insert(arguments.end(), {"png:" + std::to_string(index), pngs[index]});
  }
  return client_.command(script_call(kComplete, id, {}, arguments)).integer == 1;
}

bool RedisJobQueue::cancel(const std::string& id) {
  const json data = {{"state", "cancelled"}, {"error", "cancelled before it started"}};
  return client_.command(script_call(kCancel, id, {}, {seconds_text(now_seconds()), data.dump()})).integer ==
         1;
}

bool RedisJobQueue::remove(const std::string& id) {
  return client_.command(script_call(kRemove, id, {kIndex}, {})).integer == 1;
}

std::optional<RedisJobRecord> RedisJobQueue::record(const std::string& id) {
  // The PNGs stay on the broker until asked for.
  const std::vector<std::string> fields = {
      "request",      "spec",  "model",      "task",       "priority",    "state",    "worker",
      "completed_by", "error", "created_at", "started_at", "finished_at", "attempts", "cancel_requested",
      "outcome",      "events"};
  std::vector<std::string> words = {"HMGET", job_key(id)};
  words.insert(words.end(), fields.begin(), fields.end());
  const RedisReply reply = client_.command(words);
  auto value = [&](size_t index) { return reply.elements.at(index).text; };
  auto number = [&](size_t index) { return value(index).empty() ? 0.0 : std::stod(value(index)); };
  if (reply.elements.at(0).is_nil()) return std::nullopt;
  RedisJobRecord record;
  record.id = id;
  record.request = json::parse(value(0));
  record.spec = json::parse(value(1));
  record.model = value(2);
  record.task = value(3);
  record.priority = static_cast<int>(number(4));
  record.state = value(5);
  record.worker = value(6);
  record.completed_by = value(7);
  record.error = value(8);
  record.created_at = number(9);
  record.started_at = number(10);
  record.finished_at = number(11);
  record.attempts = static_cast<int>(number(12));
  record.cancel_requested = value(13) == "1";
  if (!value(14).empty()) record.outcome = json::parse(value(14));
  record.events = static_cast<int64_t>(number(15));
  return record;
}

std::optional<std::string> RedisJobQueue::png(const std::string& id, int index) {
  const RedisReply reply = client_.command({"HGET", job_key(id), "png:" + std::to_string(index)});
  if (reply.is_nil()) return std::nullopt;
  return reply.text;
}

std::vector<std::string> RedisJobQueue::job_ids() {
  std::vector<std::string> ids;
  for (const RedisReply& id : client_.command({"ZRANGE", kIndex, "0", "-1"}).elements) ids.push_back(id.text);
  return ids;
}

std::vector<RedisJobEvent> RedisJobQueue::events_of(const std::string& id, int64_t after) {
  std::vector<RedisJobEvent> events;
  for (const RedisReply& entry : client_.command({"XRANGE", events_key(id), "-", "+"}).elements) {
    RedisJobEvent event = event_of(entry, id);
    if (event.sequence > after) events.push_back(std::move(event));
  }
  return events;
}

std::string RedisJobQueue::feed_position() {
  const RedisReply last = client_.command({"XREVRANGE", kFeed, "+", "-", "COUNT", "1"});
  return last.elements.empty() ? "0-0" : last.elements.front().elements.at(0).text;
}

std::vector<RedisJobEvent> RedisJobQueue::follow(std::string& cursor, std::chrono::milliseconds block) {
  const RedisReply reply = client_.command(
      {"XREAD", "COUNT", "1000", "BLOCK", std::to_string(block.count()), "STREAMS", kFeed, cursor});
  std::vector<RedisJobEvent> events;
  for (const RedisReply& stream : reply.elements) {
    for (const RedisReply& entry : stream.elements.at(1).elements) {
      events.push_back(event_of(entry, ""));
      cursor = entry.elements.at(0).text;
    }
  }
  return events;
}

void RedisJobQueue::heartbeat(const std::string& worker, const json& info, std::chrono::milliseconds ttl) {
  json beat = info;
  beat["name"] = worker;
  beat["last_seen"] = now_seconds();
  client_.pipeline({{"SET", worker_key(worker), beat.dump(), "PX", std::to_string(ttl.count())},
                    {"ZADD", kWorkers, seconds_text(now_seconds()), worker}});
}

void RedisJobQueue::leave(const std::string& worker) {
  client_.pipeline({{"DEL", worker_key(worker)}, {"ZREM", kWorkers, worker}});
}

json RedisJobQueue::workers() {
  json live = json::array();
  for (const RedisReply& name : client_.command({"ZRANGE", kWorkers, "0", "-1"}).elements) {
    const RedisReply beat = client_.command({"GET", worker_key(name.text)});
    if (beat.is_nil()) {
      // Its heartbeat expired: the worker stopped without leaving.
      client_.command({"ZREM", kWorkers, name.text});
      continue;
    }
    live.push_back(json::parse(beat.text));
  }
  return live;
}

}  // namespace canvas::app
