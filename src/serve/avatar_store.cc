// The avatars of --avatars DIR and their shared models (see avatar_store.h).
#include "serve/avatar_store.h"

#include <fmt/format.h>

#include <algorithm>
#include <filesystem>
#include <functional>

#include "common/files.h"

namespace tr::serve {

namespace fs = std::filesystem;

Status validate_avatar_name(const std::string& name) {
  if (name.empty()) return BadInput("empty avatar name");
  if (name.size() > 128) return BadInput("avatar name too long");
  if (name.front() == '.') return BadInput(fmt::format("bad avatar name '{}'", name));
  for (char c : name) {
    if (c == '/' || c == '\\' || c == '\0' || static_cast<unsigned char>(c) < 0x20) {
      return BadInput(fmt::format("bad avatar name '{}'", name));
    }
  }
  if (name.find("..") != std::string::npos) {
    return BadInput(fmt::format("bad avatar name '{}'", name));
  }
  return Status::Ok();
}

Result<std::unique_ptr<AvatarStore>> AvatarStore::create(const AvatarStoreOptions& o) {
  if (o.avatars_dir.empty()) return BadInput("no avatars folder given (--avatars DIR)");
  if (!is_directory(o.avatars_dir)) return BadInput(o.avatars_dir + ": avatars folder not found");
  std::unique_ptr<AvatarStore> s(new AvatarStore(o));
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(o.avatars_dir, ec)) {
    const std::string name = entry.path().filename().string();
    if (!validate_avatar_name(name).ok() || !entry.is_directory(ec)) continue;
    const std::string dir = entry.path().string();
    if (!render::is_avatar_dir(dir)) continue;
    if (render::avatar_generator_path(dir).empty() && o.generator_path.empty()) {
      fmt::print(stderr, "note: {}: no models/generator.onnx and no --generator; not served\n",
                 dir);
      continue;
    }
    s->names_.push_back(name);
  }
  if (ec) return RuntimeError(fmt::format("{}: {}", o.avatars_dir, ec.message()));
  if (s->names_.empty()) {
    return BadInput(o.avatars_dir +
                    ": no avatars (subfolders that are packages or datasets, with models)");
  }
  std::sort(s->names_.begin(), s->names_.end());
  return s;
}

AvatarStore::~AvatarStore() { stop(); }

std::vector<std::string> AvatarStore::names() const { return names_; }

bool AvatarStore::has(const std::string& name) const {
  return validate_avatar_name(name).ok() && std::binary_search(names_.begin(), names_.end(), name);
}

Result<std::string> AvatarStore::dir_of(const std::string& name) const {
  TR_RETURN_IF_ERROR(validate_avatar_name(name));
  if (!has(name)) return BadInput(fmt::format("unknown avatar '{}'", name));
  return (fs::path(opt_.avatars_dir) / name).string();
}

Result<std::pair<std::string, std::string>> AvatarStore::model_paths_of(
    const std::string& name) const {
  TR_ASSIGN_OR_RETURN(std::string dir, dir_of(name));
  std::string gen = render::avatar_generator_path(dir);
  std::string enc = render::avatar_audio_encoder_path(dir);
  if (gen.empty()) gen = opt_.generator_path;
  if (enc.empty()) enc = opt_.audio_encoder_path;
  if (gen.empty()) return BadInput(dir + ": no generator");
  if (enc.empty()) return BadInput(dir + ": no audio encoder (models/audio_encoder.onnx)");
  return std::make_pair(gen, enc);
}

namespace {

// Models are shared by content: the key is the files' sizes and hashes.
Result<std::string> content_key(const std::string& gen, const std::string& enc) {
  std::string key;
  for (const std::string& p : {gen, enc}) {
    TR_ASSIGN_OR_RETURN(std::string bytes, read_file(p));
    key += fmt::format("{}:{:x};", bytes.size(), std::hash<std::string>{}(bytes));
  }
  return key;
}

}  // namespace

Result<std::shared_ptr<ModelEntry>> AvatarStore::model_for(const std::string& name) {
  std::lock_guard<std::mutex> lock(mu_);
  return model_for_locked(name);
}

