// Micro benchmarks of the per-frame CPU work around inference: crop preparation,
// compositing, colour conversion (the swscale calls of the MP4 writer and the video reader,
// next to OpenCV's cvtColor) and the mel spectrogram. On a 2-core machine these stages
// share the cores with the generator, so their CPU time per frame bounds how close the
// pipeline can get to inference-only FPS (issue 5).
//
// Run: build-x/bench_render_micro [--benchmark_filter=...]
//      [--benchmark_repetitions=5 --benchmark_report_aggregates_only=true]
// The "threads" argument sets OpenCV's (or swscale's) thread count: 1 is what one pipeline
// worker costs; the machine's core count is what a lone call gets by default.
#include <benchmark/benchmark.h>

extern "C" {
#include <libavutil/frame.h>
#include <libavutil/opt.h>
#include <libswscale/swscale.h>
}

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <memory>
#include <numbers>
#include <opencv2/core.hpp>
#include <opencv2/imgproc.hpp>
#include <random>
#include <vector>

#include "audio/audio.h"
#include "io/video_reader.h"
#include "render/render.h"

namespace {

constexpr int kWidth = 1280, kHeight = 720;

// A face-sized rect, a little larger than the sample package's (~180 px) so that the
// S = 320 crop is a mild upscale, as for a close-up avatar.
const cv::Rect kRect(490, 150, 300, 340);

// A frame that compresses and converts like video: smooth gradients, a few soft shapes and
// seeded noise. All-zero frames would let memory-bound paths look faster than they are.
cv::Mat synthetic_frame(unsigned seed) {
  cv::Mat f = tr::io::allocate_bgr_frame(kHeight, kWidth);
  std::mt19937 rng(seed);
  std::normal_distribution<float> noise(0.f, 6.f);
  for (int y = 0; y < kHeight; ++y) {
    uint8_t* row = f.ptr<uint8_t>(y);
    for (int x = 0; x < kWidth; ++x) {
      const float gx = float(x) / kWidth, gy = float(y) / kHeight;
      const float base[3] = {60 + 120 * gx, 80 + 100 * gy, 140 - 60 * gx * gy};
      for (int c = 0; c < 3; ++c) row[x * 3 + c] = cv::saturate_cast<uint8_t>(base[c] + noise(rng));
    }
  }
  cv::ellipse(f, {640, 330}, {150, 190}, 0, 0, 360, {120, 150, 200}, cv::FILLED, cv::LINE_AA);
  cv::rectangle(f, {420, 520}, {860, 720}, {40, 40, 60}, cv::FILLED, cv::LINE_AA);
  cv::GaussianBlur(f, f, {3, 3}, 0);
  return f;
}

// A prediction [3, S, S] in [0, 1] with structure and noise, like a generator output.
std::vector<float> synthetic_prediction(int size, unsigned seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> noise(-0.05f, 0.05f);
  std::vector<float> p(size_t(3) * size * size);
  for (int c = 0; c < 3; ++c)
    for (int y = 0; y < size; ++y)
      for (int x = 0; x < size; ++x)
        p[(size_t(c) * size + y) * size + x] =
            std::clamp(0.3f + 0.4f * float(x + y + 40 * c) / (2 * size) + noise(rng), 0.f, 1.f);
  return p;
}

class CvThreads {
 public:
  explicit CvThreads(int n) : saved_(cv::getNumThreads()) { cv::setNumThreads(n); }
  ~CvThreads() { cv::setNumThreads(saved_); }

