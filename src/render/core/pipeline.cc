// The threaded render pipeline.
//
// Threads and what each one owns:
//   prep thread       takes batch b's in-flight slots, fetches its avatar frames, cuts the
//                     crops and fills one of two batch input sets (image and audio tensors),
//                     then hands the set to the inference thread through `prepared`.
//   inference thread  runs the predictor on each prepared set in order, gives the set back
//                     to the prep thread and hands one Task per frame (crop + a share of
//                     the batch's output tensor) to the task queue. While it runs batch b,
//                     the prep thread fills the other set with batch b+1, so preparation
//                     never sits between two predict calls.
//   worker threads    (opts.workers) pop Tasks and composite them into a new full frame,
//                     which they put into the reorder map `done` keyed by output index.
//   writer thread     takes frame 0, 1, 2, ... out of `done` in order and gives each to
//                     the sink; it alone touches the sink until the pipeline ends.
//   calling thread    supervises: starts the others, polls tr::interrupted(), and on an
//                     error or interrupt stops everyone and calls sink->abort().
//
// Backpressure: a frame takes one "in-flight" slot when the prep thread starts preparing
// it and gives it back when the writer has written it. The prep thread takes a whole
// batch of slots before preparing it and waits while fewer are free, so at most
// max_in_flight frames (their crops, predictions and composited frames) are alive at once,
// however slow compositing or encoding is. Because slots are taken in output order, the
// oldest unwritten frame always holds one, so the pipeline cannot deadlock. With the
// default bound (3 batches + 2 per worker) one batch can be in preparation, one in
// inference and one compositing at the same time. The prep thread also waits for a free
// input set (there are two), which keeps it at most one batch ahead of inference.
//
// Buffers, and who owns them: the two batch input sets cycle prep thread -> `prepared` ->
// inference thread -> `free_inputs`, each with its tensors reused batch after batch; the
// prep thread also owns one BGR scratch frame (crops are cut from it). Crops and output
// frames cycle through the pools in State: a crop goes prep thread -> Task -> worker ->
// free_crops; an output frame goes free_frames -> worker (converted from the avatar frame,
// prediction pasted) -> done -> writer -> free_frames. So in steady state nothing is
// allocated per frame except the predictor's output tensor. A buffer some other owner
// still references (an image writer queueing frames) is dropped, not recycled. Avatar
// frames from a FrameSource are held by their Task's handle until composited.
//
// Determinism: each frame's result depends only on its own inputs, never on which batch
// or worker handled it, and the writer emits in index order.
#include <fmt/format.h>

#include <chrono>
#include <condition_variable>
#include <deque>
#include <map>
#include <mutex>
#include <optional>
#include <thread>

#include "common/interrupt.h"
#include "common/thread_priority.h"
#include "render/render.h"

namespace tr::render {
namespace {

using Clock = std::chrono::steady_clock;

double ms_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

struct Task {
  int64_t index = 0;
  int avatar = 0;
  std::shared_ptr<const void> frame;  // the avatar frame from a FrameSource (else unused)
  cv::Mat crop;
  bool pooled_crop = false;  // `crop` is ours (not one of AvatarFrames::crops): recycle it
  Tensor predictions;        // [B, 3, S, S], shared by the batch's tasks
  int row = 0;               // this frame's row in `predictions`
};

// Everything the threads share; held by shared_ptr so that a detached inference thread
// can outlive run_pipeline safely.
// One batch's generator inputs and the tasks of its frames. Two of these cycle between
// the prep and inference threads.
struct PreparedBatch {
  Tensor input, audio;  // [B, 6, S, S] and [B, ...audio shape]; always the full batch
  std::vector<Task> tasks;
  double prep_ms = 0, wait_ms = 0;
};

struct State {
  std::mutex mu;
  std::condition_variable cv;  // one condition for all events; few threads, simple to reason
  int64_t in_flight = 0;
  std::deque<Task> tasks;
  std::map<int64_t, cv::Mat> done;
  // Recycled buffers: finished frames come back from the writer, crops from the workers.
  // Only buffers nobody else references are recycled (a sink may keep a frame it queues).
  std::vector<cv::Mat> free_frames, free_crops;
  std::deque<PreparedBatch> prepared;      // prep thread -> inference thread, in batch order
  std::vector<PreparedBatch> free_inputs;  // inference thread -> prep thread
  int input_sets = 0;                      // sets created so far (at most kInputSets)
  bool stop = false;                       // error or interrupt: every thread unwinds
  bool prep_done = false;                  // the prep thread has returned
  bool inference_done = false;             // the inference thread has returned
  bool writer_done = false;                // all frames written and the sink finished
  std::optional<Error> error;

  PipelineStats stats;
  Clock::time_point first_inference;
  Clock::time_point last_write;
  bool started = false;

