// talkrender bench: the render pipeline's throughput over batch sizes and worker counts, next
// to the inference-only ceiling of the same model at the same batch and threads (the seed
// study's batch x workers table).
//
// For each batch B: a fresh runtime session, one warm-up batch (compiles the plan), then
// for each worker count W, side by side: the ceiling (predict() alone on N frames in
// batches of B) and the full pipeline (prep, inference, compositing on W workers, ordered
// encoding to a temporary output that is deleted afterwards) on the same N frames.
// Each of R rounds measures the ceiling and the pipeline on N frames each, in chunks of C
// frames (whole batches; by default max(2 batches, 8 frames), about a second of work
// here): a ceiling chunk and a pipeline chunk back to back, the order alternating, so the
// two measurements interleave second by second. The round's ratio is (pipeline frames /
// pipeline seconds) / (ceiling frames / ceiling seconds) over its chunks; the row is the
// round with the median ratio, so fps, ceiling_fps and ratio = fps / ceiling_fps belong to
// one round. Why: this VM's speed moves by a third within seconds (neighbours), and a
// ratio of two 10-second runs back to back scattered from 0.70 to 1.15 for one row, while
// adjacent one-second runs scattered about 0.88-1.06 (bench --frames 8 vs 24, 21 rounds,
// 2026-11-28). Each pipeline chunk pays its own tail (the last batch's compositing and
// encoding after its last inference), which a long render pays once: chunks make the
// pipeline look slightly slower, never faster.
#include <fcntl.h>
#include <fmt/format.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "cli/cli_util.h"
#include "cli/commands.h"
#include "common/interrupt.h"
#include "io/package.h"
#include "render/render_job.h"

extern char** environ;

