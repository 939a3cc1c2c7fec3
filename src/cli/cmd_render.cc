// talkrender render: avatar package + speech -> lip-synced MP4 or image sequence.
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "cli/cli_util.h"
#include "cli/commands.h"
#include "common/files.h"
#include "render/render_flags.h"
#include "render/render_job.h"

namespace tr::cli {

int cmd_render(int argc, char** argv) {
  render::RenderJobOptions o;
  std::string order = "pingpong", crops_from = "frame", device = "cpu", report_json;
  bool no_progress = false, json = false, verbose = false;

  CLI::App app{
      "Render an avatar package and speech to a lip-synced MP4 (H.264 + AAC) or an image "
      "sequence.\n"
      "Frames are prepared and composited exactly as the SyncTalk_2D / Ultralight reference "
      "does; every pixel outside a frame's face rectangle is the decoded source frame.",
      "talkrender render"};
  add_avatar_options(app, &o.package_dir, &o.dataset_dir);
  app.add_option("--audio,-a", o.audio_path,
                 "speech audio file (any format FFmpeg reads): drives the mouth, and is muxed "
                 "into the MP4; with --features it is only the sound");
  app.add_option("--features", o.features_path,
                 "precomputed features, one row per output frame: .bin float32 [T, 512] "
                 "(+ .json) or .npy as SyncTalk_2D / Ultralight write them (aud_ave [T, 512], "
                 "aud_hu.npy [T, 2, 1024], aud_wenet.npy [T, 16, 512]); they "
                 "drive the mouth. Alone, the MP4 is silent; add --audio for the sound (its "
                 "length is checked against P at the model's fps)");
  app.add_option("--audio-encoder", o.audio_encoder_path,
                 "audio encoder ONNX (default: <package>/models/audio_encoder.onnx)");
  app.add_option("--generator", o.generator_path,
                 "generator ONNX (default: <package>/models/generator.onnx)");
  app.add_option("--crops-from", crops_from,
                 "face crops: 'frame' = resize of the decoded full frame (default), "
                 "'video' = crops_328_video.mp4")
      ->check(CLI::IsMember({"frame", "video"}));
  app.add_option("--out,-o", o.out_path,
                 "output, its kind from the name: NAME.mp4 (H.264 + AAC); DIR/ or an existing "
                 "folder for an image sequence DIR/frame_000000.png, ...; or a pattern such as "
                 "DIR/img_%05d.jpg (numbered from 0). Other names (.mov, .mkv, .webm, a single "
                 "image, no extension) are refused. The video runs at the model's frame rate "
                 "(25 fps, wenet 20) whatever the avatar's, with all of the --audio; an odd "
                 "frame size is padded to even for H.264 4:2:0 (last column/row repeated), "
                 "image sequences keep the exact size")
      ->required();
  app.add_option("--format", o.image_format,
                 "image sequence format: png (default) or jpg; an error when it contradicts "
                 "the name (NAME.mp4, or a pattern's extension)")
      ->check(CLI::IsMember({"png", "jpg"}));
  app.add_option("--crf", o.crf, "H.264 quality (x264 CRF 0..51, default 20)")
      ->check(CLI::Range(0, 51));
  app.add_option("--preset", o.preset,
                 std::string("x264 preset: ") + render::x264_preset_list() + " (default " +
                     render::kDefaultCpuPreset +
                     " on cpu, where the encoder's CPU comes off the frame rate; " +
                     io::kDefaultX264Preset +
                     " on cuda. superfast halves the bytes, veryfast halves them again)");
  app.add_flag("--overwrite", o.overwrite,
               "replace an existing MP4, or write a sequence into a folder that is not empty: "
               "only files named like the sequence's frames are replaced (those beyond the new "
               "count removed); no other file is ever touched. An empty folder needs no flag");
  app.add_option("--order", order, "avatar frame order: pingpong (default) or loop")
      ->check(CLI::IsMember({"pingpong", "loop"}));
  app.add_option("--start-frame", o.start_frame,
                 "start the frame walk at avatar frame K (0 <= K < the avatar's frames; "
                 "default the model family's: 0 for SyncTalk_2D, 1 for Ultralight)");
  std::string crop_interp;
  app.add_option("--crop-interp", crop_interp,
                 "face crop interpolation: area, linear or cubic (default the model "
                 "family's: cubic for SyncTalk_2D 320, linear for 160, area for Ultralight; "
                 "linear for Ultralight checkpoints trained with the older bilinear crop)")
      ->check(CLI::IsMember({"area", "linear", "cubic"}));
  app.add_option("--asr", o.asr,
                 "a .pth generator's audio mode: ave, hubert or wenet (SyncTalk_2D's ave and "
                 "hubert checkpoints hold the same tensors; default: from the features' shape, "
                 "else the file's name)")
      ->check(CLI::IsMember({"ave", "hubert", "wenet"}));
  app.add_option("--frames", o.frames, "render only the first N frames (N >= 1)");
  app.add_option("--batch", o.batch,
                 "frames per inference batch, >= 1, capped at the frames to render (default " +
                     std::to_string(render::kDefaultCpuBatch) +
                     " on cpu: same speed, least memory; " +
                     std::to_string(render::kDefaultCudaBatch) + " on cuda)");
  app.add_option("--threads", o.threads, "runtime threads, >= 0 (default 0 = one per core)");
  app.add_option("--workers", o.workers, "compositing threads, >= 1 (default 2)");
  app.add_option("--cache-mb", o.cache_mb,
                 "bound the avatar frame cache to N MiB, decoding ahead of the frame walk "
                 "(default 0 = keep every frame in RAM, as compact YUV)");
  app.add_option("--device,--backend", device,
                 "runtime: cpu (default), cuda, or ref (the slow reference); --backend is the "
                 "old name");
  std::string precision;
  app.add_option(
      "--precision", precision,
      "runtime precision: fp32, bf16 (cpu: needs native bf16, AVX512_BF16 or AMX; exit 2 "
      "without), fp16 (cuda) or auto (cpu: " +
          std::string(kCpuAutoPrecision) +
          "; cuda fp16). "
          "Default: fp32 (see README)");
  app.add_option("--report-json", report_json, "write the report as JSON to FILE");
  app.add_flag("--json", json, "print the report as JSON on stdout");
  app.add_flag("--no-progress", no_progress, "no progress bar (shown only on a terminal)");
  add_verbose_flag(app, &verbose);
  app.footer(
      "Output frames = rows of the padded audio features (n + 2 for n encoder frames); frame "
      "i uses audio window i and avatar frame k(i) of the ping-pong (or loop) walk.\n"
      "Every flag and output path is checked before anything is loaded. A failed or "
      "interrupted render leaves the output as it was.\n"
      "A summary goes to stderr; the report (frames, wall_s, render_s, fps = frames / "
      "render_s, load_ms, audio_ms, *_ms_per_frame, batch, peak_rss_mb, ...) to "
      "--report-json FILE and/or, with --json, stdout.\n"
      "Exit codes: 0 ok, 2 bad input or usage, 3 runtime or I/O failure, 130 interrupted.");
  if (int rc = parse_args(app, argc, argv); rc >= 0) return rc;
  apply_verbose(verbose);
  if (Status s = check_avatar_options(o.package_dir, o.dataset_dir); !s.ok())
    return report_error(app, s.error());

  // Everything the job does not check itself, before it loads anything.
  // The checks a farm job's fields go through too (render/render_flags.h).
  if (app.count("--batch") > 0) {
    if (Status s = render::set_batch_option(&o, o.batch, "--batch"); !s.ok())
      return report_error(app, s.error());
  }
  if (app.count("--start-frame") > 0 && o.start_frame < 0) {
    return report_error(
        app, BadInput("--start-frame must be >= 0, got " + std::to_string(o.start_frame)));
  }
  if (!crop_interp.empty()) {
    auto ci = render::parse_interpolation(crop_interp, "--crop-interp");
    if (!ci.ok()) return report_error(app, ci.error());
    o.crop_interpolation = *ci;
  }
  auto order_r = render::parse_frame_order(order);
  if (!order_r.ok()) return report_error(app, order_r.error());
  o.order = *order_r;
  o.crops_from_video = crops_from == "video";
  auto be = nn::parse_backend(device);
  if (!be.ok()) return report_error(app, be.error());
  o.backend = *be;
  if (!precision.empty()) {
    if (Status s = render::set_precision_option(&o, precision, "--precision"); !s.ok())
      return report_error(app, s.error());
  }
  o.progress = !no_progress && ::isatty(STDERR_FILENO);
  if (!report_json.empty()) {
    if (is_directory(report_json)) {
      return report_error(app, BadInput(report_json + ": --report-json is a folder; give a "
                                                      "file name"));
    }
    Status s = check_can_create_in(parent_dir_of(report_json), report_json);
    if (!s.ok()) return report_error(app, s.error());
  }
  auto r = render::run_render_job(o);
  if (!r.ok()) {
    const int rc = report_error(app, r.error());
    if (r.error().kind == ErrorKind::kInterrupted) {
      // The output and temporaries are already removed. A batch still in inference may
      // hold a runtime thread; exit now instead of waiting for it in static destructors.
      std::fflush(stderr);
      std::_Exit(130);
    }
    return rc;
  }
  std::fputs(r->to_text().c_str(), stderr);
  if (json) std::printf("%s\n", r->to_json().dump().c_str());
  if (!report_json.empty()) {
    Status s = write_file_atomic(report_json, r->to_json().dump(2) + "\n");
    if (!s.ok()) return report_error(app, s.error());
  }
  return 0;
}

}  // namespace tr::cli
