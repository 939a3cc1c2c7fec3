// One live session: its clock, its utterances and its output (see live_session.h).
#include "serve/live_session.h"

#include <fmt/format.h>
#include <time.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <nlohmann/json.hpp>
#include <opencv2/imgcodecs.hpp>
#include <optional>

#include "audio/audio.h"
#include "io/fmp4_stream.h"

namespace tr::serve {

namespace {
constexpr int kAudioLookaheadSamples = 7240;          // audio/audio.h: window i needs 640 i + 7240
constexpr int kBatchMarginFrames = 2;                 // one batch of inference + batch_wait
constexpr double kStallS = 1.0;                       // stalled audio ends the utterance
constexpr int kFeedFrames = 4;                        // audio fed to the front-end per step
constexpr int kEncoderBatch = 1;                      // encoder windows per call (see the header)
constexpr int64_t kTrimSamples = audio::kSampleRate;  // drop used PCM in 1 s steps

double seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

double process_cpu_ms() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return 1e3 * static_cast<double>(ts.tv_sec) + 1e-6 * static_cast<double>(ts.tv_nsec);
}
// A session's audio front-end settings (measure_session_cost times the same).
audio::FeatureOptions front_end_options(const ModelEntry& m) {
  audio::FeatureOptions fo;
  fo.batch = kEncoderBatch;  // adds up to (batch - 1) frames of latency (audio.h)
  fo.repeat_ends = m.family.pad_rows;
  return fo;
}

// A session's fMP4 stream settings (measure_session_cost times the same).
io::Fmp4Options stream_options(const Avatar& a) {
  io::Fmp4Options fo;
  fo.width = a.live.width;
  fo.height = a.live.height;
  fo.fps_num = a.model->family.fps;
  fo.threads = 1;  // many sessions share the cores with the generator
  fo.audio_rate = audio::kSampleRate;
  return fo;
}
}  // namespace

int lookahead_frames(int fps) {
  const int n = audio::kSampleRate / std::max(1, fps);
  // +1: without the step-11 padding (P = F) the window needs one frame more.
  return (kAudioLookaheadSamples + n - 1) / n + 1 + (kEncoderBatch - 1) + kBatchMarginFrames;
}

Result<SessionCost> measure_session_cost(const Avatar& avatar, StreamFormat format, int frames) {
  const ModelEntry& m = *avatar.model;
  const render::AvatarFrames& av = *avatar.live.frames;
  if (frames < 1 || av.count() < 1) return BadInput("serve: measure_session_cost: no frames");
  const int fps = m.family.fps, n = audio::kSampleRate / fps, size = m.prep.size;
  TR_ASSIGN_OR_RETURN(auto fe, audio::StreamingFrontEnd::create(m.encoder, front_end_options(m)));
  std::unique_ptr<io::Fmp4Stream> fmp4;
  if (format == StreamFormat::kFmp4) {
    TR_ASSIGN_OR_RETURN(
        fmp4, io::Fmp4Stream::create(stream_options(avatar),
                                     [](const uint8_t*, size_t, bool) { return Status::Ok(); }));
  }
  const int jpeg_quality = LiveSessionOptions{}.jpeg_quality;  // a session's default
  Tensor input = Tensor::f32({6, size, size});
  std::vector<float> prediction(static_cast<size_t>(3) * size * size, 0.5f);
  std::vector<int16_t> pcm(static_cast<size_t>(n));
  std::vector<float> samples(static_cast<size_t>(n));
  std::vector<uchar> jpeg;
  cv::Mat canvas;
  audio::StreamOutput out;
  const int warmup = std::min(frames, 2 * kEncoderBatch);
  double cpu0 = 0;
  Clock::time_point wall0;
  for (int i = 0; i < warmup + frames; ++i) {
    if (i == warmup) {
      cpu0 = process_cpu_ms();
      wall0 = Clock::now();
    }
    // A voiced 150 Hz signal with a syllable-rate envelope.
    for (int k = 0; k < n; ++k) {
      const double t = static_cast<double>(i * n + k) / audio::kSampleRate;
      const double v =
          0.3 * std::sin(6.2831853 * 150 * t) * (0.6 + 0.4 * std::sin(6.2831853 * 4 * t));
      samples[k] = static_cast<float>(v);
      pcm[k] = static_cast<int16_t>(v * 32767);
    }
    TR_RETURN_IF_ERROR(fe->push(samples.data(), samples.size(), &out));
    out.clear();
    const int f = i % av.count();
    cv::Mat crop = render::make_crop(av.full[f], av.rects[f], m.prep);
    render::fill_generator_input(crop, m.prep, input.data<float>());
    cv::Mat frame = av.full[f].clone();
    render::paste_prediction(av.rects[f], crop, prediction.data(), m.prep, &canvas, &frame);
    if (fmp4) {
      TR_RETURN_IF_ERROR(fmp4->write_audio(pcm.data(), pcm.size()));
      TR_RETURN_IF_ERROR(fmp4->write_frame(frame));
    } else if (!cv::imencode(".jpg", frame, jpeg, {cv::IMWRITE_JPEG_QUALITY, jpeg_quality})) {
      return RuntimeError("JPEG encoding failed");
    }
  }
  SessionCost c;
  c.cpu_ms_per_frame = (process_cpu_ms() - cpu0) / frames;
  c.wall_ms_per_frame = 1e3 * seconds(Clock::now() - wall0) / frames;
  return c;
}

