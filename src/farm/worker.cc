#include "farm/worker.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>

#include "common/files.h"
#include "common/interrupt.h"
#include "farm/job.h"

namespace tr::farm {
namespace {

using nlohmann::json;
using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

std::atomic<bool> g_stop{false};

// KEYS: jobs, results, dead, errors. ARGV: group, entry, consumer, to_dead (0|1), the
// streams' MAXLEN, then field/value pairs for the result (and dead-letter) entry. Only the entry's
// owner may finish it: a worker that lost its lease finds another owner here and reports nothing.
constexpr const char* kFinishScript = R"lua(
local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[2], ARGV[2], 1)
if #p == 0 or p[1][2] ~= ARGV[3] then return 0 end
local fields = {}
for i = 6, #ARGV do fields[#fields + 1] = ARGV[i] end
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[5], '*', unpack(fields))
if ARGV[4] == '1' then redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[5], '*', unpack(fields)) end
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[1], ARGV[2])
redis.call('HDEL', KEYS[4], ARGV[2])
return 1
)lua";

// KEYS: jobs. ARGV: group, entry, consumer, idle ms. Re-claims the entry for its owner
// with the given idle time: 0 is the heartbeat, a large one hands the entry back.
constexpr const char* kClaimScript = R"lua(
local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[2], ARGV[2], 1)
if #p == 0 or p[1][2] ~= ARGV[3] then return 0 end
redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[3], 0, ARGV[2], 'IDLE', ARGV[4], 'JUSTID')
return 1
)lua";

void log_line(const std::string& who, const std::string& msg) {
  std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char ts[32];
  std::strftime(ts, sizeof ts, "%H:%M:%S", &tm);
  std::fprintf(stderr, "%s worker %s: %s\n", ts, who.c_str(), msg.c_str());
  std::fflush(stderr);
}

// Redis errors that go away by waiting: a restarting server still loading its data, a
// replica, or a group lost with a server restarted without persistence (recreated).
bool retryable_reply(const Reply& r) {
  return r.is_error() && (r.str.rfind("LOADING", 0) == 0 || r.str.rfind("NOGROUP", 0) == 0 ||
                          r.str.rfind("BUSY", 0) == 0 || r.str.rfind("TRYAGAIN", 0) == 0);
}

struct Entry {
  std::string id;
  std::vector<std::pair<std::string, std::string>> fields;  // empty: deleted entry
  bool deleted = false;
  const std::string* field(const std::string& k) const {
    for (const auto& [f, v] : fields)
      if (f == k) return &v;
    return nullptr;
  }
};

// [[id, [f, v, ...]], ...] as XREADGROUP's per-stream list and XAUTOCLAIM's second part.
std::vector<Entry> parse_entries(const Reply& list) {
  std::vector<Entry> out;
  if (!list.is_array()) return out;
  for (const auto& e : list.elements) {
    if (!e.is_array() || e.elements.size() < 2 || !e.elements[0].is_string()) continue;
    Entry en;
    en.id = e.elements[0].str;
    const Reply& kv = e.elements[1];
    if (!kv.is_array()) {
      en.deleted = true;
    } else {
      for (size_t i = 0; i + 1 < kv.elements.size(); i += 2)
        en.fields.emplace_back(kv.elements[i].str, kv.elements[i + 1].str);
    }
    out.push_back(std::move(en));
  }
  return out;
}

class Worker {
 public:
  explicit Worker(const WorkerOptions& o)
      : o_(o), keys_(o.stream), redis_(o.redis, o.redis_timeout) {}

  Status run();

 private:
  // Runs `cmd` until Redis answers (reconnecting with backoff). Fails only when
  // interrupted (second signal) or on a reply error that waiting cannot fix.
  Result<Reply> call(const std::vector<std::string>& cmd, milliseconds extra = milliseconds(0),
                     bool stop_on_request = false);
  Result<std::optional<Entry>> next_entry();
  int64_t deliveries(const std::string& entry);
  // Finishes the entry: result (+ dead letter), ack, delete. False when not ours anymore.
  Result<bool> finish(const std::string& entry, bool dead,
                      const std::vector<std::pair<std::string, std::string>>& fields);
  Status dead_letter(const Entry& e, const std::string& job_id, const std::string& job_json,
                     int64_t delivered, const Error& err);
  Status process(const Entry& e);
  void hand_back(const std::string& entry);

