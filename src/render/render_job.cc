// run_render_job: glue from the avatar package (io), speech (audio) and the generator (nn)
// to the frame pipeline (render/core) and an output writer (io).
#include "render/render_job.h"

#include <fmt/format.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>

#include "audio/audio.h"
#include "common/files.h"
#include "common/interrupt.h"
#include "io/frame_writer.h"
#include "io/package.h"

namespace tr::render {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

double ms_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

std::string strip_trailing_slashes(std::string p) {
  while (p.size() > 1 && p.back() == '/') p.pop_back();
  return p;
}

// The generator behind the Predictor interface: one runtime Session, used only by the
// pipeline's inference thread.
class SessionPredictor final : public Predictor {
 public:
  explicit SessionPredictor(std::unique_ptr<nn::Session> s) : session_(std::move(s)) {}
  Result<Tensor> predict(const Tensor& input, const Tensor& audio) override {
    TR_ASSIGN_OR_RETURN(std::vector<Tensor> outs,
                        session_->run({{"input", input}, {"audio", audio}}));
    if (outs.empty()) return RuntimeError("the generator returned no outputs");
    return outs[0];
  }

 private:
  std::unique_ptr<nn::Session> session_;
};

// An io::FrameWriter as the pipeline's sink. With `replace` set, the writer targets a
// fresh sibling ("<out>.new-<pid>") and finish() swaps it with the existing output, so
// an existing output survives a failed or interrupted render (--overwrite).
class WriterSink final : public FrameSink {
 public:
  WriterSink(std::unique_ptr<io::FrameWriter> w, std::string target, std::string staged)
      : writer_(std::move(w)), target_(std::move(target)), staged_(std::move(staged)) {}
  ~WriterSink() override { abort(); }

  Status write(int64_t, const cv::Mat& frame) override { return writer_->write_frame(frame); }

  Status finish() override {
    TR_RETURN_IF_ERROR(writer_->finish());
    done_ = true;
    if (staged_.empty()) return Status::Ok();
    std::error_code ec;
    fs::remove_all(target_, ec);
    if (ec) {
      fs::remove_all(staged_, ec);
      return RuntimeError(target_ + ": cannot replace the existing output: " + ec.message());
    }
    fs::rename(staged_, target_, ec);
    if (ec) {
      fs::remove_all(staged_, ec);
      return RuntimeError(target_ +
                          ": cannot rename the finished output into place: " + ec.message());
    }
    return Status::Ok();
  }

  void abort() override {
    if (done_) return;
    done_ = true;
    writer_->abort();
  }

 private:
  std::unique_ptr<io::FrameWriter> writer_;
  std::string target_, staged_;
  bool done_ = false;
};

// A one-line progress bar redrawn at most ten times a second (stderr, terminals only).
class ProgressBar {
 public:
  void update(int64_t done, int64_t total) {
    auto now = Clock::now();
    if (done == 1) start_ = now;
    if (done != total && now - last_ < std::chrono::milliseconds(100)) return;
    last_ = now;
    const int width = 30;
    const int filled = static_cast<int>(width * done / std::max<int64_t>(total, 1));
    const double s = std::chrono::duration<double>(now - start_).count();
    std::fprintf(stderr, "\r[%s%s] %lld/%lld frames  %.1f fps ", std::string(filled, '#').c_str(),
                 std::string(width - filled, ' ').c_str(), static_cast<long long>(done),
                 static_cast<long long>(total), s > 0 ? (done - 1) / s : 0.0);
    if (done == total) std::fprintf(stderr, "\n");
    std::fflush(stderr);
  }

