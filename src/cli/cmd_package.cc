// talkrender package: a SyncTalk_2D / Ultralight dataset folder -> an mp4_video_package
// (model-contract.md section 1): full_body_video.mp4, cache/crop_rectangles.json,
// package_info.json, models/ and aud_ave.bin when there is something to put there.
//
// The package is built in a sibling temporary folder and renamed into place at the end,
// so a failed or interrupted run leaves nothing that looks like a finished package.
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>

#include "cli/cli_util.h"
#include "cli/commands.h"
#include "common/files.h"
#include "common/interrupt.h"
#include "common/npy.h"
#include "io/dataset.h"
#include "io/frame_writer.h"
#include "io/jpeg_file.h"
#include "io/package.h"
#include "nn/nn.h"
#include "render/speech_features.h"

namespace tr::cli {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

// The default quality, by measurement (bench/package_quality.py: the first 100 frames of the
// sanders sample as cv2.imwrite JPEGs, 13.6 MB; the package video decoded as render does vs
// cv2.imread of the JPEGs; preset medium; 2026-12-02):
//   setting              PSNR dB (in rects)  max diff (in rects)  MB
//   --lossless (RGB qp0)  inf     (inf)        0   (0)            28.0
//   RGB crf 4             55.5    (52.1)       9   (7)            13.0
//   RGB crf 8  (default)  52.7    (49.2)      23  (10)             7.7
//   RGB crf 12            50.5    (47.0)      29  (15)             4.4
//   RGB crf 16            48.5    (45.2)      30  (20)             2.6
//   4:2:0 crf 0           40.8    (40.2)      10   (8)            10.1
//   4:2:0 crf 10          40.4    (39.4)      19  (15)             2.0
//   4:2:0 crf 20          39.5    (38.2)      49  (36)             0.6
//   4:4:4 qp 0 (ffmpeg)   51.2    (52.0)       2   (2)            13.5
// 4:2:0 cannot pass ~41 dB at any rate: the JPEGs' upsampled colour does not survive a
// second subsampling. RGB at crf 8 keeps 52.7 dB in about half the JPEGs' bytes.
constexpr int kDefaultPackageCrf = 8;
constexpr const char* kDefaultPackagePreset = "medium";

struct PackageJob {
  std::string dataset, out, generator, audio_encoder, preset = kDefaultPackagePreset;
  int crf = kDefaultPackageCrf;
  int fps = 25;
  bool lossless = false, yuv420 = false, progress = false;
};

// Removes the temporary folder unless released (it is ours: created by this run).
class TempDir {
 public:
  explicit TempDir(std::string path) : path_(std::move(path)) {}
  ~TempDir() {
    if (path_.empty()) return;
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }
  void release() { path_.clear(); }

