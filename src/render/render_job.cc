// run_render_job: glue from the avatar package (io), speech (audio) and the generator (nn)
// to the frame pipeline (render/core) and an output writer (io).
#include "render/render_job.h"

#include <fmt/format.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <tuple>

#include "audio/audio.h"
#include "common/files.h"
#include "common/interrupt.h"
#include "io/dataset.h"
#include "io/frame_writer.h"
#include "io/package.h"
#include "render/speech_features.h"

namespace tr::render {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

double ms_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

// The generator behind the Predictor interface: one runtime Session, used only by the
// pipeline's inference thread. per_call > 0: the model keeps a fixed batch (its graph is not
// batch-agnostic, nn::FixedBatch), so a batch runs as calls of that many frames.
class SessionPredictor final : public Predictor {
 public:
  SessionPredictor(std::unique_ptr<nn::Session> s, int64_t per_call)
      : session_(std::move(s)), per_call_(per_call) {}
  Result<Tensor> predict(const Tensor& input, const Tensor& audio) override {
    TR_ASSIGN_OR_RETURN(
        std::vector<Tensor> outs,
        nn::run_in_calls(*session_, {{"input", input}, {"audio", audio}}, per_call_));
    if (outs.empty()) return RuntimeError("the generator returned no outputs");
    return outs[0];
  }
  const nn::Session& session() const { return *session_; }

 private:
  std::unique_ptr<nn::Session> session_;
  int64_t per_call_ = 0;
};

// For the report: what a model file's fixed batch meant for this render ("" if none).
std::string fixed_batch_note(const nn::FixedBatch& fb, int batch) {
  if (fb.file_batch <= 0) return "";
  if (fb.relaxed)
    return fmt::format("batch {} in the file, made dynamic (the graph is batch-agnostic)",
                       fb.file_batch);
  if (batch == fb.file_batch) return fmt::format("batch {} in the file", fb.file_batch);
  return fmt::format("B={} runs as {} calls of {}{}", batch, batch / fb.file_batch, fb.file_batch,
                     fb.why_not.empty() ? "" : " (" + fb.why_not + ")");
}

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

// The render's input files, which an output must never replace (output_target.h).
NamedPaths render_inputs(const RenderJobOptions& o) {
  NamedPaths inputs = {{"--audio", o.audio_path},
                       {"--features", o.features_path},
                       {"--generator", o.generator_path},
                       {"--audio-encoder", o.audio_encoder_path}};
  if (!o.features_path.empty()) {
    inputs.emplace_back("--features sidecar",
                        fs::path(o.features_path).replace_extension(".json").string());
  }
  // The dataset folder: an output must not be (or replace) it.
  if (!o.dataset_dir.empty()) inputs.emplace_back("--dataset", o.dataset_dir);
  if (o.package_dir.empty()) return inputs;
  // The package's own files, and the package folder itself when the output would hold it.
  for (const char* rel :
       {"full_body_video.mp4", "cache/crop_rectangles.json", "crops_328_video.mp4",
        "package_info.json", "aud_ave.bin", "aud_ave.json", "models/generator.onnx",
        "models/audio_encoder.onnx", "models/generator.pth", "models/audio_encoder.pth"}) {
    inputs.emplace_back("--package", (fs::path(o.package_dir) / rel).string());
  }
  inputs.emplace_back("--package", o.package_dir);
  return inputs;
}

struct ModelFit {
  int size = 0;
  ModelFamily family;  // from the table, before the job's overrides
};

// Checks that the generator is one of the contract's: input [B, 6, S, S] and audio of a
// known family (family_of_model), output [B, 3, S, S] (dimensions the file leaves open are
// checked at run time).
Result<ModelFit> check_generator(const nn::Model& m) {
  ModelFit fit;
  TR_ASSIGN_OR_RETURN(fit.family, family_of_model(m));
  fit.size = fit.family.size;
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
          {"render_s", render_s},
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
          {"memory_mb",
           {{"frame_cache", memory.frame_cache_mb},
            {"runtime", memory.runtime_mb},
            {"weights", memory.weights_mb},
            {"workspace", memory.workspace_mb},
            {"encoder", memory.encoder_mb},
            {"code", memory.code_mb},
            {"other", memory.other_mb}}},
          {"rss_by_minute", minutes},
          {"batch", batch},
          {"workers", workers},
          {"threads", threads},
          {"model_size", model_size},
          {"audio_mode", audio_mode},
          {"model_family", model_family},
          {"window_blocks", window_blocks},
          {"first_frame", first_frame},
          {"crop_interp", crop_interp},
          {"paste_interp", paste_interp},
          {"backend", backend},
          {"precision", precision},
          {"isa", isa},
          {"encoder", encoder},
          {"output", output},
          {"video_fps", video_fps},
          {"avatar_fps", avatar_fps},
          {"fixed_batch", fixed_batch}};
}