 private:
  Clock::time_point start_ = Clock::now(), last_;
};

// True when `inner` is `outer` or lies inside it (component-wise on canonical paths).
bool is_same_or_inside(const fs::path& inner, const fs::path& outer) {
  auto [o, i] = std::mismatch(outer.begin(), outer.end(), inner.begin(), inner.end());
  return o == outer.end();
}

// --overwrite must never replace one of the render's own inputs (it would be destroyed
// after being read, or a folder output would swallow the package). Checked only when the
// target exists, since otherwise nothing is replaced.
Status check_output_is_not_an_input(const std::string& target, const RenderJobOptions& o) {
  std::error_code ec;
  const fs::path out = fs::weakly_canonical(target, ec);
  if (ec) return Status::Ok();
  std::vector<std::pair<std::string, std::string>> inputs = {
      {"--audio", o.audio_path},
      {"--features", o.features_path},
      {"--generator", o.generator_path},
      {"--audio-encoder", o.audio_encoder_path}};
  if (!o.features_path.empty()) {
    inputs.emplace_back("--features sidecar",
                        fs::path(o.features_path).replace_extension(".json").string());
  }
  // The package's own files, and the package folder itself when the output would hold it.
  for (const char* rel : {"full_body_video.mp4", "cache/crop_rectangles.json",
                          "crops_328_video.mp4", "package_info.json", "aud_ave.bin", "aud_ave.json",
                          "models/generator.onnx", "models/audio_encoder.onnx"}) {
    inputs.emplace_back("--package", (fs::path(o.package_dir) / rel).string());
  }
  inputs.emplace_back("--package", o.package_dir);
  for (const auto& [flag, path] : inputs) {
    if (path.empty()) continue;
    const fs::path in = fs::weakly_canonical(path, ec);
    if (ec || !fs::exists(in, ec)) continue;
    if (is_same_or_inside(in, out) || fs::equivalent(in, out, ec)) {
      return BadInput(fmt::format(
          "{}: the output is (or holds) {}, an input of this render ({}); --overwrite would "
          "destroy it; choose another output path",
          target, path, flag));
    }
  }
  return Status::Ok();
}

struct ModelFit {
  int size = 0;
  AudioMode mode;
};

// Checks that the generator is one of the contract's: input [B, 6, S, S], audio a known
// mode, output [B, 3, S, S] (dimensions the file leaves open are checked at run time).
Result<ModelFit> check_generator(const nn::Model& m) {
  const nn::TensorInfo* image = nullptr;
  const nn::TensorInfo* audio = nullptr;
  for (const auto& in : m.inputs()) {
    if (in.name == "input") image = &in;
    if (in.name == "audio") audio = &in;
  }
  if (!image || !audio) {
    return BadInput(m.name() +
                    ": not a lip-sync generator: it needs inputs named 'input' and 'audio'");
  }
  const Shape& is = image->shape;
  if (is.size() != 4 || is[1] != 6 || is[2] != is[3] || is[2] < 16) {
    return BadInput(
        fmt::format("{}: input 'input' is {}; expected [B, 6, S, S]", m.name(), shape_str(is)));
  }
  ModelFit fit;
  fit.size = static_cast<int>(is[2]);
  if (audio->shape.size() < 2) {
    return BadInput(fmt::format("{}: input 'audio' is {}; expected [B, ...]", m.name(),
                                shape_str(audio->shape)));
  }
  Shape per_frame(audio->shape.begin() + 1, audio->shape.end());
  auto mode = audio_mode_for_shape(per_frame);
  if (!mode.ok()) return BadInput(m.name() + ": " + mode.error().message);
  fit.mode = *mode;
  if (m.outputs().empty()) return BadInput(m.name() + ": the model has no outputs");
  const Shape& os = m.outputs()[0].shape;
  auto fits = [&](int64_t d, int64_t want) { return d < 0 || d == want; };
  if (!os.empty() &&
      (os.size() != 4 || !fits(os[1], 3) || !fits(os[2], fit.size) || !fits(os[3], fit.size))) {
    return BadInput(fmt::format("{}: output is {}; expected [B, 3, {}, {}]", m.name(),
                                shape_str(os), fit.size, fit.size));
  }
  return fit;
}

std::string package_file(const std::string& dir, const std::string& rel) {
  return (fs::path(dir) / rel).string();
}

}  // namespace

double peak_rss_mb() {
  struct rusage ru {};
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_maxrss / 1024.0;  // Linux reports KiB
}

