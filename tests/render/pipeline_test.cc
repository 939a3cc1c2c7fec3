// The threaded pipeline with fake stages: ordering and determinism over many batch/worker
// combinations, backpressure bound, errors, and interrupts (temporary files removed).
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <mutex>
#include <random>
#include <thread>

#include "common/interrupt.h"
#include "render/render.h"

namespace tr::render {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

constexpr int kS = 32;  // a small model size keeps the tests fast

PrepSettings small_settings() {
  PrepSettings s = PrepSettings::for_size(kS);
  s.mask = cv::Rect(2, 2, 28, 26);
  return s;
}

std::shared_ptr<AvatarFrames> make_avatar(int n) {
  auto a = std::make_shared<AvatarFrames>();
  cv::RNG rng(42);
  for (int k = 0; k < n; ++k) {
    cv::Mat f(60, 80, CV_8UC3);
    rng.fill(f, cv::RNG::UNIFORM, 0, 256);
    a->full.push_back(f);
    a->rects.emplace_back(5 + k % 7, 4 + k % 5, 30 + k % 11, 28 + k % 9);
  }
  return a;
}

// Audio window i: 16 blocks of 4 floats that encode i.
class FakeAudio : public AudioWindows {
 public:
  explicit FakeAudio(int64_t n) : n_(n) {}
  int64_t frames() const override { return n_; }
  int64_t window_numel() const override { return 64; }
  void window(int64_t i, float* dst) const override {
    for (int j = 0; j < 64; ++j) dst[j] = static_cast<float>(i) * 0.01f + j * 1e-4f;
  }

 private:
  int64_t n_;
};

// Each sample's output depends only on its own input and audio; random delays shuffle
// the timing so that workers finish out of order.
class FakePredictor : public Predictor {
 public:
  explicit FakePredictor(int max_delay_ms = 3, int fixed_delay_ms = 0)
      : max_delay_ms_(max_delay_ms), fixed_delay_ms_(fixed_delay_ms) {}
  Result<Tensor> predict(const Tensor& input, const Tensor& audio) override {
    const int64_t B = input.dim(0);
    if (input.shape() != Shape{B, 6, kS, kS} || audio.dim(0) != B) {
      return RuntimeError("fake predictor: bad input shapes");
    }
    calls++;
    {
      std::lock_guard<std::mutex> lock(seen_mu);
      batch_sizes.push_back(B);
    }
    const int64_t an = audio.numel() / B;
    Tensor out = Tensor::f32({B, 3, kS, kS});
    for (int64_t b = 0; b < B; ++b) {
      const float a = audio.data<float>()[b * an];
      const float* in = input.data<float>() + b * 6 * kS * kS;
      float* o = out.data<float>() + b * 3 * kS * kS;
      for (int c = 0; c < 3; ++c)
        for (int p = 0; p < kS * kS; ++p) {
          const float v = in[(5 - c) * kS * kS + p] * 0.6f + a;
          o[c * kS * kS + p] = v - std::floor(v);
        }
    }
    int delay = fixed_delay_ms_;
    if (max_delay_ms_ > 0) delay += static_cast<int>(rng_() % max_delay_ms_);
    std::this_thread::sleep_for(std::chrono::milliseconds(delay));
    return out;
  }
  std::atomic<int> calls{0};
  std::mutex seen_mu;
  std::vector<int64_t> batch_sizes;  // per call, in call order

