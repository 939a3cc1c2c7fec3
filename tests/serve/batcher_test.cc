// The cross-session batcher (src/serve/batcher.h) against a fake predictor:
//   output = input's first 3 channels * 0.5 + mean(audio), per frame,
// with an optional sleep and a gate that holds a predict call until the test releases it
// (so the tests decide what is pending when a batch is formed, instead of racing the
// inference thread). Timings are never asserted tightly: the machine may be loaded.
#include "serve/batcher.h"

#include <gtest/gtest.h>

#include <atomic>
#include <cmath>
#include <map>
#include <set>
#include <thread>

namespace tr::serve {
namespace {

using namespace std::chrono_literals;

constexpr int kS = 4;
const Shape kAudio{2, 3};

class FakePredictor final : public render::Predictor {
 public:
  std::chrono::milliseconds sleep{0};
  std::atomic<bool> fail{false};

  Result<Tensor> predict(const Tensor& in, const Tensor& audio) override {
    const int64_t b = in.dim(0), s = in.dim(2), plane = s * s;
    const int64_t an = audio.numel() / b;
    {
      std::unique_lock lk(mu_);
      sizes_.push_back(b);
      std::vector<float> tags;
      for (int64_t i = 0; i < b; ++i) tags.push_back(in.data<float>()[i * 6 * plane]);
      tags_.push_back(tags);
      if (gate_) {
        entered_ = true;
        cv_.notify_all();
        cv_.wait(lk, [&] { return !gate_; });
      }
    }
    if (sleep.count() > 0) std::this_thread::sleep_for(sleep);
    if (fail) return RuntimeError("fake failure");
    Tensor out = Tensor::f32({b, 3, s, s});
    for (int64_t i = 0; i < b; ++i) {
      double mean = 0;
      for (int64_t k = 0; k < an; ++k) mean += audio.data<float>()[i * an + k];
      mean /= static_cast<double>(an);
      for (int64_t k = 0; k < 3 * plane; ++k)
        out.data<float>()[i * 3 * plane + k] =
            in.data<float>()[i * 6 * plane + k] * 0.5f + static_cast<float>(mean);
    }
    return out;
  }