nlohmann::json RenderReport::to_json() const {
  nlohmann::json minutes = nlohmann::json::array();
  for (const RssPoint& p : rss_by_minute) {
    minutes.push_back({{"minute", p.minute}, {"rss_mb", p.rss_mb}, {"peak_rss_mb", p.peak_rss_mb}});
  }
  return {{"frames", frames},
          {"wall_s", wall_s},
          {"fps", fps},
          {"load_ms", load_ms},
          {"audio_ms", audio_ms},
          {"prep_ms_per_frame", prep_ms_per_frame},
          {"infer_ms_per_frame", infer_ms_per_frame},
          {"composite_ms_per_frame", composite_ms_per_frame},
          {"encode_ms_per_frame", encode_ms_per_frame},
          {"peak_rss_mb", peak_rss_mb},
          {"wait_frames_ms_per_frame", wait_frames_ms_per_frame},
          {"cache_mb", cache_mb},
          {"frame_cache_mb", frame_cache_mb},
          {"frames_decoded", frames_decoded},
          {"rss_by_minute", minutes},
          {"batch", batch},
          {"workers", workers},
          {"threads", threads},
          {"model_size", model_size},
          {"audio_mode", audio_mode},
          {"backend", backend},
          {"encoder", encoder},
          {"output", output}};
}

std::string RenderReport::to_text() const {
  return fmt::format(
      "rendered {} frames to {} in {:.2f} s: {:.2f} fps (first inference to last frame)\n"
      "  load {:.0f} ms, audio {:.0f} ms; per frame: prep {:.2f} ms, inference {:.2f} ms, "
      "composite {:.2f} ms, encode {:.2f} ms\n"
      "  model {}x{} {} on {}, batch {}, workers {}, threads {}{}; peak RSS {:.0f} MiB\n",
      frames, output, wall_s, fps, load_ms, audio_ms, prep_ms_per_frame, infer_ms_per_frame,
      composite_ms_per_frame, encode_ms_per_frame, model_size, model_size, audio_mode, backend,
      batch, workers, threads == 0 ? std::string("auto") : std::to_string(threads),
      encoder.empty() ? "" : "; " + encoder, peak_rss_mb);
}

double current_rss_mb() {
  long pages = 0, resident = 0;
  if (FILE* f = std::fopen("/proc/self/statm", "r")) {
    if (std::fscanf(f, "%ld %ld", &pages, &resident) != 2) resident = 0;
    std::fclose(f);
  }
  return static_cast<double>(resident) * static_cast<double>(::sysconf(_SC_PAGESIZE)) /
         (1024.0 * 1024.0);
}

namespace {

// The package's frame store as the pipeline's FrameSource.
class StoreSource final : public FrameSource {
 public:
  explicit StoreSource(std::shared_ptr<io::FrameStore> s) : store_(std::move(s)) {}
  int count() const override { return store_->count(); }
  cv::Size size() const override { return {store_->width(), store_->height()}; }
  void plan(std::function<int(int64_t)> frame_for, int64_t total) override {
    store_->set_order(std::move(frame_for), total);
  }
  Result<std::shared_ptr<const void>> acquire(int64_t i, int k) override {
    TR_ASSIGN_OR_RETURN(io::FrameHandle h, store_->acquire(i, k));
    return std::shared_ptr<const void>(std::move(h));
  }
  Status to_bgr(const std::shared_ptr<const void>& frame, cv::Mat& out) const override {
    return store_->to_bgr(std::static_pointer_cast<const io::StoredFrame>(frame), out);
  }

 private:
  std::shared_ptr<io::FrameStore> store_;
};

Status check_common_options(const RenderJobOptions& o) {
  if (o.package_dir.empty()) return BadInput("no avatar package given (--package DIR)");
  if (o.audio_path.empty() == o.features_path.empty()) {
    return BadInput("give exactly one of --audio FILE and --features FILE");
  }
  if (o.batch < 0) return BadInput(fmt::format("--batch must be >= 1, got {}", o.batch));
  if (o.workers < 1) return BadInput(fmt::format("--workers must be >= 1, got {}", o.workers));
  if (o.frames == 0 || o.frames < -1) {
    return BadInput(fmt::format("--frames must be >= 1, got {}", o.frames));
  }
  if (o.start_frame < 0) {
    return BadInput(fmt::format("--start-frame must be >= 0, got {}", o.start_frame));
  }
  if (o.cache_mb < 0) return BadInput(fmt::format("--cache-mb must be >= 0, got {}", o.cache_mb));
  return Status::Ok();
}

}  // namespace

