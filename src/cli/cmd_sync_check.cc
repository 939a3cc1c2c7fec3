// talkrender sync-check --video V.mp4 (--rect x1,y1,x2,y2 | --package DIR): the audio/video
// offset of a talking-head video (src/sync/sync_check.h does the work).
#include <CLI/CLI.hpp>
#include <cmath>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <sstream>

#include "cli/cli_util.h"
#include "cli/commands.h"
#include "common/files.h"
#include "sync/sync_check.h"

namespace tr::cli {
namespace {

// "x1,y1,x2,y2" (x2/y2 exclusive) -> rect; nullopt when it is not four integers.
std::optional<cv::Rect> parse_rect(const std::string& s) {
  std::istringstream in(s);
  int v[4];
  char comma;
  for (int i = 0; i < 4; ++i) {
    if (!(in >> v[i])) return std::nullopt;
    if (i < 3 && (!(in >> comma) || comma != ',')) return std::nullopt;
  }
  if (in >> comma) return std::nullopt;  // trailing text
  return cv::Rect(v[0], v[1], v[2] - v[0], v[3] - v[1]);
}

nlohmann::json number_or_null(double v) {
  return std::isfinite(v) ? nlohmann::json(v) : nlohmann::json(nullptr);
}

}  // namespace

int cmd_sync_check(int argc, char** argv) {
  CLI::App app{
      "Estimates the audio/video offset of a talking-head video: the mouth region's darkness "
      "(an open mouth shows its dark inside) frame by frame, against the speech loudness on "
      "the same frames, Pearson-correlated at every lag in +-max-lag frames. Both streams are "
      "read on their timestamps (edit lists, -itsoffset, AAC priming), so audio that starts "
      "200 ms after the video is 5 frames late at 25 fps.\n\n"
      "Output: the best lag in frames and ms (positive: the audio comes late), Pearson r "
      "there, and whether it is confident: r >= 0.4, at least 0.1 above the next separate "
      "peak, and not at the edge of the range. Otherwise it says \"no confident offset\" and "
      "why; a (nearly) silent audio track says \"no speech\". Both still exit 0: the check "
      "ran; read `confident`. --json prints one object with lag_frames, lag_ms, correlation "
      "(null with no speech), confident, verdict, reason and the whole curve.\n\n"
      "Where the mouth is: there is no face detector, so give the face rect with --rect "
      "(one for all frames) or --package DIR for a render of that package (the rect of "
      "output frame i is the package's rect of avatar frame k(i), walked as render walks "
      "it: --order and --start-frame must match the render's). The mouth region is the "
      "middle of the face rect: x 20-80 %, y 25-90 %. Without either option it is an "
      "error: a guessed region would give a confident-looking number from the wrong "
      "place.\n\n"
      "Exit codes: 0 the check ran (confident or not), 2 bad input (the message names the "
      "file), 3 runtime failure.",
      "talkrender sync-check"};
  std::string video, rect_text, package_dir, plot_path, order_name = "pingpong";
  int max_lag = 15;
  int64_t start_frame = 0;
  bool json = false, verbose = false;
  app.add_option("--video", video, "the video (MP4 or anything FFmpeg reads) with its audio")
      ->required();
  auto* rect_opt = app.add_option("--rect", rect_text,
                                  "the face rect in pixels, x1,y1,x2,y2 (x2/y2 exclusive), as in "
                                  "crop_rectangles.json; the mouth is taken from its middle");
  auto* pkg_opt = app.add_option("--package", package_dir,
                                 "the avatar package the video was rendered from: its "
                                 "cache/crop_rectangles.json gives each frame's face rect");
  rect_opt->excludes(pkg_opt);
  app.add_option("--order", order_name,
                 "with --package: the render's frame order, pingpong (default) or loop")
      ->check(CLI::IsMember({"pingpong", "loop"}))
      ->needs(pkg_opt);
  app.add_option("--start-frame", start_frame,
                 "with --package: the render's --start-frame (default 0)")
      ->check(CLI::NonNegativeNumber)
      ->needs(pkg_opt);
  app.add_option("--max-lag", max_lag, "lags searched, +- frames (default 15 = 600 ms at 25 fps)")
      ->check(CLI::Range(1, 250));
  app.add_flag("--json", json, "print one JSON object instead of the text report");
  app.add_option("--plot", plot_path, "write a PNG of correlation against lag");
  add_verbose_flag(app, &verbose);
  if (int rc = parse_args(app, argc, argv); rc >= 0) return rc;
  apply_verbose(verbose);

  sync::SyncOptions opts;
  opts.video_path = video;
  opts.package_dir = package_dir;
  opts.loop_order = order_name == "loop";
  opts.start_frame = start_frame;
  opts.max_lag = max_lag;
  if (!rect_text.empty()) {
    opts.face_rect = parse_rect(rect_text);
    if (!opts.face_rect)
      return report_error(
          app, BadInput("--rect must be x1,y1,x2,y2 (four integers), not '" + rect_text + "'"));
  }
  if (!plot_path.empty()) {
    if (Status s = check_can_create_in(parent_dir_of(plot_path), plot_path); !s.ok())
      return report_error(app, s.error());
  }
  auto rep = sync::sync_check(opts);
  if (!rep.ok()) return report_error(app, rep.error());
  const sync::SyncResult& r = rep->result;
  if (!plot_path.empty()) {
    if (Status s = sync::write_correlation_plot(r, plot_path); !s.ok())
      return report_error(app, s.error());
  }
  const bool speech = r.verdict != sync::Verdict::kNoSpeech;
  const cv::Rect& m = rep->first_mouth;
  if (json) {
    nlohmann::json j;
    j["video"] = video;
    j["lag_frames"] = speech ? nlohmann::json(r.lag_frames) : nlohmann::json(nullptr);
    j["lag_ms"] = speech ? nlohmann::json(r.lag_ms) : nlohmann::json(nullptr);
    j["correlation"] = speech ? number_or_null(r.correlation) : nlohmann::json(nullptr);
    j["confident"] = r.confident();
    j["verdict"] = sync::verdict_name(r.verdict);
    j["reason"] = r.reason;
    j["second_lag"] = std::isfinite(r.second_correlation) ? nlohmann::json(r.second_lag)
                                                          : nlohmann::json(nullptr);
    j["second_correlation"] = number_or_null(r.second_correlation);
    j["max_lag"] = r.max_lag;
    j["fps"] = r.fps;
    j["frames"] = r.frames;
    j["video_start_s"] = rep->video_start_s;
    j["audio_start_s"] = rep->audio_start_s;
    j["audio_peak_dbfs"] = r.audio_peak_dbfs;
    j["mouth_region"] = {m.x, m.y, m.x + m.width, m.y + m.height};
    j["region_from"] = rep->region_from;
    nlohmann::json curve = nlohmann::json::array();
    for (double v : r.curve) curve.push_back(number_or_null(v));
    j["curve"] = curve;  // r at lags -max_lag .. +max_lag
    std::printf("%s\n", j.dump().c_str());
    return 0;
  }
  std::printf("%s: %lld frames at %.3f fps from %.3f s; audio %.2f s at %d Hz from %.3f s\n",
              video.c_str(), static_cast<long long>(r.frames), r.fps, rep->video_start_s,
              rep->audio_seconds, rep->audio_rate, rep->audio_start_s);
  std::printf("mouth region of frame 0: %d,%d,%d,%d (from %s)\n", m.x, m.y, m.x + m.width,
              m.y + m.height, rep->region_from.c_str());
  if (!speech) {
    std::printf("no speech: %s\n", r.reason.c_str());
    return 0;
  }
  std::printf("lag %+d frames (%+.0f ms; positive: the audio comes late), correlation %.3f",
              r.lag_frames, r.lag_ms, r.correlation);
  if (std::isfinite(r.second_correlation))
    std::printf(", next peak %.3f at %+d", r.second_correlation, r.second_lag);
  std::printf("\n");
  if (r.confident())
    std::printf("confident\n");
  else
    std::printf("no confident offset: %s\n", r.reason.c_str());
  return 0;
}

}  // namespace tr::cli