struct LiveSession::Utterance {
  std::unique_ptr<audio::StreamingFrontEnd> fe;
  // The utterance's PCM from sample `pcm_base` on: samples both fed and sent are dropped
  // (trim), so a long utterance (a stream that never says speak-end) keeps O(1) memory.
  std::vector<int16_t> pcm;
  int64_t pcm_base = 0;
  int64_t pcm_sent = 0;        // samples sent
  int64_t fed = 0;             // samples given to the front-end
  bool end_requested = false;  // speak-end: finish once everything is fed
  bool finished = false;
  int64_t windows_total = -1;  // known once finished
  int64_t windows_seen = 0;
  std::deque<audio::StreamOutput::Window> windows;  // not yet submitted
  std::map<int64_t, cv::Mat> crops;                 // submitted, by speech frame j
  int64_t arrival_frame = 0;
  // Output index of speech frame 0: set when it becomes the head, or earlier, once the
  // utterance before it has finished (process_events).
  int64_t start = -1;
  Clock::time_point last_audio;

  int64_t pcm_end() const { return pcm_base + static_cast<int64_t>(pcm.size()); }
  const int16_t* sample(int64_t s) const { return pcm.data() + (s - pcm_base); }
  void trim() {
    const int64_t done = std::min(fed, pcm_sent) - pcm_base;
    if (done < kTrimSamples) return;
    pcm.erase(pcm.begin(), pcm.begin() + done);
    pcm_base += done;
  }
  int64_t total_frames(int n) const {
    const int64_t pcm_frames = (pcm_end() + n - 1) / n;
    return std::max(windows_total, pcm_frames);
  }
  void take(audio::StreamOutput& out) {
    for (auto& w : out.windows) windows.push_back(std::move(w));
    windows_seen = fe->frames();
    out.clear();
  }
  void finish() {
    if (finished) return;
    audio::StreamOutput out;
    Status s = fe->finish(&out);  // "too short" leaves the speech without mouth motion
    take(out);
    finished = true;
    windows_total = s.ok() ? fe->frames() : windows_seen;
  }
};

LiveSession::LiveSession(std::shared_ptr<const Avatar> a, LiveSessionOptions o)
    : avatar_(std::move(a)), opt_(std::move(o)) {}