std::string RenderReport::to_text() const {
  std::string text = fmt::format(
      "rendered {} frames to {}: {:.3f} s in all; rendering {:.3f} s (first inference to "
      "last frame) at {:.2f} fps\n"
      "  load {:.0f} ms, audio {:.0f} ms; per frame: prep {:.2f} ms, inference {:.2f} ms, "
      "composite {:.2f} ms, encode {:.2f} ms\n"
      "  model {}x{} {} on {}, batch {}, workers {}, threads {}{}; peak RSS {:.0f} MiB\n",
      frames, output, wall_s, render_s, fps, load_ms, audio_ms, prep_ms_per_frame,
      infer_ms_per_frame, composite_ms_per_frame, encode_ms_per_frame, model_size, model_size,
      audio_mode,
      backend + (precision.empty() ? "" : " " + precision + (isa.empty() ? "" : " " + isa)), batch,
      workers, threads == 0 ? std::string("auto") : std::to_string(threads),
      encoder.empty() ? "" : "; " + encoder, peak_rss_mb);
  text += fmt::format(
      "  memory at peak (MiB): frame cache {:.0f}, runtime {:.0f} (weights {:.0f} + workspace "
      "{:.0f}), encoder {:.0f}, code {:.0f}, other {:.0f}\n",
      memory.frame_cache_mb, memory.runtime_mb, memory.weights_mb, memory.workspace_mb,
      memory.encoder_mb, memory.code_mb, memory.other_mb);
  if (!model_family.empty()) {
    text += fmt::format(
        "  rules: {}, audio window {} blocks, first avatar frame {}, crop {}, paste {}\n",
        model_family, window_blocks, first_frame, crop_interp, paste_interp);
  }
  if (!fixed_batch.empty()) text += "  fixed-batch model: " + fixed_batch + "\n";
  return text;
}

