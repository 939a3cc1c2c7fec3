#include "farm/redis_client.h"

#include <hiredis/hiredis.h>

#include <charconv>

namespace tr::farm {
namespace {

timeval to_timeval(std::chrono::milliseconds ms) {
  timeval tv{};
  tv.tv_sec = static_cast<time_t>(ms.count() / 1000);
  tv.tv_usec = static_cast<suseconds_t>((ms.count() % 1000) * 1000);
  return tv;
}

Reply convert(const redisReply* r) {
  Reply out;
  if (!r) return out;
  switch (r->type) {
    case REDIS_REPLY_INTEGER:
      out.type = Reply::Type::kInteger;
      out.integer = r->integer;
      break;
    case REDIS_REPLY_STRING:
      out.type = Reply::Type::kString;
      out.str.assign(r->str, r->len);
      break;
    case REDIS_REPLY_STATUS:
      out.type = Reply::Type::kStatus;
      out.str.assign(r->str, r->len);
      break;
    case REDIS_REPLY_ERROR:
      out.type = Reply::Type::kError;
      out.str.assign(r->str, r->len);
      break;
    case REDIS_REPLY_ARRAY:
      out.type = Reply::Type::kArray;
      out.elements.reserve(r->elements);
      for (size_t i = 0; i < r->elements; ++i) out.elements.push_back(convert(r->element[i]));
      break;
    default:
      out.type = Reply::Type::kNil;
  }
  return out;
}

bool parse_int(const std::string& s, int* v) {
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), *v);
  return ec == std::errc() && p == s.data() + s.size();
}

}  // namespace

std::string RedisUrl::text() const {
  const bool v6 = host.find(':') != std::string::npos;
  return "redis://" + (v6 ? "[" + host + "]" : host) + ":" + std::to_string(port) + "/" +
         std::to_string(db);
}

Result<RedisUrl> parse_redis_url(const std::string& url) {
  const std::string scheme = "redis://";
  auto bad = [&](const std::string& why) {
    return BadInput("bad Redis URL '" + url + "': " + why + " (expected redis://HOST[:PORT][/DB])");
  };
  if (url.rfind(scheme, 0) != 0) return bad("it must start with redis://");
  std::string rest = url.substr(scheme.size());
  RedisUrl u;
  if (rest.find('@') != std::string::npos) return bad("credentials in the URL are not supported");
  std::string hostport = rest, db;
  if (auto slash = rest.find('/'); slash != std::string::npos) {
    hostport = rest.substr(0, slash);
    db = rest.substr(slash + 1);
  }
  std::string port;
  if (!hostport.empty() && hostport[0] == '[') {
    auto close = hostport.find(']');
    if (close == std::string::npos) return bad("unclosed '['");
    u.host = hostport.substr(1, close - 1);
    std::string after = hostport.substr(close + 1);
    if (!after.empty()) {
      if (after[0] != ':') return bad("junk after ']'");
      port = after.substr(1);
    }
  } else {
    auto colon = hostport.rfind(':');
    u.host = hostport.substr(0, colon);
    if (colon != std::string::npos) port = hostport.substr(colon + 1);
  }
  if (u.host.empty()) return bad("no host");
  if (!port.empty() && (!parse_int(port, &u.port) || u.port < 1 || u.port > 65535))
    return bad("port must be 1..65535");
  if (!db.empty() && (!parse_int(db, &u.db) || u.db < 0)) return bad("DB must be a number >= 0");
  return u;
}

RedisClient::RedisClient(RedisUrl url, std::chrono::milliseconds timeout)
    : url_(std::move(url)), timeout_(timeout) {}

RedisClient::~RedisClient() { drop(); }

void RedisClient::drop() {
  if (ctx_) redisFree(ctx_);
  ctx_ = nullptr;
}

Status RedisClient::connect() {
  drop();
  redisContext* c = redisConnectWithTimeout(url_.host.c_str(), url_.port, to_timeval(timeout_));
  if (!c) return RuntimeError("Redis " + url_.text() + ": cannot allocate a connection");
  if (c->err) {
    std::string why = c->errstr;
    redisFree(c);
    return RuntimeError("Redis " + url_.text() + ": " + why);
  }
  ctx_ = c;
  if (url_.db != 0) {
    auto r = command({"SELECT", std::to_string(url_.db)});
    if (!r.ok()) return r.error();
    if (r->is_error()) {
      drop();
      return RuntimeError("Redis " + url_.text() + ": SELECT: " + r->str);
    }
  }
  return Status::Ok();
}

Result<Reply> RedisClient::command(const std::vector<std::string>& args,
                                   std::chrono::milliseconds extra) {
  if (!ctx_) {
    if (Status s = connect(); !s.ok()) return s.error();
  }
  // The deadline of this command: a BLOCK read waits its block time on the server first.
  redisSetTimeout(ctx_, to_timeval(timeout_ + extra));
  std::vector<const char*> argv;
  std::vector<size_t> lens;
  for (const auto& a : args) {
    argv.push_back(a.data());
    lens.push_back(a.size());
  }
  auto* raw = static_cast<redisReply*>(
      redisCommandArgv(ctx_, static_cast<int>(args.size()), argv.data(), lens.data()));
  if (!raw) {
    std::string why = ctx_->errstr[0] ? ctx_->errstr : "connection lost";
    drop();  // the context cannot be used after an I/O error or timeout
    return RuntimeError("Redis " + url_.text() + ": " + (args.empty() ? "" : args[0]) + ": " + why);
  }
  Reply r = convert(raw);
  freeReplyObject(raw);
  return r;
}

}  // namespace tr::farm
