// The cross-session shared batcher of `talkrender serve` (docs/architecture.md, serve/).
//
// Many live sessions (each a talking avatar streamed to a browser) share ONE copy of the
// generator. Sessions never call the predictor: they submit frame requests, each with the
// steady_clock time the frame is due to be sent, and one inference thread owned by the
// Batcher forms batches from what is pending, runs Predictor::predict once per batch and
// hands each frame's result back to its session through the session's callback.
//
// Batching policy (a dynamic batcher, as in inference servers):
//   * Order: earliest deadline first among the sessions' oldest pending requests. Within a
//     session requests are FIFO, so a request never overtakes an earlier one of its own
//     session. A frame must be sent before its session's later frames, so a pending
//     request's effective deadline is the earliest of its own and those of its session's
//     later pending requests (sessions normally submit non-decreasing deadlines, where the
//     two are the same); ordering and the launch rule below use the effective deadline.
//   * Size: at most max_batch frames per predict call.
//   * When: a batch is launched as soon as one of these holds:
//       - max_batch frames are pending (a full batch gains nothing from waiting);
//       - the oldest pending request has waited `batch_wait` (the bounded queue delay that
//         buys fuller batches, like Triton's max_queue_delay);
//       - waiting longer would miss the earliest deadline: now + estimated batch time >=
//         earliest deadline (the estimate is a running average of recent predict calls);
//       - the batcher is draining in stop().
//     So a lone session's frame waits at most batch_wait, and never past the point where
//     its deadline would be missed for the sake of a fuller batch.
//   * Late frames are still inferred (the stream needs them) and are flagged `late`.
//
// Bounds: a session may have at most max_outstanding_per_session requests outstanding
// (pending or in a running batch) and all sessions together at most max_outstanding.
// submit() never blocks by default: over a cap it returns an error at once (kRuntime,
// "busy"), and the session retries when a result frees a slot. With a `wait_until` it
// blocks until a slot is free or that time passes (backpressure for a session's planner
// thread); every wait has that deadline.
//
// Cancellation: cancel(session) drops the session's pending requests and discards its
// results of the batch now running; once cancel() returns, no callback arrives for any
// request the session submitted before the call. The session stays open and may submit
// again (an interrupt / barge-in); close_session() cancels and forgets it (disconnect).
//
// Thread-safety: every public member may be called from any thread at any time, except
// that stop() and the destructor must not be called from a result callback. Callbacks run
// on the inference thread, one at a time, never under the batcher's lock: keep them short
// (push into the session's own queue). From a callback a session may call submit()
// without a wait_until, cancel() and close_session(); a blocking submit there could wait
// for the very slot the callback holds up. The predictor is only ever called from the
// inference thread (render::Predictor's contract).
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "common/status.h"
#include "common/tensor.h"
#include "render/render.h"

