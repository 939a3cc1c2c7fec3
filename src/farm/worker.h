// The render-farm worker: takes jobs (farm/job.h) from a Redis stream through a consumer
// group and renders each with render::run_render_job, the function `talkrender render`
// calls, on the options the same flags would give (docs/farm.md).
//
// Keys, from the stream name S: S (jobs), S:results (one entry per finished job: done with
// the render report, or dead with the error and exit code), S:dead (dead letters: the job,
// its last error and exit code), S:errors (hash: entry id -> last error, while retried).
//
// Delivery: at least once, made effectively exactly once. A render writes to a temporary
// name that is renamed into place, then OUT.manifest.json (job + input fingerprint +
// report); a redelivered job whose output and matching manifest exist is finished without
// rendering. Finishing (result + XACK + XDEL) is one Lua script that first checks that this
// worker still owns the entry, so a job is reported at most once. While rendering, a
// heartbeat thread re-claims the entry every lease/3 so its idle time stays under the
// lease; entries idle longer than the lease are taken over by any worker (XAUTOCLAIM). A
// failed render stays pending and is retried; at `max_deliveries` it goes to S:dead.
// A job that cannot be parsed or names a path outside its root goes to S:dead at once.
//
// Threads: run_worker blocks on the calling thread; one heartbeat thread per render. It
// owns two Redis connections (loop, heartbeat). Every Redis wait has a deadline
// (RedisClient's timeout; reads BLOCK for `block`); a lost connection is retried with
// capped exponential backoff, forever, without acknowledging or dropping the entry held.
// Stopping: request_stop() (async-signal-safe) ends the loop after the current job;
// tr::set_interrupted(true) aborts the render and hands its entry back (re-claimed with a
// large idle time, so another worker takes it at once). Errors: kBadInput for bad
// options, before connecting; otherwise run_worker returns only when stopped.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

#include "common/status.h"
#include "farm/redis_client.h"
#include "render/render_job.h"

namespace tr::farm {

struct WorkerOptions {
  RedisUrl redis;
  std::string stream = "talkrender:jobs";
  std::string group = "renderers";
  std::string name;  // consumer name; the same name after a restart takes its entries back
  std::string avatars, out_root, in_root, tmp_dir;
  std::chrono::milliseconds lease{30000};
  int max_deliveries = 3;
  std::chrono::milliseconds block{2000};          // one XREADGROUP BLOCK wait
  std::chrono::milliseconds redis_timeout{5000};  // connect and command deadline
  std::chrono::milliseconds max_backoff{5000};    // reconnect backoff cap
  int64_t max_jobs = 0;                           // stop after this many finished jobs (0: never)
  // Device, threads, compositing workers: the worker's own (not the job's) options.
  render::RenderJobOptions render_base;
};

// The results and dead-letter streams keep about this many entries (XADD MAXLEN ~): a
// result is ~2 KB (the render report), so at most ~20 MB each. Consumers read them as they
// come (XREAD); `talkrender jobs` shows the newest.
inline constexpr int64_t kMaxResults = 10000;
// `talkrender submit` refuses a job while the stream holds this many (queued + running).
inline constexpr int64_t kDefaultMaxQueue = 10000;

struct StreamKeys {
  std::string jobs, results, dead, errors;
  explicit StreamKeys(const std::string& stream)
      : jobs(stream),
        results(stream + ":results"),
        dead(stream + ":dead"),
        errors(stream + ":errors") {}
};

// Async-signal-safe: finish the current job, then return from run_worker.
void request_stop();
bool stop_requested();

// Creates the consumer group (from the stream's start, MKSTREAM) unless it exists.
Status ensure_group(RedisClient& c, const std::string& stream, const std::string& group);

Status run_worker(const WorkerOptions& o);

}  // namespace tr::farm