  const WorkerOptions& o_;
  StreamKeys keys_;
  RedisClient redis_;
  std::string autoclaim_cursor_ = "0-0";
  int64_t finished_ = 0;
};

Result<Reply> Worker::call(const std::vector<std::string>& cmd, milliseconds extra,
                           bool stop_on_request) {
  milliseconds backoff(100);
  for (int attempt = 0;; ++attempt) {
    if (interrupted()) return Interrupted("interrupted while waiting for Redis");
    auto r = redis_.command(cmd, extra);
    if (r.ok() && !retryable_reply(*r)) return r;
    const std::string why = r.ok() ? r->str : r.error().message;
    if (attempt == 0 || attempt % 10 == 0)
      log_line(o_.name, fmt::format("Redis unavailable ({}); retrying every <= {} ms", why,
                                    o_.max_backoff.count()));
    if (r.ok() && r->str.rfind("NOGROUP", 0) == 0) {
      (void)ensure_group(redis_, keys_.jobs, o_.group);
    }
    if (stop_on_request && stop_requested()) return Interrupted("stopping");
    std::this_thread::sleep_for(backoff);
    backoff = std::min(o_.max_backoff, backoff * 2);
  }
}

Result<std::optional<Entry>> Worker::next_entry() {
  // 1. Our own pending entries first: after a reconnect, a restart under the same name, or
  //    a failed render to retry (reading them again counts a delivery).
  auto own =
      call({"XREADGROUP", "GROUP", o_.group, o_.name, "COUNT", "1", "STREAMS", keys_.jobs, "0"},
           milliseconds(0), true);
  if (!own.ok()) return own.error();
  if (own->is_array() && !own->elements.empty()) {
    auto es = parse_entries(own->elements[0].elements.size() > 1 ? own->elements[0].elements[1]
                                                                 : Reply{});
    if (!es.empty()) return std::optional<Entry>(es[0]);
  }
  // 2. Entries another worker held past the lease without a heartbeat.
  auto claimed = call({"XAUTOCLAIM", keys_.jobs, o_.group, o_.name,
                       std::to_string(o_.lease.count()), autoclaim_cursor_, "COUNT", "1"},
                      milliseconds(0), true);
  if (!claimed.ok()) return claimed.error();
  if (claimed->is_array() && claimed->elements.size() >= 2) {
    autoclaim_cursor_ = claimed->elements[0].is_string() ? claimed->elements[0].str : "0-0";
    auto es = parse_entries(claimed->elements[1]);
    if (!es.empty()) {
      log_line(o_.name, "took over entry " + es[0].id + " (idle past the lease)");
      return std::optional<Entry>(es[0]);
    }
  }
  if (stop_requested()) return std::optional<Entry>();
  // 3. New entries, waiting at most `block`.
  auto fresh = call({"XREADGROUP", "GROUP", o_.group, o_.name, "COUNT", "1", "BLOCK",
                     std::to_string(o_.block.count()), "STREAMS", keys_.jobs, ">"},
                    o_.block, true);
  if (!fresh.ok()) return fresh.error();
  if (fresh->is_array() && !fresh->elements.empty() && fresh->elements[0].elements.size() > 1) {
    auto es = parse_entries(fresh->elements[0].elements[1]);
    if (!es.empty()) return std::optional<Entry>(es[0]);
  }
  return std::optional<Entry>();
}

int64_t Worker::deliveries(const std::string& entry) {
  auto r = call({"XPENDING", keys_.jobs, o_.group, entry, entry, "1"});
  if (r.ok() && r->is_array() && !r->elements.empty() && r->elements[0].elements.size() >= 4)
    return r->elements[0].elements[3].integer;
  return 1;
}