Result<std::shared_ptr<LiveSession>> LiveSession::create(std::shared_ptr<const Avatar> avatar,
                                                         const LiveSessionOptions& o) {
  std::shared_ptr<LiveSession> s(new LiveSession(std::move(avatar), o));
  const ModelEntry& m = *s->avatar_->model;
  s->batcher_ = m.batcher.get();
  s->fps_ = m.family.fps;
  s->samples_per_frame_ = audio::kSampleRate / s->fps_;
  s->lookahead_ = lookahead_frames(s->fps_);
  s->info_.id = o.id;
  s->info_.avatar = s->avatar_->name;
  s->info_.fps = s->fps_;
  s->info_.width = s->avatar_->live.width;
  s->info_.height = s->avatar_->live.height;
  LiveSession* self = s.get();
  if (o.format == StreamFormat::kFmp4) {
    const io::Fmp4Options fo = stream_options(*s->avatar_);
    auto sink = [self](const uint8_t* d, size_t n, bool init) -> Status {
      std::string bytes(reinterpret_cast<const char*>(d), n);
      if (init) {
        self->init_segment_ += bytes;
        return Status::Ok();
      }
      if (!self->send({Outgoing::Kind::kBinary, std::move(bytes)})) {
        return RuntimeError("client gone");
      }
      return Status::Ok();
    };
    TR_ASSIGN_OR_RETURN(s->fmp4_, io::Fmp4Stream::create(fo, sink));
    s->info_.mime = s->fmp4_->mime_codecs();
  } else {
    s->info_.mime = "application/x-talkrender-jpeg-pcm";
  }
  TR_ASSIGN_OR_RETURN(s->bid_, s->batcher_->open_session([self](FrameResult&& r) {
    {
      std::lock_guard<std::mutex> lock(self->mu_);
      const int64_t f = r.frame;
      self->results_[f] = std::move(r);
    }
    self->cv_.notify_all();
  }));
  s->thread_ = std::thread([self] { self->run(); });
  return s;
}

LiveSession::~LiveSession() {
  request_close(false);
  join();
}

void LiveSession::join() {
  std::lock_guard<std::mutex> lock(join_mu_);  // close(), reap() and drain() may race here
  if (thread_.joinable()) thread_.join();
}

Status LiveSession::attach(SendFn send) {
  if (!send) return BadInput("no output for the session");
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (closing_ || done_) return BadInput(fmt::format("session {} is closed", opt_.id));
    // A runtime error, not bad input: the session exists (HTTP 409, not 404).
    if (attached_) return RuntimeError(fmt::format("session {} already has a client", opt_.id));
    send_ = std::move(send);
    attached_ = true;
  }
  cv_.notify_all();
  return Status::Ok();
}

Status LiveSession::push_audio(const int16_t* pcm, size_t samples) {
  if (samples == 0) return Status::Ok();
  if (!pcm) return BadInput("no samples");
  const int64_t limit = static_cast<int64_t>(opt_.max_audio_ahead_s * audio::kSampleRate);
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (closing_ || done_) return BadInput(fmt::format("session {} is closed", opt_.id));
    if (queued_samples_ + static_cast<int64_t>(samples) > limit) {
      return RuntimeError(fmt::format(
          "throttled: {:.2f} s of audio queued beyond playback, {:.2f} s more would pass the "
          "limit of {:.2f} s; send at real time",
          static_cast<double>(queued_samples_) / audio::kSampleRate,
          static_cast<double>(samples) / audio::kSampleRate, opt_.max_audio_ahead_s));
    }
    queued_samples_ += static_cast<int64_t>(samples);
    events_.push_back({Event::kAudio, std::vector<int16_t>(pcm, pcm + samples)});
  }
  cv_.notify_all();
  return Status::Ok();
}

Status LiveSession::control(const std::string& type) {
  if (type == "close") {
    request_close(true);  // the client asked: flush the stream and say goodbye
    return Status::Ok();
  }
  if (type != "speak-end" && type != "interrupt") {
    return BadInput(fmt::format("unknown control '{}' (speak-end, interrupt, close)", type));
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (closing_ || done_) return BadInput(fmt::format("session {} is closed", opt_.id));
    if (type == "speak-end") {
      events_.push_back({Event::kSpeakEnd, {}});
    } else {
      // Queued speech is dropped at once; the session thread cancels the rest.
      for (const Event& e : events_) queued_samples_ -= static_cast<int64_t>(e.pcm.size());
      events_.clear();
      events_.push_back({Event::kInterrupt, {}});
    }
  }
  cv_.notify_all();
  return Status::Ok();
}

void LiveSession::request_close(bool closing_message) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    closing_ = true;
    closing_message_ = closing_message_ || closing_message;
  }
  cv_.notify_all();
}

