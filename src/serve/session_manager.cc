// SessionManager: avatars, admission, live sessions, metrics and the offline render
// (see session_manager.h; the sessions themselves are in live_session.h).
#include "serve/session_manager.h"

#include <fmt/format.h>
#include <sched.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <map>
#include <mutex>
#include <random>
#include <thread>

#include "common/files.h"
#include "render/render_job.h"
#include "serve/avatar_store.h"
#include "serve/live_session.h"

namespace tr::serve {
namespace {

namespace fs = std::filesystem;

constexpr int kCostFrames = 30;  // speech frames timed for a session's own cost, per trial
constexpr int kCostTrials = 3;

// The cores this process may run on (its affinity mask, as containers set it).
int usable_cores() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) == 0 && CPU_COUNT(&set) > 0) return CPU_COUNT(&set);
  return std::max(1u, std::thread::hardware_concurrency());
}

// 128 random bits, hex: URL-safe and never derived from user input.
std::string random_id() {
  static std::mutex mu;
  static std::random_device rd;
  static std::mt19937_64 gen(rd());
  std::lock_guard<std::mutex> lock(mu);
  return fmt::format("{:016x}{:016x}", gen(), gen());
}

class SessionManagerImpl final : public SessionManager {
 public:
  explicit SessionManagerImpl(ServeOptions o) : opt_(std::move(o)) {}
  ~SessionManagerImpl() override {
    drain();
    if (store_) store_->stop();
  }

  Status init() {
    AvatarStoreOptions so;
    so.avatars_dir = opt_.avatars_dir;
    so.generator_path = opt_.generator_path;
    so.audio_encoder_path = opt_.audio_encoder_path;
    so.frame_budget_bytes = opt_.frame_cache_mb << 20;
    so.threads = opt_.threads;
    so.precision = opt_.precision == "auto" ? "" : opt_.precision;
    so.batch = opt_.batch;
    TR_ASSIGN_OR_RETURN(store_, AvatarStore::create(so));
    // The first avatar's model: loaded now, its throughput measured once.
    const std::string first = store_->names().front();
    auto model = store_->model_for(first);
    if (!model.ok()) return Status(model.error()).with_context("avatar " + first);
    const ModelEntry& m = **model;
    fps_ = m.family.fps;
    // The best throughput whose batch fits two frame periods (the look-ahead's margin);
    // on a machine where none does, batch 1's (slower than that, it still bounds sessions).
    frames_per_s_ = m.profile.best_frames_per_s(2000.0 / std::max(1, fps_));
    if (frames_per_s_ <= 0 && !m.profile.points.empty()) {
      frames_per_s_ = m.profile.points.front().frames_per_s;
    }
    for (const ThroughputPoint& p : m.profile.points) {
      fmt::print(stderr, "serve: batch {}: {:.1f} ms per call, {:.1f} frames/s\n", p.batch,
                 p.ms_per_batch, p.frames_per_s);
    }
    // A session's own work (audio encoder, H.264 + AAC, paste) on the first avatar: on a
    // small machine it bounds the sessions before the generator does.
    auto avatar = store_->get(first);
    if (!avatar.ok()) return Status(avatar.error()).with_context("avatar " + first);
    // The median of a few trials: one trial can catch the host busy with something else.
    std::vector<SessionCost> trials;
    for (int t = 0; t < kCostTrials; ++t) {
      TR_ASSIGN_OR_RETURN(SessionCost c,
                          measure_session_cost(**avatar, StreamFormat::kFmp4, kCostFrames));
      trials.push_back(c);
    }
    std::sort(trials.begin(), trials.end(), [](const SessionCost& a, const SessionCost& b) {
      return a.cpu_ms_per_frame < b.cpu_ms_per_frame;
    });
    const SessionCost cost = trials[trials.size() / 2];
    session_cpu_ms_ = cost.cpu_ms_per_frame;
    cores_ = usable_cores();
    fmt::print(stderr,
               "serve: a session's own work: {:.2f} ms CPU ({:.2f} ms wall) per frame, on {} "
               "core(s)\n",
               cost.cpu_ms_per_frame, cost.wall_ms_per_frame, cores_);
    limit_ =
        tr::serve::admission_limit(frames_per_s_, fps_, opt_.headroom, session_cpu_ms_, cores_);
    if (opt_.max_sessions > 0) limit_ = std::min(limit_, opt_.max_sessions);
    fmt::print(stderr,
               "serve: {} avatar(s); generator {} measured at {:.1f} frames/s -> {} session(s) at "
               "{} fps\n",
               store_->names().size(), m.generator_path, frames_per_s_, limit_, fps_);
    return Status::Ok();
  }