 private:
  int max_delay_ms_, fixed_delay_ms_;
  std::mt19937 rng_{7};
};

// Keeps frames in memory; checks the order and the in-flight bound as it goes.
class MemorySink : public FrameSink {
 public:
  Status write(int64_t index, const cv::Mat& frame) override {
    std::lock_guard<std::mutex> lock(mu);
    if (index != static_cast<int64_t>(frames.size())) out_of_order = true;
    frames.push_back(frame.clone());
    if (fail_at >= 0 && index == fail_at) return RuntimeError("sink: disk full (test)");
    std::this_thread::sleep_for(std::chrono::microseconds(write_delay_us));
    return Status::Ok();
  }
  Status finish() override {
    finished++;
    return Status::Ok();
  }
  void abort() override { aborted++; }
  std::mutex mu;
  std::vector<cv::Mat> frames;
  bool out_of_order = false;
  int finished = 0, aborted = 0;
  int64_t fail_at = -1;
  int write_delay_us = 0;
};

// The frames computed one by one, without the pipeline.
std::vector<cv::Mat> serial_reference(const AvatarFrames& a, int64_t n, FrameOrder order,
                                      int64_t start) {
  const PrepSettings s = small_settings();
  FakePredictor pred(0);
  FakeAudio audio(n);
  std::vector<cv::Mat> out;
  for (int64_t i = 0; i < n; ++i) {
    const int k = avatar_frame_for(i, a.count(), order, start);
    cv::Mat crop = make_crop(a.full[k], a.rects[k], s);
    Tensor in = Tensor::f32({1, 6, kS, kS});
    fill_generator_input(crop, s, in.data<float>());
    Tensor au = Tensor::f32({1, 64});
    audio.window(i, au.data<float>());
    Tensor p = *pred.predict(in, au);
    cv::Mat f;
    composite_frame(a.full[k], a.rects[k], crop, p.data<float>(), s, &f);
    out.push_back(f);
  }
  return out;
}

TEST(Pipeline, SameFramesInOrderForEveryBatchAndWorkerCount) {
  auto avatar = make_avatar(6);
  const int64_t n = 23;  // not a multiple of any batch below; walks the ping-pong twice
  const auto expect = serial_reference(*avatar, n, FrameOrder::kPingPong, 2);
  for (int batch : {1, 2, 3, 5, 8, 30}) {
    for (int workers : {1, 2, 4}) {
      for (int max_in_flight : {0, 1, 9}) {
        auto sink = std::make_shared<MemorySink>();
        PipelineOptions o;
        o.prep = small_settings();
        o.start_frame = 2;
        o.batch = batch;
        o.workers = workers;
        o.max_in_flight = max_in_flight;
        std::atomic<int64_t> last_progress{0};
        o.on_progress = [&](int64_t done, int64_t total) {
          EXPECT_EQ(total, n);
          last_progress = done;
        };
        auto predictor = std::make_shared<FakePredictor>();
        auto r = run_pipeline(avatar, std::make_shared<FakeAudio>(n), predictor, sink, o);
        ASSERT_TRUE(r.ok()) << r.error().message;
        SCOPED_TRACE(testing::Message() << "batch " << batch << " workers " << workers
                                        << " max_in_flight " << max_in_flight);
        // The short last batch is padded: the runtime sees one batch shape (one plan).
        EXPECT_EQ(predictor->batch_sizes,
                  std::vector<int64_t>(static_cast<size_t>((n + batch - 1) / batch), batch));
        EXPECT_EQ(r->frames, n);
        EXPECT_EQ(r->batches, (n + batch - 1) / batch);
        EXPECT_FALSE(sink->out_of_order);
        EXPECT_EQ(sink->finished, 1);
        EXPECT_EQ(sink->aborted, 0);
        EXPECT_EQ(last_progress.load(), n);
        ASSERT_EQ(sink->frames.size(), static_cast<size_t>(n));
        for (int64_t i = 0; i < n; ++i) {
          ASSERT_EQ(cv::norm(sink->frames[i], expect[i], cv::NORM_INF), 0) << "frame " << i;
        }
      }
    }
  }
}

// A FrameSource like the streaming frame cache: frames come through acquire() (with
// delays, checking the planned order) and to_bgr() (called from several threads).
class FakeSource : public FrameSource {
 public:
  explicit FakeSource(std::vector<cv::Mat> frames) : frames_(std::move(frames)) {}
  int count() const override { return static_cast<int>(frames_.size()); }
  cv::Size size() const override { return frames_[0].size(); }
  void plan(std::function<int(int64_t)> frame_for, int64_t total) override {
    frame_for_ = std::move(frame_for);
    total_ = total;
  }
  Result<std::shared_ptr<const void>> acquire(int64_t i, int k) override {
    if (!frame_for_ || i >= total_ || frame_for_(i) != k || i != next_) {
      return RuntimeError("fake source: request out of the planned order");
    }
    ++next_;
    if (i % 3 == 0) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    acquired++;
    return std::shared_ptr<const void>(std::make_shared<cv::Mat>(frames_[k].clone()));
  }
  Status to_bgr(const std::shared_ptr<const void>& frame, cv::Mat& out) const override {
    static_cast<const cv::Mat*>(frame.get())->copyTo(out);
    return Status::Ok();
  }
  std::atomic<int> acquired{0};