bool LiveSession::send(Outgoing&& m) {
  if (client_gone_) return false;
  if (!send_(std::move(m))) {
    client_gone_ = true;
    std::lock_guard<std::mutex> lock(mu_);
    closing_ = true;
  }
  return !client_gone_;
}

Clock::time_point LiveSession::due(int64_t i) const {
  return t0_ + std::chrono::duration_cast<Clock::duration>(
                   std::chrono::duration<double>(static_cast<double>(i) / fps_));
}

void LiveSession::interrupt_now() {
  batcher_->cancel(bid_);  // no callback for earlier requests after this returns
  int64_t unsent = 0;
  for (const auto& u : utterances_) unsent += u->pcm_end() - u->pcm_sent;
  utterances_.clear();
  std::lock_guard<std::mutex> lock(mu_);
  results_.clear();
  queued_samples_ -= unsent;
}

void LiveSession::process_events() {
  std::deque<Event> events;
  {
    std::lock_guard<std::mutex> lock(mu_);
    events.swap(events_);
  }
  const audio::EncoderFn& encoder = avatar_->model->encoder;
  for (Event& e : events) {
    if (e.kind == Event::kInterrupt) {
      interrupt_now();
      continue;
    }
    Utterance* u =
        utterances_.empty() || utterances_.back()->finished ? nullptr : utterances_.back().get();
    if (e.kind == Event::kSpeakEnd) {
      if (u) u->end_requested = true;
      continue;
    }
    if (!u) {
      auto nu = std::make_unique<Utterance>();
      auto fe = audio::StreamingFrontEnd::create(encoder, front_end_options(*avatar_->model));
      if (!fe.ok()) {
        fmt::print(stderr, "session {}: {}\n", opt_.id, fe.error().message);
        std::lock_guard<std::mutex> lock(mu_);
        queued_samples_ -= static_cast<int64_t>(e.pcm.size());
        continue;
      }
      nu->fe = std::move(*fe);
      nu->arrival_frame = next_frame_;
      utterances_.push_back(std::move(nu));
      u = utterances_.back().get();
    }
    u->last_audio = Clock::now();
    u->pcm.insert(u->pcm.end(), e.pcm.begin(), e.pcm.end());
  }
  feed();
  // Starts: the head's when it becomes the head; a later utterance's as soon as the one
  // before it has finished (its length is then known). Fixing it then lets its windows go
  // to the batcher ahead of their frames; fixed only when it became the head, its first
  // frame would be due at once when it was queued behind the previous one (back-to-back
  // speech came a few frames late).
  int64_t free_from = next_frame_;  // the first output frame no earlier utterance takes
  for (auto& up : utterances_) {
    Utterance& u = *up;
    if (u.start < 0) u.start = std::max(free_from, u.arrival_frame + lookahead_);
    if (!u.finished) break;
    free_from = std::max(free_from, u.start + u.total_frames(samples_per_frame_));
  }
}

void LiveSession::feed() {
  // A bounded amount per call, so that a large push does not hold up the frame clock (or an
  // interrupt); the front-end runs the audio encoder on this thread.
  const int64_t chunk = static_cast<int64_t>(kFeedFrames) * samples_per_frame_;
  for (auto& up : utterances_) {
    Utterance& u = *up;
    if (u.finished) continue;
    const int64_t n = std::min<int64_t>(chunk, u.pcm_end() - u.fed);
    if (n > 0) {
      std::vector<float> f(static_cast<size_t>(n));
      const int16_t* src = u.sample(u.fed);
      for (int64_t k = 0; k < n; ++k) f[k] = static_cast<float>(src[k]) / 32768.0f;
      u.fed += n;
      audio::StreamOutput out;
      Status s = u.fe->push(f.data(), f.size(), &out);
      u.take(out);
      if (!s.ok()) {
        fmt::print(stderr, "session {}: {}\n", opt_.id, s.message());
        u.finished = true;
        u.windows_total = u.windows_seen;
      }
    }
    if (!u.finished && u.end_requested && u.fed == u.pcm_end()) u.finish();
    return;  // one utterance at a time, in order
  }
}

void LiveSession::submit_windows() {
  for (auto& up : utterances_) {
    if (up->start < 0) return;
    if (!submit_windows(*up)) return;
  }
}