  // The next predict call blocks (after recording its batch) until release().
  void arm() {
    std::lock_guard lk(mu_);
    gate_ = true;
    entered_ = false;
  }
  bool wait_entered() {
    std::unique_lock lk(mu_);
    return cv_.wait_for(lk, 5s, [&] { return entered_; });
  }
  void release() {
    std::lock_guard lk(mu_);
    gate_ = false;
    cv_.notify_all();
  }
  std::vector<int64_t> sizes() {
    std::lock_guard lk(mu_);
    return sizes_;
  }
  std::vector<std::vector<float>> tags() {
    std::lock_guard lk(mu_);
    return tags_;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool gate_ = false, entered_ = false;
  std::vector<int64_t> sizes_;
  std::vector<std::vector<float>> tags_;
};

// The tag of (session, frame) is the input's value; the audio's value is frame / 100.
float tag_of(SessionId s, int64_t frame) { return static_cast<float>(s * 1000 + frame); }
float audio_of(int64_t frame) { return static_cast<float>(frame) / 100.0f; }

FrameRequest make_request(SessionId s, int64_t frame, Clock::time_point deadline) {
  FrameRequest r;
  r.session = s;
  r.frame = frame;
  r.input = Tensor::f32({6, kS, kS});
  std::fill_n(r.input.data<float>(), r.input.numel(), tag_of(s, frame));
  r.audio = Tensor::f32(kAudio);
  std::fill_n(r.audio.data<float>(), r.audio.numel(), audio_of(frame));
  r.deadline = deadline;
  return r;
}

// Collects the results per session.
class Collector {
 public:
  ResultCallback callback() {
    return [this](FrameResult&& r) {
      std::lock_guard lk(mu_);
      got_[r.session].push_back(std::move(r));
      ++total_;
      cv_.notify_all();
    };
  }
  bool wait_total(int n, std::chrono::milliseconds t = 5000ms) {
    std::unique_lock lk(mu_);
    return cv_.wait_for(lk, t, [&] { return total_ >= n; });
  }
  std::vector<FrameResult> of(SessionId s) {
    std::lock_guard lk(mu_);
    return got_[s];
  }
  int total() {
    std::lock_guard lk(mu_);
    return total_;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::map<SessionId, std::vector<FrameResult>> got_;
  int total_ = 0;
};

BatcherOptions small_options(int max_batch = 4) {
  BatcherOptions o;
  o.size = kS;
  o.audio_shape = kAudio;
  o.max_batch = max_batch;
  o.batch_wait = 2ms;
  o.max_outstanding_per_session = 64;
  o.max_outstanding = 256;
  return o;
}

std::unique_ptr<Batcher> make(std::shared_ptr<FakePredictor> p, const BatcherOptions& o) {
  auto b = Batcher::create(p, o);
  EXPECT_TRUE(b.ok()) << (b.ok() ? "" : b.error().message);
  return std::move(b).value();
}

SessionId open(Batcher& b, Collector& c) {
  auto id = b.open_session(c.callback());
  EXPECT_TRUE(id.ok());
  return *id;
}

void expect_correct(const FrameResult& r, SessionId s, int64_t frame) {
  ASSERT_TRUE(r.status.ok()) << r.status.message();
  EXPECT_EQ(r.session, s);
  EXPECT_EQ(r.frame, frame);
  ASSERT_EQ(r.output.shape(), (Shape{3, kS, kS}));
  const float want = tag_of(s, frame) * 0.5f + audio_of(frame);
  for (int64_t k = 0; k < r.output.numel(); ++k)
    ASSERT_NEAR(r.output.data<float>()[k], want, 1e-3) << "session " << s << " frame " << frame;
}

TEST(Batcher, ResultsAreCorrectAndReachTheirSession) {
  auto p = std::make_shared<FakePredictor>();
  auto b = make(p, small_options());
  Collector c;
  std::vector<SessionId> ids;
  for (int i = 0; i < 3; ++i) ids.push_back(open(*b, c));
  const auto due = Clock::now() + 10s;
  for (int64_t f = 0; f < 5; ++f)
    for (SessionId s : ids) ASSERT_TRUE(b->submit(make_request(s, f, due)).ok());
  ASSERT_TRUE(c.wait_total(15));
  for (SessionId s : ids) {
    auto got = c.of(s);
    ASSERT_EQ(got.size(), 5u);
    for (int64_t f = 0; f < 5; ++f) expect_correct(got[f], s, f);
  }
  const BatcherStats st = b->stats();
  EXPECT_EQ(st.frames_inferred, 15);
  EXPECT_EQ(st.delivered, 15);
  EXPECT_EQ(st.queue_depth, 0);
  EXPECT_EQ(st.sessions, 3);
  int64_t batches = 0, frames = 0;
  for (size_t k = 0; k < st.batch_sizes.size(); ++k) {
    batches += st.batch_sizes[k];
    frames += static_cast<int64_t>(k) * st.batch_sizes[k];
  }
  EXPECT_EQ(batches, st.batches);
  EXPECT_EQ(frames, 15);
  EXPECT_GT(st.infer_ms_sum, 0.0);
}

TEST(Batcher, PerSessionOrderWithConcurrentSubmitters) {
  auto p = std::make_shared<FakePredictor>();
  p->sleep = 1ms;
  BatcherOptions o = small_options(4);
  o.max_outstanding_per_session = 3;
  auto b = make(p, o);
  Collector c;
  constexpr int kFrames = 40;
  std::vector<SessionId> ids;
  for (int i = 0; i < 3; ++i) ids.push_back(open(*b, c));
  std::vector<std::thread> threads;
  std::atomic<int> errors{0};
  for (SessionId s : ids)
    threads.emplace_back([&, s] {
      const auto t0 = Clock::now();
      for (int64_t f = 0; f < kFrames; ++f) {
        // Deadlines wobble (not monotonic) to check FIFO within a session holds anyway.
        const auto due = t0 + std::chrono::milliseconds(5 * f + (f * 7) % 11);
        if (!b->submit(make_request(s, f, due), Clock::now() + 5s).ok()) ++errors;
      }
    });
  for (auto& t : threads) t.join();
  EXPECT_EQ(errors.load(), 0);
  ASSERT_TRUE(c.wait_total(3 * kFrames));
  for (SessionId s : ids) {
    auto got = c.of(s);
    ASSERT_EQ(got.size(), static_cast<size_t>(kFrames));
    for (int64_t f = 0; f < kFrames; ++f) expect_correct(got[f], s, f);
  }
  for (int64_t n : p->sizes()) {
    EXPECT_GE(n, 1);
    EXPECT_LE(n, 4);
  }
  EXPECT_EQ(b->stats().frames_inferred, 3 * kFrames);
}

TEST(Batcher, BatchesMixSessionsAndRespectMaxBatch) {
  auto p = std::make_shared<FakePredictor>();
  auto b = make(p, small_options(4));
  Collector c;
  std::vector<SessionId> ids;
  for (int i = 0; i < 3; ++i) ids.push_back(open(*b, c));
  const auto due = Clock::now() + 10s;
  p->arm();
  ASSERT_TRUE(b->submit(make_request(ids[0], 0, due)).ok());
  ASSERT_TRUE(p->wait_entered());  // a batch of one is running; the rest queue behind it
  for (int64_t f = 1; f <= 2; ++f)
    for (SessionId s : ids) ASSERT_TRUE(b->submit(make_request(s, f, due)).ok());
  EXPECT_EQ(b->stats().queue_depth, 6);
  p->release();
  ASSERT_TRUE(c.wait_total(7));
  const auto sizes = p->sizes();
  ASSERT_GE(sizes.size(), 2u);
  EXPECT_EQ(sizes[0], 1);
  EXPECT_EQ(sizes[1], 4);  // six were pending: a full batch at once
  bool mixed = false;
  for (const auto& tags : p->tags()) {
    EXPECT_LE(tags.size(), 4u);
    std::set<int> sessions;
    for (float t : tags) sessions.insert(static_cast<int>(t) / 1000);
    if (sessions.size() > 1) mixed = true;
  }
  EXPECT_TRUE(mixed);
  const BatcherStats st = b->stats();
  EXPECT_EQ(st.batch_sizes[1] + st.batch_sizes[2] + st.batch_sizes[3] + st.batch_sizes[4],
            st.batches);
  EXPECT_GE(st.batch_sizes[4], 1);
  for (SessionId s : ids) {
    auto got = c.of(s);
    for (size_t k = 0; k < got.size(); ++k) expect_correct(got[k], s, got[k].frame);
    for (size_t k = 1; k < got.size(); ++k) EXPECT_LT(got[k - 1].frame, got[k].frame);
  }
}

TEST(Batcher, EarliestDeadlineFirstButFifoWithinASession) {
  auto p = std::make_shared<FakePredictor>();
  auto b = make(p, small_options(1));
  Collector c;
  std::vector<SessionId> ids;
  for (int i = 0; i < 5; ++i) ids.push_back(open(*b, c));
  const auto t0 = Clock::now() + 10s;
  p->arm();
  ASSERT_TRUE(b->submit(make_request(ids[0], 0, t0)).ok());
  ASSERT_TRUE(p->wait_entered());
  ASSERT_TRUE(b->submit(make_request(ids[1], 0, t0 + 300ms)).ok());
  ASSERT_TRUE(b->submit(make_request(ids[2], 0, t0 + 100ms)).ok());
  ASSERT_TRUE(b->submit(make_request(ids[3], 0, t0 + 200ms)).ok());
  // Session 4's second frame is due before its first: the first inherits that deadline
  // (it must be sent first), so both go before the others, in session order.
  ASSERT_TRUE(b->submit(make_request(ids[4], 0, t0 + 500ms)).ok());
  ASSERT_TRUE(b->submit(make_request(ids[4], 1, t0 + 50ms)).ok());
  p->release();
  ASSERT_TRUE(c.wait_total(6));
  std::vector<float> order;
  for (const auto& tags : p->tags()) order.push_back(tags.at(0));
  const std::vector<float> want{tag_of(ids[0], 0), tag_of(ids[4], 0), tag_of(ids[4], 1),
                                tag_of(ids[2], 0), tag_of(ids[3], 0), tag_of(ids[1], 0)};
  EXPECT_EQ(order, want);
}

TEST(Batcher, LaunchesForTheDeadlineInsteadOfWaitingForAFullBatch) {
  auto p = std::make_shared<FakePredictor>();
  BatcherOptions o = small_options(4);
  o.batch_wait = 60s;  // only a full batch or a deadline launches anything here
  auto b = make(p, o);
  Collector c;
  const SessionId s = open(*b, c);
  ASSERT_TRUE(b->submit(make_request(s, 0, Clock::now() + 60s)).ok());
  std::this_thread::sleep_for(30ms);
  EXPECT_EQ(b->stats().queue_depth, 1);  // waits for company: its deadline is far
  ASSERT_TRUE(b->submit(make_request(s, 1, Clock::now() + 20ms)).ok());
  // Frame 1 is due soon, so frame 0 (before it) is too: both launch, well within 60 s.
  ASSERT_TRUE(c.wait_total(2, 5000ms));
  EXPECT_EQ(p->sizes(), (std::vector<int64_t>{2}));
  // A full batch launches at once, whatever the deadlines.
  for (int64_t f = 2; f < 6; ++f)
    ASSERT_TRUE(b->submit(make_request(s, f, Clock::now() + 60s)).ok());
  ASSERT_TRUE(c.wait_total(6, 5000ms));
  auto got = c.of(s);
  for (int64_t f = 0; f < 6; ++f) expect_correct(got[f], s, f);
}

TEST(Batcher, CancelDropsPendingAndRunningWork) {
  auto p = std::make_shared<FakePredictor>();
  auto b = make(p, small_options(1));
  Collector ca, cb;
  const SessionId a = open(*b, ca), s2 = open(*b, cb);
  const auto due = Clock::now() + 10s;
  p->arm();
  ASSERT_TRUE(b->submit(make_request(a, 0, due)).ok());
  ASSERT_TRUE(p->wait_entered());  // a's frame 0 is being inferred
  ASSERT_TRUE(b->submit(make_request(a, 1, due)).ok());
  ASSERT_TRUE(b->submit(make_request(a, 2, due)).ok());
  ASSERT_TRUE(b->submit(make_request(s2, 0, due)).ok());
  b->cancel(a);
  EXPECT_EQ(b->stats().queue_depth, 1);
  p->release();
  ASSERT_TRUE(cb.wait_total(1));
  // The session lives on: new work after the cancel is delivered, and nothing older.
  ASSERT_TRUE(b->submit(make_request(a, 3, due)).ok());
  ASSERT_TRUE(ca.wait_total(1));
  std::this_thread::sleep_for(20ms);
  auto got = ca.of(a);
  ASSERT_EQ(got.size(), 1u);
  expect_correct(got[0], a, 3);
  expect_correct(cb.of(s2).at(0), s2, 0);
  const BatcherStats st = b->stats();
  EXPECT_EQ(st.cancelled, 3);  // two pending, one discarded from the running batch
  EXPECT_EQ(st.delivered, 2);

  // close_session from inside the session's own callback neither deadlocks nor delivers more.
  Collector cc;
  SessionId closing = 0;
  std::atomic<int> calls{0};
  auto id = b->open_session([&](FrameResult&&) {
    ++calls;
    b->close_session(closing);
  });
  ASSERT_TRUE(id.ok());
  closing = *id;
  p->arm();
  ASSERT_TRUE(b->submit(make_request(closing, 0, due)).ok());
  ASSERT_TRUE(p->wait_entered());
  ASSERT_TRUE(b->submit(make_request(closing, 1, due)).ok());
  p->release();
  const SessionId after = open(*b, cc);  // a marker: once it is served, closing's are done
  ASSERT_TRUE(b->submit(make_request(after, 0, Clock::now() + 10s)).ok());
  ASSERT_TRUE(cc.wait_total(1));
  EXPECT_EQ(calls.load(), 1);
  EXPECT_FALSE(b->submit(make_request(closing, 2, due)).ok());
}

TEST(Batcher, CapsRejectOrBlockWithADeadline) {
  auto p = std::make_shared<FakePredictor>();
  BatcherOptions o = small_options(1);
  o.max_outstanding_per_session = 2;
  o.max_outstanding = 3;
  auto b = make(p, o);
  Collector c;
  const SessionId a = open(*b, c), s2 = open(*b, c), s3 = open(*b, c);
  const auto due = Clock::now() + 10s;
  p->arm();
  ASSERT_TRUE(b->submit(make_request(a, 0, due)).ok());
  ASSERT_TRUE(p->wait_entered());
  ASSERT_TRUE(b->submit(make_request(a, 1, due)).ok());
  Status st = b->submit(make_request(a, 2, due));  // a: 2 outstanding, cap 2
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.error().kind, ErrorKind::kRuntime);
  EXPECT_NE(st.message().find("busy"), std::string::npos) << st.message();
  ASSERT_TRUE(b->submit(make_request(s2, 0, due)).ok());  // 3 in all, cap 3
  st = b->submit(make_request(s3, 0, due));
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.error().kind, ErrorKind::kRuntime);
  // A blocking submit gives up at its deadline.
  const auto t0 = Clock::now();
  st = b->submit(make_request(s3, 0, due), t0 + 30ms);
  EXPECT_FALSE(st.ok());
  EXPECT_GE(Clock::now() - t0, 25ms);
  // ... and goes through when a slot frees before it.
  Status late_ok = RuntimeError("not run");
  std::thread t([&] { late_ok = b->submit(make_request(s3, 0, due), Clock::now() + 5s); });
  std::this_thread::sleep_for(20ms);
  p->release();
  t.join();
  EXPECT_TRUE(late_ok.ok()) << late_ok.message();
  ASSERT_TRUE(c.wait_total(4));
  expect_correct(c.of(s3).at(0), s3, 0);
  EXPECT_EQ(b->stats().rejected, 3);
}

TEST(Batcher, StopCancelDoesNotHangAndDeliversNothingMore) {
  auto p = std::make_shared<FakePredictor>();
  auto b = make(p, small_options(2));
  Collector c;
  const SessionId s = open(*b, c);
  const auto due = Clock::now() + 10s;
  p->arm();
  ASSERT_TRUE(b->submit(make_request(s, 0, due)).ok());
  ASSERT_TRUE(p->wait_entered());
  for (int64_t f = 1; f < 20; ++f) ASSERT_TRUE(b->submit(make_request(s, f, due)).ok());
  std::atomic<bool> stopped{false};
  std::thread stopper([&] {
    b->stop(Batcher::StopMode::kCancel);
    stopped = true;
  });
  std::this_thread::sleep_for(20ms);
  EXPECT_FALSE(stopped.load());  // waits for the running batch
  p->release();
  stopper.join();
  EXPECT_EQ(c.total(), 0);
  const BatcherStats st = b->stats();
  EXPECT_EQ(st.cancelled, 20);
  EXPECT_EQ(st.queue_depth, 0);
  Status after = b->submit(make_request(s, 20, due));
  ASSERT_FALSE(after.ok());
  EXPECT_EQ(after.error().kind, ErrorKind::kInterrupted);
  EXPECT_FALSE(b->open_session(c.callback()).ok());
  b->stop();  // idempotent
}

TEST(Batcher, StopDrainDeliversEverythingAndWakesBlockedSubmitters) {
  auto p = std::make_shared<FakePredictor>();
  p->sleep = 2ms;
  BatcherOptions o = small_options(2);
  o.max_outstanding_per_session = 10;
  auto b = make(p, o);
  Collector c;
  const SessionId s = open(*b, c);
  const auto due = Clock::now() + 10s;
  for (int64_t f = 0; f < 10; ++f) ASSERT_TRUE(b->submit(make_request(s, f, due)).ok());
  Status blocked;
  std::thread t([&] { blocked = b->submit(make_request(s, 10, due), Clock::now() + 10s); });
  std::this_thread::sleep_for(5ms);
  b->stop(Batcher::StopMode::kDrain);
  t.join();
  auto got = c.of(s);
  // The blocked submit either got in before the stop (and was drained) or was refused.
  const size_t want = blocked.ok() ? 11 : 10;
  ASSERT_EQ(got.size(), want);
  for (size_t f = 0; f < want; ++f) expect_correct(got[f], s, static_cast<int64_t>(f));
  if (!blocked.ok()) {
    EXPECT_EQ(blocked.error().kind, ErrorKind::kInterrupted);
  }
}

TEST(Batcher, PredictorErrorsReachEachFrame) {
  auto p = std::make_shared<FakePredictor>();
  p->fail = true;
  auto b = make(p, small_options(4));
  Collector c;
  const SessionId s = open(*b, c);
  ASSERT_TRUE(b->submit(make_request(s, 0, Clock::now() + 10s)).ok());
  ASSERT_TRUE(b->submit(make_request(s, 1, Clock::now() + 10s)).ok());
  ASSERT_TRUE(c.wait_total(2));
  for (const auto& r : c.of(s)) {
    ASSERT_FALSE(r.status.ok());
    EXPECT_NE(r.status.message().find("fake failure"), std::string::npos);
  }
  EXPECT_EQ(b->stats().failed, 2);
  // Late frames are flagged and counted.
  p->fail = false;
  ASSERT_TRUE(b->submit(make_request(s, 2, Clock::now() - 1s)).ok());
  ASSERT_TRUE(c.wait_total(3));
  EXPECT_TRUE(c.of(s).at(2).late);
  EXPECT_EQ(b->stats().late, 1);
}

TEST(Batcher, RejectsBadRequestsAndOptions) {
  auto p = std::make_shared<FakePredictor>();
  BatcherOptions bad = small_options();
  bad.max_batch = 0;
  EXPECT_FALSE(Batcher::create(p, bad).ok());
  bad = small_options();
  bad.audio_shape = {};
  EXPECT_FALSE(Batcher::create(p, bad).ok());
  EXPECT_FALSE(Batcher::create(nullptr, small_options()).ok());

  auto b = make(p, small_options());
  Collector c;
  const SessionId s = open(*b, c);
  FrameRequest r = make_request(s, 0, Clock::now());
  r.input = Tensor::f32({6, kS + 1, kS});
  Status st = b->submit(std::move(r));
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.error().kind, ErrorKind::kBadInput);
  r = make_request(s, 0, Clock::now());
  r.audio = Tensor::f32({5});
  EXPECT_FALSE(b->submit(std::move(r)).ok());
  st = b->submit(make_request(s + 100, 0, Clock::now()));
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.error().kind, ErrorKind::kBadInput);
  EXPECT_FALSE(b->open_session(ResultCallback()).ok());
  EXPECT_EQ(b->stats().rejected, 3);
}