 private:
  std::vector<cv::Mat> frames_;
  std::function<int(int64_t)> frame_for_;
  int64_t total_ = 0, next_ = 0;
};

TEST(Pipeline, FrameSourceGivesTheSameFramesAsBgrFrames) {
  auto bgr = make_avatar(6);
  const int64_t n = 23;
  const auto expect = serial_reference(*bgr, n, FrameOrder::kPingPong, 2);
  for (int batch : {1, 3, 8}) {
    for (int workers : {1, 4}) {
      auto avatar = std::make_shared<AvatarFrames>();
      auto source = std::make_shared<FakeSource>(bgr->full);
      avatar->source = source;
      avatar->rects = bgr->rects;
      auto sink = std::make_shared<MemorySink>();
      PipelineOptions o;
      o.prep = small_settings();
      o.start_frame = 2;
      o.batch = batch;
      o.workers = workers;
      auto r = run_pipeline(avatar, std::make_shared<FakeAudio>(n),
                            std::make_shared<FakePredictor>(), sink, o);
      ASSERT_TRUE(r.ok()) << r.error().message;
      SCOPED_TRACE(testing::Message() << "batch " << batch << " workers " << workers);
      EXPECT_EQ(source->acquired.load(), n);
      ASSERT_EQ(sink->frames.size(), static_cast<size_t>(n));
      for (int64_t i = 0; i < n; ++i) {
        ASSERT_EQ(cv::norm(sink->frames[i], expect[i], cv::NORM_INF), 0) << "frame " << i;
      }
    }
  }
}

TEST(Pipeline, FramesOptionAndCropsFromVideo) {
  auto avatar = make_avatar(4);
  // Crops given by the package (as from crops_328_video.mp4) are used instead of derived.
  for (int k = 0; k < avatar->count(); ++k) {
    avatar->crops.push_back(cv::Mat(kS + 8, kS + 8, CV_8UC3, cv::Scalar(k * 40, 0, 200)));
  }
  auto sink = std::make_shared<MemorySink>();
  PipelineOptions o;
  o.prep = small_settings();
  o.order = FrameOrder::kLoop;
  o.frames = 5;
  o.batch = 2;
  auto r = run_pipeline(avatar, std::make_shared<FakeAudio>(50), std::make_shared<FakePredictor>(0),
                        sink, o);
  ASSERT_TRUE(r.ok()) << r.error().message;
  ASSERT_EQ(sink->frames.size(), 5u);
  FakePredictor pred(0);
  for (int64_t i = 0; i < 5; ++i) {
    const int k = static_cast<int>(i % 4);
    Tensor in = Tensor::f32({1, 6, kS, kS});
    fill_generator_input(avatar->crops[k], o.prep, in.data<float>());
    Tensor au = Tensor::f32({1, 64});
    FakeAudio(50).window(i, au.data<float>());
    cv::Mat f;
    composite_frame(avatar->full[k], avatar->rects[k], avatar->crops[k],
                    pred.predict(in, au)->data<float>(), o.prep, &f);
    EXPECT_EQ(cv::norm(sink->frames[i], f, cv::NORM_INF), 0) << i;
  }
}

class WrongShapePredictor : public Predictor {
 public:
  Result<Tensor> predict(const Tensor& input, const Tensor&) override {
    return Tensor::f32({input.dim(0), 3, kS / 2, kS / 2});
  }
};

TEST(Pipeline, ErrorsAbortTheSink) {
  auto avatar = make_avatar(3);
  PipelineOptions o;
  o.prep = small_settings();
  {
    auto sink = std::make_shared<MemorySink>();
    auto r = run_pipeline(avatar, std::make_shared<FakeAudio>(10),
                          std::make_shared<WrongShapePredictor>(), sink, o);
    ASSERT_FALSE(r.ok());
    EXPECT_NE(r.error().message.find("expected float32"), std::string::npos) << r.error().message;
    EXPECT_EQ(sink->aborted, 1);
    EXPECT_EQ(sink->finished, 0);
  }
  {
    auto sink = std::make_shared<MemorySink>();
    sink->fail_at = 4;
    auto r = run_pipeline(avatar, std::make_shared<FakeAudio>(10),
                          std::make_shared<FakePredictor>(), sink, o);
    ASSERT_FALSE(r.ok());
    EXPECT_NE(r.error().message.find("disk full"), std::string::npos);
    EXPECT_EQ(sink->aborted, 1);
    EXPECT_EQ(sink->finished, 0);
  }
  {
    auto sink = std::make_shared<MemorySink>();
    o.batch = 0;
    auto r = run_pipeline(avatar, std::make_shared<FakeAudio>(10),
                          std::make_shared<FakePredictor>(), sink, o);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.error().kind, ErrorKind::kBadInput);
  }
}