int default_batch(nn::BackendKind backend) {
  return backend == nn::BackendKind::kCuda ? kDefaultCudaBatch : kDefaultCpuBatch;
}

const char* default_preset(nn::BackendKind backend) {
  return backend == nn::BackendKind::kCuda ? io::kDefaultX264Preset : kDefaultCpuPreset;
}

Result<std::shared_ptr<Predictor>> make_predictor(std::shared_ptr<const nn::Model> model,
                                                  nn::BackendKind backend, int threads,
                                                  bool release_weights) {
  nn::SessionOptions so;
  so.backend = backend;
  so.threads = threads;
  so.release_weights = release_weights;
  TR_ASSIGN_OR_RETURN(std::unique_ptr<nn::Session> session, nn::Session::create(model, so));
  return std::shared_ptr<Predictor>(std::make_shared<SessionPredictor>(std::move(session)));
}

std::shared_ptr<FrameSink> make_writer_sink(std::unique_ptr<io::FrameWriter> writer,
                                            std::string target, std::string staged) {
  return std::make_shared<WriterSink>(std::move(writer), std::move(target), std::move(staged));
}

io::Mp4Options mp4_options(const LoadedRender& in, const RenderJobOptions& o) {
  io::Mp4Options mp4;
  mp4.width = in.width;
  mp4.height = in.height;
  mp4.fps_num = in.fps_num;
  mp4.fps_den = in.fps_den;
  mp4.crf = o.crf;
  mp4.preset = o.preset.empty() ? default_preset(o.backend) : o.preset;
  mp4.audio_path = o.audio_path;
  return mp4;
}

PipelineOptions pipeline_options(const LoadedRender& in, const RenderJobOptions& o) {
  PipelineOptions po;
  po.prep = PrepSettings::for_size(in.model_size);
  po.order = o.order;
  po.start_frame = o.start_frame;
  po.frames = o.frames;
  po.audio_shape = in.mode.shape;
  po.batch = o.batch > 0 ? o.batch : default_batch(o.backend);
  po.workers = o.workers;
  return po;
}