TEST(Admission, LimitArithmetic) {
  EXPECT_EQ(admission_limit(400, 25, 0.8), 12);  // floor(12.8)
  EXPECT_EQ(admission_limit(250, 25, 0.8), 8);   // exact: not rounded down to 7
  EXPECT_EQ(admission_limit(100, 25, 1.0), 4);
  EXPECT_EQ(admission_limit(24, 25, 1.0), 0);
  EXPECT_EQ(admission_limit(0, 25, 0.8), 0);
  EXPECT_EQ(admission_limit(-5, 25, 0.8), 0);
  EXPECT_EQ(admission_limit(400, 0, 0.8), 0);
  EXPECT_EQ(admission_limit(400, 25, 0), 0);
  EXPECT_EQ(admission_limit(NAN, 25, 0.8), 0);
  EXPECT_EQ(admission_limit(INFINITY, 25, 0.8), 0);
  EXPECT_EQ(admission_limit(400, 25, NAN), 0);
  // The sessions' own CPU (20 ms a frame on 2 cores) takes most of the machine.
  EXPECT_EQ(admission_limit(400, 25, 0.8, 0, 2), 12);
  EXPECT_EQ(admission_limit(400, 25, 0.8, 20, 2), 2);  // floor(0.8 / (0.0625 + 0.25))
  EXPECT_EQ(admission_limit(400, 25, 0.8, 20, 8), 6);  // floor(0.8 / (0.0625 + 0.0625))
  EXPECT_EQ(admission_limit(400, 25, 0.8, -1, 2), 0);
  EXPECT_EQ(admission_limit(400, 25, 0.8, NAN, 2), 0);
  EXPECT_EQ(admission_limit(400, 25, 0.8, 20, 0), 0);

  ThroughputProfile prof;
  prof.points = {{1, 10, 10.0, 100.0}, {2, 10, 12.0, 166.0}, {4, 10, 40.0, 100.0 * 2}};
  EXPECT_DOUBLE_EQ(prof.best_frames_per_s(), 200.0);
  EXPECT_EQ(prof.best_batch(), 4);
  EXPECT_DOUBLE_EQ(prof.best_frames_per_s(20.0), 166.0);  // batch 4 is too slow for 20 ms
  EXPECT_EQ(prof.best_batch(20.0), 2);
  EXPECT_EQ(prof.best_batch(5.0), 0);
}