// Resident file-backed pages (the binary, shared libraries, mapped files) in MiB.
static double file_rss_mb() {
  double kb = 0;
  if (FILE* f = std::fopen("/proc/self/status", "r")) {
    char line[256];
    while (std::fgets(line, sizeof(line), f)) {
      if (std::sscanf(line, "RssFile: %lf", &kb) == 1) break;
    }
    std::fclose(f);
  }
  return kb / 1024.0;
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

// What the output differs in from the inputs, said once on stderr before the render.
void print_render_notes(const LoadedRender& in, const RenderJobOptions& o, bool to_dir) {
  const double fps = static_cast<double>(in.fps_num) / in.fps_den;
  if (std::fabs(in.avatar_fps - fps) > 1e-3) {
    fmt::print(stderr,
               "note: the avatar video is {:.4g} fps; the output is at the model's {:.4g} fps, "
               "avatar frames taken by index (the avatar moves {:.2f}x as fast as in its video)\n",
               in.avatar_fps, fps, fps / in.avatar_fps);
  }
  const cv::Size even = io::mp4_encoded_size(in.width, in.height);
  if (!to_dir && (even.width != in.width || even.height != in.height)) {
    fmt::print(stderr,
               "note: the avatar is {}x{}; H.264 4:2:0 needs even sizes, so the MP4 is {}x{}, the "
               "last column/row repeated (image sequences keep {}x{})\n",
               in.width, in.height, even.width, even.height, in.width, in.height);
  }
  if (!to_dir && !o.audio_path.empty() && o.frames > 0 && o.frames < in.windows->frames()) {
    fmt::print(stderr,
               "note: --frames {}: the MP4 holds the first {:.2f} s of the {:.2f} s of speech "
               "in {}\n",
               o.frames, o.frames / fps, in.audio_s, o.audio_path);
  }
}

// --features with --audio: the audio must be the features' speech. P has n + 2 rows for
// the n encoder frames of a clip that lasts a little over rows frames (model-contract.md
// section 4), and the MP4 may hold the audio at most io::kMaxAudioOverhangFrames past the
// video; shorter audio is allowed some slack (a clip cut at the end), then refused.
Status check_audio_matches_features(const RenderJobOptions& o, int64_t rows, double audio_s,
                                    int fps) {
  const double audio_frames = audio_s * fps;
  const double short_slack = std::max(4.0, 0.05 * static_cast<double>(rows));
  const double over = audio_frames - static_cast<double>(rows);
  if (over > io::kMaxAudioOverhangFrames || -over > short_slack) {
    return BadInput(fmt::format(
        "{}: {:.2f} s of audio, but {} has {} rows = {:.2f} s of video at the model's {} fps: "
        "not the same speech (the audio may end up to {:.0f} frames before the video or run "
        "up to {} frames past it)",
        o.audio_path, audio_s, o.features_path, rows, static_cast<double>(rows) / fps, fps,
        short_slack, io::kMaxAudioOverhangFrames));
  }
  return Status::Ok();
}

Status check_common_options(const RenderJobOptions& o) {
  if (o.package_dir.empty() && o.dataset_dir.empty())
    return BadInput("no avatar given (--package DIR or --dataset DIR)");
  if (!o.package_dir.empty() && !o.dataset_dir.empty())
    return BadInput("--package and --dataset: give one avatar, not both");
  // A dataset brings its own features (aud_*.npy), checked once the model's mode is known.
  if (o.audio_path.empty() && o.features_path.empty() && o.dataset_dir.empty()) {
    return BadInput(
        "no speech given: --audio FILE, --features FILE, or both (features drive "
        "the mouth, the audio is the sound)");
  }
  if (o.batch < 0) return BadInput(fmt::format("--batch must be >= 1, got {}", o.batch));
  if (o.workers < 1) return BadInput(fmt::format("--workers must be >= 1, got {}", o.workers));
  if (o.threads < 0) {
    return BadInput(fmt::format("--threads must be >= 0 (0 = one per core), got {}", o.threads));
  }
  if (o.crf < 0 || o.crf > 51) return BadInput(fmt::format("--crf must be 0..51, got {}", o.crf));
  if (!o.preset.empty() && !is_x264_preset(o.preset)) {
    return BadInput(fmt::format("--preset: '{}' is not an x264 preset; use one of: {}", o.preset,
                                x264_preset_list()));
  }
  if (o.frames == 0 || o.frames < -1) {
    return BadInput(fmt::format("--frames must be >= 1, got {}", o.frames));
  }
  if (o.start_frame < -1) {  // -1: the model family's first frame
    return BadInput(fmt::format("--start-frame must be >= 0, got {}", o.start_frame));
  }
  if (o.cache_mb < 0) return BadInput(fmt::format("--cache-mb must be >= 0, got {}", o.cache_mb));
  // A precision this machine cannot run (bf16 without native bf16) fails before loading.
  if (auto p = nn::resolve_precision(o.backend, render_precision(o)); !p.ok()) return p.error();
  // The files, before seconds of loading; their contents are checked where they are read.
  if (!o.dataset_dir.empty() && !is_directory(o.dataset_dir))
    return BadInput(o.dataset_dir + ": dataset folder not found");
  if (!o.package_dir.empty() && !is_directory(o.package_dir))
    return BadInput(o.package_dir + ": avatar package not found");
  for (const auto& [flag, path] :
       {std::pair{"--audio", o.audio_path}, std::pair{"--features", o.features_path}}) {
    if (!path.empty() && !path_exists(path)) {
      return BadInput(fmt::format("{}: file not found ({})", path, flag));
    }
  }
  // --start-frame against the avatar's length: its rects file says it without a decode.
  if (o.start_frame > 0 && !o.package_dir.empty()) {
    const std::string rects = package_file(o.package_dir, "cache/crop_rectangles.json");
    auto text = read_file(rects);
    auto parsed = text.ok() ? io::parse_crop_rects(*text, rects)
                            : Result<std::vector<io::CropRect>>(text.error());
    if (parsed.ok() && o.start_frame >= static_cast<int64_t>(parsed->size())) {
      return BadInput(fmt::format("--start-frame {}: the avatar has {} frames (0..{}) in {}",
                                  o.start_frame, parsed->size(), parsed->size() - 1, rects));
    }
  }
  return Status::Ok();
}

}  // namespace