Result<LoadedRender> load_render_inputs(const RenderJobOptions& o) {
  TR_RETURN_IF_ERROR(check_common_options(o));
  LoadedRender in;
  // The generator first: a bad model fails before seconds of decoding.
  auto t_load = Clock::now();
  in.generator_path = o.generator_path.empty()
                          ? package_file(o.package_dir, "models/generator.onnx")
                          : o.generator_path;
  if (!path_exists(in.generator_path)) {
    return BadInput(in.generator_path + ": generator not found (give --generator FILE.onnx)");
  }
  TR_ASSIGN_OR_RETURN(in.model, nn::Model::load(in.generator_path));
  TR_ASSIGN_OR_RETURN(ModelFit fit, check_generator(*in.model));
  in.model_size = fit.size;
  in.mode = fit.mode;
  in.load_ms = ms_since(t_load);
  if (interrupted()) return Interrupted();

  // Speech -> the padded feature matrix P.
  auto t_audio = Clock::now();
  const int64_t window_numel = shape_numel(fit.mode.shape);
  Tensor features;
  if (!o.features_path.empty()) {
    TR_ASSIGN_OR_RETURN(features, audio::read_feature_file(o.features_path, window_numel / 16));
  } else {
    if (std::string(fit.mode.name) != "ave") {
      return BadInput(fmt::format(
          "{}: a {} generator needs precomputed features (--features); --audio computes "
          "ave features only",
          in.generator_path, fit.mode.name));
    }
    const std::string encoder_path = o.audio_encoder_path.empty()
                                         ? package_file(o.package_dir, "models/audio_encoder.onnx")
                                         : o.audio_encoder_path;
    if (!path_exists(encoder_path)) {
      return BadInput(encoder_path + ": audio encoder not found (give --audio-encoder FILE)");
    }
    nn::SessionOptions so;
    so.backend = o.backend;
    so.threads = o.threads;
    TR_ASSIGN_OR_RETURN(std::unique_ptr<audio::AudioEncoder> encoder,
                        audio::AudioEncoder::load(encoder_path, so));
    TR_ASSIGN_OR_RETURN(std::vector<float> samples, audio::load_audio(o.audio_path));
    if (interrupted()) return Interrupted();
    auto computed = audio::compute_features(samples, encoder->fn());
    // The audio front end does not know the file's name (e.g. "audio too short").
    if (!computed.ok()) return Status(computed.error()).with_context(o.audio_path);
    features = std::move(*computed);
  }
  in.audio_ms = ms_since(t_audio);
  const std::string features_name = o.features_path.empty() ? o.audio_path : o.features_path;
  TR_ASSIGN_OR_RETURN(std::unique_ptr<FeatureWindows> windows,
                      FeatureWindows::create(features, window_numel, features_name));
  in.windows = std::move(windows);
  if (interrupted()) return Interrupted();

  // The avatar: decoded into RAM (compact), or streamed through a bounded cache.
  t_load = Clock::now();
  io::PackageOptions po;
  po.crops_from = o.crops_from_video ? io::CropsFrom::kVideo : io::CropsFrom::kFullFrame;
  po.decode.threads = o.decode_threads;
  po.frame_store = true;
  po.frame_cache_bytes = o.cache_mb << 20;
  // Decoding ahead runs beside the render, like the pipeline's helpers: same priority.
  po.stream_decode_nice = PipelineOptions().helper_nice;
  TR_ASSIGN_OR_RETURN(io::AvatarPackage pkg, io::open_package(o.package_dir, po));
  // Checked here, where the file is known (the pipeline can only say "avatar"). All crops
  // come from one video, so the first frame's size is every frame's.
  if (!pkg.crop_frames.empty()) {
    const int want = PrepSettings::for_size(fit.size).crop_size();
    const cv::Mat& crop = pkg.crop_frames[0];
    if (crop.cols != want || crop.rows != want) {
      return BadInput(fmt::format("{}: face crops are {}x{}; the {}x{} generator {} needs {}x{}",
                                  pkg.crops_video_path, crop.cols, crop.rows, fit.size, fit.size,
                                  in.generator_path, want, want));
    }
  }
  in.store = pkg.store;
  in.avatar = std::make_shared<AvatarFrames>();
  in.avatar->source = std::make_shared<StoreSource>(pkg.store);
  in.avatar->crops = std::move(pkg.crop_frames);
  for (const auto& r : pkg.rects) in.avatar->rects.push_back(r.to_cv());
  in.width = pkg.width;
  in.height = pkg.height;
  in.fps_num = pkg.fps_num;
  in.fps_den = pkg.fps_den;
  in.load_ms += ms_since(t_load);
  return in;
}