TEST(Admission, MeasuresThroughputPerBatchSize) {
  FakePredictor p;
  p.sleep = 5ms;  // the same per call whatever the batch: throughput grows with it
  auto prof = measure_throughput(p, kS, kAudio, 3, 20ms);
  ASSERT_TRUE(prof.ok()) << prof.error().message;
  ASSERT_EQ(prof->points.size(), 3u);
  for (int b = 1; b <= 3; ++b) {
    const auto& pt = prof->points[b - 1];
    EXPECT_EQ(pt.batch, b);
    EXPECT_GE(pt.calls, 2);
    EXPECT_GT(pt.frames_per_s, 0);
    EXPECT_GT(pt.ms_per_batch, 0);
  }
  EXPECT_GT(prof->points[2].frames_per_s, prof->points[0].frames_per_s);
  EXPECT_GE(admission_limit(prof->best_frames_per_s(), 25, 0.8), 0);

  p.fail = true;
  auto failed = measure_throughput(p, kS, kAudio, 2, 1ms);
  ASSERT_FALSE(failed.ok());
  EXPECT_NE(failed.error().message.find("batch 1"), std::string::npos);
  EXPECT_FALSE(measure_throughput(p, kS, kAudio, 0, 1ms).ok());
}

TEST(Metrics, PrometheusText) {
  BatcherStats s;
  s.batches = 3;
  s.batch_sizes = {0, 1, 0, 2};
  s.frames_inferred = 7;
  s.infer_ms_sum = 12.5;
  s.infer_ms_recent = {6.5, 2, 4};
  s.late = 1;
  s.queue_depth = 4;
  const std::string t = to_prometheus(s, "talkrender_serve_");
  EXPECT_NE(t.find("talkrender_serve_batches_total 3\n"), std::string::npos) << t;
  EXPECT_NE(t.find("talkrender_serve_frames_late_total 1\n"), std::string::npos);
  EXPECT_NE(t.find("talkrender_serve_queue_depth 4\n"), std::string::npos);
  EXPECT_NE(t.find("talkrender_serve_batch_size_bucket{le=\"1\"} 1\n"), std::string::npos);
  EXPECT_NE(t.find("talkrender_serve_batch_size_bucket{le=\"2\"} 1\n"), std::string::npos);
  EXPECT_NE(t.find("talkrender_serve_batch_size_bucket{le=\"3\"} 3\n"), std::string::npos);
  EXPECT_NE(t.find("talkrender_serve_batch_size_bucket{le=\"+Inf\"} 3\n"), std::string::npos);
  EXPECT_NE(t.find("talkrender_serve_batch_size_sum 7\n"), std::string::npos);
  EXPECT_NE(t.find("talkrender_serve_inference_ms_sum 12.5\n"), std::string::npos);
  EXPECT_NE(t.find("talkrender_serve_inference_ms{quantile=\"0.5\"} 4.000\n"), std::string::npos);
  EXPECT_NE(t.find("talkrender_serve_inference_ms{quantile=\"0.99\"} 6.500\n"), std::string::npos);
  // Before any call the quantiles are NaN, not a made-up 0.
  const std::string empty = to_prometheus(BatcherStats{}, "p_");
  EXPECT_NE(empty.find("p_inference_ms{quantile=\"0.9\"} NaN\n"), std::string::npos) << empty;
}

}  // namespace
}  // namespace tr::serve
