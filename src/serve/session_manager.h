// talkrender serve's sessions (issue 18): the avatars of --avatars DIR, the model loaded
// once and shared through one Batcher (batcher.h), and the live sessions. The HTTP and
// WebSocket layer (http_server.h) calls only this interface; it does not see render/.
//
// A session is an open-ended render on its own clock: from the moment a client attaches,
// it emits one frame every 1/fps. While no speech is queued it plays the avatar's own
// frames (ping-pong walk, no inference) with silence; pushed PCM goes through the session's
// streaming front-end, and each speech frame's generator input and audio window go to the
// shared batcher with the frame's due time as deadline. Audio and video are stamped from
// the same frame clock, so they cannot drift apart.
//
// Thread-safety: every member may be called from any thread. Callbacks (`send`) are called
// from the session's own thread, in order, never while a lock of the manager is held.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "common/status.h"

namespace tr::serve {

struct ServeOptions {
  std::string avatars_dir;     // packages or datasets, one per folder, named by folder
  int max_sessions = 0;        // caps the admission limit further; 0: the limit alone
  double idle_timeout_s = 60;  // a session with no client attached this long is closed
  int batch = 0;               // max batch across sessions; 0: from the measurement
  int threads = 0;             // runtime threads; 0: one per core
  std::string precision = "auto";
  double max_audio_ahead_s = 3.0;  // PCM queued beyond real time; more is refused (throttle)
  // Admission: the share of the machine to promise (admission_limit). Measured on 2 cores
  // (Xeon, AVX-512), demo model, each session ~0.24 of the machine by the model: 3
  // sessions (0.72) came late by the hundred in 90 s (batches ran 1.4x slower than when
  // measured alone: the generator's threads and the sessions' threads preempt each other);
  // 2 sessions (0.48) had none.
  double headroom = 0.6;
  // Decoded frames of one avatar (BGR, in RAM); a larger avatar is refused when opened.
  int64_t frame_cache_mb = 2048;
  // For avatars without their own models/ (datasets): the generator and audio encoder.
  std::string generator_path;
  std::string audio_encoder_path;
};

enum class StreamFormat {
  kFmp4,     // fragmented MP4 (H.264 + AAC, one timeline), one fragment per frame
  kJpegPcm,  // per frame: a JPEG message, then that frame's PCM (s16le 16 kHz mono)
};

// What the HTTP layer needs to tell the client about a new session.
struct SessionInfo {
  std::string id;  // random, URL-safe; never derived from user input
  std::string avatar;
  int fps = 25;
  int width = 0, height = 0;
  std::string mime;  // fMP4: e.g. video/mp4; codecs="avc1.42C01F, mp4a.40.2"
};

// One message to the client, in order.
struct Outgoing {
  enum class Kind { kBinary, kText } kind = Kind::kBinary;
  std::string data;
};
// Returns false when the client is gone (the session then closes).
using SendFn = std::function<bool(Outgoing&&)>;

// Why an open was refused: kUnknownAvatar -> 404, kFull -> 503, kBadRequest -> 400.
enum class OpenRefusal { kNone, kUnknownAvatar, kFull, kBadRequest };

class SessionManager {
 public:
  // Loads the model(s) once, lists the avatars, measures throughput and computes the
  // admission limit. Errors name the folder or model.
  static Result<std::unique_ptr<SessionManager>> create(const ServeOptions& o);
  virtual ~SessionManager() = default;

  virtual std::vector<std::string> avatar_names() const = 0;
  // Talking sessions held at full fps (after --max-sessions).
  virtual int admission_limit() const = 0;
  virtual int open_sessions() const = 0;

  // Opens a session on `avatar` (a folder name from avatar_names(), never a path). On
  // refusal, *refusal says why and the error's message is the client's.
  virtual Result<SessionInfo> open(const std::string& avatar, StreamFormat format,
                                   OpenRefusal* refusal) = 0;
  // Binds the client's output and starts the session's clock. One client per session.
  virtual Status attach(const std::string& id, SendFn send) = 0;
  // PCM s16le 16 kHz mono, any number of samples. kBadInput: unknown session; kRuntime
  // with "throttled" in the message: more than max_audio_ahead_s queued (nothing taken).
  virtual Status push_audio(const std::string& id, const int16_t* pcm, size_t samples) = 0;
  // "speak-end" (flush the front-end: the speech ends), "interrupt" (back to idle at the
  // next frame; queued speech dropped), "close". kBadInput for anything else.
  virtual Status control(const std::string& id, const std::string& type) = 0;
  virtual void close(const std::string& id) = 0;

  // POST /v1/render: an audio file (any format render reads) -> the MP4's bytes.
  virtual Result<std::string> render_file(const std::string& avatar,
                                          const std::string& audio_path) = 0;
  // Prometheus text: sessions, frames sent, frames late, batch sizes, inference ms,
  // queue depths.
  virtual std::string metrics_text() const = 0;
  // SIGTERM: refuse new sessions, end the open ones (each gets a final message), return
  // when all are closed.
  virtual void drain() = 0;
};

}  // namespace tr::serve