namespace tr::serve {

using Clock = std::chrono::steady_clock;
using SessionId = uint64_t;

// One frame to infer.
struct FrameRequest {
  SessionId session = 0;
  int64_t frame = 0;           // the session's frame index (echoed in the result)
  Tensor input;                // generator input [6, S, S] float32
  Tensor audio;                // the frame's audio window, float32, numel = audio_shape's
  Clock::time_point deadline;  // when the frame is due to be sent
};

// One frame's outcome, handed to the session's callback.
struct FrameResult {
  SessionId session = 0;
  int64_t frame = 0;
  Status status;  // the predictor's error (shared by the batch's frames), or ok
  Tensor output;  // [3, S, S] float32 when status is ok
  Clock::time_point deadline;
  Clock::time_point completed;  // when the batch finished
  bool late = false;            // completed after the deadline
  int batch_size = 0;           // frames in the predict call that produced it
};

using ResultCallback = std::function<void(FrameResult&&)>;

struct BatcherOptions {
  int size = 320;     // S: the model's ROI size; inputs are [6, S, S], outputs [3, S, S]
  Shape audio_shape;  // the generator's audio input without batch, e.g. [32, 16, 16]
  int max_batch = 8;  // frames per predict call, at most
  // The longest the oldest pending request waits for a fuller batch (see the policy).
  std::chrono::microseconds batch_wait{std::chrono::milliseconds(4)};
  // The predict time assumed before the first batch has been timed (e.g. from
  // measure_throughput); later the running average of measured calls replaces it.
  std::chrono::microseconds initial_batch_estimate{0};
  int max_outstanding_per_session = 8;  // pending + in a running batch, per session
  int max_outstanding = 256;            // the same over all sessions
};

// Counters for /metrics (a consistent snapshot; see to_prometheus()).
struct BatcherStats {
  int64_t batches = 0;
  std::vector<int64_t> batch_sizes;  // batch_sizes[b] = batches of b frames (0..max_batch)
  int64_t frames_inferred = 0;       // frames that went through predict (incl. discarded)
  double infer_ms_sum = 0;           // time inside predict, over `batches` calls
  double infer_ms_last = 0;
  // The last kRecentInferCalls predict times (a ring; its order does not matter): the
  // summary's quantiles are over this window, so they follow the current load.
  static constexpr size_t kRecentInferCalls = 1024;
  std::vector<double> infer_ms_recent;
  double batch_estimate_ms = 0;  // the running estimate the launch policy uses
  int64_t queue_depth = 0;       // requests pending now
  int64_t in_flight = 0;         // requests in the batch running now
  int64_t late = 0;              // frames delivered after their deadline
  int64_t delivered = 0;         // results handed to callbacks (ok or error)
  int64_t failed = 0;            // of those, frames whose predict call failed
  int64_t cancelled = 0;         // requests dropped by cancel / close_session / stop
  int64_t rejected = 0;          // submits refused (caps, bad request, stopped)
  int64_t sessions = 0;          // open sessions
};

// Prometheus text exposition of `s`, every name prefixed with `prefix` (e.g.
// "talkrender_serve_"): counters, gauges, the inference time summary (quantiles 0.5, 0.9,
// 0.99 over the last kRecentInferCalls calls) and the batch size histogram (le = 1..max_batch).
std::string to_prometheus(const BatcherStats& s, const std::string& prefix);

class Batcher {
 public:
  enum class StopMode {
    kDrain,   // infer everything already submitted, deliver it, then stop
    kCancel,  // drop pending requests (no callbacks), finish the running batch, stop
  };

  // Checks the options and starts the inference thread, which owns `predictor` from now
  // on (nothing else may call it until the Batcher is stopped).
  static Result<std::unique_ptr<Batcher>> create(std::shared_ptr<render::Predictor> predictor,
                                                 BatcherOptions options);
  ~Batcher();  // stop(kCancel)
  Batcher(const Batcher&) = delete;
  Batcher& operator=(const Batcher&) = delete;

  // A new session whose results go to `on_result` (called on the inference thread).
  // Errors once stopped, or when on_result is empty.
  Result<SessionId> open_session(ResultCallback on_result);
  // cancel() and forget the session; its id is not reused. Unknown ids are ignored.
  void close_session(SessionId id);
  // Drops the session's pending requests and the results of its requests in the running
  // batch; no callback arrives for them after this returns (see the header comment).
  // Submitters of this session blocked in submit() return kInterrupted.
  void cancel(SessionId id);

  // Queues one frame. Errors: kBadInput (unknown session, wrong tensor shape or dtype),
  // kRuntime (a cap is reached and wait_until has passed: "busy", retry later),
  // kInterrupted (stopped, or the session was cancelled/closed while waiting).
  // The default wait_until (min) means: do not wait.
  Status submit(FrameRequest request, Clock::time_point wait_until = Clock::time_point::min());

  // Stops accepting requests, drains or cancels what is pending (see StopMode), waits for
  // the running batch and joins the inference thread. Idempotent; later calls return at
  // once. Waits as long as the predictor takes (at most one call per pending batch).
  void stop(StopMode mode = StopMode::kCancel);

  BatcherStats stats() const;
  const BatcherOptions& options() const { return opt_; }

 private:
  struct Pending {
    FrameRequest req;
    Clock::time_point due;  // the effective deadline (see the policy)
    Clock::time_point arrived;
    uint64_t epoch = 0;  // the session's epoch at submit (cancel bumps it)
  };
  struct Session {
    std::shared_ptr<const ResultCallback> on_result;  // copied out for a delivery
    std::deque<Pending> queue;                        // FIFO
    int outstanding = 0;                              // queue + in the running batch
    uint64_t epoch = 0;
  };