namespace tr::cli {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

double ms_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

int fail(const Error& e) {
  std::fprintf(stderr, "talkrender bench: %s\n", e.message.c_str());
  return e.exit_code();
}

Result<std::vector<int>> parse_list(const std::string& flag, const std::string& text) {
  std::vector<int> out;
  size_t pos = 0;
  for (;;) {
    const size_t comma = text.find(',', pos);
    const std::string item = text.substr(pos, comma == std::string::npos ? comma : comma - pos);
    char* end = nullptr;
    const long v = std::strtol(item.c_str(), &end, 10);
    if (item.empty() || *end != '\0' || v < 1 || v > 256) {
      return BadInput(flag + " '" + text + "': expected positive integers, e.g. 1,2,4");
    }
    out.push_back(static_cast<int>(v));
    if (comma == std::string::npos) return out;
    pos = comma + 1;
  }
}

// Discards frames: the pipeline without any encoding cost.
class NullSink final : public render::FrameSink {
 public:
  Status write(int64_t, const cv::Mat&) override { return Status::Ok(); }
  Status finish() override { return Status::Ok(); }
  void abort() override {}
};

// Runs `argv` and returns its wall time in ms, or an error if it cannot run or fails.
Result<double> time_command(const std::vector<std::string>& args) {
  std::vector<char*> argv;
  for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  const auto t0 = Clock::now();
  pid_t pid = 0;
  // Its messages would interleave with the table; failure is reported by exit status.
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
  posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
  const int rc = posix_spawnp(&pid, argv[0], &fa, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  if (rc != 0) return RuntimeError(args[0] + ": cannot run");
  int status = 0;
  if (waitpid(pid, &status, 0) < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    return RuntimeError(args[0] + " failed");
  }
  return ms_since(t0);
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// The package load (rects, probe, decode of every frame into the compact cache) next to
// `ffmpeg -threads T -i full_body_video.mp4 -f null -`, alternating, `rounds` times each.
Status compare_load_with_ffmpeg(const std::string& package, int threads, int rounds, bool json) {
  const std::string video = (fs::path(package) / "full_body_video.mp4").string();
  std::vector<double> ours, ffmpeg;
  for (int r = 0; r < rounds; ++r) {
    auto ff = time_command({"ffmpeg", "-nostdin", "-v", "error", "-threads",
                            std::to_string(threads), "-i", video, "-f", "null", "-"});
    if (!ff.ok()) {
      std::fprintf(stderr, "talkrender bench: %s on %s; package load comparison skipped\n",
                   ff.error().message.c_str(), video.c_str());
      return Status::Ok();
    }
    ffmpeg.push_back(*ff);
    io::PackageOptions po;
    po.frame_store = true;
    po.decode.threads = threads;
    const auto t0 = Clock::now();
    TR_ASSIGN_OR_RETURN(io::AvatarPackage pkg, io::open_package(package, po));
    ours.push_back(ms_since(t0));
  }
  const double o = median(ours), f = median(ffmpeg);
  if (json) {
    std::printf(
        "{\"package_load_ms\": %.1f, \"ffmpeg_decode_ms\": %.1f, \"load_ratio\": %.3f, "
        "\"threads\": %d, \"rounds\": %d}\n",
        o, f, o / f, threads, rounds);
  } else {
    std::printf(
        "package load (decode %s into the frame cache): %.0f ms; ffmpeg -threads %d -i ... -f "
        "null -: %.0f ms; ratio %.2f (median of %d alternating rounds)\n",
        video.c_str(), o, threads, f, o / f, rounds);
  }
  std::fflush(stdout);
  return Status::Ok();
}

struct Row {
  int batch = 0, workers = 0;
  int64_t frames = 0;
  double fps = 0, ceiling_fps = 0;
  double prep_ms = 0, infer_ms = 0, composite_ms = 0, encode_ms = 0, wait_ms = 0;
  double peak_rss_mb = 0;
};

// Inference alone on `frames` frames in batches of `batch`: the seconds it took.
Result<double> ceiling_seconds(render::Predictor& predictor, const render::LoadedRender& in,
                               int batch, int64_t frames) {
  const int S = in.model_size;
  Shape audio_shape = {batch};
  audio_shape.insert(audio_shape.end(), in.mode.shape.begin(), in.mode.shape.end());
  Tensor input = Tensor::f32({batch, 6, S, S});
  Tensor audio = Tensor::f32(audio_shape);
  // Real windows and mid-grey pixels: the content does not change the work done.
  std::fill(input.data<float>(), input.data<float>() + input.numel(), 0.5f);
  for (int j = 0; j < batch; ++j)
    in.windows->window(j % in.windows->frames(), audio.data<float>() + j * audio.numel() / batch);
  int64_t done = 0;
  const auto t0 = Clock::now();
  while (done < frames) {
    if (interrupted()) return Interrupted();
    TR_ASSIGN_OR_RETURN(Tensor out, predictor.predict(input, audio));
    done += batch;
  }
  return ms_since(t0) / 1000.0;
}

// A row's chunk: whole batches; by default at least two batches and at least 8 frames (about
// a second of work here). kAutoChunkRule is the same rule in words, for the table header.
constexpr const char* kAutoChunkRule = "max(2 batches, 8)";  // frames
int64_t chunk_for(int batch, int64_t chunk_frames) {
  if (chunk_frames > 0) return std::max<int64_t>(batch, chunk_frames - chunk_frames % batch);
  return std::max<int64_t>(2 * batch, (8 + batch - 1) / batch * batch);
}

}  // namespace

int cmd_bench(int argc, char** argv) {
  render::RenderJobOptions o;
  std::string batches_arg = "1,2,4,8", workers_arg = "1,2,4", out_format = "mp4", backend = "cpu";
  int64_t frames = 100;
  int load_rounds = 3;
  int rounds = 5;
  int64_t chunk_frames = 0;
  bool json = false, no_ffmpeg = false;
  CLI::App app{
      "Measure the render pipeline's frames per second over batch sizes and worker counts, "
      "each row next to the inference-only FPS of the same model at the same batch and "
      "threads (the ceiling) and their ratio.",
      "talkrender bench"};
  add_avatar_options(app, &o.package_dir, &o.dataset_dir);
  app.add_option("--generator", o.generator_path,
                 "generator ONNX (default: <package>/models/generator.onnx)");
  auto* feat = app.add_option("--features", o.features_path, "precomputed features P (.bin/.npy)");
  auto* aud = app.add_option("--audio,-a", o.audio_path, "speech audio file");
  aud->excludes(feat);
  app.add_option("--audio-encoder", o.audio_encoder_path,
                 "audio encoder ONNX (default: <package>/models/audio_encoder.onnx)");
  app.add_option("--batches", batches_arg, "batch sizes to measure")->capture_default_str();
  app.add_option("--workers", workers_arg, "compositing worker counts to measure")
      ->capture_default_str();
  app.add_option("--frames", frames,
                 "frames rendered per measurement (rounded down to a multiple of the batch)")
      ->capture_default_str();
  app.add_option("--rounds", rounds,
                 "measurements per row, each of --frames frames for the ceiling and for the "
                 "pipeline; the row is the round with the median ratio")
      ->capture_default_str();
  app.add_option("--chunk-frames", chunk_frames,
                 std::string("within a round, ceiling and pipeline alternate every C frames "
                             "(whole batches; 0 = auto: ") +
                     kAutoChunkRule +
                     " frames), so both see the same moments of a shared machine whose speed "
                     "changes within seconds");
  app.add_option("--out-format", out_format,
                 "what each row writes: mp4 (H.264, deleted after), jpg (image sequence, "
                 "deleted after) or none")
      ->check(CLI::IsMember({"mp4", "jpg", "none"}))
      ->capture_default_str();
  app.add_option("--preset", o.preset,
                 "x264 preset (default: the render's, ultrafast on cpu, superfast on cuda)");
  app.add_option("--crf", o.crf, "x264 CRF")->capture_default_str();
  app.add_option("--threads", o.threads, "runtime threads (0 = one per core)")
      ->capture_default_str();
  app.add_option("--cache-mb", o.cache_mb, "frame cache bound in MiB (0 = every frame)")
      ->capture_default_str();
  app.add_option("--device,--backend", backend,
                 "runtime: cpu, cuda or ref (--backend is the old name)")
      ->capture_default_str();
  std::string precision;
  app.add_option(
      "--precision", precision,
      "runtime precision: fp32, bf16 (cpu: needs native bf16, AVX512_BF16 or AMX; exit 2 "
      "without), fp16 (cuda) or auto (cpu: " +
          std::string(kCpuAutoPrecision) +
          "; cuda fp16). "
          "Default: fp32");
  app.add_option("--load-rounds", load_rounds,
                 "rounds of the package-load vs ffmpeg comparison (0 skips it)")
      ->capture_default_str();
  app.add_flag("--no-ffmpeg", no_ffmpeg, "skip the package-load vs ffmpeg comparison");
  app.add_flag("--json", json,
               "one JSON object per row on stdout (batch, workers, fps, infer_ms, "
               "composite_ms, encode_ms, ceiling_fps, ratio, ...)");
  app.footer(
      "fps counts frames / (first inference -> last frame written), summed over the round's "
      "chunks; ceiling_fps likewise over its chunks of predict() alone. infer_ms, composite_ms "
      "and encode_ms are per frame: time inside predict, CPU time of compositing summed over "
      "workers, and time the writer spent in the encoder.");
  if (int rc = parse_args(app, argc, argv); rc >= 0) return rc;
  if (Status s = check_avatar_options(o.package_dir, o.dataset_dir); !s.ok())
    return fail(s.error());
  auto batches = parse_list("--batches", batches_arg);
  if (!batches.ok()) return fail(batches.error());
  auto workers = parse_list("--workers", workers_arg);
  if (!workers.ok()) return fail(workers.error());
  if (frames < 1) return fail(BadInput("--frames must be >= 1"));
  if (rounds < 1) return fail(BadInput("--rounds must be >= 1"));
  if (chunk_frames < 0) return fail(BadInput("--chunk-frames must be >= 0"));
  if (o.threads < 0) return fail(BadInput("--threads must be >= 0"));
  auto be = nn::parse_backend(backend);
  if (!be.ok()) return fail(be.error());
  o.backend = *be;
  if (!precision.empty()) {
    auto p = nn::parse_precision(precision);
    if (!p.ok()) return fail(p.error());
    o.precision = *p;
  }
  o.frames = frames;

  auto loaded = render::load_render_inputs(o);
  if (!loaded.ok()) return fail(loaded.error());
  const render::LoadedRender& in = *loaded;
  // After loading, so that bad inputs are reported first.
  // (A dataset's frames are JPEG files: there is no video for ffmpeg to compare with.)
  if (!no_ffmpeg && load_rounds > 0 && !o.package_dir.empty()) {
    const int decode_threads =
        o.threads > 0 ? o.threads : static_cast<int>(sysconf(_SC_NPROCESSORS_ONLN));
    Status s = compare_load_with_ffmpeg(o.package_dir, decode_threads, load_rounds, json);
    if (!s.ok()) return fail(s.error());
  }
  const int64_t n = std::min<int64_t>(frames, in.windows->frames());
  if (!json) {
    std::printf(
        "model %s (%dx%d %s), %lld frames per measurement in chunks of %s, median-ratio "
        "round of %d, output %s%s, threads %s, cache %s\n",
        in.generator_path.c_str(), in.model_size, in.model_size, in.mode.name,
        static_cast<long long>(n),
        chunk_frames > 0 ? std::to_string(chunk_frames).c_str() : kAutoChunkRule, rounds,
        out_format.c_str(),
        out_format == "mp4" ? (" (preset " + render::mp4_options(in, o).preset + ")").c_str() : "",
        o.threads ? std::to_string(o.threads).c_str() : "auto",
        o.cache_mb ? (std::to_string(o.cache_mb) + " MiB").c_str() : "all frames");
    std::printf("%5s %7s %8s %10s %14s %11s %12s %7s  %s\n", "batch", "workers", "fps",
                "infer ms/f", "composite ms/f", "encode ms/f", "ceiling fps", "ratio",
                "ratio per round");
    std::fflush(stdout);
  }
  const fs::path tmp_root =
      fs::temp_directory_path() / ("talkrender-bench-" + std::to_string(::getpid()));
  std::error_code ec;
  fs::create_directories(tmp_root, ec);
  if (ec) return fail(RuntimeError(tmp_root.string() + ": cannot create: " + ec.message()));
  struct Cleanup {
    fs::path p;
    ~Cleanup() {
      std::error_code e;
      fs::remove_all(p, e);
    }
  } cleanup{tmp_root};

  for (int b : *batches) {
    auto predictor = render::make_predictor(in.model, o.backend, o.threads,
                                            /*release_weights=*/false, render::render_precision(o));
    if (!predictor.ok()) return fail(predictor.error());
    // Whole batches only, in both measurements: the pipeline pads a short last batch, which
    // would charge it for frames it does not count.
    const int64_t row_frames = std::max<int64_t>(b, n - n % b);
    const int64_t chunk = chunk_for(b, chunk_frames);
    // Warm-up: compiles the plan for this batch.
    if (auto w = ceiling_seconds(**predictor, in, b, b); !w.ok()) return fail(w.error());
    for (int w : *workers) {
      Row row;
      row.batch = b;
      row.workers = w;
      std::vector<Row> runs;
      // One pipeline run of `frames` frames into a fresh temporary output (deleted after).
      auto pipeline_run = [&](int64_t frames) -> Result<render::PipelineStats> {
        render::RenderJobOptions ro = o;
        ro.batch = b;
        ro.workers = w;
        ro.frames = frames;  // also cuts the MP4's audio at this chunk's end
        std::shared_ptr<render::FrameSink> sink;
        const fs::path out = tmp_root / ("b" + std::to_string(b) + "w" + std::to_string(w));
        if (out_format == "none") {
          sink = std::make_shared<NullSink>();
        } else if (out_format == "jpg") {
          io::ImageSequenceOptions io_opts;
          io_opts.format = io::ImageFormat::kJpg;
          TR_ASSIGN_OR_RETURN(auto writer, io::create_image_sequence_writer(out.string(), io_opts));
          sink = render::make_writer_sink(std::move(writer), out.string());
        } else {
          TR_ASSIGN_OR_RETURN(auto writer, io::create_mp4_writer(out.string() + ".mp4",
                                                                 render::mp4_options(in, ro)));
          sink = render::make_writer_sink(std::move(writer), out.string() + ".mp4");
        }
        render::PipelineOptions po = render::pipeline_options(in, ro);
        auto stats = render::run_pipeline(in.avatar, in.windows, *predictor, sink, po);
        fs::remove_all(out, ec);
        fs::remove(out.string() + ".mp4", ec);
        return stats;
      };
      for (int round = 0; round < rounds; ++round) {
        // The round's frames in chunks, each chunk a ceiling run and a pipeline run back to
        // back, in alternating order.
        render::PipelineStats sum;
        double ceiling_s = 0;
        int64_t ceiling_frames = 0;
        for (int64_t done = 0, k = 0; done < row_frames; done += chunk, ++k) {
          const int64_t c = std::min(chunk, row_frames - done);
          auto measure_ceiling = [&]() -> Status {
            TR_ASSIGN_OR_RETURN(double seconds, ceiling_seconds(**predictor, in, b, c));
            ceiling_s += seconds;
            ceiling_frames += c;
            return Status::Ok();
          };
          if ((round + k) % 2 == 0) {
            if (Status s = measure_ceiling(); !s.ok()) return fail(s.error());
          }
          auto stats = pipeline_run(c);
          if (!stats.ok()) return fail(stats.error());
          sum.frames += stats->frames;
          sum.run_s += stats->run_s;
          sum.prep_ms += stats->prep_ms;
          sum.infer_ms += stats->infer_ms;
          sum.composite_ms += stats->composite_ms;
          sum.encode_ms += stats->encode_ms;
          sum.wait_frames_ms += stats->wait_frames_ms;
          if ((round + k) % 2 == 1) {
            if (Status s = measure_ceiling(); !s.ok()) return fail(s.error());
          }
        }
        Row run = row;
        const double f = static_cast<double>(sum.frames);
        run.frames = sum.frames;
        run.fps = sum.run_s > 0 ? f / sum.run_s : 0;
        run.ceiling_fps = ceiling_s > 0 ? static_cast<double>(ceiling_frames) / ceiling_s : 0;
        run.prep_ms = sum.prep_ms / f;
        run.infer_ms = sum.infer_ms / f;
        run.composite_ms = sum.composite_ms / f;
        run.encode_ms = sum.encode_ms / f;
        run.wait_ms = sum.wait_frames_ms / f;
        runs.push_back(run);
      }
      // The round with the median ratio is the row (the upper middle one for even counts).
      auto ratio_of = [](const Row& r) { return r.ceiling_fps > 0 ? r.fps / r.ceiling_fps : 0; };
      std::vector<double> round_ratios;
      for (const Row& r : runs) round_ratios.push_back(ratio_of(r));
      std::sort(runs.begin(), runs.end(),
                [&](const Row& a, const Row& b2) { return ratio_of(a) < ratio_of(b2); });
      row = runs[runs.size() / 2];
      row.peak_rss_mb = render::peak_rss_mb();
      const double ratio = ratio_of(row);
      if (json) {
        nlohmann::json j = {{"batch", row.batch},
                            {"workers", row.workers},
                            {"frames", row.frames},
                            {"fps", row.fps},
                            {"infer_ms", row.infer_ms},
                            {"composite_ms", row.composite_ms},
                            {"encode_ms", row.encode_ms},
                            {"prep_ms", row.prep_ms},
                            {"wait_frames_ms", row.wait_ms},
                            {"ceiling_fps", row.ceiling_fps},
                            {"ratio", ratio},
                            {"out_format", out_format},
                            {"threads", o.threads},
                            {"cache_mb", o.cache_mb},
                            {"rounds", rounds},
                            {"chunk_frames", chunk},
                            {"round_ratios", round_ratios},
                            {"peak_rss_mb", row.peak_rss_mb}};
        std::printf("%s\n", j.dump().c_str());
      } else {
        std::string spread;
        for (double r : round_ratios) spread += fmt::format(" {:.2f}", r);
        std::printf("%5d %7d %8.2f %10.1f %14.2f %11.2f %12.2f %7.3f  %s\n", row.batch, row.workers,
                    row.fps, row.infer_ms, row.composite_ms, row.encode_ms, row.ceiling_fps, ratio,
                    spread.c_str() + 1);
      }
      std::fflush(stdout);
    }
  }
  return 0;
}

}  // namespace tr::cli
