// talkrender render: avatar package + speech -> lip-synced MP4 or image sequence.
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "cli/commands.h"
#include "common/files.h"
#include "render/render_job.h"

namespace tr::cli {

int cmd_render(int argc, char** argv) {
  render::RenderJobOptions o;
  std::string order = "pingpong", crops_from = "frame", backend = "cpu", report_json;
  bool no_progress = false;

  CLI::App app{
      "Render an avatar package and speech to a lip-synced MP4 (H.264 + AAC) or an image "
      "sequence.\n"
      "Frames are prepared and composited exactly as the SyncTalk_2D / Ultralight reference "
      "does; every pixel outside a frame's face rectangle is the decoded source frame.",
      "talkrender render"};
  app.add_option("--package,-p", o.package_dir, "avatar package folder")->required();
  auto* audio_opt = app.add_option("--audio,-a", o.audio_path,
                                   "speech audio file (any format FFmpeg reads); muxed "
                                   "into the MP4");
  auto* feat_opt = app.add_option("--features", o.features_path,
                                  "precomputed padded features P: .bin float32 [T, 512] "
                                  "(+ .json) or .npy");
  audio_opt->excludes(feat_opt);
  app.add_option("--audio-encoder", o.audio_encoder_path,
                 "audio encoder ONNX (default: <package>/models/audio_encoder.onnx)");
  app.add_option("--generator", o.generator_path,
                 "generator ONNX (default: <package>/models/generator.onnx)");
  app.add_option("--crops-from", crops_from,
                 "face crops: 'frame' = resize of the decoded full frame (default), "
                 "'video' = crops_328_video.mp4")
      ->check(CLI::IsMember({"frame", "video"}));
  app.add_option("--out,-o", o.out_path,
                 "output: FILE.mp4, or DIR/ (trailing slash) for an image sequence")
      ->required();
  app.add_option("--format", o.image_format, "image sequence format: png (default) or jpg")
      ->check(CLI::IsMember({"png", "jpg"}));
  app.add_option("--crf", o.crf, "H.264 quality (x264 CRF, default 20)")->check(CLI::Range(0, 51));
  app.add_option("--preset", o.preset,
                 std::string("x264 preset (default ") + render::kDefaultCpuPreset +
                     " on cpu, where the encoder's CPU comes off the frame rate; " +
                     io::kDefaultX264Preset +
                     " on cuda. superfast halves the bytes, veryfast halves them again)");
  app.add_flag("--overwrite", o.overwrite, "replace an existing output");
  app.add_option("--order", order, "avatar frame order: pingpong (default) or loop")
      ->check(CLI::IsMember({"pingpong", "loop"}));
  app.add_option("--start-frame", o.start_frame, "start the frame walk at position K (default 0)");
  app.add_option("--frames", o.frames, "render only the first N frames");
  app.add_option("--batch", o.batch,
                 "frames per inference batch (default " + std::to_string(render::kDefaultCpuBatch) +
                     " on cpu: same speed, least memory; " +
                     std::to_string(render::kDefaultCudaBatch) + " on cuda)");
  app.add_option("--threads", o.threads, "runtime threads (default 0 = one per core)");
  app.add_option("--workers", o.workers, "compositing threads (default 2)");
  app.add_option("--cache-mb", o.cache_mb,
                 "bound the avatar frame cache to N MiB, decoding ahead of the frame walk "
                 "(default 0 = keep every frame in RAM, as compact YUV)");
  app.add_option("--backend", backend, "runtime backend: cpu (default), ref, cuda");
  app.add_option("--report-json", report_json, "also write the report as JSON to FILE");
  app.add_flag("--no-progress", no_progress, "no progress bar (shown only on a terminal)");
  app.footer(
      "Output frames = rows of the padded audio features (n + 2 for n encoder frames); frame "
      "i uses audio window i and avatar frame k(i) of the ping-pong (or loop) walk.\n"
      "The report (frames, wall_s, fps, load_ms, audio_ms, infer_ms_per_frame, "
      "composite_ms_per_frame, encode_ms_per_frame, peak_rss_mb) is printed on stderr.\n"
      "Exit codes: 0 ok, 2 bad input or usage, 3 runtime or I/O failure, 130 interrupted "
      "(nothing is left at the output path).");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int rc = app.exit(e);
    return rc == 0 ? 0 : 2;
  }

  auto order_r = render::parse_frame_order(order);
  if (!order_r.ok()) {
    std::fprintf(stderr, "talkrender render: %s\n", order_r.error().message.c_str());
    return 2;
  }
  o.order = *order_r;
  o.crops_from_video = crops_from == "video";
  auto be = nn::parse_backend(backend);
  if (!be.ok()) {
    std::fprintf(stderr, "talkrender render: %s\n", be.error().message.c_str());
    return 2;
  }
  o.backend = *be;
  o.progress = !no_progress && ::isatty(STDERR_FILENO);

  auto r = render::run_render_job(o);
  if (!r.ok()) {
    std::fprintf(stderr, "talkrender render: %s\n", r.error().message.c_str());
    if (r.error().kind == ErrorKind::kInterrupted) {
      // The output and temporaries are already removed. A batch still in inference may
      // hold a runtime thread; exit now instead of waiting for it in static destructors.
      std::fflush(stderr);
      std::_Exit(130);
    }
    return r.error().exit_code();
  }
  std::fputs(r->to_text().c_str(), stderr);
  std::fprintf(stderr, "%s\n", r->to_json().dump().c_str());
  if (!report_json.empty()) {
    Status s = write_file_atomic(report_json, r->to_json().dump(2) + "\n");
    if (!s.ok()) {
      std::fprintf(stderr, "talkrender render: %s\n", s.message().c_str());
      return 3;
    }
  }
  return 0;
}

}  // namespace tr::cli