Result<RenderReport> run_render_job(const RenderJobOptions& o) {
  const auto t_start = Clock::now();
  RenderReport report;
  TR_RETURN_IF_ERROR(check_common_options(o));
  if (o.out_path.empty()) return BadInput("no output given (--out FILE.mp4 or --out DIR/)");
  if (o.image_format != "png" && o.image_format != "jpg") {
    return BadInput("--format: '" + o.image_format + "' is not png or jpg");
  }
  const bool to_dir = o.out_path.back() == '/' || is_directory(o.out_path);
  const std::string target = strip_trailing_slashes(o.out_path);
  const bool target_exists = path_exists(target);
  if (target_exists && !o.overwrite) {
    return BadInput(target + ": the output exists; pass --overwrite to replace it");
  }
  if (target_exists) TR_RETURN_IF_ERROR(check_output_is_not_an_input(target, o));
  if (target_exists && to_dir != is_directory(target)) {
    return BadInput(target + (to_dir ? ": exists and is not a directory"
                                     : ": is a directory; give a file name for MP4 output"));
  }
  report.output = target + (to_dir ? "/" : "");

  auto t_session = Clock::now();
  TR_ASSIGN_OR_RETURN(LoadedRender in, load_render_inputs(o));
  // The pipeline runs one batch shape (it pads the last batch), so the session compiles one
  // plan and can drop the model's weights after it; with our reference gone too, the render
  // holds the weights once (in the backend's layout) instead of twice.
  TR_ASSIGN_OR_RETURN(std::shared_ptr<Predictor> predictor,
                      make_predictor(std::move(in.model), o.backend, o.threads,
                                     /*release_weights=*/true));
  report.load_ms = ms_since(t_session) - in.audio_ms;
  report.audio_ms = in.audio_ms;
  report.model_size = in.model_size;
  report.audio_mode = in.mode.name;
  report.backend = nn::backend_name(o.backend);
  if (interrupted()) return Interrupted();

  // The output writer, aimed at a staging name when an existing output is to be replaced.
  const std::string staged = target_exists ? target + ".new-" + std::to_string(::getpid()) : "";
  const std::string writer_path = staged.empty() ? target : staged;
  std::unique_ptr<io::FrameWriter> writer;
  if (to_dir) {
    io::ImageSequenceOptions io_opts;
    io_opts.format = o.image_format == "jpg" ? io::ImageFormat::kJpg : io::ImageFormat::kPng;
    TR_ASSIGN_OR_RETURN(writer, io::create_image_sequence_writer(writer_path, io_opts));
  } else {
    const io::Mp4Options mp4 = mp4_options(in, o);
    report.encoder = fmt::format("x264 {} crf {}", mp4.preset, mp4.crf);
    TR_ASSIGN_OR_RETURN(writer, io::create_mp4_writer(writer_path, mp4));
  }
  auto sink = make_writer_sink(std::move(writer), target, staged);

  PipelineOptions po = pipeline_options(in, o);
  auto bar = std::make_shared<ProgressBar>();
  // Memory after each minute of video, recorded from the writer thread (read after the
  // pipeline has joined it).
  auto rss = std::make_shared<std::vector<RenderReport::RssPoint>>();
  const int64_t frames_per_minute =
      std::max<int64_t>(1, 60LL * in.fps_num / std::max(1, in.fps_den));
  const bool show_progress = o.progress;
  po.on_progress = [bar, rss, frames_per_minute, show_progress](int64_t d, int64_t t) {
    if (show_progress) bar->update(d, t);
    if (d % frames_per_minute == 0) {
      rss->push_back({static_cast<int>(d / frames_per_minute), current_rss_mb(), peak_rss_mb()});
    }
  };
  TR_ASSIGN_OR_RETURN(PipelineStats stats,
                      run_pipeline(in.avatar, in.windows, std::move(predictor), sink, po));

  const double n = static_cast<double>(stats.frames);
  report.frames = stats.frames;
  report.wall_s = std::chrono::duration<double>(Clock::now() - t_start).count();
  report.fps = stats.run_s > 0 ? n / stats.run_s : 0;
  report.prep_ms_per_frame = stats.prep_ms / n;
  report.infer_ms_per_frame = stats.infer_ms / n;
  report.composite_ms_per_frame = stats.composite_ms / n;
  report.encode_ms_per_frame = stats.encode_ms / n;
  report.wait_frames_ms_per_frame = stats.wait_frames_ms / n;
  report.batch = o.batch > 0 ? o.batch : default_batch(o.backend);
  report.workers = o.workers;
  report.threads = o.threads;
  report.cache_mb = o.cache_mb;
  report.frame_cache_mb = in.store->resident_bytes() / (1024.0 * 1024.0);
  report.frames_decoded = in.store->frames_decoded();
  report.rss_by_minute = *rss;
  report.peak_rss_mb = peak_rss_mb();
  return report;
}

}  // namespace tr::render