Result<bool> Worker::finish(const std::string& entry, bool dead,
                            const std::vector<std::pair<std::string, std::string>>& fields) {
  std::vector<std::string> cmd = {"EVAL",       kFinishScript,    "4",
                                  keys_.jobs,   keys_.results,    keys_.dead,
                                  keys_.errors, o_.group,         entry,
                                  o_.name,      dead ? "1" : "0", std::to_string(kMaxResults)};
  for (const auto& [f, v] : fields) {
    cmd.push_back(f);
    cmd.push_back(v);
  }
  // Retried until Redis answers: the script checks ownership first, so running it twice
  // (a reply lost with the connection) reports the job once.
  auto r = call(cmd);
  if (!r.ok()) return r.error();
  if (r->is_error()) return RuntimeError("finishing entry " + entry + ": " + r->str);
  return r->integer == 1;
}

Status Worker::dead_letter(const Entry& e, const std::string& job_id, const std::string& job_json,
                           int64_t delivered, const Error& error) {
  // Every error names the job it is about.
  Error err = error;
  if (err.message.rfind("job ", 0) != 0 && err.message.rfind("entry ", 0) != 0)
    err.message = "job " + job_id + ": " + err.message;
  auto ok = finish(e.id, true,
                   {{"id", job_id},
                    {"entry", e.id},
                    {"status", "dead"},
                    {"exit_code", std::to_string(err.exit_code())},
                    {"error", err.message},
                    {"deliveries", std::to_string(delivered)},
                    {"worker", o_.name},
                    {"job", job_json.substr(0, kMaxJobJsonBytes)}});
  if (!ok.ok()) return ok.error();
  log_line(o_.name, fmt::format("job {} (entry {}) -> dead letter after {} deliveries: {}", job_id,
                                e.id, delivered, err.message));
  if (*ok) ++finished_;
  return Status::Ok();
}

void Worker::hand_back(const std::string& entry) {
  // A huge idle time makes the entry eligible for XAUTOCLAIM by any worker right away.
  // Best effort on a fresh connection: the loop's may be mid-command.
  RedisClient c(o_.redis, o_.redis_timeout);
  auto r =
      c.command({"EVAL", kClaimScript, "1", keys_.jobs, o_.group, entry, o_.name, "1000000000"});
  log_line(o_.name, "handed entry " + entry + " back" +
                        (r.ok() && !r->is_error() ? ""
                                                  : " (Redis unreachable: it returns "
                                                    "after the lease)"));
}