std::optional<nn::Precision> render_precision(const RenderJobOptions& o) {
  return o.precision ? o.precision : std::optional<nn::Precision>(kDefaultRenderPrecision);
}

std::pair<std::string, std::string> precision_and_isa(const RenderJobOptions& o) {
  auto p = nn::resolve_precision(o.backend, render_precision(o));
  if (!p.ok()) return {"", ""};
  std::string isa;
  if (o.backend == nn::BackendKind::kCpu) {
    const nn::CpuInfo cpu = nn::cpu_info();
    isa = cpu.isa + " nChw" + std::to_string(*p == nn::Precision::kBFloat16 ? 16 : cpu.block) + "c";
  }
  return {nn::precision_name(*p), isa};
}

int default_batch(nn::BackendKind backend) {
  return backend == nn::BackendKind::kCuda ? kDefaultCudaBatch : kDefaultCpuBatch;
}

const char* default_preset(nn::BackendKind backend) {
  return backend == nn::BackendKind::kCuda ? io::kDefaultX264Preset : kDefaultCpuPreset;
}

Result<std::shared_ptr<Predictor>> make_predictor(std::shared_ptr<const nn::Model> model,
                                                  nn::BackendKind backend, int threads,
                                                  bool release_weights,
                                                  std::optional<nn::Precision> precision) {
  nn::SessionOptions so;
  so.backend = backend;
  so.threads = threads;
  so.release_weights = release_weights;
  so.precision = precision;
  const int64_t per_call = model->fixed_batch().required();
  TR_ASSIGN_OR_RETURN(std::unique_ptr<nn::Session> session, nn::Session::create(model, so));
  return std::shared_ptr<Predictor>(
      std::make_shared<SessionPredictor>(std::move(session), per_call));
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
  // The speech is muxed whole; only a render the user made shorter stops it at the end.
  mp4.cut_audio_at_video_end = o.frames > 0 && o.frames < in.windows->frames();
  return mp4;
}

PipelineOptions pipeline_options(const LoadedRender& in, const RenderJobOptions& o) {
  PipelineOptions po;
  po.prep = in.family.prep();
  po.order = o.order;
  po.start_frame = in.family.first_frame;  // o.start_frame applied at load
  po.frames = o.frames;
  po.audio_shape = in.mode.shape;
  po.batch = o.batch > 0 ? o.batch : default_batch(o.backend);
  // A batch beyond the frames to render only costs memory (and can fail to build): cap it.
  int64_t total = in.windows ? in.windows->frames() : po.batch;
  if (o.frames > 0) total = std::min<int64_t>(total, o.frames);
  po.batch = static_cast<int>(std::clamp<int64_t>(total, 1, po.batch));
  po.workers = o.workers;
  return po;
}