 private:
  std::string path_;
};

// Copies a model into the package as models/STEM.onnx, or models/STEM.pth for a checkpoint
// (render finds either), after loading it to check it and record its input shapes.
Status copy_model(const std::string& from, const std::string& models_dir, const char* stem,
                  const std::string& dataset, const char* flag, nlohmann::json* shapes) {
  if (!path_exists(from)) return BadInput(from + ": file not found (" + flag + ")");
  nn::LoadOptions load_opts;
  // A SyncTalk_2D ave/hubert checkpoint: the dataset's features tell which.
  load_opts.checkpoint_audio_mode = render::checkpoint_audio_hint({.dataset_dir = dataset});
  auto model = nn::Model::load(from, load_opts);
  if (!model.ok()) return Status(model.error()).with_context(std::string(flag));
  const bool checkpoint = !(*model)->description().empty();
  const std::string to = models_dir + "/" + stem + (checkpoint ? ".pth" : ".onnx");
  for (const auto& in : (*model)->inputs()) {
    nlohmann::json dims = nlohmann::json::array();
    for (int64_t d : in.shape) dims.push_back(d);
    (*shapes)[in.name] = dims;
  }
  std::error_code ec;
  fs::copy_file(from, to, fs::copy_options::overwrite_existing, ec);
  if (ec) return RuntimeError(to + ": cannot copy " + from + ": " + ec.message());
  return Status::Ok();
}

// aud_ave.npy [n, 512] float32 -> aud_ave.bin + aud_ave.json, the package's feature layout.
Status copy_ave_features(const std::string& npy, const std::string& dir) {
  TR_ASSIGN_OR_RETURN(Tensor t, read_npy(npy));
  if (t.rank() != 2 || t.dim(1) != 512)
    return BadInput(npy + ": shape " + shape_str(t.shape()) + ", expected [n, 512]");
  nlohmann::json side = {
      {"shape", {t.dim(0), t.dim(1)}}, {"num_frames", t.dim(0)}, {"feature_size", t.dim(1)}};
  TR_RETURN_IF_ERROR(write_file_atomic(dir + "/aud_ave.json", side.dump() + "\n"));
  return write_file_atomic(dir + "/aud_ave.bin", std::string(static_cast<const char*>(t.raw()),
                                                             t.numel() * sizeof(float)));
}

Status run_package(const PackageJob& job) {
  // The output first: nothing is read or written before it is known to be possible.
  std::string out = job.out;
  while (out.size() > 1 && out.back() == '/') out.pop_back();
  std::error_code ec;
  if (fs::exists(out, ec) && !(fs::is_directory(out, ec) && fs::is_empty(out, ec)))
    return BadInput(out + ": exists and is not an empty folder (choose a new name)");
  TR_RETURN_IF_ERROR(check_can_create_in(parent_dir_of(out), out));
  if (fs::absolute(out).lexically_normal() == fs::absolute(job.dataset).lexically_normal())
    return BadInput(out + ": is the dataset folder itself");

  io::PackageOptions po;
  po.decode_frames = false;  // checked here (numbering, landmarks, sizes); decoded below
  TR_ASSIGN_OR_RETURN(io::AvatarPackage ds, io::open_dataset(job.dataset, po));

  TempDir tmp(temp_path_for(out));
  fs::create_directories(fs::path(tmp.path()) / "cache", ec);
  if (ec) return RuntimeError(tmp.path() + ": cannot create: " + ec.message());

  nlohmann::json onnx_shapes = nlohmann::json::object();
  if (!job.generator.empty() || !job.audio_encoder.empty()) {
    fs::create_directories(fs::path(tmp.path()) / "models", ec);
    if (ec) return RuntimeError(tmp.path() + "/models: cannot create: " + ec.message());
  }
  if (!job.generator.empty()) {
    TR_RETURN_IF_ERROR(copy_model(job.generator, tmp.path() + "/models", "generator", job.dataset,
                                  "--generator", &onnx_shapes));
  }
  if (!job.audio_encoder.empty()) {
    nlohmann::json ignored;
    TR_RETURN_IF_ERROR(copy_model(job.audio_encoder, tmp.path() + "/models", "audio_encoder",
                                  job.dataset, "--audio-encoder", &ignored));
  }
  const std::string ave = io::dataset_features_path(job.dataset, "ave");
  if (!ave.empty()) TR_RETURN_IF_ERROR(copy_ave_features(ave, tmp.path()));

  io::Mp4Options mp4;
  mp4.width = ds.width;
  mp4.height = ds.height;
  mp4.fps_num = job.fps;
  mp4.crf = job.crf;
  mp4.preset = job.preset;
  mp4.rgb = !job.yuv420 || job.lossless;
  mp4.lossless = job.lossless;
  // Nothing else runs beside it: all the cores (the writer's default is 1 on 2 cores).
  mp4.threads = std::max(1u, std::thread::hardware_concurrency());
  const std::string video = tmp.path() + "/full_body_video.mp4";
  TR_ASSIGN_OR_RETURN(std::unique_ptr<io::FrameWriter> writer, io::create_mp4_writer(video, mp4));
  const auto start = Clock::now();
  auto last = start;
  cv::Mat frame;
  for (int k = 0; k < ds.frame_count; ++k) {
    if (interrupted()) {
      writer->abort();
      return Interrupted();
    }
    const std::string jpg = ds.full_video_path + "/" + std::to_string(k) + ".jpg";
    TR_ASSIGN_OR_RETURN(std::string bytes, read_file(jpg));
    TR_ASSIGN_OR_RETURN(io::JpegFrame f, io::decode_jpeg_compact(bytes, jpg));
    if (f.width != ds.width || f.height != ds.height)
      return BadInput(jpg + ": " + std::to_string(f.width) + "x" + std::to_string(f.height) +
                      ", but frame 0 is " + std::to_string(ds.width) + "x" +
                      std::to_string(ds.height) + " (all frames must be one size)");
    io::jpeg_frame_to_bgr(f, frame);
    TR_RETURN_IF_ERROR(writer->write_frame(frame));
    const auto now = Clock::now();
    if (job.progress && (now - last > std::chrono::seconds(1) || k + 1 == ds.frame_count)) {
      last = now;
      const double s = std::chrono::duration<double>(now - start).count();
      std::fprintf(stderr, "\rpackage: %d/%d frames encoded, %.1f fps ", k + 1, ds.frame_count,
                   s > 0 ? (k + 1) / s : 0.0);
      if (k + 1 == ds.frame_count) std::fprintf(stderr, "\n");
    }
  }
  TR_RETURN_IF_ERROR(writer->finish());

  nlohmann::json rects = nlohmann::json::object();
  for (int k = 0; k < ds.frame_count; ++k) {
    const io::CropRect& r = ds.rects[k];
    rects[std::to_string(k)] = {{"rect", {r.x1, r.y1, r.x2, r.y2}}};
  }
  TR_RETURN_IF_ERROR(write_file_atomic(tmp.path() + "/cache/crop_rectangles.json", rects.dump()));

  nlohmann::json info = {
      {"package_type", "mp4_video_package"},
      {"package_version", "2.0"},
      {"dataset_name", fs::path(out).filename().string()},
      {"source", "talkrender package --dataset " + job.dataset},
      {"original_shape", {ds.width, ds.height}},
      {"videos",
       {{"full_body_img",
         {{"video_file", "full_body_video.mp4"},
          {"frame_count", ds.frame_count},
          {"fps", job.fps},
          {"codec", job.lossless ? "h264 rgb qp 0 (lossless)"
                                 : std::string(job.yuv420 ? "h264 yuv420p" : "h264 rgb") + " crf " +
                                       std::to_string(job.crf) + " " + job.preset}}}}}};
  if (!onnx_shapes.empty())
    info["onnx"] = {
        {"file",
         "models/" + fs::path(io::package_model_path(tmp.path(), "generator")).filename().string()},
        {"input_shapes", onnx_shapes}};
  TR_RETURN_IF_ERROR(write_file_atomic(tmp.path() + "/package_info.json", info.dump(2) + "\n"));

  // An empty folder given as the output is replaced; anything else was refused above.
  if (fs::is_directory(out, ec)) fs::remove(out, ec);
  fs::rename(tmp.path(), out, ec);
  if (ec)
    return RuntimeError(out + ": cannot move the finished package into place: " + ec.message());
  tmp.release();
  std::fprintf(stderr, "package: %s: %d frames %dx%d at %d fps, %s, %.1f MB\n", out.c_str(),
               ds.frame_count, ds.width, ds.height, job.fps,
               job.lossless ? "lossless RGB H.264"
                            : ((job.yuv420 ? "4:2:0 H.264 crf " : "RGB H.264 crf ") +
                               std::to_string(job.crf))
                                  .c_str(),
               static_cast<double>(fs::file_size(out + "/full_body_video.mp4", ec)) / 1e6);
  return Status::Ok();
}

}  // namespace

