// talkrender submit: put a render job on the farm's Redis stream (docs/farm.md).
#include <fmt/format.h>
#include <sys/stat.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <climits>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <random>
#include <string>

#include "cli/cli_util.h"
#include "cli/commands.h"
#include "common/files.h"
#include "farm/job.h"
#include "farm/redis_client.h"
#include "farm/worker.h"

namespace tr::cli {
namespace {

std::string new_job_id() {
  std::random_device rd;
  const auto now = std::chrono::duration_cast<std::chrono::milliseconds>(
                       std::chrono::system_clock::now().time_since_epoch())
                       .count();
  return fmt::format("j{:x}-{:08x}", now, rd());
}

}  // namespace

int cmd_submit(int argc, char** argv) {
  std::string url, stream = "talkrender:jobs", group = "renderers", in_root;
  farm::FarmJob job;
  std::string audio;
  int64_t frames = 0, batch = 0, crf = 0;
  bool by_path = false, json_out = false;
  int64_t max_queue = farm::kDefaultMaxQueue;
  CLI::App app{
      "Submit a render job to the farm: the job goes on a Redis stream for `talkrender "
      "worker` to render as `talkrender render` would with the same flags. Prints the job "
      "id.",
      "talkrender submit"};
  app.add_option("--redis", url, "Redis server: redis://HOST[:PORT][/DB]")->required();
  app.add_option("--stream", stream, "job stream (default talkrender:jobs)");
  app.add_option("--group", group,
                 "consumer group created with the stream if missing (default renderers)");
  app.add_option("--avatar", job.avatar, "avatar package name under the workers' --avatars")
      ->required();
  app.add_option("--audio,-a", audio,
                 "speech audio file: its bytes travel in the job (up to 16 MiB); larger "
                 "files (or --by-path) are referenced by their path under --in-root")
      ->required();
  app.add_option("--out,-o", job.out,
                 "output relative to the workers' --out-root: NAME.mp4, DIR/ or "
                 "DIR/NAME_%06d.png, as render's --out")
      ->required();
  app.add_option("--in-root", in_root,
                 "the workers' --in-root as seen from here: audio under it can be "
                 "referenced by path");
  app.add_flag("--by-path", by_path, "reference --audio by its path under --in-root");
  app.add_option("--id", job.id, "job id (default: generated); 1-128 of A-Z a-z 0-9 . _ : -");
  app.add_option("--frames", frames, "render only the first N frames (as render)");
  app.add_option("--batch", batch, "frames per inference batch (as render)");
  app.add_option("--crf", crf, "H.264 quality, x264 CRF 0..51 (as render)");
  app.add_option("--format", job.format, "image sequence format: png or jpg (as render)");
  app.add_option("--precision", job.precision, "fp32, bf16, fp16 or auto (as render)");
  app.add_option("--max-queue", max_queue,
                 "refuse the job (exit 3) while the stream holds this many jobs, queued or "
                 "running (default 10000): the queue is bounded")
      ->check(CLI::Range(int64_t{1}, int64_t{10000000}));
  app.add_flag("--json", json_out, "print {\"id\", \"entry\"} as JSON");
  app.footer(
      "The job is checked as a worker checks it (names, paths, render options) before it is "
      "sent. Exit codes: 0 submitted, 2 bad input, 3 Redis failure.");
  if (int rc = parse_args(app, argc, argv); rc >= 0) return rc;
  auto u = farm::parse_redis_url(url);
  if (!u.ok()) return report_error(app, u.error());
  if (job.id.empty()) job.id = new_job_id();
  if (app.count("--frames")) job.frames = frames;
  if (app.count("--batch")) job.batch = batch;
  if (app.count("--crf")) job.crf = crf;

  struct stat st {};
  if (::stat(audio.c_str(), &st) != 0 || !S_ISREG(st.st_mode))
    return report_error(app, BadInput("--audio " + audio + ": no such file"));
  std::string bytes;
  const bool inline_audio =
      !by_path && static_cast<size_t>(st.st_size) <= farm::kMaxInlineAudioBytes;
  if (inline_audio) {
    auto b = read_file(audio);
    if (!b.ok()) return report_error(app, b.error());
    bytes = std::move(*b);
  } else {
    if (in_root.empty()) {
      return report_error(
          app, BadInput(fmt::format("--audio {} is {} bytes (over 16 MiB) or --by-path: give "
                                    "--in-root, the folder the workers read audio from",
                                    audio, static_cast<int64_t>(st.st_size))));
    }
    char ra[PATH_MAX], rr[PATH_MAX];
    if (!::realpath(audio.c_str(), ra) || !::realpath(in_root.c_str(), rr))
      return report_error(app, BadInput("cannot resolve --audio or --in-root"));
    std::string a = ra, r = rr;
    if (a.size() <= r.size() + 1 || a.compare(0, r.size(), r) != 0 || a[r.size()] != '/')
      return report_error(app, BadInput("--audio " + audio + " is not under --in-root " + in_root));
    job.audio = a.substr(r.size() + 1);
  }
  const std::string text = job.canonical_json();
  // The worker's own checks, here too, so a bad job is refused before it is queued.
  if (auto p = farm::parse_job(text, inline_audio); !p.ok()) return report_error(app, p.error());

  farm::RedisClient c(*u, std::chrono::milliseconds(10000));
  if (Status s = farm::ensure_group(c, stream, group); !s.ok()) return report_error(app, s.error());
  auto len = c.command({"XLEN", stream});
  if (!len.ok()) return report_error(app, len.error());
  if (len->integer >= max_queue) {
    return report_error(
        app, RuntimeError(fmt::format("the queue {} is full ({} jobs, --max-queue {}); try later",
                                      stream, len->integer, max_queue)));
  }
  std::vector<std::string> cmd = {"XADD", stream, "*", "job", text};
  if (inline_audio) {
    cmd.push_back("audio");
    cmd.push_back(bytes);
  }
  auto r = c.command(cmd);
  if (!r.ok()) return report_error(app, r.error());
  if (r->is_error()) return report_error(app, RuntimeError("XADD " + stream + ": " + r->str));
  if (json_out) {
    std::printf("%s\n", nlohmann::json({{"id", job.id}, {"entry", r->str}}).dump().c_str());
  } else {
    std::printf("%s\n", job.id.c_str());
  }
  return 0;
}

}  // namespace tr::cli