  Batcher(std::shared_ptr<render::Predictor> p, BatcherOptions o);
  void run();
  // The time the policy launches a batch at (needs the lock and a non-empty queue).
  Clock::time_point launch_time_locked() const;
  std::vector<Pending> take_batch_locked();
  void cancel_locked(Session& s);  // bumps the epoch and drops the queue
  void release_slot_locked(SessionId id);
  void infer_and_deliver(std::vector<Pending>& batch);

  std::shared_ptr<render::Predictor> predictor_;
  const BatcherOptions opt_;
  int64_t input_numel_ = 0, audio_numel_ = 0;

  mutable std::mutex mu_;
  std::condition_variable work_cv_;   // inference thread: new work, stop
  std::condition_variable space_cv_;  // submitters: a slot freed, cancel, stop
  std::condition_variable done_cv_;   // cancel(): a delivery finished
  std::unordered_map<SessionId, Session> sessions_;
  SessionId next_id_ = 1;
  int64_t pending_ = 0;      // over all session queues
  int64_t outstanding_ = 0;  // pending + in flight
  bool stopping_ = false;
  StopMode stop_mode_ = StopMode::kCancel;
  SessionId delivering_ = 0;  // the session whose callback runs now (0: none)
  double estimate_ms_ = 0;
  BatcherStats stats_;

  std::mutex join_mu_;  // serialises stop()'s join
  std::thread thread_;
  std::thread::id thread_id_;
};

// ---------------------------------------------------------------------------------------
// Admission: how many sessions one predictor can hold.

struct ThroughputPoint {
  int batch = 0;
  int calls = 0;            // timed predict calls
  double ms_per_batch = 0;  // mean time of one predict call
  double frames_per_s = 0;  // batch * calls / time
};
struct ThroughputProfile {
  std::vector<ThroughputPoint> points;  // batch 1 .. max_batch
  // The best frames/s over the batch sizes whose ms_per_batch <= max_batch_ms (all by
  // default); 0 when none qualifies. Bounding the batch time keeps the chosen operating
  // point inside the sessions' latency budget (a frame waits up to one batch time plus
  // batch_wait before its result).
  double best_frames_per_s(double max_batch_ms = 1e300) const;
  int best_batch(double max_batch_ms = 1e300) const;  // its batch size; 0 when none
};

// Times `predictor` at batch sizes 1..max_batch on dummy inputs (input 0.5, audio 0): per
// size one untimed warm-up call, then calls until `per_batch` has passed (at least
// min_calls). Must not run while a Batcher owns the predictor (call it before create()).
// Errors: bad arguments, or the predictor's error (with the batch size as context).
Result<ThroughputProfile> measure_throughput(render::Predictor& predictor, int size,
                                             const Shape& audio_shape, int max_batch,
                                             std::chrono::milliseconds per_batch,
                                             int min_calls = 2);

// The sessions a machine can hold at full fps: the generator serving F =
// frames_per_s_at_best_batch frames/s with all its threads, each session needing `fps`
// frames/s of it plus C = session_cpu_ms_per_frame of CPU per frame on its own thread
// (measure_session_cost) out of `cores` cores, keeping (1 - headroom) of the machine spare
// for jitter, idle bursts and the host's other work:
//     sessions = floor(headroom / (fps / F + fps * C / (1000 * cores)))
// Each term is the share of the whole machine a session takes: fps / F of the generator's
// time (it uses every core), fps * C ms of CPU per second out of 1000 * cores.
// e.g. F = 400 frames/s, fps = 25, headroom = 0.8, C = 0 -> floor(12.8) = 12; with
// C = 20 ms on 2 cores -> floor(0.8 / (0.0625 + 0.25)) = 2.
// Returns 0 when F, fps or headroom is not positive and finite, or C is negative or not
// finite, or cores < 1 (headroom above 1 is allowed but overcommits). Take F from
// measure_throughput at a batch size whose ms_per_batch fits the latency budget: under
// load pending requests pile up until batches reach that size, so the best batch's
// throughput, not batch 1's, is what bounds the sessions.
int admission_limit(double frames_per_s_at_best_batch, int fps, double headroom,
                    double session_cpu_ms_per_frame = 0, int cores = 1);

}  // namespace tr::serve