Result<std::shared_ptr<ModelEntry>> AvatarStore::model_for_locked(const std::string& name) {
  TR_ASSIGN_OR_RETURN(auto paths, model_paths_of(name));
  TR_ASSIGN_OR_RETURN(std::string key, content_key(paths.first, paths.second));
  if (auto it = models_.find(key); it != models_.end()) return it->second;

  TR_ASSIGN_OR_RETURN(render::LiveModel lm,
                      render::load_live_model(paths.first, opt_.threads, opt_.precision));
  if (std::string(lm.family.audio) != "ave") {
    return BadInput(fmt::format(
        "{}: a {} generator; live sessions compute ave features from the pushed audio and need "
        "an ave generator",
        paths.first, lm.family.audio));
  }
  auto e = std::make_shared<ModelEntry>();
  e->index = static_cast<int>(models_.size());
  e->generator_path = paths.first;
  e->encoder_path = paths.second;
  e->family = lm.family;
  e->prep = lm.prep;
  TR_ASSIGN_OR_RETURN(e->encoder, render::load_shared_audio_encoder(paths.second, opt_.threads));

  BatcherOptions bo;
  bo.size = lm.family.size;
  bo.audio_shape = lm.family.audio_shape;
  bo.max_outstanding_per_session = 32;
  // A frame's result may take up to one batch time plus batch_wait; keep the batch time
  // under two frame periods so the look-ahead margin covers it.
  const double max_batch_ms = 2000.0 / std::max(1, lm.family.fps);
  if (models_.empty()) {
    // The first model: measure it once (before a Batcher owns the predictor).
    const int max_batch = opt_.batch > 0 ? opt_.batch : kMaxAutoBatch;
    TR_ASSIGN_OR_RETURN(e->profile,
                        measure_throughput(*lm.predictor, lm.family.size, lm.family.audio_shape,
                                           max_batch, opt_.measure_per_batch));
    int best = e->profile.best_batch(max_batch_ms);
    if (best <= 0) best = 1;
    first_best_batch_ = opt_.batch > 0 ? opt_.batch : best;
    for (const ThroughputPoint& p : e->profile.points) {
      if (p.batch == best) {
        bo.initial_batch_estimate =
            std::chrono::microseconds(static_cast<int64_t>(p.ms_per_batch * 1000));
      }
    }
  }
  bo.max_batch = opt_.batch > 0 ? opt_.batch : std::max(1, first_best_batch_);
  TR_ASSIGN_OR_RETURN(e->batcher, Batcher::create(std::move(lm.predictor), bo));
  models_[key] = e;
  return e;
}

Result<std::shared_ptr<const Avatar>> AvatarStore::get(const std::string& name) {
  std::lock_guard<std::mutex> lock(mu_);
  if (auto it = loaded_.find(name); it != loaded_.end()) return it->second;
  TR_ASSIGN_OR_RETURN(std::string dir, dir_of(name));
  auto a = std::make_shared<Avatar>();
  a->name = name;
  a->dir = dir;
  TR_ASSIGN_OR_RETURN(a->model, model_for_locked(name));
  TR_ASSIGN_OR_RETURN(a->live, render::load_live_avatar(dir, opt_.frame_budget_bytes));
  TR_RETURN_IF_ERROR(render::validate_avatar(*a->live.frames, a->model->prep, dir));
  loaded_[name] = a;
  return std::shared_ptr<const Avatar>(a);
}

std::vector<std::shared_ptr<ModelEntry>> AvatarStore::models() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<std::shared_ptr<ModelEntry>> out;
  for (const auto& [k, m] : models_) out.push_back(m);
  std::sort(out.begin(), out.end(),
            [](const auto& a, const auto& b) { return a->index < b->index; });
  return out;
}

void AvatarStore::stop() {
  for (const auto& m : models()) {
    if (m->batcher) m->batcher->stop(Batcher::StopMode::kCancel);
  }
}

}  // namespace tr::serve