  std::vector<std::string> avatar_names() const override { return store_->names(); }
  int admission_limit() const override { return limit_; }
  int open_sessions() const override {
    reap();
    std::lock_guard<std::mutex> lock(mu_);
    return static_cast<int>(sessions_.size());
  }

  Result<SessionInfo> open(const std::string& avatar, StreamFormat format,
                           OpenRefusal* refusal) override {
    OpenRefusal dummy;
    if (!refusal) refusal = &dummy;
    *refusal = OpenRefusal::kNone;
    if (Status v = validate_avatar_name(avatar); !v.ok()) {
      *refusal = OpenRefusal::kBadRequest;
      return v.error();
    }
    if (!store_->has(avatar)) {
      *refusal = OpenRefusal::kUnknownAvatar;
      return BadInput(fmt::format("unknown avatar '{}'", avatar));
    }
    reap();
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (draining_) {
        *refusal = OpenRefusal::kFull;
        return RuntimeError("server is shutting down");
      }
      if (static_cast<int>(sessions_.size()) + opening_ >= limit_) {
        *refusal = OpenRefusal::kFull;
        return RuntimeError(fmt::format(
            "server full: {} talking sessions at {} fps is the measured limit", limit_, fps_));
      }
      ++opening_;  // a slot reserved while the avatar loads
    }
    auto made = make_session(avatar, format);
    std::lock_guard<std::mutex> lock(mu_);
    --opening_;
    if (!made.ok()) {
      *refusal = OpenRefusal::kBadRequest;
      return made.error();
    }
    if (draining_) {
      (*made)->request_close(true);
      *refusal = OpenRefusal::kFull;
      return RuntimeError("server is shutting down");
    }
    SessionInfo info = (*made)->info();
    sessions_[info.id] = std::move(*made);
    return info;
  }

  Status attach(const std::string& id, SendFn send) override {
    TR_ASSIGN_OR_RETURN(auto s, find(id));
    return s->attach(std::move(send));
  }
  Status push_audio(const std::string& id, const int16_t* pcm, size_t samples) override {
    TR_ASSIGN_OR_RETURN(auto s, find(id));
    return s->push_audio(pcm, samples);
  }
  Status control(const std::string& id, const std::string& type) override {
    TR_ASSIGN_OR_RETURN(auto s, find(id));
    TR_RETURN_IF_ERROR(s->control(type));
    // "close": wait (at most a frame period and the encoder's flush) until the session has
    // sent its last fragment (audio to the end) and its goodbye, so the caller can close
    // the connection after them.
    if (type == "close") s->join();
    return Status::Ok();
  }
  void close(const std::string& id) override {
    std::shared_ptr<LiveSession> s;
    {
      std::lock_guard<std::mutex> lock(mu_);
      auto it = sessions_.find(id);
      if (it == sessions_.end()) return;
      s = it->second;
    }
    s->request_close(false);
    s->join();
    reap();
  }

  Result<std::string> render_file(const std::string& avatar,
                                  const std::string& audio_path) override {
    TR_RETURN_IF_ERROR(validate_avatar_name(avatar));
    TR_ASSIGN_OR_RETURN(std::string dir, store_->dir_of(avatar));
    TR_ASSIGN_OR_RETURN(auto models, store_->model_paths_of(avatar));
    if (!path_exists(audio_path)) return BadInput(audio_path + ": audio file not found");
    render::RenderJobOptions o;
    (render::is_dataset_avatar_dir(dir) ? o.dataset_dir : o.package_dir) = dir;
    o.generator_path = models.first;
    o.audio_encoder_path = models.second;
    o.audio_path = audio_path;
    o.threads = opt_.threads;
    o.overwrite = true;
    const fs::path tmp = fs::temp_directory_path() / ("talkrender_render_" + random_id());
    std::error_code ec;
    fs::create_directories(tmp, ec);
    if (ec) return RuntimeError(fmt::format("{}: {}", tmp.string(), ec.message()));
    o.out_path = (tmp / "render.mp4").string();
    auto report = render::run_render_job(o);
    Result<std::string> bytes =
        report.ok() ? read_file(o.out_path) : Result<std::string>(report.error());
    fs::remove_all(tmp, ec);
    return bytes;
  }

  std::string metrics_text() const override {
    reap();
    std::vector<std::shared_ptr<LiveSession>> live;
    {
      std::lock_guard<std::mutex> lock(mu_);
      for (const auto& [id, s] : sessions_) live.push_back(s);
    }
    int64_t sent = sent_closed_, late = late_closed_, speaking = 0;
    std::vector<int64_t> depths;
    for (const auto& s : live) {
      sent += s->frames_sent();
      late += s->frames_late();
      speaking += s->speaking() ? 1 : 0;
      depths.push_back(s->queue_depth());
    }
    std::sort(depths.begin(), depths.end());
    std::string o;
    auto metric = [&](const char* name, const char* type, const char* help, auto value) {
      o += fmt::format("# HELP talkrender_{} {}\n# TYPE talkrender_{} {}\ntalkrender_{} {}\n", name,
                       help, name, type, name, value);
    };
    metric("sessions", "gauge", "Open live sessions.", live.size());
    metric("sessions_speaking", "gauge", "Sessions sending speech frames now.", speaking);
    metric("admission_limit", "gauge", "Sessions admitted at full fps.", limit_);
    metric("measured_frames_per_second", "gauge", "Generator throughput measured at start.",
           frames_per_s_);
    metric("session_cpu_ms_per_frame", "gauge",
           "A session's own CPU per frame (audio encoder, encoding, paste), measured at start.",
           session_cpu_ms_);
    metric("frames_sent_total", "counter", "Frames sent to clients.", sent);
    metric("frames_late_total", "counter",
           "Frames sent more than one frame period after their due time.", late);
    int64_t sum = 0;
    for (int64_t d : depths) sum += d;
    auto q = [&](double p) -> int64_t {
      if (depths.empty()) return 0;
      return depths[std::min(depths.size() - 1,
                             static_cast<size_t>(p * (depths.size() - 1) + 0.5))];
    };
    o += "# HELP talkrender_session_queue_depth Speech frames queued per session (not yet sent).\n"
         "# TYPE talkrender_session_queue_depth summary\n";
    for (double p : {0.5, 0.9, 1.0}) {
      o += fmt::format("talkrender_session_queue_depth{{quantile=\"{}\"}} {}\n", p, q(p));
    }
    o += fmt::format(
        "talkrender_session_queue_depth_sum {}\ntalkrender_session_queue_depth_count {}\n", sum,
        depths.size());
    for (const auto& m : store_->models()) {
      const std::string prefix =
          m->index == 0 ? "talkrender_batcher_" : fmt::format("talkrender_batcher{}_", m->index);
      if (m->batcher) o += to_prometheus(m->batcher->stats(), prefix);
    }
    return o;
  }

  void drain() override {
    std::vector<std::shared_ptr<LiveSession>> all;
    {
      std::lock_guard<std::mutex> lock(mu_);
      draining_ = true;
      for (const auto& [id, s] : sessions_) all.push_back(s);
    }
    for (const auto& s : all) s->request_close(true);
    for (const auto& s : all) s->join();
    reap();
  }

 private:
  Result<std::shared_ptr<LiveSession>> make_session(const std::string& avatar, StreamFormat f) {
    auto a = store_->get(avatar);
    if (!a.ok()) return Status(a.error()).with_context("avatar " + avatar);
    LiveSessionOptions lo;
    lo.id = random_id();
    lo.format = f;
    lo.idle_timeout_s = opt_.idle_timeout_s;
    lo.max_audio_ahead_s = opt_.max_audio_ahead_s;
    return LiveSession::create(*a, lo);
  }

  Result<std::shared_ptr<LiveSession>> find(const std::string& id) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = sessions_.find(id);
    if (it == sessions_.end() || it->second->done()) {
      return BadInput(fmt::format("unknown session '{}'", id.substr(0, 64)));
    }
    return it->second;
  }

  // Forgets finished sessions (idle timeout, client gone, closed), keeping their counts.
  void reap() const {
    std::vector<std::shared_ptr<LiveSession>> done;
    {
      std::lock_guard<std::mutex> lock(mu_);
      for (auto it = sessions_.begin(); it != sessions_.end();) {
        if (it->second->done()) {
          done.push_back(it->second);
          sent_closed_ += it->second->frames_sent();
          late_closed_ += it->second->frames_late();
          it = sessions_.erase(it);
        } else {
          ++it;
        }
      }
    }
    for (const auto& s : done) s->join();  // done: returns at once
  }

  const ServeOptions opt_;
  std::unique_ptr<AvatarStore> store_;
  int fps_ = 25;
  double frames_per_s_ = 0;
  double session_cpu_ms_ = 0;  // a session's own CPU per frame (measure_session_cost)
  int cores_ = 1;
  int limit_ = 0;

  mutable std::mutex mu_;
  mutable std::map<std::string, std::shared_ptr<LiveSession>> sessions_;
  int opening_ = 0;
  bool draining_ = false;
  mutable std::atomic<int64_t> sent_closed_{0}, late_closed_{0};
};

}  // namespace

Result<std::unique_ptr<SessionManager>> SessionManager::create(const ServeOptions& o) {
  auto m = std::make_unique<SessionManagerImpl>(o);
  TR_RETURN_IF_ERROR(m->init());
  return std::unique_ptr<SessionManager>(std::move(m));
}

}  // namespace tr::serve