bool LiveSession::submit_windows(Utterance& u) {
  const render::AvatarFrames& av = *avatar_->live.frames;
  const ModelEntry& m = *avatar_->model;
  const int size = m.prep.size;
  while (!u.windows.empty()) {
    const audio::StreamOutput::Window& w = u.windows.front();
    const int64_t o = u.start + w.frame;
    const int k = render::avatar_frame_for(o, av.count(), render::FrameOrder::kPingPong,
                                           m.family.first_frame);
    FrameRequest req;
    req.session = bid_;
    req.frame = o;
    req.deadline = due(o);
    cv::Mat crop = render::make_crop(av.full[k], av.rects[k], m.prep);
    req.input = Tensor::f32({6, size, size});
    render::fill_generator_input(crop, m.prep, req.input.data<float>());
    req.audio = Tensor::f32(m.family.audio_shape);
    if (static_cast<int64_t>(w.data.size()) != req.audio.numel()) {
      fmt::print(stderr, "session {}: window of {} floats, the generator takes {}\n", opt_.id,
                 w.data.size(), req.audio.numel());
      u.windows.clear();
      u.finished = true;
      u.windows_total = 0;
      return true;
    }
    std::copy(w.data.begin(), w.data.end(), req.audio.data<float>());
    Status s = batcher_->submit(std::move(req));
    if (!s.ok()) {
      if (s.error().kind == ErrorKind::kRuntime) return false;  // busy: retried on the next result
      FrameResult failed;
      failed.frame = o;
      failed.status = s;
      std::lock_guard<std::mutex> lock(mu_);
      results_[o] = std::move(failed);
    }
    u.crops[w.frame] = std::move(crop);
    u.windows.pop_front();
  }
  return true;
}

void LiveSession::wait_until(Clock::time_point t, bool wake_early) {
  for (;;) {
    process_events();
    submit_windows();
    std::unique_lock<std::mutex> lock(mu_);
    if (closing_ || Clock::now() >= t) return;
    if (!events_.empty()) continue;
    cv_.wait_until(lock, t);
    if (wake_early) return;
  }
}

Status LiveSession::send_frame(int64_t i, const cv::Mat& bgr, const std::vector<int16_t>& pcm) {
  (void)i;
  if (fmp4_) {
    TR_RETURN_IF_ERROR(fmp4_->write_audio(pcm.data(), pcm.size()));
    return fmp4_->write_frame(bgr);
  }
  std::vector<uint8_t> jpeg;
  if (!cv::imencode(".jpg", bgr, jpeg, {cv::IMWRITE_JPEG_QUALITY, opt_.jpeg_quality})) {
    return RuntimeError("JPEG encoding failed");
  }
  std::string j(1 + jpeg.size(), 'J');
  std::copy(jpeg.begin(), jpeg.end(), j.begin() + 1);
  if (!send({Outgoing::Kind::kBinary, std::move(j)})) return RuntimeError("client gone");
  std::string p(1 + pcm.size() * 2, 'P');
  std::memcpy(p.data() + 1, pcm.data(), pcm.size() * 2);  // s16le (little-endian host)
  if (!send({Outgoing::Kind::kBinary, std::move(p)})) return RuntimeError("client gone");
  return Status::Ok();
}