  // Requires mu held.
  void fail_locked(Error e) {
    if (!error) error = std::move(e);
    stop = true;
    cv.notify_all();
  }
  void fail(Error e) {
    std::lock_guard<std::mutex> lock(mu);
    fail_locked(std::move(e));
  }
  // Requires mu held.
  static cv::Mat take(std::vector<cv::Mat>& pool) {
    if (pool.empty()) return cv::Mat();
    cv::Mat m = std::move(pool.back());
    pool.pop_back();
    return m;
  }
  static void give_back(std::vector<cv::Mat>& pool, cv::Mat& m) {
    if (m.u && m.u->refcount == 1) pool.push_back(std::move(m));
    m.release();
  }
};

// Two input sets: one being filled while the other is in inference. More would only let
// preparation run further ahead of a runtime it cannot outpace.
constexpr int kInputSets = 2;

void prep_loop(std::shared_ptr<State> st, std::shared_ptr<const AvatarFrames> avatar,
               std::shared_ptr<const AudioWindows> audio, PipelineOptions opts, int64_t total,
               int64_t max_in_flight) {
  lower_this_thread_priority(opts.helper_nice);
  const PrepSettings& ps = opts.prep;
  const int S = ps.size;
  const int64_t input_numel = 6LL * S * S;
  const int64_t window_numel = audio->window_numel();
  FrameSource* source = avatar->source.get();
  const int n_avatar = avatar->count();
  if (source) {
    source->plan([n_avatar, order = opts.order, start = opts.start_frame](
                     int64_t i) { return avatar_frame_for(i, n_avatar, order, start); },
                 total);
  }
  cv::Mat full_bgr;  // owned by this thread: the BGR frame crops are cut from
  for (int64_t b0 = 0; b0 < total; b0 += opts.batch) {
    const int64_t nb = std::min<int64_t>(opts.batch, total - b0);
    std::vector<cv::Mat> crops(nb);
    PreparedBatch set;
    {
      std::unique_lock<std::mutex> lock(st->mu);
      st->cv.wait(lock, [&] {
        return st->stop || (st->in_flight + nb <= max_in_flight &&
                            (!st->free_inputs.empty() || st->input_sets < kInputSets));
      });
      if (st->stop) break;
      st->in_flight += nb;
      if (!st->free_inputs.empty()) {
        set = std::move(st->free_inputs.back());
        st->free_inputs.pop_back();
      } else {
        st->input_sets += 1;
      }
      if (avatar->crops.empty()) {
        for (auto& c : crops) c = State::take(st->free_crops);
      }
    }
    auto t_prep = Clock::now();
    double wait_ms = 0;
    // Always a full batch: a short last batch keeps an earlier batch's (or, for a render
    // shorter than one batch, zero) inputs in its spare rows and their outputs are ignored.
    // Every sample's output is independent of the others (the generators are per-sample
    // convolutional networks), and one batch shape means one compiled plan, so the runtime
    // never builds a second plan (with its own activation memory) for the tail.
    if (set.input.shape().empty()) {
      set.input = Tensor::zeros(DType::kFloat32, {opts.batch, 6, S, S});
      Shape audio_shape = {opts.batch};
      audio_shape.insert(audio_shape.end(), opts.audio_shape.begin(), opts.audio_shape.end());
      set.audio = Tensor::zeros(DType::kFloat32, audio_shape);
    }
    set.tasks.assign(nb, Task());
    Status prep_status;
    for (int64_t j = 0; j < nb && prep_status.ok(); ++j) {
      Task& t = set.tasks[j];
      t.index = b0 + j;
      t.avatar = avatar_frame_for(t.index, n_avatar, opts.order, opts.start_frame);
      t.row = static_cast<int>(j);
      if (source) {
        auto t_wait = Clock::now();
        auto frame = source->acquire(t.index, t.avatar);
        wait_ms += ms_since(t_wait);
        if (!frame.ok()) {
          prep_status = frame.status();
          break;
        }
        t.frame = std::move(*frame);
      }
      if (!avatar->crops.empty()) {
        t.crop = avatar->crops[t.avatar];
      } else {
        const cv::Mat* full = &full_bgr;
        if (source) {
          prep_status = source->to_bgr(t.frame, full_bgr);
          if (!prep_status.ok()) break;
        } else {
          full = &avatar->full[t.avatar];
        }
        t.crop = std::move(crops[j]);
        make_crop(*full, avatar->rects[t.avatar], ps, &t.crop);
        t.pooled_crop = true;
      }
      fill_generator_input(t.crop, ps, set.input.data<float>() + j * input_numel);
      audio->window(t.index, set.audio.data<float>() + j * window_numel);
    }
    if (!prep_status.ok()) {
      st->fail(prep_status.error());
      break;
    }
    set.prep_ms = ms_since(t_prep) - wait_ms;
    set.wait_ms = wait_ms;
    std::lock_guard<std::mutex> lock(st->mu);
    if (st->stop) break;
    st->prepared.push_back(std::move(set));
    st->cv.notify_all();
  }
  std::lock_guard<std::mutex> lock(st->mu);
  st->prep_done = true;
  st->cv.notify_all();
}

void inference_loop(std::shared_ptr<State> st, std::shared_ptr<Predictor> predictor,
                    PipelineOptions opts) {
  const int S = opts.prep.size;
  for (;;) {
    PreparedBatch set;
    {
      std::unique_lock<std::mutex> lock(st->mu);
      st->cv.wait(lock, [&] { return st->stop || !st->prepared.empty() || st->prep_done; });
      if (st->stop || st->prepared.empty()) break;  // stopped, or every batch is done
      set = std::move(st->prepared.front());
      st->prepared.pop_front();
      if (!st->started) {
        st->started = true;
        st->first_inference = Clock::now();
      }
    }
    auto t_infer = Clock::now();
    Result<Tensor> out = predictor->predict(set.input, set.audio);
    const double infer_ms = ms_since(t_infer);
    if (!out.ok()) {
      st->fail(out.error());
      break;
    }
    const Tensor& pred = out.value();
    if (pred.dtype() != DType::kFloat32 || pred.shape() != Shape{opts.batch, 3, S, S}) {
      st->fail(RuntimeError(fmt::format(
          "the generator returned {} {} for a batch of {}; expected float32 [{}, 3, {}, {}]",
          dtype_name(pred.dtype()), shape_str(pred.shape()), opts.batch, opts.batch, S, S)));
      break;
    }
    std::lock_guard<std::mutex> lock(st->mu);
    st->stats.prep_ms += set.prep_ms;
    st->stats.wait_frames_ms += set.wait_ms;
    st->stats.infer_ms += infer_ms;
    st->stats.batches += 1;
    if (st->stop) break;
    for (Task& t : set.tasks) {
      t.predictions = pred;
      st->tasks.push_back(std::move(t));
    }
    set.tasks.clear();
    st->free_inputs.push_back(std::move(set));
    st->cv.notify_all();
  }
  std::lock_guard<std::mutex> lock(st->mu);
  st->inference_done = true;
  st->cv.notify_all();
}

void worker_loop(State* st, const AvatarFrames* avatar, const PrepSettings* ps, int nice) {
  lower_this_thread_priority(nice);
  const int64_t pred_numel = 3LL * ps->size * ps->size;
  cv::Mat canvas;  // this worker's scratch for the crop with the prediction pasted in
  for (;;) {
    Task t;
    cv::Mat frame;
    {
      std::unique_lock<std::mutex> lock(st->mu);
      st->cv.wait(lock, [&] { return st->stop || !st->tasks.empty() || st->inference_done; });
      if (st->stop) return;
      if (st->tasks.empty()) return;  // inference finished and nothing is left
      t = std::move(st->tasks.front());
      st->tasks.pop_front();
      frame = State::take(st->free_frames);
    }
    auto t0 = Clock::now();
    if (avatar->source) {
      Status s = avatar->source->to_bgr(t.frame, frame);
      if (!s.ok()) {
        st->fail(s.error());
        return;
      }
    } else {
      avatar->full[t.avatar].copyTo(frame);
    }
    paste_prediction(avatar->rects[t.avatar], t.crop,
                     t.predictions.data<float>() + t.row * pred_numel, *ps, &canvas, &frame);
    const double dt = ms_since(t0);
    const int64_t index = t.index;
    const bool pooled_crop = t.pooled_crop;
    cv::Mat crop = std::move(t.crop);
    t = Task();  // drop the frame and the prediction share before taking the lock
    std::lock_guard<std::mutex> lock(st->mu);
    if (pooled_crop) State::give_back(st->free_crops, crop);
    st->stats.composite_ms += dt;
    st->done.emplace(index, std::move(frame));
    st->cv.notify_all();
  }
}

void writer_loop(State* st, FrameSink* sink, int64_t total,
                 const std::function<void(int64_t, int64_t)>* on_progress, int nice) {
  lower_this_thread_priority(nice);
  for (int64_t i = 0; i < total; ++i) {
    cv::Mat frame;
    {
      std::unique_lock<std::mutex> lock(st->mu);
      st->cv.wait(lock, [&] { return st->stop || st->done.count(i) > 0; });
      if (st->stop) return;
      auto it = st->done.find(i);
      frame = std::move(it->second);
      st->done.erase(it);
    }
    auto t0 = Clock::now();
    Status s = sink->write(i, frame);
    const double dt = ms_since(t0);
    {
      std::lock_guard<std::mutex> lock(st->mu);
      State::give_back(st->free_frames, frame);
      if (!s.ok()) {
        st->fail_locked(s.error());
        return;
      }
      st->stats.encode_ms += dt;
      st->in_flight -= 1;
      st->last_write = Clock::now();
      st->cv.notify_all();
    }
    if (*on_progress) (*on_progress)(i + 1, total);
  }
  auto t0 = Clock::now();
  Status s = sink->finish();
  const double dt = ms_since(t0);
  std::lock_guard<std::mutex> lock(st->mu);
  if (!s.ok()) {
    st->fail_locked(s.error());
    return;
  }
  st->stats.encode_ms += dt;
  st->last_write = Clock::now();
  st->writer_done = true;
  st->cv.notify_all();
}

}  // namespace

Result<PipelineStats> run_pipeline(std::shared_ptr<const AvatarFrames> avatar,
                                   std::shared_ptr<const AudioWindows> audio,
                                   std::shared_ptr<Predictor> predictor,
                                   std::shared_ptr<FrameSink> sink,
                                   const PipelineOptions& opts_in) {
  if (!avatar || !audio || !predictor || !sink) {
    return RuntimeError("run_pipeline: a stage is missing");
  }
  PipelineOptions opts = opts_in;
  if (opts.batch < 1) return BadInput(fmt::format("--batch must be >= 1, got {}", opts.batch));
  if (opts.workers < 1) {
    return BadInput(fmt::format("--workers must be >= 1, got {}", opts.workers));
  }
  if (opts.audio_shape.empty()) opts.audio_shape = {audio->window_numel()};
  if (shape_numel(opts.audio_shape) != audio->window_numel()) {
    return BadInput(fmt::format("audio windows of {} floats do not fit the audio input {}",
                                audio->window_numel(), shape_str(opts.audio_shape)));
  }
  TR_RETURN_IF_ERROR(validate_avatar(*avatar, opts.prep, "avatar"));
  int64_t total = audio->frames();
  if (opts.frames >= 0) total = std::min(total, opts.frames);
  if (total <= 0) {
    // Nothing to render is not an error the user can fix by waiting: say so.
    sink->abort();
    return BadInput("nothing to render: the audio gives 0 frames");
  }
  int64_t max_in_flight =
      opts.max_in_flight > 0 ? opts.max_in_flight : 3LL * opts.batch + 2LL * opts.workers;
  max_in_flight = std::max<int64_t>(max_in_flight, opts.batch);

  auto st = std::make_shared<State>();
  st->stats.frames = total;
  std::thread writer(writer_loop, st.get(), sink.get(), total, &opts.on_progress, opts.helper_nice);
  std::vector<std::thread> workers;
  for (int w = 0; w < opts.workers; ++w) {
    workers.emplace_back(worker_loop, st.get(), avatar.get(), &opts.prep, opts.helper_nice);
  }
  std::thread inference(inference_loop, st, predictor, opts);
  std::thread prep(prep_loop, st, avatar, audio, opts, total, max_in_flight);

  // Supervise: wake every 50 ms to poll the interrupt flag (signal handlers only set it).
  {
    std::unique_lock<std::mutex> lock(st->mu);
    while (!st->stop && !st->writer_done) {
      st->cv.wait_for(lock, std::chrono::milliseconds(50));
      if (!st->stop && !st->writer_done && tr::interrupted()) st->fail_locked(Interrupted());
    }
  }
  writer.join();
  bool ok;
  {
    std::lock_guard<std::mutex> lock(st->mu);
    ok = st->writer_done;
    if (ok) {
      // Everything was written; no worker can be busy, let them leave.
      st->stop = true;
      st->cv.notify_all();
    }
  }
  for (auto& w : workers) w.join();
  if (ok) {
    prep.join();
    inference.join();
    std::lock_guard<std::mutex> lock(st->mu);
    PipelineStats stats = st->stats;
    stats.run_s = std::chrono::duration<double>(st->last_write - st->first_inference).count();
    return stats;
  }
  // Failure or interrupt: the writer has stopped touching the sink, so clean it up now,
  // before waiting on the predictor (which may be in the middle of a long batch) and the
  // prep thread (which may be waiting for the frame decoder).
  sink->abort();
  bool prep_done, inference_done;
  {
    std::unique_lock<std::mutex> lock(st->mu);
    st->cv.wait_for(lock, std::chrono::milliseconds(200),
                    [&] { return st->inference_done && st->prep_done; });
    prep_done = st->prep_done;
    inference_done = st->inference_done;
  }
  // A thread still busy holds shared_ptrs to everything it touches: leave it to finish.
  if (prep_done) {
    prep.join();
  } else {
    prep.detach();
  }
  if (inference_done) {
    inference.join();
  } else {
    inference.detach();
  }
  std::lock_guard<std::mutex> lock(st->mu);
  return *st->error;
}

}  // namespace tr::render