// Keeps the entry's idle time under the lease while a render runs.
class Heartbeat {
 public:
  Heartbeat(const WorkerOptions& o, const StreamKeys& keys, std::string entry)
      : o_(o), keys_(keys), entry_(std::move(entry)), thread_([this] { loop(); }) {}
  ~Heartbeat() {
    {
      std::lock_guard<std::mutex> l(mu_);
      done_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }
  bool lost() const { return lost_.load(); }

 private:
  void loop() {
    RedisClient c(o_.redis, o_.redis_timeout);
    const milliseconds period = std::max(milliseconds(100), o_.lease / 3);
    std::unique_lock<std::mutex> l(mu_);
    while (!cv_.wait_for(l, period, [this] { return done_; })) {
      l.unlock();
      auto r = c.command({"EVAL", kClaimScript, "1", keys_.jobs, o_.group, entry_, o_.name, "0"});
      // A lost connection is retried at the next beat (command() reconnects).
      if (r.ok() && !r->is_error() && r->integer == 0 && !lost_.exchange(true)) {
        log_line(o_.name, "lost entry " + entry_ + " to another worker (lease expired)");
      }
      l.lock();
    }
  }
  const WorkerOptions& o_;
  const StreamKeys& keys_;
  std::string entry_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool done_ = false;
  std::atomic<bool> lost_{false};
  std::thread thread_;
};

// A delivery after the first: the previous holder died or lost its lease, and may have
// left its MP4 writer's temporaries ("<out>.tmp-PID", "<out>.new-PID") beside the output.
void remove_stale_temporaries(const std::string& out) {
  if (out.empty() || out.back() == '/') return;
  namespace fs = std::filesystem;
  const fs::path p(out);
  const std::string base = p.filename().string();
  std::error_code ec;
  for (const auto& d : fs::directory_iterator(p.parent_path(), ec)) {
    const std::string n = d.path().filename().string();
    if (n.rfind(base + ".tmp-", 0) == 0 || n.rfind(base + ".new-", 0) == 0) {
      std::error_code rm;
      if (d.is_regular_file(rm)) fs::remove(d.path(), rm);
    }
  }
}

std::string manifest_path_for(const std::string& out) {
  std::string p = out;
  while (p.size() > 1 && p.back() == '/') p.pop_back();
  return p + ".manifest.json";
}

Status Worker::process(const Entry& e) {
  const int64_t delivered = deliveries(e.id);
  const std::string* job_text = e.field("job");
  const std::string* audio_bytes = e.field("audio");
  const std::string raw_json = job_text ? *job_text : std::string();
  if (e.deleted) {
    // Deleted while pending (e.g. finished by another worker after we lost the lease).
    (void)call({"XACK", keys_.jobs, o_.group, e.id});
    return Status::Ok();
  }
  if (!job_text) {
    return dead_letter(e, e.id, "", delivered, BadInput("entry " + e.id + " has no \"job\" field"));
  }
  auto job = parse_job(*job_text, audio_bytes != nullptr);
  if (!job.ok()) {
    // Nothing to retry: the same bytes fail the same way. Named by its id when it has a
    // usable one, else by the entry.
    std::string name = e.id;
    json j = json::parse(*job_text, nullptr, false);
    if (j.is_object() && j.contains("id") && j["id"].is_string()) {
      std::string id = j["id"].get<std::string>();
      if (!id.empty() && id.size() <= 128 && id.find_first_of("\r\n\"") == std::string::npos)
        name = id;
    }
    return dead_letter(e, name, raw_json, delivered,
                       BadInput("entry " + e.id + ": " + job.error().message));
  }
  if (audio_bytes && audio_bytes->size() > kMaxInlineAudioBytes) {
    return dead_letter(e, job->id, raw_json, delivered,
                       BadInput(fmt::format("job {}: {} audio bytes, more than the {} allowed",
                                            job->id, audio_bytes->size(), kMaxInlineAudioBytes)));
  }
  if (delivered > o_.max_deliveries) {
    // Delivered too often without a result: workers died on it, or its retries failed.
    std::string last = "delivered " + std::to_string(delivered) +
                       " times without a result (the workers holding it stopped)";
    int code = 3;
    auto h = call({"HGET", keys_.errors, e.id});
    if (h.ok() && h->type == Reply::Type::kString) {
      json j = json::parse(h->str, nullptr, false);
      if (j.is_object()) {
        last = j.value("error", last);
        code = j.value("exit_code", 3);
      }
    }
    return dead_letter(e, job->id, raw_json, delivered,
                       Error{code == 2 ? ErrorKind::kBadInput : ErrorKind::kRuntime, last});
  }

  // Paths: refused at once (and for good) when they leave their roots.
  render::RenderJobOptions ro = o_.render_base;
  auto avatar = resolve_avatar(o_.avatars, job->avatar);
  if (!avatar.ok()) return dead_letter(e, job->id, raw_json, delivered, avatar.error());
  auto out = prepare_output(o_.out_root, job->out);
  if (!out.ok()) {
    if (out.error().kind == ErrorKind::kBadInput)
      return dead_letter(e, job->id, raw_json, delivered, out.error());
  }
  std::string audio_path, audio_hash;
  if (!job->audio.empty()) {
    if (o_.in_root.empty()) {
      return dead_letter(e, job->id, raw_json, delivered,
                         BadInput("job " + job->id +
                                  ": audio is a path, and this worker has "
                                  "no --in-root"));
    }
    auto in = resolve_input(o_.in_root, job->audio);
    if (!in.ok()) return dead_letter(e, job->id, raw_json, delivered, in.error());
    audio_path = *in;
  }

  Error failure;
  bool ok = false;
  json report;
  std::string tmp_audio;
  const auto t0 = Clock::now();
  do {
    if (!out.ok()) {
      failure = out.error();
      break;
    }
    if (audio_bytes) {
      audio_hash = fnv1a64_hex(*audio_bytes);
      tmp_audio = fmt::format("{}/talkrender-farm-{}-{}.audio", o_.tmp_dir, ::getpid(), e.id);
      if (Status s = write_file_atomic(tmp_audio, *audio_bytes); !s.ok()) {
        failure = s.error();
        break;
      }
      audio_path = tmp_audio;
    } else {
      auto h = fnv1a64_file_hex(audio_path);
      if (!h.ok()) {
        failure = h.error();
        break;
      }
      audio_hash = *h;
    }
    // Already rendered (a redelivery after the output was published): finish without
    // rendering again.
    const std::string manifest_path = manifest_path_for(*out);
    const std::string canonical = job->canonical_json();
    if (path_exists(*out) && path_exists(manifest_path)) {
      auto m = read_file(manifest_path);
      json mj = m.ok() ? json::parse(*m, nullptr, false) : json();
      if (mj.is_object() && mj.value("job", "") == canonical &&
          mj.value("audio_fnv1a64", "") == audio_hash) {
        report = mj.value("report", json::object());
        report["skipped"] = "output and manifest already there: rendered by an earlier delivery";
        log_line(o_.name, "job " + job->id + ": output already rendered, finishing");
        ok = true;
        break;
      }
    }
    if (delivered > 1) remove_stale_temporaries(*out);
    ro.package_dir = *avatar;
    ro.audio_path = audio_path;
    ro.out_path = *out;
    // The farm owns the paths under --out-root: a job replaces what is at its out.
    ro.overwrite = true;
    ro.progress = false;
    if (Status s = apply_job_options(*job, &ro); !s.ok()) {
      failure = s.error();
      break;
    }
    log_line(o_.name, fmt::format("job {} (entry {}, delivery {}): rendering {} -> {}", job->id,
                                  e.id, delivered, job->avatar, job->out));
    Result<render::RenderReport> r = RuntimeError("not run");
    {
      Heartbeat hb(o_, keys_, e.id);
      r = render::run_render_job(ro);
    }
    if (!r.ok()) {
      failure = r.error();
      break;
    }
    report = r->to_json();
    json manifest = {{"job_id", job->id}, {"job", canonical}, {"audio_fnv1a64", audio_hash},
                     {"avatar", *avatar}, {"entry", e.id},    {"worker", o_.name},
                     {"report", report}};
    if (Status s = write_file_atomic(manifest_path, manifest.dump(2) + "\n"); !s.ok()) {
      failure = s.error();
      break;
    }
    ok = true;
  } while (false);
  if (!tmp_audio.empty()) {
    ::unlink(tmp_audio.c_str());
    // Errors name the job's audio, not the worker's temporary copy of it.
    for (size_t at; (at = failure.message.find(tmp_audio)) != std::string::npos;)
      failure.message.replace(at, tmp_audio.size(), "the job's audio");
  }
  if (!failure.message.empty() && failure.message.rfind("job ", 0) != 0)
    failure.message = "job " + job->id + ": " + failure.message;
  const double secs = std::chrono::duration<double>(Clock::now() - t0).count();

  if (ok) {
    auto fin = finish(e.id, false,
                      {{"id", job->id},
                       {"entry", e.id},
                       {"status", "done"},
                       {"exit_code", "0"},
                       {"out", job->out},
                       {"deliveries", std::to_string(delivered)},
                       {"worker", o_.name},
                       {"report", report.dump()}});
    if (!fin.ok()) return fin.error();
    if (*fin) {
      ++finished_;
      log_line(o_.name, fmt::format("job {} (entry {}): done in {:.2f} s -> {}", job->id, e.id,
                                    secs, job->out));
    } else {
      log_line(o_.name, fmt::format("job {} (entry {}): rendered, but another worker owns the "
                                    "entry now; it will find the output and finish it",
                                    job->id, e.id));
    }
    return Status::Ok();
  }
  if (failure.kind == ErrorKind::kInterrupted) {
    hand_back(e.id);
    return failure;
  }
  if (delivered >= o_.max_deliveries) return dead_letter(e, job->id, raw_json, delivered, failure);
  json err = {{"error", failure.message}, {"exit_code", failure.exit_code()}, {"worker", o_.name}};
  (void)call({"HSET", keys_.errors, e.id, err.dump()});
  log_line(o_.name,
           fmt::format("job {} (entry {}, delivery {} of {}): failed (exit {}): {}", job->id, e.id,
                       delivered, o_.max_deliveries, failure.exit_code(), failure.message));
  return Status::Ok();
}

Status Worker::run() {
  log_line(o_.name,
           fmt::format("started on {} stream {} group {} (lease {} ms, max deliveries "
                       "{})",
                       o_.redis.text(), keys_.jobs, o_.group, o_.lease.count(), o_.max_deliveries));
  // The group, retried like every other call until Redis is there.
  for (milliseconds backoff(100);; backoff = std::min(o_.max_backoff, backoff * 2)) {
    if (interrupted() || stop_requested()) return Status::Ok();
    Status s = ensure_group(redis_, keys_.jobs, o_.group);
    if (s.ok()) break;
    log_line(o_.name, s.message() + "; retrying");
    std::this_thread::sleep_for(backoff);
  }
  milliseconds error_backoff(0);
  while (!stop_requested()) {
    if (o_.max_jobs > 0 && finished_ >= o_.max_jobs) break;
    // After an error waiting cannot fix, wait before the entry comes round again, so a
    // persistent failure is a slow retry rather than a busy loop.
    if (error_backoff.count() > 0) std::this_thread::sleep_for(error_backoff);
    auto e = next_entry();
    if (!e.ok()) {
      if (e.error().kind == ErrorKind::kInterrupted) break;
      return e.error();
    }
    if (!*e) continue;
    Status s = process(**e);
    if (!s.ok()) {
      if (s.error().kind == ErrorKind::kInterrupted) break;
      // A Redis error that waiting could not fix: log it; the entry stays pending.
      log_line(o_.name, "entry " + (*e)->id + ": " + s.message());
      error_backoff = std::min(o_.max_backoff, std::max(milliseconds(200), error_backoff * 2));
    } else {
      error_backoff = milliseconds(0);
    }
  }
  log_line(o_.name,
           stop_requested() && !interrupted() ? "stopped after the current job" : "stopped");
  return Status::Ok();
}

}  // namespace

void request_stop() { g_stop.store(true, std::memory_order_relaxed); }
bool stop_requested() { return g_stop.load(std::memory_order_relaxed); }

Status ensure_group(RedisClient& c, const std::string& stream, const std::string& group) {
  auto r = c.command({"XGROUP", "CREATE", stream, group, "0", "MKSTREAM"});
  if (!r.ok()) return r.error();
  if (r->is_error() && r->str.rfind("BUSYGROUP", 0) != 0)
    return RuntimeError("XGROUP CREATE " + stream + " " + group + ": " + r->str);
  return Status::Ok();
}

Status run_worker(const WorkerOptions& o) {
  if (o.name.empty()) return BadInput("worker: no consumer name");
  if (o.max_deliveries < 1) return BadInput("--max-deliveries must be >= 1");
  if (o.lease.count() < 300) return BadInput("--lease must be at least 0.3 s");
  Worker w(o);
  return w.run();
}

}  // namespace tr::farm
