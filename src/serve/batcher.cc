// The cross-session batcher: one inference thread, per-session FIFO queues, earliest
// deadline first across sessions. See batcher.h for the policy and the guarantees.
//
// Locking: one mutex (mu_) guards the sessions, their queues, the counters and the stats.
// The inference thread holds it only to pick a batch and to account for each result; it
// builds the batch tensors, calls the predictor and runs the callbacks without it.
//
// Cancellation without late callbacks: every request records its session's epoch when it
// is submitted; cancel() bumps the epoch. Before each callback the inference thread
// re-checks, under the lock, that the session still exists with the same epoch, and marks
// the session as `delivering_` while the callback runs; cancel() waits until that mark is
// gone (unless it is itself called from a callback, i.e. on the inference thread). So
// after cancel() returns, no result of an older request can reach the session.
#include "serve/batcher.h"

#include <fmt/format.h>

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstring>

namespace tr::serve {
namespace {

double ms_between(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double, std::milli>(b - a).count();
}

Shape with_batch(int64_t b, const Shape& s) {
  Shape out{b};
  out.insert(out.end(), s.begin(), s.end());
  return out;
}

}  // namespace

Result<std::unique_ptr<Batcher>> Batcher::create(std::shared_ptr<render::Predictor> predictor,
                                                 BatcherOptions o) {
  if (!predictor) return BadInput("serve: batcher needs a predictor");
  if (o.size <= 0) return BadInput(fmt::format("serve: bad ROI size {}", o.size));
  if (o.max_batch < 1) return BadInput(fmt::format("serve: bad max_batch {}", o.max_batch));
  const int64_t audio_numel = shape_numel(o.audio_shape);
  if (o.audio_shape.empty() || audio_numel <= 0 || audio_numel == INT64_MAX)
    return BadInput("serve: bad audio shape " + shape_str(o.audio_shape));
  if (o.max_outstanding_per_session < 1 || o.max_outstanding < 1)
    return BadInput(fmt::format("serve: bad caps (per session {}, total {})",
                                o.max_outstanding_per_session, o.max_outstanding));
  if (o.batch_wait.count() < 0 || o.initial_batch_estimate.count() < 0)
    return BadInput("serve: negative batch_wait or initial_batch_estimate");
  return std::unique_ptr<Batcher>(new Batcher(std::move(predictor), std::move(o)));
}

Batcher::Batcher(std::shared_ptr<render::Predictor> p, BatcherOptions o)
    : predictor_(std::move(p)), opt_(std::move(o)) {
  input_numel_ = int64_t{6} * opt_.size * opt_.size;
  audio_numel_ = shape_numel(opt_.audio_shape);
  estimate_ms_ = std::chrono::duration<double, std::milli>(opt_.initial_batch_estimate).count();
  stats_.batch_sizes.assign(static_cast<size_t>(opt_.max_batch) + 1, 0);
  thread_ = std::thread([this] { run(); });
  thread_id_ = thread_.get_id();
}

Batcher::~Batcher() { stop(StopMode::kCancel); }

Result<SessionId> Batcher::open_session(ResultCallback on_result) {
  if (!on_result) return BadInput("serve: open_session needs a result callback");
  std::lock_guard lk(mu_);
  if (stopping_) return Interrupted("serve: batcher stopped");
  const SessionId id = next_id_++;
  Session& s = sessions_[id];
  s.on_result = std::make_shared<const ResultCallback>(std::move(on_result));
  return id;
}

void Batcher::cancel_locked(Session& s) {
  ++s.epoch;
  const auto n = static_cast<int64_t>(s.queue.size());
  s.queue.clear();
  s.outstanding -= static_cast<int>(n);
  pending_ -= n;
  outstanding_ -= n;
  stats_.cancelled += n;
  space_cv_.notify_all();
}

void Batcher::cancel(SessionId id) {
  std::unique_lock lk(mu_);
  auto it = sessions_.find(id);
  if (it == sessions_.end()) return;
  cancel_locked(it->second);
  if (std::this_thread::get_id() != thread_id_)
    done_cv_.wait(lk, [&] { return delivering_ != id; });
}

void Batcher::close_session(SessionId id) {
  std::unique_lock lk(mu_);
  auto it = sessions_.find(id);
  if (it == sessions_.end()) return;
  cancel_locked(it->second);
  // Requests of the running batch still hold slots; release_slot_locked() gives their
  // global share back when the batch finishes.
  sessions_.erase(it);
  if (std::this_thread::get_id() != thread_id_)
    done_cv_.wait(lk, [&] { return delivering_ != id; });
}

Status Batcher::submit(FrameRequest r, Clock::time_point wait_until) {
  const int S = opt_.size;
  Status bad;
  if (r.input.empty() || r.input.dtype() != DType::kFloat32 || r.input.shape() != Shape{6, S, S})
    bad = BadInput(fmt::format(
        "serve: session {} frame {}: input must be float32 [6, {}, {}], got {}", r.session, r.frame,
        S, S, r.input.empty() ? "none" : shape_str(r.input.shape())));
  else if (r.audio.empty() || r.audio.dtype() != DType::kFloat32 || r.audio.numel() != audio_numel_)
    bad =
        BadInput(fmt::format("serve: session {} frame {}: audio must be float32 with {} values "
                             "({}), got {}",
                             r.session, r.frame, audio_numel_, shape_str(opt_.audio_shape),
                             r.audio.empty() ? "none" : shape_str(r.audio.shape())));
  std::unique_lock lk(mu_);
  auto reject = [&](Error e) {
    ++stats_.rejected;
    return Status(std::move(e));
  };
  if (!bad.ok()) return reject(bad.error());
  if (stopping_) return reject(Interrupted("serve: batcher stopped"));
  const SessionId id = r.session;
  auto it = sessions_.find(id);
  if (it == sessions_.end()) return reject(BadInput(fmt::format("serve: unknown session {}", id)));
  const uint64_t epoch = it->second.epoch;
  for (;;) {
    if (stopping_) return reject(Interrupted("serve: batcher stopped"));
    it = sessions_.find(id);
    if (it == sessions_.end() || it->second.epoch != epoch)
      return reject(Interrupted(
          fmt::format("serve: session {} was cancelled while frame {} waited", id, r.frame)));
    const bool session_full = it->second.outstanding >= opt_.max_outstanding_per_session;
    const bool all_full = outstanding_ >= opt_.max_outstanding;
    if (!session_full && !all_full) break;
    if (Clock::now() >= wait_until) {
      if (session_full)
        return reject(RuntimeError(
            fmt::format("serve: busy: session {} has {} frames outstanding (cap {}); frame {}", id,
                        it->second.outstanding, opt_.max_outstanding_per_session, r.frame)));
      return reject(RuntimeError(fmt::format(
          "serve: busy: {} frames outstanding over all sessions (cap {}); session {} frame {}",
          outstanding_, opt_.max_outstanding, id, r.frame)));
    }
    space_cv_.wait_until(lk, wait_until);
  }
  Session& s = it->second;
  const Clock::time_point due = r.deadline;
  // Earlier requests of the session must go out before this one: pull their effective
  // deadlines forward to its deadline (stops at the first that is already earlier).
  for (auto q = s.queue.rbegin(); q != s.queue.rend() && q->due > due; ++q) q->due = due;
  s.queue.push_back(Pending{std::move(r), due, Clock::now(), epoch});
  ++s.outstanding;
  ++outstanding_;
  ++pending_;
  work_cv_.notify_one();
  return Status::Ok();
}

void Batcher::stop(StopMode mode) {
  {
    std::lock_guard lk(mu_);
    const bool cancel_now =
        mode == StopMode::kCancel && (!stopping_ || stop_mode_ == StopMode::kDrain);
    if (!stopping_ || cancel_now) stop_mode_ = mode;
    stopping_ = true;
    if (cancel_now)
      for (auto& [id, s] : sessions_) cancel_locked(s);
    work_cv_.notify_all();
    space_cv_.notify_all();
  }
  if (std::this_thread::get_id() == thread_id_) return;  // from a callback: cannot join
  std::lock_guard jl(join_mu_);
  if (thread_.joinable()) thread_.join();
}

BatcherStats Batcher::stats() const {
  std::lock_guard lk(mu_);
  BatcherStats s = stats_;
  s.queue_depth = pending_;
  s.sessions = static_cast<int64_t>(sessions_.size());
  s.batch_estimate_ms = estimate_ms_;
  return s;
}

Clock::time_point Batcher::launch_time_locked() const {
  Clock::time_point oldest = Clock::time_point::max(), earliest = Clock::time_point::max();
  for (const auto& [id, s] : sessions_) {
    if (s.queue.empty()) continue;
    const Pending& head = s.queue.front();  // FIFO: the session's oldest request
    oldest = std::min(oldest, head.arrived);
    earliest = std::min(earliest, head.due);  // the queue's earliest deadline
  }
  const auto estimate = std::chrono::duration_cast<Clock::duration>(
      std::chrono::duration<double, std::milli>(estimate_ms_));
  // Saturate instead of overflowing for deadlines near the clock's ends.
  Clock::time_point by_deadline = earliest;
  if (earliest > Clock::time_point::min() + estimate) by_deadline = earliest - estimate;
  Clock::time_point by_wait = oldest;
  if (oldest < Clock::time_point::max() - opt_.batch_wait) by_wait = oldest + opt_.batch_wait;
  return std::min(by_wait, by_deadline);
}

std::vector<Batcher::Pending> Batcher::take_batch_locked() {
  std::vector<Pending> batch;
  batch.reserve(static_cast<size_t>(opt_.max_batch));
  while (static_cast<int>(batch.size()) < opt_.max_batch && pending_ > 0) {
    Session* best = nullptr;
    for (auto& [id, s] : sessions_) {
      if (s.queue.empty()) continue;
      const Pending& h = s.queue.front();
      if (!best) {
        best = &s;
        continue;
      }
      const Pending& b = best->queue.front();
      if (h.due < b.due || (h.due == b.due && h.arrived < b.arrived)) best = &s;
    }
    if (!best) break;  // cannot happen while pending_ > 0
    batch.push_back(std::move(best->queue.front()));
    best->queue.pop_front();
    --pending_;
  }
  return batch;
}

void Batcher::release_slot_locked(SessionId id) {
  auto it = sessions_.find(id);
  if (it != sessions_.end()) --it->second.outstanding;
  --outstanding_;
  --stats_.in_flight;
  space_cv_.notify_all();
}

void Batcher::run() {
  std::unique_lock lk(mu_);
  for (;;) {
    if (stopping_ && (stop_mode_ == StopMode::kCancel || pending_ == 0)) break;
    if (pending_ == 0) {
      work_cv_.wait(lk);
      continue;
    }
    if (!stopping_ && pending_ < opt_.max_batch) {
      const Clock::time_point t = launch_time_locked();
      if (Clock::now() < t) {
        work_cv_.wait_until(lk, t);
        continue;  // re-evaluate: more work, a cancel, or the launch time came
      }
    }
    std::vector<Pending> batch = take_batch_locked();
    if (batch.empty()) continue;
    stats_.in_flight = static_cast<int64_t>(batch.size());
    lk.unlock();
    infer_and_deliver(batch);
    lk.lock();
  }
}

void Batcher::infer_and_deliver(std::vector<Pending>& batch) {
  const auto n = static_cast<int64_t>(batch.size());
  const int S = opt_.size;
  const int64_t out_numel = int64_t{3} * S * S;
  Tensor input = Tensor::f32({n, 6, S, S});
  Tensor audio = Tensor::f32(with_batch(n, opt_.audio_shape));
  for (int64_t i = 0; i < n; ++i) {
    std::memcpy(input.data<float>() + i * input_numel_, batch[i].req.input.data<float>(),
                static_cast<size_t>(input_numel_) * sizeof(float));
    std::memcpy(audio.data<float>() + i * audio_numel_, batch[i].req.audio.data<float>(),
                static_cast<size_t>(audio_numel_) * sizeof(float));
    // The inputs are copied: drop the session's tensors now rather than after delivery.
    batch[i].req.input = Tensor();
    batch[i].req.audio = Tensor();
  }
  const Clock::time_point t0 = Clock::now();
  Result<Tensor> out = predictor_->predict(input, audio);
  const Clock::time_point t1 = Clock::now();
  const double ms = ms_between(t0, t1);

  Status status;
  if (!out.ok()) {
    status = out.status().with_context(fmt::format("serve: batch of {}", n));
  } else if (out->dtype() != DType::kFloat32 || out->numel() != n * out_numel) {
    status = RuntimeError(
        fmt::format("serve: predictor returned {} {} for a batch of {} (want [{}, 3, {}, {}])",
                    dtype_name(out->dtype()), shape_str(out->shape()), n, n, S, S));
  }

  std::unique_lock lk(mu_);
  ++stats_.batches;
  ++stats_.batch_sizes[static_cast<size_t>(n)];
  stats_.frames_inferred += n;
  stats_.infer_ms_sum += ms;
  stats_.infer_ms_last = ms;
  if (stats_.infer_ms_recent.size() < BatcherStats::kRecentInferCalls) {
    stats_.infer_ms_recent.push_back(ms);
  } else {
    stats_.infer_ms_recent[static_cast<size_t>(stats_.batches) % BatcherStats::kRecentInferCalls] =
        ms;
  }
  // The running estimate of one predict call for the launch policy (EMA, weight 1/4).
  estimate_ms_ = estimate_ms_ <= 0 ? ms : 0.75 * estimate_ms_ + 0.25 * ms;
  lk.unlock();

  for (int64_t i = 0; i < n; ++i) {
    Pending& p = batch[static_cast<size_t>(i)];
    FrameResult r;
    r.session = p.req.session;
    r.frame = p.req.frame;
    r.status = status;
    r.deadline = p.req.deadline;
    r.completed = t1;
    r.late = t1 > p.req.deadline;
    r.batch_size = static_cast<int>(n);
    if (status.ok()) {
      r.output = Tensor::f32({3, S, S});
      std::memcpy(r.output.data<float>(), out->data<float>() + i * out_numel,
                  static_cast<size_t>(out_numel) * sizeof(float));
    }
    lk.lock();
    release_slot_locked(r.session);
    auto it = sessions_.find(r.session);
    if (it == sessions_.end() || it->second.epoch != p.epoch) {
      ++stats_.cancelled;  // cancelled or closed while in the batch: discard
      lk.unlock();
      continue;
    }
    std::shared_ptr<const ResultCallback> cb = it->second.on_result;
    delivering_ = r.session;
    ++stats_.delivered;
    if (!status.ok()) ++stats_.failed;
    if (r.late) ++stats_.late;
    lk.unlock();
    (*cb)(std::move(r));
    lk.lock();
    delivering_ = 0;
    done_cv_.notify_all();
    lk.unlock();
  }
}

// ---------------------------------------------------------------------------------------

std::string to_prometheus(const BatcherStats& s, const std::string& p) {
  std::string o;
  auto metric = [&](const char* name, const char* type, const char* help, auto value) {
    o += fmt::format("# HELP {}{} {}\n# TYPE {}{} {}\n{}{} {}\n", p, name, help, p, name, type, p,
                     name, value);
  };
  metric("batches_total", "counter", "Predict calls run.", s.batches);
  metric("frames_inferred_total", "counter", "Frames that went through predict.",
         s.frames_inferred);
  metric("frames_delivered_total", "counter", "Results handed to sessions.", s.delivered);
  metric("frames_failed_total", "counter", "Delivered frames whose predict call failed.", s.failed);
  metric("frames_late_total", "counter", "Frames delivered after their deadline.", s.late);
  metric("frames_cancelled_total", "counter", "Requests dropped by cancel or stop.", s.cancelled);
  metric("submits_rejected_total", "counter", "Submits refused (caps, bad input, stopped).",
         s.rejected);
  metric("queue_depth", "gauge", "Requests pending now.", s.queue_depth);
  metric("in_flight", "gauge", "Requests in the running batch.", s.in_flight);
  metric("sessions", "gauge", "Open sessions.", s.sessions);
  metric("inference_ms_last", "gauge", "Duration of the last predict call (ms).", s.infer_ms_last);
  o += fmt::format(
      "# HELP {}inference_ms Time inside predict (ms).\n# TYPE {}inference_ms summary\n", p, p);
  std::vector<double> recent = s.infer_ms_recent;
  std::sort(recent.begin(), recent.end());
  for (double q : {0.5, 0.9, 0.99}) {
    // Nearest rank; NaN (as Prometheus writes it) before the first call.
    const size_t rank = std::min(recent.size() - 1, static_cast<size_t>(q * recent.size()));
    const std::string v = recent.empty() ? "NaN" : fmt::format("{:.3f}", recent[rank]);
    o += fmt::format("{}inference_ms{{quantile=\"{}\"}} {}\n", p, q, v);
  }
  o += fmt::format("{}inference_ms_sum {}\n{}inference_ms_count {}\n", p, s.infer_ms_sum, p,
                   s.batches);
  o += fmt::format("# HELP {}batch_size Frames per predict call.\n# TYPE {}batch_size histogram\n",
                   p, p);
  int64_t cumulative = 0, frames = 0;
  for (size_t b = 1; b < s.batch_sizes.size(); ++b) {
    cumulative += s.batch_sizes[b];
    frames += static_cast<int64_t>(b) * s.batch_sizes[b];
    o += fmt::format("{}batch_size_bucket{{le=\"{}\"}} {}\n", p, b, cumulative);
  }
  o += fmt::format("{}batch_size_bucket{{le=\"+Inf\"}} {}\n", p, cumulative);
  o += fmt::format("{}batch_size_sum {}\n{}batch_size_count {}\n", p, frames, p, cumulative);
  return o;
}

// ---------------------------------------------------------------------------------------
// Admission.

double ThroughputProfile::best_frames_per_s(double max_batch_ms) const {
  double best = 0;
  for (const auto& pt : points)
    if (pt.ms_per_batch <= max_batch_ms) best = std::max(best, pt.frames_per_s);
  return best;
}

int ThroughputProfile::best_batch(double max_batch_ms) const {
  double best = 0;
  int batch = 0;
  for (const auto& pt : points)
    if (pt.ms_per_batch <= max_batch_ms && pt.frames_per_s > best) {
      best = pt.frames_per_s;
      batch = pt.batch;
    }
  return batch;
}

Result<ThroughputProfile> measure_throughput(render::Predictor& predictor, int size,
                                             const Shape& audio_shape, int max_batch,
                                             std::chrono::milliseconds per_batch, int min_calls) {
  const int64_t audio_numel = shape_numel(audio_shape);
  if (size <= 0 || max_batch < 1 || min_calls < 1 || per_batch.count() < 0 || audio_shape.empty() ||
      audio_numel <= 0 || audio_numel == INT64_MAX)
    return BadInput(fmt::format(
        "serve: measure_throughput: bad arguments (size {}, audio {}, max_batch {}, min_calls {})",
        size, shape_str(audio_shape), max_batch, min_calls));
  ThroughputProfile profile;
  for (int b = 1; b <= max_batch; ++b) {
    Tensor input = Tensor::f32({b, 6, size, size});
    std::fill_n(input.data<float>(), input.numel(), 0.5f);
    Tensor audio = Tensor::zeros(DType::kFloat32, with_batch(b, audio_shape));
    const std::string ctx = fmt::format("serve: measuring batch {}", b);
    TR_RETURN_IF_ERROR(predictor.predict(input, audio).status().with_context(ctx));  // warm-up
    int calls = 0;
    const Clock::time_point t0 = Clock::now();
    Clock::time_point t = t0;
    while (calls < min_calls || t - t0 < per_batch) {
      TR_RETURN_IF_ERROR(predictor.predict(input, audio).status().with_context(ctx));
      ++calls;
      t = Clock::now();
    }
    const double ms = std::max(ms_between(t0, t), 1e-6);
    profile.points.push_back({b, calls, ms / calls, 1000.0 * b * calls / ms});
  }
  return profile;
}

int admission_limit(double frames_per_s_at_best_batch, int fps, double headroom,
                    double session_cpu_ms_per_frame, int cores) {
  if (!(frames_per_s_at_best_batch > 0) || !std::isfinite(frames_per_s_at_best_batch) || fps <= 0 ||
      !(headroom > 0) || !std::isfinite(headroom) || !(session_cpu_ms_per_frame >= 0) ||
      !std::isfinite(session_cpu_ms_per_frame) || cores < 1)
    return 0;
  const double share =
      fps / frames_per_s_at_best_batch + fps * session_cpu_ms_per_frame / (1000.0 * cores);
  // The epsilon keeps exact quotients (0.8 * 250 / 25 = 8) from rounding down to 7.
  const double sessions = std::floor(headroom / share + 1e-9);
  return sessions >= INT_MAX ? INT_MAX : static_cast<int>(sessions);
}

}  // namespace tr::serve