int cmd_package(int argc, char** argv) {
  PackageJob job;
  bool no_progress = false, verbose = false;
  CLI::App app{
      "Turn a SyncTalk_2D / Ultralight dataset folder (full_body_img/{i}.jpg, "
      "landmarks/{i}.lms, aud_*.npy) into an mp4_video_package that `render --package` "
      "reads: full_body_video.mp4 (the frames as cv2.imread decodes the JPEGs), "
      "cache/crop_rectangles.json (the reference's landmark rule), package_info.json, "
      "aud_ave.bin (+ .json) from aud_ave.npy when present, and models/ when given.\n"
      "The video is H.264 in RGB 4:4:4 (x264's RGB mode, High 4:4:4 profile: FFmpeg and "
      "OpenCV read it, some players do not): YUV 4:2:0 would lose colour the frames have.",
      "talkrender package"};
  app.add_option("--dataset", job.dataset, "the dataset folder")->required();
  app.add_option("--out,-o", job.out,
                 "the package folder to create (must not exist, or be empty); it appears only "
                 "when complete")
      ->required();
  app.add_option("--generator", job.generator,
                 "generator (.onnx, or a .pth checkpoint), copied to models/generator.onnx (.pth)");
  app.add_option("--audio-encoder", job.audio_encoder,
                 "audio encoder (.onnx or .pth), copied to models/audio_encoder.onnx (.pth)");
  app.add_flag("--lossless", job.lossless,
               "store the frames exactly (x264 RGB at qp 0): renders from the package equal "
               "renders from the dataset byte for byte; about 2x the JPEGs' size");
  app.add_flag("--yuv420", job.yuv420,
               "encode as YUV 4:2:0 (what every player reads) instead of RGB 4:4:4; measured: it "
               "cannot come closer than ~41 dB PSNR to the JPEG frames at any --crf");
  app.add_option("--crf", job.crf,
                 "x264 quality 0..51 without --lossless (default " +
                     std::to_string(kDefaultPackageCrf) +
                     ": 52.7 dB PSNR to the JPEG-decoded frames at half their bytes, measured on "
                     "the sample)")
      ->check(CLI::Range(0, 51));
  app.add_option("--preset", job.preset,
                 std::string("x264 preset (default ") + kDefaultPackagePreset +
                     ": a package is made once and read many times)");
  app.add_option("--fps", job.fps,
                 "the video's frame rate (default 25; SyncTalk_2D datasets are made at 25 fps, "
                 "Ultralight's wenet ones at 20; renders take avatar frames by index anyway)")
      ->check(CLI::Range(1, 240));
  app.add_flag("--no-progress", no_progress, "no progress line on stderr");
  add_verbose_flag(app, &verbose);
  app.footer(
      "Everything in the dataset is checked first (numbering, landmarks, frame sizes); a bad "
      "file exits 2 naming it. Exit codes: 0 ok, 2 bad input or usage, 3 runtime or I/O "
      "failure, 130 interrupted (nothing is left behind).");
  if (int rc = parse_args(app, argc, argv); rc >= 0) return rc;
  apply_verbose(verbose);
  job.progress = !no_progress;
  Status s = run_package(job);
  if (!s.ok()) return report_error(app, s.error());
  return 0;
}

}  // namespace tr::cli
