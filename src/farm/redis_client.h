// A thin, blocking Redis client over hiredis for the render farm (farm/worker.h).
//
// Threads: one RedisClient per thread; it is not shared (hiredis contexts are not
// thread-safe). The worker keeps one for its main loop and one for its heartbeat.
// Deadlines: connecting and every command have a timeout; a blocking read's timeout is its
// BLOCK time plus the command timeout. A command that times out or loses the connection
// returns kRuntime and marks the client broken: reconnect() opens a new connection.
// Errors: kBadInput for a malformed URL; kRuntime for connection and I/O failures; a
// Redis error reply (e.g. BUSYGROUP) is a Reply of type kError, not a failed Result, since
// callers decide which error replies are fine.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/status.h"

struct redisContext;

namespace tr::farm {

struct RedisUrl {
  std::string host = "127.0.0.1";
  int port = 6379;
  int db = 0;
  std::string text() const;  // redis://HOST:PORT/DB
};
// redis://HOST[:PORT][/DB] (HOST may be a bracketed IPv6 address).
Result<RedisUrl> parse_redis_url(const std::string& url);

// One reply, copied out of hiredis's tree.
struct Reply {
  enum class Type { kNil, kInteger, kString, kStatus, kError, kArray };
  Type type = Type::kNil;
  int64_t integer = 0;
  std::string str;  // kString, kStatus, kError
  std::vector<Reply> elements;

  bool is_nil() const { return type == Type::kNil; }
  bool is_error() const { return type == Type::kError; }
  bool is_array() const { return type == Type::kArray; }
  bool is_string() const { return type == Type::kString || type == Type::kStatus; }
};

class RedisClient {
 public:
  RedisClient(RedisUrl url, std::chrono::milliseconds timeout);
  ~RedisClient();
  RedisClient(const RedisClient&) = delete;
  RedisClient& operator=(const RedisClient&) = delete;

  // Connects (or reconnects), and SELECTs the URL's database.
  Status connect();
  bool connected() const { return ctx_ != nullptr; }
  const RedisUrl& url() const { return url_; }

  // Sends one command (binary-safe arguments) and waits for its reply, up to the command
  // timeout plus `extra` (for BLOCK reads). Not connected: connects first.
  Result<Reply> command(const std::vector<std::string>& args,
                        std::chrono::milliseconds extra = std::chrono::milliseconds(0));

 private:
  void drop();
  RedisUrl url_;
  std::chrono::milliseconds timeout_;
  redisContext* ctx_ = nullptr;
};

}  // namespace tr::farm