// Writes each frame as a file in a temporary directory renamed into place at finish();
// abort() removes the temporary directory, as the real writers do.
class TempDirSink : public FrameSink {
 public:
  explicit TempDirSink(fs::path out) : out_(std::move(out)) {
    tmp_ = out_.string() + ".tmp-" + std::to_string(::getpid());
    fs::create_directories(tmp_);
  }
  Status write(int64_t index, const cv::Mat& frame) override {
    FILE* f = std::fopen((tmp_ / (std::to_string(index) + ".raw")).c_str(), "wb");
    if (!f) return RuntimeError("cannot write");
    std::fwrite(frame.data, 1, frame.total() * frame.elemSize(), f);
    std::fclose(f);
    return Status::Ok();
  }
  Status finish() override {
    fs::rename(tmp_, out_);
    return Status::Ok();
  }
  void abort() override { fs::remove_all(tmp_); }
  fs::path tmp_;

 private:
  fs::path out_;
};

void run_interrupted(int batch_delay_ms, int interrupt_after_ms) {
  const fs::path dir =
      fs::temp_directory_path() /
      ("render_interrupt_" + std::to_string(::getpid()) + "_" + std::to_string(batch_delay_ms));
  fs::remove_all(dir);
  fs::create_directories(dir);
  const fs::path out = dir / "frames";
  auto sink = std::make_shared<TempDirSink>(out);
  PipelineOptions o;
  o.prep = small_settings();
  o.batch = 2;
  std::atomic<bool> started{false};
  o.on_progress = [&](int64_t, int64_t) { started = true; };
  set_interrupted(false);
  Clock::time_point raised;
  std::thread interrupter([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(interrupt_after_ms));
    raised = Clock::now();
    set_interrupted(true);
  });
  auto r = run_pipeline(make_avatar(5), std::make_shared<FakeAudio>(100000),
                        std::make_shared<FakePredictor>(0, batch_delay_ms), sink, o);
  const auto returned = Clock::now();
  interrupter.join();
  set_interrupted(false);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().kind, ErrorKind::kInterrupted);
  const double stop_s = std::chrono::duration<double>(returned - raised).count();
  EXPECT_LT(stop_s, 1.0) << "took " << stop_s << " s to stop";
  EXPECT_FALSE(fs::exists(out));
  EXPECT_FALSE(fs::exists(sink->tmp_)) << "temporary directory left behind";
  EXPECT_TRUE(fs::is_empty(dir));
  fs::remove_all(dir);
}

TEST(Pipeline, InterruptStopsPromptlyAndRemovesTemporaries) { run_interrupted(5, 300); }

// A batch that takes 2 s: the pipeline still returns within a second, leaving the
// predictor's thread to finish on its own.
TEST(Pipeline, InterruptDuringALongBatch) { run_interrupted(2000, 2300); }

}  // namespace
}  // namespace tr::render
