// One live session of `talkrender serve` (internal to serve/; see session_manager.h).
//
// A session runs on its own thread. From attach() on, frame i is due at t0 + i / fps and
// goes out with exactly the PCM samples [i * N, (i + 1) * N) of its timeline (N = 16000 /
// fps): silence while idle, the pushed speech while speaking, so audio and video share one
// clock. Idle frames are the avatar's own (ping-pong walk), with no inference.
//
// Speech: pushed PCM forms an utterance, fed to the utterance's StreamingFrontEnd on the
// session thread. Each generator window it yields (window j = speech frame j) becomes a
// Batcher request: the generator input prepared from the avatar frame of output index
// start + j, the window, and that frame's due time as the deadline. Results are pasted
// into their avatar frames in order.
//
// Look-ahead. The window of speech frame j needs audio up to ~452.5 ms after the frame's
// own time (audio/audio.h: samples up to 640 j + 7240 at 25 fps, i.e. ~11.3 frames; ~8
// frames of that are the window's second half, P[j .. j+8), the rest the mel and encoder
// context), and a result needs one batch of inference on top. When the audio arrives at
// real time, frame j can therefore not be rendered before ~12 frames after its audio
// arrived. The audio encoder runs window by window (a batch of 4 would add up to 3 frames
// of latency for ~1 ms a frame less CPU). The session delays the start of speech by that
// look-ahead plus a margin of 2 frames for the generator's batch: speech starts
// lookahead_frames() after the frame at which its first audio arrived (15 frames, 600 ms,
// at 25 fps); that delay is the talking latency a client sees. Audio sent faster than real
// time only fills the queue (throttled beyond max_audio_ahead_s). If a result is still
// missing at its due time (a slow machine, or the client's audio stalled without
// "speak-end"), the frame waits and is counted late; after 1 s of stalled audio the
// utterance is ended as by "speak-end".
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "serve/avatar_store.h"
#include "serve/batcher.h"
#include "serve/session_manager.h"

namespace tr::io {
class Fmp4Stream;
}

namespace tr::serve {

struct LiveSessionOptions {
  std::string id;
  StreamFormat format = StreamFormat::kFmp4;
  double idle_timeout_s = 60;
  double max_audio_ahead_s = 3.0;
  int jpeg_quality = 85;
};

// Frames of look-ahead the session delays speech by at `fps` (see the header comment).
int lookahead_frames(int fps);

// What one talking session costs the machine per frame outside the shared generator, on
// its own thread: the audio front-end and encoder, the generator input, the paste and the
// H.264 + AAC encoding (or JPEG). Admission needs it: on a small machine this work, not
// inference, is what runs out first (2 cores: the demo model's generator alone would hold
// 5 sessions, the sessions' own work leaves room for 2). Runs `frames` speech frames of
// `avatar` (a synthetic voiced signal; the encoders do not care what it says) after a
// short warm-up, and returns the process CPU milliseconds per frame (CPU, not wall time:
// the audio encoder's threads count too). Call it before sessions run.
struct SessionCost {
  double cpu_ms_per_frame = 0;
  double wall_ms_per_frame = 0;
};
Result<SessionCost> measure_session_cost(const Avatar& avatar, StreamFormat format, int frames);

class LiveSession {
 public:
  // Opens the session's batcher slot and output stream (an fMP4's init segment is made
  // here and sent first at attach), and starts the thread, which waits for attach().
  static Result<std::shared_ptr<LiveSession>> create(std::shared_ptr<const Avatar> avatar,
                                                     const LiveSessionOptions& o);
  ~LiveSession();  // request_close + join

  SessionInfo info() const { return info_; }
  Status attach(SendFn send);
  Status push_audio(const int16_t* pcm, size_t samples);
  Status control(const std::string& type);  // "speak-end" | "interrupt" | "close"
  // Ends the session at the next frame; with `closing_message` the client gets
  // {"type":"closing"} (drain) and the fMP4 stream is flushed.
  void request_close(bool closing_message);
  bool done() const { return done_.load(); }
  void join();

  int64_t frames_sent() const { return frames_sent_.load(); }
  int64_t frames_late() const { return frames_late_.load(); }
  int64_t queue_depth() const { return queue_depth_.load(); }  // speech frames not yet sent
  bool speaking() const { return speaking_.load(); }

 private:
  struct Event {
    enum Kind { kAudio, kSpeakEnd, kInterrupt } kind = kAudio;
    std::vector<int16_t> pcm;
  };
  struct Utterance;

  LiveSession(std::shared_ptr<const Avatar> a, LiveSessionOptions o);
  void run();
  bool send(Outgoing&& m);  // false: the client is gone
  bool send_text(const std::string& json) { return send({Outgoing::Kind::kText, json}); }
  Clock::time_point due(int64_t i) const;
  // Session thread: applies queued events, feeds front-ends, submits windows.
  void process_events();
  void feed();                        // gives the front-end the next few frames of queued PCM
  void submit_windows();              // of every utterance whose start is fixed, in order
  bool submit_windows(Utterance& u);  // false: the batcher is busy (retry later)
  void interrupt_now();
  Status send_frame(int64_t i, const cv::Mat& bgr, const std::vector<int16_t>& pcm);
  // Waits (handling events) until `t`, or until woken when `wake_early`.
  void wait_until(Clock::time_point t, bool wake_early);

  const std::shared_ptr<const Avatar> avatar_;
  const LiveSessionOptions opt_;
  SessionInfo info_;
  Batcher* batcher_ = nullptr;  // owned by avatar_->model
  SessionId bid_ = 0;
  int fps_ = 25;
  int samples_per_frame_ = 640;
  int lookahead_ = 15;
  std::string init_segment_;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  SendFn send_;
  bool attached_ = false;
  bool closing_ = false, closing_message_ = false;
  std::deque<Event> events_;
  std::map<int64_t, FrameResult> results_;  // by output frame index
  int64_t queued_samples_ = 0;              // pushed, not yet sent (throttle)
  bool client_gone_ = false;

  // Session thread only.
  std::unique_ptr<io::Fmp4Stream> fmp4_;
  std::deque<std::unique_ptr<Utterance>> utterances_;
  int64_t next_frame_ = 0;
  Clock::time_point t0_;
  cv::Mat canvas_;

  std::atomic<bool> done_{false};
  std::atomic<int64_t> frames_sent_{0}, frames_late_{0}, queue_depth_{0};
  std::atomic<bool> speaking_{false};
  std::mutex join_mu_;
  std::thread thread_;
};

}  // namespace tr::serve
