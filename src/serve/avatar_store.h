// The avatars of `talkrender serve --avatars DIR` and their models (internal to serve/).
//
// Every subfolder of DIR that is a package or a dataset is an avatar, named by its folder
// name. Names come from clients, so they are checked (validate_avatar_name) and only ever
// joined to DIR after the check, and only names found by the scan at create() are served.
//
// Frames are decoded on the first open of an avatar, once, into RAM (bounded per avatar by
// a budget: larger avatars are refused with an error naming the size), and shared
// read-only by the sessions. Models are shared by content: avatars whose generator and
// audio encoder files are byte-identical use one loaded model and one Batcher (which owns
// the generator's Predictor and runs it on its inference thread).
//
// Thread-safety: every member may be called from any thread; loading happens under the
// store's lock (a first open waits for another's load of the same or another avatar).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "audio/audio.h"
#include "common/status.h"
#include "render/live_avatar.h"
#include "serve/batcher.h"

namespace tr::serve {

// A folder name usable as an avatar name: not empty, no '/', '\\' or NUL, no leading '.'
// (which also refuses "." and ".."), at most 128 bytes. kBadInput otherwise.
Status validate_avatar_name(const std::string& name);

// One distinct model: the generator behind its Batcher, and the audio encoder.
struct ModelEntry {
  int index = 0;  // order of loading (metrics prefix)
  std::string generator_path, encoder_path;
  render::ModelFamily family;
  render::PrepSettings prep;
  std::unique_ptr<Batcher> batcher;
  audio::EncoderFn encoder;   // thread-safe
  ThroughputProfile profile;  // measured for the first model only (else empty)
};

struct Avatar {
  std::string name, dir;
  render::LiveAvatar live;
  std::shared_ptr<ModelEntry> model;
};

struct AvatarStoreOptions {
  std::string avatars_dir;
  std::string generator_path;      // for avatars without models/ (datasets); may be empty
  std::string audio_encoder_path;  // likewise
  int64_t frame_budget_bytes = 0;  // per avatar; 0: no limit
  int threads = 0;
  std::string precision;
  int batch = 0;  // max batch; 0: the measurement's best (capped at kMaxAutoBatch)
  std::chrono::milliseconds measure_per_batch{250};
};

class AvatarStore {
 public:
  static constexpr int kMaxAutoBatch = 8;

  // Scans the folder (no decoding, no model loaded yet). Errors: no such folder, no avatar.
  static Result<std::unique_ptr<AvatarStore>> create(const AvatarStoreOptions& o);
  ~AvatarStore();

  std::vector<std::string> names() const;
  bool has(const std::string& name) const;
  // The avatar's folder (validated name, one of the scanned ones); kBadInput otherwise.
  Result<std::string> dir_of(const std::string& name) const;
  // The model files the avatar uses (its own, else the options' defaults).
  Result<std::pair<std::string, std::string>> model_paths_of(const std::string& name) const;

  // The avatar's model, loaded (and its throughput measured when it is the first one).
  Result<std::shared_ptr<ModelEntry>> model_for(const std::string& name);
  // The avatar, its frames decoded and its model loaded on first use.
  Result<std::shared_ptr<const Avatar>> get(const std::string& name);

  std::vector<std::shared_ptr<ModelEntry>> models() const;
  // Stops every batcher (after the sessions are gone).
  void stop();

 private:
  explicit AvatarStore(AvatarStoreOptions o) : opt_(std::move(o)) {}
  Result<std::shared_ptr<ModelEntry>> model_for_locked(const std::string& name);

  const AvatarStoreOptions opt_;
  std::vector<std::string> names_;  // sorted
  mutable std::mutex mu_;
  std::map<std::string, std::shared_ptr<const Avatar>> loaded_;
  std::map<std::string, std::shared_ptr<ModelEntry>> models_;  // by content key
  int first_best_batch_ = 0;
};

}  // namespace tr::serve
