// talkrender worker: render jobs from a Redis stream (the render farm, docs/farm.md).
#include <signal.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <atomic>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>

#include "cli/cli_util.h"
#include "cli/commands.h"
#include "common/files.h"
#include "common/interrupt.h"
#include "farm/worker.h"

namespace tr::cli {
namespace {

std::atomic<int> g_signals{0};

// First SIGTERM/SIGINT: finish the current job, then exit. Second: abort the render (the
// flag every render loop polls) and hand the job back.
extern "C" void on_worker_signal(int) {
  if (g_signals.fetch_add(1) == 0) {
    farm::request_stop();
  } else {
    set_interrupted(true);
  }
}

Status check_root(const std::string& flag, const std::string& dir, bool writable) {
  if (!is_directory(dir)) return BadInput(flag + " " + dir + ": not a folder");
  if (writable) return check_can_create_in(dir, dir);
  return Status::Ok();
}

}  // namespace

int cmd_worker(int argc, char** argv) {
  farm::WorkerOptions o;
  std::string url, device = "cpu";
  double lease_s = 30.0, block_s = 2.0;
  CLI::App app{
      "Render farm worker: take render jobs from a Redis stream (consumer group) and render "
      "each exactly as `talkrender render` would with the same flags. Results go to "
      "STREAM:results, failed jobs (after --max-deliveries tries, or at once when the job "
      "is malformed or names a path outside its root) to STREAM:dead. See docs/farm.md.",
      "talkrender worker"};
  app.add_option("--redis", url, "Redis server: redis://HOST[:PORT][/DB]")->required();
  app.add_option("--avatars", o.avatars,
                 "folder of avatar packages; a job's \"avatar\" is a folder name in it, never "
                 "a path")
      ->required();
  app.add_option("--out-root", o.out_root,
                 "folder the outputs go under; a job's \"out\" is relative to it (no absolute "
                 "paths, no '..', no symlinks out)")
      ->required();
  app.add_option("--in-root", o.in_root,
                 "folder of audio files for jobs that reference their audio by path (larger "
                 "than 16 MiB); without it only jobs carrying their audio are taken");
  app.add_option("--stream", o.stream, "job stream (default talkrender:jobs)");
  app.add_option("--group", o.group, "consumer group (default renderers)");
  app.add_option("--name", o.name,
                 "consumer name, unique per worker (default HOST-PID); a worker restarted "
                 "under the same name takes back the jobs it held");
  app.add_option("--lease", lease_s,
                 "seconds without a heartbeat after which other workers take a job over "
                 "(default 30; the heartbeat runs every lease/3)");
  app.add_option("--max-deliveries", o.max_deliveries,
                 "deliveries before a failing job goes to the dead-letter stream (default 3)");
  app.add_option("--block", block_s,
                 "seconds one wait for new jobs lasts (default 2): the longest a stop waits "
                 "when idle");
  app.add_option("--tmp-dir", o.tmp_dir,
                 "where audio carried in a job is written for the render (default $TMPDIR "
                 "or /tmp)");
  app.add_option("--max-jobs", o.max_jobs, "exit after this many finished jobs (default: run on)");
  app.add_option("--device", device, "runtime: cpu (default), cuda or ref");
  app.add_option("--threads", o.render_base.threads, "runtime threads (default 0 = one per core)");
  app.add_option("--workers", o.render_base.workers, "compositing threads (default 2)");
  bool verbose = false;
  add_verbose_flag(app, &verbose);
  app.footer(
      "Signals: the first SIGTERM (or Ctrl-C) lets the current job finish and be "
      "acknowledged, then exits 0; a second aborts the render, hands the job back to the "
      "group and exits 0.\n"
      "Redis lost: the worker retries with backoff (capped at 5 s) and keeps its job.\n"
      "Exit codes: 0 stopped, 2 bad flags, 3 Redis failure that waiting cannot fix.");
  if (int rc = parse_args(app, argc, argv); rc >= 0) return rc;
  apply_verbose(verbose);
  auto u = farm::parse_redis_url(url);
  if (!u.ok()) return report_error(app, u.error());
  o.redis = *u;
  if (Status s = check_root("--avatars", o.avatars, false); !s.ok())
    return report_error(app, s.error());
  if (Status s = check_root("--out-root", o.out_root, true); !s.ok())
    return report_error(app, s.error());
  if (!o.in_root.empty()) {
    if (Status s = check_root("--in-root", o.in_root, false); !s.ok())
      return report_error(app, s.error());
  }
  if (o.tmp_dir.empty()) {
    const char* t = std::getenv("TMPDIR");
    o.tmp_dir = t && *t ? t : "/tmp";
  }
  if (Status s = check_root("--tmp-dir", o.tmp_dir, true); !s.ok())
    return report_error(app, s.error());
  if (!(lease_s >= 0.3 && lease_s <= 86400))
    return report_error(app, BadInput("--lease must be 0.3 .. 86400 seconds"));
  if (!(block_s >= 0.01 && block_s <= 60))
    return report_error(app, BadInput("--block must be 0.01 .. 60 seconds"));
  if (o.max_deliveries < 1) return report_error(app, BadInput("--max-deliveries must be >= 1"));
  o.lease = std::chrono::milliseconds(static_cast<int64_t>(lease_s * 1000));
  o.block = std::chrono::milliseconds(static_cast<int64_t>(block_s * 1000));
  auto be = nn::parse_backend(device);
  if (!be.ok()) return report_error(app, be.error());
  o.render_base.backend = *be;
  if (o.name.empty()) {
    char host[HOST_NAME_MAX + 1] = {0};
    ::gethostname(host, sizeof host - 1);
    o.name = std::string(host) + "-" + std::to_string(::getpid());
  }

  struct sigaction sa {};
  sa.sa_handler = on_worker_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = 0;
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);

  Status s = farm::run_worker(o);
  if (!s.ok()) return report_error(app, s.error());
  if (interrupted()) {
    // A render aborted by the second signal may still hold a runtime thread: leave now
    // rather than wait for it in static destructors (as `render` does).
    std::fflush(stderr);
    std::_Exit(0);
  }
  return 0;
}

}  // namespace tr::cli