Result<LoadedRender> load_render_inputs(const RenderJobOptions& opts) {
  TR_RETURN_IF_ERROR(check_common_options(opts));
  RenderJobOptions o = opts;  // a dataset's features fill in features_path below
  LoadedRender in;
  if (!o.dataset_dir.empty() && o.generator_path.empty()) {
    return BadInput(o.dataset_dir +
                    ": a dataset folder holds no models; give --generator FILE (or render its "
                    "package, see talkrender package)");
  }
  // The generator first: a bad model fails before seconds of decoding.
  auto t_load = Clock::now();
  in.generator_path = o.generator_path.empty() ? io::package_model_path(o.package_dir, "generator")
                                               : o.generator_path;
  if (!path_exists(in.generator_path)) {
    return BadInput(in.generator_path + ": generator not found (give --generator FILE.onnx)");
  }
  // Ultralight's pth2onnx.py fixes the batch at 1: relaxed where the graph allows it, so
  // --batch works on such files too (else the predictor runs the batch as calls).
  nn::LoadOptions load_opts;
  load_opts.relax_fixed_batch = true;
  // The hint reads the features file (and package_info.json): only for a checkpoint, the
  // one kind of generator it can matter to, not for every ONNX render.
  load_opts.checkpoint_audio_mode = o.asr;
  if (o.asr.empty() && !in.generator_path.ends_with(".onnx")) {
    load_opts.checkpoint_audio_mode =
        checkpoint_audio_hint({o.features_path, o.package_dir, o.dataset_dir, o.audio_path});
  }
  TR_ASSIGN_OR_RETURN(in.model, nn::Model::load(in.generator_path, load_opts));
  // A .pth generator: what its tensors were read as (the ave/hubert choice included).
  if (!in.model->description().empty()) {
    fmt::print(stderr, "note: {}: {}\n", in.generator_path, in.model->description());
  }
  TR_ASSIGN_OR_RETURN(ModelFit fit, check_generator(*in.model));
  in.model_size = fit.size;
  // The render rules, chosen once here: the family of the model's inputs, then the flags.
  FamilyOverrides overrides;
  overrides.crop_interpolation = o.crop_interpolation;
  if (o.start_frame >= 0) overrides.first_frame = o.start_frame;
  in.family = apply_overrides(fit.family, overrides);
  in.mode = AudioMode{in.family.audio, in.family.audio_shape, in.family.fps};
  in.load_ms = ms_since(t_load);
  if (interrupted()) return Interrupted();
  if (!o.dataset_dir.empty() && o.audio_path.empty() && o.features_path.empty()) {
    o.features_path = io::dataset_features_path(o.dataset_dir, in.family.audio);
    if (o.features_path.empty()) {
      return BadInput(fmt::format(
          "{}: no features for the {} generator {} (aud_ave.npy, aud_hu.npy or aud_wenet.npy "
          "by its audio mode); give --features FILE or --audio FILE",
          o.dataset_dir, in.family.audio, in.generator_path));
    }
  }

  // Speech -> the padded feature matrix P.
  auto t_audio = Clock::now();
  const int64_t window_numel = shape_numel(in.family.audio_shape);
  Tensor features;
  if (!o.features_path.empty()) {
    TR_ASSIGN_OR_RETURN(features, read_features_for_family(o.features_path, in.family));
    if (!o.audio_path.empty()) {
      // Features and audio: the features drive the mouth, the audio is only the sound.
      TR_ASSIGN_OR_RETURN(std::vector<float> samples, audio::load_audio(o.audio_path));
      in.audio_s = static_cast<double>(samples.size()) / audio::kSampleRate;
      TR_RETURN_IF_ERROR(
          check_audio_matches_features(o, features.dim(0), in.audio_s, in.family.fps));
    }
  } else {
    if (std::string(in.family.audio) != "ave") {
      return BadInput(fmt::format(
          "{}: a {} generator needs precomputed features (--features); --audio computes "
          "ave features only",
          in.generator_path, in.family.audio));
    }
    const std::string encoder_path = o.audio_encoder_path.empty()
                                         ? io::package_model_path(o.package_dir, "audio_encoder")
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
    in.audio_s = static_cast<double>(samples.size()) / audio::kSampleRate;
    audio::FeatureOptions fo;
    fo.repeat_ends = in.family.pad_rows;
    auto computed = audio::compute_features(samples, encoder->fn(), fo);
    // The audio front end does not know the file's name (e.g. "audio too short").
    if (!computed.ok()) return Status(computed.error()).with_context(o.audio_path);
    features = std::move(*computed);
  }
  in.audio_ms = ms_since(t_audio);
  const std::string features_name = o.features_path.empty() ? o.audio_path : o.features_path;
  TR_ASSIGN_OR_RETURN(
      std::unique_ptr<FeatureWindows> windows,
      FeatureWindows::create(features, window_numel, features_name, in.family.window_blocks));
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
  TR_ASSIGN_OR_RETURN(io::AvatarPackage pkg, io::open_avatar(o.package_dir, o.dataset_dir, po));
  if (o.start_frame >= pkg.frame_count) {  // a package's was checked from its rects file
    return BadInput(fmt::format("--start-frame {}: the avatar has {} frames (0..{}) in {}",
                                o.start_frame, pkg.frame_count, pkg.frame_count - 1, pkg.dir));
  }
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
  in.fps_num = in.family.fps;
  in.fps_den = 1;
  in.avatar_fps = pkg.fps > 0 ? pkg.fps : in.family.fps;  // a dataset's images have no rate
  in.load_ms += ms_since(t_load);
  return in;
}