 private:
  int saved_;
};

// With --benchmark_repetitions, the minimum is the figure least inflated by other work on
// a shared 2-core machine; mean and median are reported too.
double min_of(const std::vector<double>& v) { return *std::min_element(v.begin(), v.end()); }

void ThreadArgs(benchmark::internal::Benchmark* b, std::vector<int64_t> sizes) {
  const int cores = std::max(1, cv::getNumberOfCPUs());
  for (int64_t s : sizes) {
    b->Args({s, 1});
    if (cores > 1) b->Args({s, cores});
  }
  b->ArgNames({"S", "threads"})->Unit(benchmark::kMicrosecond)->UseRealTime();
  b->ComputeStatistics("min", min_of);
}

// ---------------------------------------------------------------------------------------
// Crop preparation: what the inference thread does per frame before predict().

// args: S, OpenCV threads
void BM_PrepareCrop(benchmark::State& state) {
  const auto s = tr::render::PrepSettings::for_size(int(state.range(0)));
  CvThreads threads(int(state.range(1)));
  const cv::Mat full = synthetic_frame(1);
  std::vector<float> input(size_t(6) * s.size * s.size);
  for (auto _ : state) {
    cv::Mat crop = tr::render::make_crop(full, kRect, s);
    tr::render::fill_generator_input(crop, s, input.data());
    benchmark::DoNotOptimize(input.data());
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_PrepareCrop)->Apply([](auto* b) { ThreadArgs(b, {320, 160}); });

// The two halves separately, to see which one to optimise.
void BM_MakeCrop(benchmark::State& state) {
  const auto s = tr::render::PrepSettings::for_size(int(state.range(0)));
  CvThreads threads(int(state.range(1)));
  const cv::Mat full = synthetic_frame(1);
  for (auto _ : state) {
    cv::Mat crop = tr::render::make_crop(full, kRect, s);
    benchmark::DoNotOptimize(crop.data);
  }
}
BENCHMARK(BM_MakeCrop)->Apply([](auto* b) { ThreadArgs(b, {320, 160}); });

void BM_FillGeneratorInput(benchmark::State& state) {
  const auto s = tr::render::PrepSettings::for_size(int(state.range(0)));
  const cv::Mat crop = tr::render::make_crop(synthetic_frame(1), kRect, s);
  std::vector<float> input(size_t(6) * s.size * s.size);
  for (auto _ : state) {
    tr::render::fill_generator_input(crop, s, input.data());
    benchmark::DoNotOptimize(input.data());
    benchmark::ClobberMemory();
  }
}
BENCHMARK(BM_FillGeneratorInput)
    ->Arg(320)
    ->Arg(160)
    ->ArgName("S")
    ->Unit(benchmark::kMicrosecond)
    ->UseRealTime()
    ->ComputeStatistics("min", min_of);

// ---------------------------------------------------------------------------------------
// Compositing: what one pipeline worker does per frame after predict().

void BM_CompositeFrame(benchmark::State& state) {
  const auto s = tr::render::PrepSettings::for_size(int(state.range(0)));
  CvThreads threads(int(state.range(1)));
  const cv::Mat full = synthetic_frame(1);
  const cv::Mat crop = tr::render::make_crop(full, kRect, s);
  const std::vector<float> pred = synthetic_prediction(s.size, 2);
  cv::Mat out;
  for (auto _ : state) {
    tr::render::composite_frame(full, kRect, crop, pred.data(), s, &out);
    benchmark::DoNotOptimize(out.data);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_CompositeFrame)->Apply([](auto* b) { ThreadArgs(b, {320, 160}); });

// The full-frame copy alone: composite_frame starts with one, and a pipeline that writes
// into a reused buffer or composites in place would save this much.
void BM_FullFrameCopy(benchmark::State& state) {
  const cv::Mat full = synthetic_frame(1);
  cv::Mat out;
  for (auto _ : state) {
    full.copyTo(out);
    benchmark::DoNotOptimize(out.data);
  }
}
BENCHMARK(BM_FullFrameCopy)
    ->Unit(benchmark::kMicrosecond)
    ->UseRealTime()
    ->ComputeStatistics("min", min_of);

// ---------------------------------------------------------------------------------------
// Colour conversion at 1280x720.

struct AvFrameDeleter {
  void operator()(AVFrame* f) const { av_frame_free(&f); }
};
using AvFramePtr = std::unique_ptr<AVFrame, AvFrameDeleter>;
struct SwsDeleter {
  void operator()(SwsContext* c) const { sws_freeContext(c); }
};
using SwsPtr = std::unique_ptr<SwsContext, SwsDeleter>;

AvFramePtr yuv_frame() {
  AvFramePtr f(av_frame_alloc());
  f->format = AV_PIX_FMT_YUV420P;
  f->width = kWidth;
  f->height = kHeight;
  // The sample video's tags: BT.601 (bt470bg), limited range.
  f->colorspace = AVCOL_SPC_BT470BG;
  f->color_range = AVCOL_RANGE_MPEG;
  if (av_frame_get_buffer(f.get(), 0) < 0) std::abort();
  return f;
}

// A context like the MP4 writer's (BGR24 -> YUV420P, SWS_BICUBIC, default BT.601 limited
// range). threads > 1 uses swscale's slice threads (FFmpeg >= 5.0), which only
// sws_scale_frame() drives; the writer uses sws_scale() with one thread today.
SwsPtr make_sws(AVPixelFormat src, AVPixelFormat dst, int threads) {
  SwsPtr c(sws_alloc_context());
  av_opt_set_int(c.get(), "srcw", kWidth, 0);
  av_opt_set_int(c.get(), "srch", kHeight, 0);
  av_opt_set_int(c.get(), "src_format", src, 0);
  av_opt_set_int(c.get(), "dstw", kWidth, 0);
  av_opt_set_int(c.get(), "dsth", kHeight, 0);
  av_opt_set_int(c.get(), "dst_format", dst, 0);
  av_opt_set_int(c.get(), "sws_flags", SWS_BICUBIC, 0);
  av_opt_set_int(c.get(), "threads", threads, 0);
  if (sws_init_context(c.get(), nullptr, nullptr) < 0) std::abort();
  return c;
}

// Mirrors video_reader.cc's BgrConverter: matrix from the frame's colorspace, source range
// from its color_range, output matrix following the input one (as the ffmpeg CLI does).
void set_decoder_colourspace(SwsContext* c, const AVFrame* f) {
  int *inv_table, *table, src_full, dst_full, brightness, contrast, saturation;
  sws_getColorspaceDetails(c, &inv_table, &src_full, &table, &dst_full, &brightness, &contrast,
                           &saturation);
  const int* matrix = sws_getCoefficients(f->colorspace);
  src_full = f->color_range == AVCOL_RANGE_JPEG;
  sws_setColorspaceDetails(c, matrix, src_full, matrix, dst_full, brightness, contrast, saturation);
}

// BGR frame wrapped as a packed AVFrame (no copy), for sws_scale_frame.
AvFramePtr wrap_bgr(cv::Mat& bgr) {
  AvFramePtr f(av_frame_alloc());
  f->format = AV_PIX_FMT_BGR24;
  f->width = bgr.cols;
  f->height = bgr.rows;
  f->data[0] = bgr.data;
  f->linesize[0] = int(bgr.step[0]);
  return f;
}

void SwsArgs(benchmark::internal::Benchmark* b) {
  const int cores = std::max(1, cv::getNumberOfCPUs());
  b->Arg(1);
  if (cores > 1) b->Arg(cores);
  b->ArgName("threads")->Unit(benchmark::kMicrosecond)->UseRealTime();
  b->ComputeStatistics("min", min_of);
}

// What mp4_writer.cc does per frame before x264 (threads 1 = sws_scale as it is now).
void BM_Sws_BgrToYuv420p(benchmark::State& state) {
  const int threads = int(state.range(0));
  cv::Mat bgr = synthetic_frame(1);  // has swscale's read slack (allocate_bgr_frame)
  AvFramePtr yuv = yuv_frame();
  SwsPtr c = make_sws(AV_PIX_FMT_BGR24, AV_PIX_FMT_YUV420P, threads);
  AvFramePtr src = wrap_bgr(bgr);
  for (auto _ : state) {
    if (threads == 1) {
      const uint8_t* s[4] = {bgr.data, nullptr, nullptr, nullptr};
      int stride[4] = {int(bgr.step[0]), 0, 0, 0};
      sws_scale(c.get(), s, stride, 0, kHeight, yuv->data, yuv->linesize);
    } else if (sws_scale_frame(c.get(), yuv.get(), src.get()) < 0) {
      state.SkipWithError("sws_scale_frame failed");
      break;
    }
    benchmark::DoNotOptimize(yuv->data[0]);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_Sws_BgrToYuv420p)->Apply(SwsArgs);

// What video_reader.cc does per decoded frame.
void BM_Sws_Yuv420pToBgr(benchmark::State& state) {
  const int threads = int(state.range(0));
  cv::Mat bgr = synthetic_frame(1);
  AvFramePtr yuv = yuv_frame();
  {
    // Realistic YUV content: the synthetic frame through the writer's conversion.
    SwsPtr enc = make_sws(AV_PIX_FMT_BGR24, AV_PIX_FMT_YUV420P, 1);
    const uint8_t* s[4] = {bgr.data, nullptr, nullptr, nullptr};
    int stride[4] = {int(bgr.step[0]), 0, 0, 0};
    sws_scale(enc.get(), s, stride, 0, kHeight, yuv->data, yuv->linesize);
  }
  SwsPtr c = make_sws(AV_PIX_FMT_YUV420P, AV_PIX_FMT_BGR24, threads);
  set_decoder_colourspace(c.get(), yuv.get());
  cv::Mat out = tr::io::allocate_bgr_frame(kHeight, kWidth);  // swscale's write slack
  AvFramePtr dst = wrap_bgr(out);
  for (auto _ : state) {
    if (threads == 1) {
      uint8_t* d[4] = {out.data, nullptr, nullptr, nullptr};
      int stride[4] = {int(out.step[0]), 0, 0, 0};
      sws_scale(c.get(), yuv->data, yuv->linesize, 0, kHeight, d, stride);
    } else if (sws_scale_frame(c.get(), dst.get(), yuv.get()) < 0) {
      state.SkipWithError("sws_scale_frame failed");
      break;
    }
    benchmark::DoNotOptimize(out.data);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_Sws_Yuv420pToBgr)->Apply(SwsArgs);

// OpenCV's fixed-point BT.601 converters for comparison (not bit-identical to swscale's
// bicubic path, so only usable where the reader's CLI-exact pixels are not required).
void BM_Cv_BgrToI420(benchmark::State& state) {
  CvThreads threads(int(state.range(0)));
  const cv::Mat bgr = synthetic_frame(1);
  cv::Mat yuv;
  for (auto _ : state) {
    cv::cvtColor(bgr, yuv, cv::COLOR_BGR2YUV_I420);
    benchmark::DoNotOptimize(yuv.data);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_Cv_BgrToI420)->Apply(SwsArgs);

void BM_Cv_I420ToBgr(benchmark::State& state) {
  CvThreads threads(int(state.range(0)));
  cv::Mat yuv;
  cv::cvtColor(synthetic_frame(1), yuv, cv::COLOR_BGR2YUV_I420);
  cv::Mat bgr;
  for (auto _ : state) {
    cv::cvtColor(yuv, bgr, cv::COLOR_YUV2BGR_I420);
    benchmark::DoNotOptimize(bgr.data);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_Cv_I420ToBgr)->Apply(SwsArgs);

// ---------------------------------------------------------------------------------------
// Mel spectrogram of 16 kHz audio (contract steps 2-7).

// Speech-like test signal: a few harmonics with a slow pitch glide, amplitude envelope and
// seeded noise, so the FFT sees non-trivial spectra.
std::vector<float> synthetic_speech(double seconds, unsigned seed) {
  const size_t n = size_t(seconds * 16000);
  std::mt19937 rng(seed);
  std::normal_distribution<float> noise(0.f, 0.02f);
  std::vector<float> s(n);
  double phase = 0;
  for (size_t i = 0; i < n; ++i) {
    const double t = double(i) / 16000;
    const double f0 = 120 + 40 * std::sin(2 * std::numbers::pi * 0.7 * t);
    phase += 2 * std::numbers::pi * f0 / 16000;
    const double env = 0.5 + 0.5 * std::sin(2 * std::numbers::pi * 3.0 * t);
    double v = 0;
    for (int h = 1; h <= 6; ++h) v += std::sin(h * phase) / h;
    s[i] = float(0.3 * env * v) + noise(rng);
  }
  return s;
}

// arg: seconds of audio
void BM_ComputeMel(benchmark::State& state) {
  const auto samples = synthetic_speech(double(state.range(0)), 3);
  for (auto _ : state) {
    tr::Tensor mel = tr::audio::compute_mel(samples);
    benchmark::DoNotOptimize(mel);
  }
  // Seconds of audio per second of wall time: how far above real time the mel runs.
  state.counters["audio_s"] =
      benchmark::Counter(double(state.range(0)), benchmark::Counter::kIsIterationInvariantRate);
}
BENCHMARK(BM_ComputeMel)
    ->Arg(1)
    ->Arg(10)
    ->ArgName("seconds")
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime()
    ->ComputeStatistics("min", min_of);

}  // namespace

BENCHMARK_MAIN();