void LiveSession::run() {
  {
    std::unique_lock<std::mutex> lock(mu_);
    const auto deadline = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                             std::chrono::duration<double>(opt_.idle_timeout_s));
    cv_.wait_until(lock, deadline, [&] { return attached_ || closing_; });
    if (!attached_ || closing_) {
      lock.unlock();
      batcher_->close_session(bid_);
      done_ = true;
      return;
    }
  }
  if (fmp4_) send({Outgoing::Kind::kBinary, init_segment_});
  nlohmann::json started = {{"type", "started"},
                            {"session", info_.id},
                            {"avatar", info_.avatar},
                            {"fps", fps_},
                            {"width", info_.width},
                            {"height", info_.height},
                            {"format", fmp4_ ? "fmp4" : "jpeg-pcm"},
                            {"mime", info_.mime},
                            {"audio_rate", audio::kSampleRate},
                            {"lookahead_frames", lookahead_}};
  send_text(started.dump());
  t0_ = Clock::now();
  const render::AvatarFrames& av = *avatar_->live.frames;
  const ModelEntry& m = *avatar_->model;
  const int n = samples_per_frame_;
  const auto period =
      std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(1.0 / fps_));
  bool was_speaking = false;
  std::vector<int16_t> pcm;
  for (int64_t i = 0;; ++i) {
    next_frame_ = i;
    wait_until(due(i), false);
    const int k = render::avatar_frame_for(i, av.count(), render::FrameOrder::kPingPong,
                                           m.family.first_frame);
    cv::Mat frame;
    bool speech = false, stop = false;
    for (;;) {  // decide frame i: idle, or speech frame j of the head utterance
      process_events();
      submit_windows();
      {
        std::lock_guard<std::mutex> lock(mu_);
        stop = closing_;
      }
      if (stop) break;
      Utterance* u = utterances_.empty() ? nullptr : utterances_.front().get();
      if (u && (u->start < 0 || i < u->start)) u = nullptr;
      if (!u) {
        frame = av.full[k];
        pcm.assign(n, 0);
        break;
      }
      const int64_t j = i - u->start;
      if (u->finished && j >= u->total_frames(n)) {
        utterances_.pop_front();
        continue;
      }
      if (!u->finished || j < u->windows_total) {
        std::optional<FrameResult> r;
        {
          std::lock_guard<std::mutex> lock(mu_);
          if (auto it = results_.find(i); it != results_.end()) {
            r = std::move(it->second);
            results_.erase(it);
          }
        }
        if (!r) {
          const auto now = Clock::now();
          if (!u->finished && j >= u->windows_seen && u->fed == u->pcm_end() &&
              seconds(now - due(i)) > kStallS && seconds(now - u->last_audio) > kStallS) {
            u->finish();  // the client's audio stalled without speak-end
            continue;
          }
          wait_until(std::min(due(i) + period * 100, now + std::chrono::milliseconds(5)), true);
          continue;
        }
        frame = av.full[k].clone();
        auto c = u->crops.find(j);
        if (r->status.ok() && c != u->crops.end()) {
          render::paste_prediction(av.rects[k], c->second, r->output.data<float>(), m.prep,
                                   &canvas_, &frame);
        } else if (!r->status.ok()) {
          fmt::print(stderr, "session {} frame {}: {}\n", opt_.id, i, r->status.message());
        }
        if (c != u->crops.end()) u->crops.erase(c);
      } else {
        frame = av.full[k];  // speech past the last window: the avatar's own frame
      }
      pcm.assign(n, 0);
      const int64_t begin = j * n;
      const int64_t end = std::min<int64_t>(begin + n, u->pcm_end());
      if (end > begin) {
        std::copy(u->sample(begin), u->sample(end), pcm.begin());
        u->pcm_sent += end - begin;
        u->trim();
        std::lock_guard<std::mutex> lock(mu_);
        queued_samples_ -= end - begin;
      }
      speech = true;
      break;
    }
    if (stop) break;
    if (speech != was_speaking) {
      nlohmann::json state = {{"type", speech ? "speaking" : "idle"}, {"frame", i}};
      if (!send_text(state.dump())) break;
      was_speaking = speech;
      speaking_ = speech;
    }
    Status s = send_frame(i, frame, pcm);
    if (!s.ok()) {
      if (!client_gone_) fmt::print(stderr, "session {}: {}\n", opt_.id, s.message());
      break;
    }
    ++frames_sent_;
    if (Clock::now() > due(i) + period) ++frames_late_;
    int64_t depth = 0;
    for (const auto& u : utterances_)
      depth += static_cast<int64_t>(u->windows.size() + u->crops.size());
    queue_depth_ = depth;
  }
  bool goodbye = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    goodbye = closing_message_;
  }
  batcher_->close_session(bid_);
  if (goodbye && !client_gone_) {
    if (fmp4_) (void)fmp4_->finish();
    send_text(R"({"type":"closing"})");
  }
  queue_depth_ = 0;
  done_ = true;
}

}  // namespace tr::serve