Result<RenderReport> run_render_job(const RenderJobOptions& o) {
  const auto t_start = Clock::now();
  RenderReport report;
  TR_RETURN_IF_ERROR(check_common_options(o));
  // The output is decided and checked before anything is loaded (output_target.h).
  const NamedPaths inputs = render_inputs(o);
  TR_RETURN_IF_ERROR(check_output_is_not_an_input(o.out_path, inputs));
  TR_ASSIGN_OR_RETURN(const OutputTarget target, resolve_output(o.out_path, o.image_format));
  TR_RETURN_IF_ERROR(check_output_target(target, o.overwrite, inputs));
  const bool to_dir = target.kind == OutputKind::kImageSequence;
  report.output = target.display();
  if (!to_dir && o.audio_path.empty()) {
    fmt::print(stderr,
               "note: no --audio: the MP4 is silent (--audio FILE adds the speech the features "
               "were made from)\n");
  }

  auto t_session = Clock::now();
  TR_ASSIGN_OR_RETURN(LoadedRender in, load_render_inputs(o));
  const nn::FixedBatch fixed_batch = in.model->fixed_batch();
  // The pipeline runs one batch shape (it pads the last batch), so the session compiles one
  // plan and can drop the model's weights after it; with our reference gone too, the render
  // holds the weights once (in the backend's layout) instead of twice.
  TR_ASSIGN_OR_RETURN(std::shared_ptr<Predictor> predictor,
                      make_predictor(std::move(in.model), o.backend, o.threads,
                                     /*release_weights=*/true, render_precision(o)));
  report.load_ms = ms_since(t_session) - in.audio_ms;
  report.audio_ms = in.audio_ms;
  report.model_size = in.model_size;
  report.audio_mode = in.mode.name;
  report.model_family = in.family.name;
  report.window_blocks = in.family.window_blocks;
  report.first_frame = in.family.first_frame;
  report.crop_interp = interpolation_name(in.family.crop_interpolation);
  report.paste_interp = interpolation_name(in.family.paste_interpolation);
  report.backend = nn::backend_name(o.backend);
  std::tie(report.precision, report.isa) = precision_and_isa(o);
  report.video_fps = static_cast<double>(in.fps_num) / in.fps_den;
  report.avatar_fps = in.avatar_fps;
  if (interrupted()) return Interrupted();
  print_render_notes(in, o, to_dir);

  // The output writer, aimed at a staging name when something of ours is to be replaced.
  io::Mp4Options mp4;
  if (!to_dir) {
    mp4 = mp4_options(in, o);
    report.encoder = fmt::format("x264 {} crf {}", mp4.preset, mp4.crf);
  }
  // The encoder's share of memory (report.memory): what opening it added, less what the
  // frame cache, decoding ahead meanwhile, added.
  const double rss_before_sink = current_rss_mb();
  const int64_t cache_before_sink = in.store->resident_bytes();
  TR_ASSIGN_OR_RETURN(std::shared_ptr<FrameSink> sink,
                      open_output_sink(target, mp4, io::ImageSequenceOptions{}));
  const double encoder_mb =
      std::max(0.0, current_rss_mb() - rss_before_sink -
                        (in.store->resident_bytes() - cache_before_sink) / (1024.0 * 1024.0));

  PipelineOptions po = pipeline_options(in, o);
  report.fixed_batch = fixed_batch_note(fixed_batch, po.batch);
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
  // Kept for the memory breakdown: the pipeline takes its own reference.
  const auto session_predictor = std::dynamic_pointer_cast<SessionPredictor>(predictor);
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
  report.batch = po.batch;
  report.render_s = stats.run_s;
  report.workers = o.workers;
  report.threads = o.threads;
  report.cache_mb = o.cache_mb;
  report.frame_cache_mb = in.store->resident_bytes() / (1024.0 * 1024.0);
  report.frames_decoded = in.store->frames_decoded();
  report.rss_by_minute = *rss;
  report.peak_rss_mb = peak_rss_mb();
  RenderReport::MemoryBreakdown& mem = report.memory;
  mem.frame_cache_mb = report.frame_cache_mb;
  if (session_predictor) {
    const nn::Session::MemoryUse use = session_predictor->session().memory_use();
    mem.weights_mb = use.weights_bytes / (1024.0 * 1024.0);
    mem.workspace_mb = use.workspace_bytes / (1024.0 * 1024.0);
  }
  mem.runtime_mb = mem.weights_mb + mem.workspace_mb;
  mem.encoder_mb = encoder_mb;
  mem.code_mb = file_rss_mb();
  mem.other_mb =
      report.peak_rss_mb - mem.frame_cache_mb - mem.runtime_mb - mem.encoder_mb - mem.code_mb;
  return report;
}

}  // namespace tr::render
